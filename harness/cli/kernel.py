"""`testbed kernel fetch|build`: the kernels of testbed.yaml, fetched (Debian packages, release
tarballs) and built from source with kernel-config/."""
from __future__ import annotations

import sys

from ..build import kbuild, kernel
from ..errors import UsageError


def cmd_kernel(cfg, args) -> int:
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
