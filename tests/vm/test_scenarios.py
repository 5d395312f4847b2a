"""Every scenario on every kernel x NIC in testbed.yaml, each on a fresh guest (restored from the
kernel x NIC's snapshot of a freshly booted one)."""
from pathlib import Path

import pytest

from harness import config
from harness.results import Verdict, cell_name
from harness.run import runner

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
CFG = config.load(ROOT / "testbed.yaml")
CASES = [pytest.param(*case, id=cell_name(*case)) for case in runner.cases(CFG)]


@pytest.mark.parametrize("name,kernel,nic", CASES)
def test_scenario(name, kernel, nic):
    result = runner.run(CFG, name, kernel, nic, CFG.results / "vm" / cell_name(name, kernel, nic))
    if result.verdict == Verdict.SKIPPED:
        pytest.skip(result.reason)
    trace = "\n".join(e.line() for e in result.trace)
    assert result.verdict == Verdict.PASSED, (
        f"{result.verdict_line()}\n{trace}\nartifacts: {result.artifacts}")
