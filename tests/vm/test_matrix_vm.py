"""`testbed matrix` for CI on real guests: two shards merged give the whole matrix; Ctrl-C keeps
what finished, marks the run incomplete, exits 130 and leaves no QEMU behind."""
import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.machine.rundir import leftovers

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["send-oob", "recv-trunc", "carrier-qmp"]


def harness_cmd(*args):
    return [sys.executable, "-m", "harness", *args]


def test_shards_merge_into_the_whole_matrix(vm_kernel, tmp_path):
    kernel = vm_kernel
    for i in (1, 2):
        r = subprocess.run(harness_cmd("matrix", "--kernels", kernel, "--nics", "igb", "--scenarios", *SCENARIOS,
                                       "--shard", f"{i}/2", "--results", str(tmp_path / f"shard{i}")),
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "PASSED" in r.stdout  # not a terminal: one plain line per cell
    r = subprocess.run(harness_cmd("report", "--merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
                                   "--out", str(tmp_path / "all")), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    suite = ET.parse(tmp_path / "all" / "junit.xml").getroot()
    assert sorted(c.get("name", "") for c in suite.iter("testcase")) == sorted(SCENARIOS)
    html = (tmp_path / "all" / "report.html").read_text()
    assert f'id="carrier-qmp-{kernel}-igb"' in html and "<svg" in html  # the link timeline
    tests = json.loads((tmp_path / "all" / "kcidb.json").read_text())["tests"]
    assert sorted(t["path"] for t in tests) == sorted(
        ["netlink.carrier-qmp.igb", "netlink.recv-trunc.nonic", "netlink.send-oob.nonic"])
    assert all(t["status"] == "PASS" for t in tests)
    run = json.loads((tmp_path / "all" / "run.json").read_text())
    assert run["complete"] and run["kernels"][kernel]["release"] and run["qemu"].startswith("QEMU")


def test_interrupted_matrix_keeps_what_finished_and_says_incomplete(vm_kernel, tmp_path):
    kernel = vm_kernel
    out = tmp_path / "run"
    proc = subprocess.Popen(harness_cmd("matrix", "--kernels", kernel, "--nics", "igb", "--scenarios",
                                        "send-oob", "carrier-admin-down", "--jobs", "1", "--time", "real",
                                        "--results", str(out)),
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    started = out / "cells" / f"carrier-admin-down-{kernel}-igb" / "agent.log"
    while time.monotonic() < deadline and not started.exists():
        time.sleep(0.2)
    time.sleep(2)  # inside carrier-admin-down's 3 s silences (on the real clock)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is False
    assert leftovers(proc.pid) == []
