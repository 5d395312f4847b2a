"""The version rules the catalogue's expectations are keyed on, without a VM: which kernels have
each upstream change, the admission rule it implies, and README's table of them."""
import itertools
import re
import struct
from pathlib import Path

from harness.builtin.changes import CHANGES, RMEM_ADMISSION, TIMER_WHEEL, Change
from harness.builtin.eras import echoed_bytes, mtu_notifications, mtu_request
from harness.builtin.overrun import AFTER, AFTER_STRICT, BEFORE, admission_rule, messages_that_fit
from harness.netlink import NLMSG_HEADER

README = Path(__file__).resolve().parent.parent / "README.md"


def test_a_change_is_in_its_release_and_later_and_in_the_point_releases_it_was_backported_to():
    change = Change("x", "0123456789ab x: y", (6, 16), "-", backports={(6, 1): 146, (5, 10): 240})
    assert [change.present(v) for v in [(6, 16, 0), (6, 17, 3), (7, 0, 0)]] == [True, True, True]
    assert [change.present(v) for v in [(6, 1, 145), (6, 1, 146), (5, 10, 239), (5, 10, 262)]] == \
        [False, True, False, True]
    assert [change.present(v) for v in [(6, 6, 99), (6, 15, 0), (3, 14, 40), (5, 15, 300)]] == [False] * 4
    assert change.since() == "6.16 (6.1.146, 5.10.240)"
    assert change.describe((6, 1, 192)) == "6.1.192 has 0123456789ab x: y (6.16 (6.1.146, 5.10.240))"
    assert change.describe((6, 1, 100)).startswith("6.1.100 predates ")


def test_every_change_names_a_commit_and_where_to_read_it():
    for change in CHANGES:
        assert re.fullmatch(r"[0-9a-f]{12} \S.*", change.commit), change
        assert re.fullmatch(r"[\w/]+\.c:\w+.*", change.source), change
        assert all(series < change.release for series in change.backports), change


def test_the_admission_rule_and_how_many_messages_it_admits():
    assert admission_rule((3, 14, 40)) == admission_rule((6, 1, 145)) == BEFORE
    assert admission_rule((6, 1, 146)) == admission_rule((6, 16, 0)) == AFTER
    assert all(admission_rule(v) == (AFTER if RMEM_ADMISSION.present(v) else BEFORE)
               for v in [(4, 19, 1), (5, 10, 262), (5, 15, 190), (6, 6, 100), (6, 12, 95)])
    # unicast: strictly below rcvbuf from the fix until its follow-up reached the series
    assert [admission_rule(v, unicast=True) for v in [(6, 1, 145), (6, 1, 146), (6, 1, 148), (6, 1, 149)]] == \
        [BEFORE, AFTER_STRICT, AFTER_STRICT, AFTER]
    assert admission_rule((5, 10, 240), unicast=True) == AFTER_STRICT
    assert admission_rule((5, 10, 262), unicast=True) == AFTER
    # rcvbuf 2.5 messages: before adding, a third still goes in; after adding, two fit
    assert messages_that_fit(2500, 1000, BEFORE) == 3 and messages_that_fit(2500, 1000, AFTER) == 2
    # exactly three: the strict rule leaves the third out
    assert messages_that_fit(3000, 1000, AFTER) == 3 and messages_that_fit(3000, 1000, AFTER_STRICT) == 2
    # a message bigger than the whole buffer: into an empty queue under every rule
    assert {messages_that_fit(500, 1000, rule) for rule in (BEFORE, AFTER, AFTER_STRICT)} == {1}


def test_the_notifications_of_an_mtu_change_by_version():
    assert mtu_notifications((3, 14, 40), 1500, 1400) == [1500, 1400]       # PRECHANGEMTU, CHANGEMTU
    assert mtu_notifications((4, 4, 1), 1500, 1400) == [1500, 1400, 1400]   # ... and do_setlink's own
    assert mtu_notifications((4, 12, 0), 1500, 1400) == [1400]
    assert mtu_notifications((6, 12, 95), 1500, 1400) == [1400]


def test_the_timer_wheel_rule():
    assert not TIMER_WHEEL.present((3, 14, 40)) and not TIMER_WHEEL.present((4, 7, 10))
    assert TIMER_WHEEL.present((4, 8, 0)) and TIMER_WHEEL.present((5, 10, 262))


def readme_table() -> tuple[list[tuple[int, int, int]], list[list[str]]]:
    text = README.read_text()
    start = text.index("| behaviour | changed in |")
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), text[start:].splitlines()))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, body = rows[0], rows[2:]
    versions = []
    for h in header[3:]:
        m = re.search(r"(\d+)\.(\d+)\.(\d+)", h)
        assert m, f"README's table header {h!r} names no x.y.z"
        versions.append((int(m[1]), int(m[2]), int(m[3])))
    return versions, body


def test_readmes_table_is_the_rules():
    versions, rows = readme_table()
    assert len(rows) == len(CHANGES)
    for change, row in zip(CHANGES, rows, strict=True):
        assert row[1] == change.since() and row[2] == f"`{change.commit.split()[0]}`", (row, change)
        assert [cell.startswith("yes") for cell in row[3:]] == [change.present(v) for v in versions], (row, change)


def test_how_much_of_a_request_an_error_ack_echoes():
    request = mtu_request(7, 1, b"\0")
    error = struct.pack("=i", -34)
    whole = NLMSG_HEADER.pack(20 + len(request), 2, 0, 7, 0) + error + request
    attr = struct.pack("=HHI", 8, 2, 32)  # NLMSGERR_ATTR_OFFS
    capped = NLMSG_HEADER.pack(36 + len(attr), 2, 0x300, 7, 0) + error + request[:16] + attr
    broken = NLMSG_HEADER.pack(39, 2, 0x300, 7, 0) + error + request[:16] + b"xyz"  # no attribute fits
    assert [echoed_bytes(m, request) for m in (whole, capped, broken)] == [len(request), 16, -1]
