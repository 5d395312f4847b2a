"""Host side of the agent channel: send requests, wait for replies, keep a transcript.

Every wait has a timeout, and a failure elsewhere (kernel panic on the console, QEMU exiting,
the channel closing) is delivered to whoever is waiting through `fail()`, so nothing hangs.
"""
from __future__ import annotations

import collections
import errno as errno_mod
import itertools
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from collections.abc import Callable

from ..cpu import MeteredThread
from ..transcript import Transcript
from ..wait import Deadline
from .protocol import Frame, FrameReader, Kind, Op, ProtocolError, encode_frame


class AgentError(Exception):
    """The agent could not do what was asked, or the channel to it is gone."""


class AgentTimeout(AgentError):
    pass


STOP_WAIT = 10.0  # host seconds for a guest to stop itself once it has sent a held reply
# What closes the channel (a panic, QEMU's exit) reaches fail() a moment after the close, at most
# this long, and names the cause better than the close does.
CLOSE_GRACE = 1.0


# Where Linux has two names for one errno, the one the kernel sources use.
_KERNEL_NAMES = {errno_mod.EOPNOTSUPP: "EOPNOTSUPP", errno_mod.EAGAIN: "EAGAIN"}


def errname(code: int | None) -> str:
    if not code:
        return "0"
    return _KERNEL_NAMES.get(code) or errno_mod.errorcode.get(code, f"errno {code}")


class Reply:
    """One request's outcome: `ret`, `errno`, the CLOCK_MONOTONIC time `t_ns`, and all attributes."""

    def __init__(self, attrs: dict):
        self.attrs = attrs

    def __getitem__(self, name):
        return self.attrs[name]

    def get(self, name, default=None):
        return self.attrs.get(name, default)

    @property
    def ret(self) -> int:
        return self.attrs.get("RET", -1)

    @property
    def errno(self) -> int:
        return self.attrs.get("ERRNO", 0)

    @property
    def timed_out(self) -> bool:
        return bool(self.attrs.get("TIMED_OUT"))

    def outcome(self) -> str:
        """The syscall's result as a person reads it: '-1 ENOBUFS', '0', 'timed out'."""
        if self.timed_out:
            return "timed out (nothing to read)"
        return f"-1 {errname(self.errno)}" if self.ret < 0 else str(self.ret)


class Channel(Protocol):
    """What the agent reads and writes: the serial port's socket, or an SSH session (AgentChannel)."""
    def recv(self, size: int, /) -> bytes: ...
    def sendall(self, data: bytes, /) -> object: ...
    def shutdown(self, how: int, /) -> None: ...
    def close(self) -> None: ...


class Brake(Protocol):
    """What lock-step needs of the guest's brake (harness.machine.brake.Brake)."""
    def resume(self, timeout: float, abandon: Callable[[], Exception | None]) -> None:
        """Once the guest has stopped itself, let it run; give up when `abandon()` names a cause."""


@dataclass
class Paused:
    """The guest stopped by the host to act on it (harness.scenario.timeline), while `pending` (the
    request that stopped it) waits for it to run again.  The agent lets it run before its next
    wait on the guest: `cont` (the brake's), then `pending`'s reply, which goes to `resumed`."""
    cont: Callable[[], object]
    pending: Pending
    resumed: Callable[[Reply], None]


