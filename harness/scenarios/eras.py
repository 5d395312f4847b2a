"""Where 3.14 and today's kernels differ in what a netlink user sees.  Each expectation is keyed
on the version read from the booted image, for the eras whose source was read (3.14.40; 6.1 and
6.12); on a version in between, what the kernel did is reported and not checked."""
from __future__ import annotations

import socket
import struct

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from ..agent import errname
from ..netlink import (
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_HEADER,
    RTM_NEWLINK,
    RTMGRP_LINK,
    SOL_NETLINK,
    flag_names,
    getlink_request,
)
from ..scenario import Guest, scenario
from .dump import add_dummies

PAGE = 4096


def era(g: Guest) -> str | None:
    """'3.14' or '6.x' when the expectation for this version is known from its source, else None."""
    return "3.14" if g.version[:2] == (3, 14) else "6.x" if g.version[:2] >= (6, 1) else None


def expect_for_era(g: Guest, what: str, actual, by_era: dict[str, object]):
    known = era(g)
    if known is None:
        g.note(f"{what}: {actual!r} (not checked: {'.'.join(map(str, g.version))} is between the eras whose source was read)")
    else:
        g.expect(what, actual, by_era[known])


@scenario("mtu-notify",
          "an MTU change: 3.14 sends RTM_NEWLINK twice, the first before the change with the old IFLA_MTU "
          "(NETDEV_PRECHANGEMTU falls through rtnetlink_event's switch to its default); 6.x only after it",
          source="net/core/dev.c:dev_set_mtu (NETDEV_PRECHANGEMTU, then NETDEV_CHANGEMTU); "
                 "net/core/rtnetlink.c:rtnetlink_event (3.14: default sends; 6.x: rtnl_event_type lists CHANGEMTU only)",
          needs_nic=False)
def mtu_notify(g: Guest):
    g.add_dummy("mtu0")
    before = g.getlink("mtu0").mtu
    sock = g.socket(groups=RTMGRP_LINK)
    g.sh("ip link set mtu0 mtu 1400")
    mtus = [m.mtu for m in sock.drain(quiet=1.0) if m.ifname == "mtu0"]
    g.note(f"IFLA_MTU of each RTM_NEWLINK about mtu0, in order: {mtus}")
    expect_for_era(g, "IFLA_MTU of the notifications of one MTU change", mtus,
                   {"3.14": [before, 1400], "6.x": [1400]})
    g.expect("the link's MTU afterwards (RTM_GETLINK)", g.getlink("mtu0").mtu, 1400)


@scenario("dump-datagram-size",
          "a dump read with 32 KB buffers: 3.14 fills each datagram only up to NLMSG_GOODSIZE (one page); 6.x sizes "
          "every round after the first by the largest recvmsg buffer seen, up to 32 KB",
          source="net/netlink/af_netlink.c:netlink_dump (3.14: max(min_dump_alloc, NLMSG_GOODSIZE); "
                 "6.x: nlk->max_recvmsg_len), netlink_recvmsg (6.x records max_recvmsg_len)",
          needs_nic=False)
def dump_datagram_size(g: Guest):
    add_dummies(g)
    sock = g.socket()  # fresh: no recvmsg has set max_recvmsg_len yet
    datagrams = sock.dump(getlink_request(g.next_seq()), bufsize=32768)
    sizes = [d.reply.ret for d in datagrams if d.messages and d.messages[0].type != NLMSG_DONE]
    g.note(f"dump datagram sizes: {sizes}")
    g.expect_true("the dump spans several datagrams", len(sizes) >= 2, f"{sizes}")
    g.expect("the first round, made at the request, fits one page", sizes[0] <= PAGE, True)
    expect_for_era(g, "a later datagram is bigger than a page", max(sizes[1:]) > PAGE,
                   {"3.14": False, "6.x": True})


NLMSGERR_ATTR_MSG = 1
IFLA_MTU = [name for name, _ in ifinfmsg.nla_map].index("IFLA_MTU")  # pyroute2's table is indexed by type


def bad_mtu_request(seq: int, ifindex: int) -> bytes:
    """RTM_NEWLINK on an existing link with a 1-byte IFLA_MTU: refused by attribute validation."""
    attr = struct.pack("=HH", 5, IFLA_MTU) + b"\x00\x00\x00\x00"  # nla_len 5: one byte of a u32
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex, 0, 0) + attr
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def tlvs(payload: bytes) -> dict[int, bytes]:
    """The attributes after an NLMSG_ERROR's capped echo (header only): {type: data}."""
    out, pos = {}, NLMSG_HEADER.size + 4 + NLMSG_HEADER.size
    while pos + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, pos)
        if length < 4:
            break
        out[kind & 0x3FFF] = payload[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


@scenario("ack-options",
          "an error ack: 3.14 always echoes the whole request and knows neither NETLINK_CAP_ACK nor NETLINK_EXT_ACK "
          "(ENOPROTOOPT); 6.x with CAP_ACK echoes only the request's header (NLM_F_CAPPED) and with EXT_ACK adds "
          "the reason as attributes (NLM_F_ACK_TLVS, NLMSGERR_ATTR_MSG)",
          source="net/netlink/af_netlink.c:netlink_ack (6.x: NETLINK_F_CAP_ACK, netlink_ack_tlv_len), "
                 "netlink_setsockopt (NETLINK_CAP_ACK 4.3, NETLINK_EXT_ACK 4.12)", needs_nic=False)
def ack_options(g: Guest):
    lo = g.ifindex("lo")
    request = bad_mtu_request(g.next_seq(), lo)
    plain = g.socket()
    refused = plain.request(request)
    g.expect("the 1-byte IFLA_MTU is refused", refused.type_name, "NLMSG_ERROR")
    g.note(f"errno of the refusal: {errname(refused.error)}")
    g.expect("without options, the error echoes the whole request (length)", refused.length,
             NLMSG_HEADER.size + 4 + len(request))
    g.expect("without options, the ack's flags", refused.flags, 0)

    opts = g.socket()
    outcomes = {name: opts.setsockopt(SOL_NETLINK, option, 1).outcome()
                for name, option in (("NETLINK_CAP_ACK", NETLINK_CAP_ACK), ("NETLINK_EXT_ACK", NETLINK_EXT_ACK))}
    expect_for_era(g, "setsockopt NETLINK_CAP_ACK and NETLINK_EXT_ACK", outcomes,
                   {"3.14": dict.fromkeys(outcomes, "-1 ENOPROTOOPT"), "6.x": dict.fromkeys(outcomes, "0")})
    opts.send(request)
    got = opts.recv()
    g.require("the kernel answers the request", got.ok and got.messages, got.describe())
    ack, payload = got.messages[0], got.reply.get("DATA", b"")
    g.expect("with the options, the same errno", errname(ack.error), errname(refused.error))
    flags = flag_names(ack.flags, {"NLM_F_CAPPED": NLM_F_CAPPED, "NLM_F_ACK_TLVS": NLM_F_ACK_TLVS})
    expect_for_era(g, "with the options, the ack's flags", flags, {"3.14": "0", "6.x": "NLM_F_CAPPED|NLM_F_ACK_TLVS"})
    if ack.flags & NLM_F_CAPPED:
        message = tlvs(payload).get(NLMSGERR_ATTR_MSG, b"").rstrip(b"\0").decode(errors="replace")
        g.note(f"NLMSGERR_ATTR_MSG: {message!r}")
        g.expect_true("the extended ack says why", message, f"attributes {sorted(tlvs(payload))}")
    else:
        g.expect("with the options unknown, the error still echoes the whole request", ack.length, refused.length)
