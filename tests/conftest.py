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
def agent_binary(cfg):
    from harness.image import build_agent
    return build_agent(cfg.cache)


def pytest_configure(config):
    # SIGTERM unwinds like Ctrl-C, so every VM context manager shuts its QEMU down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.makedirs(ROOT / "results", exist_ok=True)
