"""Writing scenarios: a scenario is a Python function that drives the guest and the monitor
through a `Guest` and states what the kernel must have done.

    @scenario("carrier-qmp", "set_link off/on -> one RTM_NEWLINK each",
              source="net/core/link_watch.c:linkwatch_do_dev")
    def carrier_qmp(g: Guest):
        mon = g.socket(groups=RTMGRP_LINK)
        g.sh("ip link set eth0 up")
        mon.wait_link("eth0", lambda m: m.has("LOWER_UP"))
        g.set_link(False)
        down = mon.recv_link("eth0")
        g.expect("operstate after set_link off", down.operstate, "DOWN")

Every call is written to the trace with names, not numbers; `expect` failing ends the scenario
with verdict 'failed' (the kernel did not do what was expected); `g.skip(reason)` marks it as not
applicable to this kernel or NIC.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .guest import Guest


class Skip(Exception):
    """The scenario does not apply to this kernel or NIC; the message says why."""


class Failed(AssertionError):
    """The kernel did not behave as the scenario expects."""


@dataclass
class ScenarioInfo:
    name: str
    description: str
    source: str            # the kernel source the scenario is about (file:function, ...)
    needs_nic: bool
    func: Callable[["Guest"], None]


SCENARIOS: dict[str, ScenarioInfo] = {}


def scenario(name: str, description: str, source: str, needs_nic: bool = True):
    def register(func):
        SCENARIOS[name] = ScenarioInfo(name, description, source, needs_nic, func)
        return func
    return register


CATALOGUE = ("buffers", "clients", "dump", "eras", "link", "overrun", "sendmsg", "unicast")


def load_catalogue() -> dict[str, ScenarioInfo]:
    """Import the built-in scenarios (each registers itself); the registry afterwards."""
    for module in CATALOGUE:
        importlib.import_module(f"harness.scenarios.{module}")
    return SCENARIOS
