"""RTM_GETLINK dumps; see README, "Scenarios" (net/netlink/af_netlink.c:netlink_dump,
net/core/rtnetlink.c:rtnl_dump_ifinfo)."""
from __future__ import annotations

from collections import Counter

from ..agent import errname
from ..netlink import (
    Message,
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_TRUNC,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_MULTI,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_NEWLINK,
    RTMGRP_LINK,
    SO_RCVBUF,
    SOL_SOCKET,
    getlink_request,
    link_request,
)
from ..scenario import Guest, scenario

LINKS = 24  # dummies: with lo that is ~25 x 1.3 KB, several datagrams of a 16 KB buffer


def link_batch(g: Guest, what: str, requests: list[bytes], unsupported_skips: bool = False):
    """RTM_NEWLINK requests in one sendmsg, without acks: rtnetlink handles them one after the
    other before sendmsg returns, so any error is queued by then and a non-blocking read finds
    it.  One agent request per batch instead of several per link; traced as one line."""
    with g.trace.summarised():
        sock = g.socket()
        sock.send(b"".join(requests))
        got = sock.recv(flags=MSG_DONTWAIT)
        sock.close()
    errors = [errname(m.error) for m in got.messages if m.type == NLMSG_ERROR and m.error]
    g.trace.add("guest", f"RTM_NEWLINK x{len(requests)} in one sendmsg: {what} → {', '.join(errors) or 'no error'}")
    if unsupported_skips and "EOPNOTSUPP" in errors:
        g.skip(f"kernel {g.kernel.release} cannot {what} (EOPNOTSUPP: the driver is not in this kernel)")
    g.require(f"{what}: no error", not errors, ", ".join(errors))


def add_dummies(g: Guest) -> set[str]:
    names = [f"dump{i}" for i in range(LINKS)]
    link_batch(g, f"create dummies {names[0]} … {names[-1]}",
               [link_request(RTM_NEWLINK, g.next_seq(), ifname=n, kind="dummy", nlm_flags=NLM_F_CREATE | NLM_F_EXCL)
                for n in names], unsupported_skips=True)
    return {*names, "lo"}


@scenario("dump-shape",
          "every message has NLM_F_MULTI and the request's seq and portid; NLMSG_DONE comes alone in its own "
          "datagram; no ack despite NLM_F_ACK; every link exactly once across several datagrams",
          source="net/netlink/af_netlink.c:netlink_dump, netlink_dump_done; net/core/rtnetlink.c:rtnl_dump_ifinfo",
          needs_nic=False)
def dump_shape(g: Guest):
    expected = add_dummies(g)
    sock = g.socket()
    sock.bind()
    portid = sock.getsockname()[0] & 0xFFFFFFFF
    seq = g.next_seq()
    datagrams = sock.dump(getlink_request(seq, flags=NLM_F_ACK), bufsize=16384)
    g.expect_true("the dump spans several datagrams", len(datagrams) >= 3, f"{len(datagrams)} datagrams")
    data = [m for d in datagrams[:-1] for m in d.messages]
    g.expect("every data message is RTM_NEWLINK with NLM_F_MULTI, seq and portid",
             {(m.type_name, bool(m.flags & NLM_F_MULTI), m.seq, m.portid) for m in data},
             {("RTM_NEWLINK", True, seq, portid)}, incidental=True)
    last = datagrams[-1].messages
    g.expect("the last datagram is NLMSG_DONE alone", [m.type_name for m in last], ["NLMSG_DONE"])
    g.expect("NLMSG_DONE has NLM_F_MULTI, the seq and the portid",
             (bool(last[0].flags & NLM_F_MULTI), last[0].seq, last[0].portid), (True, seq, portid), incidental=True)
    counts = Counter(m.ifname for m in data)
    g.expect("links listed more than once", sorted(n for n, c in counts.items() if c > 1), [])
    g.expect_true("every link appears", expected <= set(counts), f"missing {sorted(expected - set(counts))}")
    g.expect("no ack follows the dump", sock.recv(timeout=0.5).reply.timed_out, True)


