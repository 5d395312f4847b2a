"""`make bench`: boot-to-ready (QEMU start to the agent's HELLO) for every kernel x NIC in
testbed.yaml.  Measured and printed, never asserted."""
from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from .config import Config
from .runner import prepare
from .vm import VM


def boot_times(cfg: Config, kernel_name: str, nic: str, runs: int) -> tuple[list[float], str]:
    """Boot-to-ready of `runs` cold boots, and the accelerator used."""
    target = prepare(cfg, kernel_name, nic)
    times = []
    with tempfile.TemporaryDirectory(prefix="testbed-bench-") as tmp:
        for i in range(runs):
            with VM(target.kernel, target.image, nic, target.settings, Path(tmp) / str(i)) as vm:
                times.append(vm.boot_seconds)
    return times, target.settings.accel


def bench(cfg: Config, runs: int, json_path: Path | None) -> int:
    rows = []
    print(f"boot-to-ready (QEMU start -> agent HELLO), {runs} runs each")
    print(f"{'kernel':<16} {'nic':<8} {'accel':<5} {'median':>8} {'min':>8} {'max':>8}")
    for kernel_name in cfg.kernels:
        for nic in cfg.nics:
            times, accel = boot_times(cfg, kernel_name, nic, runs)
            row = {"kernel": kernel_name, "nic": nic, "accel": accel, "runs": times,
                   "median": statistics.median(times), "min": min(times), "max": max(times)}
            rows.append(row)
            print(f"{kernel_name:<16} {nic:<8} {accel:<5} {row['median']:>7.2f}s {row['min']:>7.2f}s {row['max']:>7.2f}s",
                  flush=True)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"boot_to_ready": rows}, indent=1))
        print(f"written to {json_path}")
    return 0
