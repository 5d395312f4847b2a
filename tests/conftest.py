import os
import signal
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cfg():
    from harness import config
    return config.load(ROOT / "testbed.yaml")


@pytest.fixture(scope="session")
def vm_kernel(cfg) -> str:
    """The kernel for tests of the harness rather than of a kernel: the minimal one when
    configured (it boots fastest)."""
    return "min-6.1" if "min-6.1" in cfg.kernels else cfg.default_kernel


@pytest.fixture(scope="session")
def agent_binary(cfg):
    from harness.image import build_agent
    return build_agent(cfg.cache)


def pytest_configure(config):
    # SIGTERM and SIGHUP unwind like Ctrl-C, so every VM context manager shuts its QEMU down
    # (pytest-xdist workers get SIGHUP when the controlling pytest goes away).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    os.makedirs(ROOT / "results", exist_ok=True)
