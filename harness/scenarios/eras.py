"""Where 3.14 and today's kernels differ in what a netlink user sees.  Each expectation is keyed
on the version read from the booted image, for the eras whose source was read (3.14.40; 6.1 and
6.12); on a version in between, what the kernel did is reported and not checked."""
from __future__ import annotations

from ..netlink import NLMSG_DONE, RTMGRP_LINK, getlink_request
from ..scenario import Guest, scenario
from .dump import add_dummies

PAGE = 4096


def era(g: Guest) -> str | None:
    """'3.14' or '6.x' when the expectation for this version is known from its source, else None."""
    return "3.14" if g.version[:2] == (3, 14) else "6.x" if g.version[:2] >= (6, 1) else None


def expect_for_era(g: Guest, what: str, actual, by_era: dict[str, object]):
    known = era(g)
    if known is None:
        g.note(f"{what}: {actual!r} (not checked: {'.'.join(map(str, g.version))} is between the eras whose source was read)")
    else:
        g.expect(what, actual, by_era[known])


@scenario("mtu-notify",
          "an MTU change: 3.14 sends RTM_NEWLINK twice, the first before the change with the old IFLA_MTU "
          "(NETDEV_PRECHANGEMTU falls through rtnetlink_event's switch to its default); 6.x only after it",
          source="net/core/dev.c:dev_set_mtu (NETDEV_PRECHANGEMTU, then NETDEV_CHANGEMTU); "
                 "net/core/rtnetlink.c:rtnetlink_event (3.14: default sends; 6.x: rtnl_event_type lists CHANGEMTU only)",
          needs_nic=False)
def mtu_notify(g: Guest):
    g.add_dummy("mtu0")
    before = g.getlink("mtu0").mtu
    sock = g.socket(groups=RTMGRP_LINK)
    g.sh("ip link set mtu0 mtu 1400")
    mtus = [m.mtu for m in sock.drain(quiet=1.0) if m.ifname == "mtu0"]
    g.note(f"IFLA_MTU of each RTM_NEWLINK about mtu0, in order: {mtus}")
    expect_for_era(g, "IFLA_MTU of the notifications of one MTU change", mtus,
                   {"3.14": [before, 1400], "6.x": [1400]})
    g.expect("the link's MTU afterwards (RTM_GETLINK)", g.getlink("mtu0").mtu, 1400)


@scenario("dump-datagram-size",
          "a dump read with 32 KB buffers: 3.14 fills each datagram only up to NLMSG_GOODSIZE (one page); 6.x sizes "
          "every round after the first by the largest recvmsg buffer seen, up to 32 KB",
          source="net/netlink/af_netlink.c:netlink_dump (3.14: max(min_dump_alloc, NLMSG_GOODSIZE); "
                 "6.x: nlk->max_recvmsg_len), netlink_recvmsg (6.x records max_recvmsg_len)",
          needs_nic=False)
def dump_datagram_size(g: Guest):
    add_dummies(g)
    sock = g.socket()  # fresh: no recvmsg has set max_recvmsg_len yet
    datagrams = sock.dump(getlink_request(g.next_seq()), bufsize=32768)
    sizes = [d.reply.ret for d in datagrams if d.messages and d.messages[0].type != NLMSG_DONE]
    g.note(f"dump datagram sizes: {sizes}")
    g.expect_true("the dump spans several datagrams", len(sizes) >= 2, f"{sizes}")
    g.expect("the first round, made at the request, fits one page", sizes[0] <= PAGE, True)
    expect_for_era(g, "a later datagram is bigger than a page", max(sizes[1:]) > PAGE,
                   {"3.14": False, "6.x": True})
