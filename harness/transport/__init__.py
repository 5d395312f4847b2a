"""How the host reaches the guest's agent: over the second serial port (serial), or over SSH to
the guest's own sshd (ssh).  A transport says what it adds to the guest image, to QEMU's command
line and to what the console is watched for, whether a snapshot can serve it, how the agent is
reached once QEMU runs (given a Reach, not the VM), and how a person logs in."""
from __future__ import annotations

import importlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol
from collections.abc import Callable

if TYPE_CHECKING:
    from ..agent import Agent
    from ..provision.image import GuestAdditions
    from ..machine.monitor import Monitor
    from ..wait import Deadline

NAMES = ("serial", "ssh")


class TransportError(Exception):
    """The transport could not reach the guest's agent (for SSH: its sshd, or not the guest we made
    the keys for)."""


@dataclass
class Reach:
    """What a transport is given to reach the agent of a started guest."""
    serial: socket.socket  # the host end of the guest's second serial port
    monitor: Monitor     # to ask QEMU about what the transport added to its command line
    agent_log: Path
    # wait up to `seconds` for one of the transport's console_signals; false if it did not come,
    # the guest's failure raised if it broke meanwhile
    console_line: Callable[[str, float], bool]
    note: Callable[[str], None]  # a line for the trace: how the agent was reached


class Transport(Protocol):
    name: ClassVar[str]
    restorable: ClassVar[bool]  # can a guest reached this way start from a snapshot
    console_fatal: ClassVar[tuple[str, ...]]    # console lines that mean what it added to the guest broke
    console_signals: ClassVar[tuple[str, ...]]  # console lines open_agent waits for

    @staticmethod
    def guest_additions() -> GuestAdditions:
        """What the guest image needs for this transport (a UsageError if the host lacks it)."""

    def initrd(self, image: Path, run_dir: Path) -> Path:
        """The initramfs QEMU boots: the image, or the image with what this run adds to it."""

    def qemu_options(self) -> list[str]: ...

    def kernel_args(self) -> str: ...

    def open_agent(self, reach: Reach, deadline: Deadline) -> Agent:
        """The agent of the started guest, not yet known to be ready."""

    @staticmethod
    def check_login() -> None:
        """A UsageError if this host lacks what `login` needs."""

    def login(self, directory: Path, command: str | None = None) -> list[str] | None:
        """The command that logs a person in to the started guest (running `command` there, if
        given), its files in `directory`; None: the guest's console is the way in."""

    def close(self): ...


def by_name(name: str) -> type[Transport]:
    """The transport class called `name` (one of NAMES); SSH's is imported only when asked for."""
    module = importlib.import_module(f"{__name__}.{name}")
    return module.TRANSPORT
