"""One QEMU process running one guest: the NIC under test, the console, the monitor and the agent.

    with VM(Target(kernel, image, "igb", settings), artifacts=Path("results/x")) as vm:
        vm.agent.call(Op.PING)
        vm.monitor.set_link(vm.nic_id, False)

The VM is a context manager whose exit always reaps QEMU (QMP quit, then kill) and removes its
run directory, on exceptions and Ctrl-C too.  QEMU also dies with this process (PR_SET_PDEATHSIG),
so a killed host process leaves no QEMU behind; run directories of dead processes are removed
at the next launch.  The console is always drained to console.log and watched for panics.
"""
from __future__ import annotations

import collections
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .transport import ssh
from .agent import Agent, AgentError
from .children import die_with_parent
from .build.image import GuestImage
from .build.kernel import Kernel
from .machine.monitor import Monitor, MonitorError
from .nic import resolve as resolve_nic
from .agent.protocol import Op

if TYPE_CHECKING:
    from .run.snapshot import Snapshot

QBOOT = Path("/usr/share/qemu/qboot.rom")
NIC_ID = "nic0"
# Kernel messages that mean the guest is broken; the scenario fails at once with the line.
FATAL_CONSOLE = re.compile(r"Kernel panic|BUG:|Oops|testbed-init: (agent exited|sshd exited|no management NIC)")
SSHD_READY = "testbed-init: sshd ready"
# After the kernel's first fatal line, the rest of its report (3.14's sysrq crash: BUG, the oops,
# the call trace, then the panic) belongs in console.log: shutdown lets the guest run until the
# report ends (or QEMU exits), for this long at most.
REPORT_END = re.compile(r"Kernel panic|---\[ end trace")
REPORT_GRACE = 3.0
# loglevel=5: the console shows warnings and worse (WARNING:, BUG:, Oops, panics) but not the
# hundreds of info lines a polled UART prints slowly under TCG (-0.16 s per boot); the guest's
# dmesg keeps everything.
CMDLINE = "console=ttyS0 loglevel=5 panic=-1 ipv6.disable=1 dummy.numdummies=0 rdinit=/init"


class VMError(Exception):
    """The guest or QEMU failed (would not start, panicked, hung); carries the console log path."""

    def __init__(self, message: str, console_log: Path | None = None):
        super().__init__(message + (f" (console log: {console_log})" if console_log else ""))
        self.console_log = console_log


@dataclass
class QemuSettings:
    binary: str = "qemu-system-x86_64"
    accel: str = "tcg"
    memory_mb: int = 256
    boot_timeout: float = 60.0


