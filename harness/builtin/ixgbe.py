"""The 82598 and the ixgbe driver (the seed's second article): probe, LSC, the IFF_UP gate, an
LSC storm and traffic through the testbed's model (qemu-model/ixgbe.c).  They run on `nic: ixgbe`
only; every NIC scenario of the catalogue runs on it besides these."""
from __future__ import annotations

import re

from ..netlink import RTMGRP_LINK, Message
from ..scenario import Guest, scenario
from .link import bring_up

ONLY = ("ixgbe",)
# The driver's own words for what must never happen to a healthy adapter
# (ixgbe_main.c: ixgbe_check_tx_hang, ixgbe_reset_subtask, ixgbe_tx_timeout, probe failures).
TROUBLE = ("Detected Tx Unit Hang", "Reset adapter", "tx_timeout", "HW Init failed", "EEPROM Checksum",
           "invalid MAC address", "Adapter removed", "Warning firmware error")
# A message at or above this syslog priority (4: KERN_WARNING) counts as a warning or worse.
WARNING = 4


def driver_log(g: Guest) -> list[tuple[int, str]]:
    """The kernel log's lines about the NIC, with their priority (dmesg -r keeps the <N>); only
    those reach the trace."""
    lines = []
    for line in g.sh("dmesg -r | grep ixgbe", check=False).splitlines():
        m = re.match(r"<(\d+)>(?:\[[\d. ]+\] )?(.*)", line)
        if m and "ixgbe" in m.group(2):
            lines.append((int(m.group(1)) & 7, m.group(2)))
    return lines


def expect_no_trouble(g: Guest, lines: list[tuple[int, str]]):
    g.expect("ixgbe lines at warning level or worse", [t for p, t in lines if p <= WARNING], [])
    g.expect("ixgbe lines that mean a hang, a reset or a failed probe",
             [t for _, t in lines if any(word in t for word in TROUBLE)], [])


def link_lines(lines: list[tuple[int, str]]) -> list[str]:
    return [t[t.index("NIC Link is"):] for _, t in lines if "NIC Link is" in t]


@scenario("ixgbe-probe",
          "the PCI core binds ixgbe to the 82598AF (8086:10c7); the probe logs no warning or error, takes the MAC "
          "QEMU was given from RAL0/RAH0, and registers eth0 with carrier off (operstate DOWN, IFLA_CARRIER 0)",
          source="drivers/net/ethernet/intel/ixgbe/ixgbe_main.c:ixgbe_probe, ixgbe_82598.c:ixgbe_reset_hw_82598, "
                 "ixgbe_common.c:ixgbe_get_mac_addr_generic, ixgbe_validate_eeprom_checksum_generic",
          nics=ONLY)
def ixgbe_probe(g: Guest):
    device = f"/sys/class/net/{g.ifname}/device"
    g.expect("driver bound to eth0's PCI device", g.sh(f"basename $(readlink {device}/driver)").strip(), "ixgbe")
    g.expect("PCI vendor:device", g.sh(f"cat {device}/vendor {device}/device").split(), ["0x8086", "0x10c7"])
    given = g.vm.monitor.command("qom-get", path=f"/machine/peripheral/{g.vm.nic_id}", property="mac")
    g.expect("eth0's address is the MAC QEMU was given", g.sh(f"cat /sys/class/net/{g.ifname}/address").strip(), given)
    lines = driver_log(g)
    g.note("the probe, from the kernel log:\n" + "\n".join(t for _, t in lines))
    expect_no_trouble(g, lines)
    g.expect_true("the probe printed the EEPROM's part number (PBA No: 082598-000)",
                  any("082598-000" in t for _, t in lines), "\n".join(t for _, t in lines))
    link = g.getlink()
    g.expect("before the first link check: no LOWER_UP, operstate DOWN, IFLA_CARRIER 0",
             (link.has("LOWER_UP"), link.operstate, link.carrier), (False, "DOWN", 0))
    g.expect("link lines before eth0 was ever up", link_lines(lines), [])


