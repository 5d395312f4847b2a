"""The agent over SSH to a guest that runs its own sshd (dropbear in the initramfs): scenarios
run unchanged, the host key is the run's own and pinned, and only the run's client key logs in."""
import dataclasses
import re

import paramiko
import pytest

from harness.agent import Agent
from harness.results import Verdict
from harness.cells import runner
from harness.transport import ssh
from harness.vm import VM

pytestmark = pytest.mark.vm


# e1000 under test: the management NIC has the same driver, so eth0 must be found by its MAC
@pytest.mark.parametrize("name,nic", [("carrier-qmp", "igb"), ("real-clients", "e1000"), ("ixgbe-lsc", "ixgbe"),
                                      ("autobind", None)])
def test_a_scenario_runs_unchanged_over_ssh(cfg, vm_kernel, tmp_path, name, nic):
    result = runner.run_cell(cfg, name, vm_kernel, nic, tmp_path, transport="ssh")
    assert result.verdict == Verdict.PASSED, result.verdict_line()
    assert result.transport == "ssh" and not result.from_snapshot
    notes = [e.text for e in result.trace if e.actor == "note"]
    assert any(re.match(r"agent over SSH: root@127\.0\.0\.1:\d+, host key SHA256:\S+ made for this run", n)
               for n in notes), notes
    console = (tmp_path / "console.log").read_text()
    assert "Pubkey auth succeeded for 'root'" in console and "testbed-init: starting agent" not in console


def test_only_the_runs_host_key_and_client_key_are_accepted(cfg, vm_kernel, tmp_path):
    with VM(runner.prepare(cfg, vm_kernel, None, "ssh"), tmp_path / "vm") as vm:
        assert isinstance(vm.transport, ssh.SshTransport) and vm.transport.keys is not None
        keys = vm.transport.keys
        port = ssh.forwarded_port(vm.monitor)
        stranger = ssh.Keys.generate(tmp_path)
        with pytest.raises(ssh.SSHError, match=rf"presented host key {re.escape(keys.fingerprint())}, "
                                               rf"not this run's {re.escape(stranger.fingerprint())}: refused"):
            ssh.connect(port, stranger, timeout=30)
        with pytest.raises(ssh.SSHError, match="AuthenticationException"):
            ssh.connect(port, dataclasses.replace(keys, client=paramiko.ECDSAKey.generate()), timeout=30)
        with paramiko.Transport(("127.0.0.1", port)) as transport:  # no passwords (dropbear -s)
            transport.start_client(timeout=30)
            with pytest.raises(paramiko.BadAuthenticationType) as refused:
                transport.auth_password("root", "")
            assert refused.value.allowed_types == ["publickey"]
        # the run's keys log in again, and the session gets an agent of its own
        client = ssh.connect(port, keys, timeout=30)
        try:
            second = Agent(ssh.agent_channel(client, timeout=30))
            assert second.wait_ready(30)["PID"] != vm.hello["PID"]
            second.close()
        finally:
            client.close()
        key_file = keys.host_key_file
        assert key_file.parent == vm.run_dir
    assert not key_file.exists()  # the guest's private key went with the run dir
