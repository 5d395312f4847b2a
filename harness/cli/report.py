"""`testbed report`: rewrite (or merge shards into) a results directory's report, JUnit and KCIDB."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..results import directory


def cmd_report(args) -> int:
    try:
        if args.merge:
            out = args.out or Path("results/merged")
            meta, results = directory.merge(args.dirs, out)
        elif len(args.dirs) > 1 or args.out:
            raise UsageError("testbed report: several directories or --out need --merge")
        else:
            out = args.dirs[0]
            meta, results = directory.load(out)
            directory.publish(out, meta, results)
    except FileNotFoundError as e:
        raise UsageError(f"testbed report: {e}") from None
    print(f"testbed: {len(results)} cells: {directory.FILES} in {out}/")
    return 0
