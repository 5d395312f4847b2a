"""The QEMU built with the 82598 model: Debian's tarball by version and pinned sha256, the build
glue on a small tree of QEMU's files, the model copied only when it changed, the cache key, the
failure record and what unavailable() says; and the real binary, when it has been built."""
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from harness import cli
from harness.provision import qemu
from harness.provision.qemu import QemuBuildError, Source

ROOT = Path(__file__).resolve().parent.parent
INSTALLED = "1:10.0.2+ds-2+deb13u1~bpo12+1"  # bookworm-backports' qemu-system-x86 as dpkg names it


@pytest.fixture
def model(tmp_path, monkeypatch):
    """A model source of the test's own, and a fixed installed QEMU version."""
    path = tmp_path / "ixgbe.c"
    path.write_text("/* model, first version */\n")
    monkeypatch.setattr(qemu, "MODEL", path)
    monkeypatch.setattr(qemu, "debian_version", lambda: INSTALLED)
    return path


def test_debians_orig_tarball_by_the_installed_version_and_its_pinned_sha256():
    src = Source(INSTALLED)
    assert (src.orig, src.upstream, src.tarball) == ("10.0.2+ds", "10.0.2", "qemu_10.0.2+ds.orig.tar.xz")
    assert src.sha256 == "0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1"
    assert Source("10.0.2+dfsg-1").upstream == "10.0.2"  # no epoch
    with pytest.raises(QemuBuildError) as e:
        _ = Source("1:10.1.0+ds-1").sha256
    assert e.value.step == "source" and "\n" not in str(e.value)
    assert 'add "10.1.0"' in str(e.value) and "SHA256 in harness/provision/qemu.py" in str(e.value)


def fake_qemu_tree(where: Path) -> Path:
    """The three files the glue edits, with the lines it goes beside as QEMU 10.0.2 has them."""
    (where / "hw/net").mkdir(parents=True)
    (where / "hw/net/meson.build").write_text(
        "system_ss.add(when: 'CONFIG_IGB_PCI_EXPRESS', if_true: files('net_tx_pkt.c', 'net_rx_pkt.c'))\n"
        "system_ss.add(when: 'CONFIG_IGB_PCI_EXPRESS', if_true: files('igb.c', 'igbvf.c', 'igb_core.c'))\n"
        "system_ss.add(when: 'CONFIG_RTL8139_PCI', if_true: files('rtl8139.c'))\n")
    (where / "hw/net/Kconfig").write_text(
        "config IGB_PCI_EXPRESS\n    bool\n    default y if PCI_DEVICES || PCIE_DEVICES\n"
        "    depends on PCI_EXPRESS && MSI_NONBROKEN\n\nconfig RTL8139_PCI\n    bool\n")
    (where / "meson.build").write_text(
        "fs = import('fs')\nforeach target : edk2_targets\n  if target in target_dirs\n"
        "    bzip2 = find_program('bzip2', required: get_option('install_blobs'))\n"
        "    unpack_edk2_blobs = bzip2.found()\n    break\n  endif\nendforeach\n")
    return where


def linked_copy(pristine: Path, tree: Path) -> Path:
    for path in pristine.rglob("*"):
        if path.is_file():
            (tree / path.relative_to(pristine)).parent.mkdir(parents=True, exist_ok=True)
            os.link(path, tree / path.relative_to(pristine))
    return tree


