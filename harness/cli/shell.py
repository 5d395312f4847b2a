"""Poking a guest by hand: `testbed shell` hands the terminal to a shell on a fresh guest's
console (kernel messages appear in it, the agent keeps running beside it) or, with the SSH
transport, to ssh logged in to it."""
from __future__ import annotations

import os
import select
import shlex
import shutil
import socket
import subprocess
import sys
import termios
import tty
from collections.abc import Sequence
from pathlib import Path

from ..agent.protocol import Op
from ..config import Config
from ..errors import UsageError
from ..machine import VMError
from ..cells import runner
from ..scenario import Skip
from ..transport import by_name
from ..wait import until

ESCAPE = b"\x1d"  # Ctrl-]: leave the shell even if the guest no longer answers
WEEK_MS = 7 * 24 * 3600 * 1000


def _shell_setup(programs: Sequence[Path]) -> str:
    """The start of a command line that runs an interactive guest shell."""
    # busybox's ash runs its own applet for a name before searching PATH: aliases make `ip` the
    # iproute2 copied into the guest (guest-binaries), not busybox's cut-down one
    aliases = "".join(f"alias {p.name}={p}\n" for p in programs)
    return f"printf '{aliases}' > /tmp/.shrc; ENV=/tmp/.shrc PS1='testbed:\\w# '"


def _console_shell_command(programs: Sequence[Path]) -> str:
    cols, rows = shutil.get_terminal_size()
    term = os.environ.get("TERM", "vt100")
    # A session of its own with the console as controlling terminal, so job control and Ctrl-C
    # work.  busybox setsid forks and returns at once when run as a group leader, as the agent's
    # command is; the trailing `exit` keeps ash from exec'ing it in place, so a child runs it.
    return (f"stty -F /dev/ttyS0 rows {rows} cols {cols} sane; {_shell_setup(programs)} TERM={term} "
            f"setsid -c sh -i </dev/ttyS0 >/dev/ttyS0 2>&1; exit $?")


def shell(cfg: Config, kernel_name: str | None, nic: str | None, cold: bool) -> int:
    if not sys.stdin.isatty():
        raise UsageError("testbed shell: standard input is not a terminal; run it from one")
    by_name(cfg.transport).check_login()
    kernel_name = kernel_name or cfg.default_kernel
    nic = cfg.nic(nic)
    try:
        target = runner.prepare(cfg, kernel_name, nic, cfg.transport)
    except Skip as e:  # the NIC's QEMU is not built: nothing to boot
        print(f"testbed: {e}", file=sys.stderr)
        return 3
    artifacts = cfg.results / "shell" / f"{kernel_name}-{nic}"
    try:
        with runner.ready_vm(cfg, target, artifacts, cold) as vm:
            for note in [*vm.notes, runner.ready_note(vm)]:
                print(f"testbed: {note}")
            print(f"testbed: run directory {vm.run_dir}")
            if (login := vm.transport.login(vm.run_dir)) is not None:
                _login_session(vm, login, cfg.guest_binaries, nic)
            else:
                _console_session(vm, cfg.guest_binaries, nic)
            if not vm.qemu.running():  # the session ended with QEMU: the cause may still be on its way
                until(lambda: vm.agent.failure is not None, timeout=1)
            if vm.agent.failure:  # a panic, QEMU gone: say why
                raise vm.diagnose(vm.agent.failure)
    except VMError as e:
        print(f"\ntestbed: {e}", file=sys.stderr)
        return 3
    print(f"testbed: guest powered off; console log and transcripts in {artifacts}/")
    return 0


def _console_session(vm, programs: Sequence[Path], nic: str) -> None:
    """A shell on the guest's console, which shows kernel messages too; the agent starts it."""
    print(f"testbed: `testbed link down|up` in another terminal flips {nic}'s link; "
          f"`exit` or Ctrl-] powers the guest off")
    vm.console.echo = lambda data: os.write(sys.stdout.fileno(), data)
    session = vm.agent.start(Op.RUN, cmd=_console_shell_command(programs), background=1, timeout_ms=WEEK_MS)
    _relay(vm.console.sock, lambda: session.done() or vm.agent.failure is not None)
    vm.console.echo = None


def _login_session(vm, login: list[str], programs: Sequence[Path], nic: str) -> None:
    """A shell through the transport's login (SSH: the person's own ssh); the same command logs
    in from other terminals while the guest runs."""
    print(f"testbed: more shells, from other terminals: {shlex.join(login)}")
    print(f"testbed: `testbed link down|up` in another terminal flips {nic}'s link; `exit` powers the guest "
          f"off; kernel messages go to {vm.console_log}")
    subprocess.run(vm.transport.login(vm.run_dir, f"{_shell_setup(programs)} exec sh -i"))


def _relay(console: socket.socket, finished) -> None:
    """Keystrokes to the guest console until `finished()` (the shell exited, the guest broke) or
    Ctrl-] is pressed."""
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin)
    tty.setraw(stdin)
    try:
        while not finished():
            if not select.select([stdin], [], [], 0.1)[0]:
                continue
            data = os.read(stdin, 1024)
            if not data or ESCAPE in data:
                return
            console.sendall(data)
    except OSError:
        pass  # QEMU went away; the VM reports why
    finally:
        termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        print()

