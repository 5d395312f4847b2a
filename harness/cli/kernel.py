"""`testbed kernel fetch|build`: the kernels of testbed.yaml, fetched (Debian packages, release
tarballs, Debian source packages) and built from source with kernel-config/."""
from __future__ import annotations

import sys

from ..provision import kbuild
from ..errors import UsageError


def cmd_kernel(cfg, args) -> int:
    if args.action == "fetch":
        for name in args.names or [n for n, s in cfg.kernels.items() if s.fetchable]:
            cfg.kernel(name).fetch(cfg.cache, say=lambda s: print(f"setup: {s}"))
        return 0
    if args.source:
        if not args.source.exists():
            raise UsageError(f"--source {args.source}: does not exist; give a kernel tree or a .tar.* of one")
        specs = [kbuild.BuildSpec(args.name or args.source.name.split(".tar")[0],
                                  kbuild.LocalTree(args.source.resolve()))]
    else:
        names = args.names or [n for n, s in cfg.kernels.items() if s.build]
        specs = []
        for name in names:
            build = cfg.kernel(name).build
            if build is None:
                raise UsageError(f"kernel {name}: is not built from source in {cfg.path}; nothing to build")
            specs.append(build)
    try:
        for spec in specs:
            out = kbuild.build(spec, cfg.cache, args.jobs, say=lambda s: print(f"testbed: {s}"))
            if args.source:
                print(f"use it from testbed.yaml:\n  kernels:\n    {spec.name}: {{image: {out / 'bzImage'}}}")
    except kbuild.BuildError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 3
    return 0
