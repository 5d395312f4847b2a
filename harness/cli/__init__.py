"""The `testbed` command.

    testbed list [--scenarios-from PATH]           the scenarios, the kernel source each is about, where defined
    testbed run SCENARIO [--kernel K] [--nic N]    run one scenario on a fresh guest, print its decoded trace
    testbed run FILE.py::NAME                      ... one defined in a file of yours
    testbed run SCENARIO --kernel-source PATH --bisect   build PATH, run, exit as `git bisect run` wants
    testbed matrix [--kernels ..] [--nics ..] [--scenarios ..] [--shard I/N]   the matrix, for CI
    testbed report DIR | --merge DIR... [--out D]  the HTML report / KCIDB of matrix results, shards merged
    testbed diff --kernel A --kernel B             the catalogue on both, and what differs
    testbed diff --kernel K --nics igb ixgbe       ... or on one kernel, NIC against NIC
    testbed soak [--cycles N] [--transport T]      boot + scenario, again and again: flakes, leftovers
    testbed shell [--kernel K] [--nic N] [--transport T]   a shell on a fresh guest (console or ssh)
    testbed link up|down [--vm RUN_DIR]            flip that guest's link from another terminal
    testbed kernel fetch [NAME ...]                fetch Debian kernels named in testbed.yaml
    testbed kernel build [NAME ... | --source PATH] build kernels from source with kernel-config/
    testbed qemu build [--jobs N]                  build QEMU with the 82598 model (qemu-model/ixgbe.c)
    testbed qemu status                            the binary for the current model, or why there is none
    testbed bench [--full] [--runs N] [--jobs J]   boot, restore, per-scenario and catalogue times, CPU seconds

Exit status: 0 as expected (or skipped, with the reason), 1 the kernel did not behave as
expected, 2 bad usage or configuration, 3 infrastructure failure (QEMU, boot, agent; for a
matrix: any cell that could not run; for `qemu build|status`: no QEMU with the model), 130/143
interrupted.  With --bisect: 0 passed, 1 failed, 125 cannot be tested (build failure, skipped,
infrastructure), 128 bad usage.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys

from .. import config as config_mod
from ..errors import NetworkError, UsageError
from ..transport import by_name
from .parser import parser


def main(argv: list[str] | None = None) -> int:
    # unwind like Ctrl-C (VMs shut down, run dirs removed): SIGTERM, and SIGHUP (terminal closed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        args = parser().parse_args(argv)
        if args.command == "report":  # reads results only: works where testbed.yaml's kernels are absent
            from .report import cmd_report
            return cmd_report(args)
        if args.command == "link":
            from .link import link
            return link(args.state, args.vm)
        cfg = config_mod.load(config_mod.find(args.config))
        if getattr(args, "scenarios_from", None):
            cfg = dataclasses.replace(cfg, scenarios=(*cfg.scenarios, *(p.resolve() for p in args.scenarios_from)))
        if getattr(args, "transport", None):
            cfg = dataclasses.replace(cfg, transport=args.transport)
        if getattr(args, "qemu", None):
            cfg = dataclasses.replace(cfg, qemu_binary=args.qemu)
        if getattr(args, "time", None) and args.command != "bench":  # bench takes a list of clocks
            cfg = dataclasses.replace(cfg, time=args.time)
        if args.command in ("list", "run"):
            from .run import cmd_list, cmd_run
            return cmd_list(cfg) if args.command == "list" else cmd_run(cfg, args)
        jobs = getattr(args, "jobs", None)  # None: by the guests' clock (runner.default_jobs)
        if args.command == "matrix":
            from ..cells.matrix import run_matrix
            return run_matrix(cfg, args.kernels, args.nics, args.scenarios, args.shard, jobs, args.results)[0]
        if args.command == "diff":
            from ..cells.matrix import run_diff
            return run_diff(cfg, [cfg.kernel(k).name for k in args.kernel], args.nics, args.scenarios, jobs,
                            args.results)
        if args.command == "soak":
            from ..cells.soak import soak
            if args.restore and not by_name(cfg.transport).restorable:
                raise UsageError("soak: --restore with transport ssh: an SSH guest always boots afresh "
                                 "(its keys are made for the run); drop --restore or use --transport serial")
            return soak(cfg, args.cycles, args.kernel and cfg.kernel(args.kernel).name, args.scenario,
                        cold=not args.restore)
        if args.command == "shell":
            from .shell import shell
            return shell(cfg, args.kernel, args.nic, args.cold)
        if args.command == "kernel":
            from .kernel import cmd_kernel
            return cmd_kernel(cfg, args)
        if args.command == "qemu":
            from .qemu import cmd_qemu
            return cmd_qemu(cfg, args)
        if args.command == "bench":
            from ..cells.bench import bench
            return bench(cfg, args.runs, args.json, [cfg.kernel(k).name for k in args.kernels or []] or None,
                         [cfg.nic(n) for n in args.nics or []] or None, jobs, args.time, args.full)
    except UsageError as e:
        print(f"testbed: {e}", file=sys.stderr)
        # under `git bisect run` a mistake of the command's, not of the commit's: stop the bisection
        return 128 if "--bisect" in (argv if argv is not None else sys.argv) else 2
    except NetworkError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("testbed: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `testbed list | head`: the reader has gone, end quietly as a shell tool does
        sys.stdout = open(os.devnull, "w")
        return 141
    return 0
