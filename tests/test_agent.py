"""The real agent binary, run on the host over a socketpair (no VM): its primitives return the
kernel's exact results, per-request waits expire, and malformed requests get an error reply."""
import socket
import subprocess
import sys
import threading
import time

import pytest

from harness.agent import CLOSE_GRACE, Agent, AgentError, Paused
from harness.agent.protocol import Frame, FrameReader, Kind, Op, encode_frame
from harness.machine import VMError
from harness.netlink import MSG_DONTWAIT, MSG_OOB, NETLINK_ROUTE, SO_RCVBUF, SOL_SOCKET
from harness.wait import until


@pytest.fixture
def agent(agent_binary):
    host, guest = socket.socketpair()
    proc = subprocess.Popen([str(agent_binary), "-"], stdin=guest.fileno(), stdout=guest.fileno())
    guest.close()
    a = Agent(host)
    a.wait_ready(5)
    yield a
    a.close()
    proc.wait(timeout=5)


def test_hello_and_ping_carry_version_and_monotonic_time(agent):
    r = agent.call(Op.PING)
    assert r.ret == 0 and r["VERSION"] == 1 and r["T_NS"] > 0


def test_a_paused_guest_runs_again_before_the_next_wait_and_its_reply_is_handed_on(agent):
    # a background request stands in for the AT that stopped the machine: its reply comes once it runs
    happened: list[object] = []
    pending = agent.start(Op.RUN, cmd="sleep 0.1", background=1)
    agent.pause(Paused(lambda: happened.append("cont"), pending, lambda r: happened.append(("resumed", r.ret))))
    assert agent.call(Op.PING).ret == 0
    assert happened == ["cont", ("resumed", 0)] and agent.paused is None
    agent.call(Op.PING)
    assert len(happened) == 2  # resumed once


def test_socket_options_are_the_kernels_values(agent):
    fd = agent.call(Op.SOCKET, protocol=NETLINK_ROUTE).ret
    assert fd >= 0
    assert agent.call(Op.SETSOCKOPT, fd=fd, level=SOL_SOCKET, optname=SO_RCVBUF, int_value=4096).ret == 0
    got = agent.call(Op.GETSOCKOPT, fd=fd, level=SOL_SOCKET, optname=SO_RCVBUF)
    assert got["INT_VALUE"] == 8192  # the kernel doubles SO_RCVBUF


def test_errno_is_reported_by_name(agent):
    fd = agent.call(Op.SOCKET, protocol=NETLINK_ROUTE).ret
    assert agent.call(Op.SENDMSG, fd=fd, data=b"x" * 16, flags=MSG_OOB).outcome() == "-1 EOPNOTSUPP"
    assert agent.call(Op.RECVMSG, fd=fd, flags=MSG_DONTWAIT).outcome() == "-1 EAGAIN"
    assert agent.call(Op.CLOSE, fd=999).outcome() == "-1 EBADF"


def test_recv_wait_expires_as_timed_out_not_as_an_errno(agent):
    fd = agent.call(Op.SOCKET, protocol=NETLINK_ROUTE).ret
    r = agent.call(Op.RECVMSG, fd=fd, timeout_ms=50)
    assert r.timed_out and "RET" not in r.attrs


def test_run_captures_output_status_and_kills_at_deadline(agent):
    r = agent.call(Op.RUN, cmd="echo out; echo err >&2; exit 3")
    assert (r["STATUS"], r["OUTPUT"]) == (3, b"out\nerr\n")
    r = agent.call(Op.RUN, cmd="sleep 30", timeout_ms=100)
    assert r.timed_out and r["SIGNAL"] == 9


def test_read_file_and_its_errno(agent):
    assert agent.call(Op.READ_FILE, path="/proc/net/netlink")["DATA"].startswith(b"sk")
    assert agent.call(Op.READ_FILE, path="/nonexistent").outcome() == "-1 ENOENT"


def test_malformed_requests_get_errors_and_the_agent_keeps_serving(agent):
    with pytest.raises(AgentError, match="unknown op"):
        agent.call(99)
    with pytest.raises(AgentError, match="missing its CMD"):
        agent.call(Op.RUN)
    agent.send_bytes(b"\xff" * 100 + encode_frame(Kind.REPLY, 5, {}))  # garbage, wrong direction
    assert agent.call(Op.PING).ret == 0
    assert agent.protocol_errors