def test_the_glue_is_applied_once_to_the_private_copy_only(tmp_path):
    pristine = fake_qemu_tree(tmp_path / "pristine")
    before = {p: p.read_text() for p in pristine.rglob("*") if p.is_file()}
    tree = linked_copy(pristine, tmp_path / "tree")
    assert sorted(qemu.apply_glue(pristine, tree)) == ["hw/net/Kconfig", "hw/net/meson.build", "meson.build"]
    meson = (tree / "hw/net/meson.build").read_text()
    assert ("files('igb.c', 'igbvf.c', 'igb_core.c'))\nsystem_ss.add(when: 'CONFIG_IXGBE_PCI_EXPRESS', "
            "if_true: files('net_tx_pkt.c', 'net_rx_pkt.c', 'ixgbe.c'))\nsystem_ss.add(when: 'CONFIG_RTL8139") in meson
    assert ("MSI_NONBROKEN\n\nconfig IXGBE_PCI_EXPRESS\n    bool\n    default y if PCI_DEVICES || PCIE_DEVICES\n"
            "    depends on PCI_EXPRESS && MSI_NONBROKEN\n\nconfig RTL8139_PCI") in \
        (tree / "hw/net/Kconfig").read_text()
    assert "unpack_edk2_blobs = bzip2.found() and fs.exists('pc-bios/edk2-x86_64-code.fd.bz2')\n" in \
        (tree / "meson.build").read_text()
    assert {p: p.read_text() for p in before} == before  # the hard links were replaced, not written through
    mtimes = {p: p.stat().st_mtime_ns for p in tree.rglob("*")}
    assert qemu.apply_glue(pristine, tree) == []  # a second time: nothing to do, and no mtime moves
    assert {p: p.stat().st_mtime_ns for p in tree.rglob("*")} == mtimes
    assert meson.count("IXGBE") == 1


def test_glue_whose_anchor_is_gone_is_named(tmp_path):
    pristine = fake_qemu_tree(tmp_path / "pristine")
    (pristine / "hw/net/Kconfig").write_text("config RTL8139_PCI\n    bool\n")
    with pytest.raises(QemuBuildError) as e:
        qemu.apply_glue(pristine, linked_copy(pristine, tmp_path / "tree"))
    assert e.value.step == "glue" and "hw/net/Kconfig has no 'config IGB_PCI_EXPRESS'" in str(e.value)


def test_the_glue_fits_the_real_tree_when_it_is_unpacked(cfg, tmp_path):
    trees = sorted((cfg.cache / "qemu" / "src").glob("*/qemu-*/configure"))
    if not trees:
        pytest.skip(f"no QEMU tree unpacked in {cfg.cache / 'qemu' / 'src'} (`testbed qemu build` unpacks it)")
    pristine = trees[-1].parent
    tree = tmp_path / "tree"
    for edit in qemu.GLUE:
        (tree / edit.path).parent.mkdir(parents=True, exist_ok=True)
    assert len(qemu.apply_glue(pristine, tree)) == 3


def test_the_model_is_copied_only_when_its_content_changed(model, tmp_path):
    tree = tmp_path / "tree"
    (tree / "hw/net").mkdir(parents=True)
    assert qemu.place_model(tree)
    placed = tree / "hw/net/ixgbe.c"
    mtime = placed.stat().st_mtime_ns
    os.utime(model)  # touched, same content: ninja must not rebuild it
    assert not qemu.place_model(tree) and placed.stat().st_mtime_ns == mtime
    model.write_text("/* model, second version */\n")
    assert qemu.place_model(tree) and placed.read_text() == model.read_text()


def test_the_binary_is_keyed_by_the_model_and_the_build_dir_is_not(model, tmp_path):
    src = Source(INSTALLED)
    first, work = qemu.output_dir(tmp_path, src), qemu.configure_key(src)
    model.write_text("/* changed */\n")
    assert qemu.output_dir(tmp_path, src) != first and qemu.configure_key(src) == work
    assert qemu.output_dir(tmp_path, src).parent == first.parent and first.name.startswith("10.0.2-")


