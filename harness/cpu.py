"""What a guest costs the host in CPU time, from the kernel's accounting: QEMU's process (all
its threads) and the harness threads that serve the guest.  CPU seconds, unlike wall time, hardly
change with what else shares the machine."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def process_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and all its threads; for an exited process not yet
    reaped (a zombie), its final total."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class MeteredThread(threading.Thread):
    """A thread that, as it ends, records the CPU time it used."""
    cpu_seconds = 0.0

    def run(self):
        try:
            super().run()
        finally:
            self.cpu_seconds = time.thread_time()
