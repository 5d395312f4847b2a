"""The agent's requests made for a scenario, each written to the trace at the guest time its
reply carries; among them the guest's shell and files."""
from __future__ import annotations

from ..agent import Agent, Pending, Reply, Stream
from ..agent.protocol import Op
from ..trace import Trace
from .outcome import Failed


class Calls:
    def __init__(self, agent: Agent, trace: Trace):
        self.agent, self.trace = agent, trace

    def call(self, op: Op, **attrs) -> Reply:
        return self.agent.call(op, **attrs)

    def start(self, op: Op, **attrs) -> Pending:
        return self.agent.start(op, **attrs)

    def stream(self, fd: int, bufsize: int) -> Stream:
        return self.agent.stream(fd, bufsize)

    def traced(self, r: Reply, text: str, **data):
        """A line for what `r` reports, at the guest time it carries."""
        self.trace.add("guest", text, at_ns=r.get("T_NS"), **data)

    def said(self, text: str):
        """A line of the guest's part without a reply of its own (at the latest guest time known)."""
        self.trace.add("guest", text)

    def sh(self, cmd: str, timeout: float = 20.0, check: bool = True, uid: int | None = None) -> str:
        """Run a shell command in the guest; returns its output.  With `check`, a non-zero exit
        fails the scenario."""
        r = self.call(Op.RUN, cmd=cmd, timeout_ms=int(timeout * 1000), uid=uid)
        output = r.get("OUTPUT", b"").decode("utf-8", "replace")
        status = "timed out" if r.timed_out else f"exit {r.get('STATUS')}"
        self.traced(r, f"$ {cmd} → {status}" + (f": {output.strip()}" if output.strip() else ""))
        if check and (r.timed_out or r.get("STATUS") != 0):
            raise Failed(f"guest command failed: {cmd!r} ({status}) {output.strip()}")
        return output

    def read_file(self, path: str) -> Reply:
        r = self.call(Op.READ_FILE, path=path)
        self.traced(r, f"read {path} → {r.outcome()}")
        return r
