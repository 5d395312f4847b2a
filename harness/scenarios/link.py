"""Link notifications driven from QEMU's monitor (SCENARIOS.md section F)."""
from __future__ import annotations

from ..netlink import RTMGRP_LINK, iff_names
from ..scenario import Guest, scenario

SILENCE = 3.0  # seconds of required quiet when the kernel is expected to say nothing


def bring_up(g: Guest):
    """Admin-up the NIC and wait until the driver reports carrier; returns a subscribed socket
    with nothing pending."""
    mon = g.socket(groups=RTMGRP_LINK)
    g.sh(f"ip link set {g.ifname} up")
    mon.wait_link(g.ifname, lambda m: m.has("LOWER_UP"))
    mon.drain(quiet=1.2)  # linkwatch batches for up to 1 s: let any straggler arrive
    return mon


@scenario("carrier-qmp",
          "QMP set_link off/on with the NIC admin-up: one RTM_NEWLINK each, LOWER_UP/RUNNING and operstate follow",
          source="net/core/link_watch.c:linkwatch_do_dev, net/core/dev.c:netdev_state_change, "
                 "net/core/rtnetlink.c:rtmsg_ifinfo")
def carrier_qmp(g: Guest):
    mon = bring_up(g)
    g.set_link(False)
    down = mon.recv_link(g.ifname)
    g.expect_true("after set_link off: UP without LOWER_UP or RUNNING",
                  down.has("UP") and not down.has("LOWER_UP") and not down.has("RUNNING"), str(down))
    g.expect("operstate after set_link off", down.operstate, "DOWN")
    g.expect("IFLA_CARRIER after set_link off", down.carrier, 0)

    g.set_link(True)  # QEMU restarts autonegotiation: the link comes back ~0.5 s later
    up = mon.recv_link(g.ifname)
    g.expect_true("after set_link on: UP|LOWER_UP|RUNNING", up.has("UP", "LOWER_UP", "RUNNING"), str(up))
    g.expect("operstate after set_link on", up.operstate, "UP")
    g.expect("IFLA_CARRIER after set_link on", up.carrier, 1)
    extra = mon.drain(quiet=2.5)  # longer than linkwatch's 1 s batching and igb's 2 s watchdog
    g.expect("further RTM_NEWLINK after the pair", [str(m) for m in extra], [])

    now = g.getlink()
    g.expect("fresh RTM_GETLINK agrees with the last notification (flags, operstate)",
             (iff_names(now.ifi_flags), now.operstate), (iff_names(up.ifi_flags), up.operstate))


@scenario("carrier-admin-down",
          "QMP set_link off/on while the NIC is admin-down: no RTM_NEWLINK; the carrier shows in the next message",
          source="net/core/link_watch.c:linkwatch_do_dev, net/core/dev.c:netdev_state_change (IFF_UP check)")
def carrier_admin_down(g: Guest):
    before = g.getlink()
    g.expect_true(f"{g.ifname} starts admin-down", not before.has("UP"), str(before))
    mon = g.socket(groups=RTMGRP_LINK)
    for up in (False, True, False):
        g.set_link(up)
        got = mon.recv(timeout=SILENCE)
        g.expect_true(f"no notification within {SILENCE:g} s of set_link {'on' if up else 'off'} while admin-down",
                      got.reply.timed_out, got.describe())
    # The link is now off in QEMU; admin-up shows it: UP, but no carrier.
    g.sh(f"ip link set {g.ifname} up")
    first = mon.recv_link(g.ifname)
    g.expect_true("admin-up with the link off: UP without LOWER_UP", first.has("UP") and not first.has("LOWER_UP"),
                  str(first))
    g.expect("IFLA_CARRIER in the admin-up message", first.carrier, 0)
    g.set_link(True)
    up = mon.wait_link(g.ifname, lambda m: m.has("LOWER_UP"))
    g.expect("IFLA_CARRIER once set_link on reaches an admin-up NIC", up.carrier, 1)
    g.expect("operstate", up.operstate, "UP")
