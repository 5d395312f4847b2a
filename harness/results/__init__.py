"""What a run produced, and only that: a Result per scenario x kernel x NIC, with its verdict,
its trace and where its artifacts are.  Written by the runner, read by reports, JUnit, KCIDB
and diffs, which need nothing else (no VM, no catalogue)."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..trace import TraceEntry


class Verdict(enum.StrEnum):
    PASSED = "passed"    # the kernel behaved as expected
    FAILED = "failed"    # it did not
    SKIPPED = "skipped"  # the scenario does not apply to this kernel or NIC (with the reason)
    ERROR = "error"      # the scenario could not run: QEMU, boot, agent, or the harness

    @property
    def exit_status(self) -> int:
        """The CLI's exit status for a run with this verdict."""
        return {Verdict.FAILED: 1, Verdict.ERROR: 3}.get(self, 0)


@dataclass
class Result:
    scenario: str
    kernel: str
    nic: str | None
    verdict: Verdict = Verdict.ERROR
    reason: str = ""
    description: str = ""  # what the scenario checks, and the kernel source it is about
    source: str = ""
    release: str = ""
    version: str = ""
    accel: str = ""
    time: str = ""  # the guest's clock: virtual (QEMU's instruction counter) or real
    boot_seconds: float | None = None  # QEMU start to the agent answering (boot or restore)
    from_snapshot: bool = False
    transport: str = "serial"  # how the host reached the agent: serial port or SSH
    duration: float = 0.0  # everything: preparing, starting the guest, the scenario, shutting down
    scenario_seconds: float = 0.0  # the scenario's own part of it
    # host CPU time of the whole: QEMU's (all its threads) and the harness's (the threads that ran
    # the cell and served its guest); None when not measured
    qemu_cpu_seconds: float | None = None
    harness_cpu_seconds: float | None = None
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

    @classmethod
    def load(cls, path: Path) -> Result:
        """A result.json written by save()."""
        d = json.loads(path.read_text())
        trace = [TraceEntry(e.pop("t"), e.pop("actor"), e.pop("text"), e) for e in d.pop("trace")]
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["verdict"] = Verdict(known.get("verdict", Verdict.ERROR))
        return cls(**known, trace=trace)

    @property
    def cell(self) -> str:
        return cell_name(self.scenario, self.kernel, self.nic)


def cell_name(scenario: str, kernel_name: str, nic: str | None) -> str:
    """One scenario on one kernel x NIC: the name of its test, and of its artifacts directory."""
    return f"{scenario}-{kernel_name}-{nic or 'nonic'}"


