"""A QEMU of our own: the installed version's source with the testbed's 82598 model in it.

No emulator models the 82598 (ixgbe), so qemu-model/ixgbe.c is built into qemu-system-x86_64
as `-device ixgbe`.  The source is Debian's orig tarball of the QEMU apt installed (sha256
pinned in SHA256; the archive serves it, not Debian's patches, so the build is upstream plus
the model), unpacked once into the cache and built in a hard-linked private copy with the
model and its build glue.  The build directory is keyed by the version and the configure
options only, and kept: a changed model recompiles one file and relinks.  The binary is cached
by (tarball, model, glue, options).  A failed step is recorded in the cache, so that later runs
can say why the model is unavailable (unavailable()).  The binary has no firmware of its own:
run it with Debian's (-L for each of FIRMWARE).
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import PROJECT
from ..children import process_group
from ..digest import content_hash, file_hash
from ..errors import NetworkError, UsageError
from . import minutes, mirrors
from .unpack import UnpackError, unpacked_once

MODEL = PROJECT / "qemu-model" / "ixgbe.c"
# Where Debian's qemu-system-x86_64 looks for firmware (its `-L help`): qemu-system-data (bios,
# qboot), seabios, ipxe-qemu (the NICs' option ROMs).  The build has none: it gets these.
FIRMWARE = (Path("/usr/share/qemu"), Path("/usr/share/seabios"), Path("/usr/lib/ipxe/qemu"))


def firmware_options() -> list[str]:
    return [arg for d in FIRMWARE for arg in ("-L", str(d))]
TARGET = "qemu-system-x86_64"
DEBIAN_POOL = "http://deb.debian.org/debian/pool/main/q/qemu/"
# sha256 of Debian's qemu_<version>+ds.orig.tar.xz by upstream version, as the Sources index of
# the suite the package comes from (bookworm-backports) lists it.
SHA256 = {
    "10.0.2": "0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1",
}
# QEMU 10 needs meson >= 1.5 (bookworm has 1.0.1) and pycotap; the +ds tarball has no
# python/wheels, so configure's mkvenv finds them in the venv given to --python, offline.
BUILD_PYTHON = ("meson==1.12.1", "pycotap==1.3.1")
CONFIGURE = (
    "--target-list=x86_64-softmmu", "--disable-docs", "--disable-tools", "--disable-user",
    "--disable-guest-agent", "--disable-gtk", "--disable-sdl", "--disable-vnc", "--disable-opengl",
    "--disable-curses", "--disable-spice", "--enable-slirp", "--enable-kvm", "--enable-tcg",
    "--enable-pixman",
    "--disable-install-blobs",  # the firmware is Debian's (-L FIRMWARE)
    "--disable-download",       # the tarball has the subprojects it needs: never fetch at build time
)
# what configure needs, by pkg-config module or program, and the Debian package that has it
# (scripts/setup-system.sh installs them)
PKG_CONFIG_MODULES = {"glib-2.0": "libglib2.0-dev", "pixman-1": "libpixman-1-dev", "slirp": "libslirp-dev",
                      "zlib": "zlib1g-dev"}
PROGRAMS = {"cc": "gcc", "make": "make", "ninja": "ninja-build", "pkg-config": "pkg-config"}
TESTBED = "testbed"  # qemu.binary: testbed runs every NIC on this build, not only the model
NOT_BUILT = "not built yet: run `make setup` (or `testbed qemu build`)"


@dataclass(frozen=True)
class Edit:
    """In `path`, the first `find` becomes `replace`: applied to the pristine file each time."""
    path: str
    find: str
    replace: str


_IGB_MESON = "system_ss.add(when: 'CONFIG_IGB_PCI_EXPRESS', if_true: files('igb.c', 'igbvf.c', 'igb_core.c'))\n"
_IGB_KCONFIG = ("config IGB_PCI_EXPRESS\n    bool\n    default y if PCI_DEVICES || PCIE_DEVICES\n"
                "    depends on PCI_EXPRESS && MSI_NONBROKEN\n")
GLUE = (
    # the model is a PCIe device built where igb is, with the packet helpers igb uses
    Edit("hw/net/meson.build", _IGB_MESON, _IGB_MESON + "system_ss.add(when: 'CONFIG_IXGBE_PCI_EXPRESS', "
                                                       "if_true: files('net_tx_pkt.c', 'net_rx_pkt.c', 'ixgbe.c'))\n"),
    Edit("hw/net/Kconfig", _IGB_KCONFIG, _IGB_KCONFIG + "\n" + _IGB_KCONFIG.replace("IGB_", "IXGBE_")),
    # No configure option switches the edk2 firmware off: meson.build unpacks it whenever it
    # builds an x86_64 target and finds bzip2, and Debian's +ds tarball has none of the
    # .fd.bz2 files (Debian builds edk2 itself), so meson stops at the first missing one.
    # Unpack it only if it is there.
    Edit("meson.build", "    unpack_edk2_blobs = bzip2.found()\n",
         "    unpack_edk2_blobs = bzip2.found() and fs.exists('pc-bios/edk2-x86_64-code.fd.bz2')\n"),
)


class QemuBuildError(Exception):
    """A step of the build failed; the message names the step and the reason (and the log)."""

    def __init__(self, step: str, reason: str, version: str | None = None):
        super().__init__(f"QEMU {version + ' ' if version else ''}with the ixgbe model: "
                         f"the {step} step failed: {reason}")
        self.step, self.reason = step, reason


def debian_version() -> str:
    """The installed qemu-system-x86's Debian version, e.g. 1:10.0.2+ds-2~bpo12+1."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "qemu-system-x86"], capture_output=True, text=True)
    if r.returncode or not r.stdout.strip():
        raise QemuBuildError("version", "qemu-system-x86 is not installed (make setup installs it)")
    return r.stdout.strip()


