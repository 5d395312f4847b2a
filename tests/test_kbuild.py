"""Kernel builds from source: each mechanism (make variables, extra files, patches, the options
check) exercised on Debian's 6.1 tree up to the configuration step, which is where they act;
the compatibility fixes chosen by version, and the fragments against 3.14.40's Kconfig; and a
real build interrupted, then resumed."""
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.provision import kbuild, kcompat
from harness.provision.kbuild import BuildError, BuildSpec, LocalTree
from harness.errors import UsageError

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
needs_6_1 = pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing (make setup installs it)")


def kernelrelease(c: kbuild.Configured):
    with kbuild.run_make(c.tree, c.build, c.compat.make_vars, "-s", "kernelrelease") as proc:
        return proc.communicate()[0].strip().splitlines()[-1]


def required_options_in(config: Path):
    text = config.read_text()
    return {o: f"{o}={v}\n" in text for o, v in kbuild.fragment_options(kbuild.fragments()[0]).items()}


@needs_6_1
def test_fragments_configure_6_1_with_every_required_option(cfg, tmp_path):
    spec = BuildSpec("t", LocalTree(TARBALL), make_vars={"LOCALVERSION": "-testbed"})
    c = kbuild.configure(spec, cfg.cache, tmp_path)
    assert [o for o, ok in required_options_in(c.build / ".config").items() if not ok] == []
    assert "CONFIG_NETLINK_MMAP=y (not in this version)" in c.notes  # 3.14-only, reported not required
    assert "CONFIG_PVH=y" in c.notes
    assert c.compat.fixes == []  # a 6.1 tree needs none
    assert kernelrelease(c).endswith("-testbed")  # make variables reach make
    assert not (c.tree / ".config").exists()  # out of tree: the source is never written to


def linux_3_14(cfg) -> BuildSpec:
    spec = cfg.kernels.get("linux-3.14")
    if spec is None or not spec.build:
        pytest.skip("testbed.yaml has no linux-3.14 entry")
    return spec.build


def test_fragments_configure_3_14_with_every_required_option_and_its_fixes(cfg, tmp_path):
    c = kbuild.configure(linux_3_14(cfg), cfg.cache, tmp_path)  # the tarball comes from the mirrors
    assert kcompat.tree_version(c.tree) == (3, 14, 40)
    assert [o for o, ok in required_options_in(c.build / ".config").items() if not ok] == []
    assert "CONFIG_NETLINK_MMAP=y" in c.notes and "CONFIG_PVH=y (not in this version)" in c.notes
    assert [f.name for f in c.compat.fixes] == ["compiler-gcc-header", "no-pie", "host-fcommon", "early-idt-stride",
                                                "kbuild-pound"]
    assert "$(subst $(pound),$$(pound)," in (c.tree / "scripts/Kbuild.include").read_text()
    major = kcompat.compiler_major("gcc")
    assert "compiler-gcc5.h" in (c.build / f"include/linux/compiler-gcc{major}.h").read_text()
    assert ".fill early_idt_handlers + i*9 - ., 1, 0xcc" in (c.tree / "arch/x86/kernel/head_64.S").read_text()
    pristine = kbuild.unpacked_tree(linux_3_14(cfg).local_source(cfg.cache), cfg.cache)
    assert "early_idt_handlers + i*9" not in (pristine / "arch/x86/kernel/head_64.S").read_text()  # only the copy
    shutil.rmtree(tmp_path)


OLD_MAKE_CMD = "make-cmd = $(subst \\\\,\\\\\\\\,$(subst \\#,\\\\\\#,$(subst $$,$$$$,$(call escsq,$(cmd_$(1))))))\n"


