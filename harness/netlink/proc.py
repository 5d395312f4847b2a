"""/proc/net/netlink, the kernel's table of netlink sockets."""
from __future__ import annotations


def proc_net_netlink(text: str) -> dict[int, dict]:
    """/proc/net/netlink as {inode: {column: value}}.  The layout differs between 3.14 (Dump is a
    pointer) and 6.x, so columns are read from the header line and only the counters are parsed."""
    lines = text.splitlines()
    if not lines:
        return {}
    columns = lines[0].split()
    table: dict[int, dict] = {}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) != len(columns):
            continue
        raw = dict(zip(columns, cells, strict=True))
        try:
            counters = {c: int(raw[c]) for c in ("Eth", "Pid", "Rmem", "Wmem", "Drops", "Inode")}
            row: dict[str, str | int] = {**raw, **counters, "Groups": int(raw["Groups"], 16)}
        except (KeyError, ValueError):
            continue
        table[counters["Inode"]] = row
    return table
