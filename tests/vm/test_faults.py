"""Guest and QEMU faults in the middle of a scenario: each fails that scenario quickly with a
one-line cause and the console log, leaves nothing behind, and the next scenario runs normally --
whether the agent is reached over the serial port or over SSH.
The faulty scenarios are registered only while these tests run (not at import: the catalogue
test collects every registered scenario)."""
import dataclasses
import os
import re
import signal
from pathlib import Path

import pytest

from harness.agent.protocol import Op
from harness.machine.rundir import leftovers
from harness.results import Verdict
from harness.run import runner
from harness.scenario import SCENARIOS, scenario
from harness.scenario.guest import Guest

pytestmark = pytest.mark.vm


def agent_crash(g: Guest):
    """the agent is killed"""
    g.agent.call(Op.RUN, cmd=f"kill -9 {g.agent_pid}", timeout=30)


def agent_hang(g: Guest):
    """the agent stops answering"""
    g.agent.call(Op.RUN, cmd=f"kill -STOP {g.agent_pid}", timeout=3)  # stopped before it can reply


def spin(g: Guest):
    """the guest stops making progress: a SCHED_FIFO busy loop owns its only CPU for good"""
    g.agent.call(Op.RUN, cmd="echo -1 > /proc/sys/kernel/sched_rt_runtime_us; "
                             "chrt -f 99 sh -c 'while :; do :; done' & sleep 1", timeout=3)


def panic(g: Guest):
    """the kernel panics"""
    g.agent.call(Op.RUN, cmd="echo c > /proc/sysrq-trigger", timeout=30)


def qemu_killed(g: Guest):
    """QEMU is killed"""
    os.kill(g.vm.qemu.pid, signal.SIGKILL)
    g.agent.call(Op.RUN, cmd="sleep 5", timeout=30)


FAULTS = {"fault-agent-crash": (agent_crash, r"guest failure at [\d.]+ s: testbed-init: agent exited with status 137"),
          "fault-agent-hang": (agent_hang, r"no answer from the guest agent to RUN within 3 s; last console line"),
          "fault-guest-spin": (spin, r"no answer from the guest agent to RUN within 3 s; last console line"),
          "fault-panic": (panic, None),  # by the kernel's version: the sysrq_crash fixture
          "fault-qemu-killed": (qemu_killed, r"QEMU exited with status -9 after [\d.]+ s")}


CHRT = Path("/usr/bin/chrt")  # util-linux's: busybox has no chrt


@pytest.fixture(scope="module")
def fault_cfg(cfg):
    """The configuration with chrt in the guest."""
    return dataclasses.replace(cfg, guest_binaries=(*cfg.guest_binaries, CHRT))


@pytest.fixture(scope="module", autouse=True)
def faulty_scenarios():
    for name, (func, _) in FAULTS.items():
        scenario(name, func.__doc__, source="-", needs_nic=False)(func)
    yield
    for name in FAULTS:
        SCENARIOS.pop(name, None)


@pytest.mark.parametrize("transport", ["serial", "ssh"])
@pytest.mark.parametrize("name", FAULTS)
def test_fault_fails_only_its_own_scenario_with_a_named_cause(fault_cfg, vm_kernel, tmp_path, name, transport,
                                                            sysrq_crash):
    cfg = fault_cfg
    kernel = vm_kernel
    cause = FAULTS[name][1] or sysrq_crash(runner.prepare(cfg, kernel, None).kernel.version)
    wrecked = runner.run(cfg, name, kernel, None, tmp_path / "wrecked", transport=transport)
    assert wrecked.verdict == Verdict.ERROR
    assert re.search(cause, wrecked.reason), wrecked.reason
    assert "\n" not in wrecked.reason and str(tmp_path / "wrecked" / "console.log") in wrecked.reason
    assert leftovers(os.getpid()) == []
    after = runner.run(cfg, "send-oob", kernel, None, tmp_path / "next", transport=transport)
    assert after.verdict == Verdict.PASSED, after.verdict_line()
    assert after.transport == transport
