"""How the host reaches the guest's agent: over the second serial port (serial), or over SSH to
the guest's own sshd (ssh).  A transport says what it adds to the guest image and to QEMU's
command line, whether a snapshot can serve it, and how the agent is reached once QEMU runs."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from ..agent import Agent
    from ..build.image import GuestAdditions
    from ..vm import VM
    from ..wait import Deadline

NAMES = ("serial", "ssh")


class TransportError(Exception):
    """The transport could not reach the guest's agent (for SSH: its sshd, or not the guest we made
    the keys for)."""


class Transport(Protocol):
    name: ClassVar[str]
    restorable: ClassVar[bool]  # can a guest reached this way start from a snapshot

    @staticmethod
    def guest_additions() -> "GuestAdditions":
        """What the guest image needs for this transport (a UsageError if the host lacks it)."""

    def initrd(self, image: Path, run_dir: Path) -> Path:
        """The initramfs QEMU boots: the image, or the image with what this run adds to it."""

    def qemu_options(self) -> list[str]: ...

    def kernel_args(self) -> str: ...

    def open_agent(self, vm: "VM", deadline: "Deadline") -> "Agent":
        """The agent of the started `vm`, not yet known to be ready."""

    def close(self): ...


def by_name(name: str) -> type[Transport]:
    """The transport class called `name` (one of NAMES); SSH's is imported only when asked for."""
    module = importlib.import_module(f"{__name__}.{name}")
    return module.TRANSPORT
