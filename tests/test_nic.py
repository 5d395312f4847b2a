"""NICs by name: the emulated models, and a real card by VFIO pass-through, checked against a
fake sysfs (no card is here): the QEMU command line, and one-line errors read from sysfs."""
import dataclasses

import pytest

from harness import nic, vm
from harness.errors import UsageError
from harness.machine.qemu import QemuSettings

ADDRESS = "0000:03:00.0"


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    monkeypatch.setattr(nic, "SYSFS", tmp_path)
    return tmp_path


def card(sysfs, device="10c6", driver="vfio-pci", iommu=True, vendor="0x8086"):
    """An 82598 (8086:10c6 by default) at ADDRESS, as sysfs shows it."""
    dev = sysfs / "bus/pci/devices" / ADDRESS
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(f"{vendor}\n")
    (dev / "device").write_text(f"0x{device}\n")
    if driver:
        (sysfs / "bus/pci/drivers" / driver).mkdir(parents=True)
        (dev / "driver").symlink_to(sysfs / "bus/pci/drivers" / driver)
    if iommu:
        (sysfs / "kernel/iommu_groups/14").mkdir(parents=True)
        (dev / "iommu_group").symlink_to(sysfs / "kernel/iommu_groups/14")


def command(device: nic.Nic, tmp_path) -> list[str]:
    fds = {"console": 3, "agent": 4, "qmp": 5, "brake": 6}
    return vm.qemu_command(QemuSettings(), tmp_path / "bzImage", tmp_path / "initrd", device, fds, tmp_path)


def nic_device(cmd: list[str]) -> str:
    """The -device that is the NIC (the pause button, pvpanic, is another)."""
    return next(arg for i, arg in enumerate(cmd) if cmd[i - 1] == "-device" and f"id={vm.NIC_ID}" in arg)


def test_an_82598_bound_to_vfio_pci_is_given_to_the_guest_for_ixgbe(sysfs, tmp_path):
    card(sysfs)
    n = nic.resolve(f"vfio:{ADDRESS}")
    assert (n.driver, n.emulated) == ("ixgbe", False) and "82598" in n.description
    cmd = command(n, tmp_path)
    assert nic_device(cmd) == f"vfio-pci,host={ADDRESS},id={vm.NIC_ID}"
    # a PCIe host device on q35, no emulated netdev
    assert "-netdev" not in cmd and cmd[cmd.index("-machine") + 1].startswith("q35")


def test_an_emulated_nic_has_its_netdev(tmp_path):
    cmd = command(nic.resolve("igb"), tmp_path)
    assert nic_device(cmd) == f"igb,id={vm.NIC_ID},netdev=net0" and "-netdev" in cmd


@pytest.mark.parametrize("setup,message", [
    (lambda s: None, f"no PCI device {ADDRESS} on this host"),
    (lambda s: card(s, driver="ixgbe"), f"{ADDRESS} is bound to ixgbe, not vfio-pci; bind it: echo vfio-pci > "),
    (lambda s: card(s, driver=None), "is bound to no driver, not vfio-pci"),
    (lambda s: card(s, iommu=False), "has no IOMMU group"),
    (lambda s: card(s, device="1234"), "is PCI 8086:1234, not a NIC the testbed knows"),
    (lambda s: card(s, vendor="0x10ec"), "is PCI 10ec:10c6"),
])
def test_a_card_that_cannot_be_passed_through_is_one_line_naming_why(sysfs, setup, message):
    setup(sysfs)
    with pytest.raises(UsageError) as e:
        nic.resolve(f"vfio:{ADDRESS}")
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["vfio:03:00.0", "vfio:0000:03:00", "vfio:", "vfio:zzzz:03:00.0"])
def test_a_malformed_address_is_refused_before_sysfs_is_read(sysfs, name):
    with pytest.raises(UsageError, match="not a PCI address; write vfio:DOMAIN:BUS:DEVICE.FUNCTION"):
        nic.check_name(name)


