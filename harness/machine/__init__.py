"""The machine: a QEMU process (qemu), its serial console (console), its QMP monitor (monitor),
the accelerator it runs on (accel) and the run directories of the guests on this host (rundir)."""
from __future__ import annotations

from pathlib import Path


class VMError(Exception):
    """The guest or QEMU failed (would not start, panicked, hung); carries the console log path."""

    def __init__(self, message: str, console_log: Path | None = None):
        super().__init__(message + (f" (console log: {console_log})" if console_log else ""))
        self.console_log = console_log
