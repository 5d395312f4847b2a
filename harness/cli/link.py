"""`testbed link up|down`: flip a running guest's link from another terminal, through the
monitor socket in its run directory."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..errors import UsageError
from ..machine.monitor import Monitor, MonitorError
from ..machine.rundir import running_vms


def link(state: str, run_dir: Path | None) -> int:
    """QMP set_link on a running guest's NIC through the monitor socket in its run dir."""
    guests = [(d, info) for d, info in running_vms() if info.get("nic")]
    if run_dir:
        guests = [(d, info) for d, info in guests if d == run_dir.resolve()]
        if not guests:
            raise UsageError(f"--vm {run_dir}: no running guest with a NIC there")
    if not guests:
        raise UsageError("testbed link: no running guest with a NIC; start one with `testbed shell`")
    if len(guests) > 1:
        listing = "; ".join(f"{d} ({info['kernel']}, {info['nic']})" for d, info in guests)
        raise UsageError(f"testbed link: {len(guests)} guests are running, choose one with --vm: {listing}")
    directory, info = guests[0]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(directory / "qmp.sock"))
        monitor = Monitor(sock)
        monitor.connect()
        monitor.set_link(info["nic_id"], state == "up")
        monitor.close()
    except (OSError, MonitorError) as e:
        print(f"testbed: {directory}: {e}", file=sys.stderr)
        return 3
    print(f"testbed: set_link {info['nic_id']} {'on' if state == 'up' else 'off'}: {info['nic']} of the "
          f"{info['kernel']} guest in {directory}")
    return 0
