"""The link of the NIC under test, flipped from the host (QMP set_link) at instants of the
guest's clock (see timeline)."""
from __future__ import annotations

from ..machine.monitor import Monitor
from ..nic import Nic
from ..trace import Trace, TraceEntry
from .checks import Checks
from .timeline import Action, Timeline


class NicLink:
    def __init__(self, monitor: Monitor, nic: Nic | None, nic_id: str, timeline: Timeline, trace: Trace,
                 checks: Checks):
        self.monitor, self.nic, self.nic_id = monitor, nic, nic_id
        self.timeline, self.trace, self.checks = timeline, trace, checks

    def set(self, steps: list[tuple[float, bool]]) -> list[Action]:
        """QMP set_link at each (offset, state), offsets in seconds of the guest's clock from
        now: the spacing holds on the guest's clock however slow the host is."""
        if self.nic and not self.nic.emulated:
            self.checks.skip(f"{self.nic.model} is a real card: its link is its cable, which QMP set_link cannot flip")

        entries: list[TraceEntry] = []  # placed on the guest's clock once it runs again

        def flip(i: int) -> str:
            up = steps[i][1]
            self.monitor.set_link(self.nic_id, up)
            what = f"QMP set_link {self.nic_id} {'on' if up else 'off'}"
            entries.append(self.trace.add("host", what, set_link=up))
            return what
        return self.timeline.at([offset for offset, _ in steps], flip,
                                placed=lambda reached_ns: self.trace.place(entries.pop(0), reached_ns))
