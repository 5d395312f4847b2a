"""Running a scenario: config -> kernel + guest image -> VM -> scenario -> Result."""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
import traceback
from pathlib import Path
from collections.abc import Callable, Iterator

from ..agent import AgentError
from ..agent.protocol import Op
from ..provision import image
from ..provision import qemu as qemu_build
from ..config import Config
from ..errors import UsageError, did_you_mean
from ..machine import VMError, accel
from ..machine.monitor import MonitorError
from ..machine.qemu import QemuSettings, stop_all
from ..nic import NICS, resolve as resolve_nic
from ..results import Result, Verdict, cell_name
from ..scenario import Failed, Guest, ScenarioInfo, Skip, load_catalogue
from ..trace import Trace
from ..transport import by_name
from ..vm import VM, Cost, Target
from . import snapshot


def default_jobs(time_mode: str) -> int:
    """Guests at a time when running many scenarios.  A real-time guest spends most of a scenario
    waiting on the kernel's timers, so twice the CPUs keeps them busy; a virtual-time guest
    fast-forwards through those waits and needs a CPU meanwhile (README, "Virtual time")."""
    return (os.cpu_count() or 1) * (1 if time_mode == "virtual" else 2)


def lookup(cfg: Config, name: str) -> ScenarioInfo:
    """The scenario `name` among the built-in ones and those of cfg.scenarios."""
    known = load_catalogue(cfg.scenarios)
    if name not in known:
        raise UsageError(f"scenario {name!r}: no such scenario; `testbed list` shows them: "
                         f"{', '.join(known)}{did_you_mean(name, known)}")
    return known[name]


def qemu_for(cfg: Config, nic: str | None) -> tuple[str, tuple[Path, ...]]:
    """The QEMU binary that runs the NIC named `nic`, and the firmware directories it needs (-L):
    the one the testbed builds for its own models (and for every NIC with qemu.binary: testbed),
    else qemu.binary.  Skip, with the reason, when that build is not there.  By name, without
    sysfs: reports ask it per NIC name, and a pass-through card is never the testbed's model."""
    own_model = nic in NICS and NICS[nic].testbed_model
    if cfg.qemu_binary != qemu_build.TESTBED and not own_model:
        return cfg.qemu_binary, ()
    built = qemu_build.find(cfg.cache)
    if built is None:
        raise Skip(f"{nic or 'qemu.binary: testbed'} needs the QEMU the testbed builds, which is not there: "
                   f"{qemu_build.unavailable(cfg.cache)}")
    return str(built), qemu_build.FIRMWARE


_prepared: dict[tuple, Target] = {}


def prepare(cfg: Config, kernel_name: str | None, nic: str | None, transport: str = "serial") -> Target:
    """The kernel, guest image and QEMU settings for one kernel x NIC, and how the agent is
    reached (serial or ssh); worked out once per process for the same inputs.  Skip when the
    NIC's QEMU is not built (qemu_for)."""
    spec = cfg.kernel(kernel_name)
    key = (repr(spec), nic, transport, cfg.cache, cfg.guest_binaries, cfg.qemu_binary, cfg.accel, cfg.memory_mb,
           cfg.boot_timeout, cfg.time)
    if key not in _prepared:
        device = resolve_nic(nic) if nic else None  # a pass-through card's sysfs is read here only
        k = spec.resolve(cfg.cache)
        img = image.build(k, device, cfg.cache, cfg.guest_binaries, by_name(transport).guest_additions())
        binary, firmware = qemu_for(cfg, nic)
        # whether KVM works is the host's to say: probed with the system QEMU, whichever runs the guest
        system = cfg.qemu_binary if cfg.qemu_binary != qemu_build.TESTBED else QemuSettings.binary
        chosen = accel.choose(cfg.accel, system, k.image, cfg.cache)
        settings = QemuSettings(binary, chosen, cfg.memory_mb, cfg.boot_timeout,
                                accel.choose_time(cfg.time, chosen), firmware)
        _prepared[key] = Target(k, img, device, settings, transport)
    return _prepared[key]


