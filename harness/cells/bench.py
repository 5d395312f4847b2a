"""`make bench`: how long things take on this machine, per kernel x NIC and guest clock (virtual
and real side by side, in one run); printed, never asserted.

- cold: QEMU start to the agent's first word after a full boot;
- ssh: the same for a guest whose agent is reached over SSH (its sshd up, logged in, agent started);
- restore: QEMU start to the agent answering, restored from the kernel x NIC's snapshot;
- overhead: a scenario run's time besides the scenario's own (restore, checks, shutdown, saving);
- catalogue: every scenario that applies to the NIC (and the NIC-less ones), `jobs` at a time;
- scaling: the wall time of the first 1, 5 and all scenarios, and the fitted cost per scenario;
- matrix: every kernel x NIC of the run at once, as `testbed matrix` runs it (once per clock).
Beside each time, what it cost the host in CPU seconds (QEMU's and the harness's, see
harness.cpu): steadier than wall time on a shared machine.  Each figure but the matrix is the
median and range over `runs` runs.

The default is quick (every kernel with one NIC, one run, no ssh boots, no scaling, no matrix);
`full` is every kernel x NIC, the scaling points and the whole matrix.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

from ..config import Config
from ..machine.qemu import TIME_MODES
from ..results import Verdict
from ..vm import VM
from . import runner, snapshot

TARGETS = {"cold": "≤1.2 (min kernel, igb)", "restore": "≤0.2", "overhead": "≤0.2",
           "catalogue": "≤8 (virtual)", "matrix": "≤120 (virtual)"}


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def show(s: dict, digits: int = 2) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def ready_times(target, runs: int, where: Path, snap=None) -> tuple[list[float], list[float]]:
    """Seconds from QEMU's start to a ready guest, and QEMU's CPU seconds for each whole run."""
    times, cpu = [], []
    for i in range(runs):
        with VM(target, where / f"{'restore' if snap else target.transport}-{i}", snapshot=snap) as vm:
            times.append(vm.boot_seconds)
        cpu.append(vm.cpu_seconds()[0] or 0.0)
    return times, cpu


def cell_cpu(r) -> float:
    return (r.qemu_cpu_seconds or 0.0) + (r.harness_cpu_seconds or 0.0)


def wall_time(cfg: Config, todo: list, jobs: int | None, where: Path) -> tuple[float, list]:
    started = time.monotonic()
    results = runner.run_cells(cfg, todo, jobs, where)
    return time.monotonic() - started, results


def not_passed(results) -> set[str]:
    return {f"{r.cell}: {r.verdict}" for r in results if r.verdict not in (Verdict.PASSED, Verdict.SKIPPED)}


def measure(cfg: Config, kernel_name: str, nic: str, runs: int, jobs: int | None, where: Path, full: bool) -> dict:
    target = runner.prepare(cfg, kernel_name, nic)
    snap = snapshot.ensure(target, cfg.cache, where / "snapshot-boot")
    todo = runner.cases(cfg, [kernel_name], [nic])
    (cold, cold_cpu), (restore, _) = ready_times(target, runs, where), ready_times(target, runs, where, snap)
    row = {"kernel": kernel_name, "nic": nic, "accel": target.settings.accel, "time": target.settings.time,
           "jobs": runner.jobs_for(cfg, todo, jobs), "scenarios": len(todo),
           "cold": spread(cold), "cold_cpu": spread(cold_cpu), "restore": spread(restore)}
    if full:
        row["ssh"] = spread(ready_times(runner.prepare(cfg, kernel_name, nic, "ssh"), runs, where)[0])
    catalogue, cpu_per_cell, overheads, points, failures = [], [], [], [], set()
    scenario_cpu: dict[str, list[float]] = {}
    for i in range(runs):
        for n in sorted({1, 5, len(todo)}) if full else [len(todo)]:
            seconds, results = wall_time(cfg, todo[:n], jobs, where / f"run{i}-{n}")
            points.append((n, seconds))
            if n == len(todo):
                catalogue.append(seconds)
                cpu_per_cell.append(sum(map(cell_cpu, results)) / len(results))
                for r in results:
                    scenario_cpu.setdefault(r.scenario, []).append(cell_cpu(r))
            overheads += [r.duration - r.scenario_seconds for r in results if r.verdict in ("passed", "failed")]
            failures |= not_passed(results)
    row.update(catalogue=spread(catalogue), cpu_per_cell=spread(cpu_per_cell), overhead=spread(overheads),
               scenario_cpu={name: statistics.median(v) for name, v in sorted(scenario_cpu.items())},
               not_passed=sorted(failures))
    if full:
        slope, intercept = statistics.linear_regression([n for n, _ in points], [t for _, t in points])
        row["scaling"] = {"points": points, "per_scenario": slope, "fixed": intercept}
    return row


def whole_matrix(cfg: Config, kernels: list[str], nics: list[str], jobs: int | None, where: Path) -> dict:
    todo = runner.cases(cfg, kernels, nics)
    seconds, results = wall_time(cfg, todo, jobs, where)
    return {"time": cfg.time, "cells": len(todo), "jobs": runner.jobs_for(cfg, todo, jobs), "seconds": seconds,
            "summed_cells": sum(r.duration for r in results), "cpu": sum(map(cell_cpu, results)),
            "not_passed": sorted(not_passed(results))}


def bench(cfg: Config, runs: int | None, json_path: Path | None, kernels: list[str] | None = None,
          nics: list[str] | None = None, jobs: int | None = None, modes: list[str] | None = None,
          full: bool = False) -> int:
    kernels = kernels or list(cfg.kernels)
    nics = nics or (list(cfg.nics) if full else list(cfg.nics)[:1])
    runs = runs or (3 if full else 1)
    # both clocks where the accelerator allows (KVM has only the real one)
    accel = runner.prepare(cfg, kernels[0], nics[0]).settings.accel
    modes = modes or [m for m in TIME_MODES if accel == "tcg" or m == "real"]
    configs = {mode: dataclasses.replace(cfg, time=mode) for mode in modes}
    rows, matrices = [], []
    print(f"{'full' if full else 'quick (--full: every NIC, ssh boots, scaling, the whole matrix)'}; seconds, "
          f"median [min–max] of {runs} run(s); cpu: host CPU seconds (QEMU + harness); guests at a time: "
          + ", ".join(f"{m} {jobs or runner.default_jobs(m)}" for m in modes))
    print(f"{'kernel':<12} {'nic':<7} {'clock':<8} {'cold boot→ready':<23} {'cpu':<6} {'restore→ready':<20} "
          + (f"{'ssh boot→ready':<23} " if full else "") + f"{'overhead/scenario':<20} {'catalogue':<24} cpu/cell")
    with tempfile.TemporaryDirectory(prefix="testbed-bench-") as tmp:
        for kernel_name in kernels:
            for nic in nics:
                for mode, c in configs.items():
                    row = measure(c, kernel_name, nic, runs, jobs, Path(tmp) / f"{kernel_name}-{nic}-{mode}", full)
                    rows.append(row)
                    catalogue = f"{show(row['catalogue'], 1)} ({row['scenarios']})"
                    print(f"{kernel_name:<12} {nic:<7} {mode:<8} {show(row['cold']):<23} "
                          f"{row['cold_cpu']['median']:<6.2f} {show(row['restore']):<20} "
                          + (f"{show(row['ssh']):<23} " if full else "")
                          + f"{show(row['overhead']):<20} {catalogue:<24} {show(row['cpu_per_cell'])}"
                          + (f"  NOT PASSED: {', '.join(row['not_passed'])}" if row["not_passed"] else ""), flush=True)
        print(f"{'target':<29} {TARGETS['cold']:<23} {'':<6} {TARGETS['restore']:<20} "
              + (f"{'-':<23} " if full else "") + f"{TARGETS['overhead']:<20} {TARGETS['catalogue']}")
        if full:
            print(f"\nthe whole matrix ({len(kernels)} kernels x {len(nics)} NICs), once per clock; target "
                  f"{TARGETS['matrix']} s")
            for mode, c in configs.items():
                m = whole_matrix(c, kernels, nics, jobs, Path(tmp) / f"matrix-{mode}")
                matrices.append(m)
                print(f"{mode:<8} {m['cells']} cells, {m['jobs']} at a time: {m['seconds']:.1f} s wall, "
                      f"{m['summed_cells']:.0f} s summed over the cells, {m['cpu']:.0f} CPU seconds "
                      f"({m['cpu'] / max(m['cells'], 1):.2f} per cell)"
                      + (f"  NOT PASSED: {', '.join(m['not_passed'])}" if m["not_passed"] else ""), flush=True)
    print("\nCPU seconds per scenario (QEMU + harness; median over kernels, NICs and runs)")
    per: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        for name, cpu in row["scenario_cpu"].items():
            per.setdefault(name, {}).setdefault(row["time"], []).append(cpu)
    print(f"{'scenario':<24} " + " ".join(f"{m:>8}" for m in modes))
    for name, by_mode in sorted(per.items()):
        print(f"{name:<24} " + " ".join(f"{statistics.median(by_mode[m]):>8.2f}" if m in by_mode else f"{'-':>8}"
                                        for m in modes))
    if full:
        print("\nscaling: wall time of the first n scenarios (medians), fitted time per scenario")
        for row in rows:
            by_n: dict[int, list[float]] = {}
            for n, t in row["scaling"]["points"]:
                by_n.setdefault(n, []).append(t)
            steps = ", ".join(f"{n}: {statistics.median(ts):.1f} s" for n, ts in sorted(by_n.items()))
            print(f"{row['kernel']:<12} {row['nic']:<7} {row['time']:<8} {steps}  →  "
                  f"{row['scaling']['per_scenario']:.2f} s per scenario {row['scaling']['fixed']:+.2f} s")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"targets": TARGETS, "full": full, "cells": rows, "matrix": matrices},
                                        indent=1))
        print(f"written to {json_path}")
    return 0