@scenario("dump-tiny-buffer",
          "reading a dump with 1024-byte buffers: datagrams bigger than the buffer come truncated (MSG_TRUNC), their "
          "links are lost, and NLMSG_DONE still arrives intact",
          source="net/netlink/af_netlink.c:netlink_recvmsg, netlink_dump", needs_nic=False)
def dump_tiny_buffer(g: Guest):
    add_dummies(g)
    sock = g.socket()
    datagrams = sock.dump(getlink_request(g.next_seq()), bufsize=1024)
    data, done = datagrams[:-1], datagrams[-1]
    g.expect_true("several data datagrams arrived", len(data) >= 2, f"{len(data)}")
    truncated = [d for d in data if d.reply.get("MSG_FLAGS", 0) & MSG_TRUNC]
    whole = [d for d in data if d not in truncated]
    g.expect_true("most data datagrams are truncated", len(truncated) >= 2 and len(truncated) > len(whole),
                  f"{len(truncated)} of {len(data)}")
    g.expect("a truncated datagram returns exactly the buffer", {d.reply.ret for d in truncated}, {1024})
    # the kernel fills each dump skb with as many links as fit; a last one with a single link may fit
    g.expect("datagrams without MSG_TRUNC hold only complete messages",
             [str(m) for d in whole for m in d.messages if m.problem], [])
    seen = sum(1 for d in data for m in d.messages if m.type == RTM_NEWLINK and not m.problem)
    g.note(f"{seen} complete RTM_NEWLINK messages survived in {len(data)} truncated datagrams of {LINKS + 1} links")
    g.expect_true("links were lost", seen < LINKS + 1, f"{seen} complete")
    g.expect("NLMSG_DONE arrives intact", ([m.type for m in done.messages], done.reply.get("MSG_FLAGS")),
             ([NLMSG_DONE], 0))
    g.expect_true("no NLMSG_ERROR", all(m.type != NLMSG_ERROR for d in datagrams for m in d.messages))


@scenario("dump-pace",
          "a dump round is produced at the request and then, while the dump runs, by exactly each recvmsg that "
          "leaves rmem <= rcvbuf/2; the dump waits behind queued notifications and never causes ENOBUFS",
          source="net/netlink/af_netlink.c:netlink_recvmsg (rmem <= rcvbuf / 2), netlink_dump, "
                 "__netlink_dump_start", needs_nic=False)
