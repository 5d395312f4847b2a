"""A tarball unpacked once into the cache, where every build of it finds the same pristine tree."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


class UnpackError(Exception):
    """tar could not unpack the tarball: what tar said."""


def unpacked_once(tarball: Path, where: Path) -> list[Path]:
    """The top-level entries of `tarball` unpacked into `where`, unpacking it first if that is not
    done yet: into a temporary directory renamed when complete, so an interrupted unpack (a kernel
    tree is 1.3 GB) leaves nothing half-made in the way.  UnpackError with tar's words."""
    if not where.exists():
        tmp = where.with_name(where.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            r = subprocess.run(["tar", "-xf", str(tarball), "-C", str(tmp)], capture_output=True, text=True)
            if r.returncode:
                raise UnpackError(r.stderr.strip())
            tmp.rename(where)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return sorted(where.iterdir())
