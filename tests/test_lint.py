"""The linter and the type checker as tests (as QEMU's python/tests does): ruff over harness/ and
tests/, mypy over both too, each configured in pyproject.toml and pinned in its `test` extra."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [("ruff", "check", "harness", "tests"), ("mypy",)], ids=["ruff", "mypy"])
def test_the_code_passes(command):
    r = run(*command)
    assert r.returncode == 0, f"python -m {' '.join(command)}:\n{r.stdout}{r.stderr}"
