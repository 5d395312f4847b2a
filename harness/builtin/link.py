"""Link notifications driven from QEMU's monitor (README, "Scenarios")."""
from __future__ import annotations

from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK

from ..netlink import IFF, RTMGRP_LINK, iff_names
from ..scenario import Guest, scenario
from .changes import CARRIER_CHANGES, expect_by_change

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
    for on in (False, True, False):
        g.set_link(on)
        got = mon.recv(timeout=SILENCE)
        g.expect_true(f"no notification within {SILENCE:g} s of set_link {'on' if on else 'off'} while admin-down",
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


STEP = 2.0  # seconds between steps: more than linkwatch's 1 s batching


def expect_exactly_one(g: Guest, mon, ifname: str, what: str, quiet: float = STEP):
    """The next message is an RTM_NEWLINK for `ifname`, and nothing follows within `quiet` s."""
    m = mon.recv_link(ifname)
    extra = mon.drain(quiet=quiet)
    g.expect(f"further messages after {what}", [str(x) for x in extra], [])
    return m


def expect_silence(g: Guest, mon, what: str, quiet: float = STEP):
    got = mon.recv(timeout=quiet)
    g.expect_true(f"no notification within {quiet:g} s of {what}", got.reply.timed_out, got.describe())


@scenario("carrier-dummy",
          "`ip link set d0 carrier off|on` on an admin-up dummy: exactly one RTM_NEWLINK per step with "
          "LOWER_UP/RUNNING and operstate following; none while admin-down",
          source="drivers/net/dummy.c (ndo_change_carrier), net/core/link_watch.c, net/core/dev.c:netdev_state_change",
          needs_nic=False)
def carrier_dummy(g: Guest):
    ifindex = g.add_dummy("d0")
    mon = g.socket(groups=RTMGRP_LINK)
    g.link_request(RTM_NEWLINK, "set d0 up", ifindex=ifindex, flags=IFF["UP"], change=IFF["UP"])
    mon.drain(quiet=STEP)
    for on in (False, True, False, True):
        g.set_carrier("d0", on)
        m = expect_exactly_one(g, mon, "d0", f"carrier {'on' if on else 'off'}")
        g.expect(f"carrier {'on' if on else 'off'}: LOWER_UP, RUNNING, operstate, IFLA_CARRIER",
                 (m.has("LOWER_UP"), m.has("RUNNING"), m.operstate, m.carrier),
                 (on, on, "UP" if on else "DOWN", int(on)))
    g.link_request(RTM_NEWLINK, "set d0 down", ifindex=ifindex, flags=0, change=IFF["UP"])
    mon.drain(quiet=STEP)
    for on in (False, True):
        g.set_carrier("d0", on)
        expect_silence(g, mon, f"carrier {'on' if on else 'off'} while admin-down")


@scenario("admin-up-down-dummy",
          "`ip link set up` on a dummy: exactly one RTM_NEWLINK (ifi_change IFF_UP); `set down`: exactly one",
          source="net/core/dev.c:__dev_notify_flags, net/core/rtnetlink.c:rtmsg_ifinfo", needs_nic=False)
def admin_up_down_dummy(g: Guest):
    g.add_dummy("d0")
    mon = g.socket(groups=RTMGRP_LINK)
    g.sh("ip link set d0 up")
    up = expect_exactly_one(g, mon, "d0", "admin up")
    g.expect("admin up: UP, ifi_change", (up.has("UP"), up.ifi_change), (True, IFF["UP"]))
    g.sh("ip link set d0 down")
    down = expect_exactly_one(g, mon, "d0", "admin down")
    g.expect("admin down: UP cleared, ifi_change", (down.has("UP"), down.ifi_change), (False, IFF["UP"]))


@scenario("admin-up-down",
          "`ip link set up` on the NIC: two RTM_NEWLINK (the admin change, then linkwatch's: carrier on, "
          "operstate UP); `set down`: exactly one, operstate DOWN, the driver's carrier-off is silent",
          source="net/core/dev.c:__dev_notify_flags, net/core/link_watch.c:linkwatch_do_dev")
def admin_up_down(g: Guest):
    mon = g.socket(groups=RTMGRP_LINK)
    events = mon.stream()  # stamped as they arrive: `ip link set up` itself takes 1.7 s on igb
    g.sh(f"ip link set {g.ifname} up")
    received = [got for got in events.stop(quiet=3.0) if any(m.ifname == g.ifname for m in got.messages)]
    messages = [m for got in received for m in got.messages if m.ifname == g.ifname]
    g.require("RTM_NEWLINK for the NIC after admin-up", messages, str(messages))
    first = messages[0]
    g.expect("first: the admin change, before linkwatch has run", (first.ifi_change, first.operstate),
             (IFF["UP"], "DOWN"))
    # Its LOWER_UP is whatever the carrier is when the message is filled: the driver's first link
    # check (e1000's link-status interrupt from ndo_open) can come before it, under load it does.
    g.note(f"carrier in the admin-change message: {first.carrier} (the driver had "
           f"{'already' if first.has('LOWER_UP') else 'not yet'} seen the link)")
    g.expect("messages after the admin change: the carrier-on alone", [str(m) for m in messages[2:]], [])
    g.require("the carrier-on follows", len(messages) == 2, str(messages))
    second = messages[1]
    g.expect("second: carrier on, operstate UP", (second.has("LOWER_UP", "RUNNING"), second.operstate), (True, "UP"))
    g.observe("from the admin change to the carrier-on, on the guest clock",
              span(received[-1].reply["T_NS"] - received[0].reply["T_NS"]))
    g.sh(f"ip link set {g.ifname} down")
    down = expect_exactly_one(g, mon, g.ifname, "admin down", quiet=3.0)
    g.expect("admin down: UP cleared, operstate", (down.has("UP"), down.operstate), (False, "DOWN"))


def span(ns: int) -> str:
    """A duration as the range it falls in: what the driver does (at once, QEMU's autonegotiation,
    a watchdog poll), not the noise of one run."""
    for limit_ms, name in ((50, "under 50 ms"), (250, "50-250 ms"), (1000, "250 ms - 1 s"), (3000, "1-3 s")):
        if ns < limit_ms * 1e6:
            return name
    return "3 s or more"


@scenario("register-unregister",
          "PCI unbind of the NIC's driver: RTM_NEWLINK (down) then RTM_DELLINK; bind: one RTM_NEWLINK with "
          "ifi_change 0xffffffff and carrier 1; the same for ip link add/del of a dummy",
          source="drivers/base/dd.c:really_probe, net/core/dev.c:register_netdevice, unregister_netdevice_many")
def register_unregister(g: Guest):
    address = g.sh(f"basename $(readlink /sys/class/net/{g.ifname}/device)").strip()
    driver = g.sh(f"basename $(readlink /sys/class/net/{g.ifname}/device/driver)").strip()
    mon = bring_up(g)
    g.sh(f"echo {address} > /sys/bus/pci/drivers/{driver}/unbind")
    gone = mon.wait_link_event(g.ifname, RTM_DELLINK)
    g.expect("unbind while up: the messages for the NIC",
             [(m.type_name, m.has("UP")) for m in gone], [("RTM_NEWLINK", False), ("RTM_DELLINK", False)])
    g.sh(f"echo {address} > /sys/bus/pci/drivers/{driver}/bind")
    back = expect_exactly_one(g, mon, g.ifname, "bind", quiet=3.0)
    g.expect("bind: ifi_change and carrier of the new device", (back.ifi_change, back.carrier), (0xFFFFFFFF, 1))
    g.note("driver bound again: " + g.sh(f"readlink /sys/class/net/{g.ifname}/device/driver").strip())
    g.note("probe, from the kernel log: " + g.sh(f"dmesg | grep '{address}' | tail -n 3").strip())

    g.add_dummy("reg0")
    added = expect_exactly_one(g, mon, "reg0", "ip link add")
    g.expect("ip link add: ifi_change", added.ifi_change, 0xFFFFFFFF)
    g.sh("ip link del reg0")
    got = mon.recv()
    g.expect("ip link del of a down dummy: only RTM_DELLINK", [(m.type_name, m.ifname) for m in got.messages],
             [("RTM_DELLINK", "reg0")])


FLAPS = 10
FLAP_GAP = 0.05  # seconds of the guest's clock between flips: far faster than linkwatch's 1 s batching


@scenario("flap-storm",
          f"{FLAPS} set_link off/on pairs {FLAP_GAP * 1000:.0f} ms apart: linkwatch batches, so fewer RTM_NEWLINK "
          "than flips; the last one and a fresh RTM_GETLINK show the final state (up); IFLA_CARRIER_CHANGES "
          "grows by an even number, at most 2 per flap",
          source="net/core/link_watch.c:linkwatch_fire_event, linkwatch_schedule_work, linkwatch_do_dev")
def flap_storm(g: Guest):
    mon = bring_up(g)
    before = g.getlink()
    events = mon.stream()  # each notification timestamped as it arrives, during the storm too
    g.set_links([(i * FLAP_GAP, i % 2 == 1) for i in range(2 * FLAPS)])  # off, on, off, ...
    # QEMU's autonegotiation (0.5 s) and the drivers' 2 s watchdog: wait until 3 s pass quietly
    received = events.stop(quiet=3.0)
    g.expect("recvmsg errors during the storm", [got.errname for got in received if not got.ok], [])
    messages = [m for got in received for m in got.messages if m.ifname == g.ifname]
    downs = sum(not m.has("LOWER_UP") for m in messages)
    g.note(f"{2 * FLAPS} flips produced {len(messages)} RTM_NEWLINK for {g.ifname} ({downs} down, "
           f"{len(messages) - downs} up)")
    g.expect_true("fewer notifications than flips", len(messages) < 2 * FLAPS, f"{len(messages)}")
    if messages:
        last = messages[-1]
        g.expect("the last notification shows the final state", (last.has("UP", "LOWER_UP"), last.operstate),
                 (True, "UP"))
    after = g.getlink()
    g.expect("a fresh RTM_GETLINK shows the link up", (after.has("UP", "LOWER_UP", "RUNNING"), after.operstate),
             (True, "UP"))
    expect_by_change(g, CARRIER_CHANGES, "IFLA_CARRIER_CHANGES in RTM_GETLINK", after.carrier_changes is not None,
                     before=False, after=True)
    if after.carrier_changes is None:
        return
    g.require("IFLA_CARRIER_CHANGES before the storm too", before.carrier_changes is not None)
    delta = after.carrier_changes - before.carrier_changes  # type: ignore[operator]  # require() ended it if None
    g.note(f"IFLA_CARRIER_CHANGES {before.carrier_changes} → {after.carrier_changes} (+{delta})")
    g.expect_true(f"IFLA_CARRIER_CHANGES grew by an even number, at most {2 * FLAPS}", delta % 2 == 0 and
                  0 <= delta <= 2 * FLAPS, f"+{delta}")
    g.expect_true("the driver saw at least as many transitions as were reported", delta >= len(messages),
                  f"+{delta} for {len(messages)} messages")
