"""What differs between kernels (or NICs): each run's observations, compared cell by cell."""
from __future__ import annotations

from collections import defaultdict

from . import Result, Verdict


def observations(r: Result) -> dict[str, str]:
    """What a run observed: each check's value, keyed by what was checked."""
    seen = {"verdict": r.verdict + (f": {r.reason}" if r.verdict != Verdict.PASSED and r.reason else "")}
    for e in r.trace:
        if e.actor == "check" and "check" in e.data and not e.data.get("incidental"):
            seen[e.data["check"]] = e.data["observed"]
    return seen


def by_version(results: list[Result]) -> dict[str, str]:
    """Kernel name -> upstream version, oldest first: the eras read left to right."""
    versions = {r.kernel: r.version for r in results}
    def key(name):
        return tuple(int(p) for p in versions[name].split(".") if p.isdigit()) if versions[name] else (), name
    return {k: versions[k] for k in sorted(versions, key=key)}


def differences(results: list[Result], across: str = "kernel") -> list[tuple[str, str | None, list[str],
                                                                             list[tuple[str, dict]]]]:
    """For each scenario run on several kernels (across="kernel": per NIC, oldest kernel first)
    or on several NICs (across="nic": per kernel): the observations that are not the same on
    all of them, as (scenario, the NIC or kernel held fixed, the columns, [(what, {column: value})])."""
    fixed = "nic" if across == "kernel" else "kernel"
    order = list(by_version(results)) if across == "kernel" else sorted({r.nic for r in results if r.nic})
    by_cell: dict[tuple, dict[str, Result]] = defaultdict(dict)
    for r in sorted((r for r in results if getattr(r, across) in order), key=lambda r: order.index(getattr(r, across))):
        by_cell[(r.scenario, getattr(r, fixed))][getattr(r, across)] = r
    out = []
    for (scenario, held), runs in sorted(by_cell.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if len(runs) < 2:
            continue
        seen = {k: observations(r) for k, r in runs.items()}
        keys = list(dict.fromkeys(key for obs in seen.values() for key in obs))
        rows = [(key, {k: obs.get(key, "—") for k, obs in seen.items()}) for key in keys]
        rows = [(key, vals) for key, vals in rows if len(set(vals.values())) > 1]
        if rows:
            out.append((scenario, held, list(runs), rows))
    return out


def axis(results: list[Result]) -> str:
    """What a diff compares: the kernels when there are several, else the NICs."""
    return "kernel" if len({r.kernel for r in results}) > 1 else "nic"
