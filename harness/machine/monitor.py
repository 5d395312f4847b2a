"""The QEMU monitor (QMP), through the QEMU project's own client, qemu.qmp.

Every command and its answer go to a transcript with host timestamps, so a trace can line up
what the host did with what the guest kernel reported.
"""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from collections.abc import Callable

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol
from qemu.qmp.qmp_client import ExecuteError

from ..transcript import Transcript
from ..wait import Deadline


class MonitorError(Exception):
    """A QMP command failed or the monitor is unreachable."""


class Monitor:
    def __init__(self, sock: socket.socket, transcript: Path | None = None, timeout: float = 10.0):
        self._qmp = QEMUMonitorProtocol(sock)
        self._qmp.settimeout(timeout)
        self._lock = threading.Lock()  # the client is one event loop: one caller at a time
        self._transcript = Transcript(transcript)

    def connect(self):
        try:
            greeting = self._qmp.connect()
        except (QMPError, OSError, EOFError) as e:
            raise MonitorError(f"cannot talk to QEMU's monitor: {e}") from e
        self._transcript.write(f"<- {json.dumps(greeting)}")

    def command(self, name: str, /, **args):
        """Run one QMP command; returns its 'return' value or raises MonitorError."""
        self._transcript.write(f"-> {json.dumps({'execute': name, 'arguments': args})}")
        try:
            with self._lock:
                result = self._qmp.cmd(name, **args)
        except ExecuteError as e:
            self._transcript.write(f"<- error {e.error_class}: {e.error_desc}")
            raise MonitorError(f"QMP {name} {args}: {e.error_class}: {e.error_desc}") from e
        except (TimeoutError, QMPError, OSError, EOFError) as e:
            self._transcript.write(f"<- failed: {e!r}")
            raise MonitorError(f"QMP {name}: no answer from QEMU ({type(e).__name__}: {e})") from e
        self._transcript.write(f"<- {json.dumps(result)}")
        return result

    def wait_event(self, name: str, timeout: float, abandon: Callable[[], Exception | None] = lambda: None) -> dict:
        """The next `name` event (others are logged and dropped); MonitorError after `timeout`
        seconds, or as soon as `abandon()` names a reason to stop waiting (the guest broke)."""
        deadline = Deadline(timeout)
        while True:
            if cause := abandon():
                raise MonitorError(f"gave up waiting for QEMU's {name} event: {cause}")
            if deadline.passed():
                raise MonitorError(f"no {name} event from QEMU within {timeout:g} s")
            try:
                with self._lock:
                    event = self._qmp.pull_event(wait=max(min(0.1, deadline.left()), 0.001))
            except TimeoutError:
                continue
            except (QMPError, OSError, EOFError) as e:
                raise MonitorError(f"QEMU's monitor closed while waiting for {name}: {e!r}") from e
            self._transcript.write(f"<- event {json.dumps(event)}")
            if event.get("event") == name:
                return event

    def set_link(self, device: str, up: bool):
        """QMP set_link: QEMU emits no event for it and accepts it even for NICs that ignore it."""
        self.command("set_link", name=device, up=up)

    def quit(self):
        self.command("quit")

    def close(self):
        try:
            self._qmp.close()
        except (QMPError, OSError, EOFError):
            pass
        self._transcript.close()
