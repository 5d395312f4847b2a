"""RTM_GETLINK dumps (SCENARIOS.md section E; net/netlink/af_netlink.c:netlink_dump,
net/core/rtnetlink.c:rtnl_dump_ifinfo)."""
from __future__ import annotations

from collections import Counter

from ..netlink import MSG_TRUNC, NLM_F_ACK, NLM_F_MULTI, NLMSG_DONE, NLMSG_ERROR, RTM_NEWLINK, getlink_request
from ..scenario import Guest, scenario

LINKS = 24  # dummies: with lo that is ~25 x 1.3 KB, several datagrams of a 16 KB buffer


def add_dummies(g: Guest) -> set[str]:
    names = {f"dump{i}" for i in range(LINKS)}
    for name in sorted(names):
        g.add_dummy(name)
    return names | {"lo"}


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
             {("RTM_NEWLINK", True, seq, portid)})
    last = datagrams[-1].messages
    g.expect("the last datagram is NLMSG_DONE alone", [m.type_name for m in last], ["NLMSG_DONE"])
    g.expect("NLMSG_DONE has NLM_F_MULTI, the seq and the portid",
             (bool(last[0].flags & NLM_F_MULTI), last[0].seq, last[0].portid), (True, seq, portid))
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
