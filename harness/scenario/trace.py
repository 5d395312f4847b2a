"""A scenario's trace: every call, result, check and note, on one clock, in the order it happened."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field


@dataclass
class TraceEntry:
    t: float        # seconds since the scenario started, host clock (guest times mapped onto it)
    actor: str      # guest | host | check | note
    text: str
    data: dict = field(default_factory=dict)

    def line(self) -> str:
        return f"{self.t:+8.3f}  {self.actor:<5}  {self.text}"


class Trace:
    def __init__(self):
        self.t0 = time.monotonic()
        self.entries: list[TraceEntry] = []
        self.muted = 0  # inside a helper that traces one summary line instead of its steps

    def start_clock(self):
        self.t0 = time.monotonic()

    def add(self, actor: str, text: str, at: float | None = None, **data) -> TraceEntry:
        entry = TraceEntry((at if at is not None else time.monotonic()) - self.t0, actor, text, data)
        if not self.muted or not data.get("ok", True):
            self.entries.append(entry)
        return entry

    @contextlib.contextmanager
    def summarised(self):
        self.muted += 1
        try:
            yield
        finally:
            self.muted -= 1
