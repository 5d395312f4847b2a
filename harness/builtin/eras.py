"""Where 3.14 and today's kernels differ in what a netlink user sees.  Each expectation is keyed
on the upstream change that made the difference (changes.py), by the version read from the
booted image."""
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
from .changes import (
    CAP_ACK,
    DUMP_SIZE,
    EXT_ACK,
    MTU_EVENTS,
    SETLINK_NOTIFY,
    Version,
    expect_by_change,
)
from .dump import add_dummies

PAGE = 4096


def mtu_notifications(version: Version, old: int | None, new: int) -> list[int | None]:
    """IFLA_MTU of each RTM_NEWLINK an `ip link set mtu` (RTM_SETLINK) sends: rtnetlink_event's
    for NETDEV_PRECHANGEMTU (the old MTU) and NETDEV_CHANGEMTU, then do_setlink's own, until
    rtnetlink_event stopped sending for MTU events and do_setlink's became the only one (4.14
    brought CHANGEMTU back to rtnetlink_event and made do_setlink's defer to it: still one)."""
    if MTU_EVENTS.present(version):
        return [new]
    return [old, new] + ([new] if SETLINK_NOTIFY.present(version) else [])


@scenario("mtu-notify",
          "an MTU change: before 4.12 RTM_NEWLINK comes first before the change with the old IFLA_MTU "
          "(NETDEV_PRECHANGEMTU falls through rtnetlink_event's switch to its default), then after it "
          "(and from 3.18 once more from do_setlink); since 4.12 once, after it",
          source="net/core/dev.c:dev_set_mtu (NETDEV_PRECHANGEMTU, then NETDEV_CHANGEMTU); "
                 "net/core/rtnetlink.c:rtnetlink_event (3.14: default sends; "
                 "6.x: rtnl_event_type lists CHANGEMTU only), "
                 "do_setlink (DO_SETLINK_NOTIFY)",
          needs_nic=False)
def mtu_notify(g: Guest):
    g.add_dummy("mtu0")
    before = g.getlink("mtu0").mtu
    sock = g.socket(groups=RTMGRP_LINK)
    g.sh("ip link set mtu0 mtu 1400")
    mtus = [m.mtu for m in sock.drain(quiet=1.0) if m.ifname == "mtu0"]
    g.note(f"IFLA_MTU of each RTM_NEWLINK about mtu0, in order: {mtus}")
    for change in (SETLINK_NOTIFY, MTU_EVENTS):
        g.note(change.describe(g.version))
    g.expect("IFLA_MTU of the notifications of one MTU change", mtus, mtu_notifications(g.version, before, 1400))
    g.expect("the link's MTU afterwards (RTM_GETLINK)", g.getlink("mtu0").mtu, 1400)


@scenario("dump-datagram-size",
          "a dump read with 32 KB buffers: 3.14 fills each datagram only up to NLMSG_GOODSIZE (one page); since "
          "3.15 every round after the first is sized by the largest recvmsg buffer seen, "
          "up to 32 KB (16 KB before 4.9)",
          source="net/netlink/af_netlink.c:netlink_dump (3.14: max(min_dump_alloc, NLMSG_GOODSIZE); "
                 "3.15+: nlk->max_recvmsg_len), netlink_recvmsg (3.15+ records max_recvmsg_len)",
          needs_nic=False)
def dump_datagram_size(g: Guest):
    add_dummies(g)
    sock = g.socket()  # fresh: no recvmsg has set max_recvmsg_len yet
    datagrams = sock.dump(getlink_request(g.next_seq()), bufsize=32768)
    sizes = [d.reply.ret for d in datagrams if d.messages and d.messages[0].type != NLMSG_DONE]
    g.note(f"dump datagram sizes: {sizes}")
    g.expect_true("the dump spans several datagrams", len(sizes) >= 2, f"{sizes}")
    g.expect("the first round, made at the request, fits one page", sizes[0] <= PAGE, True)
    expect_by_change(g, DUMP_SIZE, "a later datagram is bigger than a page", max(sizes[1:]) > PAGE,
                     before=False, after=True)


NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2
IFLA_MTU = [name for name, _ in ifinfmsg.nla_map].index("IFLA_MTU")  # pyroute2's table is indexed by type


