"""The console watcher: the first fatal line reaches the waiter at once, but the guest is kept
until the kernel's report is complete."""
import socket
import time

from harness.machine.console import Console

ORDER = [b"[    1.5] BUG: unable to handle kernel NULL pointer dereference at (null)\n",
         b"[    1.5] Oops: 0002 [#1]\n",
         b"[    1.5] ---[ end trace 5d6653cc256ffebc ]---\n"]
PANIC = b"[    1.6] Kernel panic - not syncing: Fatal exception\n"


def test_the_report_ends_with_the_panic_not_the_oops_end_trace(tmp_path):
    host, guest = socket.socketpair()
    heard = []
    console = Console(host, tmp_path / "console.log", time.monotonic(), heard.append)
    try:
        guest.sendall(b"".join(ORDER))
        assert not console.report_done.wait(0.3)
        assert len(heard) == 1 and "BUG: unable to handle" in str(heard[0])
        guest.sendall(PANIC)
        assert console.report_done.wait(5)
    finally:
        guest.close()
        console.join()
    assert "Kernel panic - not syncing" in (tmp_path / "console.log").read_text()
