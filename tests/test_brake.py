"""The brake against a scripted QEMU on a socketpair: it counts STOPs against the conts it
sent, sends a cont only once its STOP has come, and turns every failure into MonitorError.
QEMU itself drives it in tests/vm/test_timeline.py."""
import json
import socket

import pytest

from harness.machine.brake import Brake
from harness.machine.monitor import MonitorError

GREETING = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}}, "capabilities": []}}
STOP = {"event": "STOP", "timestamp": {"seconds": 0, "microseconds": 0}}
RESUME = {"event": "RESUME", "timestamp": {"seconds": 0, "microseconds": 0}}
PANICKED = {"event": "GUEST_PANICKED", "data": {"action": "pause"}}


def send(sock, *messages):
    sock.sendall(b"".join(json.dumps(m).encode() + b"\r\n" for m in messages))


def received(sock) -> list[dict]:
    sock.settimeout(1)
    return [json.loads(line) for line in sock.recv(65536).decode().splitlines()]


@pytest.fixture
def engaged(tmp_path):
    ours, qemu = socket.socketpair()
    brake = Brake(ours, tmp_path / "brake.log")
    send(qemu, GREETING, {"return": {}})
    brake.engage(1)
    brake.engage(1)  # once
    assert received(qemu) == [{"execute": "qmp_capabilities"}]
    yield brake, qemu
    brake.close()
    ours.close()
    qemu.close()


def test_cont_goes_out_only_after_the_stop_and_its_answer_is_not_awaited(engaged):
    brake, qemu = engaged
    assert not brake.stopped
    with pytest.raises(MonitorError, match="waited 0.2 s for the guest to stop"):
        brake.wait_stopped(0.2, lambda: None)
    send(qemu, PANICKED, STOP)
    brake.resume(1, lambda: None)
    assert received(qemu) == [{"execute": "cont"}] and not brake.stopped
    # the answer and RESUME come later, read on the way to the next STOP
    send(qemu, RESUME, {"return": {}}, PANICKED, STOP)
    brake.resume(1, lambda: None)
    assert received(qemu) == [{"execute": "cont"}]


def test_a_stop_read_before_it_is_needed_still_counts_and_one_the_guest_did_not_ask_for_does_not(engaged):
    brake, qemu = engaged
    send(qemu, STOP)  # a snapshot's save, a person's `stop`: not the guest's own
    with pytest.raises(MonitorError, match="waited 0.2 s"):
        brake.wait_stopped(0.2, lambda: None)
    send(qemu, PANICKED, STOP)
    brake.wait_stopped(1, lambda: None)
    brake.wait_stopped(1, lambda: None)  # the same stop: nothing more to read
    brake.release()
    with pytest.raises(MonitorError, match="not known to have stopped"):
        brake.release()  # a second cont would end a stop that has not happened


def test_a_refused_cont_is_raised_with_the_next_wait(engaged):
    brake, qemu = engaged
    send(qemu, PANICKED, STOP)
    brake.resume(1, lambda: None)
    send(qemu, {"error": {"class": "GenericError", "desc": "Resetting the Virtual Machine is required"}})
    with pytest.raises(MonitorError, match="GenericError: Resetting the Virtual Machine is required"):
        brake.wait_stopped(1, lambda: None)


def test_a_broken_guest_or_a_closed_monitor_ends_the_wait(engaged):
    brake, qemu = engaged
    with pytest.raises(MonitorError, match="gave up waiting for the guest to stop itself .*: kernel panic"):
        brake.wait_stopped(5, lambda: RuntimeError("kernel panic"))
    qemu.close()
    with pytest.raises(MonitorError, match="closed"):
        brake.wait_stopped(5, lambda: None)


def test_what_is_not_qmp_is_a_monitor_error(tmp_path):
    ours, qemu = socket.socketpair()
    qemu.sendall(b"garbage\r\n")
    with pytest.raises(MonitorError, match="not JSON"):
        Brake(ours).engage(1)