def test_multicast_source_address_and_pktinfo_cmsg(agent):
    """On the host kernel: a NETLINK_USERSOCK group message carries the group in msg_name and,
    with NETLINK_PKTINFO, in a control message."""
    from harness.netlink import NETLINK_PKTINFO, NETLINK_USERSOCK, SOL_NETLINK, decode_cmsgs, describe_cmsg
    group = 1 << 20  # group 21: out of the way of anything else on the host
    rx = agent.call(Op.SOCKET, protocol=NETLINK_USERSOCK).ret
    tx = agent.call(Op.SOCKET, protocol=NETLINK_USERSOCK).ret
    assert agent.call(Op.BIND, fd=rx, groups=group).ret == 0
    assert agent.call(Op.SETSOCKOPT, fd=rx, level=SOL_NETLINK, optname=NETLINK_PKTINFO, int_value=1).ret == 0
    agent.call(Op.SENDMSG, fd=tx, data=b"\x14\0\0\0\x10\0\0\0" + b"\0" * 12, dst_portid=0, dst_groups=group)
    got = agent.call(Op.RECVMSG, fd=rx, timeout_ms=2000)
    assert got.ret == 20 and got["SRC_GROUPS"] == group and got["SRC_PORTID"] != 0
    [cmsg] = decode_cmsgs(got["CONTROL"])
    assert describe_cmsg(*cmsg) == "NETLINK_PKTINFO group 21"


def test_a_request_can_run_as_another_uid_and_the_agent_returns_to_root(agent):
    r = agent.call(Op.RUN, cmd="id -u; id -g", uid=65534, gid=65534)
    assert r["OUTPUT"] == b"65534\n65534\n"
    assert agent.call(Op.RUN, cmd="id -u")["OUTPUT"] == b"0\n"
    # as non-root, netlink refuses to send to a group on NETLINK_ROUTE (netlink_allowed)
    fd = agent.call(Op.SOCKET, protocol=NETLINK_ROUTE, uid=65534).ret
    sent = agent.call(Op.SENDMSG, fd=fd, data=b"\x10\0\0\0\0\0\0\0" + b"\0" * 8, dst_groups=1, uid=65534)
    assert sent.outcome() == "-1 EPERM"


def test_background_request_runs_while_the_agent_keeps_serving(agent):
    slow = agent.start(Op.RUN, cmd="sleep 0.5; echo late", background=1)
    fast = agent.call(Op.RUN, cmd="echo early")  # answered while the background one sleeps
    assert fast["OUTPUT"] == b"early\n" and not slow.done()
    late = slow.wait(5)
    assert late["OUTPUT"] == b"late\n" and late["T_NS"] > fast["T_NS"]
    assert late["T_NS"] - late["T_START_NS"] >= 0.5e9  # the guest timed the whole `sleep 0.5`


def test_run_on_a_pty_gets_line_buffered_stdio(agent):
    # python's print() is block-buffered into a pipe but line-buffered on a terminal
    prog = "import sys, time; print('first'); time.sleep(30)"
    cmd = f"env -u PYTHONUNBUFFERED {sys.executable} -c \"{prog}\""
    on_pipe = agent.call(Op.RUN, cmd=cmd, timeout_ms=1500)
    on_pty = agent.call(Op.RUN, cmd=cmd, timeout_ms=1500, pty=1)
    assert on_pipe.timed_out and on_pipe["OUTPUT"] == b""
    assert on_pty.timed_out and on_pty["OUTPUT"] == b"first\n"


def test_stream_forwards_each_datagram_as_it_arrives_while_requests_go_on(agent):
    """Two NETLINK_USERSOCK sockets on the host: what one sends the other's stream delivers, and
    requests are answered between events."""
    from harness.netlink import NETLINK_USERSOCK
    rx = agent.call(Op.SOCKET, protocol=NETLINK_USERSOCK).ret
    tx = agent.call(Op.SOCKET, protocol=NETLINK_USERSOCK).ret
    assert agent.call(Op.BIND, fd=rx).ret == 0
    portid = agent.call(Op.GETSOCKNAME, fd=rx)["PORTID"]
    stream = agent.stream(rx)
    assert stream.next(0.2) is None  # nothing yet
    for i in range(3):
        message = (20).to_bytes(4, "little") + b"\x10\0\0\0" + bytes([i]) * 12
        assert agent.call(Op.SENDMSG, fd=tx, data=message, dst_portid=portid).ret == 20
    events = [stream.next(2) for _ in range(3)]
    assert [e["DATA"][8] for e in events] == [0, 1, 2]
    assert all(e.ret == 20 and e["SRC_PORTID"] != 0 for e in events)
    assert events[0]["T_NS"] <= events[1]["T_NS"] <= events[2]["T_NS"]
    assert stream.stop() == []
    with pytest.raises(AgentError, match="already streamed|cannot stream"):
        agent.stream(999)
    # after stop the socket is the host's to read again
    agent.call(Op.SENDMSG, fd=tx, data=message, dst_portid=portid)
    assert agent.call(Op.RECVMSG, fd=rx, timeout_ms=2000).ret == 20


