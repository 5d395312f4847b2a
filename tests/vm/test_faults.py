"""Guest and QEMU faults in the middle of a scenario: each fails that scenario quickly with a
one-line cause and the console log, leaves nothing behind, and the next scenario runs normally.
The faulty scenarios are registered here, for this test process only."""
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from harness import runner
from harness.protocol import Op
from harness.scenario import SCENARIOS, Guest, scenario

pytestmark = pytest.mark.vm


@scenario("fault-agent-crash", "the agent is killed", source="-", needs_nic=False)
def agent_crash(g: Guest):
    g.agent.call(Op.RUN, cmd=f"kill -9 {g.agent_pid}", timeout=30)


@scenario("fault-agent-hang", "the agent stops answering", source="-", needs_nic=False)
def agent_hang(g: Guest):
    g.agent.call(Op.RUN, cmd=f"kill -STOP {g.agent_pid}", timeout=3)  # stopped before it can reply


@scenario("fault-panic", "the kernel panics", source="-", needs_nic=False)
def panic(g: Guest):
    g.agent.call(Op.RUN, cmd="echo c > /proc/sysrq-trigger", timeout=30)


@scenario("fault-qemu-killed", "QEMU is killed", source="-", needs_nic=False)
def qemu_killed(g: Guest):
    os.kill(g.vm.proc.pid, signal.SIGKILL)
    g.agent.call(Op.RUN, cmd="sleep 5", timeout=30)


FAULTS = [("fault-agent-crash", r"guest failure at [\d.]+ s: testbed-init: agent exited with status 137"),
          ("fault-agent-hang", r"no answer from the guest agent to RUN within 3 s; last console line"),
          ("fault-panic", r"kernel panic at [\d.]+ s: .*Kernel panic - not syncing"),
          ("fault-qemu-killed", r"QEMU exited with status -9 after [\d.]+ s")]


@pytest.fixture(scope="module")
def kernel(cfg):
    return "min-6.1" if "min-6.1" in cfg.kernels else cfg.default_kernel


@pytest.mark.parametrize("name,cause", FAULTS)
def test_fault_fails_only_its_own_scenario_with_a_named_cause(cfg, kernel, tmp_path, name, cause):
    wrecked = runner.run(cfg, name, kernel, None, tmp_path / "wrecked")
    assert wrecked.verdict == runner.ERROR
    assert re.search(cause, wrecked.reason), wrecked.reason
    assert "\n" not in wrecked.reason and str(tmp_path / "wrecked" / "console.log") in wrecked.reason
    assert not list(Path("/tmp").glob(f"testbed-run-{os.getpid()}-*"))
    assert subprocess.run(["pgrep", "-f", f"testbed-run-{os.getpid()}-"], capture_output=True).stdout == b""
    after = runner.run(cfg, "send-oob", kernel, None, tmp_path / "next")
    assert after.verdict == runner.PASSED, after.verdict_line()


def teardown_module():
    for name, _ in FAULTS:
        SCENARIOS.pop(name, None)
