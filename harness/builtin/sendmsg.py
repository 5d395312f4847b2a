"""sendmsg, bind and connect checks; see README, "Scenarios" (net/netlink/af_netlink.c)."""
from __future__ import annotations

from socket import AF_INET

from pyroute2.netlink.rtnl import RTM_NEWLINK

from ..netlink import (
    IFF,
    MSG_DONTWAIT,
    MSG_OOB,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_ROUTE,
    NETLINK_USERSOCK,
    NLMSG_NOOP,
    RTMGRP_LINK,
    RTNLGRP_LINK,
    SO_SNDBUF,
    SOL_NETLINK,
    SOL_SOCKET,
    getlink_request,
    link_request,
    nlmsg_bytes,
)
from ..scenario import Guest, scenario

NOBODY = 65534
NOOP = nlmsg_bytes(NLMSG_NOOP)  # a message the kernel accepts and ignores


@scenario("send-oob", "sendmsg and recvmsg with MSG_OOB fail with EOPNOTSUPP",
          source="net/netlink/af_netlink.c:netlink_sendmsg, netlink_recvmsg", needs_nic=False)
def send_oob(g: Guest):
    sock = g.socket()
    g.expect("sendmsg(MSG_OOB)", sock.send(NOOP, flags=MSG_OOB).outcome(), "-1 EOPNOTSUPP")
    g.expect("recvmsg(MSG_OOB)", sock.recv(flags=MSG_OOB | MSG_DONTWAIT).errname, "EOPNOTSUPP")


@scenario("send-bad-family", "a destination or bind address whose nl_family is not AF_NETLINK gives EINVAL",
          source="net/netlink/af_netlink.c:netlink_sendmsg, netlink_bind", needs_nic=False)
def send_bad_family(g: Guest):
    sock = g.socket()
    g.expect("sendmsg to nl_family AF_INET", sock.send(NOOP, family=AF_INET).outcome(), "-1 EINVAL")
    g.expect("bind with nl_family AF_INET", sock.bind(family=AF_INET).outcome(), "-1 EINVAL")
    g.expect("sendmsg with no address still works", sock.send(NOOP).outcome(), str(len(NOOP)))


@scenario("send-emsgsize", "EMSGSIZE exactly when the message is longer than sk_sndbuf - 32",
          source="net/netlink/af_netlink.c:netlink_sendmsg", needs_nic=False)
def send_emsgsize(g: Guest):
    sock = g.socket(sndbuf=4096)  # the kernel doubles it; small keeps the transfer small
    sndbuf = sock.getsockopt(SOL_SOCKET, SO_SNDBUF)
    limit = sndbuf - 32
    g.note(f"sk_sndbuf {sndbuf}: the largest message accepted should be {limit} bytes")
    fits = nlmsg_bytes(NLMSG_NOOP, payload=b"\0" * (limit - 16))
    too_big = nlmsg_bytes(NLMSG_NOOP, payload=b"\0" * (limit - 15))
    g.expect(f"sendmsg of {len(fits)} bytes", sock.send(fits).outcome(), str(limit))
    g.expect(f"sendmsg of {len(too_big)} bytes", sock.send(too_big).outcome(), "-1 EMSGSIZE")


@scenario("send-eperm",
          "as non-root: NETLINK_ROUTE refuses sends to a group or a portid and connect to a group (EPERM); "
          "NETLINK_USERSOCK allows them; joining a USERSOCK group is EPERM, joining RTNLGRP_LINK works",
          source="net/netlink/af_netlink.c:netlink_allowed, netlink_sendmsg, netlink_connect, netlink_bind, "
                 "netlink_setsockopt", needs_nic=False)