def mtu_request(seq: int, ifindex: int, mtu: bytes) -> bytes:
    """RTM_NEWLINK on an existing link with IFLA_MTU holding `mtu` (one byte of a u32 is refused
    by attribute validation; four set the MTU)."""
    attr = struct.pack("=HH", 4 + len(mtu), IFLA_MTU) + mtu.ljust(4, b"\0")
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, ifindex, 0, 0) + attr
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def echoed_bytes(payload: bytes, request: bytes) -> int:
    """How much of `request` the NLMSG_ERROR at the start of `payload` echoes: all of it, or only
    its header with well-formed attributes after it up to the message's end; -1 for neither."""
    end = NLMSG_HEADER.unpack_from(payload)[0]
    echo = payload[NLMSG_HEADER.size + 4:end]
    if echo == request:
        return len(request)
    pos = NLMSG_HEADER.size
    while pos + 4 <= len(echo) and (length := struct.unpack_from("=H", echo, pos)[0]) >= 4:
        pos += (length + 3) & ~3
    return NLMSG_HEADER.size if echo[:NLMSG_HEADER.size] == request[:NLMSG_HEADER.size] and pos == len(echo) else -1


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
          "acks: without options an error echoes the whole request; 3.14 knows neither NETLINK_CAP_ACK (4.3) nor "
          "NETLINK_EXT_ACK (4.12) (ENOPROTOOPT); with CAP_ACK an error echoes only the request's header, and since "
          "4.12 says so (NLM_F_CAPPED, on success acks too) and with EXT_ACK adds the reason as attributes "
          "(NLM_F_ACK_TLVS)",
          source="net/netlink/af_netlink.c:netlink_ack (NETLINK_F_CAP_ACK since 4.3; NLM_F_CAPPED, "
                 "NLM_F_ACK_TLVS since 4.12), netlink_setsockopt (NETLINK_CAP_ACK 4.3, NETLINK_EXT_ACK 4.12)",
          needs_nic=False)
def ack_options(g: Guest):
    lo = g.ifindex("lo")
    request = mtu_request(g.next_seq(), lo, b"\0")
    plain = g.socket()
    accepted = plain.request(mtu_request(g.next_seq(), lo, struct.pack("=I", g.getlink("lo").mtu)))
    g.expect("setting lo's MTU to what it is: acked", (accepted.type_name, errname(accepted.error)),
             ("NLMSG_ERROR", "0"))
    expect_by_change(g, EXT_ACK, "a success ack's flags", flag_names(accepted.flags, {"NLM_F_CAPPED": NLM_F_CAPPED}),
                     before="0", after="NLM_F_CAPPED")
    refused = plain.request(request)
    g.expect("the 1-byte IFLA_MTU is refused", refused.type_name, "NLMSG_ERROR")
    g.note(f"errno of the refusal: {errname(refused.error)}")
    g.expect("without options, the error echoes the whole request (length)", refused.length,
             NLMSG_HEADER.size + 4 + len(request))
    g.expect("without options, the ack's flags", refused.flags, 0)

    opts = g.socket()
    for change, name, option in ((CAP_ACK, "NETLINK_CAP_ACK", NETLINK_CAP_ACK),
                                 (EXT_ACK, "NETLINK_EXT_ACK", NETLINK_EXT_ACK)):
        expect_by_change(g, change, f"setsockopt {name}", opts.setsockopt(SOL_NETLINK, option, 1).outcome(),
                         before="-1 ENOPROTOOPT", after="0")
    opts.send(request)
    got = opts.recv()
    g.require("the kernel answers the request", got.ok and got.messages, got.describe())
    ack, payload = got.messages[0], got.reply.get("DATA", b"")
    g.expect("with the options, the same errno", errname(ack.error), errname(refused.error))
    expect_by_change(g, CAP_ACK, "with the options, the bytes of the request the error echoes",
                     echoed_bytes(payload, request), before=len(request), after=NLMSG_HEADER.size)
    flags = flag_names(ack.flags, {"NLM_F_CAPPED": NLM_F_CAPPED, "NLM_F_ACK_TLVS": NLM_F_ACK_TLVS})
    expect_by_change(g, EXT_ACK, "with the options, the ack's flags", flags,
                     before="0", after="NLM_F_CAPPED|NLM_F_ACK_TLVS")
    if ack.flags & NLM_F_ACK_TLVS:
        attrs = tlvs(payload)
        message = attrs.get(NLMSGERR_ATTR_MSG, b"").rstrip(b"\0").decode(errors="replace")
        offset = int.from_bytes(attrs.get(NLMSGERR_ATTR_OFFS, b""), "little")
        g.note(f"NLMSGERR_ATTR_MSG: {message!r}, NLMSGERR_ATTR_OFFS: {offset if NLMSGERR_ATTR_OFFS in attrs else None}")
        g.expect_true("the extended ack says why (a message, or the offset of the bad attribute)",
                      {NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS} & set(attrs), f"attributes {sorted(attrs)}")
