"""The snapshot cache key: anything that shapes the saved guest changes it."""
import dataclasses
import fcntl
import sys
import threading
from types import SimpleNamespace
from typing import cast

import pytest

from harness.machine.qemu import QemuSettings
from harness.nic import NICS
from harness.provision.image import GuestImage
from harness.provision.kernel import Kernel
from harness.cells import snapshot
from harness.vm import Target


def target(tmp_path, kernel=b"kernel", initramfs=b"initramfs", nic="igb", memory_mb=256, kernel_args="",
           virtio_console=False):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "bzImage").write_bytes(kernel)
    (tmp_path / "initramfs.cpio").write_bytes(initramfs)
    # a kernel and an image with only what key() reads
    return Target(cast(Kernel, SimpleNamespace(name="k", boot_image=tmp_path / "bzImage",
                                                virtio_console=virtio_console)),
                  cast(GuestImage, SimpleNamespace(path=tmp_path / "initramfs.cpio")), NICS[nic],
                  QemuSettings(binary=sys.executable, memory_mb=memory_mb, kernel_args=kernel_args))


def test_same_inputs_same_key(tmp_path):
    assert snapshot.key(target(tmp_path / "a")) == snapshot.key(target(tmp_path / "b"))


def test_key_follows_every_input(tmp_path):
    base = snapshot.key(target(tmp_path / "base"))
    variants = [target(tmp_path / "k", kernel=b"other kernel"), target(tmp_path / "i", initramfs=b"other image"),
                target(tmp_path / "n", nic="e1000e"), target(tmp_path / "m", memory_mb=512),
                target(tmp_path / "a", kernel_args="initcall_debug"), target(tmp_path / "v", virtio_console=True)]
    keys = [snapshot.key(t) for t in variants]
    assert base not in keys and len(set(keys)) == len(keys)


def test_qemu_binary_is_part_of_the_key(tmp_path):
    t = target(tmp_path)
    other = dataclasses.replace(t, settings=dataclasses.replace(t.settings, binary="/bin/echo"))
    assert snapshot.key(t) != snapshot.key(other)


def test_other_configurations_snapshots_stay_until_unused_for_a_day(tmp_path, monkeypatch):
    import os
    import time

    def take(target, path, artifacts):  # what a boot and save would leave
        for part in snapshot.files(path):
            part.write_text('{"hello": {}, "boot_seconds": 1.0}')
    monkeypatch.setattr(snapshot, "_take", take)
    t = target(tmp_path / "t")
    directory = tmp_path / "cache" / "snapshots" / "k-igb-real"
    directory.mkdir(parents=True)
    recent, stale, partial = directory / "aaaa.state", directory / "bbbb.state", directory / "cccc.partial"
    partial_ram = directory / "cccc.ram-partial"
    for f in (recent, stale, partial, partial_ram):
        f.write_bytes(b"x")
    day_ago = time.time() - snapshot.STALE_SECONDS - 60
    os.utime(stale, (day_ago, day_ago))
    snap = snapshot.ensure(t, tmp_path / "cache", tmp_path / "boot")
    assert snap.path.parent == directory and snap.path.exists()
    assert recent.exists() and not stale.exists() and not partial.exists() and not partial_ram.exists()


def test_a_snapshot_in_use_is_not_stale_however_old_its_files(tmp_path, monkeypatch):
    import os
    import time

    def take(target, path, artifacts):
        for part in snapshot.files(path):
            part.write_text('{"hello": {}, "boot_seconds": 1.0}')
    monkeypatch.setattr(snapshot, "_take", take)
    t = target(tmp_path / "t")
    snap = snapshot.ensure(t, tmp_path / "cache", tmp_path / "boot")
    parts = snapshot.files(snap.path)
    two_days_ago = time.time() - 2 * snapshot.STALE_SECONDS
    for part in parts:
        os.utime(part, (two_days_ago, two_days_ago))
    snapshot.ensure(t, tmp_path / "cache", tmp_path / "boot")  # used again: another key's take keeps it
    assert all(time.time() - part.stat().st_mtime < snapshot.STALE_SECONDS for part in parts)


def test_a_snapshots_state_and_ram_are_opened_together_not_during_a_save(tmp_path):
    state, ram, _ = snapshot.files(tmp_path / "k.state")
    state.write_bytes(b"state 1")
    ram.write_bytes(b"ram 1")
    saved = snapshot.Snapshot(state, {}, 1.0)
    opened: list = []
    with open(tmp_path / snapshot.LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a save under way
        opener = threading.Thread(target=lambda: opened.append(saved.open()))
        opener.start()
        opener.join(0.3)
        assert opened == []  # it waits for the save to end
        ram.with_suffix(".ram-partial").write_bytes(b"ram 2")  # the save renames its RAM, then its state
        ram.with_suffix(".ram-partial").rename(ram)
        state.with_suffix(".partial").write_bytes(b"state 2")
        state.with_suffix(".partial").rename(state)
    opener.join(5)
    (state_file, ram_file), = opened
    with state_file, ram_file:
        assert (state_file.read(), ram_file.read()) == (b"state 2", b"ram 2")
    state.unlink()
    with pytest.raises(FileNotFoundError):
        saved.open()


@pytest.mark.parametrize("version,restores", [("8.1.5", False), ("8.2.0", True), ("10.0.2", True)])
def test_a_qemu_too_old_to_restore_snapshots_says_so(tmp_path, version, restores):
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version} (Debian 1:{version}+ds-1)'\n")
    qemu.chmod(0o755)
    reason = snapshot.unsupported(str(qemu))
    assert (reason is None) == restores and (restores or f"({qemu} is {version[:3]})" in (reason or ""))
