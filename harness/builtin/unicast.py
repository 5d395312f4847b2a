"""Unicast between processes on NETLINK_USERSOCK (README, "Scenarios";
net/netlink/af_netlink.c:netlink_unicast, netlink_attachskb)."""
from __future__ import annotations

import struct
from socket import SO_SNDTIMEO

from ..netlink import (
    MSG_DONTWAIT,
    NETLINK_USERSOCK,
    NLMSG_NOOP,
    SO_RCVBUF,
    SOL_SOCKET,
    nlmsg_bytes,
)
from ..scenario import Guest, scenario
from .changes import TIMER_WHEEL
from .overrun import admission

RECEIVER, SENDER = 6000, 6001
MESSAGE = nlmsg_bytes(NLMSG_NOOP, payload=b"x" * 184)  # 200 bytes


def fill(g: Guest):
    """A receiver with the smallest buffer, filled by non-blocking sends until EAGAIN; returns
    (receiver, sender, messages it took)."""
    receiver = g.socket(NETLINK_USERSOCK, rcvbuf=1)
    receiver.bind(portid=RECEIVER)
    sender = g.socket(NETLINK_USERSOCK)
    sender.bind(portid=SENDER)
    # Both admission rules take the first message into an empty queue: its Rmem is T.
    g.expect("the first send to the empty receiver",
             sender.send(MESSAGE, flags=MSG_DONTWAIT, dst=(RECEIVER, 0)).outcome(),
             str(len(MESSAGE)))
    truesize = g.netlink_table()[receiver.inode]["Rmem"]
    fits = admission(g, receiver.getsockopt(SOL_SOCKET, SO_RCVBUF), truesize, unicast=True)
    accepted = 1
    while (r := sender.send(MESSAGE, flags=MSG_DONTWAIT, dst=(RECEIVER, 0))).ret > 0:
        accepted += 1
        g.require("the receiver fills up within 64 messages", accepted < 64)
    g.expect("the send that finds the receiver full", r.outcome(), "-1 EAGAIN")
    g.expect("the number queued, by the admission rule", accepted, fits)
    return receiver, sender, accepted


@scenario("unicast-full-nonblock",
          "a non-reading receiver fills up: a MSG_DONTWAIT sender gets EAGAIN; the receiver sees no ENOBUFS and "
          "its Drops stays 0 (overrun is only marked when the sender is the kernel)",
          source="net/netlink/af_netlink.c:netlink_attachskb, netlink_unicast", needs_nic=False)
def unicast_full_nonblock(g: Guest):
    receiver, _, accepted = fill(g)
    g.expect("Drops of the receiver", g.netlink_table()[receiver.inode]["Drops"], 0)
    queued = [receiver.recv(flags=MSG_DONTWAIT) for _ in range(accepted)]
    g.expect("the queued messages, each intact (no ENOBUFS before them)",
             [got.reply.get("DATA") == MESSAGE or got.describe() for got in queued], [True] * accepted)
    g.expect("then the queue is empty", receiver.recv(flags=MSG_DONTWAIT).errname, "EAGAIN")


@scenario("unicast-full-block",
          "a blocking sender to a full receiver sleeps until the receiver reads, then completes; with "
          "SO_SNDTIMEO it gives up with EAGAIN after at least the timeout",
          source="net/netlink/af_netlink.c:netlink_attachskb (sock_sndtimeo, schedule_timeout), netlink_rcv_wake; "
                 "kernel/time/timer.c:calc_index (4.8+: never early; 3.14 kernel/timer.c: up to a jiffy early)",
          needs_nic=False)
def unicast_full_block(g: Guest):
    receiver, sender, _ = fill(g)

    timed = g.socket(NETLINK_USERSOCK)
    timeout_ms = 300
    timed.setsockopt(SOL_SOCKET, SO_SNDTIMEO, struct.pack("=qq", 0, timeout_ms * 1000))
    r = timed.send(MESSAGE, dst=(RECEIVER, 0))
    waited_ms = (r["T_NS"] - r["T_START_NS"]) / 1e6
    g.expect("with SO_SNDTIMEO 300 ms", r.outcome(), "-1 EAGAIN")
    # The timeout becomes jiffies (rounded up) and a timer-wheel sleep.  Since 4.8 the wheel rounds
    # every expiry up so that no timer fires early (kernel/time/timer.c:calc_index); before, a timer
    # fired at the tick where jiffies reached its expiry, so a sleep armed mid-tick could be up to
    # one jiffy short (kernel/timer.c:__run_timers), and a jiffy is at most 10 ms (HZ >= 100).
    g.note(f"the send slept {waited_ms:.1f} ms (guest clock)")
    g.note(TIMER_WHEEL.describe(g.version))
    if TIMER_WHEEL.present(g.version):
        g.expect_true("it slept at least the timeout", waited_ms >= timeout_ms, f"{waited_ms:.1f} ms")
    else:
        g.expect_true("it slept at least the timeout less one jiffy (a jiffy ≤ 10 ms)", waited_ms > timeout_ms - 10,
                      f"{waited_ms:.1f} ms")

    blocked = sender.send_in_background(MESSAGE, dst=(RECEIVER, 0))
    g.sleep(1.0)
    g.expect("the blocking sender is still asleep after 1 s", blocked.done(), False)
    read = receiver.recv(flags=MSG_DONTWAIT)
    g.expect("the receiver reads one message", read.reply.get("DATA"), MESSAGE)
    done = blocked.result()
    g.expect("the sender then completes", done.outcome(), str(len(MESSAGE)))
    # recvmsg wakes the sleeper (netlink_rcv_wake) and, on one vCPU, the woken sender may finish
    # before the reader's recvmsg has returned: compare with the moment the read began.
    g.expect_true("and it completed only once the read had begun", done["T_NS"] >= read.reply["T_START_NS"],
                  f"send done at {done['T_NS']} ns, read began at {read.reply['T_START_NS']} ns")
