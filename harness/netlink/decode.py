"""What the guest kernel sent, decoded: the messages of a datagram and recvmsg's control messages.

Message bodies are decoded by pyroute2's marshal classes: every rtnetlink family pyroute2 knows
(links, addresses, routes, neighbours, rules, qdiscs/classes/filters, ...), generic netlink's
header (and its controller's attributes), errors and acks.  This module only walks the headers
itself, so a truncated or malformed datagram is reported as such instead of being dropped
silently, and an attribute pyroute2 does not know is kept by number and length.
"""
from __future__ import annotations

import logging
import struct

from pyroute2.netlink import GENL_ID_CTRL, ctrlmsg, genlmsg, nlmsgerr
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from .constants import (NETLINK_GENERIC, NETLINK_PKTINFO, NETLINK_ROUTE, NLMSG_DONE, NLMSG_ERROR, NLMSG_HEADER,
                        OPERSTATES, SOL_NETLINK)
from .message import Message

# pyroute2 logs a traceback for every attribute it cannot decode; a kernel under test may send
# anything, and what could not be decoded is reported in the trace (Message.problem) instead.
logging.getLogger("pyroute2.netlink").setLevel(logging.ERROR)

# Families of rtnetlink messages by pyroute2 class, for Message.family.
FAMILY_OF = {cls: family for family, cls in (("link", "ifinfmsg"), ("addr", "ifaddrmsg"), ("route", "rtmsg"),
                                             ("neigh", "ndmsg"), ("rule", "fibmsg"), ("tc", "tcmsg"))}
RTNL_MESSAGES = MarshalRtnl.msg_map  # message type -> pyroute2 class, every family pyroute2 knows


def decode(data: bytes, protocol: int = NETLINK_ROUTE) -> list[Message]:
    """Every netlink message in one datagram, in order (`protocol`: the socket's)."""
    out, pos = [], 0
    while pos + NLMSG_HEADER.size <= len(data):
        length, mtype, flags, seq, portid = NLMSG_HEADER.unpack_from(data, pos)
        msg = Message(mtype, flags, seq, portid, length)
        out.append(msg)
        if length < NLMSG_HEADER.size or pos + length > len(data):
            msg.problem = f"truncated: header says {length} bytes, {len(data) - pos} present"
            break
        _decode_body(msg, data[pos:pos + length], protocol)
        pos += (length + 3) & ~3
    if 0 < len(data) - pos < NLMSG_HEADER.size:
        out.append(Message(0, 0, 0, 0, len(data) - pos, problem="trailing bytes shorter than a header"))
    return out


def _int_or_none(value):
    return value if isinstance(value, int) else None


def _plain(value):
    """pyroute2's decoded value as plain data: nested attributes as {name: value} (a name that
    repeats: a list), an unknown attribute as its number and length, bytes as hex."""
    if isinstance(value, dict):
        plain = {k: _plain(v) for k, v in value.items() if k not in ("header", "attrs") and not k.startswith("__")}
        plain.update(_attrs(value.get("attrs") or []))
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value if isinstance(value, (int, float, str, bool)) or value is None else repr(value)


def _attrs(pairs) -> dict:
    grouped: dict[str, list] = {}
    for pair in pairs:
        name, value = pair[0], pair[1]
        if name == "UNKNOWN" and isinstance(value, dict) and "header" in value:
            header = value["header"]
            name, value = f"attr {header.get('type')}", f"{header.get('length', 4) - 4} bytes"
        grouped.setdefault(name, []).append(_plain(value))
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def _decode_body(msg: Message, raw: bytes, protocol: int):
    try:
        if msg.type == NLMSG_ERROR:
            m = nlmsgerr(raw)
            m.decode()
            msg.error = -m["error"]
        elif msg.type == NLMSG_DONE:
            if len(raw) >= NLMSG_HEADER.size + 4:
                msg.error = struct.unpack_from("=i", raw, NLMSG_HEADER.size)[0]
        elif msg.type < 16:
            return  # NLMSG_NOOP, NLMSG_OVERRUN and the reserved control types: no body to decode
        elif protocol == NETLINK_GENERIC:
            m = (ctrlmsg if msg.type == GENL_ID_CTRL else genlmsg)(raw)
            m.decode()
            msg.family = "ctrl" if msg.type == GENL_ID_CTRL else "genl"
            msg.body, msg.attrs = _fields(m), _attrs(m["attrs"])
        elif protocol == NETLINK_ROUTE and msg.type in RTNL_MESSAGES:
            m = RTNL_MESSAGES[msg.type](raw)
            m.decode()
            msg.family = FAMILY_OF.get(type(m).__name__, type(m).__name__)
            msg.body, msg.attrs = _fields(m), _attrs(m["attrs"])
            if msg.family == "link":
                _link_fields(msg)
    except Exception as e:  # a kernel under test can send anything; report, never crash
        msg.problem = f"undecodable: {type(e).__name__}: {e}"


def _fields(m) -> dict:
    return {name: m[name] for name, _ in m.fields if not name.startswith(("__", "pad", "res"))}


def _link_fields(msg: Message):
    a = {name: v[0] if isinstance(v, list) else v for name, v in msg.attrs.items()}  # the first of a repeated one
    msg.ifindex, msg.ifi_flags, msg.ifi_change = msg.body["index"], msg.body["flags"], msg.body["change"]
    name = a.get("IFLA_IFNAME")
    msg.ifname = name if isinstance(name, str) else None
    state = a.get("IFLA_OPERSTATE")
    msg.operstate = (OPERSTATES[state] if isinstance(state, int) and 0 <= state < len(OPERSTATES)
                     else state if state is None or isinstance(state, str) else repr(state))
    msg.carrier = _int_or_none(a.get("IFLA_CARRIER"))
    msg.carrier_changes = _int_or_none(a.get("IFLA_CARRIER_CHANGES"))
    msg.mtu = _int_or_none(a.get("IFLA_MTU"))


CMSG_HEADER = struct.Struct("=QiI")  # x86_64 struct cmsghdr: size_t len, int level, int type


def decode_cmsgs(control: bytes) -> list[tuple[int, int, bytes]]:
    """recvmsg's control buffer as (level, type, data) triples."""
    out, pos = [], 0
    while pos + CMSG_HEADER.size <= len(control):
        length, level, ctype = CMSG_HEADER.unpack_from(control, pos)
        if length < CMSG_HEADER.size or pos + length > len(control):
            break
        out.append((level, ctype, control[pos + CMSG_HEADER.size:pos + length]))
        pos += (length + 7) & ~7
    return out


def describe_cmsg(level: int, ctype: int, data: bytes) -> str:
    if (level, ctype) == (SOL_NETLINK, NETLINK_PKTINFO) and len(data) >= 4:
        return f"NETLINK_PKTINFO group {struct.unpack_from('=I', data)[0]}"
    return f"cmsg level {level} type {ctype} ({len(data)} bytes)"
