"""The agent on a serial channel of the guest's own: the virtio-serial port org.testbed.agent
where the kernel has the virtio console, else the second UART (ttyS1), as the kernel decides
(Kernel.virtio_console, harness/machine/qemu.py).  Nothing to add to the image, to QEMU's command
line or to the console's watch, a snapshot can serve it, and a person logs in on the console."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..agent import Agent
from ..provision.image import GuestAdditions
from . import Reach


class SerialTransport:
    name: ClassVar[str] = "serial"  # ClassVar: as the Transport protocol declares them
    restorable: ClassVar[bool] = True
    console_fatal: ClassVar[tuple[str, ...]] = ()
    console_signals: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def guest_additions() -> GuestAdditions:
        return GuestAdditions()

    def initrd(self, image: Path, run_dir: Path) -> Path:
        return image

    def qemu_options(self) -> list[str]:
        return []

    def kernel_args(self) -> str:
        return ""

    def open_agent(self, reach: Reach, deadline) -> Agent:
        return Agent(reach.serial, reach.agent_log)

    @staticmethod
    def check_login() -> None:
        pass

    def login(self, directory: Path, command: str | None = None) -> None:
        return None

    def close(self):
        pass


TRANSPORT = SerialTransport
