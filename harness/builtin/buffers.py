"""Receive buffers, multicast between processes, and recvmsg truncation (README, "Scenarios")."""
from __future__ import annotations

from ..netlink import (
    MSG_DONTWAIT,
    MSG_PEEK,
    MSG_TRUNC,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_PKTINFO,
    NETLINK_USERSOCK,
    NLMSG_NOOP,
    SO_RCVBUF,
    SOL_NETLINK,
    SOL_SOCKET,
    nlmsg_bytes,
)
from ..scenario import Guest, scenario

GROUP = 5                  # a NETLINK_USERSOCK multicast group
GROUP_BIT = 1 << (GROUP - 1)


@scenario("rcvbuf-doubling", "SO_RCVBUF=v reads back as max(2 * min(v, rmem_max), SOCK_MIN_RCVBUF)",
          source="net/core/sock.c:sock_setsockopt (SO_RCVBUF)", needs_nic=False)
def rcvbuf_doubling(g: Guest):
    rmem_max = int(g.read_file("/proc/sys/net/core/rmem_max")["DATA"])
    sock = g.socket()
    sock.setsockopt(SOL_SOCKET, SO_RCVBUF, 1)
    floor = sock.getsockopt(SOL_SOCKET, SO_RCVBUF)  # SOCK_MIN_RCVBUF: depends on sizeof(struct sk_buff)
    g.note(f"rmem_max {rmem_max}; SOCK_MIN_RCVBUF measured as {floor} (SO_RCVBUF=1)")
    for value in (floor // 4, floor, 10000, rmem_max, rmem_max * 4):
        sock.setsockopt(SOL_SOCKET, SO_RCVBUF, value)
        g.expect(f"SO_RCVBUF={value} reads back", sock.getsockopt(SOL_SOCKET, SO_RCVBUF),
                 max(2 * min(value, rmem_max), floor))


@scenario("multicast-user",
          "NETLINK_USERSOCK multicast from root: members get it with the sender's portid and group, the sender "
          "and non-members do not; the send to (portid 0, group) also returns ECONNREFUSED",
          source="net/netlink/af_netlink.c:netlink_sendmsg, netlink_broadcast, do_one_broadcast", needs_nic=False)
def multicast_user(g: Guest):
    sender, member, outsider = (g.socket(NETLINK_USERSOCK) for _ in range(3))
    sender.bind(groups=GROUP_BIT)  # a member too: it must still not hear itself
    member.bind(groups=GROUP_BIT)
    outsider.bind()
    member.setsockopt(SOL_NETLINK, NETLINK_PKTINFO, 1)
    sender_portid = sender.getsockname()[0]
    message = nlmsg_bytes(NLMSG_NOOP, seq=77, payload=b"hello group")
    g.expect("sendmsg to (portid 0, group 5): broadcast, then no kernel socket to unicast to",
             sender.send(message, dst=(0, GROUP_BIT)).outcome(), "-1 ECONNREFUSED")
    got = member.recv(timeout=2)
    g.expect("the member receives the bytes", got.reply.get("DATA"), message)
    g.expect("msg_name: the sender's portid and the group bit",
             (got.reply.get("SRC_PORTID"), got.reply.get("SRC_GROUPS")), (sender_portid, GROUP_BIT), incidental=True)
    g.expect("NETLINK_PKTINFO names the group", [c[2][:4] for c in got.cmsgs], [GROUP.to_bytes(4, "little")])
    g.expect_true("the sender does not hear itself", sender.recv(flags=MSG_DONTWAIT).errname == "EAGAIN")
    g.expect_true("a non-member hears nothing", outsider.recv(flags=MSG_DONTWAIT).errname == "EAGAIN")


@scenario("bind-resets-groups", "bind(nl_groups=0) after NETLINK_ADD_MEMBERSHIP drops the membership",
          source="net/netlink/af_netlink.c:netlink_bind, netlink_setsockopt", needs_nic=False)
def bind_resets_groups(g: Guest):
    sock = g.socket(NETLINK_USERSOCK)
    sock.bind()
    portid, _ = sock.getsockname()
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, GROUP)
    g.expect("Groups in /proc/net/netlink after ADD_MEMBERSHIP", g.netlink_table()[sock.inode]["Groups"], GROUP_BIT)
    g.expect("bind again with the same portid and nl_groups 0", sock.bind(portid=portid).outcome(), "0")
    g.expect("Groups after the bind", g.netlink_table()[sock.inode]["Groups"], 0)
    sender = g.socket(NETLINK_USERSOCK)
    sender.send(nlmsg_bytes(NLMSG_NOOP), dst=(0, GROUP_BIT))
    g.expect("a group message no longer arrives", sock.recv(timeout=0.5).reply.timed_out, True)


@scenario("recv-trunc",
          "a short buffer returns its length with MSG_TRUNC and the rest is lost; MSG_TRUNC in flags returns the "
          "full length; MSG_PEEK|MSG_TRUNC probes the size without consuming",
          source="net/netlink/af_netlink.c:netlink_recvmsg", needs_nic=False)
def recv_trunc(g: Guest):
    sock = g.socket(NETLINK_USERSOCK)
    sock.bind()
    me = sock.getsockname()[0]
    datagram = nlmsg_bytes(NLMSG_NOOP, payload=bytes(range(84)))  # 100 bytes

    sock.send(datagram, dst=(me, 0))
    short = sock.recv(40, flags=MSG_DONTWAIT)
    g.expect("recvmsg with 40 bytes: return value and msg_flags", (short.reply.ret, short.reply.get("MSG_FLAGS")),
             (40, MSG_TRUNC))
    g.expect("the 40 bytes are the datagram's first 40", short.reply.get("DATA"), datagram[:40])
    g.expect("the rest is gone", sock.recv(flags=MSG_DONTWAIT).errname, "EAGAIN")

    sock.send(datagram, dst=(me, 0))
    full = sock.recv(40, flags=MSG_TRUNC | MSG_DONTWAIT)
    g.expect("recvmsg(40, MSG_TRUNC) returns the full length", full.reply.ret, len(datagram))

    sock.send(datagram, dst=(me, 0))
    probe = sock.recv(0, flags=MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT)
    g.expect("recvmsg(0, MSG_PEEK|MSG_TRUNC) returns the size", probe.reply.ret, len(datagram))
    whole = sock.recv(probe.reply.ret, flags=MSG_DONTWAIT)
    g.expect("and the datagram is still there, whole", whole.reply.get("DATA"), datagram)
