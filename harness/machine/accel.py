"""KVM or TCG.  /dev/kvm existing is not enough: on some hosts (nested virtualisation) a KVM guest
hangs silently after the boot stub.  So 'auto' boots the kernel under KVM once and waits for
its first console line; the verdict is cached per (QEMU version, host kernel)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

from ..errors import UsageError
from ..wait import Deadline
from .qemu import ICOUNT_SHIFT

PROBE_SECONDS = 5.0
_announced: set[str] = set()


def _notice(text: str, topic: str = "accel"):
    """One line per topic and process, however many guests it starts."""
    if topic not in _announced:
        print(f"testbed: {text}", file=sys.stderr)
        _announced.add(topic)


def choose_time(setting: str, accel: str) -> str:
    """The guest's clock for `setting` (auto, virtual or real) under `accel`: auto is virtual
    with TCG (waits on the guest's timers cost no host time) and real with KVM, which cannot
    count instructions."""
    if setting == "virtual" and accel == "kvm":
        raise UsageError("--time virtual (qemu.time): needs TCG, and the accelerator is KVM; "
                         "use --time real, or qemu.accel: tcg")
    chosen = setting if setting != "auto" else "virtual" if accel == "tcg" else "real"
    if setting == "auto":
        _notice(f"guest clock: virtual (TCG, icount shift={ICOUNT_SHIFT}, sleep=off; --time real for the "
                f"host's)" if chosen == "virtual" else "guest clock: real (KVM cannot run a virtual one)", "time")
    return chosen


def probe_kvm(qemu: str, kernel_image: Path) -> bool:
    """Boot under KVM with no initramfs; a working KVM prints 'Linux version' within a second."""
    cmd = [qemu, "-accel", "kvm", "-machine", "q35", "-m", "128", "-nodefaults", "-display", "none",
           "-no-reboot", "-serial", "stdio", "-kernel", str(kernel_image),
           "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout
    assert out is not None  # stdout=PIPE
    seen, deadline = b"", Deadline(PROBE_SECONDS)
    try:
        while b"Linux version" not in seen and not deadline.passed():
            if select.select([out], [], [], deadline.left())[0]:
                chunk = os.read(out.fileno(), 4096)
                if not chunk:
                    break
                seen = seen[-64:] + chunk
        return b"Linux version" in seen
    finally:
        proc.kill()
        proc.wait()
        out.close()


def choose(setting: str, qemu: str, kernel_image: Path, cache: Path) -> str:
    """The accelerator to use for `setting` (auto, kvm or tcg)."""
    kvm_usable = os.access("/dev/kvm", os.R_OK | os.W_OK)
    if setting == "kvm" and not kvm_usable:
        raise UsageError("qemu.accel: 'kvm' but /dev/kvm is missing or not accessible; use auto or tcg")
    if setting != "auto":
        return setting
    if not kvm_usable:
        _notice("no usable /dev/kvm: using TCG (software emulation)")
        return "tcg"
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    key = f"{version} | host {os.uname().release}"
    cache_file = cache / "accel-probe.json"
    try:
        verdicts = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        verdicts = {}
    if key not in verdicts:
        verdicts[key] = "kvm" if probe_kvm(qemu, kernel_image) else "tcg"
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(f".{os.getpid()}")  # parallel test workers probe at once
        partial.write_text(json.dumps(verdicts, indent=1))
        partial.rename(cache_file)
    if verdicts[key] == "tcg":
        _notice(f"KVM probe boot hung (no console output in {PROBE_SECONDS:g} s): using TCG "
                f"(verdict cached in {cache_file})")
    return verdicts[key]
