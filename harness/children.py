"""Child processes that must not outlive the harness (QEMU, make and its compilers)."""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
from collections.abc import Iterator

from .wait import until


def die_with_parent():
    """preexec_fn: the child is SIGKILLed when the harness dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def process_group(args: list[str], **popen) -> Iterator[subprocess.Popen]:
    """Run `args` in a process group of its own, ended with the context: SIGTERM to the whole
    group (make then deletes its half-written targets), SIGKILL if that does not do it.  So an
    interrupted harness (Ctrl-C, SIGTERM, an exception) leaves no compiler running."""
    proc = subprocess.Popen(args, start_new_session=True, preexec_fn=die_with_parent, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=10)
                    break
                except subprocess.TimeoutExpired:
                    pass
        _end_group(proc.pid)


def _end_group(pgid: int, timeout: float = 5.0):
    """SIGKILL what is left of the group (compilers whose make is gone) and wait until it is gone."""
    def gone() -> bool:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        return False
    until(gone, timeout, interval=0.02)
