"""Host actions on the guest's clock.

The guest stops itself at an instant of its own clock: the agent's AT op sleeps until it and
writes QEMU's pvpanic port, which QEMU (-action panic=pause) turns into a pause right there.
The host acts on the stopped machine (QMP set_link), and the machine runs again (the brake's
cont) only when the host next waits on the guest.  So each action sits at one exact instant of the guest's
timeline, a schedule of actions keeps its guest-clock spacing however slow the host is, and the
guest's clock does not run on while the host decides what to do next (a virtual-time guest
would fast-forward through its timers meanwhile).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from collections.abc import Callable

from ..agent import Agent, AgentError, Paused, Reply
from ..agent.protocol import Op
from ..machine.brake import Brake

STOP_SLACK = 10.0  # host seconds allowed beyond a scheduled offset for the stop to come


@dataclass
class Action:
    what: str
    scheduled_ns: int | None = None  # the guest time it was asked for (never later than reached_ns)
    reached_ns: int | None = None  # the guest's CLOCK_MONOTONIC when the machine stopped for it
    resumed_ns: int | None = None  # ... when the agent next read its clock after the pause
    # Under TCG the guest's clock stands still while the machine is stopped (with or without
    # icount), so the action happened at reached_ns; under KVM the TSC may run on, and the
    # action is only known to lie between the two.
    exact: bool = False


def _packed(offsets: list[float]) -> bytes:
    return struct.pack(f"<{len(offsets)}q", *(round(s * 1e9) for s in offsets))


class Timeline:
    def __init__(self, agent: Agent, brake: Brake, failure: Callable[[], Exception | None], clock_stops: bool):
        """`failure` names what broke the guest, if anything has; `clock_stops`: whether the
        guest's clock stands still while the machine is stopped (TCG)."""
        self.agent, self.brake, self.failure, self.clock_stops = agent, brake, failure, clock_stops
        self.actions: list[Action] = []

    def at(self, offsets: list[float], act: Callable[[int], str],
           placed: Callable[[int], None] = lambda reached_ns: None) -> list[Action]:
        """Stop the machine at each offset (seconds of the guest's clock from now) and run
        act(i) on it, which says what it did; the machine stays stopped after the last one until
        the host next waits on the guest.  `placed` hears each action's instant on the guest's
        clock (its reached_ns) once that is known, when the machine runs again."""
        self.brake.engage()
        if self.agent.paused:  # an earlier at()'s pause: its AT must answer before another can press
            self.agent.resume()
        # then the request: it is in the UART when a guest stopped by lock-step runs again
        pending = self.agent.start(Op.AT, schedule=_packed(offsets), pause=1, background=1)
        self.agent.resume()
        def abandon():
            # an AT that answers before its last pause could not press the button (no ioperm)
            return self.failure() or (pending.done() and AgentError(f"the agent's AT op did not stop the machine: "
                                                                    f"{pending.wait().outcome()}"))
        actions = []
        for i, offset in enumerate(offsets):
            if i:
                self.brake.release()
            self.brake.wait_stopped(offset + STOP_SLACK, abandon)
            actions.append(Action(act(i)))
        self.actions += actions
        self.agent.pause(Paused(self.brake.release, pending,
                                lambda reply: self._place(reply, offsets, actions, placed)))
        return actions

    def _place(self, reply: Reply, offsets: list[float], actions: list[Action], placed: Callable[[int], None]):
        """The actions on the guest's timeline, from the reply of the AT request that stopped the
        machine for them (it comes once the machine runs again)."""
        if reply.ret != len(actions):
            raise AgentError(f"the agent's AT op failed: {reply.outcome()}")
        times = struct.unpack(f"<{2 * len(actions)}q", reply["TIMES"])
        for i, action in enumerate(actions):
            action.scheduled_ns = reply["T_START_NS"] + round(offsets[i] * 1e9)
            action.reached_ns, action.resumed_ns, action.exact = times[2 * i], times[2 * i + 1], self.clock_stops
            placed(times[2 * i])

    def sleep(self, seconds: float) -> int:
        """Sleep `seconds` of the guest's clock; returns when (guest ns) the sleep ended.  In a
        child of the agent, so streams and background requests are served meanwhile."""
        reply = self.agent.call(Op.AT, schedule=_packed([seconds]), background=1, timeout=seconds + STOP_SLACK)
        return struct.unpack("<2q", reply["TIMES"])[0]

    def last_action_before(self, t_ns: int) -> Action | None:
        placed = [a for a in self.actions if a.reached_ns is not None and a.reached_ns <= t_ns]
        return placed[-1] if placed else None

    def since_action(self, r: Reply) -> str:
        """'  (+4 ms after QMP set_link nic0 off)': how long after the last host action the guest
        got what `r` reports, on the guest's clock.  Not said when it cannot be stated truly:
        the datagram was queued before the agent asked for it (when it arrived is not known), or
        the action's instant is not known exactly."""
        if "T_NS" not in r.attrs or r.get("QUEUED"):
            return ""
        action = self.last_action_before(r["T_NS"])
        if action is None or not action.exact:
            return ""
        return f"  (+{(r['T_NS'] - action.reached_ns) / 1e6:.0f} ms after {action.what})"