class Agent:
    def __init__(self, sock: Channel, transcript: Path | None = None):
        self._sock = sock
        self._reader = FrameReader()
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._replies: dict[int, Frame] = {}
        self._events: dict[int, collections.deque[Frame]] = {}  # by STREAM request id
        self._hello: Frame | None = None
        self._failure: Exception | None = None
        self._transcript = Transcript(transcript)
        self.protocol_errors: list[str] = []
        # A guest the host stopped to act on runs again only once the host waits on it.
        self.paused: Paused | None = None
        # Lock-step: calls ask the guest to stop itself once it has replied (HOLD); `_held`: the
        # replies that said it would (HELD), not yet followed by the brake letting it run.
        self._brake: Brake | None = None
        self._held: set[int] = set()
        self.latest_ns = 0  # the latest guest CLOCK_MONOTONIC any frame carried
        self._closing = False
        self._thread = MeteredThread(target=self._read_loop, name="agent-reader", daemon=True)
        self._thread.start()

    # ---- reading ----

    def _read_loop(self):
        while True:
            closed: OSError | None = None
            try:
                data = self._sock.recv(65536)
            except OSError as e:
                data, closed = b"", e
            if not data:
                with self._cond:  # the cause, if one comes (CLOSE_GRACE), wins: the first failure does
                    self._cond.wait_for(lambda: self._failure is not None or self._closing, CLOSE_GRACE)
                self.fail(AgentError(f"agent channel closed{f': {closed}' if closed else ''}"))
                return
            for item in self._reader.feed(data):
                if isinstance(item, ProtocolError):
                    self.protocol_errors.append(str(item))
                    self._transcript.write(f"!! protocol error: {item}")
                    continue
                self._transcript.write(f"<- {Kind(item.kind).name} id={item.id} {_short(item.attrs)}")
                self._receive(item)

    def _receive(self, frame: Frame):
        t_ns = frame.attrs.get("T_NS")
        with self._cond:
            if isinstance(t_ns, int):
                self.latest_ns = max(self.latest_ns, t_ns)
            if frame.kind == Kind.HELLO:
                self._hello = frame
            elif frame.kind == Kind.REPLY:
                self._replies[frame.id] = frame
                if frame.attrs.get("HELD"):
                    self._held.add(frame.id)
            elif frame.kind == Kind.EVENT:
                self._events.setdefault(frame.id, collections.deque()).append(frame)
            elif frame.kind == Kind.ERROR:
                self.protocol_errors.append(frame.attrs.get("ERROR", "?"))
            self._cond.notify_all()

    def _wait(self, ready, timeout: float, what: str, awaited: int | None = None):
        """`ready()` once it is not None; `awaited`: the request whose reply that is."""
        deadline = Deadline(timeout)
        if self._failure is None:
            self._resume(keep=awaited)
        return self._await(ready, deadline, timeout, what, awaited)

    def _await(self, ready, deadline: Deadline, timeout: float, what: str, awaited: int | None = None):
        with self._cond:
            while (result := ready()) is None:
                if self._failure:
                    raise self._failure
                if deadline.passed():
                    raise AgentTimeout(f"no answer from the guest agent to {what} within {timeout:g} s")
                if self._held - {awaited}:  # stopped after another reply (one that came late): let it run
                    self._cond.release()
                    try:
                        self._release_held(awaited)
                    finally:
                        self._cond.acquire()
                    continue
                self._cond.wait(deadline.left())
            return result

    def _release_held(self, keep: int | None = None):
        """Let a guest that stopped itself after a held reply run, unless that reply is the one
        the host is about to wait for (`keep`): it came first, and the guest stays stopped until
        the host next waits on it."""
        with self._cond:
            if not self._held - {keep}:
                return
            self._held.clear()
        if self._brake:
            self._brake.resume(STOP_WAIT, lambda: self._failure)

    # ---- public ----

    def pause(self, paused: Paused):
        """The guest is stopped until the host next waits on it (see Paused)."""
        self.paused = paused

    def lock_step(self, brake: Brake):
        """From now on the guest runs only while the host waits on it: each call asks it to stop
        itself once it has replied, and `brake` lets it run (once it has stopped) before the host
        next waits.  An agent that cannot stop its machine (not on a serial port) says so by not
        marking its replies HELD, and simply runs on."""
        self._brake = brake

    def resume(self):
        """Let a stopped guest run (nothing if it is running); for one the host paused, hand on
        the reply that says it ran again."""
        self._resume()

    def _resume(self, keep: int | None = None):
        paused, self.paused = self.paused, None
        if paused is None:
            self._release_held(keep)
            return
        paused.cont()
        ident, name, timeout = paused.pending.ident, paused.pending.name, 10.0 + paused.pending.guest_wait
        frame = self._await(lambda: self._replies.pop(ident, None), Deadline(timeout), timeout, name)
        paused.resumed(_reply(frame, name))

    @property
    def failure(self) -> Exception | None:
        """What broke the channel (a panic, QEMU exiting), once something has."""
        return self._failure

    def fail(self, exc: Exception):
        """Make every current and future wait raise `exc` (the first failure wins)."""
        with self._cond:
            if self._failure is None:
                self._failure = exc
                self._transcript.write(f"!! failed: {exc}")
            self._cond.notify_all()

    def wait_ready(self, timeout: float) -> dict:
        """Wait for the agent's HELLO; returns its attributes (VERSION, RELEASE, PID)."""
        return self._wait(lambda: self._hello, timeout, "the boot (waiting for its HELLO)").attrs

    def call(self, op: Op | int, timeout: float = 10.0, **attrs) -> Reply:
        """Send one request and wait for its reply; a request-level ERROR raises AgentError.
        In lock-step the guest stops once it has replied, until the host next waits on it."""
        return self.start(op, hold=1 if self._brake else None, **attrs).wait(timeout)

    def start(self, op: Op | int, **attrs) -> Pending:
        """Send one request without waiting; with background=1 the agent runs it in a child
        process and keeps serving other requests meanwhile (a blocking sendmsg, say)."""
        ident = next(self._ids)
        name = Op(op).name if op in Op._value2member_map_ else f"op {op}"
        attrs = {"OP": int(op), **{k.upper(): v for k, v in attrs.items() if v is not None}}
        self._transcript.write(f"-> REQUEST id={ident} {name} {_short(attrs)}")
        try:
            self._sock.sendall(encode_frame(Kind.REQUEST, ident, attrs))
        except OSError as e:
            self.fail(AgentError(f"agent channel closed: {e}"))
        return Pending(self, ident, name, attrs.get("TIMEOUT_MS", 0) / 1000)

    def send_bytes(self, data: bytes):
        """`data` onto the channel as it is, framed or not: what the tests of the agent's frame
        reader send it."""
        self._sock.sendall(data)

    def reply(self, ident: int, name: str, timeout: float) -> Reply:
        """The reply to request `ident`, waiting up to `timeout` seconds."""
        return _reply(self._wait(lambda: self._replies.pop(ident, None), timeout, name, ident), name)

    def answered(self, ident: int) -> bool:
        with self._cond:
            return ident in self._replies

    def next_event(self, ident: int, timeout: float) -> Reply | None:
        """The next event of stream `ident`, or None if none arrives within `timeout` seconds."""
        queue = self._events[ident]
        try:
            return Reply(self._wait(lambda: queue.popleft() if queue else None, timeout, "a stream event").attrs)
        except AgentTimeout:
            return None

    def end_stream(self, ident: int, fd: int, quiet: float | None = None, timeout: float = 60.0) -> list[Reply]:
        """Stop stream `ident` (with `quiet`: once nothing has arrived for that many seconds of
        the guest's clock, up to `timeout` host seconds); the events not yet taken, all of which
        precede the reply."""
        self.start(Op.UNSTREAM, fd=fd, timeout_ms=int(quiet * 1000) if quiet else None).wait(timeout)
        with self._cond:
            return [Reply(frame.attrs) for frame in self._events.pop(ident)]

    def stream(self, fd: int, bufsize: int | None = None) -> Stream:
        """From now on the agent sends everything `fd` receives as it arrives (Op.STREAM); the
        host keeps issuing other requests meanwhile.  Nothing else may read `fd` until stop()."""
        pending = self.start(Op.STREAM, fd=fd, bufsize=bufsize)
        with self._cond:
            self._events.setdefault(pending.ident, collections.deque())
        reply = pending.wait()
        if reply.ret < 0:
            raise AgentError(f"cannot stream fd {fd}: {reply.outcome()}")
        return Stream(self, fd, pending.ident)

    @property
    def cpu_seconds(self) -> float:
        """What reading the channel cost, once closed."""
        return self._thread.cpu_seconds

    def close(self):
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        self._transcript.close()