def dump_pace(g: Guest):
    expected = add_dummies(g)
    # Room for a dump round (up to 32 KB, sized by the largest recvmsg buffer seen) on top of
    # rcvbuf/2 of notifications: 6.1.146+ counts the new round against rcvbuf before queueing it.
    sock = g.socket(groups=RTMGRP_LINK, rcvbuf=65536)
    rcvbuf = sock.getsockopt(SOL_SOCKET, SO_RCVBUF)

    def rmem() -> int:
        return g.netlink_table()[sock.inode]["Rmem"]

    # Queue notifications past rcvbuf/2 but below rcvbuf.  Measured in the guest: T, one
    # notification's truesize, and how many notifications one MTU change sends (3.14 sends two,
    # one of them before the change: see mtu-notify).
    def change_mtus(first: int, last: int, what: str):  # RTM_NEWLINK with IFLA_MTU, as `ip link set mtu`
        link_batch(g, what, [link_request(RTM_NEWLINK, g.next_seq(), ifname=f"dump{i % LINKS}", mtu=1300 + i,
                                          nlm_flags=0) for i in range(first, last + 1)])

    change_mtus(0, 0, "an MTU change on dump0")
    sock.recv(flags=MSG_PEEK)  # wait for it without taking it
    before = rmem()  # sendmsg has returned: everything the change sends is queued
    per_change = len(sock.drain(quiet=0.5))
    truesize = before // per_change
    g.note(f"one MTU change sent {per_change} RTM_NEWLINK, each of truesize T={truesize}")
    changes = -(-(rcvbuf // 2 // truesize + 1) // per_change)
    queued = changes * per_change
    g.require("notifications can sit between rcvbuf/2 and rcvbuf", rcvbuf // 2 < queued * truesize < rcvbuf,
              f"rcvbuf {rcvbuf}, T {truesize}, {queued} queued")
    change_mtus(1, changes, f"{changes} MTU changes on the dummies ({queued} notifications)")
    g.wait_until(lambda: rmem() >= queued * truesize, timeout=5, interval=0.05)
    g.expect("Rmem once they are queued (their count × T)", rmem(), queued * truesize)

    seq = g.next_seq()
    sock.send(getlink_request(seq))
    after_request = rmem()
    g.expect_true("the request itself produced one dump round (rmem was below rcvbuf)",
                  after_request > queued * truesize, f"Rmem {after_request}")
    g.sleep(1.0)
    g.expect("no further round without a recvmsg (Rmem 1 s later)", rmem(), after_request)

    # Read one datagram at a time.  A notification's truesize is T, so after each one the kernel's
    # choice is checkable: Rmem - T left above rcvbuf/2 → no new round; at or below → a new round,
    # as long as the dump is running (netlink_recvmsg calls netlink_dump only while nlk->cb is set —
    # cb_running in 6.x — which netlink_dump clears once it has queued NLMSG_DONE).
    notifications, datagrams, level, done, errors = 0, 0, after_request, False, []
    dumped: list[Message] = []
    broken, reads = [], []  # reads: (left, produced) for each notification read
    while not done:
        got = sock.recv()
        g.require("every recvmsg returns data", got.ok and got.messages, got.describe())
        now = rmem()
        if got.messages[0].seq == 0:  # a notification
            if dumped:
                broken.append(f"notification after dump data: {got.messages[0]}")
            notifications += 1
            left = level - truesize
            reads.append((left, now - left))
        else:
            datagrams += 1
            dumped += got.messages
            done = any(m.type in (NLMSG_DONE, NLMSG_ERROR) for m in got.messages)
        errors += [m for m in got.messages if m.type == NLMSG_ERROR]
        level = now
    # One round is one datagram.  If the rounds made by notification reads, with the one made at the
    # request, are all the dump's datagrams, the last of those reads queued NLMSG_DONE: the dump
    # had ended, and the reads after it rightly made none.
    producing = [i for i, (_, grew) in enumerate(reads) if grew]
    ended_at = producing[-1] if producing and 1 + len(producing) == datagrams else len(reads)
    for i, (left, grew) in enumerate(reads):
        if grew:
            g.note(f"recvmsg #{i + 1} left Rmem {left} ≤ {rcvbuf // 2}: a round of {grew}")
        if grew and left > rcvbuf // 2 or not grew and left <= rcvbuf // 2 and i < ended_at:
            broken.append(f"recvmsg left Rmem {left} (rcvbuf/2 {rcvbuf // 2}) and Rmem became {left + grew}")
    if ended_at < len(reads):
        g.note(f"the dump ended with the round of recvmsg #{ended_at + 1} ({datagrams} datagrams): "
               "no rounds after it")
    g.expect("reads that broke 'the notifications come first; while the dump runs, a round exactly when a "
             "recvmsg leaves rmem <= rcvbuf/2'", broken, [])
    g.expect("notifications read before the dump", notifications, queued)
    g.expect("no NLMSG_ERROR", [str(m) for m in errors], [])
    names = Counter(m.ifname for m in dumped if m.type == RTM_NEWLINK)
    g.expect_true("the dump lists every link exactly once", expected <= set(names) and max(names.values()) == 1,
                  str(names))
    g.expect("Drops in /proc/net/netlink: the dump overran nothing", g.netlink_table()[sock.inode]["Drops"], 0)
