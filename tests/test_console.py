"""The console watcher: the first fatal line reaches the waiter at once, but the guest is kept
until the kernel's report is complete; and what it says on the way out names the cause."""
import socket
import threading
import time
from typing import cast

from harness.agent import AgentError
from harness.machine import VMError
from harness.machine.console import Console
from harness.machine.qemu import Qemu
from harness.vm import VM
from tests.test_snapshot import target

ORDER = [b"[    1.5] BUG: unable to handle kernel NULL pointer dereference at (null)\n",
         b"[    1.5] Oops: 0002 [#1]\n",
         b"[    1.5] ---[ end trace 5d6653cc256ffebc ]---\n"]
PANIC = b"[    1.6] Kernel panic - not syncing: Fatal exception\n"


def test_the_report_ends_with_the_panic_not_the_oops_end_trace(tmp_path):
    host, guest = socket.socketpair()
    heard: list[Exception] = []
    console = Console(host, tmp_path / "console.log", time.monotonic(), heard.append)
    try:
        guest.sendall(b"".join(ORDER))
        assert not console.oops_done.wait(0.3)
        assert len(heard) == 1 and "BUG: unable to handle" in str(heard[0])
        guest.sendall(PANIC)
        assert console.oops_done.wait(5)
    finally:
        guest.close()
        console.join()
    assert "Kernel panic - not syncing" in (tmp_path / "console.log").read_text()


class ExitedQemu:
    """QEMU already gone (status 0: the init powered off) when the host notices the channel closed."""
    def running(self):
        return False

    def exit_error(self, status):
        return VMError(f"QEMU exited with status {status}")

    class proc:
        returncode = 0


def test_the_consoles_last_words_name_the_cause_when_qemu_is_already_gone(tmp_path):
    host, guest = socket.socketpair()
    vm = VM(target(tmp_path), tmp_path)  # not launched: what diagnose reads is a real console and a QEMU that exited
    vm.qemu = cast(Qemu, ExitedQemu())
    vm.console = Console(host, vm.console_log, time.monotonic(), vm.fail)

    def guest_says_why():  # the line is still on its way when the agent's channel is seen closed
        time.sleep(0.2)
        guest.sendall(b"testbed-init: agent exited with status 137\n")
        guest.close()
    threading.Thread(target=guest_says_why).start()
    cause = vm.diagnose(AgentError("agent channel closed"))
    assert "agent exited with status 137" in str(cause), cause
