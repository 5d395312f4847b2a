"""`testbed qemu build|status`: the QEMU with the testbed's 82598 model (harness/provision/qemu.py).
Both exit 3 when there is no such QEMU, so `make setup` can carry on without it."""
from __future__ import annotations

import sys

from ..provision import qemu
from ..errors import UsageError


def cmd_qemu(cfg, args) -> int:
    if args.action == "status":
        binary = qemu.find(cfg.cache)
        if binary is None:
            print(f"testbed: qemu status: {qemu.unavailable(cfg.cache)}", file=sys.stderr)
            return 3
        print(binary)
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"qemu build --jobs {args.jobs}: give 1 or more")
    try:
        qemu.build(cfg.cache, args.jobs, say=lambda s: print(f"testbed: {s}"))
    except qemu.QemuBuildError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 3
    return 0
