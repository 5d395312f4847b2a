"""The guest's serial console: always drained to console.log (a full console stalls the guest)
and watched for the lines that mean the guest is broken."""
from __future__ import annotations

import collections
import re
import socket
import threading
import time
from pathlib import Path
from collections.abc import Callable

from ..cpu import MeteredThread
from . import VMError

# Kernel messages that mean the guest is broken, and the init's word that the agent has gone; the
# scenario fails at once with the line.  A transport adds lines of its own.
FATAL = ("Kernel panic", "BUG:", "Oops", "testbed-init: agent exited")
# After the kernel's first fatal line, the rest of its oops (3.14's sysrq crash: BUG, the oops,
# the call trace, "end trace", then the panic) belongs in console.log: the guest is stopped only
# once the panic line is out (or QEMU exits), or after this long.  "end trace" is not the end:
# oops_end() panics after printing it when panic_on_oops is set (sysrq's crash sets it).
OOPS_END = re.compile(r"Kernel panic")
OOPS_GRACE = 3.0


class Console:
    """Reads the host end of the console socket until QEMU closes it.  `on_fatal` hears the first
    fatal line (FATAL, or one of `fatal`) as a VMError; `seen[line]` is set once a line of
    `signals` has come; `echo`, when set, gets every byte as well (testbed shell)."""

    def __init__(self, sock: socket.socket, log: Path, started: float, on_fatal: Callable[[VMError], None],
                 fatal: tuple[str, ...] = (), signals: tuple[str, ...] = ()):
        self.sock, self.log, self.started, self.on_fatal = sock, log, started, on_fatal
        self.echo: Callable[[bytes], None] | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.fatal: str | None = None
        self._fatal = re.compile("|".join(map(re.escape, (*FATAL, *fatal))))
        self.seen = {line: threading.Event() for line in signals}
        self.oops_done = threading.Event()
        self._thread = MeteredThread(target=self._drain, name="console", daemon=True)
        self._thread.start()

    def last_line(self) -> str:
        return next((line.strip() for line in reversed(self.lines) if line.strip()), "(no console output)")

    def wait_for_oops(self):
        """After a fatal line, let the kernel finish its oops (see OOPS_END)."""
        if self.fatal is not None:
            self.oops_done.wait(OOPS_GRACE)

    def join(self):
        self._thread.join(timeout=5)

    @property
    def cpu_seconds(self) -> float:
        """What reading the console cost, once it ended."""
        return self._thread.cpu_seconds

    def _drain(self):
        with open(self.log, "wb") as log:
            pending = b""
            while data := self._recv():
                log.write(data)
                log.flush()
                if self.echo:
                    self.echo(data)
                *lines, pending = (pending + data).split(b"\n")
                for raw in lines:
                    self._watch(raw.decode("utf-8", "replace").rstrip("\r"))
        self.oops_done.set()

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(65536)
        except OSError:
            return b""

    def _watch(self, line: str):
        self.lines.append(line)
        if line in self.seen:
            self.seen[line].set()
        if self.fatal is not None and OOPS_END.search(line):
            self.oops_done.set()
        if self.fatal is None and self._fatal.search(line):
            self.fatal = line
            if line.startswith("testbed-init") or OOPS_END.search(line):
                self.oops_done.set()
            what = "kernel panic" if "panic" in line else "guest failure"
            self.on_fatal(VMError(f"{what} at {time.monotonic() - self.started:.1f} s: {line.strip()}", self.log))
