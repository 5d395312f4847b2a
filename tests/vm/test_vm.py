"""The VM's lifecycle against real QEMU: nothing is left behind, failures are fast and named."""
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.agent.protocol import Op
from harness.machine import VMError
from harness.machine.monitor import MonitorError
from harness.machine.qemu import QemuSettings
from harness.machine.rundir import leftovers
from harness.cells import runner
from harness.transport import ssh
from harness.vm import VM
from harness.wait import until

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def target(cfg, vm_kernel):
    return runner.prepare(cfg, vm_kernel, "igb")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_exit_reaps_qemu_and_removes_the_run_dir(target, tmp_path):
    started = time.monotonic()
    with VM(target, tmp_path) as vm:
        pid, run_dir = vm.qemu.pid, vm.run_dir
        assert run_dir.is_dir() and oct(run_dir.stat().st_mode & 0o777) == "0o700"
        release = vm.agent.call(Op.PING)["RELEASE"]
        assert release == target.kernel.release  # the agent runs on the kernel we asked for
        # the machine has no HPET (qemu.MACHINE): the guest kernel found none to use.  A tickless
        # 3.14 lists the TSC once its watchdog has checked it, a second or so after the boot
        def clocks() -> bytes:
            return vm.agent.call(Op.READ_FILE, path="/sys/devices/system/clocksource/clocksource0/"
                                                    "available_clocksource")["DATA"]
        assert until(lambda: b"tsc" in clocks(), timeout=30, interval=0.1), clocks()
        assert b"hpet" not in clocks()
    wall = time.monotonic() - started
    assert not alive(pid) and not run_dir.exists()
    qemu_cpu, harness_cpu = vm.cpu_seconds()  # a boot costs QEMU CPU; no more than its cores could give
    assert qemu_cpu is not None and 0 < qemu_cpu <= wall * (os.cpu_count() or 1)
    assert 0 <= harness_cpu <= wall
    # kernel-config/channel.config builds the virtio console in: the agent is on its port
    assert target.kernel.virtio_console
    assert "testbed-init: starting agent on /dev/vport0p1" in (tmp_path / "console.log").read_text()
    assert '"quit"' in (tmp_path / "qmp.log").read_text()  # the soft shutdown was used


def test_a_kernel_without_the_virtio_console_gets_the_agent_on_ttyS1_in_lock_step_too(target, tmp_path):
    """A bzImage of unknown config is taken to have no virtio console: its agent's channel is the
    second UART, and lock-step holds there as on the port (test_timeline covers the port)."""
    kernel = dataclasses.replace(target.kernel, virtio_console=False)
    with VM(dataclasses.replace(target, kernel=kernel), tmp_path) as vm:
        vm.lock_step()
        assert "HELD" in vm.agent.call(Op.PING).attrs  # its reply stopped the guest
        listing = f"for f in /proc/{vm.hello['PID']}/fd/*; do readlink $f; done"  # the agent's open files
        open_files = vm.agent.call(Op.RUN, cmd=listing)["OUTPUT"].split()
    assert b"/dev/ttyS1" in open_files and b"/dev/vport0p1" not in open_files, open_files
    assert "testbed-init: starting agent on /dev/ttyS1" in (tmp_path / "console.log").read_text()
    assert '"event": "STOP"' in (tmp_path / "brake.log").read_text()


def test_kernel_panic_fails_the_waiter_with_the_panic_line(target, tmp_path, sysrq_crash):
    with VM(target, tmp_path) as vm:
        with pytest.raises(VMError, match=sysrq_crash(target.kernel.version)) as e:
            vm.agent.call(Op.RUN, cmd="echo c > /proc/sysrq-trigger", timeout=60)
        assert str(tmp_path / "console.log") in str(e.value)
        pid = vm.qemu.pid
    assert not alive(pid)
    # the waiter heard of the first fatal line at once; the log still has the kernel's whole report
    assert "Kernel panic - not syncing" in (tmp_path / "console.log").read_text()


def test_qemu_that_cannot_start_is_a_named_failure(target, tmp_path):
    bad_option = QemuSettings(target.settings.binary, target.settings.accel, memory_mb=10 ** 9)
    with pytest.raises(VMError, match="QEMU exited with status 1"):
        with VM(dataclasses.replace(target, settings=bad_option), tmp_path / "a"):
            pass
    missing = QemuSettings("/nonexistent/qemu-system-x86_64", "tcg")
    with pytest.raises(VMError, match="cannot start QEMU"):
        with VM(dataclasses.replace(target, settings=missing), tmp_path / "b"):
            pass


