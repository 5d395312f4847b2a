"""One netlink message as a person reads it (Message): its header, body and attributes by name,
the object it is about, and its trace line."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..agent import errname
from ..show import show
from .constants import IFF, NLMSG_DONE, NLMSG_ERROR, NLMSG_NAMES, iff_names

# What identifies the object a message of a family is about (see Message.key), and what its line
# shows besides the link fields.
IDENTITY = {"link": ("index",), "addr": ("index", "prefixlen", "IFA_ADDRESS", "IFA_LOCAL"),
            "route": ("family", "table", "dst_len", "RTA_DST", "RTA_TABLE"), "neigh": ("ifindex", "NDA_DST"),
            "rule": ("family", "table", "FRA_PRIORITY"), "tc": ("index", "handle", "parent")}
SUMMARY = {"addr": ("index", "prefixlen", "IFA_ADDRESS", "IFA_LABEL"),
           "route": ("table", "dst_len", "RTA_DST", "RTA_GATEWAY", "RTA_OIF"),
           "neigh": ("ifindex", "state", "NDA_DST", "NDA_LLADDR"), "rule": ("table", "FRA_PRIORITY"),
           "tc": ("index", "handle", "parent", "TCA_KIND"), "genl": ("cmd", "version")}
# Counters that change with every message: left out of "changed", kept in attrs and --verbose.
COUNTERS = ("IFLA_STATS", "IFLA_STATS64")


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
