"""Netlink constants, decoding of what the guest kernel sent, and request building.

Message bodies are decoded by pyroute2's marshal classes: every rtnetlink family pyroute2 knows
(links, addresses, routes, neighbours, rules, qdiscs/classes/filters, ...), generic netlink's
header (and its controller's attributes), errors and acks.  This module only walks the headers
itself, so a truncated or malformed datagram is reported as such instead of being dropped
silently, and an attribute pyroute2 does not know is kept by number and length.
"""
from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass, field
from socket import MSG_DONTWAIT, MSG_OOB, MSG_PEEK, MSG_TRUNC, SO_RCVBUF, SO_SNDBUF, SOL_SOCKET  # noqa: F401

import pyroute2.netlink
import pyroute2.netlink.rtnl
from pyroute2.netlink import (  # noqa: F401
    GENL_ID_CTRL,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_BROADCAST_ERROR,
    NETLINK_DROP_MEMBERSHIP,
    NETLINK_EXT_ACK,
    NETLINK_GENERIC,
    NETLINK_NO_ENOBUFS,
    NETLINK_PKTINFO,
    NETLINK_ROUTE,
    NETLINK_USERSOCK,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_DUMP_INTR,
    NLM_F_EXCL,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    ctrlmsg,
    genlmsg,
    nlmsgerr,
)
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTMGRP_LINK, RTNLGRP_LINK  # noqa: F401
from pyroute2.netlink.rtnl.ifinfmsg import IFF_NAMES, ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from .agent import errname
from .show import show

# pyroute2 logs a traceback for every attribute it cannot decode; a kernel under test may send
# anything, and what could not be decoded is reported in the trace (Message.problem) instead.
logging.getLogger("pyroute2.netlink").setLevel(logging.ERROR)

# Neither socket nor pyroute2 exports these (<linux/socket.h>, <linux/netlink.h> 4.3+).
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10


def _names(module, *names: str) -> dict[int, str]:
    return {getattr(module, n): n for n in names}


MSG_FLAG_NAMES = _names(socket, "MSG_OOB", "MSG_PEEK", "MSG_CTRUNC", "MSG_TRUNC", "MSG_DONTWAIT")
# every RTM_* pyroute2 knows (the first name where two share a number)
RTM_NAMES = {value: name for name, value in reversed(vars(pyroute2.netlink.rtnl).items())
             if name.startswith("RTM_") and isinstance(value, int)}
NLMSG_NAMES = {**_names(pyroute2.netlink, "NLMSG_NOOP", "NLMSG_ERROR", "NLMSG_DONE", "NLMSG_OVERRUN"), **RTM_NAMES}
PROTOCOL_NAMES = _names(pyroute2.netlink, "NETLINK_ROUTE", "NETLINK_USERSOCK", "NETLINK_GENERIC")
LEVEL_NAMES = {SOL_SOCKET: "SOL_SOCKET", SOL_NETLINK: "SOL_NETLINK"}
OPTION_NAMES = {**{(SOL_SOCKET, v): n for v, n in _names(socket, "SO_SNDBUF", "SO_RCVBUF", "SO_SNDTIMEO").items()},
                **{(SOL_NETLINK, v): n for v, n in {
                    **_names(pyroute2.netlink, "NETLINK_ADD_MEMBERSHIP", "NETLINK_DROP_MEMBERSHIP", "NETLINK_PKTINFO",
                             "NETLINK_BROADCAST_ERROR", "NETLINK_NO_ENOBUFS", "NETLINK_EXT_ACK"),
                    NETLINK_CAP_ACK: "NETLINK_CAP_ACK"}.items()}}
NLMSG_HEADER = struct.Struct("=IHHII")

IFF = {name[4:]: value for name, value in IFF_NAMES.items()}  # "UP" -> 0x1
OPERSTATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"]


def flag_names(flags: int, names: dict) -> str:
    parts = [name for name, bit in names.items() if flags & bit]
    rest = flags & ~sum(bit for bit in names.values())
    return "|".join(parts + ([hex(rest)] if rest else [])) or "0"


def iff_names(flags: int) -> str:
    return flag_names(flags, IFF)


def msg_flag_names(flags: int) -> str:
    return flag_names(flags, {name: bit for bit, name in MSG_FLAG_NAMES.items()})


# Families of rtnetlink messages, for the object a message is about (see Message.key) and what
# its line shows besides the link fields.
FAMILY_OF = {cls: family for family, cls in (("link", "ifinfmsg"), ("addr", "ifaddrmsg"), ("route", "rtmsg"),
                                             ("neigh", "ndmsg"), ("rule", "fibmsg"), ("tc", "tcmsg"))}
IDENTITY = {"link": ("index",), "addr": ("index", "prefixlen", "IFA_ADDRESS", "IFA_LOCAL"),
            "route": ("family", "table", "dst_len", "RTA_DST", "RTA_TABLE"), "neigh": ("ifindex", "NDA_DST"),
            "rule": ("family", "table", "FRA_PRIORITY"), "tc": ("index", "handle", "parent")}
SUMMARY = {"addr": ("index", "prefixlen", "IFA_ADDRESS", "IFA_LABEL"),
           "route": ("table", "dst_len", "RTA_DST", "RTA_GATEWAY", "RTA_OIF"),
           "neigh": ("ifindex", "state", "NDA_DST", "NDA_LLADDR"), "rule": ("table", "FRA_PRIORITY"),
           "tc": ("index", "handle", "parent", "TCA_KIND"), "genl": ("cmd", "version")}
# Counters that change with every message: left out of "changed", kept in attrs and --verbose.
COUNTERS = ("IFLA_STATS", "IFLA_STATS64")
RTNL_MESSAGES = MarshalRtnl.msg_map  # message type -> pyroute2 class, every family pyroute2 knows