def _default_sigint():
    # as from a terminal: a test run started in the background inherits SIGINT ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def family(pid: int) -> set[int]:
    """`pid` and its children (pytest-xdist's workers)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return {pid, *map(int, children)}


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("command", ["testbed run", "pytest"])
def test_interrupted_run_leaves_no_qemu_and_no_run_dir(target, command, sig, status):
    # carrier-admin-down on the real clock: 10 s of waiting for silence, so the signal lands mid-scenario
    argv = {"testbed run": ["-m", "harness", "run", "carrier-admin-down", "--kernel", target.kernel.name,
                            "--time", "real"],
            "pytest": ["-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-n", "2", "-m", "vm",
                       "tests/vm/test_scenarios.py", "-k",
                       f"real_clock and carrier-admin-down and {target.kernel.name}"]}[command]
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, preexec_fn=_default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    pids: set[int] = set()
    while not [d for p in pids for d in Path("/tmp").glob(f"testbed-run-{p}-*")] and time.monotonic() < deadline:
        pids |= family(proc.pid)  # wait until a guest is booting
        time.sleep(0.1)
    assert proc.poll() is None and time.monotonic() < deadline, "the run never started a VM"
    time.sleep(1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == status, f"{err}\n{out}"
    assert "INTERNALERROR" not in out + err and "Traceback" not in err
    assert [left for p in pids for left in leftovers(p)] == []


@pytest.mark.parametrize("transport", ["serial", "ssh"])
def test_nothing_listens_on_the_network_and_the_guest_is_fenced(cfg, vm_kernel, tmp_path, transport):
    with VM(runner.prepare(cfg, vm_kernel, "igb", transport), tmp_path) as vm:
        listening = subprocess.run(["ss", "-Hlnp"], capture_output=True, text=True).stdout.splitlines()
        mine = [line.split() for line in listening if f"pid={vm.qemu.pid}," in line]
        unix = [s for s in mine if s[0] in ("u_str", "u_seq", "u_dgr")]
        # over serial, unix sockets only; over SSH, the forward too, on loopback only
        assert [s[4] for s in mine if s not in unix] == ([f"127.0.0.1:{ssh.forwarded_port(vm.monitor)}"]
                                                         if transport == "ssh" else []), mine
        assert any(str(vm.run_dir / "qmp.sock") in s[4] for s in unix), mine  # in the 0700 run dir
        assert oct(vm.run_dir.stat().st_mode & 0o777) == "0o700"
        assert re.findall(r"-netdev (\S+)", (tmp_path / "qemu.log").read_text().splitlines()[0]) == \
            ["user,id=net0,restrict=on"] + ([f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:0-{ssh.GUEST_ADDR}:22"]
                                            if transport == "ssh" else [])
        # restrict=on: slirp would otherwise connect the guest's 10.0.2.2:PORT to the host's
        # 127.0.0.1:PORT; here a host listener sees nothing (over SSH, from the management NIC)
        configure = "ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; sleep 1; " if transport == "serial" else ""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.settimeout(0.5)
            port = listener.getsockname()[1]
            r = vm.agent.call(Op.RUN, cmd=f"{configure}echo hello | nc -w 3 10.0.2.2 {port}; echo status $?",
                              timeout=30)
            with pytest.raises(socket.timeout):
                listener.accept()
        assert b"status 0" not in r["OUTPUT"], r["OUTPUT"]


def test_a_qmp_command_qemu_refuses_is_a_monitor_error_with_its_reason(target, tmp_path):
    with VM(target, tmp_path) as vm:
        with pytest.raises(MonitorError, match="DeviceNotFound: Device 'nosuch' not found"):
            vm.monitor.command("set_link", name="nosuch", up=False)
        assert vm.agent.call(Op.PING).ret == 0  # and the guest goes on


@pytest.mark.parametrize("kernel", ["debian-6.12"])
def test_a_debian_kernel_boots_at_its_pvh_entry_without_the_bzimage_setup(cfg, kernel, tmp_path):
    if kernel not in cfg.kernels:
        pytest.skip(f"{kernel} is not in testbed.yaml")
    target = runner.prepare(cfg, kernel, None)
    assert target.kernel.boot_image.name == "vmlinux" and target.kernel.boot_image.read_bytes()[:4] == b"\x7fELF"
    with VM(target, tmp_path) as vm:  # a cold boot: the snapshot's would not show the setup code's lines
        assert vm.hello["RELEASE"] == target.kernel.release
    # the bzImage's real-mode setup prints this on the serial console before the kernel starts
    assert "Probing EDD" not in (tmp_path / "console.log").read_text()
