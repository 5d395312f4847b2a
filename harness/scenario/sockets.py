"""The scenario's netlink sockets in the guest: every call traced with names, not numbers, and
what it received decoded."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

from ..agent import Pending, Reply, Stream, errname
from ..agent.protocol import Op
from ..netlink.constants import (
    LEVEL_NAMES,
    MSG_DONTWAIT,
    NETLINK_ROUTE,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NAMES,
    OPTION_NAMES,
    PROTOCOL_NAMES,
    RTM_NEWLINK,
    SO_RCVBUF,
    SO_SNDBUF,
    SOL_SOCKET,
    msg_flag_names,
)
from ..netlink.decode import decode, decode_cmsgs, describe_cmsg
from ..netlink.message import Message
from ..netlink.proc import proc_net_netlink
from ..show import show_attrs
from ..wait import Deadline
from .calls import Calls
from .checks import Checks
from .outcome import Failed
from .timeline import Timeline


def _destination(dst: tuple[int, int] | None, family: int | None) -> dict:
    """sendmsg's msg_name as agent attributes."""
    to = {"dst_portid": dst[0], "dst_groups": dst[1]} if dst else {}
    if family is not None:
        to["dst_family"] = family
    return to


@dataclass(frozen=True)
class SocketUses:
    """What the scenario's netlink sockets use: the agent's calls, the checks (a failed
    precondition of theirs ends the scenario), and what a received message's line says: how long
    after the last host action it came (timeline) and what it changed (changes)."""
    calls: Calls
    checks: Checks
    timeline: Timeline
    changes: Changes


