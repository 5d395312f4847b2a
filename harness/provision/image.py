"""The guest image: an initramfs with busybox, the init, the agent and the modules a NIC needs.

Built in Python (no root, no cpio tool), cached under <cache>/initramfs by the hash of its
contents, so a second build of the same inputs is a file lookup.
"""
from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import PROJECT
from ..digest import content_hash
from ..errors import UsageError
from ..nic import Nic
from .cpio import Cpio
from .kernel import VIRTIO_AGENT_MODULES, Kernel

GUEST = PROJECT / "guest"
BUSYBOX = Path("/bin/busybox")


def build_agent(cache: Path) -> Path:
    """The statically linked agent, compiled once per (source, compiler)."""
    sources = [GUEST / "agent.c", GUEST / "proto.h"]
    cc = subprocess.run(["gcc", "--version"], capture_output=True).stdout
    out = cache / "agent" / content_hash(cc, *(p.read_bytes() for p in sources))[:16] / "agent"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        build = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp),
                                str(GUEST / "agent.c")], capture_output=True, text=True)
        if build.returncode:
            raise RuntimeError(f"building the guest agent failed:\n{build.stderr}")
        tmp.rename(out)
    return out


@dataclass
class GuestImage:
    path: Path  # the initramfs (newc cpio, uncompressed)


def _busybox_applets() -> list[str]:
    if not BUSYBOX.exists():
        raise UsageError(f"{BUSYBOX} is missing: the guest needs busybox-static (run `make setup`)")
    out = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True)
    return [a for a in out.stdout.split() if a != "bin/busybox"]


# Drivers scenarios use besides the NIC's, loaded when the kernel has them as modules.
OPTIONAL_MODULES = ("dummy",)
# Module parameters: insmod does not apply the kernel command line's (dummy.numdummies=0), and
# a dummy0 created at load would be one more link in every dump and notification.
MODULE_PARAMETERS = {"dummy": "numdummies=0"}


def shared_objects(program: Path) -> list[Path]:
    """The libraries and dynamic loader `program` needs, as ldd resolves them on this host."""
    out = subprocess.run(["ldd", str(program)], capture_output=True, text=True)
    if "not a dynamic executable" in out.stdout + out.stderr:
        return []
    if out.returncode or "not found" in out.stdout:
        raise UsageError(f"guest-binaries: {program}: ldd cannot resolve its libraries: "
                         f"{(out.stdout + out.stderr).strip().splitlines()[-1]}")
    return [Path(p) for p in re.findall(r"(/\S+) \(0x", out.stdout)]


def host_files(programs: list[Path]) -> dict[str, tuple[bytes, int]]:
    """Host programs at their own paths, with every shared object they need."""
    files = {}
    for program in programs:
        files[str(program).lstrip("/")] = (program.resolve().read_bytes(), 0o755)
        for lib in shared_objects(program):
            files.setdefault(str(lib).lstrip("/"), (lib.resolve().read_bytes(), 0o755))
    return files


@dataclass(frozen=True)
class GuestAdditions:
    """What a transport adds to the initramfs (see harness/transport): files by guest path with
    their mode, host programs, and drivers loaded after the NIC under test's (so that one is eth0)."""
    files: dict = field(default_factory=dict)
    programs: tuple[Path, ...] = ()
    drivers: tuple[str, ...] = ()


def build(kernel: Kernel, nic: Nic | None, cache: Path, host_programs: Sequence[Path] = (),
          additions: GuestAdditions = GuestAdditions()) -> GuestImage:
    drivers = [nic.driver, *additions.drivers] if nic else list(additions.drivers)
    if kernel.virtio_console:
        drivers += VIRTIO_AGENT_MODULES
    host_programs = [*host_programs, *additions.programs]
    modules = kernel.modules_for(drivers, optional=OPTIONAL_MODULES)
    agent = build_agent(cache)
    files = {  # path in the guest -> (content, mode)
        **additions.files,
        "init": ((GUEST / "init").read_bytes(), 0o755),
        "agent": (agent.read_bytes(), 0o755),
        "bin/busybox": (BUSYBOX.read_bytes(), 0o755),
        "etc/fstab": ((GUEST / "fstab").read_bytes(), 0o644),
        "etc/modules": ("".join(f"{m.name} {MODULE_PARAMETERS.get(m.name.split('.ko')[0], '')}\n"
                                for m in modules).encode(), 0o644),
        **{f"lib/modules/{m.name}": (m.read_bytes(), 0o644) for m in modules},
        **host_files(list(host_programs)),
    }
    applets = [a for a in _busybox_applets() if a not in files]
    digest = content_hash(*(name.encode() + bytes([mode & 0xFF]) + data
                            for name, (data, mode) in sorted(files.items())),
                     "\n".join(applets).encode())[:16]
    path = cache / "initramfs" / f"{digest}.cpio"
    if not path.exists():
        cpio = Cpio()
        dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "lib", "lib/modules", "proc", "sys", "dev",
                "tmp", "root"}
        for name in files:
            parent = Path(name).parent
            while str(parent) != ".":
                dirs.add(str(parent))
                parent = parent.parent
        for d in sorted(dirs, key=lambda d: (d.count("/"), d)):
            cpio.dir(d)
        cpio.chardev("dev/console", 5, 1)  # the kernel opens it for init before devtmpfs is mounted
        for name, (data, mode) in files.items():
            cpio.file(name, data, mode)
        for applet in applets:
            cpio.symlink(applet, "/bin/busybox")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(cpio.finish())
        tmp.rename(path)
    return GuestImage(path)
