"""One guest: a QEMU process with the NIC under test, its console, its monitor and its agent,
reached over a transport (serial port or SSH).

    with VM(Target(kernel, image, NICS["igb"], settings), artifacts=Path("results/x")) as vm:
        vm.agent.call(Op.PING)
        vm.monitor.set_link(vm.nic_id, False)

Every resource is taken in `launch` and its release registered on one ExitStack right there, so
leaving the context — normally, on an exception, on Ctrl-C — stops QEMU (QMP quit, then kill),
reaps it, ends the threads and removes the run directory, in that order.  QEMU also dies with
this process (PR_SET_PDEATHSIG); run directories of dead processes are removed at the next
launch.  Any failure (a fatal console line, QEMU exiting, a broken channel) reaches whoever
waits on the agent, with its cause.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from .agent import Agent, AgentError
from .agent.protocol import Op
from .provision.image import GuestImage
from .provision.kernel import Kernel
from .machine import VMError, rundir
from .machine.brake import Brake
from .machine.console import Console
from .machine.monitor import Monitor, MonitorError
from .machine.qemu import (IGNORE_SHARED, NIC_ID, Qemu, QemuSettings, qemu_command,
                            ram_in_file, widen_for_uart)
from .nic import Nic
from .transport import Reach, TransportError, by_name
from .wait import Deadline, until


# What a guest cost the host in CPU seconds: QEMU's (None if it could not be read), and that of
# the harness threads that served it (console, agent channel).
Cost = tuple[float | None, float]


@dataclass
class Target:
    """What to boot: one kernel x NIC with its guest image and QEMU settings, and the name of the
    transport that reaches the agent (its image must have what the transport adds)."""
    kernel: Kernel
    image: GuestImage
    nic: Nic | None  # resolved once, where the target is prepared
    settings: QemuSettings
    transport: str = "serial"


class Saved(Protocol):
    """A guest saved stopped (QMP migrate to a file) to start from instead of booting
    (harness.cells.snapshot.Snapshot)."""
    path: Path  # the devices' state (QMP migrate with IGNORE_SHARED)
    hello: dict  # the agent's HELLO from the boot that was saved
    boot_seconds: float  # that boot's QEMU start to HELLO

    def open(self) -> tuple[BinaryIO, BinaryIO]:
        """The devices' state and the guest's RAM (ram_in_file), from the same save."""


class VM:
    def __init__(self, target: Target, artifacts: Path, snapshot: Saved | None = None, ram: Path | None = None):
        """Restored from `snapshot`, or booted, with its RAM in the file `ram` if given (a boot
        that is to be saved: harness.cells.snapshot)."""
        self.target, self.artifacts, self.snapshot, self.ram = target, artifacts, snapshot, ram
        self.kernel, self.nic, self.settings = target.kernel, target.nic, target.settings
        self.nic_id = NIC_ID
        self.console_log = artifacts / "console.log"
        self.transport = by_name(target.transport)()
        # the guest's parts, each set by launch() (reading one before it is an AttributeError)
        self.run_dir: Path
        self.qemu: Qemu
        self.console: Console
        self.monitor: Monitor
        self.brake: Brake
        self.agent: Agent
        self._attached: Agent | None = None  # the agent the guest's failures go to, once there is one
        self.boot_seconds: float  # QEMU's start to a ready agent, set by launch()
        self.hello: dict = {}  # the agent's HELLO: VERSION, RELEASE, PID
        self.notes: list[str] = []  # what happened on the way to a ready guest, for the trace
        self.failure: Exception | None = None  # what broke the guest (first wins), for the agent's waiters
        self._failure_lock = threading.Lock()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> VM:
        try:
            self.launch()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def shutdown(self):
        """Release everything launch took, last taken first (see launch); safe to call twice."""
        self._stack.close()

    def cpu_seconds(self) -> Cost:
        """After shutdown, what this guest cost the host."""
        return self.qemu.cpu_seconds, self.console.cpu_seconds + (self._attached.cpu_seconds if self._attached else 0)

    def launch(self):
        stack = self._stack
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.run_dir = stack.enter_context(rundir.run_dir())
        pairs = {name: socket.socketpair() for name in ("console", "agent", "qmp", "brake")}
        for name in ("console", "agent"):
            widen_for_uart(pairs[name][1])
        for host_end, _ in pairs.values():
            stack.callback(host_end.close)
        initrd = self.transport.initrd(self.target.image.path, self.run_dir)
        append = self.settings.kernel_command_line(self.transport.kernel_args())
        cmd = qemu_command(self.settings, self.kernel.boot_image, initrd, self.nic,
                           {name: p[1].fileno() for name, p in pairs.items()}, self.run_dir, append,
                           self.transport.qemu_options(), virtio_agent=self.kernel.virtio_console)
        inherited = [p[1].fileno() for p in pairs.values()]
        if self.snapshot:  # QEMU opens the files the harness holds: a retake cannot swap them meanwhile
            try:
                state, ram = self.snapshot.open()
            except OSError as e:
                raise VMError(f"snapshot {self.snapshot.path}: {e}", self.console_log) from None
            for f in (state, ram):
                stack.callback(f.close)
                inherited.append(f.fileno())
            state_file = f"/proc/self/fd/{state.fileno()}"  # loaded once IGNORE_SHARED is set (_restore)
            cmd += ["-incoming", "defer",
                    *ram_in_file(Path(f"/proc/self/fd/{ram.fileno()}"), self.settings.memory_mb, saving=False)]
        elif self.ram:
            cmd += ram_in_file(self.ram, self.settings.memory_mb, saving=True)
        try:
            self.qemu = Qemu(cmd, self.artifacts / "qemu.log", inherited,
                             on_exit=self._exited, console_log=self.console_log)
        finally:
            for _, guest_end in pairs.values():
                guest_end.close()
        stack.callback(self._end_threads, [p[0] for p in pairs.values()])
        stack.callback(self.qemu.kill)
        self.console = Console(pairs["console"][0], self.console_log, self.qemu.started, self.fail,
                               self.transport.console_fatal, self.transport.console_signals)
        self.monitor = Monitor(pairs["qmp"][0], self.artifacts / "qmp.log")
        stack.callback(self.monitor.close)
        self.brake = Brake(pairs["brake"][0], self.artifacts / "brake.log")
        stack.callback(self.brake.close)
        stack.callback(self._close_agent)
        stack.callback(self._stop_gracefully)
        deadline = Deadline(self.settings.boot_timeout)
        try:
            self.monitor.connect()
            reach = Reach(pairs["agent"][0], self.monitor, self.artifacts / "agent.log", self._console_line,
                          self.notes.append)
            self._attach(self.transport.open_agent(reach, deadline))
            if self.snapshot:
                self.hello = self._restore(self.snapshot, state_file, deadline)
            else:
                self.hello = self.agent.wait_ready(max(deadline.left(), 1))
        except (AgentError, MonitorError, TransportError) as e:
            raise self.diagnose(e) from None
        self.boot_seconds = time.monotonic() - self.qemu.started
        rundir.describe(self.run_dir, {
            "kernel": self.kernel.name, "release": self.hello.get("RELEASE"),
            "nic": self.nic.model if self.nic else None, "nic_id": self.nic_id,
            "transport": self.transport.name, "pid": os.getpid(), "qemu_pid": self.qemu.pid,
            "console_log": str(self.console_log)})

    def lock_step(self):
        """From now on the guest runs only while the host waits on it (Agent.lock_step), so its
        clock stands still while the host thinks; the brake continues it."""
        self.brake.engage()
        self.agent.lock_step(self.brake)

    def _console_line(self, line: str, seconds: float) -> bool:
        """Wait for a console line the transport asked the console to watch for (see Reach)."""
        seen = self.console.seen[line]
        came = until(lambda: self.failure is not None or seen.is_set(), seconds, 0.02)
        if self.failure is not None:
            raise self.failure
        return bool(came)

    def _restore(self, snapshot: Saved, state_file: str, deadline: Deadline) -> dict:
        """Have QEMU (started with `-incoming defer`) load the saved guest, resume it once loaded,
        and wait until the agent answers; the saved boot's HELLO.  Nothing is sent before: bytes
        that reach the UART while it loads would be overwritten."""
        path = snapshot.path
        self.monitor.command("migrate-set-capabilities", capabilities=IGNORE_SHARED)
        self.monitor.command("migrate-incoming", uri=f"file:{state_file}")
        status = until(lambda: (s := self.monitor.command("query-status")["status"]) != "inmigrate" and s,
                       deadline.left(), interval=0.002)
        if not status:
            raise VMError(f"restoring {path} took more than {deadline.seconds:g} s", self.console_log)
        if status != "paused":  # the guest was saved stopped, so it comes back paused
            raise VMError(f"restoring {path} left the guest {status!r}", self.console_log)
        self.monitor.command("cont")
        self.agent.call(Op.PING, timeout=max(deadline.left(), 1))
        return snapshot.hello

    # ---- failures ----

    def _attach(self, agent: Agent):
        """Make `agent` the one whose waiters hear of the guest's failures, past ones included."""
        with self._failure_lock:
            self.agent = self._attached = agent
            failure = self.failure
        if failure:
            agent.fail(failure)

    def fail(self, exc: Exception):
        """The guest is broken by `exc`: every current and future wait on its agent raises it
        (the first failure wins).  The console and QEMU's exit report here."""
        with self._failure_lock:
            self.failure = self.failure or exc
            agent = self._attached
        if agent:
            agent.fail(exc)

    def _exited(self, exc: VMError):
        """QEMU exited by itself.  What the console said on the way out (a panic, the init's
        "agent exited") names the cause better than the exit status: let it be read first."""
        console: Console | None = getattr(self, "console", None)  # None: QEMU exited before launch made it
        if console:
            console.join()  # it ends at QEMU's end of the socket
        self.fail(exc)

    def diagnose(self, cause: Exception) -> VMError:
        """A VMError saying what went wrong, preferring what the console or QEMU said."""
        if isinstance(cause, VMError):
            return cause
        # A closed monitor or channel usually means QEMU is exiting, or the console is about to
        # say why (over SSH the session can end before the console line arrives): let them finish.
        until(lambda: not self.qemu.running() or isinstance(self.failure, VMError), timeout=1)
        if not self.qemu.running():
            self.console.join()  # what it printed on the way out (the init's line) names the cause
        if isinstance(self.failure, VMError):
            return self.failure
        if not self.qemu.running():
            return self.qemu.exit_error(self.qemu.proc.returncode)
        return VMError(f"{cause}; last console line: {self.console.last_line()!r}", self.console_log)

    # ---- the steps of shutdown, registered in launch ----

    def _stop_gracefully(self):
        """Let the kernel finish a failure report, then QMP quit."""
        self.console.wait_for_oops()
        self.qemu.quit(self.monitor)

    def _close_agent(self):
        if self._attached:
            self._attached.close()
        self.transport.close()

    def _end_threads(self, host_ends: list[socket.socket]):
        for s in host_ends:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        if self.console:
            self.console.join()
