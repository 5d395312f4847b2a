"""The agent inside a real guest under a storm of malformed requests: garbage, bad CRCs, wrong
frame kinds, oversized lengths, broken attributes, unknown operations.  It answers with errors,
keeps serving, and the host reader names every protocol error."""
import random
import struct

import pytest

from harness.agent.protocol import HEADER, MAGIC, MAX_PAYLOAD, Kind, Op, encode_attrs, raw_frame
from harness.cells import runner

pytestmark = pytest.mark.vm


def malformed(rng: random.Random, ident: int) -> bytes:
    unknown_op = encode_attrs({"OP": rng.randrange(100, 1 << 16)})
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randbytes(rng.randrange(1, 300)).replace(MAGIC, b"XXXX")
    if choice == 1:
        return raw_frame(Kind.REQUEST, ident, unknown_op, crc_ok=False)
    if choice == 2:
        return raw_frame(rng.choice([Kind.HELLO, Kind.REPLY, Kind.EVENT, 77]), ident, unknown_op)
    if choice == 3:
        return raw_frame(Kind.REQUEST, ident, b"", length=MAX_PAYLOAD + rng.randrange(1, 1 << 20))[:HEADER.size]
    if choice == 4:  # an attribute whose length runs past the frame
        return raw_frame(Kind.REQUEST, ident, unknown_op + struct.pack("<HHI", 17, 0, rng.randrange(9, 1 << 31)))
    return raw_frame(Kind.REQUEST, ident, unknown_op + rng.randbytes(rng.randrange(0, 64)))


def test_agent_in_the_guest_survives_malformed_requests(cfg, vm_kernel, tmp_path):
    target = runner.prepare(cfg, vm_kernel, None)
    rng = random.Random(20261122)
    with runner.ready_vm(cfg, target, tmp_path) as vm:
        for round_ in range(20):
            vm.agent.send_bytes(b"".join(malformed(rng, 1000 + round_ * 20 + i) for i in range(20)))
            assert vm.agent.call(Op.PING, timeout=20).ret == 0, f"round {round_}"
        assert vm.agent.call(Op.RUN, cmd="echo still here")["OUTPUT"] == b"still here\n"
        # the agent reported the garbage it skipped, each with where in the stream it was
        assert vm.agent.protocol_errors
        assert all("stream offset" in e for e in vm.agent.protocol_errors), vm.agent.protocol_errors[:5]
    assert "agent exited" not in (tmp_path / "console.log").read_text()
