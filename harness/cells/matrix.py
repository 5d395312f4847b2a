"""`testbed matrix`: scenarios x kernels x NICs in one results directory that CI keeps.

    results/matrix/<run>/
        report.html     the kernel x NIC grid per scenario, traces, timelines, kernel differences
        kcidb.json      the same in KernelCI's KCIDB format
        run.json        what ran where: QEMU, kernels (release, upstream version, image sha256),
                        NICs, host, accelerator, shard, durations, counts, complete or not
        junit.xml       one testcase per cell; the trace and a console excerpt with each failure
        cells/<scenario>-<kernel>-<nic>/   console.log qemu.log qmp.log agent.log trace.txt result.json

Cells are split among shards deterministically (`--shard I/N`), so N CI runners each take
one and `testbed report --merge` puts them back together.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from ..config import Config
from ..digest import file_hash
from ..errors import UsageError
from ..results import Result, Verdict, cell_name, directory, text
from ..scenario import Skip
from . import runner


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        index = total = 0
    if not 1 <= index <= total:
        raise UsageError(f"--shard {text}: expected I/N with 1 <= I <= N, e.g. 2/4")
    return index, total


def shard(cells: list[tuple], index: int, total: int) -> list[tuple]:
    """Every total-th cell starting at index-1, of the cells in a fixed order: the shards are
    disjoint, cover everything, and mix long and short scenarios alike."""
    return sorted(cells, key=lambda c: cell_name(*c))[index - 1::total]


def exit_status(results: list[Result]) -> int:
    """3 if any cell could not run (its verdict says nothing about the kernel), else 1 if any
    kernel did not behave as expected, else 0."""
    return max((r.verdict.exit_status for r in results), default=0)


class Progress:
    """A live status line on a terminal; one plain line per finished cell otherwise."""

    def __init__(self, total: int, stream=sys.stdout):
        self.total, self.stream, self.done = total, stream, 0
        self.bad: list[str] = []
        self.live = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, r: Result):
        self.done += 1
        if r.verdict in (Verdict.FAILED, Verdict.ERROR):
            self.bad.append(r.cell)
        elapsed = time.monotonic() - self.started
        line = f"[{self.done}/{self.total}] {r.verdict.upper():7} {r.cell} ({r.duration:.1f} s)"
        if self.live:
            status = f"{self.done}/{self.total} done, {len(self.bad)} not as expected, {elapsed:.0f} s"
            self.stream.write(f"\r\x1b[K{line}\n{status}" if r.verdict != Verdict.PASSED else f"\r\x1b[K{status}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self):
        if self.live:
            self.stream.write("\n")


def qemu_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else f"{binary}: {out.stderr.strip()}"


def qemu_versions(cfg: Config, nics: list[str | None]) -> str:
    """The QEMU that runs the cells, and for which NICs when more than one does (ixgbe runs on
    the testbed's build); one not built is named so."""
    by_binary: dict[str, list[str]] = {}
    for nic in nics:
        try:
            binary = qemu_version(runner.qemu_for(cfg, nic)[0])
        except Skip as e:
            binary = str(e)
        by_binary.setdefault(binary, []).append(nic or "no NIC")
    if len(by_binary) == 1:
        return next(iter(by_binary))
    return "; ".join(f"{', '.join(n)}: {v}" for v, n in by_binary.items())


def metadata(cfg: Config, cells: list[tuple], shard_spec: str | None) -> dict:
    kernels = {}
    for name in dict.fromkeys(k for _, k, _ in cells):
        target = runner.prepare(cfg, name, None)
        kernels[name] = {"release": target.kernel.release, "version": target.kernel.version_str,
                         "image": str(target.kernel.image), "sha256": file_hash(target.kernel.image),
                         "accel": target.settings.accel, "time": target.settings.time}
    return {"started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "qemu": qemu_versions(cfg, sorted({n for _, _, n in cells}, key=str)), "kernels": kernels,
            "nics": sorted({n for _, _, n in cells if n}), "shard": shard_spec, "transport": cfg.transport,
            "host": {"name": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                     "python": platform.python_version()},
            "cells": len(cells), "complete": False}


def run_matrix(cfg: Config, kernels: list[str] | None, nics: list[str] | None, scenarios: list[str] | None,
               shard_spec: str | None, jobs: int | None, out: Path | None) -> tuple[int, Path]:
    """Run the cells; returns the exit status and the results directory."""
    cells = runner.cases(cfg, [cfg.kernel(k).name for k in kernels or []] or None,
                         [cfg.nic(n) for n in nics or []] or None, scenarios)
    if shard_spec:
        cells = shard(cells, *parse_shard(shard_spec))
    out = out or cfg.results / "matrix" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".writable").touch()
        (out / ".writable").unlink()
    except OSError as e:
        raise UsageError(f"results directory {out}: not writable ({e.strerror}); choose another with --results") from e
    meta = metadata(cfg, cells, shard_spec)
    jobs = runner.jobs_for(cfg, cells, jobs)
    clocks = "/".join(sorted({k["time"] for k in meta["kernels"].values()}))
    print(f"testbed: {len(cells)} cells (kernels {', '.join(meta['kernels'])}; NICs {', '.join(meta['nics']) or '-'}), "
          f"{jobs} at a time, {clocks} time, results in {out}/", flush=True)
    progress, results, started = Progress(len(cells)), [], time.monotonic()

    def done(r):
        results.append(r)
        progress(r)

    try:
        runner.run_cells(cfg, cells, jobs, out / "cells", done)
        meta["complete"] = True
    finally:  # interrupted: what finished is kept, and run.json says the run is incomplete
        progress.finish()
        meta["duration"] = round(time.monotonic() - started, 1)
        counts = directory.publish(out, meta, results)
    status = exit_status(results)
    print(f"testbed: {len(results)} cells in {meta['duration']:.0f} s: "
          + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
          + f"; {directory.FILES} in {out}/")
    return status, out


def run_diff(cfg: Config, kernels: list[str], nics: list[str] | None, scenarios: list[str] | None,
             jobs: int | None, out: Path | None) -> int:
    """The catalogue on two (or more) kernels, or on one kernel with two (or more) NICs, then what
    they did differently."""
    if len(set(kernels)) < 2 and len(set(nics or ())) < 2:
        raise UsageError(f"--kernel {' '.join(kernels)}: give two different kernels to compare "
                         "(--kernel A --kernel B), "
                         "or one kernel and two NICs (--kernel K --nics igb ixgbe)")
    out = out or cfg.results / "diff" / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    status, out = run_matrix(cfg, kernels, nics, scenarios, None, jobs, out)
    text.print_differences(directory.load(out)[1])
    return status
