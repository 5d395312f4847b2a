"""Building a kernel from a source tree (or a tarball of one) with kernel-config/.

The configuration is allnoconfig with the fragments forced in (KCONFIG_ALLCONFIG, which 3.14
and 6.x both understand), checked afterwards: every option of the required fragments must be in
the resulting .config, else the build stops naming the options and whether the tree does not
know them or Kconfig dropped them (an unmet dependency).  where-available.config holds options
only some versions know; they are reported, not required.

The tree is a path, or a release tarball named by file and sha256 and fetched from the mirrors
(harness/provision/mirrors.py).  Old trees get the compatibility fixes of harness/provision/kcompat.py, chosen by
their version.  The build is out of tree (O=): the source tree is never written to.  Patches
are applied to a private copy.  The result is cached by (tree, fragments, compiler, make
variables, extra files, patches, compatibility fixes), so a second build of the same inputs is
a lookup.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import PROJECT
from ..children import process_group
from ..digest import content_hash, file_hash
from ..errors import UsageError
from . import apt, kcompat, minutes, mirrors
from .unpack import UnpackError, unpacked_once

FRAGMENTS = PROJECT / "kernel-config"
OPTIONAL_FRAGMENT = "where-available.config"


class BuildError(Exception):
    """The kernel did not configure or compile; the message names the log."""


class TreeSource:
    """Where a kernel tree comes from: one class per kind of `source`/`tarball`/`source-package`."""
    fetchable = False  # whether obtaining it downloads something

    def obtain(self, what: str, cache: Path, say=print) -> Path:
        """The tree, or a .tar.* of it, on this machine: downloaded into the cache if need be."""
        raise NotImplementedError

    def local(self, cache: Path) -> Path | None:
        """The tree or tarball if it is on this machine already (nothing is downloaded)."""
        raise NotImplementedError

    def fingerprint(self, cache: Path) -> str:
        """What the tree's contents are, for the build's cache key."""
        raise NotImplementedError

    def label(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class LocalTree(TreeSource):
    """A kernel tree, or a .tar.* of one, at a path on this machine."""
    path: Path

    def obtain(self, what: str, cache: Path, say=print) -> Path:
        return self.path

    def local(self, cache: Path) -> Path:
        return self.path

    def fingerprint(self, cache: Path) -> str:
        return tree_fingerprint(self.path)

    def label(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class ReleaseTarball(TreeSource):
    """A release tarball by name, fetched from the mirrors and checked against its sha256."""
    name: str
    sha256: str
    mirrors: tuple[str, ...]
    fetchable = True

    def obtain(self, what: str, cache: Path, say=print) -> Path:
        return mirrors.obtain(f"{what}.tarball", self.name, self.sha256, list(self.mirrors), cache, say=say)

    def local(self, cache: Path) -> Path | None:
        path = cache / "downloads" / self.name  # obtain() keeps only a copy whose sha256 matched
        return path if path.is_file() else None

    def fingerprint(self, cache: Path) -> str:
        return self.sha256

    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class DebianSource(TreeSource):
    """The source tarball in a Debian package (linux-source-5.10/bullseye: harness/provision/apt.py),
    taken out of the .deb into the cache."""
    package: str
    fetchable = True

    def _where(self, cache: Path) -> Path:
        return cache / "sources" / self.package.replace("/", "_")

    def _meta(self, cache: Path) -> dict | None:
        meta = self._where(cache) / "meta.json"
        return json.loads(meta.read_text()) if meta.exists() else None

    def obtain(self, what: str, cache: Path, say=print) -> Path:
        package, source = apt.parse(self.package)
        source.refresh(cache, say)
        version = source.show(package, cache)["Version"]
        where, meta = self._where(cache), self._meta(cache)
        if meta and meta["version"] == version:
            return where / meta["tarball"]
        say(f"{what}: fetching {package} {version}")
        where.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=where.parent) as tmp:
            deb = source.download(package, version, cache, Path(tmp))
            unpacked = Path(tmp) / "unpacked"
            subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
            tarballs = sorted((unpacked / "usr" / "src").glob("*.tar.*"))
            if not tarballs:
                raise UsageError(f"{what}: {package} {version} holds no /usr/src/*.tar.*; "
                                 "name a package of kernel sources (linux-source-X.Y)")
            staged = Path(tmp) / "staged"
            staged.mkdir()
            tarballs[0].rename(staged / tarballs[0].name)
            (staged / "meta.json").write_text(json.dumps({"version": version, "tarball": tarballs[0].name,
                                                          "sha256": file_hash(staged / tarballs[0].name)}))
            shutil.rmtree(where, ignore_errors=True)
            staged.rename(where)
        say(f"{what}: {package} {version}: {where / tarballs[0].name}")
        return where / tarballs[0].name

    def local(self, cache: Path) -> Path | None:
        meta = self._meta(cache)
        return self._where(cache) / meta["tarball"] if meta else None

    def fingerprint(self, cache: Path) -> str:
        meta = self._meta(cache)
        if meta is None:
            raise UsageError(f"{self.package}: not fetched yet; run `make setup` (or `testbed kernel fetch`)")
        return meta["sha256"]

    def label(self) -> str:
        return self.package


@dataclass
class BuildSpec:
    name: str
    source: TreeSource
    make_vars: dict[str, str] = field(default_factory=dict)  # CC, HOSTCFLAGS, KCFLAGS, ...
    files: dict[str, Path] = field(default_factory=dict)     # build-dir path -> file to place there
    patches: list[Path] = field(default_factory=list)

    def local_source(self, cache: Path, say=print) -> Path:
        """The tree or tarball on this machine, fetching it into the cache if need be."""
        return self.source.obtain(f"kernels.{self.name}", cache, say)


def fragment_options(paths: list[Path]) -> dict[str, str]:
    options = {}
    for path in paths:
        for line in path.read_text().splitlines():
            m = re.match(r"(CONFIG_\w+)=(.*)", line.strip())
            if m:
                options[m.group(1)] = m.group(2)
    return options


def fragments() -> tuple[list[Path], list[Path]]:
    """(required, optional) fragment files."""
    every = sorted(FRAGMENTS.glob("*.config"))
    return [p for p in every if p.name != OPTIONAL_FRAGMENT], [p for p in every if p.name == OPTIONAL_FRAGMENT]


_fingerprints: dict[tuple, str] = {}


def tree_fingerprint(source: Path) -> str:
    """A tarball by its contents; a tree by every file's path, size and mtime (reading 1 GB of
    sources on every run would cost more than the check is worth)."""
    if source.is_file():
        st = source.stat()
        memo = (str(source.resolve()), st.st_size, st.st_mtime_ns)
        if memo not in _fingerprints:
            _fingerprints[memo] = file_hash(source)
        return _fingerprints[memo]
    entries = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for f in sorted(files):
            st = os.lstat(os.path.join(root, f))
            entries.append(f"{os.path.relpath(os.path.join(root, f), source)} {st.st_size} {st.st_mtime_ns}")
    return content_hash("\n".join(entries).encode())


def tarball_version(tarball: Path, fingerprint: str, cache: Path) -> tuple[int, int, int]:
    """The version in a tarball's top-level Makefile, read by decompressing only as far as that
    file (under a second) and remembered by the tarball's fingerprint."""
    memo = cache / "src" / f"{fingerprint[:16]}.version"
    if memo.exists():
        return tuple(int(n) for n in memo.read_text().split("."))  # type: ignore[return-value]
    try:
        with tarfile.open(tarball, "r|*") as tar:
            makefile = next((m for m in tar if re.fullmatch(r"[^/]+/Makefile", m.name) and m.isfile()), None)
            member = tar.extractfile(makefile) if makefile else None
            head = member.read(2000).decode(errors="replace") if member else ""
    except (OSError, tarfile.TarError) as e:
        raise UsageError(f"{tarball}: cannot read it as a tarball ({e})") from e
    version = kcompat.makefile_version(head, f"{tarball}: its top-level Makefile")
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(".".join(map(str, version)))
    return version


