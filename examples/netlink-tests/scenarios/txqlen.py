"""A scenario of our own: `testbed run txqlen-notify`, or in `testbed matrix` beside the catalogue."""
from harness.netlink import RTMGRP_LINK
from harness.scenario import scenario


@scenario("txqlen-notify", "`ip link set d0 txqlen 500`: 6.x sends one RTM_NEWLINK with IFLA_TXQLEN 500; "
          "3.14 changes it silently (only a fresh RTM_GETLINK shows it)",
          source="net/core/rtnetlink.c:do_setlink (3.14: tx_queue_len set, no notifier); "
                 "net/core/dev.c:dev_change_tx_queue_len (6.x: NETDEV_CHANGE_TX_QUEUE_LEN)", needs_nic=False)
def txqlen_notify(g):
    g.add_dummy("d0")
    mon = g.socket(groups=RTMGRP_LINK)
    g.sh("/usr/sbin/ip link set d0 txqlen 500")  # busybox's ip has no txqlen: iproute2's, from guest-binaries
    if g.version < (3, 15):
        got = mon.recv(timeout=1.5)
        g.expect_true("3.14: no RTM_NEWLINK for a txqlen change", got.reply.timed_out, got.describe())
    elif g.version >= (6, 1):
        m = mon.recv_link("d0")
        g.expect("IFLA_TXQLEN in the notification", m.attrs.get("IFLA_TXQLEN"), 500)
        g.expect("nothing else follows", [str(x) for x in mon.drain(quiet=1.5)], [])
    g.expect("IFLA_TXQLEN in a fresh RTM_GETLINK", g.getlink("d0").attrs.get("IFLA_TXQLEN"), 500)
