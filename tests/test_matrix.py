"""The matrix's bookkeeping without VMs: sharding, exit status, JUnit, KCIDB, merging, report."""
import json
import xml.etree.ElementTree as ET

import pytest
from typing import Any

from harness.errors import UsageError
from harness.results import Result, Verdict, cell_name, differences, directory, html, kcidb, text, timeline_svg
from harness.cells import matrix
from harness.trace import TraceEntry

CELLS = [(s, k, n) for s in ("carrier-qmp", "overrun", "flap-storm") for k in ("a", "b") for n in ("igb", "e1000")]
META: dict[str, Any] = {"started": "2026-11-22T10:00:00+00:00", "qemu": "QEMU emulator version 10.0.2",
        "kernels": {k: {"release": "6.1.192", "version": "6.1.192", "image": f"/k/{k}", "sha256": k * 64,
                        "accel": "tcg"} for k in ("a", "b")},
        "nics": ["e1000", "igb"], "shard": None, "host": {"name": "h", "kernel": "6.1", "cpus": 2, "python": "3.11"},
        "cells": 3, "complete": True, "duration": 12.0}


def result(tmp_path, scenario, kernel, nic, verdict=Verdict.PASSED, observed="2") -> Result:
    r = Result(scenario, kernel, nic, verdict, reason="" if verdict == Verdict.PASSED else "why",
                      version="6.1.192", accel="tcg", duration=1.5,
                      artifacts=str(tmp_path / "cells" / cell_name(scenario, kernel, nic)))
    r.trace = [TraceEntry(0.1, "host", "QMP set_link nic0 off", {"set_link": False}),
               TraceEntry(0.2, "guest", "  RTM_NEWLINK eth0", {"message": {"type": "RTM_NEWLINK", "ifname": "eth0",
                                                                           "ifi_flags": "UP|BROADCAST"}}),
               TraceEntry(0.3, "check", f"ok   messages: {observed}", {"ok": True, "check": "messages",
                                                                        "observed": observed})]
    r.save()
    return r


def test_shards_are_disjoint_cover_everything_and_do_not_depend_on_order():
    shards = [matrix.shard(CELLS, i, 3) for i in (1, 2, 3)]
    assert sorted(c for s in shards for c in s) == sorted(CELLS)
    assert matrix.shard(list(reversed(CELLS)), 2, 3) == shards[1]
    assert {len(s) for s in shards} == {4}


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "2", "1/0"])
def test_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match=f"--shard {text}: expected I/N"):
        matrix.parse_shard(text)


def test_exit_status_keeps_infrastructure_apart(tmp_path):
    ok = result(tmp_path, "overrun", "a", "igb")
    bad = result(tmp_path, "overrun", "b", "igb", Verdict.FAILED)
    broken = result(tmp_path, "overrun", "a", "e1000", Verdict.ERROR)
    assert matrix.exit_status([ok]) == 0
    assert matrix.exit_status([ok, bad]) == 1
    assert matrix.exit_status([ok, bad, broken]) == 3


def test_publish_writes_junit_kcidb_and_a_report_that_shows_the_kernel_difference(tmp_path):
    results = [result(tmp_path, "flap-storm", "a", "igb", observed="2"),
               result(tmp_path, "flap-storm", "b", "igb", Verdict.FAILED, observed="4"),
               result(tmp_path, "overrun", "a", "igb", Verdict.ERROR)]
    directory.publish(tmp_path, META, results)
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    failed = suite.find("testcase[@classname='b.igb'][@name='flap-storm']")
    assert failed is not None and failed.find("failure") is not None
    out = failed.find("system-out")
    assert out is not None and "RTM_NEWLINK eth0" in (out.text or "")
    data = json.loads((tmp_path / "kcidb.json").read_text())
    assert {t["status"] for t in data["tests"]} == {"PASS", "FAIL", "MISS"}
    page = (tmp_path / "report.html").read_text()
    assert "<svg" in page and "Infrastructure errors" in page
    assert differences.differences(results)[0][3] == [("verdict", {"a": "passed", "b": "failed: why"}),
                                                 ("messages", {"a": "2", "b": "4"})]
    assert json.loads((tmp_path / "run.json").read_text())["counts"] == {"passed": 1, "failed": 1, "skipped": 0,
                                                                        "error": 1}


