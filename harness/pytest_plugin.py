"""The pytest plugin (entry point pytest11 "testbed"): scenarios as tests in a repository of
your own, beside its testbed.yaml.

    def test_mtu_notifies(testbed_guest):
        g = testbed_guest
        mon = g.socket(groups=RTMGRP_LINK)
        g.sh("ip link add d0 type dummy && ip link set d0 mtu 1400")
        g.expect("IFLA_MTU", mon.recv_link("d0").attrs["IFLA_MTU"], 1400)

`testbed_guest` is a Guest restored from the kernel x NIC's snapshot; a test that takes it runs
once per kernel x NIC of testbed.yaml (found as the CLI finds it, or --testbed-config), narrowed
by --testbed-kernels / --testbed-nics; one marked `testbed_no_nic` runs once per kernel without
a NIC.  A failure's report carries the decoded trace and the console's tail; the JUnit XML the
kernel, its version and the NIC as properties; `g.skip(reason)` is a pytest skip with the reason.
Each test has its own guest, so pytest-xdist (-n N) runs them N at a time.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator

import pytest

from . import config as config_mod
from .errors import UsageError
from .machine.qemu import TIME_MODES
from .cells import runner
from .scenario import Guest, Skip
from .trace import Trace

CONFIG = pytest.StashKey[config_mod.Config]()
SEEN = pytest.StashKey[tuple]()  # (trace, console log) of the test's guest, for its report
CONSOLE_TAIL = 30  # lines of the console a failure's report shows


def pytest_addoption(parser):
    group = parser.getgroup("testbed", "netlink testbed (QEMU guests)")
    group.addoption("--testbed-config", help="testbed.yaml (default: $TESTBED_CONFIG, else the nearest one "
                                             "from the current directory up)")
    group.addoption("--testbed-kernels", help="comma-separated kernels of testbed.yaml (default: all)")
    group.addoption("--testbed-nics", help="comma-separated NIC models (default: testbed.yaml's nics)")
    group.addoption("--testbed-time", choices=TIME_MODES, help="the guests' clock (default: testbed.yaml's)")


def pytest_configure(config):
    config.addinivalue_line("markers", "testbed_no_nic: a testbed_guest test that needs no NIC (once per kernel)")


def _config(config) -> config_mod.Config:
    if CONFIG not in config.stash:
        try:
            cfg = config_mod.load(config_mod.find(config.getoption("testbed_config"), config.invocation_params.dir))
        except UsageError as e:
            raise pytest.UsageError(f"testbed: {e}") from None
        if config.getoption("testbed_time"):
            cfg = dataclasses.replace(cfg, time=config.getoption("testbed_time"))
        config.stash[CONFIG] = cfg
    return config.stash[CONFIG]


def _listed(config, option: str) -> list[str] | None:
    value = config.getoption(option)
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def pytest_generate_tests(metafunc):
    if "testbed_guest" not in metafunc.fixturenames:
        return
    cfg = _config(metafunc.config)
    try:
        kernels = [cfg.kernel(k).name for k in _listed(metafunc.config, "testbed_kernels") or cfg.kernels]
        nics = ([None] if metafunc.definition.get_closest_marker("testbed_no_nic")
                else [cfg.nic(n) for n in _listed(metafunc.config, "testbed_nics") or cfg.nics])
    except UsageError as e:
        raise pytest.UsageError(f"testbed: {e}") from None
    cells = [(k, n) for k in kernels for n in nics]
    metafunc.parametrize("testbed_cell", cells, ids=[f"{k}-{n or 'nonic'}" for k, n in cells])


@pytest.fixture
def testbed_guest(request, testbed_cell) -> Iterator[Guest]:
    cfg = _config(request.config)
    kernel_name, nic = testbed_cell
    try:
        target = runner.prepare(cfg, kernel_name, nic)
    except Skip as e:  # the NIC's QEMU is not built here
        pytest.skip(str(e))
    for name, value in (("kernel", kernel_name), ("version", target.kernel.version_str),
                        ("release", target.kernel.release), ("nic", nic or "none"), ("time", target.settings.time)):
        request.node.user_properties.append((name, value))
    artifacts = cfg.results / "pytest" / re.sub(r"[^\w.-]+", "_", request.node.nodeid)
    with runner.ready_vm(cfg, target, artifacts) as vm:
        trace = Trace()
        request.node.stash[SEEN] = (trace, vm.console_log)
        try:
            runner.begin(vm, trace)
        except Skip as e:
            pytest.skip(str(e))
        yield Guest(vm, trace)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except Skip as e:  # the scenario does not apply to this kernel or NIC
        pytest.skip(str(e))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and SEEN in item.stash:
        trace, console_log = item.stash[SEEN]
        report.sections.append(("testbed trace (guest clock)", "\n".join(e.line() for e in trace.entries)))
        try:
            tail = console_log.read_text(errors="replace").splitlines()[-CONSOLE_TAIL:]
        except OSError as e:
            tail = [f"(no console log: {e.strerror})"]
        report.sections.append((f"guest console, last {CONSOLE_TAIL} lines ({console_log})", "\n".join(tail)))
    return report
