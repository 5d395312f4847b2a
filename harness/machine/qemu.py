"""The QEMU process: its command line, started so that it dies with this process, stopped
gracefully (QMP quit) then hard (SIGKILL), always reaped; when it exits by itself, an error that
names its exit status and the last thing it said."""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence

from ..children import die_with_parent
from ..cpu import process_seconds
from ..nic import Nic
from . import VMError
from .monitor import Monitor, MonitorError

QBOOT = Path("/usr/share/qemu/qboot.rom")
NIC_ID = "nic0"
# loglevel=5: the console shows warnings and worse (WARNING:, BUG:, Oops, panics) but not the
# hundreds of info lines a polled UART prints slowly under TCG (-0.16 s per boot); the guest's
# dmesg keeps everything.
# cryptomgr.notests: Debian's kernels self-test every crypto algorithm at boot, about 1 s of TCG
# time each boot (from 4.7; older kernels ignore the parameter)
CMDLINE = "console=ttyS0 loglevel=5 panic=-1 ipv6.disable=1 dummy.numdummies=0 cryptomgr.notests rdinit=/init"
# No HPET: QEMU's keeps a periodic comparator firing after the guest turns its interrupt off, so
# the one Linux ticks on early in boot woke QEMU ~1350 times a guest second for nothing (README,
# "Architecture").  The guests time themselves with the TSC, the local APIC and the ACPI PM timer.
MACHINE = "q35,hpet=off"
QUIT_WAIT = 3.0  # seconds QEMU gets to exit after QMP quit before it is killed
# The guest stops itself at a chosen instant of its timeline by writing to the pvpanic port
# (the agent's AT op); QEMU pauses instead of acting on a panic, and the host continues it.
PAUSE_BUTTON = ["-device", "pvpanic", "-action", "panic=pause"]
TIME_MODES = ("virtual", "real")
# The guest's clock on QEMU's instruction counter: 2^shift ns per instruction, and when every
# vCPU idles the clock jumps to the next timer deadline (sleep=off) instead of waiting for it.
ICOUNT_SHIFT = 6
# A snapshot's RAM stays in a file of its own, which the VMs that restore it map privately
# (harness.cells.snapshot): the migration stream then carries only the devices' state.
IGNORE_SHARED = [{"capability": "x-ignore-shared", "state": True}]
# On the real clock a tickless guest's jiffies can part from its clocksource under TCG on a loaded
# host (Debian's 5.10: a 300 ms SO_SNDTIMEO ended after 130 ms of CLOCK_MONOTONIC), so there it
# ticks periodically; on the virtual clock ticks only cost host time.  Kernels built without
# NO_HZ (kernel-config/) tick anyway.
REAL_CLOCK_ARGS = "nohz=off"


@dataclass
class QemuSettings:
    binary: str = "qemu-system-x86_64"
    accel: str = "tcg"
    memory_mb: int = 256
    boot_timeout: float = 60.0
    time: str = "real"  # virtual (TCG only) or real
    firmware: tuple[Path, ...] = ()  # -L each: the QEMU the testbed builds has none of its own
    kernel_args: str = ""     # appended to the kernel command line (pci=nomsi, ...)
    nic_properties: str = ""  # appended to the NIC's -device (msix=off on ixgbe, ...)

    def kernel_command_line(self, *extra: str) -> str:
        """The guest kernel's command line: CMDLINE, what this clock needs, `extra` (the
        transport's) and kernel_args, empty parts left out."""
        return " ".join(filter(None, (CMDLINE, REAL_CLOCK_ARGS if self.time == "real" else "", *extra,
                                      self.kernel_args)))

    def clock(self) -> str:
        """Which clock the guest runs on, as a trace says it."""
        return f"virtual (icount shift={ICOUNT_SHIFT}, sleep=off)" if self.time == "virtual" else "real"


# The agent's virtio-serial port, by the name guest/init finds it by (/sys/class/virtio-ports/*/name).
AGENT_PORT = "org.testbed.agent"


def qemu_command(settings: QemuSettings, kernel_image: Path, initrd: Path, nic: Nic | None,
                 fds: dict[str, int], run_dir: Path, append: str = CMDLINE, extra: Sequence[str] = (),
                 virtio_agent: bool = False) -> list[str]:
    """The QEMU command line.  `fds` maps 'console', 'agent', 'qmp' and 'brake' to socket fds QEMU inherits;
    `extra` is what the transport adds (the SSH transport's management NIC).  The agent's chardev
    is a virtio-serial port named AGENT_PORT with `virtio_agent`, else the second UART."""
    cmd = [settings.binary, "-name", f"testbed-{nic.model if nic else 'nonic'}", "-machine", MACHINE,
           "-accel", settings.accel, "-m", str(settings.memory_mb), "-nodefaults", "-no-user-config",
           "-display", "none", "-no-reboot", *PAUSE_BUTTON]
    for directory in settings.firmware:
        cmd += ["-L", str(directory)]
    if settings.time == "virtual":
        cmd += ["-icount", f"shift={ICOUNT_SHIFT},sleep=off"]
    if QBOOT.exists():
        cmd += ["-bios", str(QBOOT)]  # a faster firmware than SeaBIOS for direct kernel boot
    cmd += ["-kernel", str(kernel_image), "-initrd", str(initrd), "-append", append,
            "-chardev", f"socket,id=console,fd={fds['console']}", "-serial", "chardev:console",
            "-chardev", f"socket,id=agent,fd={fds['agent']}", *([] if virtio_agent else ["-serial", "chardev:agent"]),
            "-chardev", f"socket,id=qmp,fd={fds['qmp']}", "-mon", "chardev=qmp,mode=control",
            # the brake (harness.machine.brake): conts that need no answer, apart from the monitor
            "-chardev", f"socket,id=brake,fd={fds['brake']}", "-mon", "chardev=brake,mode=control",
            # a second monitor for people and tools poking at a live guest
            "-qmp", f"unix:{run_dir / 'qmp.sock'},server=on,wait=off"]
    if nic and nic.emulated:
        # user networking with restrict=on: the NIC has a peer, the guest reaches nothing
        cmd += ["-netdev", "user,id=net0,restrict=on",
                "-device", ",".join(filter(None, (f"{nic.qemu_device},id={NIC_ID},netdev=net0",
                                                  settings.nic_properties)))]
    elif nic:  # a real card by VFIO: its own wire, no netdev
        cmd += ["-device", f"{nic.qemu_device},id={NIC_ID}"]
    if virtio_agent:  # after the NIC, which keeps its PCI slot; port 0 is reserved for a console
        cmd += ["-device", "virtio-serial-pci,id=agentbus,max_ports=2",
                "-device", f"virtserialport,bus=agentbus.0,chardev=agent,name={AGENT_PORT}"]
    return cmd + list(extra)


