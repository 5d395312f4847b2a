"""Restoring the saved guest: every restore starts from the same fresh state, a wrecked guest
costs only its own VM, and a snapshot that will not restore is replaced, not fatal."""
import dataclasses
import hashlib

import pytest

from harness.agent.protocol import Op
from harness.machine import VMError
from harness.cells import runner, snapshot

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def target(cfg, vm_kernel):
    return runner.prepare(cfg, vm_kernel, "igb")


def sh(vm, cmd: str) -> str:
    r = vm.agent.call(Op.RUN, cmd=cmd, timeout=30)
    assert r["STATUS"] == 0, r.get("OUTPUT")
    return r["OUTPUT"].decode()


STATE = "cat /sys/class/net/eth0/flags; ls /sys/class/net; cat /proc/sys/net/core/rmem_default"


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_each_restore_starts_from_the_freshly_booted_guest(cfg, target, tmp_path):
    with runner.ready_vm(cfg, target, tmp_path / "first") as vm:
        assert isinstance(vm.snapshot, snapshot.Snapshot) and vm.hello["RELEASE"] == target.kernel.release
        # the RAM is mapped, not in the migration stream, and the guest's writes stay its own
        ram, ram_digest = vm.snapshot.ram, digest(vm.snapshot.ram)
        assert vm.snapshot.path.stat().st_size < 4 << 20 < ram.stat().st_blocks * 512
        fresh = sh(vm, STATE)
        assert "eth0" in fresh and "d0" not in fresh
        sh(vm, "ip link set eth0 up && ip link add d0 type dummy && echo 4096 > /proc/sys/net/core/rmem_default")
        assert sh(vm, STATE) != fresh
        vm.monitor.set_link(vm.nic_id, False)
    assert digest(ram) == ram_digest
    with runner.ready_vm(cfg, target, tmp_path / "second") as vm:
        assert vm.snapshot is not None
        assert sh(vm, STATE) == fresh


def test_a_panicked_guest_costs_only_its_own_vm(cfg, target, tmp_path, sysrq_crash):
    with runner.ready_vm(cfg, target, tmp_path / "wrecked") as vm:
        with pytest.raises(VMError, match=sysrq_crash(target.kernel.version)):
            vm.agent.call(Op.RUN, cmd="echo c > /proc/sysrq-trigger", timeout=60)
    with runner.ready_vm(cfg, target, tmp_path / "next") as vm:
        assert vm.snapshot is not None
        assert vm.agent.call(Op.PING).ret == 0


def test_a_snapshot_that_will_not_restore_is_replaced(cfg, target, tmp_path):
    own = dataclasses.replace(cfg, cache=tmp_path / "cache")  # not the cache other tests share
    snap = snapshot.ensure(target, own.cache, tmp_path / "take")
    size = snap.path.stat().st_size
    with open(snap.path, "r+b") as f:
        f.truncate(4096)
    failed_restore: list = []
    with runner.ready_vm(own, target, tmp_path / "broken", spent=failed_restore) as vm:
        assert vm.snapshot is None
        assert any("discarded" in n for n in vm.notes), vm.notes
        assert vm.agent.call(Op.PING).ret == 0
    taking: list = []
    with runner.ready_vm(own, target, tmp_path / "again", spent=taking) as vm:  # a new snapshot was taken
        assert vm.snapshot is not None and vm.snapshot.path.stat().st_size > 4096
    restored = vm.cpu_seconds()[0]
    assert size > 4096 and restored is not None
    # what the other QEMUs cost reaches the cell: a restore that failed, a boot that took a snapshot
    assert len(failed_restore) == 1 and failed_restore[0][0] > 0
    assert len(taking) == 1 and taking[0][0] > restored > 0
    reused: list = []
    with runner.ready_vm(own, target, tmp_path / "reused", spent=reused):
        pass
    assert reused == []


def test_a_cell_that_takes_its_snapshot_counts_that_boot(cfg, vm_kernel):
    own = dataclasses.replace(cfg, memory_mb=cfg.memory_mb + 32)  # a snapshot of its own, taken by the first cell
    first, second = (runner.run_cell(own, "carrier-qmp", vm_kernel, "igb") for _ in range(2))
    try:
        assert first.verdict == second.verdict == "passed" and first.from_snapshot and second.from_snapshot
        assert first.qemu_cpu_seconds is not None and second.qemu_cpu_seconds is not None
        # besides the same restore and run, the boot and save: a cold boot costs well over 0.5 CPU s
        assert first.qemu_cpu_seconds - second.qemu_cpu_seconds > 0.5 and second.qemu_cpu_seconds > 0
    finally:  # its 288 MB of RAM would stay in the shared cache for a day
        for part in snapshot.files(snapshot.location(runner.prepare(own, vm_kernel, "igb"), own.cache)):
            part.unlink(missing_ok=True)
