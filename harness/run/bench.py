"""`make bench`: how long things take on this machine, per kernel x NIC; printed, never asserted.

- cold: QEMU start to the agent's first word after a full boot;
- ssh: the same for a guest whose agent is reached over SSH (its sshd up, logged in, agent started);
- restore: QEMU start to the agent answering, restored from the kernel x NIC's snapshot;
- overhead: a scenario run's time besides the scenario's own (restore, checks, shutdown, saving);
- catalogue: every scenario that applies to the NIC (and the NIC-less ones), `jobs` at a time;
- scaling: the wall time of the first 1, 5 and all scenarios, and the fitted cost per scenario.
Each is the median and range over `runs` runs.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from ..config import Config
from ..vm import VM
from . import runner, snapshot

TARGETS = {"cold": "≤1.2 (min kernel, igb)", "restore": "≤0.2", "overhead": "≤0.2", "catalogue": "≤45 (min kernel)"}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def show(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def ready_times(target, runs: int, where: Path, snap=None) -> list[float]:
    times = []
    for i in range(runs):
        with VM(target, where / f"{'restore' if snap else target.transport}-{i}", snapshot=snap) as vm:
            times.append(vm.boot_seconds)
    return times


def wall_time(cfg: Config, todo: list, jobs: int, where: Path) -> tuple[float, list]:
    started = time.monotonic()
    results = runner.run_many(cfg, todo, jobs, where)
    return time.monotonic() - started, results


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares slope and intercept of wall time against the number of scenarios."""
    slope, intercept = statistics.linear_regression([n for n, _ in points], [t for _, t in points])
    return slope, intercept


def measure(cfg: Config, kernel_name: str, nic: str, runs: int, jobs: int, where: Path) -> dict:
    target = runner.prepare(cfg, kernel_name, nic)
    snap = snapshot.ensure(target, cfg.cache, where / "snapshot-boot")
    todo = runner.cases(cfg, [kernel_name], [nic])
    row = {"kernel": kernel_name, "nic": nic, "accel": target.settings.accel, "jobs": jobs,
           "scenarios": len(todo), "cold": spread(ready_times(target, runs, where)),
           "restore": spread(ready_times(target, runs, where, snap)),
           "ssh": spread(ready_times(runner.prepare(cfg, kernel_name, nic, "ssh"), runs, where))}
    catalogue, overheads, points, not_passed = [], [], [], set()
    for i in range(runs):
        for n in sorted({1, 5, len(todo)}):
            seconds, results = wall_time(cfg, todo[:n], jobs, where / f"run{i}-{n}")
            points.append((n, seconds))
            if n == len(todo):
                catalogue.append(seconds)
            overheads += [r.duration - r.scenario_seconds for r in results if r.verdict in ("passed", "failed")]
            not_passed |= {f"{r.scenario}: {r.verdict}" for r in results if r.verdict not in ("passed", "skipped")}
    slope, intercept = fit(points)
    row.update(catalogue=spread(catalogue), overhead=spread(overheads),
               scaling={"points": points, "per_scenario": slope, "fixed": intercept},
               not_passed=sorted(not_passed))
    return row


def bench(cfg: Config, runs: int, json_path: Path | None, kernels: list[str] | None = None,
          nics: list[str] | None = None, jobs: int = runner.DEFAULT_JOBS) -> int:
    rows = []
    print(f"seconds, median [min–max] of {runs} runs; catalogue with {jobs} guests at a time")
    head = (f"{'kernel':<12} {'nic':<7} {'cold boot→ready':<23} {'restore→ready':<20} {'ssh boot→ready':<23} "
            f"{'overhead/scenario':<20} catalogue")
    print(head)
    with tempfile.TemporaryDirectory(prefix="testbed-bench-") as tmp:
        for kernel_name in kernels or cfg.kernels:
            for nic in nics or cfg.nics:
                row = measure(cfg, kernel_name, nic, runs, jobs, Path(tmp) / f"{kernel_name}-{nic}")
                rows.append(row)
                print(f"{kernel_name:<12} {nic:<7} {show(row['cold']):<23} {show(row['restore']):<20} "
                      f"{show(row['ssh']):<23} {show(row['overhead']):<20} {show(row['catalogue'], 1)} ({row['scenarios']} scenarios)"
                      + (f"  NOT PASSED: {', '.join(row['not_passed'])}" if row["not_passed"] else ""), flush=True)
    print(f"{'target':<20} {TARGETS['cold']:<23} {TARGETS['restore']:<20} {'-':<23} {TARGETS['overhead']:<20} "
          f"{TARGETS['catalogue']}")
    print("\nscaling: wall time of the first n scenarios (medians), fitted time per scenario")
    for row in rows:
        by_n: dict[int, list[float]] = {}
        for n, t in row["scaling"]["points"]:
            by_n.setdefault(n, []).append(t)
        steps = ", ".join(f"{n}: {statistics.median(ts):.1f} s" for n, ts in sorted(by_n.items()))
        print(f"{row['kernel']:<12} {row['nic']:<7} {steps}  →  {row['scaling']['per_scenario']:.2f} s per scenario "
              f"{row['scaling']['fixed']:+.2f} s")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"targets": TARGETS, "cells": rows}, indent=1))
        print(f"written to {json_path}")
    return 0
