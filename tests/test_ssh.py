"""The SSH transport's host side without a guest: per-run keys, what the guest is handed, where
the forward is bound, and how QEMU's answer about it is read."""
import re
from typing import cast

import paramiko
import pytest

from harness.agent import Agent, AgentError
from harness.agent.protocol import Op
from harness.machine.monitor import Monitor
from harness.machine.qemu import CMDLINE, QemuSettings, qemu_command
from harness.nic import NICS
from harness.transport import ssh


def test_every_run_gets_its_own_host_and_client_keys(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = ssh.Keys.generate(tmp_path / "a"), ssh.Keys.generate(tmp_path / "b")
    assert a.fingerprint() != b.fingerprint() and a.client.get_base64() != b.client.get_base64()
    assert a.fingerprint().startswith("SHA256:") and a.host_key.get_name() == "ssh-ed25519"
    assert oct(a.host_key_file.stat().st_mode & 0o777) == "0o600"


def test_the_guest_is_handed_the_host_key_and_the_client_key_only(tmp_path):
    keys = ssh.Keys.generate(tmp_path)
    archive = keys.initramfs()
    names = re.findall(rb"070701[0-9A-F]{104}([^\0]+)\0", archive)  # each newc header, then its name
    assert names == [b"etc/dropbear", b"etc/dropbear/host_key", b"root/.ssh", b"root/.ssh/authorized_keys",
                     b"etc/testbed-ssh", b"TRAILER!!!"]
    assert keys.host_key_file.read_bytes() in archive
    # the client's public half
    assert f"{keys.client.get_name()} {keys.client.get_base64()} testbed-harness\n".encode() in archive


def test_the_forward_listens_on_loopback_only_and_the_network_is_restricted(tmp_path):
    transport = ssh.SshTransport()
    fds = {"console": 3, "agent": 4, "qmp": 5, "brake": 6}
    cmd = qemu_command(QemuSettings(), tmp_path / "k", tmp_path / "i", NICS["igb"], fds, tmp_path,
                       f"{CMDLINE} {transport.kernel_args()}", transport.qemu_options())
    netdevs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-netdev"]
    assert netdevs == ["user,id=net0,restrict=on",
                       f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:0-{ssh.GUEST_ADDR}:22"]
    assert ssh.KERNEL_ARGS in cmd[cmd.index("-append") + 1]


class FakeMonitor:
    def __init__(self, table):
        self.table = table

    def command(self, name, **args):
        assert (name, args) == ("human-monitor-command", {"command-line": "info usernet"})
        return self.table


def test_the_port_qemu_picked_is_read_from_info_usernet():
    table = ("Hub -1 (mgmt):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n"
             "  TCP[HOST_FORWARD]  13       127.0.0.1 35343       10.0.2.15    22     0     0\r\n")
    assert ssh.forwarded_port(cast(Monitor, FakeMonitor(table))) == 35343
    with pytest.raises(ssh.SSHError, match="QEMU reports no forward to 10.0.2.15:22"):
        ssh.forwarded_port(cast(Monitor, FakeMonitor(table.replace("127.0.0.1", "0.0.0.0"))))


class DeadChannel:
    """What paramiko's Channel does once QEMU (and so the guest's end of the transport) is gone:
    its send fails from inside the packetizer with EOFError, not with a socket's OSError."""

    def recv(self, size):
        return b""

    def sendall(self, data):
        raise EOFError()

    def shutdown(self, how):
        raise paramiko.SSHException("SSH session not active")

    def close(self):
        raise EOFError()  # it sends CHANNEL_CLOSE


def test_a_dead_transport_fails_like_a_closed_socket():
    """Seen in CI: QEMU killed mid-scenario gave 'EOFError: ' as the run's cause, from the
    shutdown's close of the channel, instead of 'QEMU exited with status -9'."""
    channel = ssh.AgentChannel(cast(paramiko.Channel, DeadChannel()))
    with pytest.raises(ConnectionResetError, match=r"SSH transport closed \(EOFError"):
        channel.sendall(b"x")
    agent = Agent(channel)
    with pytest.raises(AgentError, match="agent channel closed"):
        agent.call(Op.PING, timeout=1)
    agent.close()  # shutdown and close fail inside paramiko; closing still succeeds
