"""Multicast overrun: ENOBUFS, Drops and how many notifications fit (README, "Scenarios")."""
from __future__ import annotations

from ..netlink import (
    MSG_DONTWAIT,
    MSG_PEEK,
    NETLINK_NO_ENOBUFS,
    RTMGRP_LINK,
    SO_RCVBUF,
    SOL_NETLINK,
    SOL_SOCKET,
)
from ..scenario import Guest, scenario
from .changes import RMEM_ADMISSION, UNICAST_FULL, Version
from .link import bring_up

# How a message is admitted into a receive queue (netlink_broadcast_deliver for notifications,
# netlink_attachskb for unicast): until 2025 by the queue *before* adding it; since, by the queue
# *after* adding it, always into an empty queue — for unicast at first only strictly below rcvbuf.
BEFORE = "rmem_before <= rcvbuf"
AFTER = "the queue is empty or rmem_after <= rcvbuf"
AFTER_STRICT = "the queue is empty or rmem_after < rcvbuf"


def admission_rule(version: Version, unicast: bool = False) -> str:
    if not RMEM_ADMISSION.present(version):
        return BEFORE
    return AFTER_STRICT if unicast and not UNICAST_FULL.present(version) else AFTER


def messages_that_fit(rcvbuf: int, truesize: int, rule: str) -> int:
    if rule == BEFORE:
        return rcvbuf // truesize + 1
    return max(1, (rcvbuf - (rule == AFTER_STRICT)) // truesize)


def admission(g: Guest, rcvbuf: int, truesize: int, unicast: bool = False) -> int:
    """How many messages of `truesize` fit `rcvbuf` under the rule of this kernel version; noted in the trace."""
    rule = admission_rule(g.version, unicast)
    fits = messages_that_fit(rcvbuf, truesize, rule)
    g.note(f"kernel {g.kernel.version_str} (rcvbuf {rcvbuf}, T {truesize}): '{rule}' admits {fits}")
    for change in (RMEM_ADMISSION, UNICAST_FULL) if unicast else (RMEM_ADMISSION,):
        g.note(change.describe(g.version))
    return fits


def flood(g: Guest, no_enobufs: bool):
    """Flip the link until more notifications were sent than a small-buffered, non-reading
    subscriber can hold; check what it holds, its Drops and what recvmsg then returns."""
    observer = bring_up(g)  # reads everything, so it knows how many notifications were sent

    # T: one notification's skb truesize, read from /proc/net/netlink while it sits in a queue.
    g.set_link(False)
    observer.recv(flags=MSG_PEEK)
    truesize = g.netlink_table()[observer.inode]["Rmem"]
    g.note(f"one RTM_NEWLINK for {g.ifname} costs {truesize} bytes of receive buffer (Rmem with one queued)")
    observer.recv()
    g.require("measured a truesize", truesize > 0, str(truesize))

    # A receive buffer of ~2.5 messages tells the two admission rules apart (2 vs 3 fit).
    victim = g.socket(rcvbuf=truesize * 5 // 4, groups=RTMGRP_LINK)
    if no_enobufs:
        g.expect("setsockopt NETLINK_NO_ENOBUFS", victim.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1).outcome(), "0")
    fits = admission(g, victim.getsockopt(SOL_SOCKET, SO_RCVBUF), truesize)

    sent, up = 0, False
    while sent < fits + 2:
        up = not up
        g.set_link(up)
        while True:
            got = observer.recv()
            g.require("the observer receives the notification", got.ok, got.describe())
            sent += len(got.messages)
            if any(m.ifname == g.ifname and m.has("LOWER_UP") == up for m in got.messages):
                break

    row = g.netlink_table()[victim.inode]
    queued = row["Rmem"] // truesize
    g.note(f"{sent} notifications sent; the victim holds Rmem {row['Rmem']} ({queued} messages), Drops {row['Drops']}")
    g.expect("the number queued, by the admission rule", queued, fits)
    g.expect("Rmem is a whole number of messages", row["Rmem"], queued * truesize)
    g.expect("Drops counts every notification not queued", row["Drops"], sent - queued)

    if not no_enobufs:
        g.expect("first recvmsg reports the overrun", victim.recv(flags=MSG_DONTWAIT).errname, "ENOBUFS")
    follow = [victim.recv(flags=MSG_DONTWAIT) for _ in range(queued)]
    g.expect("then the queued messages, in order",
             [" ".join(m.type_name for m in got.messages) if got.ok else got.describe() for got in follow],
             ["RTM_NEWLINK"] * queued)
    g.expect("then the queue is empty" + ("" if no_enobufs else " (ENOBUFS reported only once)"),
             victim.recv(flags=MSG_DONTWAIT).errname, "EAGAIN")


@scenario("overrun",
          "a bound RTNLGRP_LINK subscriber that does not read: ENOBUFS once, then the queued messages, "
          "then EAGAIN; Drops counts the rest",
          source="net/netlink/af_netlink.c:netlink_broadcast_deliver, netlink_overrun, netlink_rcv_wake")
def overrun(g: Guest):
    flood(g, no_enobufs=False)


@scenario("no-enobufs",
          "the same flood with NETLINK_NO_ENOBUFS: no error is reported, messages are still dropped, Drops grows",
          source="net/netlink/af_netlink.c:netlink_overrun (NETLINK_F_RECV_NO_ENOBUFS), netlink_setsockopt")
def no_enobufs(g: Guest):
    flood(g, no_enobufs=True)
