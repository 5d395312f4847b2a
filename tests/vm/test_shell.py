"""`testbed shell` on a pseudo-terminal (pexpect) with `testbed link` flipping its link from
outside, as a person would: ip monitor in the guest shell sees the change; exit leaves nothing."""
import shlex
import subprocess
import sys
from pathlib import Path

import paramiko
import pexpect
import pytest

from harness.machine.rundir import leftovers
from harness.cells import runner

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
TESTBED = [sys.executable, "-m", "harness"]
PROMPT = r"testbed:[/~]# "  # the console shell starts in /, a login over SSH in root's home


def run_testbed(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*TESTBED, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("transport,nic", [("serial", "igb"), ("ssh", "ixgbe")])  # ixgbe: the testbed's QEMU
def test_shell_with_link_flipped_from_another_terminal(vm_kernel, transport, nic):
    child = pexpect.spawn(TESTBED[0], [*TESTBED[1:], "shell", "--kernel", vm_kernel, "--nic", nic,
                                       "--transport", transport], cwd=ROOT,
                          encoding="utf-8", timeout=90, dimensions=(40, 120))
    try:
        child.expect(r"guest ready: .* on a real clock")  # the shell's default, whatever testbed.yaml says
        child.expect(r"run directory (\S+)")
        run_dir = child.match.group(1)
        if transport == "ssh":
            child.expect(r"more shells, from other terminals: (ssh [^\r\n]*)")
            check_other_logins(child.match.group(1), run_dir)
        child.expect(PROMPT)
        # the monitor first: ixgbe's carrier (no autonegotiation) can come before it would subscribe
        child.sendline("(sleep 1; ip link set eth0 up) & ip monitor link")
        child.expect(r"eth0: <[^>]*LOWER_UP[^>]*>.* state UP")  # the carrier arriving after admin-up
        flipped = run_testbed("link", "down", "--vm", run_dir)
        assert flipped.returncode == 0 and "set_link nic0 off" in flipped.stdout, flipped.stderr
        child.expect(r"eth0: <NO-CARRIER,[^>]*UP> .* state DOWN")  # iproute2's ip, not busybox's
        assert run_testbed("link", "up", "--vm", run_dir).returncode == 0
        child.expect(r"eth0: <[^>]*LOWER_UP[^>]*>.* state UP")
        child.sendcontrol("c")  # job control: Ctrl-C stops ip monitor, not the shell
        child.expect(PROMPT)
        child.sendline("exit")
        child.expect("guest powered off")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert leftovers(child.pid) == []


def check_other_logins(login: str, run_dir: str):
    """The printed ssh command logs in to the guest through its forward with the run's keys, and
    refuses the guest once the pinned host key differs."""
    argv = shlex.split(login)
    assert argv[0] == "ssh" and all(Path(p).parent == Path(run_dir) for p in argv if p.startswith("/"))
    batch = [argv[0], "-F", "/dev/null", "-o", "BatchMode=yes", *argv[1:]]
    other = subprocess.run([*batch, "echo $SSH_CONNECTION"], capture_output=True, text=True, timeout=30)
    assert other.returncode == 0, other.stderr
    assert other.stdout.split()[-1:] == ["22"]  # "10.0.2.2 <port> 10.0.2.15 22": in through the forward
    known = Path(run_dir) / "known_hosts"
    pinned = known.read_text()
    known.write_text(pinned.replace(pinned.split()[2], paramiko.ECDSAKey.generate().get_base64()).replace(
        "ssh-ed25519", "ecdsa-sha2-nistp256"))
    refused = subprocess.run([*batch, "true"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 255 and "Host key verification failed" in refused.stderr, refused.stderr
    known.write_text(pinned)


@pytest.mark.parametrize("transport", ["serial", "ssh"])
def test_a_panic_in_the_shell_ends_it_with_the_cause(cfg, vm_kernel, transport, sysrq_crash):
    crash = sysrq_crash(runner.prepare(cfg, vm_kernel, None).kernel.version)
    child = pexpect.spawn(TESTBED[0], [*TESTBED[1:], "shell", "--kernel", vm_kernel, "--nic", "e1000e",
                                       "--transport", transport], cwd=ROOT, encoding="utf-8", timeout=90)
    try:
        child.expect(PROMPT)
        child.sendline("echo c > /proc/sysrq-trigger")
        child.expect(rf"testbed: {crash}.* \(console log: ")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3
    assert leftovers(child.pid) == []
