"""`testbed list` and `testbed run SCENARIO`: the catalogue, and one scenario with its decoded trace."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from ..provision import kbuild
from ..provision.kernel import BuiltKernel
from ..config import Config
from ..errors import UsageError
from ..results import Verdict
from ..cells import runner
from ..scenario import load_catalogue, scenarios_in

# `git bisect run`'s convention: 0 good, 1 bad, 125 this commit cannot be tested
BISECT_STATUS = {Verdict.PASSED: 0, Verdict.FAILED: 1, Verdict.SKIPPED: 125, Verdict.ERROR: 125}
UNTESTABLE = 125


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


def from_source(cfg: Config, tree: Path) -> tuple[Config, str]:
    """A kernel built from the tree at `tree` with kernel-config/ and the compatibility fixes for
    its version (cached by the tree's files, as every build is), added to the configuration."""
    if not tree.exists():
        raise UsageError(f"--kernel-source {tree}: does not exist; give a kernel tree or a .tar.* of one")
    # a tree testbed.yaml already builds keeps its name, and so its cached build
    source = kbuild.LocalTree(tree.resolve())
    name, spec = next(((n, k.build) for n, k in cfg.kernels.items() if k.build and k.build.source == source),
                      (None, None))
    if name is None or spec is None:
        name = f"src-{tree.resolve().name}"
        spec = kbuild.BuildSpec(name, source)
        cfg = dataclasses.replace(cfg, kernels={**cfg.kernels, name: BuiltKernel(name, spec)})
    kbuild.build(spec, cfg.cache, say=lambda s: print(f"testbed: {s}", file=sys.stderr))
    return cfg, name


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
    kernel_name = args.kernel
    if args.kernel_source:
        if args.kernel:
            raise UsageError("--kernel-source and --kernel: give one (the tree to build, or a kernel of testbed.yaml)")
        try:
            cfg, kernel_name = from_source(cfg, args.kernel_source)
        except kbuild.BuildError as e:
            print(f"testbed: {e}", file=sys.stderr)
            return UNTESTABLE if args.bisect else 3
    result = runner.run_cell(cfg, name, kernel_name, args.nic, cold=args.cold)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print_result(result, info, args.verbose)
    return BISECT_STATUS[result.verdict] if args.bisect else result.verdict.exit_status
