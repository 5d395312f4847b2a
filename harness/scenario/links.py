"""The guest's links through netlink, as `ip link` would change them: each request from a root
socket of its own, acked, and traced as one line."""
from __future__ import annotations

from ..agent import errname
from ..agent.protocol import Op
from ..netlink.constants import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLMSG_ERROR, NLMSG_NAMES, RTM_NEWLINK
from ..netlink.message import Message
from ..netlink.requests import getlink_request, link_request
from ..trace import Trace
from .checks import Checks
from .sockets import Sockets


class Links:
    def __init__(self, sockets: Sockets, checks: Checks, trace: Trace, release: str):
        """`release`: the kernel's, for saying what it cannot do."""
        self.sockets, self.checks, self.trace, self.release = sockets, checks, trace, release

    def ifindex(self, ifname: str) -> int:
        r = self.sockets.calls.call(Op.READ_FILE, path=f"/sys/class/net/{ifname}/ifindex")
        self.checks.require(f"{ifname} exists", r.ret > 0, r.outcome())
        return int(r["DATA"])

    def request(self, mtype: int, what: str, unsupported_skips: bool = False, **fields) -> None:
        """An RTM_NEWLINK/RTM_DELLINK from a root socket, which must be acked; traced as one line.
        With `unsupported_skips`, EOPNOTSUPP (no such link kind in this kernel) skips the scenario."""
        with self.trace.summarised():
            sock = self.sockets.open()
            answer = sock.request(link_request(mtype, self.sockets.next_seq(), **fields))
            sock.close()
        ack = errname(answer.error or 0) if answer.type == NLMSG_ERROR else str(answer)
        self.trace.add("guest", f"{NLMSG_NAMES[mtype]}: {what} → {'ack' if ack == '0' else ack}")
        if unsupported_skips and ack == "EOPNOTSUPP":
            self.checks.skip(f"kernel {self.release} cannot {what} (EOPNOTSUPP: the driver is not in this kernel)")
        self.checks.require(f"{what} is acked", ack == "0", ack)

    def add_dummy(self, name: str) -> int:
        """Create a dummy link (through netlink, as `ip link add NAME type dummy` would); its ifindex.
        A kernel without the dummy driver skips the scenario."""
        self.request(RTM_NEWLINK, f"create dummy {name}", ifname=name, kind="dummy",
                     nlm_flags=NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, unsupported_skips=True)
        return self.ifindex(name)

    def set_carrier(self, ifname: str, on: bool):
        """IFLA_CARRIER through RTM_NEWLINK (`ip link set NAME carrier on|off`)."""
        self.request(RTM_NEWLINK, f"set {ifname} carrier {'on' if on else 'off'}",
                     ifindex=self.ifindex(ifname), carrier=int(on))

    def get(self, ifname: str) -> Message:
        """A fresh RTM_GETLINK for one interface (dump + filter, which 3.14 supports too)."""
        with self.trace.summarised():
            sock = self.sockets.open()
            found = [m for d in sock.dump(getlink_request(self.sockets.next_seq())) for m in d.messages
                     if m.ifname == ifname]
            sock.close()
        self.checks.require(f"{ifname} is in the RTM_GETLINK dump", found)
        self.trace.add("guest", f"RTM_GETLINK dump: {found[-1]}")
        return found[-1]
