"""Kernels: where the image and its modules are, and which version it is (read from the image).

One class per kind of entry in testbed.yaml's kernels: a Debian linux-image package unpacked
into the cache (`DebianKernel`), a kernel built from source with kernel-config/ (`BuiltKernel`,
harness/provision/kbuild.py), and a prebuilt bzImage (`PrebuiltKernel`).  Each can `fetch` what it
needs and `resolve` to a `Kernel`; the version comes from the bzImage header, never from a name.
"""
from __future__ import annotations

import bz2
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from . import apt, kbuild
from .kbuild import BuildSpec


def bzimage_banner(path: Path) -> str:
    """The kernel's version string ("6.1.0-56-amd64 (...) #1 SMP ... Debian 6.1.192-2 ...")
    from the x86 boot protocol header; a UsageError if `path` is not a bzImage."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x10000)
    except OSError as e:
        raise UsageError(f"kernel image {path}: {e.strerror}; give the path to a bzImage") from e
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        raise UsageError(f"kernel image {path}: not a bzImage (no 'HdrS' boot header); "
                         "give arch/x86/boot/bzImage or /boot/vmlinuz-*")
    offset = struct.unpack_from("<H", head, 0x20E)[0] + 0x200
    banner = head[offset:offset + 256].split(b"\0")[0].decode("ascii", "replace")
    if not re.match(r"\d+\.\d+", banner):
        raise UsageError(f"kernel image {path}: its header has no version string")
    return banner


def _decompressed(payload: bytes) -> bytes | None:
    """A bzImage's payload (arch/x86/boot/compressed: the kernel ELF, compressed, then its size as 4
    bytes), decompressed; None for a compression this does not read (lz4, lzo, lzma-alone) or a
    payload that does not decompress."""
    try:
        if payload.startswith(b"\xfd7zXZ\0"):
            return lzma.LZMADecompressor().decompress(payload)  # stops at the stream's end
        if payload.startswith(b"\x28\xb5\x2f\xfd"):  # zstd: no module in the standard library
            return subprocess.run(["zstd", "-dcq"], input=payload[:-4], capture_output=True, check=True).stdout
        if payload.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(wbits=31).decompress(payload)
        if payload.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(payload)
    except (OSError, subprocess.CalledProcessError, lzma.LZMAError, zlib.error, EOFError):
        pass
    return None


def pvh_elf(bzimage: Path, dest: Path) -> Path | None:
    """The kernel ELF inside `bzimage`, decompressed on the host into `dest` (once): a kernel with
    CONFIG_PVH boots from it at its PVH entry, without the guest running the decompressor (5 s of
    an 8 MB Debian kernel's boot).  None if the payload is not one this can decompress."""
    if dest.exists():
        return dest
    head = bzimage.read_bytes()
    protected_mode = ((head[0x1F1] or 4) + 1) * 512  # after the setup sectors
    offset, length = struct.unpack_from("<II", head, 0x248)  # payload_offset, payload_length (protocol 2.08)
    elf = _decompressed(head[protected_mode + offset:protected_mode + offset + length])
    if not elf or not elf.startswith(b"\x7fELF"):
        return None
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")
    partial.write_bytes(elf)
    partial.rename(dest)
    return dest


def upstream_version(banner: str) -> tuple[int, int, int]:
    """The upstream x.y.z: Debian names its 6.1.192 kernel "6.1.0-56", so prefer the
    "Debian 6.1.192-2" part of the banner when there is one."""
    m = re.search(r"Debian (\d+)\.(\d+)\.(\d+)", banner) or re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", banner)
    if m is None:  # bzimage_banner admits only banners that start with x.y
        raise UsageError(f"kernel version {banner!r}: not x.y[.z]")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


# What a virtio-serial port for the agent needs of a kernel's config (built in or as modules;
# harness/provision/image.py loads the modules).
VIRTIO_AGENT_CONFIG = ("CONFIG_VIRTIO_PCI", "CONFIG_VIRTIO_CONSOLE")
VIRTIO_AGENT_MODULES = ("virtio_pci", "virtio_console")


def has_virtio_console(config: str) -> bool:
    """Whether a kernel with this .config can run the agent on a virtio-serial port."""
    return all(re.search(rf"^{option}=[ym]$", config, re.M) for option in VIRTIO_AGENT_CONFIG)


@dataclass
class Kernel:
    name: str
    image: Path           # the bzImage: its header names the version
    modules: Path | None  # /lib/modules/<release>, with modules.dep; None when all is built in
    pvh_vmlinux: Path | None = None  # the same kernel as an ELF with a PVH entry: boots faster
    virtio_console: bool = False  # its agent's channel can be a virtio-serial port (VIRTIO_AGENT_CONFIG)

    def __post_init__(self):
        self.banner = bzimage_banner(self.image)
        self.release = self.banner.split()[0]
        self.version = upstream_version(self.banner)

    @property
    def boot_image(self) -> Path:
        """What QEMU's -kernel gets: the PVH vmlinux skips the bzImage's decompressor."""
        return self.pvh_vmlinux or self.image

    @property
    def version_str(self) -> str:
        return ".".join(map(str, self.version))

    def modules_for(self, names: list[str], optional: tuple[str, ...] = ()) -> list[Path]:
        """The module files that provide `names` (and those of `optional` the kernel has), with
        their dependencies, in load order (from the kernel's own modules.dep).  Built-in modules
        need nothing; a required name the kernel has neither as module nor built in is a UsageError."""
        if self.modules is None:
            return []
        deps: dict[str, list[str]] = {}
        for line in (self.modules / "modules.dep").read_text().splitlines():
            target, _, rest = line.partition(":")
            deps[target] = rest.split()
        by_name = {Path(p).name.split(".ko")[0].replace("-", "_"): p for p in deps}
        builtin_file = self.modules / "modules.builtin"
        builtin = {Path(p).name.split(".ko")[0].replace("-", "_")
                   for p in (builtin_file.read_text().split() if builtin_file.exists() else [])}
        order: list[str] = []

        def visit(path: str):
            # modules.dep lists dependencies so that loading them last-to-first works
            for dep in reversed(deps.get(path, [])):
                visit(dep)
            if path not in order:
                order.append(path)

        for name in [*names, *optional]:
            key = name.replace("-", "_")
            if key in by_name:
                visit(by_name[key])
            elif key not in builtin and name not in optional:
                raise UsageError(f"kernel {self.name} ({self.release}): has no module or built-in driver "
                                 f"'{name}' (looked in {self.modules}/modules.dep)")
        return [self.modules / p for p in order]


class KernelSource:
    """An entry of testbed.yaml's kernels."""
    name: str
    build: BuildSpec | None = None  # set when `testbed kernel build` builds it

    @property
    def fetchable(self) -> bool:
        """Whether `testbed kernel fetch` has something to download."""
        return False

    def fetch(self, cache: Path, say=print) -> None:
        raise UsageError(f"kernel {self.name}: neither a Debian package nor a kernel built from a download; "
                         "nothing to fetch")

    def resolve(self, cache: Path) -> Kernel:
        raise NotImplementedError


@dataclass
class PrebuiltKernel(KernelSource):
    """A bzImage built elsewhere, with its modules directory when not everything is built in."""
    name: str
    image: Path
    modules: Path | None = None  # /lib/modules/<release>

    def resolve(self, cache: Path) -> Kernel:
        return Kernel(self.name, self.image, self.modules)


@dataclass
class BuiltKernel(KernelSource):
    """A kernel built from source with kernel-config/ (harness/provision/kbuild.py)."""
    name: str
    build: BuildSpec

    @property
    def fetchable(self) -> bool:
        return self.build.source.fetchable

    def fetch(self, cache: Path, say=print) -> None:
        say(f"kernel {self.name}: {self.build.local_source(cache, say)}")

    def resolve(self, cache: Path) -> Kernel:
        built = kbuild.output_dir(cache, self.build) / "bzImage"
        if not built.exists():
            raise UsageError(f"kernel {self.name}: not built yet for the current sources and kernel-config/; "
                             f"run `make setup` or `testbed kernel build {self.name}` (about 6 min on 2 cores)")
        config = (built.parent / "config").read_text()
        return Kernel(self.name, built, None, built.parent / "vmlinux" if "CONFIG_PVH=y" in config else None,
                      has_virtio_console(config))


@dataclass
class DebianKernel(KernelSource):
    """A Debian linux-image package (`package` or `package/suite`, harness/provision/apt.py),
    unpacked into the cache with its modules."""
    name: str
    package: str

    @property
    def fetchable(self) -> bool:
        return True

    def _where(self, cache: Path) -> Path:
        return cache / "kernels" / self.name

    def resolve(self, cache: Path) -> Kernel:
        where = self._where(cache)
        meta = where / "meta.json"
        if not meta.exists():
            raise UsageError(f"kernel {self.name}: the Debian package {self.package} is not fetched yet; "
                             f"run `make setup` (or `testbed kernel fetch {self.name}`)")
        info = json.loads(meta.read_text())
        config = (where / "config").read_text()
        pvh = pvh_elf(where / "vmlinuz", where / "vmlinux") if "CONFIG_PVH=y" in config else None
        return Kernel(self.name, where / "vmlinuz", where / "lib" / "modules" / info["release"], pvh,
                      has_virtio_console(config))

    def fetch(self, cache: Path, say=print) -> None:
        """Download the kernel package (following a meta package such as linux-image-amd64 to the
        real one), unpack its image and modules into the cache, and generate modules.dep.
        Does nothing when the cached copy is already that package version."""
        package, source = apt.parse(self.package)
        source.refresh(cache, say)
        fields = source.show(package, cache)
        if not re.match(r"linux-image-\d", package):
            # a meta package (linux-image-amd64): follow it to the versioned image package
            depends = [d.split()[0] for d in fields.get("Depends", "").split(",")]
            package = next((d for d in depends if re.match(r"linux-image-\d", d)), package)
            fields = source.show(package, cache)
        version = fields["Version"]
        where = self._where(cache)
        meta = where / "meta.json"
        if meta.exists() and json.loads(meta.read_text()).get("version") == version:
            say(f"kernel {self.name}: {package} {version} already in {where}")
            return
        say(f"kernel {self.name}: fetching {package} {version}")
        where.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=where.parent) as tmp_name:
            tmp = Path(tmp_name)
            deb = source.download(package, version, cache, tmp)
            unpacked = tmp / "unpacked"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            vmlinuz = next((unpacked / "boot").glob("vmlinuz-*"))
            release = vmlinuz.name[len("vmlinuz-"):]
            subprocess.run([shutil.which("depmod") or "/sbin/depmod", "-b", str(unpacked), release], check=True)
            staged = tmp / "kernel"
            staged.mkdir()
            shutil.move(vmlinuz, staged / "vmlinuz")
            shutil.move(unpacked / "boot" / f"config-{release}", staged / "config")
            (staged / "lib").mkdir()
            shutil.move(unpacked / "lib" / "modules", staged / "lib" / "modules")
            (staged / "meta.json").write_text(json.dumps({"package": package, "version": version,
                                                          "release": release}))
            if where.exists():
                shutil.rmtree(where)
            staged.rename(where)
        say(f"kernel {self.name}: {package} {version} unpacked into {where}")
