"""The `testbed` command.

    testbed list                                   the scenarios, with the kernel source each is about
    testbed run SCENARIO [--kernel K] [--nic N]    run one scenario on a fresh guest, print its decoded trace
    testbed matrix [--kernels ..] [--nics ..] [--scenarios ..] [--shard I/N]   the matrix, for CI
    testbed report DIR | --merge DIR... [--out D]  the HTML report / KCIDB of matrix results, shards merged
    testbed diff --kernel A --kernel B             the catalogue on both, and what differs
    testbed soak [--cycles N] [--transport T]      boot + scenario, again and again: flakes, leftovers
    testbed shell [--kernel K] [--nic N] [--transport T]   a shell on a fresh guest (console or ssh)
    testbed link up|down [--vm RUN_DIR]            flip that guest's link from another terminal
    testbed kernel fetch [NAME ...]                fetch Debian kernels named in testbed.yaml
    testbed kernel build [NAME ... | --source PATH] build kernels from source with kernel-config/
    testbed bench [--runs N] [--jobs J]            boot, restore, per-scenario and catalogue times

Exit status: 0 as expected (or skipped, with the reason), 1 the kernel did not behave as
expected, 2 bad usage or configuration, 3 infrastructure failure (QEMU, boot, agent; for a
matrix: any cell that could not run), 130/143 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

from .. import config as config_mod
from ..config import TRANSPORTS
from ..transport import by_name
from ..errors import NetworkError, UsageError



class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _option_groups() -> dict[str, argparse.ArgumentParser]:
    """The options several commands share, each declared once (argparse parents)."""
    groups = {name: _Parser(add_help=False) for name in ("guest", "transport", "cells", "jobs")}
    groups["guest"].add_argument("--kernel", help="a kernel named in testbed.yaml")
    groups["guest"].add_argument("--nic", help="NIC model: igb, e1000e, e1000, or vfio:DOMAIN:BUS:DEV.FN")
    groups["transport"].add_argument("--transport", choices=TRANSPORTS,
                                     help="reach the agent over the serial port or SSH to the guest's sshd "
                                          "(default: testbed.yaml's)")
    groups["cells"].add_argument("--nics", nargs="+", help="NIC models (default: those in testbed.yaml)")
    groups["cells"].add_argument("--scenarios", nargs="+", help="scenario names (default: all)")
    groups["cells"].add_argument("--results", type=Path, help="results directory (default: results/<command>/<date-time>)")
    groups["jobs"].add_argument("--jobs", type=int, help="guests at a time (default: twice the CPUs)")
    return groups


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="testbed", description="QEMU testbed for Linux netlink and NIC link-state behaviour")
    p.add_argument("--config", default="testbed.yaml", help="configuration file (default: testbed.yaml)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    g = _option_groups()
    sub.add_parser("list", help="list the scenarios")
    run = sub.add_parser("run", help="run one scenario and print its trace", parents=[g["guest"], g["transport"]])
    run.add_argument("scenario")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--cold", action="store_true",
                     help="boot the guest afresh instead of restoring the kernel x NIC's snapshot")
    mx = sub.add_parser("matrix", help="scenarios x kernels x NICs into one results directory (for CI)",
                        parents=[g["cells"], g["jobs"], g["transport"]])
    mx.add_argument("--kernels", nargs="+", help="kernels named in testbed.yaml (default: all)")
    mx.add_argument("--shard", help="I/N: run only the I-th of N deterministic shares of the cells")
    rep = sub.add_parser("report", help="rewrite report.html and kcidb.json of matrix results; --merge shards")
    rep.add_argument("dirs", nargs="+", type=Path, help="results directories of `testbed matrix`")
    rep.add_argument("--merge", action="store_true", help="merge the directories (CI shards) into --out")
    rep.add_argument("--out", type=Path, help="where the merged results go (default: results/merged)")
    df = sub.add_parser("diff", help="run the catalogue on several kernels and print what they did differently",
                        parents=[g["cells"], g["jobs"]])
    df.add_argument("--kernel", action="append", required=True, help="a kernel named in testbed.yaml (twice or more)")
    so = sub.add_parser("soak", help="many consecutive boot + scenario cycles: flakes, leftovers, slowest",
                        parents=[g["transport"]])
    so.add_argument("--cycles", type=int, default=200)
    so.add_argument("--kernel", help="a kernel named in testbed.yaml")
    so.add_argument("--scenario", default="carrier-qmp", help="the scenario of each cycle (default: carrier-qmp)")
    so.add_argument("--restore", action="store_true", help="restore the snapshot instead of booting each cycle")
    sh = sub.add_parser("shell", help="a shell on a fresh guest (its console, or ssh), the agent running beside it",
                        parents=[g["guest"], g["transport"]])
    sh.add_argument("--cold", action="store_true", help="boot afresh instead of restoring the snapshot")
    link = sub.add_parser("link", help="flip a running guest's link (QMP set_link), e.g. one `testbed shell` started")
    link.add_argument("state", choices=["up", "down"])
    link.add_argument("--vm", type=Path, help="the guest's run directory, when several are running")
    kernel = sub.add_parser("kernel", help="kernel management")
    ksub = kernel.add_subparsers(dest="action", required=True, parser_class=_Parser)
    fetch = ksub.add_parser("fetch", help="fetch the Debian packages and release tarballs named in testbed.yaml")
    fetch.add_argument("names", nargs="*")
    kbuild = ksub.add_parser("build", help="build kernels from source with kernel-config/")
    kbuild.add_argument("names", nargs="*", help="kernels in testbed.yaml (default: every source kernel)")
    kbuild.add_argument("--source", type=Path, help="build this tree or tarball instead")
    kbuild.add_argument("--name", help="name for --source (default: the directory's name)")
    kbuild.add_argument("--jobs", type=int, help="parallel jobs (default: the number of CPUs)")
    bench = sub.add_parser("bench", help="measure boot, restore, per-scenario and catalogue times per kernel x NIC",
                           parents=[g["jobs"]])
    bench.add_argument("--runs", type=int, default=3)
    bench.add_argument("--kernels", nargs="+", help="kernels named in testbed.yaml (default: all)")
    bench.add_argument("--nics", nargs="+", help="NIC models (default: those in testbed.yaml)")
    bench.add_argument("--json", type=Path, help="also write the figures to this file")
    return p


def cmd_list(cfg) -> int:
    from ..scenario import load_catalogue
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
    from ..run import runner
    info = runner.lookup(args.scenario)
    result = runner.run(cfg, args.scenario, args.kernel, args.nic, cold=args.cold)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
    else:
        print_result(result, info)
    return result.verdict.exit_status


def cmd_report(args) -> int:
    from ..results import report
    try:
        if args.merge:
            out = args.out or Path("results/merged")
            meta, results = report.merge(args.dirs, out)
        elif len(args.dirs) > 1 or args.out:
            raise UsageError("testbed report: several directories or --out need --merge")
        else:
            out = args.dirs[0]
            meta, results = report.load(out)
            report.publish(out, meta, results)
    except FileNotFoundError as e:
        raise UsageError(f"testbed report: {e}") from None
    print(f"testbed: {len(results)} cells: report.html, junit.xml, kcidb.json and run.json in {out}/")
    return 0


def cmd_kernel(cfg, args) -> int:
    from ..build import kernel
    from ..build import kbuild
    if args.action == "fetch":
        def fetchable(s) -> bool:
            return bool(s.debian_package) or bool(s.build and isinstance(s.build.source, kbuild.Tarball))
        for name in args.names or [n for n, s in cfg.kernels.items() if fetchable(s)]:
            spec = cfg.kernel(name)
            if not fetchable(spec):
                raise UsageError(f"kernel {name}: neither a debian-package nor a tarball kernel; nothing to fetch")
            if spec.debian_package:
                kernel.fetch_debian(spec, cfg.cache, log=lambda s: print(f"setup: {s}"))
            else:
                print(f"setup: kernel {name}: {spec.build.local_source(cfg.cache, say=lambda s: print(f'setup: {s}'))}")
        return 0
    if args.source:
        if not args.source.exists():
            raise UsageError(f"--source {args.source}: does not exist; give a kernel tree or a .tar.* of one")
        specs = [kbuild.BuildSpec(args.name or args.source.name.split(".tar")[0], args.source.resolve())]
    else:
        names = args.names or [n for n, s in cfg.kernels.items() if s.build]
        specs = []
        for name in names:
            if not cfg.kernel(name).build:
                raise UsageError(f"kernel {name}: has no 'source' in {cfg.path}; nothing to build")
            specs.append(cfg.kernel(name).build)
    try:
        for spec in specs:
            out = kbuild.build(spec, cfg.cache, args.jobs, say=lambda s: print(f"testbed: {s}"))
            if args.source:
                print(f"use it from testbed.yaml:\n  kernels:\n    {spec.name}: {{image: {out / 'bzImage'}}}")
    except kbuild.BuildError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    # unwind like Ctrl-C (VMs shut down, run dirs removed): SIGTERM, and SIGHUP (terminal closed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        args = _parser().parse_args(argv)
        if args.command == "report":  # reads results only: works where testbed.yaml's kernels are absent
            return cmd_report(args)
        if args.command == "link":
            from .link import link
            return link(args.state, args.vm)
        cfg = config_mod.load(args.config)
        if getattr(args, "transport", None):
            cfg = dataclasses.replace(cfg, transport=args.transport)
        if args.command == "list":
            return cmd_list(cfg)
        if args.command == "run":
            return cmd_run(cfg, args)
        from ..run.runner import DEFAULT_JOBS
        jobs = getattr(args, "jobs", None) or DEFAULT_JOBS
        if args.command == "matrix":
            from ..run.matrix import run_matrix
            return run_matrix(cfg, args.kernels, args.nics, args.scenarios, args.shard, jobs, args.results)[0]
        if args.command == "diff":
            from ..run.matrix import run_diff
            return run_diff(cfg, [cfg.kernel(k).name for k in args.kernel], args.nics, args.scenarios, jobs,
                            args.results)
        if args.command == "soak":
            from ..run.soak import soak
            if args.restore and not by_name(cfg.transport).restorable:
                raise UsageError("soak: --restore with transport ssh: an SSH guest always boots afresh "
                                 "(its keys are made for the run); drop --restore or use --transport serial")
            return soak(cfg, args.cycles, args.kernel and cfg.kernel(args.kernel).name, args.scenario,
                        cold=not args.restore)
        if args.command == "shell":
            from .shell import shell
            return shell(cfg, args.kernel, args.nic, args.cold)
        if args.command == "kernel":
            return cmd_kernel(cfg, args)
        if args.command == "bench":
            from ..run.bench import bench
            return bench(cfg, args.runs, args.json, [cfg.kernel(k).name for k in args.kernels or []] or None,
                         [cfg.nic(n) for n in args.nics or []] or None, jobs)
    except UsageError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 2
    except NetworkError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    return 0
