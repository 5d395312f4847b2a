"""Reading matrix results: the self-contained HTML report, merged shards, and what differs
between kernels (`testbed report`, `testbed diff`)."""
from __future__ import annotations

import html
import json
import shutil
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from . import Result, Verdict, kcidb

COLOURS = {Verdict.PASSED: "#2e7d32", Verdict.FAILED: "#c62828", Verdict.SKIPPED: "#9e9e9e", Verdict.ERROR: "#ef6c00"}


def load(directory: Path) -> tuple[dict, list[Result]]:
    """run.json and every cell's result.json of one matrix results directory."""
    if not (directory / "run.json").exists():
        raise FileNotFoundError(f"{directory}: no run.json (not a `testbed matrix` results directory)")
    meta = json.loads((directory / "run.json").read_text())
    results = [Result.load(p) for p in sorted((directory / "cells").glob("*/result.json"))]
    return meta, results


def merge(directories: list[Path], out: Path) -> tuple[dict, list[Result]]:
    """Shards into one results directory: cells copied, run.json and junit.xml rewritten."""
    metas, results = [], []
    (out / "cells").mkdir(parents=True, exist_ok=True)
    for d in directories:
        meta, cells = load(d)
        metas.append(meta)
        for r in cells:
            target = out / "cells" / r.cell
            if Path(r.artifacts).resolve() != target.resolve():
                shutil.copytree(r.artifacts, target, dirs_exist_ok=True)
            r.artifacts = str(target)
            results.append(r)
    meta = {**metas[0], "shard": None, "merged_from": [str(d) for d in directories],
            "cells": sum(m["cells"] for m in metas), "complete": all(m.get("complete") for m in metas),
            "duration": max(m.get("duration", 0) for m in metas),
            "kernels": {k: v for m in metas for k, v in m["kernels"].items()},
            "nics": sorted({n for m in metas for n in m["nics"]})}
    publish(out, meta, results)
    return json.loads((out / "run.json").read_text()), results


def write_junit(results: list[Result], path: Path, name: str = "testbed") -> None:
    """One testcase per cell: classname kernel.nic, name the scenario; failures carry the
    decoded trace and the end of the console log, infrastructure errors are <error>."""
    suite = ET.Element("testsuite", name=name, tests=str(len(results)),
                       failures=str(sum(r.verdict == Verdict.FAILED for r in results)),
                       errors=str(sum(r.verdict == Verdict.ERROR for r in results)),
                       skipped=str(sum(r.verdict == Verdict.SKIPPED for r in results)),
                       time=f"{sum(r.duration for r in results):.3f}")
    for r in sorted(results, key=lambda r: r.cell):
        case = ET.SubElement(suite, "testcase", classname=f"{r.kernel}.{r.nic or 'nonic'}", name=r.scenario,
                             time=f"{r.duration:.3f}")
        if r.verdict == Verdict.SKIPPED:
            ET.SubElement(case, "skipped", message=r.reason)
        elif r.verdict in (Verdict.FAILED, Verdict.ERROR):
            tag = "failure" if r.verdict == Verdict.FAILED else "error"
            ET.SubElement(case, tag, message=r.reason, type=r.verdict).text = r.verdict_line()
            console = Path(r.artifacts) / "console.log"
            tail = console.read_text(errors="replace").splitlines()[-40:] if console.exists() else []
            ET.SubElement(case, "system-out").text = (
                "\n".join(e.line() for e in r.trace) + f"\n\nartifacts: {r.artifacts}\n\n"
                + "--- console.log (last 40 lines) ---\n" + "\n".join(tail))
    ET.indent(suite)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def publish(out: Path, meta: dict, results: list[Result]) -> dict[str, int]:
    """Everything a results directory holds besides the cells: junit.xml, run.json (with the
    counts), report.html, kcidb.json."""
    write_junit(results, out / "junit.xml")
    counts = {v: sum(r.verdict == v for r in results)
              for v in (Verdict.PASSED, Verdict.FAILED, Verdict.SKIPPED, Verdict.ERROR)}
    meta = {**meta, "counts": counts}
    (out / "run.json").write_text(json.dumps(meta, indent=1))
    html_report(meta, results, out)
    (out / "kcidb.json").write_text(json.dumps(kcidb.export(meta, results), indent=1))
    return counts


