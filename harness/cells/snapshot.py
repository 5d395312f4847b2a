"""A freshly booted guest saved to files, so every scenario starts from the same state in a
fraction of a cold boot: once per kernel x NIC x guest image, a guest booted with its RAM in a
file of its own (shared) is stopped and its devices migrated to `file:`; each VM maps that RAM
privately and loads the devices with `-incoming`.  So a restore copies nothing up front: the
guest's pages come from the page cache as it touches them.

The cache key covers everything that shapes the saved state (QEMU's version, the command line
without its per-run fds and paths, the kernel and initramfs contents), so changing any of them
takes a new snapshot; the others of that kernel x NIC x guest clock are removed once unused for
a day (two configurations in use side by side keep theirs).
"""
from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..digest import content_hash, file_hash
from ..machine import VMError
from ..machine.qemu import IGNORE_SHARED, qemu_command
from ..vm import VM, Cost, Target
from ..wait import until

FORMAT = b"testbed-snapshot-2"  # 2: the RAM in a file beside the devices' state
PARTIAL = (".partial", ".ram-partial")  # a save under way, or one interrupted
# Snapshots of one kernel x NIC x clock for other guest images or command lines (another
# project's testbed.yaml, an older agent) are removed once unused this long.
STALE_SECONDS = 24 * 3600
LOCK = "lock"  # in a kernel x NIC x clock's directory: held while one of its snapshots is taken


@dataclass
class Snapshot:
    """A saved guest (a VM restores it: harness.vm.Saved) and the boot it was saved from."""
    path: Path  # the devices' state
    hello: dict  # the agent's HELLO from the boot that was saved (VERSION, RELEASE, PID)
    boot_seconds: float  # that boot's QEMU start to HELLO

    @property
    def ram(self) -> Path:
        return files(self.path)[1]

    def open(self) -> tuple[BinaryIO, BinaryIO]:
        """Its state and RAM files, opened together under the lock a save takes: another worker's
        discard and retake, later, cannot pair one save's state with another's RAM (a FileNotFoundError
        if it was discarded)."""
        with open(self.path.parent / LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            state = open(self.path, "rb")
            try:
                return state, open(self.ram, "rb")
            except BaseException:
                state.close()
                raise


def files(path: Path) -> tuple[Path, Path, Path]:
    """The files of the snapshot whose devices' state is `path`: that, its RAM, and what the boot
    it was saved from said (.json)."""
    return path, path.with_suffix(".ram"), path.with_suffix(".json")


SAVE_TIMEOUT = 60.0


def save(vm: VM, path: Path):
    """Stop the guest and write its devices' state to `path` (QEMU migration to a file; its RAM
    is in the file the VM was started with, which a Snapshot of `path` expects beside it, named
    .ram); QEMU keeps running, paused."""
    if vm.ram is None:
        raise ValueError("only a VM started with its RAM in a file (VM(ram=...)) can be saved")
    vm.monitor.command("stop")
    vm.monitor.command("migrate-set-capabilities", capabilities=IGNORE_SHARED)
    vm.monitor.command("migrate", uri=f"file:{path}")
    status = until(lambda: (s := vm.monitor.command("query-migrate").get("status")) in ("completed", "failed",
                                                                                       "cancelled") and s,
                   SAVE_TIMEOUT)
    if status != "completed":
        raise VMError(f"saving the guest to {path}: migration {status or 'not done in 60 s'}", vm.console_log)


@functools.cache
def _qemu_version(binary: str) -> bytes:
    return subprocess.run([binary, "--version"], capture_output=True).stdout


OLDEST_QEMU = (8, 2)  # a restore maps the RAM file with rom=off (ram_in_file), new in 8.2


def unsupported(binary: str) -> str | None:
    """Why `binary` cannot restore snapshots, if it cannot."""
    m = re.search(rb"version (\d+)\.(\d+)", _qemu_version(binary))
    if m and (int(m[1]), int(m[2])) < OLDEST_QEMU:
        return (f"snapshots need QEMU {'.'.join(map(str, OLDEST_QEMU))} or later ({binary} is "
                f"{m[1].decode()}.{m[2].decode()}): every guest boots")
    return None


@functools.cache
def _file_hash(path: Path, size: int, mtime_ns: int) -> bytes:
    return file_hash(path).encode()


def _contents(path: Path) -> bytes:
    st = path.stat()
    return _file_hash(path, st.st_size, st.st_mtime_ns)


def key(target: Target) -> str:
    """What a snapshot is valid for: the QEMU, its command line, the kernel and the image, hashed."""
    s = target.settings
    placeholder = {"console": 0, "agent": 0, "qmp": 0, "brake": 0}
    # a restorable transport (serial) adds nothing to the command lines
    cmd = qemu_command(s, Path("KERNEL"), Path("INITRD"), target.nic, placeholder, Path("RUN"),
                       s.kernel_command_line(), virtio_agent=target.kernel.virtio_console)
    return content_hash(FORMAT, _qemu_version(s.binary), "\0".join(cmd).encode(),
                        _contents(target.kernel.boot_image), _contents(target.image.path))


def location(target: Target, cache: Path) -> Path:
    """Where `target`'s snapshot is kept (its devices' state; files() gives all its parts): one
    directory per kernel x NIC x guest clock, so the clocks' snapshots do not replace each other."""
    nic = target.nic.model if target.nic else "nonic"
    directory = cache / "snapshots" / re.sub(r"[^\w.-]", "_", f"{target.kernel.name}-{nic}-{target.settings.time}")
    return directory / f"{key(target)[:16]}.state"


def ensure(target: Target, cache: Path, artifacts: Path, spent: list[Cost] | None = None) -> Snapshot:
    """The snapshot for `target`, booting and saving it if the cache has none
    (that boot's console, QMP and agent logs go to `artifacts`, its cost to `spent`)."""
    path = location(target, cache)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    parts = files(path)
    # parallel workers wanting the same snapshot: one boots, the others wait for it
    with open(directory / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(part.exists() for part in parts):
            for old in directory.glob("*.*"):  # other keys' snapshots unused for a while, interrupted saves
                if old.suffix in PARTIAL or time.time() - old.stat().st_mtime > STALE_SECONDS:
                    old.unlink()
            cost = _take(target, path, artifacts)
            if spent is not None:
                spent.append(cost)
        for part in parts:  # in use: not stale for another configuration
            os.utime(part)
    saved = json.loads(parts[2].read_text())
    return Snapshot(path, saved["hello"], saved["boot_seconds"])


def _take(target: Target, path: Path, artifacts: Path) -> Cost:
    _, saved_ram, meta = files(path)
    partial, ram = path.with_suffix(PARTIAL[0]), path.with_suffix(PARTIAL[1])
    try:
        ram.unlink(missing_ok=True)  # a fresh file: the guest must not find an older boot's pages
        with VM(target, artifacts, ram=ram) as vm:
            save(vm, partial)
        with open(ram, "rb+") as f:  # the shared pages reach the disk before the snapshot counts
            os.fsync(f.fileno())
        ram.rename(saved_ram)
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
        ram.unlink(missing_ok=True)
    meta.write_text(json.dumps({"hello": vm.hello, "boot_seconds": vm.boot_seconds}))
    return vm.cpu_seconds()


def discard(snapshot: Snapshot):
    """Remove a snapshot that would not restore; the next `ensure` takes a new one."""
    for part in files(snapshot.path):
        part.unlink(missing_ok=True)