@dataclass(frozen=True)
class Source:
    """Debian's orig tarball of a Debian version: 1:10.0.2+ds-2~bpo12+1 -> qemu_10.0.2+ds.orig.tar.xz."""
    debian: str

    @property
    def orig(self) -> str:  # no epoch, no Debian revision: 10.0.2+ds
        return self.debian.split(":", 1)[-1].rsplit("-", 1)[0]

    @property
    def upstream(self) -> str:  # 10.0.2
        return re.split(r"[+~]", self.orig)[0]

    @property
    def tarball(self) -> str:
        return f"qemu_{self.orig}.orig.tar.xz"

    @property
    def sha256(self) -> str:
        if self.upstream not in SHA256:
            raise QemuBuildError("source", f"no sha256 is pinned for {self.tarball}: add \"{self.upstream}\": "
                                           f"\"<its sha256>\" to SHA256 in {Path(__file__).relative_to(PROJECT)} "
                                           "(the Sources index of the suite qemu-system-x86 comes from lists it)",
                                 self.upstream)
        return SHA256[self.upstream]


def model_hash() -> str:
    return file_hash(MODEL)[:16]


def configure_key(src: Source) -> str:
    return content_hash(src.upstream.encode(), "\0".join(CONFIGURE).encode(), "\0".join(BUILD_PYTHON).encode())[:16]


def build_key(src: Source) -> str:
    return content_hash(src.sha256.encode(), MODEL.read_bytes(), repr(GLUE).encode(), "\0".join(CONFIGURE).encode(),
                        "\0".join(BUILD_PYTHON).encode())[:16]


def output_dir(cache: Path, src: Source) -> Path:
    return cache / "qemu" / f"{src.upstream}-{build_key(src)}"


def find(cache: Path) -> Path | None:
    """The binary built from the current model for the installed QEMU version, if there is one."""
    try:
        binary = output_dir(cache, Source(debian_version())) / TARGET
    except QemuBuildError:
        return None
    return binary if binary.exists() else None


def _failure_file(cache: Path) -> Path:
    return cache / "qemu" / "failed.json"


def unavailable(cache: Path) -> str:
    """Why find() is None: the recorded failure of the current model's build, or that there was none."""
    try:
        record = json.loads(_failure_file(cache).read_text())
    except (OSError, ValueError):
        return NOT_BUILT
    if record.get("model") != model_hash():
        return NOT_BUILT
    return record["message"]


def _record_failure(cache: Path, error: QemuBuildError, debian: str | None):
    path = _failure_file(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": error.step, "reason": error.reason, "message": str(error),
                                "model": model_hash(), "qemu": debian, "when": time.strftime("%Y-%m-%d %H:%M:%S")}))


def _replace(path: Path, data: bytes) -> bool:
    """Give `path` this content unless it has it already (a new mtime makes ninja rebuild), by
    writing a new file and renaming it over: the old one may be a hard link to the pristine tree."""
    if path.exists() and path.read_bytes() == data:
        return False
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.rename(path)
    return True


def apply_glue(pristine: Path, tree: Path) -> list[str]:
    """Each glued file of `tree` made from its pristine copy and the edits; returns those that changed."""
    edited: dict[str, str] = {}
    for edit in GLUE:
        text = edited.get(edit.path) or (pristine / edit.path).read_text()
        if edit.find not in text:
            raise QemuBuildError("glue", f"{edit.path} has no {edit.find.splitlines()[0].strip()!r} "
                                         "to put the model beside (the QEMU version changed?); update GLUE")
        edited[edit.path] = text.replace(edit.find, edit.replace, 1)
    return [p for p, text in edited.items() if _replace(tree / p, text.encode())]


def place_model(tree: Path) -> bool:
    """Copy the model into the tree if its content changed; True if it did."""
    return _replace(tree / "hw/net/ixgbe.c", MODEL.read_bytes())


