"""`testbed run --bisect` exits as `git bisect run` wants (0 good, 1 bad, 125 untestable, 128 stop),
checked without a bisection: scenarios that pass, fail, skip and break, and a tree that does not build."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.provision.kbuild import LocalTree

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = '''from harness.scenario import Guest, scenario


@scenario("b-good", "passes", source="-", needs_nic=False)
def good(g: Guest) -> None:  # a user's file with type hints: Guest is importable at run time
    g.expect("the kernel answers", g.read_file("/proc/version").ret > 0, True)


@scenario("b-bad", "fails", source="-", needs_nic=False)
def bad(g):
    g.expect("a file that is not there", g.read_file("/proc/not-there").ret > 0, True)


@scenario("b-skip", "skips", source="-", needs_nic=False)
def skip(g):
    g.skip("not on this kernel")


@scenario("b-broken", "breaks", source="-", needs_nic=False)
def broken(g):
    raise RuntimeError("a bug in the scenario")
'''


def bisect_run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness", "run", *args, "--bisect"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


@pytest.mark.parametrize("name,status,plain", [("b-good", 0, 0), ("b-bad", 1, 1), ("b-skip", 125, 0),
                                               ("b-broken", 125, 3)])
def test_verdicts_become_git_bisect_statuses(tmp_path, vm_kernel, name, status, plain):
    (tmp_path / "outcomes.py").write_text(OUTCOMES)
    r = bisect_run(f"{tmp_path / 'outcomes.py'}::{name}", "--kernel", vm_kernel)
    assert r.returncode == status, r.stdout + r.stderr
    without = subprocess.run([sys.executable, "-m", "harness", "run", f"{tmp_path / 'outcomes.py'}::{name}",
                              "--kernel", vm_kernel], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert without.returncode == plain


def test_a_tree_testbed_yaml_builds_is_its_cached_kernel(cfg):
    [(name, spec)] = [(n, s) for n, s in cfg.kernels.items() if s.build and isinstance(s.build.source, LocalTree)][:1]
    r = bisect_run("send-oob", "--kernel-source", str(spec.build.source.path))
    assert r.returncode == 0 and f"PASSED: send-oob on {name}" in r.stdout, r.stdout + r.stderr
    assert "already built" in r.stderr


def test_a_commit_that_does_not_build_cannot_be_tested_and_a_wrong_command_stops_the_bisection(tmp_path):
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 0\n%:\n\t@echo does not build; exit 1\n")
    (tree / "Kconfig").write_text("")
    env = {**os.environ, "TESTBED_CACHE": str(tmp_path / "cache")}
    r = bisect_run("send-oob", "--kernel-source", str(tree), env=env)
    assert r.returncode == 125 and "failed" in r.stderr, r.stderr
    r = bisect_run("no-such-scenario", "--kernel-source", str(tree), env=env)
    assert r.returncode == 128 and "no such scenario" in r.stderr