@dataclass
class Message:
    """One netlink message as a person reads it: its header, the fixed part of its body
    (`body`), every attribute by name (`attrs`, nested ones as dicts, an attribute pyroute2
    does not know as "attr N" with its length), and for links the fields scenarios test most."""
    type: int
    flags: int
    seq: int
    portid: int
    length: int
    family: str | None = None  # link, addr, route, neigh, rule, tc, genl, ctrl
    body: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    ifindex: int | None = None
    ifname: str | None = None
    ifi_flags: int | None = None
    ifi_change: int | None = None
    operstate: str | None = None
    carrier: int | None = None
    carrier_changes: int | None = None
    mtu: int | None = None
    error: int | None = None  # NLMSG_ERROR's errno (positive), NLMSG_DONE's status
    problem: str | None = None  # why it could not be decoded

    @property
    def type_name(self) -> str:
        if self.family in ("genl", "ctrl"):
            return f"GENL family {self.type}" if self.family == "genl" else "GENL_ID_CTRL"
        return NLMSG_NAMES.get(self.type, f"type {self.type}")

    @property
    def key(self) -> tuple | None:
        """The object the message is about (a link, an address, a route...), for comparing it
        with the previous message about the same one."""
        if self.family not in IDENTITY:
            return None
        fields = {**self.body, **self.attrs}
        return (self.family, *(repr(fields.get(f)) for f in IDENTITY[self.family]))

    def changed_since(self, before: dict) -> dict:
        """The attributes that differ from `before` (an earlier message's attrs); removed ones
        as None."""
        names = [*self.attrs, *(n for n in before if n not in self.attrs)]
        return {n: self.attrs.get(n) for n in names if n not in COUNTERS and before.get(n) != self.attrs.get(n)}

    def has(self, *flags: str) -> bool:
        return all(self.ifi_flags is not None and self.ifi_flags & IFF[f] for f in flags)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if v is not None and v != {}}
        d["type"] = self.type_name
        if self.ifi_flags is not None:
            d["ifi_flags"] = iff_names(self.ifi_flags)
        if self.error is not None and self.type == NLMSG_ERROR:
            d["error"] = errname(self.error)
        return d

    def __str__(self):
        if self.problem:
            return f"{self.type_name} ({self.problem})"
        if self.type == NLMSG_ERROR:
            return f"NLMSG_ERROR {errname(self.error) if self.error else 'ack (0)'} seq={self.seq}"
        if self.type == NLMSG_DONE:
            return f"NLMSG_DONE seq={self.seq}"
        if self.family in SUMMARY:
            fields = {**self.body, **self.attrs}
            return " ".join([self.type_name, *(f"{f}={show(fields[f])}" for f in SUMMARY[self.family] if f in fields)])
        if self.ifi_flags is None:
            return f"{self.type_name} len={self.length}"
        parts = [self.type_name, self.ifname or f"ifindex {self.ifindex}", f"flags={iff_names(self.ifi_flags)}"]
        if self.ifi_change:
            parts.append(f"change={self.ifi_change:#x}")
        if self.operstate is not None:
            parts.append(f"operstate={self.operstate}")
        if self.carrier is not None:
            parts.append(f"carrier={self.carrier}")
        return " ".join(parts)


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


def nlmsg_bytes(mtype: int, flags: int = 0, seq: int = 0, portid: int = 0, payload: bytes = b"") -> bytes:
    """A raw netlink message of exactly header + payload bytes (for size-exact sends)."""
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(payload), mtype, flags, seq, portid) + payload


def link_request(mtype: int, seq: int, ifindex: int = 0, ifname: str | None = None, flags: int = 0,
                 change: int = 0, kind: str | None = None, carrier: int | None = None,
                 mtu: int | None = None, nlm_flags: int = NLM_F_ACK) -> bytes:
    """RTM_NEWLINK / RTM_DELLINK / RTM_SETLINK: create a link of `kind`, change its flags, set
    its carrier (dummy supports IFLA_CARRIER on 3.14 and 6.x) or its MTU."""
    m = ifinfmsg()
    m["header"]["type"] = mtype
    m["header"]["flags"] = NLM_F_REQUEST | nlm_flags
    m["header"]["sequence_number"] = seq
    m["index"], m["flags"], m["change"] = ifindex, flags, change
    attrs = []
    if ifname:
        attrs.append(("IFLA_IFNAME", ifname))
    if carrier is not None:
        attrs.append(("IFLA_CARRIER", carrier))
    if mtu is not None:
        attrs.append(("IFLA_MTU", mtu))
    if kind:
        attrs.append(("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]}))
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def getlink_request(seq: int, dump: bool = True, ifindex: int = 0, flags: int = 0) -> bytes:
    """RTM_GETLINK, a dump of all links by default."""
    m = ifinfmsg()
    m["header"]["type"] = RTM_GETLINK
    m["header"]["flags"] = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0) | flags
    m["header"]["sequence_number"] = seq
    m["index"] = ifindex
    m.encode()
    return bytes(m.data)


def proc_net_netlink(text: str) -> dict[int, dict]:
    """/proc/net/netlink as {inode: {column: value}}.  The layout differs between 3.14 (Dump is a
    pointer) and 6.x, so columns are read from the header line and only the counters are parsed."""
    lines = text.splitlines()
    if not lines:
        return {}
    columns = lines[0].split()
    table = {}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(columns):
            continue
        row = dict(zip(columns, cells))
        try:
            for c in ("Eth", "Pid", "Rmem", "Wmem", "Drops", "Inode"):
                row[c] = int(row[c])
            row["Groups"] = int(row["Groups"], 16)
        except (KeyError, ValueError):
            continue
        table[row["Inode"]] = row
    return table
