"""Netlink as scenarios read and write it; what a scenario file imports (`from harness.netlink
import RTMGRP_LINK, Message`).  Each concern is a module of its own: constants (numbers and their
names), message (Message), decode (datagrams and control messages), requests (the bytes of a
request) and proc (/proc/net/netlink)."""
from . import constants
from .constants import *  # noqa: F403  every constant and name table, as scenarios use them
from .decode import decode, decode_cmsgs, describe_cmsg
from .message import Message
from .proc import proc_net_netlink
from .requests import getlink_request, link_request, nlmsg_bytes

__all__ = [*constants.__all__, "Message", "decode", "decode_cmsgs", "describe_cmsg", "getlink_request", "link_request",
           "nlmsg_bytes", "proc_net_netlink"]
