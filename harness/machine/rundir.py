"""Run directories: one private (0700) directory per running guest in the temp dir, named by the
owning process, holding its monitor socket and vm.json (what runs there, for `testbed link` and
for finding what a process left behind).  Directories of dead processes are swept away."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from collections.abc import Iterator

PREFIX = "testbed-run-"


def runs_root() -> Path:
    return Path(tempfile.gettempdir())


@contextlib.contextmanager
def run_dir() -> Iterator[Path]:
    """A fresh run directory for this process, removed on exit whatever happened."""
    remove_stale()
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=runs_root()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def describe(path: Path, info: dict):
    (path / "vm.json").write_text(json.dumps(info))


def running_vms() -> list[tuple[Path, dict]]:
    """The guests running on this host now (any testbed process): run dir and vm.json's description."""
    found = []
    for d in sorted(runs_root().glob(f"{PREFIX}*")):
        try:
            info = json.loads((d / "vm.json").read_text())
            os.kill(info["qemu_pid"], 0)
        except (OSError, ValueError, KeyError):
            continue
        found.append((d, info))
    return found


def leftovers(pid: int) -> list[str]:
    """QEMU processes and run directories that testbed process `pid` still has: after it has
    shut its guests down (or ended), there should be none."""
    mark = f"{PREFIX}{pid}-"
    procs = subprocess.run(["pgrep", "-af", mark], capture_output=True, text=True).stdout.splitlines()
    return procs + [str(d) for d in runs_root().glob(mark + "*")]


def remove_stale():
    """Run directories whose owning process is gone (it was SIGKILLed)."""
    for d in runs_root().glob(f"{PREFIX}*"):
        try:
            os.kill(int(d.name.split("-")[2]), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass
