"""What a scenario drives: the guest (its agent and monitor) and its netlink sockets; every call
is written to the trace with names, not numbers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..agent import Agent, Reply, Stream, errname
from ..agent.protocol import Op
from ..netlink.constants import (
    LEVEL_NAMES,
    MSG_DONTWAIT,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
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
from ..netlink.requests import getlink_request, link_request
from ..nic import resolve as resolve_nic
from ..show import show_attrs
from ..wait import Deadline, until
from .outcome import Failed
from .checks import Checks
from .timeline import Action, Timeline
from ..trace import Trace, TraceEntry


def _destination(dst: tuple[int, int] | None, family: int | None) -> dict:
    """sendmsg's msg_name as agent attributes."""
    to = {"dst_portid": dst[0], "dst_groups": dst[1]} if dst else {}
    if family is not None:
        to["dst_family"] = family
    return to


class NetlinkSocket:
    """A netlink socket in the guest; every call is traced and returns the agent's exact result.
    A socket opened with `uid` makes every call as that user."""

    def __init__(self, guest: "Guest", fd: int, inode: int, protocol: int, uid: int | None = None):
        self.g, self.fd, self.inode, self.protocol, self.uid = guest, fd, inode, protocol, uid

    def _call(self, op: Op, text: str, **attrs) -> Reply:
        r = self.g.call(op, fd=self.fd, uid=self.uid, **attrs)
        self.g.trace_result(r, f"{text} → {r.outcome()}" + (f"  [uid {self.uid}]" if self.uid is not None else ""))
        return r

    def getsockname(self) -> tuple[int, int]:
        """(portid, groups); portid is signed, as the kernel's autobind makes negative ones."""
        r = self.g.call(Op.GETSOCKNAME, fd=self.fd, uid=self.uid)
        portid = r.get("PORTID", 0)
        portid = portid - (1 << 32) if portid >= 1 << 31 else portid
        self.g.trace_result(r, f"getsockname(fd {self.fd}) → portid {portid}, groups {r.get('GROUPS', 0):#x}")
        return portid, r.get("GROUPS", 0)

    def request(self, data: bytes, timeout: float = 5.0) -> Message:
        """Send a request to the kernel and return its answer (an ack or error is NLMSG_ERROR)."""
        self.send(data)
        got = self.recv(timeout=timeout)
        self.g.require("the kernel answers the request", got.ok and got.messages, got.describe())
        return got.messages[0]

    def dump(self, request: bytes, bufsize: int = 32768, timeout: float = 5.0) -> list["Received"]:
        """Send a dump request and read datagrams until NLMSG_DONE or NLMSG_ERROR."""
        self.send(request)
        datagrams = []
        while True:
            got = self.recv(bufsize, timeout=timeout)
            self.g.require("the dump continues until NLMSG_DONE", got.ok, got.describe())
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
        r = self.g.call(Op.GETSOCKOPT, fd=self.fd, level=level, optname=option, uid=self.uid)
        value = r.get("INT_VALUE")
        self.g.trace_result(r, f"getsockopt(fd {self.fd}, {name}) → {r.outcome()}, value {value}")
        return value

    def send(self, data: bytes, flags: int = 0, dst: tuple[int, int] | None = None,
             family: int | None = None) -> Reply:
        """sendmsg; `dst` = (portid, groups) sets msg_name, `family` its nl_family (default AF_NETLINK)."""
        where = f", to portid {dst[0]} groups {dst[1]:#x}" if dst else ""
        where += f", nl_family {family}" if family is not None else ""
        return self._call(Op.SENDMSG, f"sendmsg(fd {self.fd}, {len(data)} bytes{where}, flags "
                                      f"{msg_flag_names(flags)})", data=data, flags=flags, **_destination(dst, family))

    def send_in_background(self, data: bytes, dst: tuple[int, int] | None = None) -> "BackgroundSend":
        """A blocking sendmsg run by a child of the agent, so it may sleep while the scenario
        goes on (e.g. until a receiver makes room)."""
        pending = self.g.agent.start(Op.SENDMSG, fd=self.fd, data=data, uid=self.uid, background=1,
                                     **_destination(dst, None))
        self.g.trace.add("guest", f"sendmsg(fd {self.fd}, {len(data)} bytes) started in a child process")
        return BackgroundSend(self, pending, len(data))

    def recv(self, bufsize: int = 65536, flags: int = 0, timeout: float = 5.0) -> "Received":
        """recvmsg; waits up to `timeout` for something to read unless MSG_DONTWAIT is given."""
        r = self.g.call(Op.RECVMSG, fd=self.fd, bufsize=bufsize, flags=flags, uid=self.uid,
                        timeout_ms=None if flags & MSG_DONTWAIT else int(timeout * 1000))
        if r.timed_out:
            self.g.trace_result(r, f"recvmsg(fd {self.fd}): nothing within {timeout:g} s")
            return Received(r, [])
        return self.received(r, f"recvmsg(fd {self.fd}, {bufsize}, {msg_flag_names(flags)})")

    def received(self, r: Reply, call: str) -> "Received":
        """A recvmsg result (a reply or a stream event), decoded and traced."""
        got = Received(r, decode(r.get("DATA", b""), self.protocol) if r.ret >= 0 else [])
        text = f"{call} → {r.outcome()}"
        if r.ret >= 0:
            text += f", msg_flags {msg_flag_names(r.get('MSG_FLAGS', 0))}, from portid {r.get('SRC_PORTID')}"
            if r.get("SRC_GROUPS"):
                text += f" groups {r.get('SRC_GROUPS'):#x}"
            text += "".join(f", {describe_cmsg(*c)}" for c in got.cmsgs)
        self.g.trace_result(r, text)
        latency = self.g.timeline.since_action(r) if r.get("SRC_GROUPS") else ""  # notifications only
        for m in got.messages:
            self.g.trace_result(r, f"  {m}{latency}{self.g.changes.since_last(m)}", message=m.as_dict())
        return got

    def stream(self, bufsize: int = 65536) -> "EventStream":
        """Have the agent read this socket continuously and forward each datagram the moment it
        arrives, while the scenario goes on acting (timestamps are the guest's recvmsg times)."""
        s = EventStream(self, self.g.agent.stream(self.fd, bufsize))
        self.g.trace.add("guest", f"fd {self.fd} streamed: the agent forwards each datagram as it arrives")
        return s

    def recv_link(self, ifname: str, timeout: float = 5.0) -> Message:
        """The next message, which must be an RTM_NEWLINK for `ifname`."""
        got = self.recv(timeout=timeout)
        self.g.require(f"an RTM_NEWLINK for {ifname} arrives within {timeout:g} s", got.ok and got.messages,
                       got.describe())
        m = got.messages[0]
        self.g.require(f"the next message is RTM_NEWLINK {ifname}", m.type == RTM_NEWLINK and m.ifname == ifname,
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
        messages = []
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

    def _received(self, r: Reply) -> "Received":
        return self.sock.received(r, f"event fd {self.sock.fd}")

    def stop(self, quiet: float | None = None) -> list["Received"]:
        """Stop streaming, with `quiet` once nothing has arrived for that many seconds of the
        guest's clock (the agent keeps the window, so no datagram falls between streaming and
        reading); every event not yet taken."""
        rest = [self._received(r) for r in self.stream.stop(quiet)]
        why = f": quiet for {quiet:g} s" if quiet else ""
        self.sock.g.trace.add("guest", f"fd {self.sock.fd} no longer streamed{why}")
        return rest


@dataclass
class BackgroundSend:
    sock: NetlinkSocket
    pending: object
    length: int

    def done(self) -> bool:
        return self.pending.done()

    def result(self, timeout: float = 10.0) -> Reply:
        r = self.pending.wait(timeout)
        self.sock.g.trace_result(r, f"background sendmsg(fd {self.sock.fd}, {self.length} bytes) → {r.outcome()}"
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
    def errno(self) -> str:
        return errname(self.reply.errno) if self.reply.ret < 0 and not self.reply.timed_out else "0"

    def describe(self) -> str:
        if self.reply.timed_out:
            return "nothing arrived"
        return ", ".join(map(str, self.messages)) or f"recvmsg returned {self.reply.outcome()}"


class Guest(Checks):
    """What a scenario works with: the guest (through the agent), the NIC's link (through the
    monitor), the kernel version, and the trace."""

    def __init__(self, vm, trace: Trace):
        super().__init__(trace)
        self.vm = vm
        self.agent: Agent = vm.agent
        self.kernel = vm.kernel
        self.version = vm.kernel.version  # upstream (major, minor, patch), read from the image
        self.agent_pid = vm.hello.get("PID")
        self.nic = vm.nic
        self.ifname = "eth0"
        self._seq = 0
        self.changes = Changes()
        self.timeline = Timeline(vm.agent, vm.monitor, lambda: vm.failure, clock_stops=vm.settings.accel == "tcg")

    # ---- plumbing ----

    def call(self, op: Op, **attrs) -> Reply:
        return self.agent.call(op, **attrs)

    def trace_result(self, r: Reply, text: str, **data):
        self.trace.add("guest", text, at_ns=r.get("T_NS"), **data)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ---- guest actions ----

    def socket(self, protocol: int = NETLINK_ROUTE, groups: int | None = None, rcvbuf: int | None = None,
               sndbuf: int | None = None, uid: int | None = None) -> NetlinkSocket:
        """A netlink socket; with `groups` it is also bound (autobind gives it a portid, which it
        needs to receive kernel notifications); with `uid` it is opened and used as that user."""
        r = self.call(Op.SOCKET, protocol=protocol, uid=uid)
        self.trace_result(r, f"socket(AF_NETLINK, SOCK_RAW, {PROTOCOL_NAMES.get(protocol, protocol)}) → {r.outcome()}"
                             + (f"  [uid {uid}]" if uid is not None else ""))
        if r.ret < 0:
            raise Failed(f"socket() failed: {r.outcome()}")
        sock = NetlinkSocket(self, r.ret, r.get("INODE"), protocol, uid)
        for option, value in ((SO_RCVBUF, rcvbuf), (SO_SNDBUF, sndbuf)):
            if value is not None:
                sock.setsockopt(SOL_SOCKET, option, value)
        if groups is not None:
            r = sock.bind(groups=groups)
            self.require("bind succeeds", r.ret == 0, r.outcome())
        return sock

    def sh(self, cmd: str, timeout: float = 20.0, check: bool = True, uid: int | None = None) -> str:
        """Run a shell command in the guest; returns its output.  With `check`, a non-zero exit
        fails the scenario."""
        r = self.call(Op.RUN, cmd=cmd, timeout_ms=int(timeout * 1000), uid=uid)
        output = r.get("OUTPUT", b"").decode("utf-8", "replace")
        status = "timed out" if r.timed_out else f"exit {r.get('STATUS')}"
        self.trace_result(r, f"$ {cmd} → {status}" + (f": {output.strip()}" if output.strip() else ""))
        if check and (r.timed_out or r.get("STATUS") != 0):
            raise Failed(f"guest command failed: {cmd!r} ({status}) {output.strip()}")
        return output

    def read_file(self, path: str) -> Reply:
        r = self.call(Op.READ_FILE, path=path)
        self.trace_result(r, f"read {path} → {r.outcome()}")
        return r

    def netlink_table(self) -> dict[int, dict]:
        """/proc/net/netlink by socket inode."""
        r = self.call(Op.READ_FILE, path="/proc/net/netlink")
        return proc_net_netlink(r.get("DATA", b"").decode())

    def ifindex(self, ifname: str) -> int:
        r = self.call(Op.READ_FILE, path=f"/sys/class/net/{ifname}/ifindex")
        self.require(f"{ifname} exists", r.ret > 0, r.outcome())
        return int(r["DATA"])

    def link_request(self, mtype: int, what: str, unsupported_skips: bool = False, **fields) -> None:
        """An RTM_NEWLINK/RTM_DELLINK from a root socket, which must be acked; traced as one line.
        With `unsupported_skips`, EOPNOTSUPP (no such link kind in this kernel) skips the scenario."""
        with self.trace.summarised():
            sock = self.socket()
            answer = sock.request(link_request(mtype, self.next_seq(), **fields))
            sock.close()
        ack = errname(answer.error or 0) if answer.type == NLMSG_ERROR else str(answer)
        self.trace.add("guest", f"{NLMSG_NAMES[mtype]}: {what} → {'ack' if ack == '0' else ack}")
        if unsupported_skips and ack == "EOPNOTSUPP":
            self.skip(f"kernel {self.kernel.release} cannot {what} (EOPNOTSUPP: the driver is not in this kernel)")
        self.require(f"{what} is acked", ack == "0", ack)

    def add_dummy(self, name: str) -> int:
        """Create a dummy link (through netlink, as `ip link add NAME type dummy` would); its ifindex.
        A kernel without the dummy driver skips the scenario."""
        self.link_request(RTM_NEWLINK, f"create dummy {name}", ifname=name, kind="dummy",
                          nlm_flags=NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, unsupported_skips=True)
        return self.ifindex(name)

    def set_carrier(self, ifname: str, on: bool):
        """IFLA_CARRIER through RTM_NEWLINK (`ip link set NAME carrier on|off`)."""
        self.link_request(RTM_NEWLINK, f"set {ifname} carrier {'on' if on else 'off'}",
                          ifindex=self.ifindex(ifname), carrier=int(on))

    def getlink(self, ifname: str | None = None) -> Message:
        """A fresh RTM_GETLINK for one interface (dump + filter, which 3.14 supports too)."""
        ifname = ifname or self.ifname
        with self.trace.summarised():
            sock = self.socket()
            found = [m for d in sock.dump(getlink_request(self.next_seq())) for m in d.messages if m.ifname == ifname]
            sock.close()
        self.require(f"{ifname} is in the RTM_GETLINK dump", found)
        self.trace.add("guest", f"RTM_GETLINK dump: {found[-1]}")
        return found[-1]

    def wait_until(self, ready: Callable[[], object], timeout: float = 10.0, interval: float = 0.05):
        """Poll `ready` every `interval` seconds of the guest's clock (the guest's pace, not the
        host's, sets how much happens between two polls), for `timeout` host seconds at most;
        its last value."""
        return until(ready, timeout, interval, sleep=self.timeline.sleep)

    def sleep(self, seconds: float):
        """Let `seconds` pass on the guest's clock, its timers running meanwhile."""
        end = self.timeline.sleep(seconds)
        self.trace.add("guest", f"slept {seconds:g} s", at_ns=end)

    # ---- the NIC's link, from the host ----

    def set_link(self, up: bool) -> Action:
        """QMP set_link now, with the guest stopped at the instant it happens (see timeline)."""
        return self.set_links([(0.0, up)])[0]

    def set_links(self, steps: list[tuple[float, bool]]) -> list[Action]:
        """QMP set_link at each (offset, state), offsets in seconds of the guest's clock from
        now: the spacing holds on the guest's clock however slow the host is."""
        if self.vm.nic and not resolve_nic(self.vm.nic).emulated:
            self.skip(f"{self.vm.nic} is a real card: its link is its cable, which QMP set_link cannot flip")

        entries: list[TraceEntry] = []  # placed on the guest's clock once it runs again

        def flip(i: int) -> str:
            up = steps[i][1]
            self.vm.monitor.set_link(self.vm.nic_id, up)
            what = f"QMP set_link {self.vm.nic_id} {'on' if up else 'off'}"
            entries.append(self.trace.add("host", what, set_link=up))
            return what
        return self.timeline.at([offset for offset, _ in steps], flip,
                                placed=lambda action: self.trace.place(entries.pop(0), action.reached_ns))
