"""Requests to the guest kernel, as the bytes a sendmsg carries."""
from __future__ import annotations

from typing import Any

from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from .constants import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_HEADER, RTM_GETLINK


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
    attrs: list[tuple[str, Any]] = []
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