def qemu_command(settings: QemuSettings, kernel_image: Path, initrd: Path, nic: str | None,
                 fds: dict[str, int], run_dir: Path, append: str = CMDLINE, mgmt: bool = False) -> list[str]:
    """The QEMU command line.  `fds` maps 'console', 'agent' and 'qmp' to socket fds QEMU inherits;
    `mgmt` adds the management NIC a guest reached over SSH needs."""
    cmd = [settings.binary, "-name", f"testbed-{nic or 'nonic'}", "-machine", "q35", "-accel", settings.accel,
           "-m", str(settings.memory_mb), "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
    if QBOOT.exists():
        cmd += ["-bios", str(QBOOT)]  # a faster firmware than SeaBIOS for direct kernel boot
    cmd += ["-kernel", str(kernel_image), "-initrd", str(initrd), "-append", f"{append} {ssh.KERNEL_ARGS}" if mgmt else append,
            "-chardev", f"socket,id=console,fd={fds['console']}", "-serial", "chardev:console",
            "-chardev", f"socket,id=agent,fd={fds['agent']}", "-serial", "chardev:agent",
            "-chardev", f"socket,id=qmp,fd={fds['qmp']}", "-mon", "chardev=qmp,mode=control",
            # a second monitor for people and tools poking at a live guest
            "-qmp", f"unix:{run_dir / 'qmp.sock'},server=on,wait=off"]
    device = resolve_nic(nic) if nic else None
    if device and device.emulated:
        # user networking with restrict=on: the NIC has a peer, the guest reaches nothing
        cmd += ["-netdev", "user,id=net0,restrict=on", "-device", f"{device.qemu_device},id={NIC_ID},netdev=net0"]
    elif device:  # a real card by VFIO: its own wire, no netdev
        cmd += ["-device", f"{device.qemu_device},id={NIC_ID}"]
    if mgmt:
        cmd += ssh.qemu_options()
    return cmd


_live: set["VM"] = set()
_live_lock = threading.Lock()
_stopping = False


def stop_all():
    """Kill every QEMU this process runs, and refuse new ones: an interrupted parallel run unwinds
    through each VM's own failure path (its waits raise, its context manager reaps and cleans)."""
    global _stopping
    with _live_lock:
        _stopping = True
        for vm in _live:
            if vm.proc and vm.proc.poll() is None:
                vm.proc.kill()


def runs_root() -> Path:
    return Path(tempfile.gettempdir())


def running_vms() -> list[tuple[Path, dict]]:
    """The guests running on this host now (any testbed process): run dir and vm.json's description."""
    found = []
    for d in sorted(runs_root().glob("testbed-run-*")):
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
    mark = f"testbed-run-{pid}-"
    procs = subprocess.run(["pgrep", "-af", mark], capture_output=True, text=True).stdout.splitlines()
    return procs + [str(d) for d in runs_root().glob(mark + "*")]


def _remove_stale_run_dirs():
    """Run directories whose owning process is gone (it was SIGKILLed)."""
    for d in runs_root().glob("testbed-run-*"):
        try:
            pid = int(d.name.split("-")[2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


@dataclass
class Target:
    """What to boot: one kernel x NIC with its guest image and QEMU settings, and how the host
    reaches the agent: the serial port, or SSH (harness/ssh.py; the image must have sshd)."""
    kernel: Kernel
    image: GuestImage
    nic: str | None
    settings: QemuSettings
    transport: str = "serial"


class VM:
    def __init__(self, target: Target, artifacts: Path, restore: "Snapshot | None" = None):
        self.target = target
        self.kernel, self.image, self.nic, self.settings = target.kernel, target.image, target.nic, target.settings
        self.restore = restore  # start from this saved guest instead of booting
        self.nic_id = NIC_ID
        self.artifacts = artifacts
        self.console_log = artifacts / "console.log"
        self.proc: subprocess.Popen | None = None
        self.run_dir: Path | None = None
        self.agent: Agent | None = None
        self.monitor: Monitor | None = None
        self.boot_seconds: float | None = None
        self.hello: dict = {}  # the agent's HELLO: VERSION, RELEASE, PID
        self.guest_release: str | None = None
        self.agent_pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._started = 0.0
        self._console_lines: collections.deque[str] = collections.deque(maxlen=200)  # for diagnose()
        self.fatal: str | None = None
        self.notes: list[str] = []  # what happened on the way to a ready guest, for the trace
        self.console: socket.socket | None = None  # the host end of the serial console
        self.console_echo = None  # a callable also given everything the console prints
        self.failure: Exception | None = None  # what broke the guest (first wins), for the agent's waiters
        self._failure_lock = threading.Lock()
        self._sshd_ready = threading.Event()
        self._report_done = threading.Event()  # the kernel's failure report has ended (see REPORT_END)
        self.keys: ssh.Keys | None = None  # this run's SSH keys, when the agent is reached over SSH
        self._ssh = None  # and the paramiko client
        self.ssh_port: int | None = None  # the host port forwarded to the guest's sshd

    def __enter__(self) -> "VM":
        try:
            self.launch()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.shutdown()

    # ---- launch ----

    def launch(self):
        _remove_stale_run_dirs()
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"testbed-run-{os.getpid()}-", dir=runs_root()))
        over_ssh = self.target.transport == "ssh"
        initrd = self._initrd_with_keys() if over_ssh else self.image.path
        pairs = {name: socket.socketpair() for name in ("console", "agent", "qmp")}
        self._sockets = [p[0] for p in pairs.values()]
        fds = {name: p[1].fileno() for name, p in pairs.items()}
        cmd = qemu_command(self.settings, self.kernel.boot_image, initrd, self.nic, fds, self.run_dir, mgmt=over_ssh)
        if self.restore:
            cmd += ["-incoming", f"file:{self.restore.path}"]
        qemu_log = self.artifacts / "qemu.log"
        with open(qemu_log, "w") as log:
            log.write(shlex.join(cmd) + "\n")
            log.flush()
            self._started = time.monotonic()
            try:
                with _live_lock:
                    if _stopping:
                        raise VMError("interrupted before QEMU started")
                    self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                 pass_fds=list(fds.values()), preexec_fn=die_with_parent,
                                                 start_new_session=True)  # Ctrl-C is ours to handle
                    _live.add(self)
            except OSError as e:
                raise VMError(f"cannot start QEMU ({self.settings.binary}): {e.strerror}")
            finally:
                for p in pairs.values():
                    p[1].close()
        if not over_ssh:
            self._attach(Agent(pairs["agent"][0], self.artifacts / "agent.log"))
        self.console = pairs["console"][0]
        self._thread(self._drain_console, self.console, "console")
        self._thread(self._reap, None, "reaper")
        self.monitor = Monitor(pairs["qmp"][0], self.artifacts / "qmp.log")
        try:
            self.monitor.connect()
            if over_ssh:
                hello = self._connect_ssh()
            elif self.restore:
                hello = self._wait_restored()
            else:
                hello = self.agent.wait_ready(self.settings.boot_timeout)
        except (AgentError, MonitorError, ssh.SSHError) as e:
            raise self.diagnose(e) from None
        self.boot_seconds = time.monotonic() - self._started
        (self.run_dir / "vm.json").write_text(json.dumps({
            "kernel": self.kernel.name, "release": hello.get("RELEASE"), "nic": self.nic, "nic_id": self.nic_id,
            "transport": self.target.transport,
            "pid": os.getpid(), "qemu_pid": self.proc.pid, "console_log": str(self.console_log)}))
        self.hello = hello
        self.guest_release = hello.get("RELEASE")
        self.agent_pid = hello.get("PID")

    def _initrd_with_keys(self) -> Path:
        """The guest image with this run's SSH keys appended (in the run dir, which is 0700)."""
        try:
            self.keys = ssh.Keys.generate(self.run_dir)
        except ssh.SSHError as e:
            raise VMError(str(e)) from None
        initrd = self.run_dir / "initrd.cpio"
        with open(self.image.path, "rb") as image, open(initrd, "wb") as out:
            shutil.copyfileobj(image, out)
            out.write(self.keys.initramfs())
        return initrd

    def _connect_ssh(self) -> dict:
        """Wait for the guest's sshd, log in with the run's keys and start the agent in the session."""
        deadline = time.monotonic() + self.settings.boot_timeout
        while not self._sshd_ready.wait(0.02):
            if self.failure:
                raise self.failure
            if time.monotonic() > deadline:
                raise AgentError(f"no {SSHD_READY!r} on the console within {self.settings.boot_timeout:g} s")
        self.ssh_port = port = ssh.forwarded_port(self.monitor)
        self._ssh = ssh.connect(port, self.keys, timeout=max(deadline - time.monotonic(), 1))
        channel = ssh.agent_channel(self._ssh, timeout=max(deadline - time.monotonic(), 1))
        self._attach(Agent(channel, self.artifacts / "agent.log"))
        self.notes.append(f"agent over SSH: root@127.0.0.1:{port}, host key {self.keys.fingerprint()} "
                          "made for this run and pinned")
        return self.agent.wait_ready(max(deadline - time.monotonic(), 1))

    def _attach(self, agent: Agent):
        """Make `agent` the one whose waiters hear of the guest's failures, past ones included."""
        with self._failure_lock:
            self.agent, failure = agent, self.failure
        if failure:
            agent.fail(failure)

    def _fail(self, exc: Exception):
        with self._failure_lock:
            self.failure = self.failure or exc
            agent = self.agent
        if agent:
            agent.fail(exc)

    def _wait_restored(self) -> dict:
        """Wait until QEMU has loaded the saved guest and resumed it, then until the agent answers.
        Nothing is sent before: bytes that reach the UART while it loads would be overwritten."""
        deadline = time.monotonic() + self.settings.boot_timeout
        while (status := self.monitor.command("query-status")["status"]) == "inmigrate":
            if time.monotonic() > deadline:
                raise VMError(f"restoring {self.restore.path} took more than {self.settings.boot_timeout:g} s",
                              self.console_log)
            time.sleep(0.002)
        if status != "paused":  # the guest was saved stopped, so it comes back paused
            raise VMError(f"restoring {self.restore.path} left the guest {status!r}", self.console_log)
        self.monitor.command("cont")
        self.agent.call(Op.PING, timeout=self.settings.boot_timeout)
        return self.restore.hello

    def save(self, path: Path):
        """Stop the guest and write its whole state to `path` (QEMU migration to a file); QEMU
        keeps running, paused.  `-incoming file:` on the same command line brings it back."""
        self.monitor.command("stop")
        self.monitor.command("migrate", uri=f"file:{path}")
        deadline = time.monotonic() + 60
        while (status := self.monitor.command("query-migrate").get("status")) != "completed":
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise VMError(f"saving the guest to {path}: migration {status}", self.console_log)
            time.sleep(0.01)

    def _thread(self, target, arg, name):
        t = threading.Thread(target=target, args=(arg,) if arg is not None else (), name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def diagnose(self, cause: Exception) -> VMError:
        """A VMError saying what went wrong, preferring what the console or QEMU said."""
        if isinstance(cause, VMError):
            return cause
        # A closed monitor or channel usually means QEMU is exiting, or the console is about to
        # say why (over SSH the session can end before the console line arrives): let them finish.
        deadline = time.monotonic() + 1
        while self.proc and self.proc.poll() is None and not isinstance(self.failure, VMError) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.proc and self.proc.poll() is not None:
            return self._qemu_exited(self.proc.returncode)
        if isinstance(self.failure, VMError):
            return self.failure
        last = next((line for line in reversed(self._console_lines) if line.strip()), "(no console output)")
        return VMError(f"{cause}; last console line: {last.strip()!r}", self.console_log)

    def _qemu_exited(self, rc: int) -> VMError:
        stderr = (self.artifacts / "qemu.log").read_text(errors="replace").splitlines()[1:]
        said = stderr[-1].strip() if stderr else ""
        return VMError(f"QEMU exited with status {rc} after {time.monotonic() - self._started:.1f} s"
                       + (f": {said}" if said else ""), self.console_log)

    def _drain_console(self, sock: socket.socket):
        """Copy the serial console to console.log and watch it; a full console stalls the guest,
        so this runs until QEMU closes its end."""
        with open(self.console_log, "wb") as log:
            pending = b""
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    break
                log.write(data)
                log.flush()
                if self.console_echo:
                    self.console_echo(data)
                *lines, pending = (pending + data).split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    self._console_lines.append(line)
                    if line == SSHD_READY:
                        self._sshd_ready.set()
                    if self.fatal is not None and REPORT_END.search(line):
                        self._report_done.set()
                    if self.fatal is None and FATAL_CONSOLE.search(line):
                        self.fatal = line
                        if line.startswith("testbed-init") or REPORT_END.search(line):
                            self._report_done.set()
                        t = time.monotonic() - self._started
                        what = "kernel panic" if "panic" in line else "guest failure"
                        self._fail(VMError(f"{what} at {t:.1f} s: {line.strip()}", self.console_log))
        self._report_done.set()
        sock.close()

    def _reap(self):
        rc = self.proc.wait()
        self._report_done.set()
        self._fail(self._qemu_exited(rc))

    # ---- shutdown ----

    def shutdown(self):
        """Stop QEMU (QMP quit, then SIGKILL), reap it, stop the threads, remove the run dir."""
        if self.fatal is not None:
            self._report_done.wait(REPORT_GRACE)
        if self.proc and self.proc.poll() is None and self.monitor:
            try:
                self.monitor.quit()
            except MonitorError:
                pass
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        with _live_lock:
            _live.discard(self)
        try:
            if self.monitor:
                self.monitor.close()
            if self.agent:
                self.agent.close()
            if self._ssh:
                self._ssh.close()
        finally:  # whatever a close raised, the sockets, threads and run dir still go
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for t in self._threads:
                t.join(timeout=5)
            if self.run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
                self.run_dir = None