def fake_tree(where: Path, version: tuple[int, int, int], gcc_headers=(), make_cmd=OLD_MAKE_CMD) -> Path:
    (where / "include/linux").mkdir(parents=True)
    (where / "scripts").mkdir()
    (where / "scripts/Kbuild.include").write_text(make_cmd)
    (where / "Makefile").write_text("VERSION = {}\nPATCHLEVEL = {}\nSUBLEVEL = {}\nEXTRAVERSION =\n".format(*version))
    for n in gcc_headers:
        (where / f"include/linux/compiler-gcc{n}.h").write_text("")
    return where


def test_compatibility_fixes_are_chosen_by_the_trees_version(tmp_path):
    def chosen(version, make_vars=None, headers=(3, 4, 5), make_cmd=OLD_MAKE_CMD):
        where = tmp_path / f"{'.'.join(map(str, version))}-{len(make_cmd)}"
        plan = kcompat.plan(fake_tree(where, version, headers, make_cmd), make_vars or {})
        return [f.name for f in plan.fixes], plan
    names, plan = chosen((3, 14, 40), {"CC": "gcc", "KCFLAGS": "-g"})
    assert names == ["compiler-gcc-header", "no-pie", "host-fcommon", "early-idt-stride", "kbuild-pound"]
    assert plan.make_vars == {"CC": "gcc -fno-pie", "HOSTCC": "gcc -fcommon", "KCFLAGS": "-g"}  # the user's kept
    assert list(plan.files) == [f"include/linux/compiler-gcc{kcompat.compiler_major('gcc')}.h"]
    assert plan.patches == [kcompat.PATCHES / "early-idt-stride.patch", kcompat.PATCHES / "kbuild-pound.patch"]
    assert all(p.is_file() for p in plan.patches)
    assert chosen((4, 4, 1))[0] == ["no-pie", "host-fcommon", "kbuild-pound"]
    backported = "make-cmd = $(call escsq,$(subst $(pound),$$(pound),$(subst $$,$$$$,$(cmd_$(1)))))\n"
    assert chosen((4, 4, 230), make_cmd=backported)[0] == ["no-pie", "host-fcommon"]  # a stable line has it
    assert chosen((5, 10, 0))[0] == ["host-fcommon"]
    assert chosen((6, 1, 0))[0] == []
    major = kcompat.compiler_major("gcc")
    assert chosen((3, 18, 1), headers=(3, 4, 5, major))[1].files == {}  # the tree knows this gcc already


def test_a_changed_fix_rebuilds_only_the_trees_it_is_for(cfg, monkeypatch):
    old = linux_3_14(cfg)
    kbuild.output_dir(cfg.cache, old)  # reads its version from the tarball (once: remembered by its sha256)
    new = BuildSpec("t", LocalTree(TARBALL)) if TARBALL.exists() else None
    keys = {"3.14": kbuild.build_key(old, cfg.cache), "6.1": new and kbuild.build_key(new, cfg.cache)}
    changed = tuple(dataclasses.replace(f, why=f.why + " (reworded)") if f.name == "kbuild-pound" else f
                    for f in kcompat.FIXES)
    monkeypatch.setattr(kcompat, "FIXES", changed)
    assert kbuild.build_key(old, cfg.cache) != keys["3.14"]       # 3.14 < 4.17: kbuild-pound is one of its fixes
    assert new is None or kbuild.build_key(new, cfg.cache) == keys["6.1"]  # not one of 6.1's: same build


def test_a_tree_given_by_its_path_builds_in_one_work_dir_whatever_it_holds(cfg, tmp_path):
    tree = fake_tree(tmp_path / "linux", (3, 14, 40))
    spec = BuildSpec("t", LocalTree(tree))
    before = kbuild.output_dir(cfg.cache, spec), kbuild.work_dir(cfg.cache, spec, kbuild.output_dir(cfg.cache, spec))
    (tree / "Makefile").write_text((tree / "Makefile").read_text() + "# the next commit\n")
    after = kbuild.output_dir(cfg.cache, spec), kbuild.work_dir(cfg.cache, spec, kbuild.output_dir(cfg.cache, spec))
    assert before[0] != after[0]  # its result is cached by what the tree holds
    assert before[1] == after[1] and kbuild.incremental(spec)  # built where the last commit was
    tarball = BuildSpec("t", LocalTree(TARBALL))
    assert not kbuild.incremental(tarball)


