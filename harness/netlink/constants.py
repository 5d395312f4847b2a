"""Netlink's numbers and their names: the constants scenarios use (from socket and pyroute2, and
the few neither exports) and the name tables the trace shows instead of numbers."""
from __future__ import annotations

import socket
import struct
from socket import MSG_DONTWAIT, MSG_OOB, MSG_PEEK, MSG_TRUNC, SO_RCVBUF, SO_SNDBUF, SOL_SOCKET

import pyroute2.netlink
import pyroute2.netlink.rtnl
from pyroute2.netlink import (
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
)
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTMGRP_LINK, RTNLGRP_LINK
from pyroute2.netlink.rtnl.ifinfmsg import IFF_NAMES

__all__ = ["GENL_ID_CTRL", "IFF", "LEVEL_NAMES", "MSG_DONTWAIT", "MSG_FLAG_NAMES", "MSG_OOB", "MSG_PEEK", "MSG_TRUNC",
           "NETLINK_ADD_MEMBERSHIP", "NETLINK_BROADCAST_ERROR", "NETLINK_CAP_ACK", "NETLINK_DROP_MEMBERSHIP",
           "NETLINK_EXT_ACK", "NETLINK_GENERIC", "NETLINK_NO_ENOBUFS", "NETLINK_PKTINFO", "NETLINK_ROUTE",
           "NETLINK_USERSOCK", "NLMSG_DONE", "NLMSG_ERROR", "NLMSG_HEADER", "NLMSG_NAMES", "NLMSG_NOOP", "NLM_F_ACK",
           "NLM_F_ACK_TLVS", "NLM_F_CAPPED", "NLM_F_CREATE", "NLM_F_DUMP", "NLM_F_DUMP_INTR", "NLM_F_EXCL",
           "NLM_F_MULTI", "NLM_F_REQUEST", "OPERSTATES", "OPTION_NAMES", "PROTOCOL_NAMES", "RTMGRP_LINK",
           "RTM_DELLINK", "RTM_GETLINK", "RTM_NAMES", "RTM_NEWLINK", "RTNLGRP_LINK", "SOL_NETLINK", "SOL_SOCKET",
           "SO_RCVBUF", "SO_SNDBUF", "flag_names", "iff_names", "msg_flag_names"]

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


def iff_names(flags: int | None) -> str:
    """`flags` by name; a message that carried none (not a link message) says so."""
    return "(no ifi_flags)" if flags is None else flag_names(flags, IFF)


def msg_flag_names(flags: int) -> str:
    return flag_names(flags, {name: bit for bit, name in MSG_FLAG_NAMES.items()})
