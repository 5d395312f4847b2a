"""The upstream commits that changed what the catalogue checks, and the releases they are in.

Every expectation that depends on the kernel's version is keyed on one of these, so that any
version from 3.14 on gets an expected value: a kernel has a change if its series is the release
the change went into or later, or if the change was backported to its series and it is that
point release or later.  README's "Kernel versions" table is this one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Change:
    name: str
    commit: str                        # hash and subject, as `git log --oneline` shows it
    release: tuple[int, int]           # the first mainline release with it
    source: str                        # where to read it
    backports: dict[tuple[int, int], int] = field(default_factory=dict)  # series -> its first point release with it

    def present(self, version: Version) -> bool:
        series = version[:2]
        if series >= self.release:
            return True
        return series in self.backports and version[2] >= self.backports[series]

    def since(self) -> str:
        """'6.16 (6.1.146, 5.10.240)': where the change is, for a reader."""
        stable = ", ".join(f"{a}.{b}.{p}" for (a, b), p in sorted(self.backports.items(), reverse=True))
        return f"{self.release[0]}.{self.release[1]}" + (f" ({stable})" if stable else "")

    def describe(self, version: Version) -> str:
        v = ".".join(map(str, version))
        return f"{v} {'has' if self.present(version) else 'predates'} {self.commit} ({self.since()})"


CARRIER_CHANGES = Change(
    "IFLA_CARRIER_CHANGES in link messages",
    "2d3b479df41a net-sysfs: expose number of carrier on/off changes", (3, 15),
    "net/core/rtnetlink.c:rtnl_fill_ifinfo")
DUMP_SIZE = Change(
    "dump rounds after the first sized by the largest recvmsg buffer seen (up to 32 KB)",
    "9063e21fb026 netlink: autosize skb lengthes", (3, 15),
    "net/netlink/af_netlink.c:netlink_dump (nlk->max_recvmsg_len), netlink_recvmsg")
SETLINK_NOTIFY = Change(
    "RTM_SETLINK that changed a link sends one more RTM_NEWLINK of its own",
    "ba9989069f4e rtnl/do_setlink(): notify when a netdev is modified", (3, 18),
    "net/core/rtnetlink.c:do_setlink (DO_SETLINK_NOTIFY)")
CAP_ACK = Change(
    "NETLINK_CAP_ACK: an error ack echoes only the request's header",
    "0a6a3a23ea6e netlink: add NETLINK_CAP_ACK socket option", (4, 3),
    "net/netlink/af_netlink.c:netlink_setsockopt, netlink_ack")
TIMER_WHEEL = Change(
    "timers never fire early (SO_SNDTIMEO sleeps at least its timeout)",
    "500462a9de65 timers: Switch to a non-cascading wheel", (4, 8),
    "kernel/time/timer.c:calc_index")
EXT_ACK = Change(
    "NETLINK_EXT_ACK, and NLM_F_CAPPED / NLM_F_ACK_TLVS on acks",
    "2d4bc93368f5 netlink: extended ACK reporting", (4, 12),
    "net/netlink/af_netlink.c:netlink_ack")
MTU_EVENTS = Change(
    "rtnetlink_event no longer sends RTM_NEWLINK for NETDEV_PRECHANGEMTU (nor CHANGEMTU: do_setlink's does)",
    "085e1a65f04f rtnetlink: Do not generate notifications for MTU events", (4, 12),
    "net/core/rtnetlink.c:rtnetlink_event")
RMEM_ADMISSION = Change(
    "a receive queue admits a message if the queue is empty or it fits after adding it",
    "ae8f160e7eb2 netlink: Fix wraparounds of sk->sk_rmem_alloc.", (6, 16),
    "net/netlink/af_netlink.c:netlink_broadcast_deliver, netlink_attachskb",
    backports={(5, 4): 296, (5, 10): 240, (5, 15): 188, (6, 1): 146, (6, 6): 99, (6, 12): 39, (6, 15): 7})
UNICAST_FULL = Change(
    "a unicast receive queue is full only past rcvbuf again (<=, not <: netlink_attachskb)",
    "759dfc7d04ba netlink: avoid infinite retry looping in netlink_unicast()", (6, 17),
    "net/netlink/af_netlink.c:netlink_attachskb",
    backports={(5, 4): 297, (5, 10): 241, (5, 15): 190, (6, 1): 149, (6, 6): 103, (6, 12): 43})

CHANGES = (CARRIER_CHANGES, DUMP_SIZE, SETLINK_NOTIFY, CAP_ACK, TIMER_WHEEL, EXT_ACK, MTU_EVENTS, RMEM_ADMISSION,
           UNICAST_FULL)


def expect_by_change(g, change: Change, what: str, actual, before, after):
    """Expect `after` if the kernel has `change`, else `before`; the trace says which and why."""
    g.note(f"{what}: {change.describe(g.version)}")
    g.expect(what, actual, after if change.present(g.version) else before)
