"""Every scenario on every kernel x NIC in testbed.yaml, each on a freshly booted guest."""
from pathlib import Path

import pytest

from harness import config, runner
from harness.scenario import SCENARIOS

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
CFG = config.load(ROOT / "testbed.yaml")
CASES = [pytest.param(s.name, k, nic, id=f"{s.name}-{k}-{nic or 'nonic'}")
         for s in SCENARIOS.values() for k in CFG.kernels for nic in (CFG.nics if s.needs_nic else [None])]


@pytest.mark.parametrize("name,kernel,nic", CASES)
def test_scenario(name, kernel, nic):
    result = runner.run(CFG, name, kernel, nic, CFG.results / "vm" / f"{name}-{kernel}-{nic or 'nonic'}")
    if result.verdict == runner.SKIPPED:
        pytest.skip(result.reason)
    trace = "\n".join(e.line() for e in result.trace)
    assert result.verdict == runner.PASSED, (
        f"{result.verdict_line()}\n{trace}\nartifacts: {result.artifacts}")