def ram_in_file(path: Path, size_mb: int, saving: bool) -> list[str]:
    """Guest RAM in `path`.  Saving: shared, so the guest's writes land in the file (QMP migrate
    with IGNORE_SHARED then writes only the devices' state).  Restoring: read-only and mapped
    privately, so nothing is copied up front, pages come from the page cache as the guest touches
    them, and its writes stay its own."""
    mode = "share=on" if saving else "share=off,readonly=on,rom=off"
    return ["-object", f"memory-backend-file,id=ram,size={size_mb}M,mem-path={str(path).replace(',', ',,')},{mode}",
            "-machine", "memory-backend=ram"]


SO_SNDBUFFORCE = 32  # Linux's (asm-generic/socket.h); Python's socket module does not export it
UART_SEND_BUFFER = 16 << 20


def widen_for_uart(sock: socket.socket):
    """QEMU's UART writes its socket a byte at a time, and each byte costs the sender a whole
    buffer (~770 bytes of accounting): at the default size, 278 bytes in flight fill it.  Then
    the guest's transmitter waits on QEMU's main loop while the guest idles, and on the virtual
    clock it fast-forwards through its timers meanwhile (a reply of a few hundred bytes cost a
    loaded host's guest minutes of its clock).  Root may exceed net.core.wmem_max."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, UART_SEND_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, UART_SEND_BUFFER)


_live: set[Qemu] = set()
_live_lock = threading.Lock()
_stopping = False


def stop_all():
    """Kill every QEMU this process runs, and refuse new ones: an interrupted parallel run unwinds
    through each VM's own failure path (its waits raise, its context manager reaps and cleans)."""
    global _stopping
    with _live_lock:
        _stopping = True
        for qemu in _live:
            if qemu.running():
                qemu.proc.kill()


class Qemu:
    """A started QEMU.  `on_exit` hears the error of an exit nobody asked for, from the reaper thread.
    Only the reaper reaps, so that it can first read what the process cost (`cpu_seconds`)."""

    def __init__(self, cmd: list[str], log: Path, pass_fds: list[int], on_exit: Callable[[VMError], None],
                 console_log: Path | None = None):
        self.log, self.console_log = log, console_log
        self.cpu_seconds: float | None = None  # QEMU's CPU time, all threads, once it has exited
        self._reaped = threading.Event()
        with open(log, "w") as out:
            out.write(shlex.join(cmd) + "\n")
            out.flush()
            self.started = time.monotonic()
            with _live_lock:
                if _stopping:
                    raise VMError("interrupted before QEMU started")
                try:
                    self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                                 pass_fds=pass_fds, preexec_fn=die_with_parent,
                                                 start_new_session=True)  # Ctrl-C is ours to handle
                except OSError as e:
                    raise VMError(f"cannot start QEMU ({cmd[0]}): {e.strerror}") from None
                _live.add(self)
        self._reaper = threading.Thread(target=self._reap, args=(on_exit,), name="reaper", daemon=True)
        self._reaper.start()

    def _reap(self, on_exit: Callable[[VMError], None]):
        try:
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)  # exited; its /proc entry stays
            self.cpu_seconds = process_seconds(self.proc.pid)
        except OSError:  # unreadable /proc: the cost stays unknown, the exit is still reported
            pass
        status = self.proc.wait()
        self._reaped.set()
        on_exit(self.exit_error(status))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return not self._reaped.is_set()

    def exit_error(self, status: int) -> VMError:
        said = self.log.read_text(errors="replace").splitlines()[1:]  # line 1 is the command line
        return VMError(f"QEMU exited with status {status} after {time.monotonic() - self.started:.1f} s"
                       + (f": {said[-1].strip()}" if said and said[-1].strip() else ""), self.console_log)

    def quit(self, monitor: Monitor):
        """The graceful stop: QMP quit, and a few seconds for QEMU to act on it."""
        if self.running():
            try:
                monitor.quit()
            except MonitorError:
                return
            self._reaped.wait(timeout=QUIT_WAIT)

    def kill(self):
        """The hard stop, which always reaps: SIGKILL if still running, and wait for the reaper."""
        if self.running():
            self.proc.kill()
        self._reaped.wait()
        self._reaper.join(timeout=5)
        with _live_lock:
            _live.discard(self)
