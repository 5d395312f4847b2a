"""A scenario's trace: every call, result, check and note, on the guest's clock, in the order it
happened."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from collections.abc import Callable

from .show import show_attrs


@dataclass
class TraceEntry:
    # seconds since the scenario started on the guest's CLOCK_MONOTONIC: a guest call when it
    # returned, a host action where the guest stopped for it, a check or note at the latest
    # guest time the host had heard of
    t: float
    actor: str      # guest | host | check | note
    text: str
    data: dict = field(default_factory=dict)

    def line(self, verbose: bool = False) -> str:
        """One line; `verbose` adds every attribute of the message it shows, on the next."""
        attrs = self.data.get("message", {}).get("attrs") if verbose else None
        return f"{self.t:+8.3f}  {self.actor:<5}  {self.text}" + (f"\n    {show_attrs(attrs)}" if attrs else "")


class Trace:
    def __init__(self):
        self.t0_ns = 0
        self.now_ns: Callable[[], int] = lambda: self.t0_ns  # the latest guest time known
        self.entries: list[TraceEntry] = []
        self.muted = 0  # inside a helper that traces one summary line instead of its steps

    def start_clock(self, t0_ns: int, now_ns: Callable[[], int]):
        """Times count from guest time `t0_ns`; entries without a time of their own go at now_ns()."""
        self.t0_ns, self.now_ns = t0_ns, now_ns

    def add(self, actor: str, text: str, at_ns: int | None = None, **data) -> TraceEntry:
        entry = TraceEntry(0.0, actor, text, data)
        self.place(entry, at_ns if at_ns is not None else self.now_ns())
        if not self.muted or not data.get("ok", True):
            self.entries.append(entry)
        return entry

    def place(self, entry: TraceEntry, at_ns: int):
        entry.t = (at_ns - self.t0_ns) / 1e9

    @contextlib.contextmanager
    def summarised(self):
        self.muted += 1
        try:
            yield
        finally:
            self.muted -= 1
