"""Writing scenarios: a scenario is a Python function that drives the guest and the monitor
through a `Guest` and states what the kernel must have done.

    @scenario("carrier-qmp", "set_link off/on -> one RTM_NEWLINK each",
              source="net/core/link_watch.c:linkwatch_do_dev")
    def carrier_qmp(g: Guest):
        mon = g.socket(groups=RTMGRP_LINK)
        g.sh("ip link set eth0 up")
        mon.wait_link("eth0", lambda m: m.has("LOWER_UP"))
        g.set_link(False)
        down = mon.recv_link("eth0")
        g.expect("operstate after set_link off", down.operstate, "DOWN")

Every call is written to the trace with names, not numbers; `expect` failing ends the scenario
with verdict 'failed' (the kernel did not do what was expected); `g.skip(reason)` marks it as not
applicable to this kernel or NIC.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from .agent import Agent, Reply, errname
from .netlink import (MSG_DONTWAIT, NETLINK_ROUTE, RTM_NEWLINK, SOL_NETLINK, SOL_SOCKET, SO_RCVBUF,
                      SO_SNDBUF, Message, decode, decode_cmsgs, describe_cmsg, getlink_request, msg_flag_names,
                      proc_net_netlink)
from .protocol import Op

PROTOCOLS = {0: "NETLINK_ROUTE", 2: "NETLINK_USERSOCK"}
LEVELS = {SOL_SOCKET: "SOL_SOCKET", SOL_NETLINK: "SOL_NETLINK"}
OPTIONS = {(SOL_SOCKET, SO_SNDBUF): "SO_SNDBUF", (SOL_SOCKET, SO_RCVBUF): "SO_RCVBUF",
           (SOL_NETLINK, 1): "NETLINK_ADD_MEMBERSHIP", (SOL_NETLINK, 2): "NETLINK_DROP_MEMBERSHIP",
           (SOL_NETLINK, 3): "NETLINK_PKTINFO", (SOL_NETLINK, 4): "NETLINK_BROADCAST_ERROR",
           (SOL_NETLINK, 5): "NETLINK_NO_ENOBUFS"}


class Skip(Exception):
    """The scenario does not apply to this kernel or NIC; the message says why."""


class Failed(AssertionError):
    """The kernel did not behave as the scenario expects."""


@dataclass
class ScenarioInfo:
    name: str
    description: str
    source: str            # the kernel source the scenario is about (file:function, ...)
    needs_nic: bool
    func: Callable[["Guest"], None]


SCENARIOS: dict[str, ScenarioInfo] = {}


def scenario(name: str, description: str, source: str, needs_nic: bool = True):
    def register(func):
        SCENARIOS[name] = ScenarioInfo(name, description, source, needs_nic, func)
        return func
    return register


@dataclass
class TraceEntry:
    t: float        # seconds since the scenario started, host clock (guest times mapped onto it)
    actor: str      # guest | host | check | note
    text: str
    data: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.t:+8.3f}  {self.actor:<5}  {self.text}"


class Trace:
    def __init__(self):
        self.t0 = time.monotonic()
        self.entries: list[TraceEntry] = []

    def add(self, actor: str, text: str, at: float | None = None, **data) -> TraceEntry:
        entry = TraceEntry((at if at is not None else time.monotonic()) - self.t0, actor, text, data)
        self.entries.append(entry)
        return entry


class NetlinkSocket:
    """A netlink socket in the guest; every call is traced and returns the agent's exact result."""

    def __init__(self, guest: "Guest", fd: int, inode: int, protocol: int):
        self.g, self.fd, self.inode, self.protocol = guest, fd, inode, protocol

    def _call(self, op: Op, text: str, **attrs) -> Reply:
        r = self.g.call(op, fd=self.fd, **attrs)
        self.g.trace_result(r, f"{text} → {r.outcome()}")
        return r

    def bind(self, portid: int = 0, groups: int = 0, family: int | None = None) -> Reply:
        return self._call(Op.BIND, f"bind(fd {self.fd}, portid {portid}, groups {groups:#x})",
                          portid=portid, groups=groups, family=family)

    def connect(self, portid: int = 0, groups: int = 0, family: int | None = None) -> Reply:
        return self._call(Op.CONNECT, f"connect(fd {self.fd}, portid {portid}, groups {groups:#x})",
                          portid=portid, groups=groups, family=family)

    def setsockopt(self, level: int, option: int, value: int | bytes) -> Reply:
        name = OPTIONS.get((level, option), f"{LEVELS.get(level, level)}/{option}")
        as_attr = {"value": value} if isinstance(value, bytes) else {"int_value": value}
        return self._call(Op.SETSOCKOPT, f"setsockopt(fd {self.fd}, {name}, {value!r})",
                          level=level, optname=option, **as_attr)

    def getsockopt(self, level: int, option: int) -> int:
        name = OPTIONS.get((level, option), f"{LEVELS.get(level, level)}/{option}")
        r = self.g.call(Op.GETSOCKOPT, fd=self.fd, level=level, optname=option)
        value = r.get("INT_VALUE")
        self.g.trace_result(r, f"getsockopt(fd {self.fd}, {name}) → {r.outcome()}, value {value}")
        return value

    def send(self, data: bytes, flags: int = 0, dst: tuple[int, int] | None = None) -> Reply:
        to = {"dst_portid": dst[0], "dst_groups": dst[1]} if dst else {}
        where = f", to portid {dst[0]} groups {dst[1]:#x}" if dst else ""
        return self._call(Op.SENDMSG, f"sendmsg(fd {self.fd}, {len(data)} bytes{where}, flags "
                                      f"{msg_flag_names(flags)})", data=data, flags=flags, **to)

    def recv(self, bufsize: int = 65536, flags: int = 0, timeout: float = 5.0) -> "Received":
        """recvmsg; waits up to `timeout` for something to read unless MSG_DONTWAIT is given."""
        r = self.g.call(Op.RECVMSG, fd=self.fd, bufsize=bufsize, flags=flags,
                        timeout_ms=None if flags & MSG_DONTWAIT else int(timeout * 1000))
        got = Received(r, decode(r.get("DATA", b"")) if r.ret >= 0 else [])
        text = f"recvmsg(fd {self.fd}, {bufsize}, {msg_flag_names(flags)}) → {r.outcome()}"
        if r.ret >= 0:
            text += f", msg_flags {msg_flag_names(r.get('MSG_FLAGS', 0))}, from portid {r.get('SRC_PORTID')}"
            if r.get("SRC_GROUPS"):
                text += f" groups {r.get('SRC_GROUPS'):#x}"
            text += "".join(f", {describe_cmsg(*c)}" for c in got.cmsgs)
        elif r.timed_out:
            text = f"recvmsg(fd {self.fd}): nothing within {timeout:g} s"
        self.g.trace_result(r, text)
        latency = self.g.since_host_action(r) if r.get("SRC_GROUPS") else ""  # notifications only
        for m in got.messages:
            self.g.trace_result(r, f"  {m}{latency}", message=m.as_dict())
        return got

    def recv_link(self, ifname: str, timeout: float = 5.0) -> Message:
        """The next message, which must be an RTM_NEWLINK for `ifname`."""
        got = self.recv(timeout=timeout)
        self.g.expect_true(f"an RTM_NEWLINK for {ifname} arrives within {timeout:g} s",
                           got.ok and got.messages, got.describe())
        m = got.messages[0]
        self.g.expect_true(f"the next message is RTM_NEWLINK {ifname}",
                           m.type == RTM_NEWLINK and m.ifname == ifname, str(m))
        return m

    def wait_link(self, ifname: str, match: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """Read until an RTM_NEWLINK for `ifname` satisfies `match` (other messages are traced)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(timeout=left)
            for m in got.messages:
                if m.type == RTM_NEWLINK and m.ifname == ifname and match(m):
                    return m
            if got.reply.timed_out:
                break
        raise Failed(f"no matching RTM_NEWLINK for {ifname} within {timeout:g} s")

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


class Guest:
    """What a scenario works with: the guest (through the agent), the NIC's link (through the
    monitor), the kernel version, and the trace."""

    def __init__(self, vm, trace: Trace):
        self.vm, self.trace = vm, trace
        self.agent: Agent = vm.agent
        self.kernel = vm.kernel
        self.version = vm.kernel.version  # upstream (major, minor, patch), read from the image
        self.nic = vm.nic
        self.ifname = "eth0"
        self._seq = 0
        self._last_host_action: tuple[float, str] | None = None

    # ---- plumbing ----

    def call(self, op: Op, **attrs) -> Reply:
        return self.agent.call(op, **attrs)

    def trace_result(self, r: Reply, text: str, **data):
        at = self.agent.host_time(r["T_NS"]) if "T_NS" in r.attrs else None
        self.trace.add("guest", text, at=at, **data)

    def since_host_action(self, r: Reply) -> str:
        """'  (+4 ms after QMP set_link nic0 off)': how long the kernel took to report it."""
        if not self._last_host_action or "T_NS" not in r.attrs:
            return ""
        at, what = self._last_host_action
        return f"  (+{(self.agent.host_time(r['T_NS']) - at) * 1000:.0f} ms after {what})"

    def note(self, text: str, **data):
        self.trace.add("note", text, **data)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ---- guest actions ----

    def socket(self, protocol: int = NETLINK_ROUTE, groups: int | None = None, rcvbuf: int | None = None,
               sndbuf: int | None = None) -> NetlinkSocket:
        """A netlink socket; with `groups` it is also bound (autobind gives it a portid, which it
        needs to receive kernel notifications)."""
        r = self.call(Op.SOCKET, protocol=protocol)
        self.trace_result(r, f"socket(AF_NETLINK, SOCK_RAW, {PROTOCOLS.get(protocol, protocol)}) → {r.outcome()}")
        if r.ret < 0:
            raise Failed(f"socket() failed: {r.outcome()}")
        sock = NetlinkSocket(self, r.ret, r.get("INODE"), protocol)
        for option, value in ((SO_RCVBUF, rcvbuf), (SO_SNDBUF, sndbuf)):
            if value is not None:
                sock.setsockopt(SOL_SOCKET, option, value)
        if groups is not None:
            self.expect("bind", sock.bind(groups=groups).outcome(), "0")
        return sock

    def sh(self, cmd: str, timeout: float = 20.0, check: bool = True) -> str:
        """Run a shell command in the guest; returns its output.  With `check`, a non-zero exit
        fails the scenario."""
        r = self.call(Op.RUN, cmd=cmd, timeout_ms=int(timeout * 1000))
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

    def getlink(self, ifname: str | None = None) -> Message:
        """A fresh RTM_GETLINK for one interface (dump + filter, which 3.14 supports too)."""
        sock = self.socket()
        seq = self.next_seq()
        sock.send(getlink_request(seq))
        found = None
        while True:
            got = sock.recv()
            if not got.ok:
                raise Failed(f"RTM_GETLINK dump ended early: {got.describe()}")
            for m in got.messages:
                if m.ifname == (ifname or self.ifname):
                    found = m
            if any(m.type in (2, 3) for m in got.messages):  # NLMSG_ERROR / NLMSG_DONE
                break
        sock.close()
        if found is None:
            raise Failed(f"no link named {ifname or self.ifname} in the RTM_GETLINK dump")
        return found

    # ---- the NIC's link, from the host ----

    def set_link(self, up: bool):
        t = time.monotonic()
        self.vm.monitor.set_link(self.vm.nic_id, up)
        what = f"QMP set_link {self.vm.nic_id} {'on' if up else 'off'}"
        self.trace.add("host", what, at=t)
        self._last_host_action = (t, what)

    # ---- expectations ----

    def expect(self, what: str, actual, expected):
        ok = actual == expected
        self.trace.add("check", f"{'ok  ' if ok else 'FAIL'} {what}: {actual!r}"
                       + ("" if ok else f", expected {expected!r}"), ok=ok)
        if not ok:
            raise Failed(f"{what}: got {actual!r}, expected {expected!r}")

    def expect_true(self, what: str, condition, detail: str = ""):
        ok = bool(condition)
        self.trace.add("check", f"{'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail and not ok else ""),
                       ok=ok)
        if not ok:
            raise Failed(f"{what}" + (f": {detail}" if detail else ""))

    def skip(self, reason: str):
        raise Skip(reason)
