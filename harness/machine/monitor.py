"""The QEMU monitor (QMP), through the QEMU project's own client, qemu.qmp.

Every command and its answer go to a transcript with host timestamps, so a trace can line up
what the host did with what the guest kernel reported.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import QMPClient, QMPError
from qemu.qmp.qmp_client import ExecuteError

from ..transcript import Transcript

T = TypeVar("T")

logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)  # failures reach the run as MonitorError lines


class MonitorError(Exception):
    """A QMP command failed or the monitor is unreachable."""


# The signals the harness and its tests turn into the end of a run (KeyboardInterrupt, exit).
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def _signals_cancel(task: asyncio.Future[Any]) -> Iterator[list[int]]:
    """While a call runs on the monitor's loop, a signal that ends the run cancels the call and is
    raised again, to its own handler, once the call has unwound, as asyncio.Runner does for
    Ctrl-C. Raised inside the loop it could land in qemu.qmp's writer task, which dies of it and
    raises it again from disconnect() during cleanup (seen in CI as an INTERNALERROR from an
    interrupted pytest-xdist worker). Yields the signals caught, in order."""
    if threading.current_thread() is not threading.main_thread():
        yield []  # Python runs signal handlers in the main thread only
        return
    held: list[int] = []

    def hold(signum, frame):
        held.append(signum)
        task.get_loop().call_soon_threadsafe(task.cancel)  # threadsafe wakes the select() it lands in
    previous = {s: h for s in HELD_SIGNALS if (h := signal.getsignal(s)) not in (None, signal.SIG_IGN)}
    for s in previous:
        signal.signal(s, hold)
    try:
        yield held
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if held:
            signal.raise_signal(held[0])


class Monitor:
    """A synchronous face on qemu.qmp's asyncio client, on an event loop of its own.

    Its own loop, rather than qemu.qmp's legacy wrapper, so that an interrupt (Ctrl-C) landing in
    the middle of a call cancels that call's task before it propagates: a half-done `connect`
    left pending would otherwise run again inside `close()` and fail there, loudly. The signals
    that end a run never raise inside the loop at all (`_signals_cancel`)."""

    def __init__(self, sock: socket.socket, transcript: Path | None = None, timeout: float = 10.0):
        self._sock = sock
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._client = QMPClient()
        # events are not kept: nothing here reads them (the brake has a monitor of its own)
        self._client.events.event_filter = lambda event: False
        self._lock = threading.Lock()  # one event loop: one caller at a time
        self._transcript = Transcript(transcript)

    def _run(self, call: Coroutine[Any, Any, T], timeout: float | None) -> T:
        task = self._loop.create_task(asyncio.wait_for(call, timeout))
        with _signals_cancel(task) as held:
            try:
                return self._loop.run_until_complete(task)
            except asyncio.CancelledError:
                if not held:
                    raise
                self._transcript.write(f"<- interrupted by {signal.Signals(held[0]).name}")
            except BaseException:
                if not task.done():  # interrupted by a signal not held: let the call unwind first
                    task.cancel()
                    self._loop.run_until_complete(asyncio.wait([task]))
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved here; what is raised is the interrupt or the error
                raise
        # the held signal's own handler ran on leaving the block and returned instead of raising
        raise MonitorError(f"QMP call interrupted by {signal.Signals(held[0]).name}")

    def connect(self):
        try:
            with self._lock:
                self._run(self._client.connect(self._sock), self._timeout)
        except (QMPError, OSError, EOFError, TimeoutError) as e:
            raise MonitorError(f"cannot talk to QEMU's monitor: {e}") from e
        greeting = self._client.greeting
        assert greeting is not None  # connect() awaits it
        self._transcript.write(f"<- {json.dumps({'QMP': {'version': greeting.QMP.version}})}")

    def command(self, name: str, /, **args):
        """Run one QMP command; returns its 'return' value or raises MonitorError."""
        self._transcript.write(f"-> {json.dumps({'execute': name, 'arguments': args})}")
        try:
            with self._lock:
                result = self._run(self._client.execute(name, args), self._timeout)
        except ExecuteError as e:  # str(e) is the error's desc (qemu.qmp has no error_desc)
            self._transcript.write(f"<- error {e.error_class}: {e}")
            raise MonitorError(f"QMP {name} {args}: {e.error_class}: {e}") from e
        except (TimeoutError, QMPError, OSError, EOFError) as e:
            self._transcript.write(f"<- failed: {e!r}")
            raise MonitorError(f"QMP {name}: no answer from QEMU ({type(e).__name__}: {e})") from e
        self._transcript.write(f"<- {json.dumps(result)}")
        return result

    def set_link(self, device: str, up: bool):
        """QMP set_link: QEMU emits no event for it and accepts it even for NICs that ignore it."""
        self.command("set_link", name=device, up=up)

    def quit(self):
        self.command("quit")

    def close(self):
        if self._loop.is_closed():
            return
        try:
            with self._lock:
                self._run(self._client.disconnect(), self._timeout)
        except (QMPError, OSError, EOFError, TimeoutError):
            pass
        finally:
            self._loop.close()
            self._transcript.close()