class NetlinkSocket:
    """A netlink socket in the guest; every call is traced and returns the agent's exact result.
    A socket opened with `uid` makes every call as that user."""

    def __init__(self, uses: SocketUses, fd: int, inode: int, protocol: int, uid: int | None = None):
        self.uses, self.fd, self.inode, self.protocol, self.uid = uses, fd, inode, protocol, uid
        self.calls, self.checks = uses.calls, uses.checks

    def _call(self, op: Op, text: str, **attrs) -> Reply:
        r = self.calls.call(op, fd=self.fd, uid=self.uid, **attrs)
        self.calls.traced(r, f"{text} → {r.outcome()}" + (f"  [uid {self.uid}]" if self.uid is not None else ""))
        return r

    def getsockname(self) -> tuple[int, int]:
        """(portid, groups); portid is signed, as the kernel's autobind makes negative ones."""
        r = self.calls.call(Op.GETSOCKNAME, fd=self.fd, uid=self.uid)
        portid = r.get("PORTID", 0)
        portid = portid - (1 << 32) if portid >= 1 << 31 else portid
        self.calls.traced(r, f"getsockname(fd {self.fd}) → portid {portid}, groups {r.get('GROUPS', 0):#x}")
        return portid, r.get("GROUPS", 0)

    def request(self, data: bytes, timeout: float = 5.0) -> Message:
        """Send a request to the kernel and return its answer (an ack or error is NLMSG_ERROR)."""
        self.send(data)
        got = self.recv(timeout=timeout)
        self.checks.require("the kernel answers the request", got.ok and got.messages, got.describe())
        return got.messages[0]

    def dump(self, request: bytes, bufsize: int = 32768, timeout: float = 5.0) -> list[Received]:
        """Send a dump request and read datagrams until NLMSG_DONE or NLMSG_ERROR."""
        self.send(request)
        datagrams = []
        while True:
            got = self.recv(bufsize, timeout=timeout)
            self.checks.require("the dump continues until NLMSG_DONE", got.ok, got.describe())
            datagrams.append(got)
            if any(m.type in (NLMSG_DONE, NLMSG_ERROR) for m in got.messages):
                return datagrams

    def bind(self, portid: int = 0, groups: int = 0, family: int | None = None) -> Reply:
        return self._call(Op.BIND, f"bind(fd {self.fd}, portid {portid}, groups {groups:#x})",
                          portid=portid, groups=groups, family=family)

    def connect(self, portid: int = 0, groups: int = 0, family: int | None = None) -> Reply:
        return self._call(Op.CONNECT, f"connect(fd {self.fd}, portid {portid}, groups {groups:#x})",
                          portid=portid, groups=groups, family=family)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> Reply:
        name = OPTION_NAMES.get((level, option), f"{LEVEL_NAMES.get(level, level)}/{option}")
        as_attr = {"value": value} if isinstance(value, bytes) else {"int_value": value}
        return self._call(Op.SETSOCKOPT, f"setsockopt(fd {self.fd}, {name}, {value!r})",
                          level=level, optname=option, **as_attr)

    def getsockopt(self, level: int, option: int) -> int:
        name = OPTION_NAMES.get((level, option), f"{LEVEL_NAMES.get(level, level)}/{option}")
        r = self.calls.call(Op.GETSOCKOPT, fd=self.fd, level=level, optname=option, uid=self.uid)
        value = r.get("INT_VALUE")
        self.calls.traced(r, f"getsockopt(fd {self.fd}, {name}) → {r.outcome()}, value {value}")
        return value

    def send(self, data: bytes, flags: int = 0, dst: tuple[int, int] | None = None,
             family: int | None = None) -> Reply:
        """sendmsg; `dst` = (portid, groups) sets msg_name, `family` its nl_family (default AF_NETLINK)."""
        where = f", to portid {dst[0]} groups {dst[1]:#x}" if dst else ""
        where += f", nl_family {family}" if family is not None else ""
        return self._call(Op.SENDMSG, f"sendmsg(fd {self.fd}, {len(data)} bytes{where}, flags "
                                      f"{msg_flag_names(flags)})", data=data, flags=flags, **_destination(dst, family))

    def send_in_background(self, data: bytes, dst: tuple[int, int] | None = None) -> BackgroundSend:
        """A blocking sendmsg run by a child of the agent, so it may sleep while the scenario
        goes on (e.g. until a receiver makes room)."""
        pending = self.calls.start(Op.SENDMSG, fd=self.fd, data=data, uid=self.uid, background=1,
                                     **_destination(dst, None))
        self.calls.said(f"sendmsg(fd {self.fd}, {len(data)} bytes) started in a child process")
        return BackgroundSend(self, pending, len(data))

    def recv(self, bufsize: int = 65536, flags: int = 0, timeout: float = 5.0) -> Received:
        """recvmsg; waits up to `timeout` for something to read unless MSG_DONTWAIT is given."""
        r = self.calls.call(Op.RECVMSG, fd=self.fd, bufsize=bufsize, flags=flags, uid=self.uid,
                        timeout_ms=None if flags & MSG_DONTWAIT else int(timeout * 1000))
        if r.timed_out:
            self.calls.traced(r, f"recvmsg(fd {self.fd}): nothing within {timeout:g} s")
            return Received(r, [])
        return self.received(r, f"recvmsg(fd {self.fd}, {bufsize}, {msg_flag_names(flags)})")

    def received(self, r: Reply, call: str) -> Received:
        """A recvmsg result (a reply or a stream event), decoded and traced."""
        got = Received(r, decode(r.get("DATA", b""), self.protocol) if r.ret >= 0 else [])
        text = f"{call} → {r.outcome()}"
        if r.ret >= 0:
            text += f", msg_flags {msg_flag_names(r.get('MSG_FLAGS', 0))}, from portid {r.get('SRC_PORTID')}"
            if r.get("SRC_GROUPS"):
                text += f" groups {r.get('SRC_GROUPS'):#x}"
            text += "".join(f", {describe_cmsg(*c)}" for c in got.cmsgs)
        self.calls.traced(r, text)
        latency = self.uses.timeline.since_action(r) if r.get("SRC_GROUPS") else ""  # notifications only
        for m in got.messages:
            self.calls.traced(r, f"  {m}{latency}{self.uses.changes.since_last(m)}", message=m.as_dict())
        return got

    def stream(self, bufsize: int = 65536) -> EventStream:
        """Have the agent read this socket continuously and forward each datagram the moment it
        arrives, while the scenario goes on acting (timestamps are the guest's recvmsg times)."""
        s = EventStream(self, self.calls.stream(self.fd, bufsize))
        self.calls.said(f"fd {self.fd} streamed: the agent forwards each datagram as it arrives")
        return s

    def recv_link(self, ifname: str, timeout: float = 5.0) -> Message:
        """The next message, which must be an RTM_NEWLINK for `ifname`."""
        got = self.recv(timeout=timeout)
        self.checks.require(f"an RTM_NEWLINK for {ifname} arrives within {timeout:g} s", got.ok and got.messages,
                       got.describe())
        m = got.messages[0]
        self.checks.require(f"the next message is RTM_NEWLINK {ifname}", m.type == RTM_NEWLINK and m.ifname == ifname,
                       str(m))
        return m

    def wait_link(self, ifname: str, match: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """Read until an RTM_NEWLINK for `ifname` satisfies `match` (other messages are traced)."""
        deadline = Deadline(timeout)
        while not deadline.passed():
            got = self.recv(timeout=deadline.left())
            for m in got.messages:
                if m.type == RTM_NEWLINK and m.ifname == ifname and match(m):
                    return m
            if got.reply.timed_out:
                break
        raise Failed(f"no matching RTM_NEWLINK for {ifname} within {timeout:g} s")

    def wait_link_event(self, ifname: str, until_type: int, timeout: float = 10.0) -> list[Message]:
        """Every message for `ifname` up to and including the first of type `until_type`."""
        deadline, seen = Deadline(timeout), []
        while not deadline.passed():
            got = self.recv(timeout=deadline.left())
            seen += [m for m in got.messages if m.ifname == ifname]
            if any(m.type == until_type for m in seen):
                return seen
        raise Failed(f"no {NLMSG_NAMES.get(until_type, until_type)} for {ifname} within {timeout:g} s")

    def drain(self, quiet: float = 1.0) -> list[Message]:
        """Read until nothing arrives for `quiet` seconds; returns what was read."""
        messages: list[Message] = []
        while True:
            got = self.recv(timeout=quiet)
            if not got.ok:
                return messages
            messages += got.messages

    def close(self) -> Reply:
        return self._call(Op.CLOSE, f"close(fd {self.fd})")


@dataclass
class EventStream:
    sock: NetlinkSocket
    stream: Stream

    def _received(self, r: Reply) -> Received:
        return self.sock.received(r, f"event fd {self.sock.fd}")

    def stop(self, quiet: float | None = None) -> list[Received]:
        """Stop streaming, with `quiet` once nothing has arrived for that many seconds of the
        guest's clock (the agent keeps the window, so no datagram falls between streaming and
        reading); every event not yet taken."""
        rest = [self._received(r) for r in self.stream.stop(quiet)]
        why = f": quiet for {quiet:g} s" if quiet else ""
        self.sock.calls.said(f"fd {self.sock.fd} no longer streamed{why}")
        return rest


@dataclass
class BackgroundSend:
    sock: NetlinkSocket
    pending: Pending
    length: int

    def done(self) -> bool:
        return self.pending.done()

    def result(self, timeout: float = 10.0) -> Reply:
        r = self.pending.wait(timeout)
        self.sock.calls.traced(r, f"background sendmsg(fd {self.sock.fd}, {self.length} bytes) → {r.outcome()}"
                               f" after {(r['T_NS'] - r['T_START_NS']) / 1e6:.0f} ms")
        return r


class Changes:
    """What each message changed since the previous one about the same object (a link, an
    address...), as its trace line says it."""

    def __init__(self):
        self._last: dict[tuple, dict] = {}  # by Message.key: the attributes last seen

    def since_last(self, m: Message) -> str:
        """'  changed: IFLA_MTU=1400, ...'; nothing for the first message about an object."""
        if m.key is None:
            return ""
        before = self._last.get(m.key)
        self._last[m.key] = m.attrs
        changed = m.changed_since(before) if before is not None else {}
        return f"  changed: {show_attrs(changed)}" if changed else ""


@dataclass
class Received:
    reply: Reply
    messages: list[Message]

    @property
    def cmsgs(self) -> list[tuple[int, int, bytes]]:
        return decode_cmsgs(self.reply.get("CONTROL", b""))

    @property
    def ok(self) -> bool:
        return self.reply.ret >= 0 and not self.reply.timed_out

    @property
    def errname(self) -> str:
        return errname(self.reply.errno) if self.reply.ret < 0 and not self.reply.timed_out else "0"

    def describe(self) -> str:
        if self.reply.timed_out:
            return "nothing arrived"
        return ", ".join(map(str, self.messages)) or f"recvmsg returned {self.reply.outcome()}"


class Sockets:
    """Opens the scenario's netlink sockets, and numbers its requests."""

    def __init__(self, uses: SocketUses):
        self.uses, self.calls = uses, uses.calls
        self._seq = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def open(self, protocol: int = NETLINK_ROUTE, groups: int | None = None, rcvbuf: int | None = None,
             sndbuf: int | None = None, uid: int | None = None) -> NetlinkSocket:
        """A netlink socket; with `groups` it is also bound (autobind gives it a portid, which it
        needs to receive kernel notifications); with `uid` it is opened and used as that user."""
        r = self.calls.call(Op.SOCKET, protocol=protocol, uid=uid)
        self.calls.traced(r, f"socket(AF_NETLINK, SOCK_RAW, {PROTOCOL_NAMES.get(protocol, protocol)}) → {r.outcome()}"
                          + (f"  [uid {uid}]" if uid is not None else ""))
        if r.ret < 0:
            raise Failed(f"socket() failed: {r.outcome()}")
        sock = NetlinkSocket(self.uses, r.ret, r.get("INODE"), protocol, uid)
        for option, value in ((SO_RCVBUF, rcvbuf), (SO_SNDBUF, sndbuf)):
            if value is not None:
                sock.setsockopt(SOL_SOCKET, option, value)
        if groups is not None:
            r = sock.bind(groups=groups)
            self.uses.checks.require("bind succeeds", r.ret == 0, r.outcome())
        return sock

    def table(self) -> dict[int, dict]:
        """/proc/net/netlink by socket inode."""
        r = self.calls.call(Op.READ_FILE, path="/proc/net/netlink")
        return proc_net_netlink(r.get("DATA", b"").decode())
