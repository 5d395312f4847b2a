"""The run as JUnit XML (junit.xml), for CI systems that show test results."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from . import Result, Verdict

FILE = "junit.xml"


def write(meta: dict, results: list[Result], out: Path) -> None:
    """One testcase per cell: classname kernel.nic, name the scenario; failures carry the
    decoded trace and the end of the console log, infrastructure errors are <error>."""
    suite = ET.Element("testsuite", name="testbed", tests=str(len(results)),
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
    ET.ElementTree(suite).write(out / FILE, encoding="utf-8", xml_declaration=True)
