"""The agent over SSH: how the harness reaches a guest that runs its own sshd, as a guest with a
full root filesystem would.

The guest gets a second, management NIC on a user network of its own (`restrict=on`: it reaches
nothing); the only way in is QEMU's forward from 127.0.0.1:<a port the host picks> to the
guest's port 22.  For every run the harness makes the guest's host key (dropbearkey, the same
dropbear the guest runs) and a client key (paramiko), hands both to the guest in a cpio archive
appended to its initramfs, and pins the host key: paramiko's RejectPolicy with the run's key as
the only known host, so a guest that cannot prove it holds that key is refused.  The agent then
runs as the session's command, `/agent -`, speaking the same protocol on the session's stdin and
stdout as it does on the serial port: scenarios cannot tell the difference.
"""
from __future__ import annotations

import base64
import contextlib
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import paramiko

from ..agent import Agent, AgentError
from ..provision.cpio import Cpio
from ..provision.image import GuestAdditions
from ..errors import UsageError
from ..machine import VMError
from ..machine.monitor import Monitor
from ..nic import NICS
from ..wait import Deadline
from . import Reach, TransportError

MGMT_ID = "mgmt"
MGMT_MODEL = "e1000"  # a driver every kernel the testbed runs has (kernel-config/net.config)
MGMT_MAC = "52:54:00:ee:00:01"  # how the guest's init tells the management NIC from the one under test
GUEST_ADDR = "10.0.2.15"          # the user network's first guest address, where the forward points
GATEWAY_ADDR = "10.0.2.2"         # the user network's own address, which answers the guest's ARP
DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")
# The agent's stderr goes to the console, as on the serial port, and its end is announced there
# the way the init announces it: the console watcher turns that line into the run's failure.
AGENT_COMMAND = '/agent - 2>/dev/console; echo "testbed-init: agent exited with status $?" >/dev/console'

# What the guest's init says on the console about its sshd (guest/init).
SSHD_READY = "testbed-init: sshd ready"
SSHD_BROKEN = ("testbed-init: sshd exited", "testbed-init: no management NIC")

logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # failures reach the run as SSHError lines


class SSHError(TransportError):
    """The guest's sshd could not be reached, or was not the guest we made the keys for."""


# What paramiko raises when the other end has gone: besides its own SSHException and the
# socket's OSError, a write on a transport whose socket has closed raises EOFError.
GONE = (paramiko.SSHException, EOFError)


# dropbear waits for the kernel's random pool, which a TCG guest with nothing to seed it fills
# only seconds after boot (1.9 s here); an emulated RDRAND the kernel trusts fills it at once.
CPU = "qemu64,+rdrand"
# nohz=off: the guest ticks periodically on either clock (the real clock's own nohz=off repeats
# it, harmlessly).  Over user networking it waits on the host's packets, and on the virtual clock
# a tickless idle guest's clock leaps from timer to timer meanwhile: dropbear's 300 s to
# authenticate then passed while paramiko logged in.
KERNEL_ARGS = "random.trust_cpu=on nohz=off"


def qemu_options() -> list[str]:
    """QEMU options for a guest reached over SSH: the CPU, the management NIC and its forward
    (port 0: QEMU picks a free one)."""
    return ["-cpu", CPU, "-netdev", f"user,id={MGMT_ID},restrict=on,hostfwd=tcp:127.0.0.1:0-{GUEST_ADDR}:22",
            "-device", f"{MGMT_MODEL},id={MGMT_ID}0,netdev={MGMT_ID},mac={MGMT_MAC}"]


