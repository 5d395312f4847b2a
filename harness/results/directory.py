"""A matrix results directory: its cells' results and run.json read back, shards merged into one,
and every report format written beside them (`testbed report`)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import Result, Verdict, html, junit, kcidb

FORMATS = (html, junit, kcidb)  # each writes its FILE from run.json's meta and the results
FILES = ", ".join(f.FILE for f in FORMATS) + " and run.json"  # what publish writes, for the CLI to say


def load(directory: Path) -> tuple[dict, list[Result]]:
    """run.json and every cell's result.json of one matrix results directory."""
    if not (directory / "run.json").exists():
        raise FileNotFoundError(f"{directory}: no run.json (not a `testbed matrix` results directory)")
    meta = json.loads((directory / "run.json").read_text())
    results = [Result.load(p) for p in sorted((directory / "cells").glob("*/result.json"))]
    return meta, results


def merge(directories: list[Path], out: Path) -> tuple[dict, list[Result]]:
    """Shards into one results directory: cells copied, run.json and junit.xml rewritten."""
    metas, results = [], []
    (out / "cells").mkdir(parents=True, exist_ok=True)
    for d in directories:
        meta, cells = load(d)
        metas.append(meta)
        for r in cells:
            target = out / "cells" / r.cell
            if Path(r.artifacts).resolve() != target.resolve():
                shutil.copytree(r.artifacts, target, dirs_exist_ok=True)
            r.artifacts = str(target)
            results.append(r)
    meta = {**metas[0], "shard": None, "merged_from": [str(d) for d in directories],
            "cells": sum(m["cells"] for m in metas), "complete": all(m.get("complete") for m in metas),
            "duration": max(m.get("duration", 0) for m in metas),
            "kernels": {k: v for m in metas for k, v in m["kernels"].items()},
            "nics": sorted({n for m in metas for n in m["nics"]})}
    publish(out, meta, results)
    return json.loads((out / "run.json").read_text()), results


def cost(results: list[Result]) -> dict:
    """Each cell's wall time and host CPU seconds (QEMU's, the harness's), and their sums."""
    def total(values) -> float | None:
        known = [v for v in values if v is not None]
        return round(sum(known), 2) if known else None
    return {"wall_seconds": total(r.duration for r in results),
            "qemu_cpu_seconds": total(r.qemu_cpu_seconds for r in results),
            "harness_cpu_seconds": total(r.harness_cpu_seconds for r in results),
            "cells": {r.cell: {"wall_seconds": round(r.duration, 3), "qemu_cpu_seconds": r.qemu_cpu_seconds,
                               "harness_cpu_seconds": r.harness_cpu_seconds and round(r.harness_cpu_seconds, 3)}
                      for r in sorted(results, key=lambda r: r.cell)}}


def publish(out: Path, meta: dict, results: list[Result]) -> dict[Verdict, int]:
    """Everything a results directory holds besides the cells: run.json (with the counts) and
    every format's file."""
    counts = {v: sum(r.verdict == v for r in results)
              for v in (Verdict.PASSED, Verdict.FAILED, Verdict.SKIPPED, Verdict.ERROR)}
    meta = {**meta, "counts": counts, "cost": cost(results)}
    (out / "run.json").write_text(json.dumps(meta, indent=1))
    for fmt in FORMATS:
        fmt.write(meta, results, out)
    return counts