def test_a_tarballs_version_is_read_from_its_makefile(cfg, tmp_path):
    tarball = linux_3_14(cfg).local_source(cfg.cache)
    assert kbuild.tarball_version(tarball, "test-" + kbuild.tree_fingerprint(tarball), tmp_path) == (3, 14, 40)
    assert list((tmp_path / "src").glob("test-*.version"))
    empty = tmp_path / "empty.tar.gz"
    subprocess.run(["tar", "-czf", str(empty), "-C", str(tmp_path), "src"], check=True)
    with pytest.raises(UsageError, match="empty.tar.gz: its top-level Makefile: no VERSION and PATCHLEVEL"):
        kbuild.tarball_version(empty, "empty", tmp_path)


@needs_6_1
def test_a_compatibility_patch_that_does_not_apply_is_named(cfg, tmp_path, monkeypatch):
    bad = tmp_path / "compat"
    bad.mkdir()
    (bad / "early-idt-stride.patch").write_text("--- a/Makefile\n+++ b/Makefile\n@@ -1,1 +1,1 @@\n-no such line\n+x\n")
    monkeypatch.setattr(kcompat, "PATCHES", bad)
    monkeypatch.setattr(kcompat, "tree_version", lambda tree: (4, 1, 0))  # a tree the fix is chosen for
    with pytest.raises(BuildError, match="compatibility fix .*early-idt-stride.patch does not apply"):
        kbuild.configure(BuildSpec("t", LocalTree(TARBALL)), cfg.cache, tmp_path / "w")
    shutil.rmtree(tmp_path / "w")


@needs_6_1
def test_extra_files_are_placed_in_the_build_dir(cfg, tmp_path):
    header = tmp_path / "compiler-gcc99.h"
    header.write_text("/* for an old tree built with a new gcc */\n")
    spec = BuildSpec("t", LocalTree(TARBALL), files={"include/linux/compiler-gcc99.h": header})
    build = kbuild.configure(spec, cfg.cache, tmp_path / "w").build
    assert (build / "include/linux/compiler-gcc99.h").read_text() == header.read_text()


@needs_6_1
def test_patches_apply_to_a_private_copy(cfg, tmp_path):
    patch = tmp_path / "marker.patch"
    patch.write_text("--- a/init/Kconfig\n+++ b/init/Kconfig\n@@ -1,2 +1,6 @@\n"
                     "+config TESTBED_PATCHED\n+\tbool\n+\tdefault y\n+\n"
                     " # SPDX-License-Identifier: GPL-2.0-only\n config CC_VERSION_TEXT\n")
    spec = BuildSpec("t", LocalTree(TARBALL), patches=[patch])
    c = kbuild.configure(spec, cfg.cache, tmp_path / "w")
    tree = c.tree
    assert "CONFIG_TESTBED_PATCHED=y" in (c.build / ".config").read_text()
    pristine = kbuild.unpacked_tree(TARBALL, cfg.cache)
    assert tree != pristine and "TESTBED_PATCHED" not in (pristine / "init/Kconfig").read_text()
    unpatched = BuildSpec("t", LocalTree(TARBALL))
    assert kbuild.build_key(spec, cfg.cache) != kbuild.build_key(unpatched, cfg.cache)  # patches are in the key
    shutil.rmtree(tmp_path / "w")  # a 1.3 GB copy


@needs_6_1
def test_a_patch_that_does_not_apply_is_named(cfg, tmp_path):
    patch = tmp_path / "bad.patch"
    patch.write_text("--- a/Makefile\n+++ b/Makefile\n@@ -1,1 +1,1 @@\n-no such line\n+x\n")
    with pytest.raises(BuildError, match="bad.patch does not apply"):
        kbuild.configure(BuildSpec("t", LocalTree(TARBALL), patches=[patch]), cfg.cache, tmp_path / "w")