@contextlib.contextmanager
def ready_vm(cfg: Config, target: Target, artifacts: Path, cold: bool = False,
             spent: list[Cost] | None = None) -> Iterator[VM]:
    """A ready guest for `target`: restored from its snapshot (taken on first use), or booted
    afresh when `cold`.  A snapshot that will not restore is discarded and the guest booted.
    A guest whose transport cannot be restored (SSH: its keys are made for the run) always boots;
    one with a VFIO card too: a host device does not migrate.  What the other guests started on
    the way cost (the boot that took the snapshot, a restore that failed) goes to `spent`."""
    spent = [] if spent is None else spent
    cold = cold or not by_name(target.transport).restorable or bool(target.nic and not target.nic.emulated)
    too_old = None if cold else snapshot.unsupported(target.settings.binary)
    snap = None if cold or too_old else snapshot.ensure(target, cfg.cache, artifacts / "snapshot-boot", spent)
    restoring = VM(target, artifacts, snapshot=snap)
    try:
        vm = restoring.__enter__()
    except VMError as e:
        if snap is None:
            raise
        spent.append(restoring.cpu_seconds())
        snapshot.discard(snap)
        vm = VM(target, artifacts).__enter__()
        vm.notes.append(f"restoring {snap.path} failed ({e}): discarded it and booted afresh")
    if too_old:
        vm.notes.append(too_old)
    try:
        yield vm
    finally:
        vm.shutdown()


def ready_note(vm: VM) -> str:
    how = (f"restored from a snapshot in {vm.boot_seconds:.2f} s (its boot took {vm.snapshot.boot_seconds:.2f} s)"
           if vm.snapshot else f"booted in {vm.boot_seconds:.2f} s")
    nic = vm.nic.model if vm.nic else "no NIC"
    return (f"guest ready: kernel {vm.hello.get('RELEASE')}, {nic}, {vm.settings.accel.upper()}, {how}; "
            f"times are the guest's CLOCK_MONOTONIC, on a {vm.settings.clock()} clock")


def begin(vm: VM, trace: Trace):
    """Start `trace` on a ready guest: its times count from now on the guest's clock, its first
    lines say how the guest became ready.  Skip when the kernel has no driver for the NIC.
    On the virtual clock the guest runs in lock-step with the host from here on (VM.lock_step):
    idle, it would otherwise fast-forward through its timers at a core's full speed meanwhile."""
    if vm.settings.time == "virtual":
        vm.lock_step()
    trace.start_clock(vm.agent.call(Op.PING)["T_NS"], lambda: vm.agent.latest_ns)
    for note in [*vm.notes, ready_note(vm)]:
        trace.add("note", note)
    if vm.nic and vm.agent.call(Op.READ_FILE, path="/sys/class/net/eth0/ifindex").ret < 0:
        raise Skip(f"kernel {vm.kernel.release} has no driver for {vm.nic.model} (no eth0 after boot)")


