"""The differences between kernels or NICs as text, for the terminal (`testbed diff`)."""
from __future__ import annotations

from . import Result
from .differences import axis, by_version, differences


def print_differences(results: list[Result]) -> None:
    across = axis(results)
    diffs = differences(results, across)
    versions = by_version(results)
    if across == "kernel":
        columns = {k: f"{k} ({v})" for k, v in versions.items()}
        what = "kernels"
    else:
        columns = {n: n for n in sorted({r.nic for r in results if r.nic})}
        what = f"NICs (kernel {', '.join(f'{k} {v}' for k, v in versions.items())})"
    if not diffs:
        print(f"testbed: the {what} {', '.join(columns.values())} "
              "behaved the same in every scenario run on all of them")
        return
    print(f"testbed: what differs between the {what} {', '.join(columns.values())}, per scenario"
          + (", oldest kernel first" if across == "kernel" else ""))
    width = max(len(c) for c in columns.values())
    for scenario, held, names, rows in diffs:
        source = next((r.source for r in results if r.scenario == scenario and r.source), "")
        print(f"\n{scenario}" + (f" ({held})" if held else ""))
        if source:
            print(f"  kernel source: {source}")
        for name, values in rows:
            print(f"  {name}")
            for k in names:
                print(f"    {columns[k]:<{width}}  {values[k]}")
