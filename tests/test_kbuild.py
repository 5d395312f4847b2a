"""Kernel builds from source: each mechanism (make variables, extra files, patches, the options
check) exercised on Debian's 6.1 tree up to the configuration step, which is where they act."""
import shutil
from pathlib import Path

import pytest

from harness import kbuild
from harness.kbuild import BuildError, BuildSpec

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
pytestmark = pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing (make setup installs it)")


def kernelrelease(tree, build, spec):
    proc = kbuild._make(tree, build, spec, "-s", "kernelrelease")
    return proc.communicate()[0].strip().splitlines()[-1]


def test_fragments_configure_6_1_with_every_required_option(cfg, tmp_path):
    spec = BuildSpec("t", TARBALL, make_vars={"LOCALVERSION": "-testbed"})
    tree, build, notes = kbuild.configure(spec, cfg.cache, tmp_path)
    config = (build / ".config").read_text()
    for option, value in kbuild.fragment_options(kbuild.fragments()[0]).items():
        assert f"{option}={value}\n" in config
    assert "CONFIG_NETLINK_MMAP=y (not in this version)" in notes  # 3.14-only, reported not required
    assert "CONFIG_PVH=y" in notes
    assert kernelrelease(tree, build, spec).endswith("-testbed")  # make variables reach make
    assert not (tree / ".config").exists()  # out of tree: the source is never written to


def test_extra_files_are_placed_in_the_build_dir(cfg, tmp_path):
    header = tmp_path / "compiler-gcc99.h"
    header.write_text("/* for an old tree built with a new gcc */\n")
    spec = BuildSpec("t", TARBALL, files={"include/linux/compiler-gcc99.h": header})
    _, build, _ = kbuild.configure(spec, cfg.cache, tmp_path / "w")
    assert (build / "include/linux/compiler-gcc99.h").read_text() == header.read_text()


def test_patches_apply_to_a_private_copy(cfg, tmp_path):
    patch = tmp_path / "marker.patch"
    patch.write_text("--- a/init/Kconfig\n+++ b/init/Kconfig\n@@ -1,2 +1,6 @@\n"
                     "+config TESTBED_PATCHED\n+\tbool\n+\tdefault y\n+\n"
                     " # SPDX-License-Identifier: GPL-2.0-only\n config CC_VERSION_TEXT\n")
    spec = BuildSpec("t", TARBALL, patches=[patch])
    tree, build, _ = kbuild.configure(spec, cfg.cache, tmp_path / "w")
    assert "CONFIG_TESTBED_PATCHED=y" in (build / ".config").read_text()
    pristine = kbuild._unpacked_tree(TARBALL, cfg.cache)
    assert tree != pristine and "TESTBED_PATCHED" not in (pristine / "init/Kconfig").read_text()
    assert kbuild.build_key(spec) != kbuild.build_key(BuildSpec("t", TARBALL))  # patches are in the key
    shutil.rmtree(tmp_path / "w")  # a 1.3 GB copy


def test_a_patch_that_does_not_apply_is_named(cfg, tmp_path):
    patch = tmp_path / "bad.patch"
    patch.write_text("--- a/Makefile\n+++ b/Makefile\n@@ -1,1 +1,1 @@\n-no such line\n+x\n")
    with pytest.raises(BuildError, match="bad.patch does not apply"):
        kbuild.configure(BuildSpec("t", TARBALL, patches=[patch]), cfg.cache, tmp_path / "w")


def test_missing_options_are_named_as_unknown_or_dropped(cfg, tmp_path, monkeypatch):
    fragments = tmp_path / "fragments"
    fragments.mkdir()
    (fragments / "x.config").write_text("CONFIG_TESTBED_NO_SUCH_OPTION=y\nCONFIG_IGB=y\n")  # IGB without PCI
    monkeypatch.setattr(kbuild, "FRAGMENTS", fragments)
    with pytest.raises(BuildError) as e:
        kbuild.configure(BuildSpec("t", TARBALL), cfg.cache, tmp_path / "w")
    assert "unknown to this tree: CONFIG_TESTBED_NO_SUCH_OPTION" in str(e.value)
    assert "dropped by Kconfig (unmet dependencies): CONFIG_IGB" in str(e.value)