def _run(args: list, log: Path, cwd: Path | None = None, progress=None) -> int:
    """Run in a process group that ends with the harness (Ctrl-C stops it), output to `log`."""
    with open(log, "w") as out, process_group([str(a) for a in args], cwd=cwd, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL) as proc:
        for line in proc.stdout or ():  # a pipe: asked for above
            out.write(line)
            if progress:
                progress(line)
        proc.wait()
    return proc.returncode


def _first(log: Path, pattern: str, skip: str = r"(?!)") -> str:
    """The first line of the log matching `pattern` (and not `skip`), else its last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    hits = [line for line in lines if re.search(pattern, line) and not re.search(skip, line)]
    return (hits or lines[-1:] or ["(no output)"])[0]


def check_dependencies(version: str | None = None):
    """The programs and libraries configure needs, named by the Debian packages that have them."""
    missing = [f"{package} ({program})" for program, package in PROGRAMS.items() if not shutil.which(program)]
    if shutil.which("pkg-config"):
        missing += [f"{package} ({module}.pc)" for module, package in PKG_CONFIG_MODULES.items()
                    if subprocess.run(["pkg-config", "--exists", module]).returncode]
    if missing:
        raise QemuBuildError("dependencies", f"missing {', '.join(missing)}: apt-get install them "
                                             "(scripts/setup-system.sh does)", version)


def _unpacked(tarball: Path, src: Source, cache: Path) -> Path:
    """The tarball unpacked once into the cache: the pristine tree every build links to."""
    try:
        entries = unpacked_once(tarball, cache / "qemu" / "src" / f"{src.orig}-{src.sha256[:16]}")
    except UnpackError as e:
        raise QemuBuildError("unpack", f"tar -xf {tarball}: {e}", src.upstream) from None
    tops = [p for p in entries if (p / "configure").exists() and (p / "hw/net").is_dir()]
    if not tops:
        raise QemuBuildError("unpack", f"{tarball} holds no QEMU tree (no configure, no hw/net)", src.upstream)
    return tops[0]


def _private_tree(pristine: Path, work: Path, src: Source) -> Path:
    """A hard-linked copy of the pristine tree (a real copy where links cannot be made), made
    once per work directory: its mtimes are what ninja compares against."""
    tree = work / "src"
    done = work / "src.copied"
    if done.exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    copied = subprocess.run(["cp", "-al", str(pristine), str(tree)], capture_output=True, text=True)
    if copied.returncode:  # another filesystem
        shutil.rmtree(tree, ignore_errors=True)
        copied = subprocess.run(["cp", "-a", str(pristine), str(tree)], capture_output=True, text=True)
    if copied.returncode:
        raise QemuBuildError("unpack", f"cannot copy {pristine}: {copied.stderr.strip()}", src.upstream)
    done.touch()
    return tree


def _build_python(cache: Path, src: Source) -> Path:
    """A venv with the pinned meson and pycotap, made once; its python is configure's --python."""
    venv = cache / "qemu" / "venv"
    python, pins = venv / "bin" / "python", "\n".join(BUILD_PYTHON)
    stamp = venv / "pins.txt"
    if python.exists() and stamp.exists() and stamp.read_text() == pins:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.mkdir(parents=True)
    log = venv.parent / "venv.log"
    if (_run([sys.executable, "-m", "venv", venv], log)
            or _run([python, "-m", "pip", "install", "-q", *BUILD_PYTHON], log)):
        shutil.rmtree(venv, ignore_errors=True)
        raise QemuBuildError("python", f"a venv with {' '.join(BUILD_PYTHON)}: {_first(log, r'(?i)error')} "
                                       f"(log: {log})", src.upstream)
    stamp.write_text(pins)
    return python


def _configure(tree: Path, build: Path, python: Path, src: Source):
    """Run configure unless this build directory has been configured (ninja re-runs meson
    itself when a meson.build changes)."""
    configured = build / "testbed-configured"
    if configured.exists():
        return
    build.mkdir(parents=True, exist_ok=True)
    log = build.parent / "configure.log"
    if _run([tree / "configure", f"--python={python}", *CONFIGURE], log, cwd=build):
        reason = _first(log, r"\bERROR\b", skip=r"ERROR: meson setup failed")
        raise QemuBuildError("configure", f"{reason} (log: {log})", src.upstream)
    configured.touch()


