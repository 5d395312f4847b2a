"""A QEMU driven register by register through its qtest protocol (QEMU's docs/devel/testing/qtest),
as QEMU's own tests/qtest do it in C: no guest CPU runs, the test reads and writes guest memory
and device registers itself, and sees interrupt lines change.

    with QtestMachine(binary, firmware, ["-device", "ixgbe,netdev=n0,id=nic0"]) as m:
        m.writel(addr, value); m.readl(addr); m.monitor.set_link("nic0", False)

QEMU connects to two sockets the test listens on (qtest, QMP); every read of them has a timeout;
leaving the context kills and reaps QEMU and removes its directory.
"""
from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path

from harness.children import die_with_parent
from harness.machine.monitor import Monitor

TIMEOUT = 10.0  # seconds for any answer from QEMU


class QtestError(Exception):
    pass


class QtestMachine:
    def __init__(self, binary: Path, firmware_options: list[str], device_args: list[str], incoming: Path | None = None):
        self.binary, self.firmware_options = binary, firmware_options
        self.device_args, self.incoming = device_args, incoming
        self.irqs: deque[tuple[str, int]] = deque()  # ("raise" | "lower", line), in order
        self._stack = contextlib.ExitStack()
        self._buffer = b""

    def __enter__(self) -> QtestMachine:
        try:
            self._launch()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def _launch(self):
        stack = self._stack
        self.dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="qtest-")))
        listeners = {}
        for name in ("qtest", "qmp"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stack.callback(s.close)
            s.bind(str(self.dir / f"{name}.sock"))
            s.listen(1)
            s.settimeout(TIMEOUT)
            listeners[name] = s
        cmd = [str(self.binary), *self.firmware_options, "-machine", "q35", "-accel", "qtest", "-nodefaults",
               "-display", "none", "-m", "64", "-qtest", f"unix:{self.dir / 'qtest.sock'}",
               "-qmp", f"unix:{self.dir / 'qmp.sock'}", *self.device_args]
        if self.incoming:
            cmd += ["-incoming", f"file:{self.incoming}"]
        self.log = self.dir / "qemu.log"
        with open(self.log, "w") as log:
            # PR_SET_PDEATHSIG: QEMU goes with the test process even when that is SIGKILLed (a qtest
            # QEMU whose socket closes keeps running)
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)
        stack.callback(self._kill)
        try:
            self.sock, _ = listeners["qtest"].accept()
            qmp, _ = listeners["qmp"].accept()
        except TimeoutError:
            raise QtestError(f"QEMU did not connect within {TIMEOUT:g} s: {self.log.read_text()}") from None
        stack.callback(self.sock.close)
        self.monitor = Monitor(qmp, self.dir / "qmp.log")
        stack.callback(self.monitor.close)
        self.monitor.connect()

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    # ---- the protocol ----

    def _line(self) -> str:
        deadline = time.monotonic() + TIMEOUT
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise QtestError(f"no answer from qtest within {TIMEOUT:g} s")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QtestError(f"QEMU closed the qtest socket: {self.log.read_text()[-2000:]}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def command(self, text: str) -> list[str]:
        """Send one command; its answer's words after OK (IRQ lines on the way are queued)."""
        self.sock.sendall(text.encode() + b"\n")
        while True:
            words = self._line().split()
            if words[:1] == ["IRQ"]:
                self.irqs.append((words[1], int(words[2])))
                continue
            if words[:1] != ["OK"]:
                raise QtestError(f"{text}: {' '.join(words)}")
            return words[1:]

    def readl(self, addr: int) -> int:
        return int(self.command(f"readl 0x{addr:x}")[0], 16)

    def writel(self, addr: int, value: int):
        self.command(f"writel 0x{addr:x} 0x{value & 0xFFFFFFFF:x}")

    def readq(self, addr: int) -> int:
        return int(self.command(f"readq 0x{addr:x}")[0], 16)

    def writeq(self, addr: int, value: int):
        self.command(f"writeq 0x{addr:x} 0x{value:x}")

    def read(self, addr: int, size: int) -> bytes:
        return bytes.fromhex(self.command(f"read 0x{addr:x} 0x{size:x}")[0][2:])

    def write(self, addr: int, data: bytes):
        self.command(f"write 0x{addr:x} 0x{len(data):x} 0x{data.hex()}")

    def pending_irqs(self) -> list[tuple[str, int]]:
        """IRQ changes reported so far (a harmless command collects any still on the socket)."""
        self.command("clock_step 1")
        changes = list(self.irqs)
        self.irqs.clear()
        return changes

    # ---- PCI configuration space, through ports 0xCF8/0xCFC ----

    def _config_address(self, devfn: int, offset: int):
        self.command(f"outl 0xcf8 0x{0x80000000 | devfn << 8 | (offset & 0xFC):x}")

    def config_readl(self, devfn: int, offset: int) -> int:
        self._config_address(devfn, offset)
        return int(self.command("inl 0xcfc")[0], 16)

    def config_readw(self, devfn: int, offset: int) -> int:
        return self.config_readl(devfn, offset) >> (8 * (offset & 2)) & 0xFFFF

    def config_writel(self, devfn: int, offset: int, value: int):
        self._config_address(devfn, offset)
        self.command(f"outl 0xcfc 0x{value & 0xFFFFFFFF:x}")

    def config_writew(self, devfn: int, offset: int, value: int):
        self._config_address(devfn, offset)
        self.command(f"outw 0x{0xcfc + (offset & 2):x} 0x{value & 0xFFFF:x}")

    def find_device(self, vendor: int, device: int) -> int:
        """The devfn on bus 0 of the first function with these ids."""
        for slot in range(32):
            if self.config_readl(slot << 3, 0) == device << 16 | vendor:
                return slot << 3
        raise QtestError(f"no PCI device {vendor:04x}:{device:04x} on bus 0")
