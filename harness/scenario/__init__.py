"""Writing scenarios: a scenario is a Python function that drives the guest and the monitor
through a `Guest` and states what the kernel must have done.  It can live in any file: the
built-in catalogue (harness/builtin/), a file or directory named in testbed.yaml's
`scenarios:`, by `--scenarios-from`, or as `testbed run path/to/file.py::name`.

    from harness.scenario import scenario
    from harness.netlink import RTMGRP_LINK

    @scenario("carrier-qmp", "set_link off/on -> one RTM_NEWLINK each",
              source="net/core/link_watch.c:linkwatch_do_dev")
    def carrier_qmp(g):
        mon = g.socket(groups=RTMGRP_LINK)
        g.sh("ip link set eth0 up")
        mon.wait_link("eth0", lambda m: m.has("LOWER_UP"))
        g.set_link(False)
        down = mon.recv_link("eth0")
        g.expect("operstate after set_link off", down.operstate, "DOWN")
        g.expect("MTU", down.attrs["IFLA_MTU"], 1500)

Every call is written to the trace with names, not numbers; `expect` failing ends the scenario
with verdict 'failed' (the kernel did not do what was expected); `g.skip(reason)` marks it as not
applicable to this kernel or NIC.
"""
from .catalogue import BUILTIN, ScenarioInfo, load_catalogue, scenario, scenarios_in
from .guest import Guest
from .outcome import Failed, Skip

__all__ = ["BUILTIN", "Failed", "Guest", "ScenarioInfo", "Skip", "load_catalogue", "scenario", "scenarios_in"]