@needs_6_1
def test_missing_options_are_named_as_unknown_or_dropped(cfg, tmp_path, monkeypatch):
    fragments = tmp_path / "fragments"
    fragments.mkdir()
    (fragments / "x.config").write_text("CONFIG_TESTBED_NO_SUCH_OPTION=y\nCONFIG_IGB=y\n")  # IGB without PCI
    monkeypatch.setattr(kbuild, "FRAGMENTS", fragments)
    with pytest.raises(BuildError) as e:
        kbuild.configure(BuildSpec("t", LocalTree(TARBALL)), cfg.cache, tmp_path / "w")
    assert "unknown to this tree: CONFIG_TESTBED_NO_SUCH_OPTION" in str(e.value)
    assert "dropped by Kconfig (unmet dependencies): CONFIG_IGB" in str(e.value)


def start_build(cache: Path, name: str, tarball: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "kernel", "build", "--source", str(tarball),
                             "--name", name, "--jobs", "1"],
                            cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "TESTBED_CACHE": str(cache)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal


def saved_command(obj: Path) -> Path:
    return obj.with_name(f".{obj.name}.cmd")


def compiled(log: Path) -> list[str]:
    return re.findall(r"^\s+CC\s+(\S+\.o)$", log.read_text(), re.M) if log.exists() else []


def interrupt_while_compiling(proc: subprocess.Popen, work: Path, sig: int) -> tuple[int, str, int]:
    """Once make has compiled a few files, send `sig`; returns (exit status, stdout, make's pid)."""
    deadline = time.monotonic() + 300
    while len(compiled(work / "build.log")) < 5:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.5)
    make = int(subprocess.run(["pgrep", "-f", f"O={work / 'build'}"], capture_output=True,
                              text=True).stdout.split()[0])
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    return proc.returncode, out, make


def test_an_interrupted_build_stops_make_and_the_next_one_resumes(cfg):
    # 3.14: its first objects compile sooner than 6.1's (no objtool to build before them)
    tarball = linux_3_14(cfg).local_source(cfg.cache)
    name = "interrupted-build-test"
    spec = BuildSpec(name, LocalTree(tarball))
    work = cfg.cache / "kbuild" / kbuild.output_dir(cfg.cache, spec).name
    shutil.rmtree(work, ignore_errors=True)
    try:
        status, _, make = interrupt_while_compiling(start_build(cfg.cache, name, tarball), work, signal.SIGINT)
        assert status == 130
        assert subprocess.run(["pgrep", "-g", str(make)], capture_output=True).stdout == b""  # no make, no gcc
        assert not kbuild.output_dir(cfg.cache, spec).exists()  # nothing looks built
        # built: an object with its saved command line (.o.cmd, written after the .o). One whose
        # compiler finished but whose make was killed before that (a loaded machine: past the stop's
        # grace) has none, and kbuild rightly compiles it again.
        built = {o: (work / "build" / o).stat().st_mtime_ns for o in compiled(work / "build.log")
                 if (work / "build" / o).exists() and saved_command(work / "build" / o).exists()}
        assert built
        (work / "build.log").unlink()  # the next build writes its own
        status, out, make = interrupt_while_compiling(start_build(cfg.cache, name, tarball), work, signal.SIGTERM)
        assert status == 143 and f"resuming the build in {work}" in out
        assert subprocess.run(["pgrep", "-g", str(make)], capture_output=True).stdout == b""
        assert not set(built) & set(compiled(work / "build.log"))  # what was built is not built again
        assert {o: (work / "build" / o).stat().st_mtime_ns for o in built} == built
    finally:
        shutil.rmtree(work, ignore_errors=True)
