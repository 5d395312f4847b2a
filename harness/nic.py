"""The NICs: QEMU device, the guest driver that binds it, and what the testbed can do with it.

The emulated ones are QEMU models: igb, e1000e and e1000 are upstream QEMU's; ixgbe (an Intel
82598AF) is the testbed's own, qemu-model/ixgbe.c, and runs only on the QEMU the testbed builds
with it (harness/provision/qemu.py).  A real card given to the guest by VFIO pass-through is named
`vfio:DOMAIN:BUS:DEV.FN` (e.g. `vfio:0000:03:00.0`, an 82598 for ixgbe, which no emulator models);
its driver comes from its PCI ids in sysfs, and it must be bound to vfio-pci on the host.  Its
link is a real cable: QMP set_link cannot flip it, and a guest holding it cannot be migrated to a
snapshot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError, did_you_mean

SYSFS = Path("/sys")
VFIO_PREFIX = "vfio:"


@dataclass(frozen=True)
class Nic:
    model: str         # the name users give: a QEMU model, or vfio:ADDRESS
    driver: str        # the guest kernel module / driver name
    description: str
    device: str = ""   # QEMU's -device, before ",id=..."; the model by default
    emulated: bool = True  # QEMU's model: a netdev behind it, set_link flips it, it migrates
    testbed_model: bool = False  # the testbed's own model: needs the QEMU the testbed builds

    @property
    def qemu_device(self) -> str:
        return self.device or self.model


NICS = {n.model: n for n in [
    Nic("igb", "igb", "Intel 82576 (PCIe, igb driver)"),
    Nic("e1000e", "e1000e", "Intel 82574L (PCIe, e1000e driver)"),
    Nic("e1000", "e1000", "Intel 82540EM (PCI, e1000 driver)"),
    Nic("ixgbe", "ixgbe", "Intel 82598AF (PCIe 10 GbE, ixgbe driver; the testbed's model)", testbed_model=True),
]}

# Intel devices a pass-through card may be, by PCI device id: the driver that binds it.
PASSTHROUGH_DRIVERS = {
    **dict.fromkeys(["10b6", "10c6", "10c7", "10c8", "10db", "10dd", "10e1", "10ec", "10f1", "10f4", "150b"],
                    ("ixgbe", "Intel 82598")),
    **dict.fromkeys(["10f7", "10f8", "10f9", "10fb", "10fc", "1507", "1514", "151c", "1517", "1529", "152a",
                     "154d", "1557", "1558"], ("ixgbe", "Intel 82599")),
    **dict.fromkeys(["10c9", "10e6", "10e7", "10e8", "1526", "150a", "1518", "150d"], ("igb", "Intel 82576")),
}
ADDRESS = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def vfio_address(name: str) -> str:
    """The PCI address of a vfio:... NIC name, checked for form only (a UsageError if malformed)."""
    address = name[len(VFIO_PREFIX):].lower()
    if not ADDRESS.fullmatch(address):
        raise UsageError(f"NIC {name}: not a PCI address; write vfio:DOMAIN:BUS:DEVICE.FUNCTION, "
                         "e.g. vfio:0000:03:00.0 (lspci -D shows them)")
    return address


def check_name(name: str) -> str:
    """`name` if it is an emulated model or a well-formed vfio:ADDRESS, else a UsageError."""
    if str(name).startswith(VFIO_PREFIX):
        vfio_address(name)
        return name
    if name not in NICS:
        raise UsageError(f"NIC {name}: unknown NIC model; choose one of: {', '.join(NICS)}, "
                         f"or vfio:DOMAIN:BUS:DEVICE.FUNCTION for a real card{did_you_mean(name, NICS)}")
    return name


def _passthrough(name: str) -> Nic:
    address = vfio_address(name)
    dev = SYSFS / "bus" / "pci" / "devices" / address
    if not dev.exists():
        raise UsageError(f"NIC {name}: no PCI device {address} on this host ({dev} does not exist); "
                         "lspci -D lists the host's devices")
    bound = (dev / "driver").resolve().name if (dev / "driver").exists() else None
    if bound != "vfio-pci":
        raise UsageError(f"NIC {name}: {address} is bound to {bound or 'no driver'}, not vfio-pci; bind it: "
                         f"echo vfio-pci > {dev}/driver_override; "
                         + (f"echo {address} > {dev}/driver/unbind; " if bound else "")
                         + f"echo {address} > {SYSFS}/bus/pci/drivers_probe")
    if not (dev / "iommu_group").exists():
        raise UsageError(f"NIC {name}: {address} has no IOMMU group; boot the host with the IOMMU on (intel_iommu=on)")
    vendor, device = ((dev / f).read_text().strip().lower().removeprefix("0x") for f in ("vendor", "device"))
    known = PASSTHROUGH_DRIVERS.get(device) if vendor == "8086" else None
    if known is None:
        raise UsageError(f"NIC {name}: {address} is PCI {vendor}:{device}, not a NIC the testbed knows "
                         "(Intel 82598/82599 for ixgbe, 82576 for igb)")
    driver, what = known
    return Nic(name, driver, f"{what} at {address} (VFIO pass-through, {driver} driver)",
               device=f"vfio-pci,host={address}", emulated=False)


def resolve(name: str) -> Nic:
    """The NIC `name` names; for a pass-through card, read from this host's sysfs."""
    check_name(name)
    return _passthrough(name) if name.startswith(VFIO_PREFIX) else NICS[name]
