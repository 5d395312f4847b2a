"""The guest's brake: a QMP monitor of its own, on which the host lets a guest that stopped itself
run again without waiting for QEMU's answer.

The guest stops itself with the agent's pvpanic button (after a reply the host asked it to hold,
or at an instant an AT op was given); QEMU reports GUEST_PANICKED, then STOP.  Once `engage`d
(by whoever is about to make the guest stop itself), the brake counts those stops (a STOP
without GUEST_PANICKED — a snapshot's save, a person's `stop` — is not one) and sends every
`cont` that ends one, so the guest is stopped exactly when the stops read outnumber the conts.
A `cont` goes out only once its STOP has been read, so it cannot reach QEMU before the stop it
is meant to end; its answer is read with the next STOP, and an error in it is raised there.
Everything read and sent goes to a transcript.
"""
from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

from ..transcript import Transcript
from ..wait import Deadline
from .monitor import MonitorError

POLL = 0.1  # host seconds between looks at `abandon` while waiting for QEMU


class Brake:
    def __init__(self, sock: socket.socket, transcript: Path | None = None):
        self._sock = sock
        self._buffer = b""
        self._stops = self._conts = 0
        self._panicked = False  # GUEST_PANICKED read, its STOP not yet
        self._engaged = False
        self._transcript = Transcript(transcript)

    def engage(self, timeout: float = 10.0):
        """Leave QMP's capabilities negotiation: QEMU sends this monitor events from now on (none
        before: what happened earlier is not counted).  Once; again is nothing."""
        if self._engaged:
            return
        self._engaged = True
        deadline = Deadline(timeout)
        self._read(deadline, "QEMU's greeting", lambda: None)
        self._send({"execute": "qmp_capabilities"})
        while "return" not in self._read(deadline, "the answer to qmp_capabilities", lambda: None):
            pass

    @property
    def stopped(self) -> bool:
        """Whether the guest is known to be stopped (from what has been read so far)."""
        return self._stops > self._conts

    def wait_stopped(self, timeout: float, abandon: Callable[[], Exception | None]):
        """Until the guest has stopped itself; MonitorError after `timeout` seconds, or as soon
        as `abandon()` names a reason to stop waiting (the guest broke)."""
        deadline = Deadline(timeout)
        while not self.stopped:
            self._read(deadline, "the guest to stop itself (QEMU's STOP)", abandon)

    def release(self):
        """Let the stopped guest run: QMP cont, its answer not awaited."""
        if not self.stopped:
            raise MonitorError("the brake's cont for a guest not known to have stopped itself")
        self._conts += 1
        self._send({"execute": "cont"})

    def resume(self, timeout: float, abandon: Callable[[], Exception | None]):
        """Let the guest run once it has stopped itself."""
        self.wait_stopped(timeout, abandon)
        self.release()

    def close(self):
        self._transcript.close()

    def _send(self, message: dict):
        line = json.dumps(message)
        self._transcript.write(f"-> {line}")
        try:
            self._sock.sendall(line.encode() + b"\n")
        except OSError as e:
            raise MonitorError(f"QEMU's monitor closed: {e}") from None

    def _read(self, deadline: Deadline, what: str, abandon: Callable[[], Exception | None]) -> dict:
        """The next message QEMU sent, counted if it is a STOP."""
        while b"\n" not in self._buffer:
            if cause := abandon():
                raise MonitorError(f"gave up waiting for {what}: {cause}")
            if deadline.passed():
                raise MonitorError(f"waited {deadline.seconds:g} s for {what}")
            self._sock.settimeout(max(min(POLL, deadline.left()), 0.001))
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as e:
                raise MonitorError(f"QEMU's monitor closed while waiting for {what}: {e}") from None
            if not data:
                raise MonitorError(f"QEMU's monitor closed while waiting for {what}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        self._transcript.write(f"<- {line.decode(errors='replace').strip()}")
        try:
            message = json.loads(line)
        except ValueError:
            raise MonitorError(f"QEMU's monitor sent what is not JSON: {line[:200]!r}") from None
        if not isinstance(message, dict):
            raise MonitorError(f"QEMU's monitor sent what is not a QMP message: {line[:200]!r}")
        if "error" in message:
            error = message["error"]
            raise MonitorError(f"QEMU refused a command on the brake monitor: {error.get('class')}: "
                               f"{error.get('desc')}" if isinstance(error, dict) else f"QEMU's monitor: {error!r}")
        event = message.get("event")
        if event == "GUEST_PANICKED":
            self._panicked = True
        elif event == "STOP" and self._panicked:
            self._stops, self._panicked = self._stops + 1, False
        return message
