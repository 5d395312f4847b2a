"""The agent on the guest's second serial port (ttyS1): nothing to add to the image or to QEMU's
command line, and a snapshot can serve it."""
from __future__ import annotations

from pathlib import Path

from ..agent import Agent
from ..build.image import GuestAdditions


class SerialTransport:
    name, restorable = "serial", True

    @staticmethod
    def guest_additions() -> GuestAdditions:
        return GuestAdditions()

    def initrd(self, image: Path, run_dir: Path) -> Path:
        return image

    def qemu_options(self) -> list[str]:
        return []

    def kernel_args(self) -> str:
        return ""

    def open_agent(self, vm, deadline) -> Agent:
        return Agent(vm.agent_socket, vm.artifacts / "agent.log")

    def close(self):
        pass


TRANSPORT = SerialTransport
