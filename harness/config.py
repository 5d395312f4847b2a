"""testbed.yaml: which kernels and NICs the testbed runs, and how it runs QEMU.

    kernels:
      debian-6.1: {debian-package: linux-image-amd64}   # fetched into the cache by make setup
      min-6.1:    {source: /usr/src/linux-source-6.1.tar.xz}   # built with kernel-config/
      my-3.14:                                          # a tree that needs help with a new gcc
        source: ~/src/linux-3.14.79
        make: {CC: gcc, KCFLAGS: -fno-pie}              # make variables
        files: {include/linux/compiler-gcc12.h: compiler-gcc12.h}   # placed into the build dir
        patches: [fix-build.patch]                      # applied to a private copy of the tree
      my-6.6:     {image: /path/to/bzImage}             # prebuilt, everything built in
      linux-3.14:                                       # a release tarball by name, fetched from
        tarball: linux-3.14.40.tar.xz                   # the mirrors and checked by its sha256;
        sha256: 398664c7...                             # built with kernel-config/ and the
                                                        # compatibility fixes for its version
    mirrors: [/srv/mirror/kernel, "https://cdn.kernel.org/pub/linux/kernel/v{major}.x/"]
    nics: [igb, e1000e]
    default: {kernel: debian-6.1, nic: igb}
    guest-binaries: [/usr/sbin/ip, /usr/bin/nl-monitor]   # copied in with their shared libraries
    qemu: {binary: qemu-system-x86_64, memory: 256, accel: auto, boot-timeout: 60, time: auto}
                                                          # binary: testbed runs every NIC on the QEMU the
                                                          # testbed builds (ixgbe always runs on it)
    transport: serial                                     # or ssh: the agent over SSH to the guest's sshd
    scenarios: [scenarios/, more/mtu.py]                  # your own scenario files and directories
    results: results

The file is found as git and pytest find theirs: --config PATH, else $TESTBED_CONFIG, else
testbed.yaml in the current directory or the nearest parent that has one.  Relative paths in it
(results, cache, scenarios, mirrors, kernel sources) are relative to the file.

Every mistake becomes one UsageError line naming the file, the key, the value and what is allowed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from typing import NoReturn

from . import nic as nic_mod
from .provision.kbuild import BuildSpec, DebianSource, LocalTree, ReleaseTarball, TreeSource
from .provision.kernel import BuiltKernel, DebianKernel, KernelSource, PrebuiltKernel
from .provision.mirrors import KERNEL_ORG, is_url
from .errors import UsageError, did_you_mean
from .machine.qemu import TIME_MODES
from .transport import NAMES as TRANSPORT_NAMES

ACCELS = ("auto", "kvm", "tcg")
TIMES = ("auto", *TIME_MODES)  # the guest's clock; auto: virtual with TCG, real with KVM
TRANSPORTS = TRANSPORT_NAMES  # how the host reaches the guest's agent (harness/transport)


def default_cache() -> Path:
    """Where builds, kernels and snapshots are kept unless testbed.yaml says: $TESTBED_CACHE, else
    ~/.cache/testbed."""
    return Path(os.environ.get("TESTBED_CACHE") or Path.home() / ".cache" / "testbed")


@dataclass(frozen=True)
class Config:
    """The loaded testbed.yaml; never changed (the CLI's overrides make a new one, dataclasses.replace)."""
    path: Path
    kernels: dict[str, KernelSource]
    nics: tuple[str, ...]
    default_kernel: str
    default_nic: str
    qemu_binary: str = "qemu-system-x86_64"
    memory_mb: int = 256
    accel: str = "auto"
    time: str = "auto"
    boot_timeout: float = 60.0
    results: Path = Path("results")
    guest_binaries: tuple[Path, ...] = ()  # host programs copied into the guest
    transport: str = "serial"
    scenarios: tuple[Path, ...] = ()  # scenario files and directories besides the built-in catalogue
    cache: Path = field(default_factory=default_cache)

    def kernel(self, name: str | None) -> KernelSource:
        name = name or self.default_kernel
        if name not in self.kernels:
            raise UsageError(f"--kernel {name}: no such kernel in {self.path}; "
                             f"choose one of: {', '.join(self.kernels)}{did_you_mean(name, self.kernels)}")
        return self.kernels[name]

    def nic(self, model: str | None) -> str:
        model = model or self.default_nic
        try:
            return nic_mod.check_name(model)
        except UsageError as e:
            raise UsageError(f"--nic {model}: {str(e).split(': ', 1)[1]}") from None


class _Reader:
    """Walks the YAML tree, turning every problem into a UsageError that names the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, value, problem: str) -> NoReturn:
        raise UsageError(f"{self.path}: {key}: {value!r} {problem}")

    def mapping(self, key: str, value, allowed=None) -> dict:
        """A mapping whose keys are all in `allowed` (any keys if None)."""
        if not isinstance(value, dict):
            self.fail(key, value, "must be a mapping")
        for k in value if allowed is not None else ():
            if k not in allowed:
                self.fail(f"{key}.{k}" if key else k, value[k],
                          f"is not a known key; allowed: {', '.join(allowed)}{did_you_mean(k, allowed)}")
        return value

    def typed(self, key: str, value, kind, what: str):
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(key, value, f"must be {what}")
        return value

    def nic(self, key: str, value) -> str:
        try:
            return nic_mod.check_name(str(value))
        except UsageError as e:
            self.fail(key, str(value), str(e).split(": ", 1)[1])

    def choice(self, key: str, value, choices):
        if value not in choices:
            self.fail(key, value, f"is not one of: {', '.join(choices)}{did_you_mean(value, choices)}")
        return value


TOP_KEYS = ("kernels", "nics", "default", "qemu", "results", "cache", "guest-binaries", "transport", "mirrors",
            "scenarios")
NAME = "testbed.yaml"


def find(given: str | Path | None = None, start: Path | None = None) -> Path:
    """The configuration file: `given` (--config), else $TESTBED_CONFIG, else testbed.yaml in
    `start` (the current directory) or the nearest parent that has one."""
    if given or os.environ.get("TESTBED_CONFIG"):
        return Path(given or os.environ["TESTBED_CONFIG"])
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / NAME).is_file():
            return directory / NAME
    raise UsageError(f"no {NAME} in {here} or any directory above it; create one (README, \"Writing a scenario\"), "
                     "or name it with --config PATH or TESTBED_CONFIG")
KERNEL_KEYS = ("debian-package", "image", "modules", "source", "tarball", "source-package", "sha256", "make", "files",
               "patches")
SOURCES = ("debian-package", "image", "source", "tarball", "source-package")
BUILT = ("source", "tarball", "source-package")  # the kinds built with kernel-config/
QEMU_KEYS = ("binary", "memory", "accel", "boot-timeout", "time")


def _existing(r: _Reader, key: str, value, base: Path, what: str) -> Path:
    path = base / Path(r.typed(key, value, str, what)).expanduser()
    if not path.exists():
        r.fail(key, str(path), f"does not exist; give {what}")
    return path


def _mirrors(r: _Reader, data: dict, base: Path) -> tuple[str, ...]:
    """TESTBED_MIRRORS (whitespace-separated: a CI cache, a lab's server) first, then testbed.yaml's
    mirrors:, by default kernel.org.  Directories are relative to testbed.yaml."""
    listed = r.typed("mirrors", data.get("mirrors", [KERNEL_ORG]), list, "a list of directories and http(s) URLs")
    found = []
    for i, m in enumerate([*os.environ.get("TESTBED_MIRRORS", "").split(), *listed]):
        m = r.typed(f"mirrors[{i}]", m, str, "a directory or an http(s) URL")
        found.append(m if is_url(m) else os.path.normpath(base / Path(m).expanduser()))
    return tuple(found)


def _tarball(r: _Reader, key: str, entry: dict, mirrors: tuple[str, ...]) -> ReleaseTarball:
    name = r.typed(f"{key}.tarball", entry["tarball"], str, "a release file name such as linux-3.14.40.tar.xz")
    if "/" in name or not re.search(r"\.tar(\.\w+)?$", name):
        r.fail(f"{key}.tarball", name, "must be a file name ending in .tar.* (the mirrors say where it is)")
    sha256 = entry.get("sha256")
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        r.fail(f"{key}.sha256", sha256, "must be the tarball's sha256, 64 lowercase hex digits (sha256sum FILE)")
    return ReleaseTarball(name, sha256, mirrors)


def _package(r: _Reader, key: str, value) -> str:
    """A Debian package name, with the suite it comes from if not the machine's apt's (pkg/suite)."""
    name = r.typed(key, value, str, "a Debian package name, or package/suite (linux-image-amd64/bullseye)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(/[a-z0-9][a-z0-9-]*)?", name):
        r.fail(key, name, "must be a Debian package name, or package/suite (linux-image-amd64/bullseye)")
    return name


def _tree(r: _Reader, key: str, entry: dict, base: Path, mirrors: tuple[str, ...]) -> TreeSource:
    if "tarball" in entry:
        return _tarball(r, key, entry, mirrors)
    if "source-package" in entry:
        return DebianSource(_package(r, f"{key}.source-package", entry["source-package"]))
    return LocalTree(_existing(r, f"{key}.source", entry["source"], base, "a kernel tree or a .tar.* of one"))


def _build_spec(r: _Reader, key: str, name: str, entry: dict, base: Path, mirrors: tuple[str, ...]) -> BuildSpec:
    source = _tree(r, key, entry, base, mirrors)
    make_vars = r.mapping(f"{key}.make", entry.get("make") or {})
    for var, value in make_vars.items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(var)):
            r.fail(f"{key}.make.{var}", value, "is not a make variable name (CC, HOSTCFLAGS, KCFLAGS, ...)")
        r.typed(f"{key}.make.{var}", value, str, "a string")
    files = {str(dest): _existing(r, f"{key}.files.{dest}", src, base, "a file to place into the build directory")
             for dest, src in r.mapping(f"{key}.files", entry.get("files") or {}).items()}
    patches = r.typed(f"{key}.patches", entry.get("patches") or [], list, "a list of patch files")
    return BuildSpec(name, source, make_vars, files,
                     [_existing(r, f"{key}.patches[{i}]", p, base, "a patch file") for i, p in enumerate(patches)])


def load(path: Path | str = NAME) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the configuration: {e.strerror}; "
                         "run from the project directory or pass --config PATH") from e
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: byte {e.start} is not UTF-8 ({e.reason}); save the file as UTF-8") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise UsageError(f"{path}:{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from e
    r = _Reader(path)
    data = r.mapping("", data if data is not None else {}, TOP_KEYS)
    base = path.resolve().parent
    mirrors = _mirrors(r, data, base)

    kernels: dict[str, KernelSource] = {}
    for name, entry in r.mapping("kernels", data.get("kernels") or {}).items():
        key = f"kernels.{name}"
        entry = r.mapping(key, entry, KERNEL_KEYS)
        sources = [k for k in SOURCES if k in entry]
        if len(sources) != 1:
            r.fail(key, entry, "needs exactly one of: debian-package (a Debian linux-image package), "
                               "image (a path to a bzImage), source (a kernel tree or tarball to build), "
                               "tarball (a release file name, with its sha256, fetched from the mirrors) "
                               "or source-package (a Debian package of kernel sources, such as linux-source-5.10)")
        if "sha256" in entry and "tarball" not in entry:
            r.fail(f"{key}.sha256", entry["sha256"], "only applies with tarball:")
        if sources[0] not in BUILT:
            for k in ("make", "files", "patches"):
                if k in entry:
                    r.fail(f"{key}.{k}", entry[k], "only applies to kernels built from source")
        if "modules" in entry and "image" not in entry:
            r.fail(f"{key}.modules", entry["modules"], "only applies with image: (a prebuilt kernel's modules)")
        spec: KernelSource
        if "debian-package" in entry:
            spec = DebianKernel(str(name), _package(r, f"{key}.debian-package", entry["debian-package"]))
        elif "image" in entry:
            image = base / r.typed(f"{key}.image", entry["image"], str, "a path to a bzImage")
            if not image.is_file():
                r.fail(f"{key}.image", str(image), "does not exist; give the path to a bzImage")
            modules = None
            if "modules" in entry:
                modules = base / r.typed(f"{key}.modules", entry["modules"], str, "a directory path")
                if not (modules / "modules.dep").is_file():
                    r.fail(f"{key}.modules", str(modules), "has no modules.dep; give /lib/modules/<release>")
            spec = PrebuiltKernel(str(name), image, modules)
        else:
            spec = BuiltKernel(str(name), _build_spec(r, key, str(name), entry, base, mirrors))
        kernels[str(name)] = spec
    if not kernels:
        r.fail("kernels", data.get("kernels"), "must name at least one kernel")

    nics = r.typed("nics", data.get("nics", ["igb"]), list, "a list of NIC models")
    for i, nic in enumerate(nics):
        r.nic(f"nics[{i}]", nic)

    default = r.mapping("default", data.get("default") or {}, ("kernel", "nic"))
    qemu = r.mapping("qemu", data.get("qemu") or {}, QEMU_KEYS)
    memory_mb = r.typed("qemu.memory", qemu.get("memory", Config.memory_mb), int, "a size in MiB (integer)")
    if not 64 <= memory_mb <= 16384:
        r.fail("qemu.memory", memory_mb, "must be between 64 and 16384 (MiB)")
    boot_timeout = float(r.typed("qemu.boot-timeout", qemu.get("boot-timeout", Config.boot_timeout),
                                 (int, float), "a number of seconds"))
    if boot_timeout <= 0:
        r.fail("qemu.boot-timeout", boot_timeout, "must be a positive number of seconds")
    binaries = []
    for i, b in enumerate(r.typed("guest-binaries", data.get("guest-binaries") or [], list,
                                  "a list of host program paths")):
        program = _existing(r, f"guest-binaries[{i}]", b, base, "a host program (e.g. /usr/sbin/ip)")
        if not (program.is_file() and os.access(program, os.X_OK)):
            r.fail(f"guest-binaries[{i}]", str(program), "is not an executable file")
        binaries.append(program)
    optional = {"cache": base / r.typed("cache", data["cache"], str, "a directory path")} if "cache" in data else {}
    scenarios = tuple(_existing(r, f"scenarios[{i}]", s, base, "a scenario file (.py) or a directory of them")
                      for i, s in enumerate(r.typed("scenarios", data.get("scenarios") or [], list,
                                                    "a list of scenario files and directories")))
    return Config(
        path=path, kernels=kernels, nics=tuple(nics),
        default_kernel=r.choice("default.kernel", default.get("kernel", next(iter(kernels))), kernels),
        default_nic=r.nic("default.nic", default.get("nic", nics[0])),
        qemu_binary=r.typed("qemu.binary", qemu.get("binary", Config.qemu_binary), str, "a program name or path"),
        memory_mb=memory_mb, accel=r.choice("qemu.accel", qemu.get("accel", Config.accel), ACCELS),
        time=r.choice("qemu.time", qemu.get("time", Config.time), TIMES),
        boot_timeout=boot_timeout, transport=r.choice("transport", data.get("transport", Config.transport), TRANSPORTS),
        results=base / r.typed("results", data.get("results", "results"), str, "a directory path"),
        guest_binaries=tuple(binaries), scenarios=scenarios, **optional)