def test_merge_puts_shards_back_together(tmp_path):
    for i, cells in enumerate((CELLS[:5], CELLS[5:])):
        d = tmp_path / f"shard{i}"
        directory.publish(d, {**META, "cells": len(cells), "shard": f"{i + 1}/2"},
                       [result(d, *c) for c in cells])
    meta, results = directory.merge([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    assert len(results) == len(CELLS) and meta["cells"] == len(CELLS) and meta["complete"]
    assert len(list((tmp_path / "merged" / "cells").iterdir())) == len(CELLS)
    assert ET.parse(tmp_path / "merged" / "junit.xml").getroot().get("tests") == str(len(CELLS))


def test_kcidb_ids_name_the_origin_and_validate(tmp_path):
    data = kcidb.export(META, [result(tmp_path, "overrun", "a", "igb")])
    assert data["tests"][0]["id"].startswith(f"{kcidb.ORIGIN}:") and data["tests"][0]["path"] == "netlink.overrun.igb"


def test_differences_read_oldest_kernel_first_with_versions_and_the_source(tmp_path, capsys):
    eras = {"zz-old": "3.14.40", "aa-new": "6.12.95", "mm-mid": "6.1.192"}  # names that sort the other way
    results = []
    for kernel, version in eras.items():
        r = result(tmp_path, "mtu-notify", kernel, None, observed=version)
        r.version, r.source = version, "net/core/rtnetlink.c:rtnetlink_event"
        r.trace.append(TraceEntry(0.4, "check", "ok   portid", {"ok": True, "check": "portid", "incidental": True,
                                                              "observed": kernel}))
        results.append(r)
    [(scenario, _, names, rows)] = differences.differences(results)
    assert names == ["zz-old", "mm-mid", "aa-new"]
    assert [what for what, _ in rows] == ["messages"]  # the incidental portid differs too, and is left out
    text.print_differences(results)
    out = capsys.readouterr().out
    assert "kernel source: net/core/rtnetlink.c:rtnetlink_event" in out
    assert out.index("zz-old (3.14.40)") < out.index("mm-mid (6.1.192)") < out.index("aa-new (6.12.95)")
    meta = {**META, "kernels": {k: {**META["kernels"]["a"], "release": v, "version": v} for k, v in eras.items()}}
    html.write(meta, results, tmp_path)
    table = (tmp_path / html.FILE).read_text().split("What changed between kernels")[1]
    assert table.index("3.14.40") < table.index("6.1.192") < table.index("6.12.95")


def test_differences_between_nics_on_one_kernel(tmp_path, capsys):
    results = []
    for nic, latency in (("igb", "503 ms"), ("ixgbe", "2 ms"), ("e1000", "503 ms")):
        r = result(tmp_path, "carrier-qmp", "k", nic, observed=latency)
        r.version = "3.14.40"
        results.append(r)
    results.append(result(tmp_path, "autobind", "k", None, observed="same"))  # no NIC: nothing to compare
    results[-1].version = "3.14.40"
    assert differences.axis(results) == "nic"
    [(scenario, kernel, names, rows)] = differences.differences(results, "nic")
    assert (scenario, kernel, names) == ("carrier-qmp", "k", ["e1000", "igb", "ixgbe"])
    assert rows == [("messages", {"e1000": "503 ms", "igb": "503 ms", "ixgbe": "2 ms"})]
    text.print_differences(results)
    out = capsys.readouterr().out
    assert "what differs between the NICs (kernel k 3.14.40) e1000, igb, ixgbe" in out and "ixgbe  2 ms" in out
    meta = {**META, "kernels": {"k": {**META["kernels"]["a"], "release": "3.14.40", "version": "3.14.40"}}}
    html.write(meta, results, tmp_path)
    assert "2 ms" in (tmp_path / html.FILE).read_text().split("What differed between NICs")[1]


def test_the_timeline_is_drawn_from_the_trace_entries_data_not_their_text(tmp_path):
    r = result(tmp_path, "carrier-qmp", "a", "igb")
    r.trace[0] = TraceEntry(0.1, "host", "whatever the line says", {"set_link": True})
    picture = timeline_svg.svg(r)
    assert 'fill="#1565c0"' in picture and "#90caf9" not in picture  # the lane shows the link set on
    r.trace[0] = TraceEntry(0.1, "host", "QMP set_link nic0 off")  # prose alone is not a QMP action
    assert timeline_svg.svg(r) == ""