# ---- what differs between kernels ----

def observations(r: Result) -> dict[str, str]:
    """What a run observed: each check's value, keyed by what was checked."""
    seen = {"verdict": r.verdict + (f": {r.reason}" if r.verdict != Verdict.PASSED and r.reason else "")}
    for e in r.trace:
        if e.actor == "check" and "check" in e.data and not e.data.get("incidental"):
            seen[e.data["check"]] = e.data["observed"]
    return seen


def by_version(results: list[Result]) -> dict[str, str]:
    """Kernel name -> upstream version, oldest first: the eras read left to right."""
    versions = {r.kernel: r.version for r in results}
    def key(name):
        return tuple(int(p) for p in versions[name].split(".") if p.isdigit()) if versions[name] else (), name
    return {k: versions[k] for k in sorted(versions, key=key)}


def differences(results: list[Result], across: str = "kernel") -> list[tuple[str, str | None, list[str],
                                                                             list[tuple[str, dict]]]]:
    """For each scenario run on several kernels (across="kernel": per NIC, oldest kernel first)
    or on several NICs (across="nic": per kernel): the observations that are not the same on
    all of them, as (scenario, the NIC or kernel held fixed, the columns, [(what, {column: value})])."""
    fixed = "nic" if across == "kernel" else "kernel"
    order = list(by_version(results)) if across == "kernel" else sorted({r.nic for r in results if r.nic})
    by_cell: dict[tuple, dict[str, Result]] = defaultdict(dict)
    for r in sorted((r for r in results if getattr(r, across) in order), key=lambda r: order.index(getattr(r, across))):
        by_cell[(r.scenario, getattr(r, fixed))][getattr(r, across)] = r
    out = []
    for (scenario, held), runs in sorted(by_cell.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if len(runs) < 2:
            continue
        seen = {k: observations(r) for k, r in runs.items()}
        keys = list(dict.fromkeys(key for obs in seen.values() for key in obs))
        rows = [(key, {k: obs.get(key, "—") for k, obs in seen.items()}) for key in keys]
        rows = [(key, vals) for key, vals in rows if len(set(vals.values())) > 1]
        if rows:
            out.append((scenario, held, list(runs), rows))
    return out


def axis(results: list[Result]) -> str:
    """What a diff compares: the kernels when there are several, else the NICs."""
    return "kernel" if len({r.kernel for r in results}) > 1 else "nic"


def print_differences(results: list[Result]) -> None:
    across = axis(results)
    diffs = differences(results, across)
    versions = by_version(results)
    if across == "kernel":
        columns = {k: f"{k} ({v})" for k, v in versions.items()}
        what = "kernels"
    else:
        columns = {n: n for n in sorted({r.nic for r in results if r.nic})}
        what = f"NICs (kernel {', '.join(f'{k} {v}' for k, v in versions.items())})"
    if not diffs:
        print(f"testbed: the {what} {', '.join(columns.values())} behaved the same in every scenario run on all of them")
        return
    print(f"testbed: what differs between the {what} {', '.join(columns.values())}, per scenario"
          + (", oldest kernel first" if across == "kernel" else ""))
    width = max(len(c) for c in columns.values())
    for scenario, held, names, rows in diffs:
        source = next((r.source for r in results if r.scenario == scenario and r.source), "")
        print(f"\n{scenario}" + (f" ({held})" if held else ""))
        if source:
            print(f"  kernel source: {source}")
        for name, values in rows:
            print(f"  {name}")
            for k in names:
                print(f"    {columns[k]:<{width}}  {values[k]}")


# ---- HTML ----

def _esc(text) -> str:
    return html.escape(str(text))


def timeline(r: Result) -> str:
    """An SVG of a link scenario: QMP commands on one lane, RTM_NEWLINK on another, one time axis."""
    host = [e for e in r.trace if e.actor == "host" and "set_link" in e.text]
    links = [e for e in r.trace if e.data.get("message", {}).get("type") in ("RTM_NEWLINK", "RTM_DELLINK")]
    if not host or not links:
        return ""
    end = max(e.t for e in r.trace) or 1.0
    width, left, right = 960, 110, 130  # room on the right for the last label

    def x(t):
        return left + (width - left - right) * t / end

    parts = [f'<svg class="timeline" viewBox="0 0 {width} 118" width="{width}" height="118">',
             '<text x="4" y="34">QMP set_link</text><text x="4" y="79">RTM_NEWLINK</text>',
             f'<text x="{left}" y="12" class="tick">seconds on the guest\'s clock ({_esc(r.time or "real")})</text>',
             f'<line x1="{left}" y1="100" x2="{x(end):.1f}" y2="100" stroke="#999"/>']
    step = max(0.5, round(end / 10 * 2) / 2)
    t = 0.0
    while t <= end:
        parts.append(f'<line x1="{x(t):.1f}" y1="100" x2="{x(t):.1f}" y2="104" stroke="#999"/>'
                     f'<text x="{x(t):.1f}" y="115" text-anchor="middle" class="tick">{t:g} s</text>')
        t += step
    for e in host:
        on = e.text.endswith(" on")
        colour = "#1565c0" if on else "#90caf9"
        parts.append(f'<g><title>{_esc(f"{e.t:+.3f} s {e.text}")}</title>'
                     f'<rect x="{x(e.t) - 2:.1f}" y="20" width="4" height="20" fill="{colour}"/></g>')
    for e in links:
        m = e.data["message"]
        flags = m.get("ifi_flags", "")
        up = "LOWER_UP" in flags.split("|")
        label = f"{m.get('ifname', '?')} {'LOWER_UP' if up else 'no carrier'} {m.get('operstate', '')}"
        tip = (f"{e.t:+.3f} s {m.get('type')} {m.get('ifname')} flags={flags} operstate={m.get('operstate')} "
               f"carrier={m.get('carrier')}")
        parts.append(f'<g><title>{_esc(tip)}</title>'
                     f'<circle cx="{x(e.t):.1f}" cy="75" r="6" fill="{COLOURS[Verdict.PASSED] if up else COLOURS[Verdict.FAILED]}"/>'
                     f'<text x="{x(e.t) + 8:.1f}" y="{62 if len(parts) % 2 else 92}" class="lbl">{_esc(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


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


def html_report(meta: dict, results: list[Result], out: Path) -> Path:
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
                               f'{_esc(v["accel"]).upper()}, sha256 {v["sha256"][:12]})' for k, v in meta["kernels"].items())
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
                r = cell.get((k, n))
                row.append(f'<td style="background:{COLOURS[r.verdict]}"><a href="#{r.cell}" title="{_esc(r.reason)}">'
                           f"{r.verdict}</a></td>" if r else "<td></td>")
            h.append("<tr>" + "".join(row) + "</tr>")
        h.append("</table>")
        for r in sorted(runs, key=lambda r: r.cell):
            rel = Path(r.artifacts).relative_to(out) if Path(r.artifacts).is_relative_to(out) else Path(r.artifacts)
            logs = " · ".join(f'<a href="{_esc(rel / f)}">{f}</a>' for f in
                              ("trace.txt", "console.log", "qmp.log", "agent.log", "result.json"))
            h.append(f'<details id="{r.cell}"{" open" if r.verdict in (Verdict.FAILED, Verdict.ERROR) else ""}><summary>'
                     f'<span style="color:{COLOURS[r.verdict]}">{r.verdict.upper()}</span> {_esc(r.kernel)} · '
                     f'{_esc(r.nic or "no NIC")} · {r.duration:.1f} s</summary>'
                     + (f"<p><b>{_esc(r.reason)}</b></p>" if r.reason else "") + timeline(r)
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
                 + "".join(f"<tr><td>{_esc(what)}</td>" + "".join(f'<td class="differs">{_esc(v[k])}</td>' for k in names)
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
    path = out / "report.html"
    path.write_text("\n".join(h))
    return path