def test_a_vfio_nic_in_testbed_yaml_is_accepted_by_form_and_checked_when_used(tmp_path, sysfs):
    from harness import config
    (tmp_path / "testbed.yaml").write_text(f"kernels: {{k: {{image: {tmp_path / 'bz'}}}}}\n"
                                           f"nics: [igb, 'vfio:{ADDRESS}']\n")
    (tmp_path / "bz").write_bytes(b"")
    cfg = config.load(tmp_path / "testbed.yaml")  # no card needed to load it
    assert cfg.nics == ("igb", f"vfio:{ADDRESS}") and cfg.nic(f"vfio:{ADDRESS}") == f"vfio:{ADDRESS}"
    with pytest.raises(UsageError, match="no PCI device"):
        nic.resolve(cfg.nics[1])
    (tmp_path / "testbed.yaml").write_text(f"kernels: {{k: {{image: {tmp_path / 'bz'}}}}}\nnics: ['vfio:3:0.0']\n")
    with pytest.raises(UsageError, match=r"nics\[0\]: 'vfio:3:0.0' not a PCI address"):
        config.load(tmp_path / "testbed.yaml")


def test_the_testbeds_82598_runs_on_the_qemu_the_testbed_builds(tmp_path):
    n = nic.resolve("ixgbe")
    assert (n.driver, n.emulated, n.testbed_model) == ("ixgbe", True, True)
    assert not any(nic.resolve(m).testbed_model for m in ("igb", "e1000e", "e1000"))
    settings = QemuSettings(binary="/cache/qemu/x/qemu-system-x86_64", firmware=(tmp_path, tmp_path / "roms"),
                            nic_properties="msix=off")
    cmd = vm.qemu_command(settings, tmp_path / "bzImage", tmp_path / "initrd", n,
                          {"console": 3, "agent": 4, "qmp": 5, "brake": 6}, tmp_path)
    assert nic_device(cmd) == f"ixgbe,id={vm.NIC_ID},netdev=net0,msix=off"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "-L"] == [str(tmp_path), str(tmp_path / "roms")]


def test_a_cell_whose_qemu_is_not_built_skips_with_the_reason(tmp_path, monkeypatch):
    from harness import config
    from harness.provision import qemu as qemu_build
    from harness.cells import runner
    from harness.scenario import Skip
    (tmp_path / "bz").write_bytes(b"")
    (tmp_path / "testbed.yaml").write_text(f"kernels: {{k: {{image: {tmp_path / 'bz'}}}}}\nnics: [igb, ixgbe]\n"
                                           f"cache: {tmp_path / 'cache'}\n")
    cfg = config.load(tmp_path / "testbed.yaml")
    assert runner.qemu_for(cfg, "igb") == (cfg.qemu_binary, ())  # Debian's, untouched
    monkeypatch.setattr(qemu_build, "unavailable", lambda cache: "the compile failed: ixgbe.c:12: error: x")
    with pytest.raises(Skip, match="ixgbe needs the QEMU the testbed builds.*ixgbe.c:12: error: x"):
        runner.qemu_for(cfg, "ixgbe")
    built = tmp_path / "qemu-system-x86_64"
    monkeypatch.setattr(qemu_build, "find", lambda cache: built)
    assert runner.qemu_for(cfg, "ixgbe") == (str(built), qemu_build.FIRMWARE)
    testbed_for_all = dataclasses.replace(cfg, qemu_binary=qemu_build.TESTBED)
    assert runner.qemu_for(testbed_for_all, "igb") == (str(built), qemu_build.FIRMWARE)


def test_a_driver_scenario_is_scheduled_on_its_nic_only(tmp_path):
    from harness import config
    from harness.cells import runner
    (tmp_path / "bz").write_bytes(b"")
    (tmp_path / "testbed.yaml").write_text(f"kernels: {{k: {{image: {tmp_path / 'bz'}}}}}\nnics: [igb, ixgbe]\n")
    cells = runner.cases(config.load(tmp_path / "testbed.yaml"))
    assert ("ixgbe-lsc", "k", "ixgbe") in cells and ("ixgbe-lsc", "k", "igb") not in cells
    assert {("carrier-qmp", "k", "igb"), ("carrier-qmp", "k", "ixgbe")} <= set(cells)
