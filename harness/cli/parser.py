"""The command line: one parser, the options several commands share declared once (argparse
parents); every mistake is one line and exit 2 (a UsageError), never argparse's usage dump."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import TIMES, TRANSPORTS
from ..errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _option_groups() -> dict[str, _Parser]:
    """The options several commands share, each declared once (argparse parents)."""
    groups = {name: _Parser(add_help=False)
              for name in ("guest", "transport", "cells", "jobs", "time", "scenarios", "qemu")}
    groups["scenarios"].add_argument("--scenarios-from", type=Path, action="append", metavar="PATH",
                                     help="scenario files or directories besides testbed.yaml's (repeatable)")
    groups["guest"].add_argument("--kernel", help="a kernel named in testbed.yaml")
    groups["guest"].add_argument("--nic", help="NIC model: igb, e1000e, e1000, ixgbe (the testbed's 82598), "
                                               "or vfio:DOMAIN:BUS:DEV.FN")
    groups["transport"].add_argument("--transport", choices=TRANSPORTS,
                                     help="reach the agent over the serial port or SSH to the guest's sshd "
                                          "(default: testbed.yaml's)")
    groups["cells"].add_argument("--nics", nargs="+", help="NIC models (default: those in testbed.yaml)")
    groups["cells"].add_argument("--scenarios", nargs="+", help="scenario names (default: all)")
    groups["cells"].add_argument("--results", type=Path,
                                 help="results directory (default: results/<command>/<date-time>)")
    groups["jobs"].add_argument("--jobs", type=int, help="guests at a time (default: by the guest clock: "
                                                         "the CPUs for virtual, twice them for real)")
    groups["time"].add_argument("--time", choices=TIMES,
                                help="the guest's clock: virtual (QEMU's instruction counter; waits on the guest's "
                                     "timers cost no host time) or real; auto (default: testbed.yaml's qemu.time) "
                                     "is virtual with TCG, real with KVM")
    groups["qemu"].add_argument("--qemu", metavar="BINARY",
                                help="the QEMU to run every NIC on: a program or path, or `testbed` for the one "
                                     "`testbed qemu build` makes (default: testbed.yaml's qemu.binary; ixgbe always "
                                     "runs on the testbed's)")
    return groups


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="testbed", description="QEMU testbed for Linux netlink and NIC link-state behaviour")
    p.add_argument("--config", help="configuration file (default: $TESTBED_CONFIG, else testbed.yaml here or in "
                                    "the nearest parent directory)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    g = _option_groups()
    sub.add_parser("list", help="list the scenarios and where each is defined", parents=[g["scenarios"]])
    run = sub.add_parser("run", help="run one scenario and print its trace",
                         parents=[g["guest"], g["transport"], g["time"], g["scenarios"], g["qemu"]])
    run.add_argument("scenario", help="a scenario's name, or FILE.py::NAME (FILE.py alone: its only scenario)")
    run.add_argument("--json", action="store_true", help="print the result as JSON (every attribute of every message)")
    run.add_argument("--kernel-source", type=Path, metavar="PATH",
                     help="build the kernel tree at PATH with kernel-config/ (cached) and run on it")
    run.add_argument("--bisect", action="store_true",
                     help="exit as `git bisect run` wants: 0 passed, 1 failed, 125 cannot test (build failed, "
                          "skipped, infrastructure error)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="show every attribute of every message, not only those that changed")
    run.add_argument("--cold", action="store_true",
                     help="boot the guest afresh instead of restoring the kernel x NIC's snapshot")
    mx = sub.add_parser("matrix", help="scenarios x kernels x NICs into one results directory (for CI)",
                        parents=[g["cells"], g["jobs"], g["transport"], g["time"], g["scenarios"], g["qemu"]])
    mx.add_argument("--kernels", nargs="+", help="kernels named in testbed.yaml (default: all)")
    mx.add_argument("--shard", help="I/N: run only the I-th of N deterministic shares of the cells")
    rep = sub.add_parser("report", help="rewrite report.html and kcidb.json of matrix results; --merge shards")
    rep.add_argument("dirs", nargs="+", type=Path, help="results directories of `testbed matrix`")
    rep.add_argument("--merge", action="store_true", help="merge the directories (CI shards) into --out")
    rep.add_argument("--out", type=Path, help="where the merged results go (default: results/merged)")
    df = sub.add_parser("diff",
                        help="run the catalogue on several kernels (or NICs) and print what they did differently",
                        parents=[g["cells"], g["jobs"], g["time"], g["scenarios"], g["qemu"]])
    df.add_argument("--kernel", action="append", required=True,
                    help="a kernel named in testbed.yaml: twice or more to compare kernels, once with --nics A B to "
                         "compare NICs")
    so = sub.add_parser("soak", help="many consecutive boot + scenario cycles: flakes, leftovers, slowest",
                        parents=[g["transport"], g["time"], g["qemu"]])
    so.add_argument("--cycles", type=int, default=200)
    so.add_argument("--kernel", help="a kernel named in testbed.yaml")
    so.add_argument("--scenario", default="carrier-qmp", help="the scenario of each cycle (default: carrier-qmp)")
    so.add_argument("--restore", action="store_true", help="restore the snapshot instead of booting each cycle")
    sh = sub.add_parser("shell", help="a shell on a fresh guest (its console, or ssh), the agent running beside it",
                        parents=[g["guest"], g["transport"], g["time"], g["qemu"]])
    sh.add_argument("--cold", action="store_true", help="boot afresh instead of restoring the snapshot")
    # A person types at a person's pace: between keystrokes an idle guest's virtual clock would
    # leap from timer to timer (`sleep 5` returning at once), so the shell keeps the host's time
    # unless --time says otherwise; testbed.yaml's qemu.time is for runs.
    sh.set_defaults(time="real")
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
    qemu = sub.add_parser("qemu", help="the QEMU with the testbed's 82598 model (qemu-model/ixgbe.c)")
    qsub = qemu.add_subparsers(dest="action", required=True, parser_class=_Parser)
    qbuild = qsub.add_parser("build", help="build qemu-system-x86_64 with the model from Debian's source of the "
                                           "installed QEMU (cached; a changed model recompiles one file)")
    qbuild.add_argument("--jobs", type=int, help="parallel jobs (default: the number of CPUs)")
    qsub.add_parser("status", help="the binary built from the current model, or why there is none")
    bench = sub.add_parser("bench", help="measure boot, restore, per-scenario, catalogue and matrix times per "
                                         "kernel x NIC, virtual and real clock side by side",
                           parents=[g["jobs"], g["qemu"]])
    bench.add_argument("--time", choices=TIMES[1:], action="append",
                       help="measure this clock only (repeatable; default: both where the accelerator allows)")
    bench.add_argument("--runs", type=int, help="repetitions of each figure (default: 1 quick, 3 with --full)")
    bench.add_argument("--full", action="store_true",
                       help="every kernel x NIC, SSH boots, scaling and the whole matrix per clock "
                            "(default: quick, every kernel with the first NIC)")
    bench.add_argument("--kernels", nargs="+", help="kernels named in testbed.yaml (default: all)")
    bench.add_argument("--nics", nargs="+", help="NIC models (default: those in testbed.yaml)")
    bench.add_argument("--json", type=Path, help="also write the figures to this file")
    return p