@scenario("ixgbe-lsc",
          "set_link off/on with eth0 up: LSC -> the service task -> netif_carrier_off/on: one RTM_NEWLINK each, "
          "\"NIC Link is Down\" / \"NIC Link is Up 10 Gbps\" in the log, speed 10000; no autonegotiation to wait for",
          source="ixgbe_main.c:ixgbe_msix_other/ixgbe_intr -> ixgbe_check_lsc -> ixgbe_service_task -> "
                 "ixgbe_watchdog_update_link, ixgbe_watchdog_link_is_up/down; ixgbe_82598.c:ixgbe_check_mac_link_82598",
          nics=ONLY)
def ixgbe_lsc(g: Guest):
    mon = bring_up(g)
    g.expect("speed with the link up (LINKS.SPEED: 10G)", g.sh(f"cat /sys/class/net/{g.ifname}/speed").strip(),
             "10000")
    before = len(link_lines(driver_log(g)))
    g.set_link(False)
    down = mon.recv_link(g.ifname)
    g.expect("after set_link off: carrier, operstate", (down.has("LOWER_UP"), down.operstate), (False, "DOWN"))
    g.set_link(True)
    up = mon.recv_link(g.ifname)
    g.expect("after set_link on: carrier, operstate", (up.has("LOWER_UP"), up.operstate), (True, "UP"))
    g.expect("further RTM_NEWLINK (the service task runs every 2 s)", [str(m) for m in mon.drain(quiet=2.5)], [])
    lines = driver_log(g)
    said = link_lines(lines)[before:]
    g.expect("the driver's link lines for the flap", [s.split(",")[0] for s in said],
             ["NIC Link is Down", "NIC Link is Up 10 Gbps"])
    g.note("the driver said: " + " | ".join(said))
    expect_no_trouble(g, lines)


@scenario("ixgbe-admin-down",
          "set_link while eth0 is down: no RTM_NEWLINK and no link line (the service task does not look while the "
          "adapter is down); the first `ip link set up` reports the carrier QEMU holds then, off and on",
          source="ixgbe_main.c:ixgbe_open -> ixgbe_up_complete (NEED_LINK_UPDATE), ixgbe_service_task "
                 "(__IXGBE_DOWN); net/core/dev.c:netdev_state_change (IFF_UP)",
          nics=ONLY)
def ixgbe_admin_down(g: Guest):
    mon = g.socket(groups=RTMGRP_LINK)
    before = len(link_lines(driver_log(g)))
    for holds in (False, True):
        g.set_link(not holds)
        g.set_link(holds)
        got = mon.recv(timeout=3.0)
        g.expect_true(f"no notification within 3 s of set_link {'on' if not holds else 'off'}/"
                      f"{'on' if holds else 'off'} while eth0 is down", got.reply.timed_out, got.describe())
        g.expect("link lines while eth0 is down", link_lines(driver_log(g))[before:], [])
        g.sh(f"ip link set {g.ifname} up")
        def settled(m: Message, holds: bool = holds) -> bool:
            return (m.operstate in ("UP", "DOWN") and m.has("UP") and m.has("LOWER_UP") == holds
                    and (m.operstate == "UP") == holds)
        seen = mon.wait_link(g.ifname, settled)
        g.expect(f"the carrier eth0 reports once up, QEMU holding the link {'on' if holds else 'off'}",
                 (seen.has("LOWER_UP"), seen.carrier), (holds, int(holds)))
        mon.drain(quiet=2.5)
        g.sh(f"ip link set {g.ifname} down")
        mon.drain(quiet=1.5)
        before = len(link_lines(driver_log(g)))


STORM_FLIPS = 40
STORM_GAP = 0.01  # seconds of the guest's clock: far faster than the service task's HZ/10