class Stream:
    """The datagrams (or errors, such as ENOBUFS) one streamed socket received, in order."""

    def __init__(self, agent: Agent, fd: int, ident: int):
        self.agent, self.fd, self.ident = agent, fd, ident

    def next(self, timeout: float) -> Reply | None:
        """The next event, or None if none arrives within `timeout` seconds."""
        return self.agent.next_event(self.ident, timeout)

    def stop(self, quiet: float | None = None) -> list[Reply]:
        """Stop streaming (with `quiet`: once the socket has been quiet that long on the guest's
        clock); returns the events not yet taken (all of them precede the reply)."""
        return self.agent.end_stream(self.ident, self.fd, quiet)


class Pending:
    """A request sent and not yet answered."""

    def __init__(self, agent: Agent, ident: int, name: str, guest_wait: float):
        self.agent, self.ident, self.name, self.guest_wait = agent, ident, name, guest_wait

    def wait(self, timeout: float = 10.0) -> Reply:
        # The agent's own wait (TIMEOUT_MS) runs inside the guest; allow for it plus slack.
        return self.agent.reply(self.ident, self.name, timeout + self.guest_wait)

    def done(self) -> bool:
        return self.agent.answered(self.ident)


def _reply(frame: Frame, name: str) -> Reply:
    if "ERROR" in frame.attrs:
        raise AgentError(f"agent rejected {name}: {frame.attrs['ERROR']}")
    return Reply(frame.attrs)


def _short(attrs: dict) -> str:
    def show(v):
        if isinstance(v, bytes):
            return f"<{len(v)} bytes>" if len(v) > 48 else v.hex() or "''"
        return repr(v)
    return " ".join(f"{k}={show(v)}" for k, v in attrs.items())
