"""Every scenario on every kernel x NIC in testbed.yaml, each on a fresh guest (restored from the
kernel x NIC's snapshot of a freshly booted one), on the guest clock testbed.yaml chooses
(virtual under TCG); and a sample on the real clock, whose verdicts must be the same."""
import dataclasses
from pathlib import Path

import pytest

from harness import config
from harness.results import Verdict, cell_name
from harness.cells import runner

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
CFG = config.load(ROOT / "testbed.yaml")
CASES = [pytest.param(*case, id=cell_name(*case)) for case in runner.cases(CFG)]
# Those that lean on timers the most: QEMU's autonegotiation, linkwatch's batching, guest-clock
# spacing, SO_SNDTIMEO, silence windows, the dump's pacing.
REAL_SAMPLE = ("carrier-qmp", "flap-storm", "carrier-admin-down", "unicast-full-block", "dump-pace")
# ... and the 82598 model's LSC on the real clock too: its link follows set_link on either
IXGBE_REAL_SAMPLE = ("carrier-qmp", "ixgbe-lsc", "ixgbe-lsc-storm")
REAL = dataclasses.replace(CFG, time="real")
REAL_CASES = [pytest.param(*case, id=cell_name(*case)) for case in runner.cases(CFG, nics=[CFG.nics[0]])
              if case[0] in REAL_SAMPLE] + \
             [pytest.param(*case, id=cell_name(*case)) for case in runner.cases(CFG, nics=["ixgbe"])
              if case[0] in IXGBE_REAL_SAMPLE and "ixgbe" in CFG.nics]


def check(result):
    if result.verdict == Verdict.SKIPPED:
        pytest.skip(result.reason)
    trace = "\n".join(e.line() for e in result.trace)
    assert result.verdict == Verdict.PASSED, (
        f"{result.verdict_line()}\n{trace}\nartifacts: {result.artifacts}")


@pytest.mark.parametrize("name,kernel,nic", CASES)
def test_scenario(name, kernel, nic):
    check(runner.run_cell(CFG, name, kernel, nic, CFG.results / "vm" / cell_name(name, kernel, nic)))


@pytest.mark.parametrize("name,kernel,nic", REAL_CASES)
def test_scenario_on_the_real_clock(name, kernel, nic):
    result = runner.run_cell(REAL, name, kernel, nic, CFG.results / "vm-real" / cell_name(name, kernel, nic))
    assert result.time == "real"
    check(result)
