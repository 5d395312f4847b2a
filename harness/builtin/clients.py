"""The real clients (README, "Scenarios"): iproute2's `ip monitor link` and libnl's
`nl-monitor link` run in the guest beside the agent, and must report the same link changes the
agent decoded.  They are host programs put into the guest by testbed.yaml's guest-binaries."""
from __future__ import annotations

import re

from ..agent.protocol import Op
from ..netlink import RTMGRP_LINK
from ..scenario import Guest, scenario
from .link import bring_up

CLIENTS = {"ip monitor link": "/usr/sbin/ip monitor link", "nl-monitor link": "/usr/bin/nl-monitor link"}


def subscribers(g: Guest) -> int:
    return sum(1 for row in g.netlink_table().values() if row["Eth"] == 0 and row["Groups"] & RTMGRP_LINK)


@scenario("real-clients",
          "`ip monitor link` and `nl-monitor link` print the same link changes, in the same order, as the agent "
          "decodes for a set_link off/on",
          source="iproute2 ip/ipmonitor.c, libnl src/nl-monitor.c; net/core/rtnetlink.c:rtmsg_ifinfo")
def real_clients(g: Guest):
    for cmd in CLIENTS.values():
        program = cmd.split()[0]
        if g.call(Op.READ_FILE, path=program, maxlen=4).ret < 0:
            g.skip(f"{program} is not in the guest (add it to guest-binaries in testbed.yaml)")
    mon = bring_up(g)
    before = subscribers(g)
    # Ended by the killall below, and a hang by the host's wait for them.  Their guest-clock limit
    # is a guest day: while the host works between requests, an idle tickless guest on the virtual
    # clock can pass hundreds of seconds (debian-5.10 under make test's load: 2,083 s in the
    # 10 s of waiting for them to subscribe), and a 300 s limit killed them before they were seen.
    running = {name: g.agent.start(Op.RUN, cmd=cmd, pty=1, timeout_ms=86_400_000, background=1)
               for name, cmd in CLIENTS.items()}
    # until both have joined RTNLGRP_LINK (seen in /proc/net/netlink)
    g.wait_until(lambda: subscribers(g) >= before + len(CLIENTS), timeout=10, interval=0.1)
    g.require("both clients subscribed", subscribers(g) >= before + len(CLIENTS))

    events = []
    for up in (False, True):
        g.set_link(up)
        events.append(mon.recv_link(g.ifname))
    mon.drain(quiet=1.5)
    g.sh("killall ip nl-monitor")
    outputs = {name: p.wait(10).get("OUTPUT", b"").decode("utf-8", "replace") for name, p in running.items()}
    for name, text in outputs.items():  # nl-monitor dumps devconf and stats too: keep the summary lines
        summary = [line.rstrip() for line in text.splitlines() if g.ifname in line or " state " in line]
        g.note(f"{name} printed (summary lines):\n" + "\n".join(summary))

    agent_view = [("LOWER_UP" if m.has("LOWER_UP") else "NO-CARRIER", m.operstate) for m in events]
    ip_lines = [line for line in outputs["ip monitor link"].splitlines() if re.search(rf"\b{g.ifname}:", line)]
    ip_view = [("LOWER_UP" if "LOWER_UP" in line else "NO-CARRIER", m.group(1))
               for line in ip_lines if (m := re.search(r"state (\w+)", line))]
    g.expect("ip monitor link: carrier and state per change, as the agent decoded them", ip_view, agent_view)

    nl_lines = [line for line in outputs["nl-monitor link"].splitlines() if re.search(rf"\b{g.ifname}\b", line)]
    nl_view = [("LOWER_UP" if "lowerup" in line.lower() else "NO-CARRIER") for line in nl_lines]
    g.expect("nl-monitor link: carrier per change, as the agent decoded them", nl_view, [a for a, _ in agent_view])