def test_a_failed_step_is_recorded_and_unavailable_says_it_for_that_model_only(model, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert qemu.find(cache) is None and qemu.unavailable(cache) == qemu.NOT_BUILT
    monkeypatch.setattr(qemu, "SHA256", {})
    with pytest.raises(QemuBuildError) as e:
        qemu.build(cache, say=lambda s: None)
    record = json.loads((cache / "qemu" / "failed.json").read_text())
    assert record["step"] == "source" and record["model"] == qemu.model_hash() and record["qemu"] == INSTALLED
    assert qemu.find(cache) is None
    assert qemu.unavailable(cache) == str(e.value)
    assert str(e.value).startswith("QEMU 10.0.2 with the ixgbe model: the source step failed: no sha256 is pinned")
    model.write_text("/* another model: the failure was not its */\n")
    assert qemu.unavailable(cache) == qemu.NOT_BUILT


def test_a_download_that_fails_is_the_download_step(model, tmp_path, monkeypatch):
    # the test's cache is empty, so the tarball is fetched, from a mirror that is not there
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        monkeypatch.setattr(qemu, "DEBIAN_POOL", f"http://127.0.0.1:{s.getsockname()[1]}/")
    monkeypatch.setattr(qemu, "check_dependencies", lambda version=None: None)
    with pytest.raises(QemuBuildError) as e:
        qemu.build(tmp_path / "cache", say=lambda s: None)
    assert e.value.step == "download" and "unreachable" in str(e.value) and "\n" not in str(e.value)


def test_missing_build_dependencies_are_named_by_their_debian_packages(monkeypatch):
    monkeypatch.setattr(qemu, "PROGRAMS", {"ninja": "ninja-build", "testbed-no-such-program": "no-such-package"})
    monkeypatch.setattr(qemu, "PKG_CONFIG_MODULES", {"glib-2.0": "libglib2.0-dev",
                                                     "testbed-no-such-module": "libno-such-dev"})
    with pytest.raises(QemuBuildError) as e:
        qemu.check_dependencies("10.0.2")
    assert e.value.step == "dependencies"
    assert ("missing no-such-package (testbed-no-such-program), libno-such-dev (testbed-no-such-module.pc)"
            in str(e.value))


def test_the_cli_exits_3_on_a_failed_build_and_status_repeats_the_reason(model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TESTBED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(qemu, "SHA256", {})
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}  # main() sets its own
    try:
        assert cli.main(["--config", str(ROOT / "testbed.yaml"), "qemu", "build"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the source step failed" in err
        assert cli.main(["--config", str(ROOT / "testbed.yaml"), "qemu", "status"]) == 3
        assert capsys.readouterr().err == f"testbed: qemu status: {qemu.unavailable(tmp_path / 'cache')}\n"
        assert cli.main(["--config", str(ROOT / "testbed.yaml"), "qemu", "build", "--jobs", "0"]) == 2
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)


def test_the_built_binary_runs_with_debians_firmware_and_has_the_model_and_igb(cfg):
    binary = qemu.find(cfg.cache)
    if binary is None:
        pytest.skip(f"no QEMU with the model: {qemu.unavailable(cfg.cache)}")
    listed = qemu.devices(binary)
    assert {"ixgbe", "igb", "e1000e", "e1000", "pvpanic", "virtio-serial-pci"} <= set(listed)
    assert json.loads((binary.parent / "meta.json").read_text())["model"] == qemu.model_hash()


def test_a_model_that_does_not_compile_is_the_compile_step_with_its_first_error(cfg, tmp_path, monkeypatch):
    """For real, in the cache's configured build tree (a changed model recompiles one file): the
    error names the step, the compiler's first error line and the log, on one line."""
    if qemu.find(cfg.cache) is None:
        pytest.skip(f"no configured QEMU build here: {qemu.unavailable(cfg.cache)}")
    broken = tmp_path / "ixgbe.c"
    broken.write_text(qemu.MODEL.read_text() + "\nstatic int testbed_broken(void) { return undeclared_thing; }\n")
    monkeypatch.setattr(qemu, "MODEL", broken)
    with pytest.raises(QemuBuildError) as e:
        qemu.build(cfg.cache, say=lambda s: None)
    assert e.value.step == "compile" and "\n" not in str(e.value)
    assert "undeclared_thing" in str(e.value) and "build.log" in str(e.value)
    assert qemu.unavailable(cfg.cache) == str(e.value)  # what a cell needing this model would skip with
