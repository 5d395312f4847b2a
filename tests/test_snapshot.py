"""The snapshot cache key: anything that shapes the saved guest changes it."""
import dataclasses
import sys
from types import SimpleNamespace

from harness.machine.qemu import QemuSettings
from harness.run import snapshot
from harness.vm import Target


def target(tmp_path, kernel=b"kernel", initramfs=b"initramfs", nic="igb", memory_mb=256):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "bzImage").write_bytes(kernel)
    (tmp_path / "initramfs.cpio").write_bytes(initramfs)
    return Target(SimpleNamespace(name="k", boot_image=tmp_path / "bzImage"),
                  SimpleNamespace(path=tmp_path / "initramfs.cpio"), nic,
                  QemuSettings(binary=sys.executable, memory_mb=memory_mb))


def test_same_inputs_same_key(tmp_path):
    assert snapshot._key(target(tmp_path / "a")) == snapshot._key(target(tmp_path / "b"))


def test_key_follows_every_input(tmp_path):
    base = snapshot._key(target(tmp_path / "base"))
    variants = [target(tmp_path / "k", kernel=b"other kernel"), target(tmp_path / "i", initramfs=b"other image"),
                target(tmp_path / "n", nic="e1000e"), target(tmp_path / "m", memory_mb=512)]
    keys = [snapshot._key(t) for t in variants]
    assert base not in keys and len(set(keys)) == len(keys)


def test_qemu_binary_is_part_of_the_key(tmp_path):
    t = target(tmp_path)
    other = dataclasses.replace(t, settings=dataclasses.replace(t.settings, binary="/bin/echo"))
    assert snapshot._key(t) != snapshot._key(other)
