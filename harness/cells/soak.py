"""`make soak`: many consecutive boot + scenario cycles across the NICs, to find what fails once
in a hundred: flakes (with their reasons), QEMU processes or run directories left behind, and
the slowest cycle.  Not part of `make test`."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from ..config import Config
from ..machine.rundir import leftovers
from ..results import Verdict
from . import runner


def soak(cfg: Config, cycles: int, kernel_name: str | None, scenario: str, cold: bool) -> int:
    nics = cfg.nics
    kernel_name = kernel_name or cfg.default_kernel
    runner.lookup(cfg, scenario)
    print(f"soak: {cycles} cycles of {'cold boot' if cold else 'snapshot restore'} + {scenario} on {kernel_name}, "
          f"NICs in turn: {', '.join(nics)}; agent over {cfg.transport}", flush=True)
    durations, flakes, orphans = [], [], []
    with tempfile.TemporaryDirectory(prefix="testbed-soak-") as tmp:
        for i in range(cycles):
            nic = nics[i % len(nics)]
            started = time.monotonic()
            r = runner.run_cell(cfg, scenario, kernel_name, nic, Path(tmp) / f"{i % 8}", cold=cold)
            durations.append((time.monotonic() - started, i, nic))
            if r.verdict != Verdict.PASSED:
                flakes.append(f"cycle {i} ({nic}): {r.verdict_line()}")
                print(f"  {flakes[-1]}", flush=True)
            if left := leftovers(os.getpid()):
                orphans.append(f"cycle {i}: {left}")
                print(f"  LEFT BEHIND after cycle {i}: {left}", flush=True)
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{cycles} cycles, {len(flakes)} not passed, {len(orphans)} with leftovers", flush=True)
    slowest = max(durations)
    times = [d for d, _, _ in durations]
    print(f"soak: {cycles} cycles, {len(flakes)} not passed, {len(orphans)} left something behind; "
          f"cycle median {statistics.median(times):.2f} s, slowest {slowest[0]:.2f} s (cycle {slowest[1]}, "
          f"{slowest[2]})")
    return 1 if flakes or orphans else 0
