"""Checks written to a scenario's trace: what was expected, what the kernel did, and whether
they agreed.  A failed expectation ends the scenario (Failed); a skip says why it cannot apply."""
from __future__ import annotations

from .outcome import Failed, Skip
from ..trace import Trace


def _show(value) -> str:
    """A value for a trace line: long byte strings by length and first bytes."""
    if isinstance(value, bytes) and len(value) > 24:
        return f"<{len(value)} bytes {value[:12].hex()}…>"
    return repr(value)


class Checks:
    def __init__(self, trace: Trace):
        self.trace = trace

    def note(self, text: str, **data):
        self.trace.add("note", text, **data)

    def expect(self, what: str, actual, expected, incidental: bool = False):
        """`incidental`: the value depends on the run (a pid, a portid), not on the kernel; it stays in
        the trace and out of the differences between kernels."""
        ok = actual == expected
        self.trace.add("check", f"{'ok  ' if ok else 'FAIL'} {what}: {_show(actual)}"
                       + ("" if ok else f", expected {_show(expected)}"), ok=ok, check=what, observed=_show(actual),
                       **({"incidental": True} if incidental else {}))
        if not ok:
            raise Failed(f"{what}: got {_show(actual)}, expected {_show(expected)}")

    def observe(self, what: str, value):
        """What the kernel did where the source sets no single right answer (a latency that is the
        driver's own): traced, compared between kernels and NICs, never failed."""
        self.trace.add("check", f"seen {what}: {_show(value)}", ok=True, check=what, observed=_show(value))

    def expect_true(self, what: str, condition, detail: str = ""):
        ok = bool(condition)
        self.trace.add("check", f"{'ok  ' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail and not ok else ""),
                       ok=ok, check=what, observed=str(ok).lower())
        if not ok:
            raise Failed(f"{what}" + (f": {detail}" if detail else ""))

    def require(self, what: str, condition, detail: str = ""):
        """A precondition of the scenario's own plumbing: traced only if it fails."""
        if not condition:
            self.expect_true(what, condition, detail)

    def skip(self, reason: str):
        raise Skip(reason)
