"""/proc/net/netlink, the kernel's table of netlink sockets."""
from __future__ import annotations


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
        row = dict(zip(columns, cells, strict=True))
        try:
            for c in ("Eth", "Pid", "Rmem", "Wmem", "Drops", "Inode"):
                row[c] = int(row[c])
            row["Groups"] = int(row["Groups"], 16)
        except (KeyError, ValueError):
            continue
        table[row["Inode"]] = row
    return table
