"""`testbed shell` on a pseudo-terminal (pexpect) with `testbed link` flipping its link from
outside, as a person would: ip monitor in the guest shell sees the change; exit leaves nothing."""
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from harness.vm import leftovers

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
TESTBED = [sys.executable, "-m", "harness"]


def run_testbed(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*TESTBED, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_shell_with_link_flipped_from_another_terminal(vm_kernel):
    child = pexpect.spawn(TESTBED[0], [*TESTBED[1:], "shell", "--kernel", vm_kernel, "--nic", "igb"], cwd=ROOT,
                          encoding="utf-8", timeout=90, dimensions=(40, 120))
    try:
        child.expect(r"run directory (\S+)")
        run_dir = child.match.group(1)
        child.expect("testbed:/# ")
        child.sendline("ip link set eth0 up; ip monitor link")
        child.expect(r"eth0: <[^>]*LOWER_UP[^>]*>.* state UP")  # the carrier arriving after admin-up
        flipped = run_testbed("link", "down", "--vm", run_dir)
        assert flipped.returncode == 0 and "set_link nic0 off" in flipped.stdout, flipped.stderr
        child.expect(r"eth0: <NO-CARRIER,[^>]*UP> .* state DOWN")  # iproute2's ip, not busybox's
        assert run_testbed("link", "up", "--vm", run_dir).returncode == 0
        child.expect(r"eth0: <[^>]*LOWER_UP[^>]*>.* state UP")
        child.sendcontrol("c")  # job control: Ctrl-C stops ip monitor, not the shell
        child.expect("testbed:/# ")
        child.sendline("exit")
        child.expect("guest powered off")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert leftovers(child.pid) == []



def test_a_panic_in_the_shell_ends_it_with_the_cause(vm_kernel):
    child = pexpect.spawn(TESTBED[0], [*TESTBED[1:], "shell", "--kernel", vm_kernel, "--nic", "e1000e"], cwd=ROOT,
                          encoding="utf-8", timeout=90)
    try:
        child.expect("testbed:/# ")
        child.sendline("echo c > /proc/sysrq-trigger")
        child.expect(r"testbed: kernel panic at [\d.]+ s: .*sysrq triggered crash \(console log: ")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3
