"""The run in KernelCI's KCIDB format (kcidb-io builds nothing, but validates): one checkout and
one build per kernel image, one test per cell, so a lab can submit it with `kcidb-submit`."""
from __future__ import annotations

import json
from pathlib import Path

import kcidb_io

from . import Result, Verdict

FILE = "kcidb.json"
ORIGIN = "netlink_testbed"
# MISS: the harness failed
STATUS = {Verdict.PASSED: "PASS", Verdict.FAILED: "FAIL", Verdict.SKIPPED: "SKIP", Verdict.ERROR: "MISS"}


def export(meta: dict, results: list[Result]) -> dict:
    schema = kcidb_io.schema.LATEST
    run = meta["started"].replace(":", "").replace("-", "")
    checkouts, builds = [], []
    for name, k in meta["kernels"].items():
        checkouts.append({"id": f"{ORIGIN}:{k['sha256'][:32]}", "origin": ORIGIN, "tree_name": name,
                          "comment": f"kernel image {k['image']} ({k['release']}, upstream {k['version']})",
                          "valid": True, "misc": {"image_sha256": k["sha256"], "release": k["release"]}})
        builds.append({"id": f"{ORIGIN}:{name}-{k['sha256'][:32]}", "checkout_id": checkouts[-1]["id"],
                       "origin": ORIGIN, "architecture": "x86_64", "config_name": name, "status": "PASS",
                       "comment": f"{name}: {k['release']}"})
    build_of = {b["config_name"]: b["id"] for b in builds}
    tests = []
    for r in results:
        test = {"id": f"{ORIGIN}:{run}:{r.cell}", "build_id": build_of[r.kernel], "origin": ORIGIN,
                "path": f"netlink.{r.scenario}.{r.nic or 'nonic'}", "status": STATUS[r.verdict],
                "duration": round(r.duration, 3),
                "environment": {"comment": f"{meta['qemu']}, {r.nic or 'no NIC'}, {r.accel.upper()}"},
                "misc": {"kernel": r.kernel, "nic": r.nic, "upstream_version": r.version}}
        if r.reason:
            test["comment"] = r.reason[:1000]
        if r.verdict in (Verdict.FAILED, Verdict.ERROR):
            test["log_excerpt"] = "\n".join(e.line() for e in r.trace)[-16000:]
        tests.append(test)
    data = {"version": {"major": schema.major, "minor": schema.minor},
            "checkouts": checkouts, "builds": builds, "tests": tests}
    schema.validate(data)
    return data


def write(meta: dict, results: list[Result], out: Path) -> None:
    (out / FILE).write_text(json.dumps(export(meta, results), indent=1))
