"""`testbed list` and `testbed run SCENARIO`: the catalogue, and one scenario with its decoded trace."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..config import Config
from ..errors import UsageError
from ..run import runner
from ..scenario import load_catalogue, scenarios_in


def cmd_list(cfg) -> int:
    catalogue = load_catalogue(cfg.scenarios)
    width = max(map(len, catalogue))
    for s in catalogue.values():
        print(f"{s.name:<{width}}  {s.description}")
        print(f"{'':<{width}}  source: {s.source}{'' if s.needs_nic else ' (no NIC needed)'}")
        print(f"{'':<{width}}  defined at {s.origin}")
    return 0


def named(cfg: Config, scenario: str) -> tuple[Config, str]:
    """`scenario` as a name, or FILE.py::NAME (FILE.py alone: its only scenario), with the file
    added to the configuration's scenario sources."""
    file, _, name = scenario.partition("::")
    if not (name or file.endswith(".py")):
        return cfg, scenario
    path = Path(file).resolve()
    found = [s.name for s in scenarios_in(path)]
    if not name:
        if len(found) != 1:
            raise UsageError(f"{file}: defines {len(found)} scenarios ({', '.join(found) or 'none'}); "
                             f"name one as {file}::NAME")
        name = found[0]
    return dataclasses.replace(cfg, scenarios=(*cfg.scenarios, path)), name


def print_result(result, info, verbose: bool = False) -> None:
    version = result.version if result.version == result.release else f"{result.release}, upstream {result.version}"
    print(f"{result.scenario} on {result.kernel} ({version})"
          + (f" with {result.nic}" if result.nic else "") + f": {info.description}")
    print(f"  kernel source: {info.source}")
    for entry in result.trace:
        print("  " + entry.line(verbose).replace("\n", "\n" + " " * 18))
    print(result.verdict_line())
    print(f"artifacts: {result.artifacts}/ (console.log, qmp.log, agent.log, trace.txt, result.json)")


def cmd_run(cfg, args) -> int:
    cfg, name = named(cfg, args.scenario)
    info = runner.lookup(cfg, name)
    result = runner.run(cfg, name, args.kernel, args.nic, cold=args.cold)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print_result(result, info, args.verbose)
    return result.verdict.exit_status