@scenario("ixgbe-lsc-storm",
          f"{STORM_FLIPS} set_link flips {STORM_GAP * 1000:.0f} ms apart with eth0 up: the final state (up) is "
          "reported, fewer RTM_NEWLINK than flips, and no Tx hang or adapter reset",
          source="ixgbe_main.c:ixgbe_check_lsc, ixgbe_service_timer (HZ/10 while NEED_LINK_UPDATE), "
                 "ixgbe_check_tx_hang, ixgbe_watchdog_flush_tx; net/core/link_watch.c",
          nics=ONLY)
def ixgbe_lsc_storm(g: Guest):
    mon = bring_up(g)
    events = mon.stream()
    g.set_links([(i * STORM_GAP, i % 2 == 1) for i in range(STORM_FLIPS)])  # off, on, ..., on
    received = events.stop(quiet=4.5)  # more than the 4 s IXGBE_TRY_LINK_TIMEOUT and a 2 s service period
    messages = [m for got in received for m in got.messages if m.ifname == g.ifname]
    g.note(f"{STORM_FLIPS} flips produced {len(messages)} RTM_NEWLINK for {g.ifname}")
    g.expect_true("fewer notifications than flips", len(messages) < STORM_FLIPS, str(len(messages)))
    after = g.getlink()
    g.expect("a fresh RTM_GETLINK shows the final state", (after.has("UP", "LOWER_UP", "RUNNING"), after.operstate),
             (True, "UP"))
    if messages:
        g.expect("the last notification shows the final state", messages[-1].has("LOWER_UP"), True)
    expect_no_trouble(g, driver_log(g))


GATEWAY = "10.0.2.2"  # QEMU's user-mode network answers ARP and ICMP echo for it
ADDRESS = "10.0.2.15/24"


def ping(g: Guest, count: int) -> int:
    """Echo replies the guest got from the gateway for `count` requests."""
    out = g.sh(f"ping -c {count} -W 1 -i 0.2 {GATEWAY}", check=False)
    m = re.search(r"(\d+) packets received", out)
    return int(m.group(1)) if m else 0


def counters(g: Guest) -> tuple[int, int]:
    path = f"/sys/class/net/{g.ifname}/statistics"
    tx, rx = (int(v) for v in g.sh(f"cat {path}/tx_packets {path}/rx_packets").split())
    return tx, rx


@scenario("ixgbe-traffic",
          "frames both ways through the model while the link flaps: ARP and ICMP echo with QEMU's gateway; with the "
          "link off nothing comes back and the TX ring still drains (no hang, no reset); after on, replies again",
          source="ixgbe_main.c:ixgbe_xmit_frame_ring, ixgbe_clean_tx_irq, ixgbe_clean_rx_irq, "
                 "ixgbe_watchdog_flush_tx",
          nics=ONLY)
def ixgbe_traffic(g: Guest):
    mon = bring_up(g)
    g.sh(f"ip addr add {ADDRESS} dev {g.ifname}")
    tx0, rx0 = counters(g)
    g.expect("echo replies with the link up (of 3)", ping(g, 3), 3)
    tx1, rx1 = counters(g)
    g.expect_true("the driver counted frames sent and received", tx1 > tx0 and rx1 > rx0,
                  f"tx {tx0}->{tx1}, rx {rx0}->{rx1}")
    g.set_link(False)
    mon.recv_link(g.ifname)
    g.expect("echo replies with the link off (of 3)", ping(g, 3), 0)
    g.set_link(True)
    mon.wait_link(g.ifname, lambda m: m.has("LOWER_UP"))
    # The pings with the link off left the gateway's ARP entry INCOMPLETE, still probing: when its
    # last probe fails (a second or so later) it drops what was queued on it, wherever the link is
    # by then (net/core/neighbour.c:neigh_timer_handler).  Start from no entry.
    g.sh(f"ip neigh flush dev {g.ifname}")
    g.expect("echo replies after the link came back (of 3)", ping(g, 3), 3)
    expect_no_trouble(g, driver_log(g))