def run_cell(cfg: Config, name: str, kernel_name: str | None = None, nic: str | None = None,
        artifacts: Path | None = None, cold: bool = False, transport: str | None = None) -> Result:
    info = lookup(cfg, name)
    kernel_name = kernel_name or cfg.default_kernel
    nic = cfg.nic(nic) if info.needs_nic else None
    artifacts = artifacts or cfg.results / "runs" / cell_name(name, kernel_name, nic)
    result = Result(name, kernel_name, nic, description=info.description, source=info.source, artifacts=str(artifacts))
    started, cpu_started = time.monotonic(), time.thread_time()
    trace = Trace()
    vm = None
    spent: list[Cost] = []  # other guests this cell started: its snapshot's boot, a failed restore
    try:
        try:
            if not info.applies_to(nic):
                raise Skip(f"{name} is about the {', '.join(info.nics)} driver, not {nic}")
            target = prepare(cfg, kernel_name, nic, transport or cfg.transport)
        except Skip as e:  # not this NIC's, or its QEMU is not there: the rest of a matrix still runs
            result.verdict, result.reason = Verdict.SKIPPED, str(e)
            result.duration = time.monotonic() - started
            result.save()
            return result
        result.release, result.version = target.kernel.release, target.kernel.version_str
        result.accel, result.transport, result.time = target.settings.accel, target.transport, target.settings.time
        with ready_vm(cfg, target, artifacts, cold, spent) as vm:
            result.boot_seconds, result.from_snapshot = vm.boot_seconds, vm.snapshot is not None
            try:
                begin(vm, trace)
                began = time.monotonic()
                try:
                    info.func(Guest(vm, trace))
                finally:
                    result.scenario_seconds = time.monotonic() - began
                result.verdict = Verdict.PASSED
            except Failed as e:
                result.verdict, result.reason = Verdict.FAILED, str(e)
            except Skip as e:
                result.verdict, result.reason = Verdict.SKIPPED, str(e)
            except (AgentError, MonitorError) as e:
                # the guest or QEMU broke mid-scenario: report what the console/QEMU said
                raise vm.diagnose(e) from None
    except VMError as e:
        result.verdict, result.reason = Verdict.ERROR, str(e)
    except UsageError:
        raise
    except Exception as e:  # a bug in a scenario or the harness: keep the traceback with the result
        result.verdict, result.reason = Verdict.ERROR, f"{type(e).__name__}: {e}"
        trace.add("note", traceback.format_exc())
    result.duration = time.monotonic() - started
    if costs := [*spent, *([vm.cpu_seconds()] if vm is not None else [])]:
        qemu = [q for q, _ in costs]
        result.qemu_cpu_seconds = None if None in qemu else sum(filter(None, qemu))
        result.harness_cpu_seconds = time.thread_time() - cpu_started + sum(served for _, served in costs)
    result.trace = sorted(trace.entries, key=lambda e: e.t)  # streamed events interleave with host actions
    result.save()
    return result


def cases(cfg: Config, kernels: list[str] | None = None, nics: list[str] | None = None,
          names: list[str] | None = None) -> list[tuple[str, str, str | None]]:
    """(scenario, kernel, nic) for every scenario on every kernel x NIC it applies to; scenarios
    that need no NIC run once per kernel."""
    chosen = [lookup(cfg, n) for n in names] if names else list(load_catalogue(cfg.scenarios).values())
    return [(s.name, k, nic) for k in kernels or cfg.kernels
            for s in chosen for nic in ((nics or cfg.nics) if s.needs_nic else [None]) if s.applies_to(nic)]


def prepare_all(cfg: Config, todo: list[tuple[str, str, str | None]]) -> list[Target]:
    """Every kernel x NIC of `todo` prepared here, not in the workers: builds and usage errors
    surface once.  A cell that cannot be prepared (its QEMU not built) is left out: its runs skip."""
    targets = []
    for k, nic in dict.fromkeys((k, nic) for _, k, nic in todo):
        try:
            targets.append(prepare(cfg, k, nic, cfg.transport))
        except Skip:
            pass
    return targets


def jobs_for(cfg: Config, todo: list[tuple[str, str, str | None]], jobs: int | None) -> int:
    """`jobs`, or the default for the guests' clock."""
    targets = prepare_all(cfg, todo)
    return jobs or default_jobs(targets[0].settings.time if targets else "real")


def run_cells(cfg: Config, todo: list[tuple[str, str, str | None]], jobs: int | None, root: Path,
             done: Callable[[Result], None] = lambda r: None) -> list[Result]:
    """Run `todo` with up to `jobs` guests at once (default: by their clock), each restored from
    its kernel x NIC's snapshot, artifacts under root/<scenario>-<kernel>-<nic>; `done` sees each
    result as it comes.  Ctrl-C kills every guest, lets each run record its error, and re-raises."""
    jobs = jobs_for(cfg, todo, jobs)
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_cell, cfg, n, k, nic, root / cell_name(n, k, nic)) for n, k, nic in todo]
        try:
            for f in concurrent.futures.as_completed(futures):
                results.append(f.result())
                done(results[-1])
        except BaseException:
            for f in futures:
                f.cancel()
            stop_all()
            raise
    return results
