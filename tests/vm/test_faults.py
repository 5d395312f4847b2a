"""Guest and QEMU faults in the middle of a scenario: each fails that scenario quickly with a
one-line cause and the console log, leaves nothing behind, and the next scenario runs normally --
whether the agent is reached over the serial port or over SSH.
The faulty scenarios are in faults.py, a scenario file only these tests' configuration names."""
import dataclasses
import os
import re
from pathlib import Path

import pytest

from harness.machine.rundir import leftovers
from harness.results import Verdict
from harness.cells import runner

pytestmark = pytest.mark.vm


FAULTS = {"fault-agent-crash": r"guest failure at [\d.]+ s: testbed-init: agent exited with status 137",
          "fault-agent-hang": r"no answer from the guest agent to RUN within 3 s; last console line",
          "fault-guest-spin": r"no answer from the guest agent to RUN within 3 s; last console line",
          "fault-panic": None,  # by the kernel's version: the sysrq_crash fixture
          "fault-qemu-killed": r"QEMU exited with status -9 after [\d.]+ s"}


CHRT = Path("/usr/bin/chrt")  # util-linux's: busybox has no chrt


@pytest.fixture(scope="module")
def fault_cfg(cfg):
    """The configuration with chrt in the guest and the faulty scenarios of faults.py."""
    return dataclasses.replace(cfg, guest_binaries=(*cfg.guest_binaries, CHRT),
                               scenarios=(*cfg.scenarios, Path(__file__).with_name("faults.py")))


@pytest.mark.parametrize("transport", ["serial", "ssh"])
@pytest.mark.parametrize("name", FAULTS)
def test_fault_fails_only_its_own_scenario_with_a_named_cause(fault_cfg, vm_kernel, tmp_path, name, transport,
                                                            sysrq_crash):
    cfg = fault_cfg
    kernel = vm_kernel
    cause = FAULTS[name] or sysrq_crash(runner.prepare(cfg, kernel, None).kernel.version)
    wrecked = runner.run_cell(cfg, name, kernel, None, tmp_path / "wrecked", transport=transport)
    assert wrecked.verdict == Verdict.ERROR
    assert re.search(cause, wrecked.reason), wrecked.reason
    assert "\n" not in wrecked.reason and str(tmp_path / "wrecked" / "console.log") in wrecked.reason
    assert leftovers(os.getpid()) == []
    after = runner.run_cell(cfg, "send-oob", kernel, None, tmp_path / "next", transport=transport)
    assert after.verdict == Verdict.PASSED, after.verdict_line()
    assert after.transport == transport
