"""Running a scenario: config -> kernel + guest image -> VM -> scenario -> Result."""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import accel, image, kernel
from .agent import AgentError
from .config import Config
from .errors import UsageError, did_you_mean
from .monitor import MonitorError
from .protocol import Op
from .scenario import SCENARIOS, Failed, Guest, ScenarioInfo, Skip, Trace, TraceEntry
from .vm import VM, QemuSettings, VMError
from . import scenarios as _catalogue  # noqa: F401  (registers the scenarios)

PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass
class Result:
    scenario: str
    kernel: str
    nic: str | None
    verdict: str = ERROR
    reason: str = ""
    release: str = ""
    version: str = ""
    accel: str = ""
    boot_seconds: float | None = None
    duration: float = 0.0
    artifacts: str = ""
    trace: list[TraceEntry] = field(default_factory=list)

    def verdict_line(self) -> str:
        where = f"{self.scenario} on {self.kernel} ({self.version or '?'})" + (f" with {self.nic}" if self.nic else "")
        return f"{self.verdict.upper()}: {where}" + (f": {self.reason}" if self.reason else "")

    def save(self) -> None:
        """result.json and trace.txt beside the console, QMP and agent logs."""
        where = Path(self.artifacts)
        where.mkdir(parents=True, exist_ok=True)
        (where / "result.json").write_text(json.dumps(self.as_dict(), indent=1))
        (where / "trace.txt").write_text("".join(e.line() + "\n" for e in self.trace) + self.verdict_line() + "\n")

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "trace"}
        d["trace"] = [{"t": round(e.t, 6), "actor": e.actor, "text": e.text, **e.data} for e in self.trace]
        return d


def lookup(name: str) -> ScenarioInfo:
    if name not in SCENARIOS:
        raise UsageError(f"scenario {name!r}: no such scenario; `testbed list` shows them: "
                         f"{', '.join(SCENARIOS)}{did_you_mean(name, SCENARIOS)}")
    return SCENARIOS[name]


@dataclass
class Target:
    """Everything needed to boot one kernel x NIC."""
    kernel: kernel.Kernel
    image: image.GuestImage
    nic: str | None
    settings: QemuSettings


def prepare(cfg: Config, kernel_name: str | None, nic: str | None) -> Target:
    k = kernel.resolve(cfg.kernel(kernel_name), cfg.cache)
    img = image.build(k, nic, cfg.cache, cfg.guest_binaries)
    settings = QemuSettings(cfg.qemu_binary, accel.choose(cfg.accel, cfg.qemu_binary, k.image, cfg.cache),
                            cfg.memory_mb, cfg.boot_timeout)
    return Target(k, img, nic, settings)


def run(cfg: Config, name: str, kernel_name: str | None = None, nic: str | None = None,
        artifacts: Path | None = None) -> Result:
    info = lookup(name)
    kernel_name = kernel_name or cfg.default_kernel
    nic = cfg.nic(nic) if info.needs_nic else None
    cfg.kernel(kernel_name)
    artifacts = artifacts or cfg.results / "runs" / f"{name}-{kernel_name}-{nic or 'nonic'}"
    result = Result(name, kernel_name, nic, artifacts=str(artifacts))
    started = time.monotonic()
    trace = Trace()
    try:
        target = prepare(cfg, kernel_name, nic)
        result.release, result.version = target.kernel.release, target.kernel.version_str
        result.accel = target.settings.accel
        with VM(target.kernel, target.image, nic, target.settings, artifacts) as vm:
            result.boot_seconds = vm.boot_seconds
            trace = Trace()  # the scenario's clock starts once the guest is ready
            trace.add("note", f"guest ready: kernel {vm.guest_release}, {nic or 'no NIC'}, "
                              f"{target.settings.accel.upper()}, boot {vm.boot_seconds:.2f} s")
            try:
                if nic and vm.agent.call(Op.READ_FILE, path="/sys/class/net/eth0/ifindex").ret < 0:
                    raise Skip(f"kernel {target.kernel.release} has no driver for {nic} (no eth0 after boot)")
                info.func(Guest(vm, trace))
                result.verdict = PASSED
            except Failed as e:
                result.verdict, result.reason = FAILED, str(e)
            except Skip as e:
                result.verdict, result.reason = SKIPPED, str(e)
            except (AgentError, MonitorError) as e:
                # the guest or QEMU broke mid-scenario: report what the console/QEMU said
                raise vm.diagnose(e) from None
    except VMError as e:
        result.verdict, result.reason = ERROR, str(e)
    except UsageError:
        raise
    except Exception as e:  # a bug in a scenario or the harness: keep the traceback with the result
        result.verdict, result.reason = ERROR, f"{type(e).__name__}: {e}"
        trace.add("note", traceback.format_exc())
    result.duration = time.monotonic() - started
    result.trace = trace.entries
    result.save()
    return result