def test_a_stream_stopped_when_quiet_keeps_delivering_until_its_window_passes(agent):
    """UNSTREAM with a quiet window: the reply waits until nothing has arrived for that long
    (on the agent's clock), and every datagram before it is an event, the late one included."""
    from harness.netlink import NETLINK_USERSOCK
    rx = agent.call(Op.SOCKET, protocol=NETLINK_USERSOCK).ret
    tx = agent.call(Op.SOCKET, protocol=NETLINK_USERSOCK).ret
    assert agent.call(Op.BIND, fd=rx).ret == 0
    portid = agent.call(Op.GETSOCKNAME, fd=rx)["PORTID"]
    stream = agent.stream(rx)
    message = (20).to_bytes(4, "little") + b"\x10\0\0\0" + bytes(12)
    # while the stop waits, another datagram comes 0.3 s later: it is an event, and the window restarts
    sent = []
    later = threading.Timer(0.3, lambda: sent.append(agent.call(Op.SENDMSG, fd=tx, data=message, dst_portid=portid)))
    later.start()
    [event] = stream.stop(quiet=0.6)  # without the window, the stop would have come first
    later.join()
    assert sent[0].ret == 20 and event.ret == 20


def scripted_agent(sock: socket.socket, answer):
    """A stand-in for the agent in a guest that can stop itself: `answer(frame)` gives each
    request's reply attributes, or None to send nothing."""
    def serve():
        reader = FrameReader()
        with sock:
            while data := sock.recv(65536):
                for frame in reader.feed(data):
                    if isinstance(frame, Frame) and (attrs := answer(frame)) is not None:
                        sock.sendall(encode_frame(Kind.REPLY, frame.id, attrs))
    threading.Thread(target=serve, daemon=True).start()


def held_if_asked(frame):
    return {"RET": 0, **({"HELD": 1} if frame.attrs.get("HOLD") else {})}


class Brake:
    """A brake that only says when the agent let the guest run (`then`, if given, runs too)."""
    def __init__(self, then=lambda: None):
        self.resumed, self.then = [], then

    def resume(self, timeout, abandon):
        self.resumed.append("cont")
        self.then()


def test_in_lock_step_a_guest_that_stopped_after_a_reply_runs_again_only_at_the_next_wait():
    host, guest = socket.socketpair()
    scripted_agent(guest, held_if_asked)
    agent = Agent(host)
    brake = Brake()
    agent.call(Op.PING)
    agent.lock_step(brake)
    agent.call(Op.PING)
    assert brake.resumed == []  # stopped after its reply while the host does other things
    agent.call(Op.PING)
    assert brake.resumed == ["cont"]
    agent.close()


def test_a_held_reply_that_comes_while_the_host_waits_for_another_lets_the_guest_run():
    host, guest = socket.socketpair()
    ran = threading.Event()

    def answer(frame):  # the second request is answered only once the guest runs again
        if frame.id == 2:
            assert ran.wait(5)
        return held_if_asked(frame)
    scripted_agent(guest, answer)
    agent = Agent(host)
    agent.lock_step(Brake(then=ran.set))
    agent.start(Op.PING, hold=1)  # a call whose reply the host stopped waiting for
    assert agent.call(Op.PING, timeout=5).ret == 0 and ran.is_set()
    agent.close()


def test_the_real_agent_does_not_stop_a_machine_it_cannot_stop(agent):
    # on a socketpair, not a serial port: HOLD is not honoured and the reply says so
    assert "HELD" not in agent.start(Op.PING, hold=1).wait().attrs


def test_a_held_reply_that_comes_before_the_host_waits_for_it_keeps_the_guest_stopped():
    host, guest = socket.socketpair()
    scripted_agent(guest, held_if_asked)
    agent = Agent(host)
    brake = Brake()
    agent.lock_step(brake)
    pending = agent.start(Op.PING, hold=1)
    assert until(lambda: pending.done(), 5)  # answered before the host waits for it
    assert pending.wait().ret == 0 and brake.resumed == []
    agent.call(Op.PING)
    assert brake.resumed == ["cont"]
    agent.close()


def test_a_closed_channel_is_blamed_on_the_cause_that_comes_just_after_it():
    host, guest = socket.socketpair()
    agent = Agent(host)
    pending = agent.start(Op.PING)
    guest.close()  # QEMU's end goes first; what the console or QEMU's exit says comes a moment later
    time.sleep(CLOSE_GRACE / 4)
    agent.fail(VMError("kernel panic at 1.0 s: Kernel panic - not syncing"))
    with pytest.raises(VMError, match="Kernel panic"):
        pending.wait()
    agent.close()


def test_a_closed_channel_with_no_cause_after_it_is_the_close():
    host, guest = socket.socketpair()
    agent = Agent(host)
    pending = agent.start(Op.PING)
    guest.close()
    with pytest.raises(AgentError, match="agent channel closed"):
        pending.wait(timeout=CLOSE_GRACE + 5)
    agent.close()