def send_eperm(g: Guest):
    route = g.socket(NETLINK_ROUTE, uid=NOBODY)
    g.expect("ROUTE sendmsg to group 1", route.send(NOOP, dst=(0, RTMGRP_LINK)).outcome(), "-1 EPERM")
    g.expect("ROUTE sendmsg to portid 1234", route.send(NOOP, dst=(1234, 0)).outcome(), "-1 EPERM")
    g.expect("ROUTE connect to group 1", route.connect(groups=RTMGRP_LINK).outcome(), "-1 EPERM")
    g.expect("ROUTE bind to RTMGRP_LINK (rtnetlink allows non-root listeners)",
             route.bind(groups=RTMGRP_LINK).outcome(), "0")

    user = g.socket(NETLINK_USERSOCK, uid=NOBODY)
    # USERSOCK has NL_CFG_F_NONROOT_SEND: the send passes the permission check and is broadcast;
    # the unicast part to portid 0 then finds no kernel socket.
    g.expect("USERSOCK sendmsg to group 1 (not EPERM)", user.send(NOOP, dst=(0, 1)).outcome(), "-1 ECONNREFUSED")
    g.expect("USERSOCK connect to group 1", user.connect(groups=1).outcome(), "0")
    joiner = g.socket(NETLINK_USERSOCK, uid=NOBODY)
    g.expect("USERSOCK bind to group 1 (no NL_CFG_F_NONROOT_RECV)", joiner.bind(groups=1).outcome(), "-1 EPERM")
    g.expect("USERSOCK NETLINK_ADD_MEMBERSHIP 1",
             joiner.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 1).outcome(), "-1 EPERM")
    link = g.socket(NETLINK_ROUTE, uid=NOBODY)
    g.expect("ROUTE NETLINK_ADD_MEMBERSHIP RTNLGRP_LINK",
             link.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK).outcome(), "0")


@scenario("rtnl-eperm", "as non-root: RTM_NEWLINK is sent but answered with NLMSG_ERROR EPERM; RTM_GETLINK works",
          source="net/core/rtnetlink.c:rtnetlink_rcv_msg (netlink_net_capable)", needs_nic=False)
def rtnl_eperm(g: Guest):
    sock = g.socket(uid=NOBODY)
    request = link_request(RTM_NEWLINK, g.next_seq(), ifindex=1, flags=IFF["UP"], change=IFF["UP"])
    answer = sock.request(request)
    g.expect("the sendmsg succeeded; the kernel's answer", str(answer).split(" seq")[0], "NLMSG_ERROR EPERM")
    dump = sock.dump(getlink_request(g.next_seq()))
    names = [m.ifname for d in dump for m in d.messages if m.ifname]
    g.expect_true("RTM_GETLINK as non-root lists lo", "lo" in names, str(names))


@scenario("autobind",
          "the first send binds the socket to portid = pid, a second socket gets a negative portid; "
          "re-binding to another portid is EINVAL, binding to a taken one EADDRINUSE",
          source="net/netlink/af_netlink.c:netlink_autobind, netlink_bind, netlink_insert", needs_nic=False)
def autobind(g: Guest):
    pid = g.agent_pid
    first = g.socket()
    g.expect("an unbound socket has portid 0", first.getsockname()[0], 0)
    first.send(NOOP)
    g.expect("after its first send the portid is the agent's pid", first.getsockname()[0], pid, incidental=True)
    second = g.socket()
    second.send(NOOP)
    portid = second.getsockname()[0]
    g.expect_true("a second socket of the same process gets a negative portid", portid < 0, str(portid))
    g.expect("re-binding to another portid", first.bind(portid=pid + 1000).outcome(), "-1 EINVAL")
    g.expect("re-binding to its own portid", first.bind(portid=pid).outcome(), "0")
    third = g.socket()
    g.expect("binding to a taken portid", third.bind(portid=pid).outcome(), "-1 EADDRINUSE")


@scenario("econnrefused",
          "unicast to an unused portid, or to a socket connected to another peer, fails with ECONNREFUSED",
          source="net/netlink/af_netlink.c:netlink_unicast, netlink_getsockbyportid", needs_nic=False)
def econnrefused(g: Guest):
    sender = g.socket(NETLINK_USERSOCK)
    g.expect("unicast to unused portid 0x7ffffff0", sender.send(NOOP, dst=(0x7FFFFFF0, 0)).outcome(),
             "-1 ECONNREFUSED")
    target, other = g.socket(NETLINK_USERSOCK), g.socket(NETLINK_USERSOCK)
    target.bind(portid=5000)
    other.bind(portid=5001)
    sender.bind(portid=5002)
    g.expect("unicast to an unconnected socket", sender.send(NOOP, dst=(5000, 0)).outcome(), str(len(NOOP)))
    target.connect(portid=5001)
    g.expect("unicast to a socket connected to another peer", sender.send(NOOP, dst=(5000, 0)).outcome(),
             "-1 ECONNREFUSED")
    g.expect("its peer still gets through", other.send(NOOP, dst=(5000, 0)).outcome(), str(len(NOOP)))
