"""The run as one self-contained HTML page (report.html): the kernel x NIC grid per scenario, each
cell's trace and timeline, and what differs between kernels and between NICs."""
from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from . import Result, Verdict
from .differences import by_version, differences
from .timeline_svg import svg

FILE = "report.html"
COLOURS = {Verdict.PASSED: "#2e7d32", Verdict.FAILED: "#c62828", Verdict.SKIPPED: "#9e9e9e", Verdict.ERROR: "#ef6c00"}


def _esc(text) -> str:
    return html.escape(str(text))


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } .meta code { background: #f3f3f3; padding: 0 .3em; }
.counts span { display: inline-block; margin-right: 1em; font-weight: 600; }
table.grid { border-collapse: collapse; margin: .4em 0 1em; }
table.grid th, table.grid td { border: 1px solid #ddd; padding: .25em .7em; text-align: center; }
table.grid td a { color: white; text-decoration: none; font-weight: 600; display: block; }
.scn { margin: 1.2em 0; } .scn .desc { color: #555; } .src { font-family: monospace; color: #777; font-size: .9em; }
details { margin: .3em 0 .8em; border: 1px solid #e3e3e3; border-radius: 4px; padding: .3em .8em; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #fafafa; padding: .6em; overflow-x: auto; font-size: 12px; line-height: 1.35; }
svg.timeline text { font-size: 11px; fill: #333; } svg.timeline .tick { fill: #777; font-size: 10px; }
svg.timeline .lbl { font-size: 10px; }
table.diff { border-collapse: collapse; } table.diff td, table.diff th { border: 1px solid #ddd; padding: .2em .6em; }
table.diff td.differs { background: #fff3e0; }
.infra { background: #fff3e0; border-left: 4px solid #ef6c00; padding: .5em 1em; }
"""


def write(meta: dict, results: list[Result], out: Path) -> None:
    """report.html in `out`, self-contained (links go to the cells' logs beside it)."""
    by_scenario: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_scenario[r.scenario].append(r)
    counts = meta.get("counts", {})
    kernels = list(meta["kernels"])
    h = [f"<!doctype html><meta charset=utf-8><title>testbed report</title><style>{CSS}</style>",
         "<h1>netlink testbed: kernel × NIC × scenario</h1>",
         f'<p class="meta">QEMU <code>{_esc(meta["qemu"])}</code> · host {_esc(meta["host"]["name"])} '
         f'({meta["host"]["cpus"]} CPUs, Linux {_esc(meta["host"]["kernel"])}) · started {_esc(meta["started"])} · '
         f'{meta.get("duration", 0):.0f} s' + ("" if meta.get("complete") else " · <b>INCOMPLETE (interrupted)</b>")
         + "<br>" + " · ".join(f'<b>{_esc(k)}</b> {_esc(v["release"])} (upstream {_esc(v["version"])}, '
                               f'{_esc(v["accel"]).upper()}, sha256 {v["sha256"][:12]})'
                               for k, v in meta["kernels"].items())
         + "</p>",
         '<p class="counts">' + "".join(f'<span style="color:{COLOURS[v]}">{n} {v}</span>'
                                        for v, n in counts.items() if n) + "</p>"]
    infra = [r for r in results if r.verdict == Verdict.ERROR]
    if infra:
        h.append('<div class="infra"><b>Infrastructure errors</b> (these cells say nothing about the kernel):<ul>'
                 + "".join(f'<li><a href="#{r.cell}">{_esc(r.cell)}</a>: {_esc(r.reason)}</li>' for r in infra)
                 + "</ul></div>")
    h.append("<h2>Scenarios</h2>")
    for name in by_scenario:
        runs = by_scenario[name]
        info = next((r for r in runs if r.source), None)  # what the scenario is about: its results say
        nics = sorted({r.nic or "no NIC" for r in runs})
        cell = {(r.kernel, r.nic or "no NIC"): r for r in runs}
        h.append(f'<div class="scn"><h3 id="s-{name}">{_esc(name)}</h3>'
                 + (f'<div class="desc">{_esc(info.description)}</div><div class="src">{_esc(info.source)}</div>'
                    if info else ""))
        h.append('<table class="grid"><tr><th></th>' + "".join(f"<th>{_esc(n)}</th>" for n in nics) + "</tr>")
        for k in kernels:
            row = [f"<th>{_esc(k)}</th>"]
            for n in nics:
                found = cell.get((k, n))
                row.append(f'<td style="background:{COLOURS[found.verdict]}"><a href="#{found.cell}" '
                           f'title="{_esc(found.reason)}">{found.verdict}</a></td>' if found else "<td></td>")
            h.append("<tr>" + "".join(row) + "</tr>")
        h.append("</table>")
        for r in sorted(runs, key=lambda r: r.cell):
            rel = Path(r.artifacts).relative_to(out) if Path(r.artifacts).is_relative_to(out) else Path(r.artifacts)
            logs = " · ".join(f'<a href="{_esc(rel / f)}">{f}</a>' for f in
                              ("trace.txt", "console.log", "qmp.log", "agent.log", "result.json"))
            h.append(f'<details id="{r.cell}"'
                     f'{" open" if r.verdict in (Verdict.FAILED, Verdict.ERROR) else ""}><summary>'
                     f'<span style="color:{COLOURS[r.verdict]}">{r.verdict.upper()}</span> {_esc(r.kernel)} · '
                     f'{_esc(r.nic or "no NIC")} · {r.duration:.1f} s</summary>'
                     + (f"<p><b>{_esc(r.reason)}</b></p>" if r.reason else "") + svg(r)
                     + f"<pre>{_esc(chr(10).join(e.line() for e in r.trace))}</pre><p>{logs}</p></details>")
        h.append("</div>")
    h.append("<h2>What changed between kernels</h2>")
    diffs, versions = differences(results), by_version(results)
    if len(kernels) < 2:
        h.append("<p>One kernel in this run: nothing to compare.</p>")
    elif not diffs:
        h.append(f"<p>Every observation was the same on {', '.join(map(_esc, kernels))}.</p>")
    for scenario, nic, names, rows in diffs:
        h.append(f'<h3><a href="#s-{scenario}">{_esc(scenario)}</a>{" · " + _esc(nic) if nic else ""}</h3>'
                 '<table class="diff"><tr><th>observed</th>'
                 + "".join(f"<th>{_esc(k)}<br><small>{_esc(versions[k])}</small></th>" for k in names) + "</tr>"
                 + "".join(f"<tr><td>{_esc(what)}</td>"
                           + "".join(f'<td class="differs">{_esc(v[k])}</td>' for k in names)
                           + "</tr>" for what, v in rows) + "</table>")
    nics = sorted({r.nic for r in results if r.nic})
    if len(nics) > 1:
        h.append("<h2>What differed between NICs</h2>")
        nic_diffs = differences(results, "nic")
        if not nic_diffs:
            h.append(f"<p>Every observation was the same on {', '.join(map(_esc, nics))}.</p>")
        for scenario, kernel, names, rows in nic_diffs:
            h.append(f'<h3><a href="#s-{scenario}">{_esc(scenario)}</a> · {_esc(kernel)}</h3>'
                     '<table class="diff"><tr><th>observed</th>' + "".join(f"<th>{_esc(n)}</th>" for n in names)
                     + "</tr>" + "".join(f"<tr><td>{_esc(what)}</td>" + "".join(
                         f'<td class="differs">{_esc(v[n])}</td>' for n in names) + "</tr>" for what, v in rows)
                     + "</table>")
    (out / FILE).write_text("\n".join(h))
