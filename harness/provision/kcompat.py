"""What an old kernel tree needs to build with today's compiler and assembler.

Each fix says why, which upstream versions need it, and what it does: flags appended to a make
variable, a patch (kernel-config/compat/) applied to the build's private copy of the tree, or a
header placed into the build directory.  kbuild chooses them by the version in the tree's
Makefile and the compiler's major version, so that `source: /path/to/linux-3.14.y` just builds.
"""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .. import PROJECT
from ..errors import UsageError

PATCHES = PROJECT / "kernel-config" / "compat"


@dataclass(frozen=True)
class Fix:
    name: str
    why: str
    before: tuple[int, int]           # trees older than this upstream version need it
    append: dict[str, str] = field(default_factory=dict)  # flags appended to make variables
    patch: str | None = None          # a file in kernel-config/compat/, applied with patch -p1
    compiler_header: bool = False     # include/linux/compiler-gcc<major>.h for the compiler in use
    still: tuple[str, str] | None = None  # (file, text): only while the tree's file has it (stable backports)

    def applies(self, tree: Path, version: tuple[int, int, int]) -> bool:
        if version[:2] >= self.before:
            return False
        if self.still is None:
            return True
        path = tree / self.still[0]
        return path.exists() and self.still[1] in path.read_text(errors="replace")


FIXES = (
    Fix("compiler-gcc-header",
        "before 4.2, <linux/compiler-gcc.h> includes compiler-gcc<major>.h for the compiler's major version, "
        "and the tree has them only up to the gcc of its day; the newest one it has serves",
        before=(4, 2), compiler_header=True),
    Fix("no-pie",
        "Debian's gcc (like most distributions' since 2017) makes position-independent code by default; "
        "the kernel asks for -fno-PIE itself only since 4.9, and its boot code takes no KCFLAGS, hence CC",
        before=(4, 9), append={"CC": "-fno-pie"}),
    Fix("host-fcommon",
        "gcc 10 defaults to -fno-common; arch/x86/tools/relocs (a host tool) defines per_cpu_load_addr in a file "
        "included twice, and fails to link (6.1 has it static).  Only host tools get -fcommon: the kernel "
        "itself must stay -fno-common",
        before=(6, 0), append={"HOSTCC": "-fcommon"}),
    Fix("early-idt-stride",
        "binutils 2.3x relaxes the early IDT stubs' jmp to 2 bytes, breaking the 9-byte stride head64.c assumes: "
        "the first early page fault then halts the kernel before any console output; fixed upstream in 4.2",
        before=(4, 2), patch="early-idt-stride.patch"),
    Fix("kbuild-pound",
        "GNU Make 4.3 keeps the backslash of \\# inside a function call, so kbuild's make-cmd saves each command "
        "with a bare #, read back as a comment: every make invocation compiles the whole tree again and an "
        "interrupted build cannot resume; fixed upstream in 4.17 with $(pound), and in some stable lines",
        before=(4, 17), patch="kbuild-pound.patch", still=("scripts/Kbuild.include", "$(subst \\#,\\\\\\#,")),
)


def makefile_version(text: str, what: str) -> tuple[int, int, int]:
    """VERSION.PATCHLEVEL.SUBLEVEL from the head of a kernel's top-level Makefile."""
    parts = [re.search(rf"^{k}\s*=\s*(\d*)", text, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    if not parts[0] or not parts[1]:
        raise UsageError(f"{what}: no VERSION and PATCHLEVEL; is this a kernel tree?")
    major, minor, sub = (int(p.group(1) or 0) if p else 0 for p in parts)
    return major, minor, sub


def tree_version(tree: Path) -> tuple[int, int, int]:
    """VERSION.PATCHLEVEL.SUBLEVEL from the tree's top Makefile."""
    return makefile_version((tree / "Makefile").read_text(errors="replace")[:2000], f"{tree}/Makefile")


def compiler_major(cc: str) -> int:
    out = subprocess.run([*cc.split(), "-dumpversion"], capture_output=True, text=True)
    m = re.match(r"(\d+)", out.stdout.strip())
    if out.returncode or not m:
        raise UsageError(f"make.CC: {cc!r} does not say its version (-dumpversion): {out.stderr.strip()}")
    return int(m.group(1))


@dataclass
class Plan:
    """The fixes for one tree and compiler, as what the build does with them."""
    fixes: list[Fix]
    make_vars: dict[str, str]
    files: dict[str, str]     # build-dir path -> contents
    patches: list[Path]


def plan(tree: Path, make_vars: dict[str, str]) -> Plan:
    version = tree_version(tree)
    fixes = [f for f in FIXES if f.applies(tree, version)]
    merged = dict(make_vars)
    files: dict[str, str] = {}
    for fix in fixes:
        for var, flags in fix.append.items():
            merged[var] = f"{merged.get(var, 'gcc' if var.endswith('CC') else '')} {flags}".strip()
        if fix.compiler_header:
            major = compiler_major(merged.get("CC", "gcc"))
            present = [int(m.group(1)) for p in (tree / "include" / "linux").glob("compiler-gcc*.h")
                       if (m := re.fullmatch(r"compiler-gcc(\d+)\.h", p.name))]
            if present and major not in present:
                files[f"include/linux/compiler-gcc{major}.h"] = \
                    f"/* testbed compat fix {fix.name}: gcc {major} as the newest gcc this tree knows */\n" \
                    f"#include <linux/compiler-gcc{max(present)}.h>\n"
    return Plan(fixes, merged, files, [PATCHES / f.patch for f in fixes if f.patch])


def fingerprint(version: tuple[int, int, int]) -> bytes:
    """The fixes a tree of `version` may get (by version alone: whether a stable backport made
    one unneeded is only known once unpacked), for its build's cache key: changing one of them
    rebuilds only the trees it is for."""
    fixes = [f for f in FIXES if version[:2] < f.before]
    return repr(fixes).encode() + b"".join((PATCHES / f.patch).read_bytes() for f in fixes if f.patch)
