"""The emulated NICs: QEMU device model, the guest driver that binds it, and what it is."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Nic:
    model: str        # the QEMU -device name, also the name users give
    driver: str       # the guest kernel module / driver name
    description: str


NICS = {n.model: n for n in [
    Nic("igb", "igb", "Intel 82576 (PCIe, igb driver)"),
    Nic("e1000e", "e1000e", "Intel 82574L (PCIe, e1000e driver)"),
    Nic("e1000", "e1000", "Intel 82540EM (PCI, e1000 driver)"),
]}
