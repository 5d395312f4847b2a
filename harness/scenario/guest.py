"""What a scenario works with, composed of parts with one job each: the checks (Checks), the
agent's calls (Calls), the netlink sockets (Sockets), the guest's links (Links), the NIC's link
from the host (NicLink) and the guest's clock (Timeline).  Guest keeps the short names a scenario
writes (g.socket, g.expect, g.sh, g.set_link, g.note, ...) and hands each to its part."""
from __future__ import annotations

from collections.abc import Callable

from ..agent import Agent, Reply
from ..agent.protocol import Op
from ..netlink.constants import NETLINK_ROUTE
from ..netlink.message import Message
from ..trace import Trace
from ..wait import until
from .calls import Calls
from .checks import Checks
from .links import Links
from .nic_link import NicLink
from .sockets import Changes, NetlinkSocket, SocketUses, Sockets
from .timeline import Action, Timeline


class Guest:
    """The guest (through the agent), the NIC's link (through the monitor), the kernel version,
    and the trace."""

    def __init__(self, vm, trace: Trace):
        self.vm, self.trace = vm, trace
        self.agent: Agent = vm.agent
        self.kernel = vm.kernel
        self.version = vm.kernel.version  # upstream (major, minor, patch), read from the image
        self.agent_pid = vm.hello.get("PID")
        self.nic = vm.nic.model if vm.nic else None  # the name a scenario compares (igb, vfio:...)
        self.ifname = "eth0"
        self.checks = Checks(trace)
        self.calls = Calls(vm.agent, trace)
        self.changes = Changes()
        self.timeline = Timeline(vm.agent, vm.brake, lambda: vm.failure, clock_stops=vm.settings.accel == "tcg")
        self.sockets = Sockets(SocketUses(self.calls, self.checks, self.timeline, self.changes))
        self.links = Links(self.sockets, self.checks, trace, vm.kernel.release)
        self.nic_link = NicLink(vm.monitor, vm.nic, vm.nic_id, self.timeline, trace, self.checks)

    # ---- checks ----

    def note(self, text: str, **data):
        self.checks.note(text, **data)

    def expect(self, what: str, actual, expected, incidental: bool = False):
        self.checks.expect(what, actual, expected, incidental)

    def observe(self, what: str, value):
        self.checks.observe(what, value)

    def expect_true(self, what: str, condition, detail: str = ""):
        self.checks.expect_true(what, condition, detail)

    def require(self, what: str, condition, detail: str = ""):
        self.checks.require(what, condition, detail)

    def skip(self, reason: str):
        self.checks.skip(reason)

    # ---- the guest, through the agent ----

    def call(self, op: Op, **attrs) -> Reply:
        return self.calls.call(op, **attrs)

    def sh(self, cmd: str, timeout: float = 20.0, check: bool = True, uid: int | None = None) -> str:
        return self.calls.sh(cmd, timeout, check, uid)

    def read_file(self, path: str) -> Reply:
        return self.calls.read_file(path)

    def socket(self, protocol: int = NETLINK_ROUTE, groups: int | None = None, rcvbuf: int | None = None,
               sndbuf: int | None = None, uid: int | None = None) -> NetlinkSocket:
        return self.sockets.open(protocol, groups, rcvbuf, sndbuf, uid)

    def next_seq(self) -> int:
        return self.sockets.next_seq()

    def netlink_table(self) -> dict[int, dict]:
        return self.sockets.table()

    def ifindex(self, ifname: str) -> int:
        return self.links.ifindex(ifname)

    def link_request(self, mtype: int, what: str, unsupported_skips: bool = False, **fields) -> None:
        self.links.request(mtype, what, unsupported_skips, **fields)

    def add_dummy(self, name: str) -> int:
        return self.links.add_dummy(name)

    def set_carrier(self, ifname: str, on: bool):
        self.links.set_carrier(ifname, on)

    def getlink(self, ifname: str | None = None) -> Message:
        return self.links.get(ifname or self.ifname)

    # ---- the guest's clock ----

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
        return self.nic_link.set([(0.0, up)])[0]

    def set_links(self, steps: list[tuple[float, bool]]) -> list[Action]:
        return self.nic_link.set(steps)
