"""A link scenario's timeline as an SVG: the host's QMP set_link on one lane, the RTM_NEWLINKs the
guest received on another, on one time axis.  Drawn from the trace entries' data, not their text."""
from __future__ import annotations

import html

from . import Result

CARRIER = "#2e7d32"     # a message with LOWER_UP
NO_CARRIER = "#c62828"  # one without


def _esc(text) -> str:
    return html.escape(str(text))


def svg(r: Result) -> str:
    """An SVG of a link scenario: QMP commands on one lane, RTM_NEWLINK on another, one time axis."""
    host = [e for e in r.trace if e.actor == "host" and "set_link" in e.data]
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
        colour = "#1565c0" if e.data["set_link"] else "#90caf9"
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
                     f'<circle cx="{x(e.t):.1f}" cy="75" r="6" fill="{CARRIER if up else NO_CARRIER}"/>'
                     f'<text x="{x(e.t) + 8:.1f}" y="{62 if len(parts) % 2 else 92}" class="lbl">'
                     f'{_esc(label)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)