@dataclass
class Keys:
    """One run's keys: the guest's host key (private, dropbear's format, in the run directory),
    its public half as paramiko pins it, and the harness's client key."""
    host_key_file: Path
    host_key: paramiko.PKey
    client: paramiko.PKey

    @classmethod
    def generate(cls, directory: Path) -> Keys:
        path = directory / "ssh_host_ed25519_key"
        try:
            out = subprocess.run([str(DROPBEARKEY), "-t", "ed25519", "-f", str(path)],
                                 capture_output=True, text=True, timeout=30)
        except OSError as e:
            raise SSHError(f"cannot make the guest's host key: {DROPBEARKEY}: {e.strerror} "
                           "(dropbear-bin; run `make setup`)") from None
        public = [line.split() for line in out.stdout.splitlines() if line.startswith("ssh-ed25519 ")]
        if out.returncode or not public:
            raise SSHError(f"dropbearkey failed: {(out.stderr or out.stdout).strip()}")
        host_key = paramiko.Ed25519Key(data=base64.b64decode(public[0][1]))
        return cls(path, host_key, paramiko.ECDSAKey.generate())

    def fingerprint(self) -> str:
        return self.host_key.fingerprint  # "SHA256:...", as ssh-keygen -l prints it

    def initramfs(self) -> bytes:
        """A cpio archive for the end of the guest's initramfs (the kernel unpacks archives one
        after another): the host key, root's authorized_keys, and how to find the management NIC.
        Its presence is what makes the guest's init serve SSH instead of the serial port."""
        cpio = Cpio()
        cpio.dir("etc/dropbear", 0o700)
        cpio.file("etc/dropbear/host_key", self.host_key_file.read_bytes(), 0o600)
        cpio.dir("root/.ssh", 0o700)
        cpio.file("root/.ssh/authorized_keys",
                  f"{self.client.get_name()} {self.client.get_base64()} testbed-harness\n".encode(), 0o600)
        cpio.file("etc/testbed-ssh",
                  f"MGMT_MAC={MGMT_MAC}\nMGMT_ADDR={GUEST_ADDR}/24\nMGMT_GATEWAY={GATEWAY_ADDR}\n".encode())
        return cpio.finish()


def openssh_command(keys: Keys, port: int, directory: Path) -> list[str]:
    """OpenSSH's ssh logging in as the harness does, for a person at `testbed shell`: the client
    key and the pinned host key are written to `directory` (the run dir: 0700, removed with the
    guest) only then, and StrictHostKeyChecking refuses any other host key."""
    key, known = directory / "ssh_client_key", directory / "known_hosts"
    keys.client.write_private_key_file(str(key))  # mode 0600
    known.write_text(f"[127.0.0.1]:{port} {keys.host_key.get_name()} {keys.host_key.get_base64()}\n")
    return ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
            "-o", "StrictHostKeyChecking=yes", "-p", str(port), "root@127.0.0.1"]


def forwarded_port(monitor: Monitor) -> int:
    """The host port QEMU bound for the forward to the guest's port 22 (it picked a free one)."""
    table = monitor.command("human-monitor-command", **{"command-line": "info usernet"})
    found = re.search(rf"TCP\[HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+{re.escape(GUEST_ADDR)}\s+22\b", table)
    if not found:
        raise SSHError(f"QEMU reports no forward to {GUEST_ADDR}:22: {table.strip()!r}")
    return int(found.group(1))


def connect(port: int, keys: Keys, timeout: float) -> paramiko.SSHClient:
    """Log in as root with the run's client key, accepting only the run's host key."""
    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{port}", keys.host_key.get_name(), keys.host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect("127.0.0.1", port, username="root", pkey=keys.client, allow_agent=False,
                       look_for_keys=False, timeout=timeout, banner_timeout=timeout, auth_timeout=timeout)
    except paramiko.BadHostKeyException as e:
        client.close()
        raise SSHError(f"127.0.0.1:{port} presented host key {e.key.fingerprint}, not this run's "
                       f"{keys.fingerprint()}: refused") from None
    except (*GONE, OSError) as e:
        client.close()
        raise SSHError(f"ssh root@127.0.0.1:{port}: {type(e).__name__}: {e}") from None
    return client


@contextlib.contextmanager
def _as_socket_error():
    try:
        yield
    except GONE as e:
        raise ConnectionResetError(f"SSH transport closed ({type(e).__name__}: {e})") from None


class AgentChannel:
    """A session running the agent, read and written by the Agent like the serial port's socket.

    paramiko's Channel is nearly a socket, but sending on a transport whose peer has gone (QEMU
    killed, say) raises EOFError or SSHException from deep in its packetizer rather than OSError,
    and so do shutdown and close, which send too.  Here sending fails as a socket's would and
    close does not fail."""

    def __init__(self, channel: paramiko.Channel):
        self._channel = channel

    def recv(self, size: int) -> bytes:
        return self._channel.recv(size)  # b"" once the session or the transport is gone

    def sendall(self, data: bytes):
        with _as_socket_error():
            self._channel.sendall(data)

    def shutdown(self, how: int):
        with _as_socket_error():  # it sends an EOF message
            self._channel.shutdown(how)

    def close(self):
        try:
            self._channel.close()  # it too sends a message, which fails once the peer is gone
        except GONE:
            pass  # as a socket's close does not fail: the session is gone either way


