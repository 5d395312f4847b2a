"""testbed.yaml: which kernels and NICs the testbed runs, and how it runs QEMU.

    kernels:
      debian-6.1: {debian-package: linux-image-amd64}   # fetched into the cache by make setup
      my-3.14:    {image: /path/to/bzImage}             # prebuilt, everything built in
    nics: [igb, e1000e]
    default: {kernel: debian-6.1, nic: igb}
    qemu: {binary: qemu-system-x86_64, memory: 256, accel: auto, boot-timeout: 60}
    results: results

Every mistake becomes one UsageError line naming the file, the key, the value and what is allowed.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UsageError
from .nic import NICS

ACCELS = ("auto", "kvm", "tcg")


@dataclass
class KernelSpec:
    name: str
    debian_package: str | None = None
    image: Path | None = None
    modules: Path | None = None  # a prebuilt kernel's /lib/modules/<release> directory


@dataclass
class Config:
    path: Path
    kernels: dict[str, KernelSpec]
    nics: list[str]
    default_kernel: str
    default_nic: str
    qemu_binary: str = "qemu-system-x86_64"
    memory_mb: int = 256
    accel: str = "auto"
    boot_timeout: float = 60.0
    results: Path = Path("results")
    cache: Path = field(default_factory=lambda: Path(os.environ.get("TESTBED_CACHE") or
                                                     Path.home() / ".cache" / "testbed"))

    def kernel(self, name: str | None) -> KernelSpec:
        name = name or self.default_kernel
        if name not in self.kernels:
            raise UsageError(f"--kernel {name}: no such kernel in {self.path}; "
                             f"choose one of: {', '.join(self.kernels)}{_did_you_mean(name, self.kernels)}")
        return self.kernels[name]

    def nic(self, model: str | None) -> str:
        model = model or self.default_nic
        if model not in NICS:
            raise UsageError(f"--nic {model}: unknown NIC model; choose one of: "
                             f"{', '.join(NICS)}{_did_you_mean(model, NICS)}")
        return model


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Reader:
    """Walks the YAML tree, turning every problem into a UsageError that names the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, value, problem: str):
        raise UsageError(f"{self.path}: {key}: {value!r} {problem}")

    def mapping(self, key: str, value, allowed=None) -> dict:
        """A mapping whose keys are all in `allowed` (any keys if None)."""
        if not isinstance(value, dict):
            self.fail(key, value, "must be a mapping")
        for k in value if allowed is not None else ():
            if k not in allowed:
                self.fail(f"{key}.{k}" if key else k, value[k],
                          f"is not a known key; allowed: {', '.join(allowed)}{_did_you_mean(k, allowed)}")
        return value

    def typed(self, key: str, value, kind, what: str):
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(key, value, f"must be {what}")
        return value

    def choice(self, key: str, value, choices):
        if value not in choices:
            self.fail(key, value, f"is not one of: {', '.join(choices)}{_did_you_mean(value, choices)}")
        return value


TOP_KEYS = ("kernels", "nics", "default", "qemu", "results", "cache")
KERNEL_KEYS = ("debian-package", "image", "modules")
QEMU_KEYS = ("binary", "memory", "accel", "boot-timeout")


def load(path: Path | str = "testbed.yaml") -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"{path}: cannot read the configuration: {e.strerror}; "
                         "run from the project directory or pass --config PATH")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise UsageError(f"{path}:{where}: not valid YAML: {getattr(e, 'problem', None) or e}")
    r = _Reader(path)
    data = r.mapping("", data if data is not None else {}, TOP_KEYS)
    base = path.resolve().parent

    kernels = {}
    for name, entry in r.mapping("kernels", data.get("kernels") or {}).items():
        key = f"kernels.{name}"
        entry = r.mapping(key, entry, KERNEL_KEYS)
        sources = [k for k in ("debian-package", "image") if k in entry]
        if len(sources) != 1:
            r.fail(key, entry, "needs exactly one of: debian-package (a Debian linux-image package) "
                               "or image (a path to a bzImage)")
        spec = KernelSpec(str(name))
        if "debian-package" in entry:
            spec.debian_package = r.typed(f"{key}.debian-package", entry["debian-package"], str, "a package name")
        else:
            image = base / r.typed(f"{key}.image", entry["image"], str, "a path to a bzImage")
            if not image.is_file():
                r.fail(f"{key}.image", str(image), "does not exist; give the path to a bzImage")
            spec.image = image
        if "modules" in entry:
            spec.modules = base / r.typed(f"{key}.modules", entry["modules"], str, "a directory path")
            if not (spec.modules / "modules.dep").is_file():
                r.fail(f"{key}.modules", str(spec.modules), "has no modules.dep; give /lib/modules/<release>")
        kernels[str(name)] = spec
    if not kernels:
        r.fail("kernels", data.get("kernels"), "must name at least one kernel")

    nics = r.typed("nics", data.get("nics", ["igb"]), list, "a list of NIC models")
    for i, nic in enumerate(nics):
        r.choice(f"nics[{i}]", nic, NICS)

    default = r.mapping("default", data.get("default") or {}, ("kernel", "nic"))
    cfg = Config(path=path, kernels=kernels, nics=nics,
                 default_kernel=r.choice("default.kernel", default.get("kernel", next(iter(kernels))), kernels),
                 default_nic=r.choice("default.nic", default.get("nic", nics[0]), NICS))

    qemu = r.mapping("qemu", data.get("qemu") or {}, QEMU_KEYS)
    cfg.qemu_binary = r.typed("qemu.binary", qemu.get("binary", cfg.qemu_binary), str, "a program name or path")
    cfg.memory_mb = r.typed("qemu.memory", qemu.get("memory", cfg.memory_mb), int, "a size in MiB (integer)")
    if not 64 <= cfg.memory_mb <= 16384:
        r.fail("qemu.memory", cfg.memory_mb, "must be between 64 and 16384 (MiB)")
    cfg.accel = r.choice("qemu.accel", qemu.get("accel", cfg.accel), ACCELS)
    cfg.boot_timeout = float(r.typed("qemu.boot-timeout", qemu.get("boot-timeout", cfg.boot_timeout),
                                     (int, float), "a number of seconds"))
    if cfg.boot_timeout <= 0:
        r.fail("qemu.boot-timeout", cfg.boot_timeout, "must be a positive number of seconds")
    cfg.results = base / r.typed("results", data.get("results", "results"), str, "a directory path")
    if "cache" in data:
        cfg.cache = base / r.typed("cache", data["cache"], str, "a directory path")
    return cfg