def source_version(spec: BuildSpec, cache: Path) -> tuple[int, int, int]:
    """The version of the tree the entry builds, without fetching or unpacking it."""
    local = spec.source.local(cache)
    if local is None:
        raise UsageError(f"kernel {spec.name}: its source {spec.source.label()} is not fetched yet; "
                         f"run `make setup` (or `testbed kernel fetch {spec.name}`)")
    if local.is_file():
        return tarball_version(local, spec.source.fingerprint(cache), cache)
    return kcompat.tree_version(local)


def _compiler(spec: BuildSpec) -> bytes:
    cc = spec.make_vars.get("CC", "gcc").split()
    try:
        return subprocess.run([*cc, "--version"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"kernels.{spec.name}.make.CC: {' '.join(cc)!r} does not run ({e}); give a compiler") from e


def build_key(spec: BuildSpec, cache: Path, tree: bool = True) -> str:
    """What the build's result depends on: the tree (unless `tree` is False), kernel-config/, the
    compiler, the entry's make variables, files and patches, and the compatibility fixes for the
    tree's version only (a changed fix for 3.14 does not rebuild 6.1)."""
    required, optional = fragments()
    return content_hash(spec.source.fingerprint(cache).encode() if tree else spec.source.label().encode(),
                *(p.name.encode() + p.read_bytes() for p in required + optional),
                _compiler(spec), json.dumps(spec.make_vars, sort_keys=True).encode(),
                *(dest.encode() + src.read_bytes() for dest, src in sorted(spec.files.items())),
                *(p.read_bytes() for p in spec.patches),
                kcompat.fingerprint(source_version(spec, cache)))[:16]


def output_dir(cache: Path, spec: BuildSpec) -> Path:
    return cache / "kernels" / f"{spec.name}-{build_key(spec, cache)}"


def unpacked_tree(source: Path, cache: Path) -> Path:
    """A tarball unpacked once into the cache (shared by every build of it)."""
    try:
        entries = unpacked_once(source, cache / "src" / tree_fingerprint(source)[:16])
    except UnpackError as e:
        raise UsageError(f"{source}: cannot unpack: {e}") from None
    tops = [p for p in entries if (p / "Makefile").exists()]
    if not tops:
        raise UsageError(f"{source}: the tarball has no kernel tree (no top-level Makefile)")
    return tops[0]


def incremental(spec: BuildSpec) -> bool:
    """A tree given by its path — a git checkout being bisected — is built in one work directory
    whatever its files hold, kept after each build: the next commit's is make's incremental
    build of what changed (its results are still cached by content, each apart)."""
    return isinstance(spec.source, LocalTree) and spec.source.path.is_dir()


def work_dir(cache: Path, spec: BuildSpec, out: Path) -> Path:
    if incremental(spec):
        return cache / "kbuild" / f"{spec.name}-tree-{build_key(spec, cache, tree=False)}"
    return cache / "kbuild" / out.name


def source_tree(spec: BuildSpec, cache: Path, work: Path, say=print) -> tuple[Path, kcompat.Plan]:
    """The tree to build — the user's, unpacked if a tarball, copied and patched if the
    compatibility fixes or the entry have patches — and the fixes chosen for it."""
    source = spec.local_source(cache, say)
    tree = unpacked_tree(source, cache) if source.is_file() else source
    if not (tree / "Makefile").exists() or not (tree / "Kconfig").exists():
        raise UsageError(f"kernels.{spec.name}.source: {tree} is not a kernel tree (no Makefile and Kconfig)")
    compat = kcompat.plan(tree, spec.make_vars)
    patches = [*compat.patches, *spec.patches]
    if not patches:
        return tree, compat
    private = work / "src"
    patched = work / "src.patched"  # the copy is complete: a resumed build keeps it (and its mtimes)
    if patched.exists() and not incremental(spec):
        return private, compat
    patched.unlink(missing_ok=True)  # a tree that may have changed: copied again, its mtimes kept
    shutil.rmtree(private, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    # Hard links: patch(1) writes a new file and renames it, so the user's tree is never changed,
    # and an out-of-tree build never writes into the source.  A real copy costs ~30 s here.
    copied = subprocess.run(["cp", "-al", str(tree), str(private)], capture_output=True, text=True)
    if copied.returncode:  # another filesystem: copy for real
        shutil.rmtree(private, ignore_errors=True)
        copied = subprocess.run(["cp", "-a", str(tree), str(private)], capture_output=True, text=True)
    if copied.returncode:
        raise BuildError(f"kernel {spec.name}: cannot copy {tree} to patch it: {copied.stderr.strip()}")
    for patch in patches:
        r = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=private,
                           capture_output=True, text=True)
        if r.returncode:
            what = "compatibility fix" if patch in compat.patches else "patch"
            raise BuildError(f"kernel {spec.name}: {what} {patch} does not apply to {tree}: "
                             f"{(r.stdout + r.stderr).strip().splitlines()[-1]}")
    patched.touch()
    return private, compat


def _place(path: Path, content: bytes):
    """Write a file into the build directory unless it already holds this: a newer mtime on a
    header every file includes (compiler-gcc12.h) would make a resumed build compile it all again."""
    if path.exists() and path.read_bytes() == content:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def _known_symbols(tree: Path) -> set[str]:
    known = set()
    for root, _, files in os.walk(tree):
        for f in files:
            if f.startswith("Kconfig"):
                text = Path(root, f).read_text(errors="replace")
                known.update(re.findall(r"^\s*(?:menu)?config\s+(\w+)", text, re.M))
    return known


def check_config(tree: Path, config: Path, name: str) -> list[str]:
    """Fail unless every required option took; returns notes on the optional ones."""
    required, optional = fragments()
    have = fragment_options([config])
    missing = {k: v for k, v in fragment_options(required).items() if have.get(k) != v}
    if missing:
        known = _known_symbols(tree)
        unknown = [k for k in missing if k[len("CONFIG_"):] not in known]
        dropped = [k for k in missing if k not in unknown]
        parts = []
        if unknown:
            parts.append(f"unknown to this tree: {', '.join(unknown)}")
        if dropped:
            parts.append(f"dropped by Kconfig (unmet dependencies): {', '.join(dropped)}")
        raise BuildError(f"kernel {name}: the configuration lacks options the testbed needs; "
                         + "; ".join(parts) + f" (see {config})")
    return [f"{k}={v}" + ("" if have.get(k) == v else " (not in this version)")
            for k, v in fragment_options(optional).items()]


def run_make(tree: Path, build: Path, make_vars: dict[str, str], *targets: str):
    """A context manager: make running in a process group that ends with it (see children.py)."""
    args = ["make", "-C", str(tree), f"O={build}", *(f"{k}={v}" for k, v in make_vars.items()), *targets]
    return process_group(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)


@dataclass
class Configured:
    tree: Path
    build: Path
    compat: kcompat.Plan   # its make_vars are the entry's with the fixes' flags appended
    notes: list[str]       # the optional options, and whether each took


def configure(spec: BuildSpec, cache: Path, work: Path, say=print) -> Configured:
    """Fetch/unpack/copy/patch the tree, place the extra files, make allnoconfig with the
    fragments forced in, and check the result."""
    tree, compat = source_tree(spec, cache, work, say)
    build = work / "build"
    build.mkdir(parents=True, exist_ok=True)
    for dest, src in spec.files.items():
        _place(build / dest, Path(src).read_bytes())
    for dest, text in compat.files.items():
        _place(build / dest, text.encode())
    required, optional = fragments()
    allconfig = build / "testbed-fragments.config"
    allconfig.write_text("".join(p.read_text() for p in required + optional))
    with run_make(tree, build, {**compat.make_vars, "KCONFIG_ALLCONFIG": str(allconfig)}, "allnoconfig") as proc:
        out, _ = proc.communicate()
    (build / "configure.log").write_text(out)
    if proc.returncode:
        raise BuildError(f"kernel {spec.name}: make allnoconfig failed: {out.strip().splitlines()[-1:]} "
                         f"(log: {build / 'configure.log'})")
    return Configured(tree, build, compat, check_config(tree, build / ".config", spec.name))


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if re.search(r"\berror\b|Error \d", line)]
    return (errors[0] if errors else lines[-1] if lines else "").strip()