def agent_channel(client: paramiko.SSHClient, timeout: float) -> AgentChannel:
    """A session running the agent."""
    try:
        transport = client.get_transport()
        if transport is None:  # connect() returned: it has one, unless it closed since
            raise SSHError("the SSH connection closed before the agent's session opened")
        channel = transport.open_session(timeout=timeout)
        channel.exec_command(AGENT_COMMAND)
    except (*GONE, OSError) as e:
        raise SSHError(f"cannot start the agent over SSH: {e}") from None
    return AgentChannel(channel)


# In the guest: its sshd, the management NIC's driver, and a root account for dropbear to log in.
SSHD_FILES = {"etc/passwd": (b"root:x:0:0:root:/root:/bin/sh\n", 0o644),
              "etc/group": (b"root:x:0:\n", 0o644),
              "etc/shells": (b"/bin/sh\n", 0o644)}


class SshTransport:
    """This run's keys in the initramfs, a management NIC with the forward, and the agent in an
    SSH session.  Never from a snapshot: it would carry the keys of the boot it was taken from."""
    name: ClassVar[str] = "ssh"  # ClassVar: as the Transport protocol declares them
    restorable: ClassVar[bool] = False
    console_fatal: ClassVar[tuple[str, ...]] = SSHD_BROKEN
    console_signals: ClassVar[tuple[str, ...]] = (SSHD_READY,)

    @staticmethod
    def guest_additions() -> GuestAdditions:
        if not DROPBEAR.exists():
            raise UsageError(f"{DROPBEAR} is missing: a guest reached over SSH runs dropbear (run `make setup`)")
        return GuestAdditions(SSHD_FILES, (DROPBEAR,), (NICS[MGMT_MODEL].driver,))

    def __init__(self):
        self.keys: Keys | None = None
        self.client: paramiko.SSHClient | None = None
        self.port: int | None = None  # the host port forwarded to the guest's sshd

    def initrd(self, image: Path, run_dir: Path) -> Path:
        """The guest image with this run's SSH keys appended (in the run dir, which is 0700)."""
        try:
            self.keys = Keys.generate(run_dir)
        except SSHError as e:
            raise VMError(str(e)) from None
        initrd = run_dir / "initrd.cpio"
        with open(image, "rb") as src, open(initrd, "wb") as out:
            shutil.copyfileobj(src, out)
            out.write(self.keys.initramfs())
        return initrd

    def _keys(self) -> Keys:
        if self.keys is None:
            raise TransportError("the run's SSH keys are made with its initramfs (initrd), not yet made")
        return self.keys

    def _port(self) -> int:
        if self.port is None:
            raise TransportError("no SSH port yet: the guest's sshd is found when the agent is reached (open_agent)")
        return self.port

    def qemu_options(self) -> list[str]:
        return qemu_options()

    def kernel_args(self) -> str:
        return KERNEL_ARGS

    def open_agent(self, reach: Reach, deadline: Deadline) -> Agent:
        """Wait for the guest's sshd, log in with the run's keys and start the agent in the session."""
        if not reach.console_line(SSHD_READY, deadline.left()):
            raise AgentError(f"no {SSHD_READY!r} on the console within {deadline.seconds:g} s")
        self.port = forwarded_port(reach.monitor)
        self.client = connect(self.port, self._keys(), timeout=max(deadline.left(), 1))
        channel = agent_channel(self.client, timeout=max(deadline.left(), 1))
        reach.note(f"agent over SSH: root@127.0.0.1:{self.port}, host key {self._keys().fingerprint()} "
                   "made for this run and pinned")
        return Agent(channel, reach.agent_log)

    @staticmethod
    def check_login() -> None:
        if not shutil.which("ssh"):
            raise UsageError("testbed shell --transport ssh: no `ssh` on PATH; install openssh-client "
                             "(`make setup` does)")

    def login(self, directory: Path, command: str | None = None) -> list[str]:
        """The person's own ssh, as they would reach a remote test machine (see openssh_command)."""
        login = openssh_command(self._keys(), self._port(), directory)
        return [*login, "-t", command] if command else login

    def close(self):
        if self.client:
            self.client.close()


TRANSPORT = SshTransport
