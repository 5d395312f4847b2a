"""Tests of our own, run by `pytest` here through the testbed's plugin: each gets a guest restored
from its kernel x NIC's snapshot, once per kernel x NIC of testbed.yaml."""
import pytest

from harness.netlink import RTMGRP_LINK


@pytest.mark.testbed_no_nic
def test_an_mtu_change_notifies_the_new_mtu(testbed_guest):
    g = testbed_guest
    g.add_dummy("d0")
    mon = g.socket(groups=RTMGRP_LINK)
    g.sh("ip link set d0 mtu 1400")
    mtus = [m.attrs.get("IFLA_MTU") for m in mon.drain(quiet=1.0) if m.ifname == "d0"]
    if g.version < (3, 15):  # 3.14 also announces the change before it is made (see mtu-notify)
        g.expect("IFLA_MTU of each notification (3.14: before and after)", mtus, [1500, 1400])
    else:
        g.expect("IFLA_MTU of each notification", mtus, [1400])


def test_the_link_going_down_reaches_subscribers(testbed_guest):
    g = testbed_guest
    mon = g.socket(groups=RTMGRP_LINK)
    g.sh(f"ip link set {g.ifname} up")
    mon.wait_link(g.ifname, lambda m: m.has("LOWER_UP"))
    g.set_link(False)
    down = mon.wait_link(g.ifname, lambda m: not m.has("LOWER_UP"))
    g.expect("operstate", down.operstate, "DOWN")