def _compile(build: Path, jobs: int, log: Path, src: Source):
    """ninja the one target, a progress line on the terminal (one a minute otherwise)."""
    started, last_report = time.monotonic(), 0.0
    tty = sys.stderr.isatty()

    def progress(line: str):
        nonlocal last_report
        step = re.match(r"\[(\d+)/(\d+)\]", line)
        now = time.monotonic()
        if step and (tty or now - last_report > 60):
            elapsed = now - started
            print(f"\r  building qemu {src.upstream}: {step[1]}/{step[2]} steps, "
                  f"{elapsed // 60:.0f}:{elapsed % 60:02.0f}",
                  end="" if tty else "\n", file=sys.stderr, flush=True)
            last_report = now
    status = _run(["ninja", "-C", build, f"-j{jobs}", TARGET], log, progress=progress)
    if tty:
        print(file=sys.stderr)
    if status:
        # the compiler's or linker's own words first; ninja's FAILED line (which comes before
        # them) only names the target
        reason = next((_first(log, p) for p in (r": (fatal )?error: |undefined reference", r"^FAILED: |^ninja: error")
                       if re.search(p, log.read_text(errors="replace"), re.M)), _first(log, r"(?!)"))
        raise QemuBuildError("compile", f"{reason} (log: {log})", src.upstream)


def devices(binary: Path) -> list[str]:
    """The device names `binary -device help` lists, run with Debian's firmware."""
    r = subprocess.run([str(binary), *firmware_options(), "-device", "help"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise OSError(f"exit status {r.returncode}: {(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    return re.findall(r'^name "([^"]+)"', r.stdout, re.M)


def _remove_others(cache: Path, keep: list[Path]):
    """Binaries of other models or versions, and work and source trees of other versions: unreachable now."""
    top = cache / "qemu"
    for old in [*top.glob("*/meta.json"), *top.glob("work/*/"), *top.glob("src/*/")]:
        old = old.parent if old.name == "meta.json" else old
        if old not in keep:
            shutil.rmtree(old, ignore_errors=True)


def _build(cache: Path, src: Source, jobs: int, say) -> Path:
    out = output_dir(cache, src)
    if (out / TARGET).exists():
        say(f"qemu {src.upstream} with the ixgbe model {model_hash()}: already built ({out / TARGET})")
        return out / TARGET
    check_dependencies(src.upstream)
    try:
        tarball = mirrors.obtain("qemu source", src.tarball, src.sha256, [DEBIAN_POOL], cache, say=say)
    except (UsageError, NetworkError) as e:
        raise QemuBuildError("download", str(e), src.upstream) from None
    pristine = _unpacked(tarball, src, cache)
    # Named by the version and the configure options, not by the model.  Kept after a build,
    # so a changed model recompiles one file and relinks; after a failure or an interruption
    # the next build resumes in it.
    work = cache / "qemu" / "work" / f"{src.upstream}-{configure_key(src)}"
    if (work / "build" / "testbed-configured").exists():
        say(f"qemu {src.upstream}: building in {work} (configured: only what changed is rebuilt)")
    tree = _private_tree(pristine, work, src)
    apply_glue(pristine, tree)
    place_model(tree)
    python = _build_python(cache, src)
    started = time.monotonic()
    _configure(tree, work / "build", python, src)
    _compile(work / "build", jobs, work / "build.log", src)
    seconds = time.monotonic() - started
    staged = out.with_name(out.name + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    shutil.copy2(work / "build" / TARGET, staged / TARGET)
    try:
        listed = devices(staged / TARGET)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise QemuBuildError("check", f"{staged / TARGET} {' '.join(firmware_options())} -device help: {e}",
                             src.upstream) from None
    missing = [d for d in ("ixgbe", "igb", "e1000e", "e1000", "pvpanic", "virtio-serial-pci") if d not in listed]
    if missing:
        raise QemuBuildError("check", f"{TARGET} lacks the devices {', '.join(missing)}", src.upstream)
    (staged / "meta.json").write_text(json.dumps({"version": src.upstream, "debian": src.debian,
                                                  "seconds": round(seconds, 1), "model": model_hash()}))
    staged.rename(out)
    _remove_others(cache, [out, work, pristine.parent])
    say(f"qemu {src.upstream} with the ixgbe model {model_hash()}: "
        f"built in {minutes(seconds)} "
        f"-> {out / TARGET}; run it with {' '.join(firmware_options())}")
    return out / TARGET


def build(cache: Path, jobs: int | None = None, say=print) -> Path:
    """Build (or find in the cache) qemu-system-x86_64 with the model; returns the binary.  A
    failure is recorded for unavailable() and raised as a QemuBuildError."""
    debian = None
    try:
        debian = debian_version()
        (cache / "qemu").mkdir(parents=True, exist_ok=True)
        with open(cache / "qemu" / "lock", "w") as lock:  # one build at a time in the build directory
            fcntl.flock(lock, fcntl.LOCK_EX)
            binary = _build(cache, Source(debian), jobs or os.cpu_count() or 1, say)
    except QemuBuildError as e:
        _record_failure(cache, e, debian)
        raise
    _failure_file(cache).unlink(missing_ok=True)
    return binary
