"""The pytest plugin against real guests: tests of this project that take `testbed_guest`, and a
project outside harness/ (examples/netlink-tests, with its own testbed.yaml) run through it."""
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "netlink-tests"
MORE_TESTS = '''import pytest


def test_that_fails_on_purpose(testbed_guest):
    testbed_guest.sh("echo marker-on-the-console > /dev/console")
    testbed_guest.expect("the NIC's name", testbed_guest.getlink().ifname, "eth9")


@pytest.mark.testbed_no_nic
def test_that_skips_on_purpose(testbed_guest):
    testbed_guest.skip("not for this kernel, on purpose")
'''


def test_each_kernel_and_nic_gives_a_restored_guest_with_its_nic(testbed_guest):
    g = testbed_guest
    assert g.vm.snapshot is not None  # restored, not booted
    link = g.getlink()
    g.expect("eth0's IFLA_MTU, from every attribute decoded", link.attrs.get("IFLA_MTU"), 1500)
    g.expect("the NIC's driver", g.sh("basename $(readlink /sys/class/net/eth0/device/driver)").strip(),
             {"igb": "igb", "e1000e": "e1000e", "e1000": "e1000", "ixgbe": "ixgbe"}[g.nic])


@pytest.mark.testbed_no_nic
def test_a_no_nic_test_gets_a_guest_without_one(testbed_guest):
    assert testbed_guest.nic is None
    assert testbed_guest.read_file("/sys/class/net/eth0/ifindex").ret < 0


def message(case: ET.Element, outcome: str) -> str:
    """The message of a JUnit testcase's <failure> or <skipped>."""
    element = case.find(outcome)
    assert element is not None, f"no <{outcome}> in {ET.tostring(case)[:300]!r}"
    return element.get("message", "")


def test_an_example_project_runs_through_the_plugin_and_the_cli(tmp_path, vm_kernel):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("results", "__pycache__"))
    (project / "test_more.py").write_text(MORE_TESTS)
    junit = project / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--testbed-kernels",
                        vm_kernel, f"--junitxml={junit}"], cwd=project, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr  # the one failing on purpose
    cases = {c.get("name", ""): c for c in ET.parse(junit).iter("testcase")}
    assert sorted(cases) == sorted([f"test_an_mtu_change_notifies_the_new_mtu[{vm_kernel}-nonic]",
                                    f"test_the_link_going_down_reaches_subscribers[{vm_kernel}-igb]",
                                    f"test_that_fails_on_purpose[{vm_kernel}-igb]",
                                    f"test_that_skips_on_purpose[{vm_kernel}-nonic]"]), r.stdout
    failed = cases[f"test_that_fails_on_purpose[{vm_kernel}-igb]"]
    properties = {p.get("name"): p.get("value", "") for p in failed.iter("property")}
    assert properties["kernel"] == vm_kernel and properties["nic"] == "igb" and properties["version"][0] in "36"
    assert "the NIC's name: got 'eth0', expected 'eth9'" in message(failed, "failure")
    assert "on purpose" in message(cases[f"test_that_skips_on_purpose[{vm_kernel}-nonic]"], "skipped")
    passed = [c for name, c in cases.items() if "purpose" not in name]
    assert all(c.find("failure") is None and c.find("skipped") is None and c.find("error") is None for c in passed)
    # the failure's report: the decoded trace, and the console's tail with what the test printed there
    assert "testbed trace (guest clock)" in r.stdout and "RTM_GETLINK dump: RTM_NEWLINK eth0" in r.stdout
    assert "guest console, last 30 lines" in r.stdout and "marker-on-the-console" in r.stdout
    # the project's scenario, by name (testbed.yaml found from here) and as FILE.py::NAME
    for name in ("txqlen-notify", "scenarios/txqlen.py::txqlen-notify"):
        cli = subprocess.run([sys.executable, "-m", "harness", "run", name, "--kernel", vm_kernel], cwd=project,
                             capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0 and f"PASSED: txqlen-notify on {vm_kernel}" in cli.stdout, cli.stdout + cli.stderr


@pytest.mark.testbed_no_nic
def test_addresses_routes_and_generic_netlink_are_decoded_from_a_real_kernel(testbed_guest):
    from pyroute2.netlink import GENL_ID_CTRL, NETLINK_GENERIC, NLM_F_DUMP, NLM_F_REQUEST, ctrlmsg
    from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE
    g = testbed_guest
    g.add_dummy("d0")
    mon = g.socket(groups=RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE)
    g.sh("ip link set d0 up && ip addr add 10.9.0.1/24 dev d0")
    seen = mon.drain(quiet=1.0)
    [addr] = [m for m in seen if m.type_name == "RTM_NEWADDR"]
    assert (addr.family, addr.body["prefixlen"], addr.attrs["IFA_ADDRESS"], addr.attrs["IFA_LABEL"]) == \
        ("addr", 24, "10.9.0.1", "d0"), addr.as_dict()
    routes = [m for m in seen if m.type_name == "RTM_NEWROUTE"]
    assert any(r.attrs.get("RTA_DST") == "10.9.0.0" and r.body["dst_len"] == 24 for r in routes), \
        [r.as_dict() for r in routes]
    # generic netlink: the controller's family dump, its attributes by name
    request = ctrlmsg()
    request["header"].update(type=GENL_ID_CTRL, flags=NLM_F_REQUEST | NLM_F_DUMP, sequence_number=g.next_seq())
    request["cmd"], request["version"] = 3, 1  # CTRL_CMD_GETFAMILY
    request.encode()
    genl = g.socket(protocol=NETLINK_GENERIC)
    families = [m for d in genl.dump(bytes(request.data)) for m in d.messages if m.family == "ctrl"]
    assert "nlctrl" in [m.attrs.get("CTRL_ATTR_FAMILY_NAME") for m in families], [m.attrs for m in families][:3]
