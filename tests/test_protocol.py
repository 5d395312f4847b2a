"""The agent protocol: framing, resynchronisation after garbage, and the generated C header."""

from harness.agent.protocol import (
    GUEST_HEADER,
    MAX_PAYLOAD,
    Frame,
    FrameReader,
    Kind,
    ProtocolError,
    c_header,
    encode_frame,
    raw_frame,
)


def frames_and_errors(chunks):
    reader, out = FrameReader(), []
    for c in chunks:
        out += reader.feed(c)
    return [x for x in out if isinstance(x, Frame)], [x for x in out if isinstance(x, ProtocolError)]


def test_roundtrip_all_value_kinds():
    raw = encode_frame(Kind.REPLY, 7, {"RET": -1, "ERRNO": 105, "DATA": b"\0\xff" * 3, "CMD": "ip link"})
    frames, errors = frames_and_errors([raw])
    assert errors == []
    assert frames[0].kind == Kind.REPLY and frames[0].id == 7
    assert frames[0].attrs == {"RET": -1, "ERRNO": 105, "DATA": b"\0\xff" * 3, "CMD": "ip link"}


def test_byte_at_a_time_delivery():
    raw = encode_frame(Kind.HELLO, 0, {"RELEASE": "6.1.0"}) * 2
    frames, errors = frames_and_errors([raw[i:i + 1] for i in range(len(raw))])
    assert len(frames) == 2 and errors == []


def test_garbage_before_between_and_inside_frames_is_reported_and_skipped():
    good = encode_frame(Kind.REPLY, 1, {"RET": 0})
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF  # payload byte: CRC must catch it
    frames, errors = frames_and_errors([b"console noise\r\n" + good + bytes(corrupt) + b"NLT" + good])
    assert [f.id for f in frames] == [1, 1]
    assert any("garbage" in str(e) for e in errors)
    assert any("CRC" in str(e) for e in errors)
    assert errors[0].offset == 0


def test_oversized_length_is_rejected_without_waiting_for_it():
    header = raw_frame(Kind.REPLY, 1, b"", length=MAX_PAYLOAD + 1)
    good = encode_frame(Kind.REPLY, 2, {"RET": 0})
    frames, errors = frames_and_errors([header + good])
    assert [f.id for f in frames] == [2]
    assert "bad header" in str(errors[0])


def test_attribute_running_past_frame_is_a_protocol_error():
    from harness.agent.protocol import ATTR_HEADER
    payload = ATTR_HEADER.pack(3, 0, 100) + b"\0" * 8
    frames, errors = frames_and_errors([raw_frame(Kind.REPLY, 9, payload)])
    assert frames == [] and "runs past the frame" in str(errors[0])


def test_generated_c_header_is_committed_and_current():
    assert GUEST_HEADER.read_text() == c_header(), "run: python -m harness.agent.protocol > guest/proto.h"
