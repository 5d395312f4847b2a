"""`testbed list` and `testbed run SCENARIO`: the catalogue, and one scenario with its decoded trace."""
from __future__ import annotations

import json

from ..run import runner
from ..scenario import load_catalogue


def cmd_list(cfg) -> int:
    catalogue = load_catalogue()
    width = max(map(len, catalogue))
    for s in catalogue.values():
        print(f"{s.name:<{width}}  {s.description}")
        print(f"{'':<{width}}  source: {s.source}{'' if s.needs_nic else ' (no NIC needed)'}")
    return 0


def print_result(result, info) -> None:
    version = result.version if result.version == result.release else f"{result.release}, upstream {result.version}"
    print(f"{result.scenario} on {result.kernel} ({version})"
          + (f" with {result.nic}" if result.nic else "") + f": {info.description}")
    print(f"  kernel source: {info.source}")
    for entry in result.trace:
        print("  " + entry.line().replace("\n", "\n" + " " * 18))
    print(result.verdict_line())
    print(f"artifacts: {result.artifacts}/ (console.log, qmp.log, agent.log, trace.txt, result.json)")


def cmd_run(cfg, args) -> int:
    info = runner.lookup(args.scenario)
    result = runner.run(cfg, args.scenario, args.kernel, args.nic, cold=args.cold)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print_result(result, info)
    return result.verdict.exit_status