def _compile(c: Configured, spec: BuildSpec, jobs: int, log_path: Path):
    """make bzImage, output to the log, a progress line on the terminal (one a minute otherwise)."""
    started, objects, last_report = time.monotonic(), 0, 0.0
    tty = sys.stderr.isatty()
    with open(log_path, "w") as log, run_make(c.tree, c.build, c.compat.make_vars, f"-j{jobs}", "bzImage") as proc:
        for line in proc.stdout:
            log.write(line)
            objects += line.lstrip().startswith(("CC ", "AS "))
            now = time.monotonic()
            if tty or now - last_report > 60:
                elapsed = now - started
                print(f"\r  building {spec.name}: {objects} objects, {elapsed // 60:.0f}:{elapsed % 60:02.0f}",
                      end="" if tty else "\n", file=sys.stderr, flush=True)
                last_report = now
        proc.wait()
    if tty:
        print(file=sys.stderr)
    if proc.returncode:
        raise BuildError(f"kernel {spec.name}: build failed: {_last_error(log_path)} (log: {log_path})")


def build(spec: BuildSpec, cache: Path, jobs: int | None = None, say=print) -> Path:
    """Build (or find in the cache) the kernel; returns the directory holding bzImage."""
    out = output_dir(cache, spec)
    if (out / "bzImage").exists():
        say(f"kernel {spec.name}: already built ({out})")
        return out
    # The work dir is named by the build's inputs.  After a failure or an interruption it stays,
    # with its logs, and the next build of the same inputs resumes in it: make rebuilds what is
    # missing or out of date (it deletes half-written targets when interrupted).
    work = work_dir(cache, spec, out)
    if (work / "build" / ".config").exists():
        say(f"kernel {spec.name}: " + (f"building what changed since the last build in {work}" if incremental(spec)
                                       else f"resuming the build in {work}"))
    work.mkdir(parents=True, exist_ok=True)
    c = configure(spec, cache, work, say)
    version = ".".join(map(str, kcompat.tree_version(c.tree)))
    fixes = [f.name for f in c.compat.fixes]
    say(f"kernel {spec.name}: {version} configured from {c.tree}; "
        f"compatibility fixes: {', '.join(fixes) or 'none needed'}; optional: {', '.join(c.notes)}")
    started = time.monotonic()
    _compile(c, spec, jobs or os.cpu_count() or 1, work / "build.log")
    staged = out.with_name(out.name + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for src, dest in (("arch/x86/boot/bzImage", "bzImage"), ("vmlinux", "vmlinux"), (".config", "config")):
        shutil.copy(c.build / src, staged / dest)
    shutil.copy(work / "build.log", staged / "build.log")
    seconds = time.monotonic() - started
    (staged / "meta.json").write_text(json.dumps({"name": spec.name, "version": version,
                                                  "source": spec.source.label(),
                                                  "make": c.compat.make_vars, "compat": fixes, "optional": c.notes,
                                                  "seconds": round(seconds, 1)}))
    staged.rename(out)
    if not incremental(spec):
        shutil.rmtree(work, ignore_errors=True)
    say(f"kernel {spec.name}: built in {minutes(seconds)} -> {out / 'bzImage'}")
    return out
