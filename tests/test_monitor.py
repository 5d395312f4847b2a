"""The QMP monitor against a scripted peer on a socketpair (QEMU itself drives it in tests/vm)."""
import gc
import json
import logging
import os
import signal
import socket
import threading
import traceback

import pytest

from harness.machine.monitor import Monitor, MonitorError

GREETING = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""},
                    "capabilities": []}}


def peer(sock: socket.socket, greet: bool = True, answers: int | None = None):
    """A QMP server that greets (or not), then answers every command (or the first `answers`)
    with an empty return."""
    def serve():
        nonlocal answers
        with sock:
            if greet:
                sock.sendall(json.dumps(GREETING).encode() + b"\r\n")
            pending, decoder = "", json.JSONDecoder()
            while chunk := sock.recv(4096):  # qemu.qmp sends objects back to back, no newlines
                pending += chunk.decode()
                while pending.strip():
                    try:
                        request, end = decoder.raw_decode(pending.lstrip())
                    except json.JSONDecodeError:  # the rest of it is in the next chunk
                        break
                    pending = pending.lstrip()[end:]
                    if answers is not None:
                        if answers == 0:
                            continue
                        answers -= 1
                    answer = {"return": {}, **({"id": request["id"]} if "id" in request else {})}
                    sock.sendall(json.dumps(answer).encode() + b"\r\n")
    threading.Thread(target=serve, daemon=True).start()


def test_a_command_is_answered_and_transcribed(tmp_path):
    ours, theirs = socket.socketpair()
    peer(theirs)
    monitor = Monitor(ours, tmp_path / "qmp.log")
    monitor.connect()
    assert monitor.command("query-status") == {}
    monitor.close()
    monitor.close()  # twice is harmless: cleanup may run from more than one place
    log = (tmp_path / "qmp.log").read_text()
    assert '"qemu": {"micro": 2' in log and '-> {"execute": "query-status"' in log


def test_a_silent_peer_is_a_monitor_error_after_the_timeout():
    ours, theirs = socket.socketpair()
    peer(theirs, greet=False)
    monitor = Monitor(ours, timeout=0.2)
    with pytest.raises(MonitorError, match="cannot talk to QEMU's monitor"):
        monitor.connect()
    monitor.close()


def test_an_interrupt_during_connect_leaves_nothing_half_open(caplog):
    """Ctrl-C while the greeting is awaited: the interrupt goes on, close() is quiet, and asyncio
    reports no task left with an exception nobody retrieved."""
    ours, theirs = socket.socketpair()
    peer(theirs, greet=False)
    monitor = Monitor(ours)

    def interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(KeyboardInterrupt):
            monitor.connect()
        monitor.close()
        gc.collect()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert [r for r in caplog.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
@pytest.mark.parametrize("phase", ["connect", "command"])
def test_a_signal_that_ends_the_run_is_raised_after_the_call_not_inside_the_loop(tmp_path, caplog, phase, sig):
    """Ctrl-C (or the SIGHUP an xdist worker gets) while a call waits: the call is cancelled and
    the signal's handler runs in the monitor's code once the call has unwound, never inside
    asyncio, where it could kill one of qemu.qmp's tasks; close() is quiet and the transcript
    says what happened."""
    ours, theirs = socket.socketpair()
    peer(theirs, greet=phase == "command", answers=1)  # qmp_capabilities, then silence
    monitor = Monitor(ours, tmp_path / "qmp.log", timeout=60)  # the call ends by the signal, not this
    if phase == "command":
        monitor.connect()

    def interrupt(*_):
        raise KeyboardInterrupt
    previous = signal.signal(sig, interrupt)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), sig))
    try:
        timer.start()
        with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(KeyboardInterrupt) as raised:
            monitor.connect() if phase == "connect" else monitor.command("query-status")
        monitor.close()
        gc.collect()
    finally:
        timer.cancel()
        signal.signal(sig, previous)
    raiser = traceback.extract_tb(raised.tb)[-2]  # the frame that called the handler
    assert raiser.filename.endswith("harness/machine/monitor.py"), raiser
    assert raised.value.__context__ is None  # the call ended by the signal, not by its timeout
    assert [r for r in caplog.records if r.name == "asyncio"] == []
    assert f"<- interrupted by {sig.name}" in (tmp_path / "qmp.log").read_text()
