import os
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def cfg():
    from harness import config
    return config.load(ROOT / "testbed.yaml")


def _harness_kernels() -> list[str]:
    """The kernels for tests of the harness rather than of a kernel: the minimal 3.14 and 6.1
    ones when configured (the eras; they boot fastest), else the default."""
    from harness import config
    cfg = config.load(ROOT / "testbed.yaml")
    return [k for k in ("linux-3.14", "min-6.1") if k in cfg.kernels] or [cfg.default_kernel]


@pytest.fixture(scope="session", params=_harness_kernels())
def vm_kernel(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def agent_binary(cfg):
    from harness.provision.image import build_agent
    return build_agent(cfg.cache)


_signal_received = None


def _interrupt(signum, frame):
    global _signal_received
    _signal_received = signum
    raise KeyboardInterrupt  # pytest's own way out: fixtures and every VM context manager unwind


def pytest_configure(config):
    # SIGTERM and SIGHUP end the run like Ctrl-C, so every VM shuts its QEMU down (pytest-xdist
    # workers get SIGHUP when the controlling pytest goes away).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    os.makedirs(ROOT / "results", exist_ok=True)


def pytest_sessionfinish(session, exitstatus):
    # an interrupted run exits as the shell reports a signal (130, 143, 129), not pytest's 2
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        session.exitstatus = 128 + (_signal_received or signal.SIGINT)


@pytest.fixture(scope="session")
def sysrq_crash():
    """The failure a VM reports for `echo c > /proc/sysrq-trigger`, by kernel version
    (drivers/tty/sysrq.c:sysrq_handle_crash): 3.14 sets panic_on_oops and writes through a NULL
    pointer, so the first fatal line is the BUG; 6.x calls panic() itself."""
    def first_line(version: tuple[int, int, int]) -> str:
        if version[:2] == (3, 14):
            return r"guest failure at [\d.]+ s: .*BUG: unable to handle kernel NULL pointer dereference"
        return r"kernel panic at [\d.]+ s: .*Kernel panic - not syncing: sysrq triggered crash"
    return first_line
