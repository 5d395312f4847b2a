"""The guest is untrusted: whatever bytes come over the agent channel or out of a netlink
socket, the host's readers return frames, messages or named errors — no exception, no hang,
bounded memory.  Property-based (hypothesis), with the frames and messages the kernel really
sends as seeds for the mutations."""
import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.agent.protocol import (
    HEADER,
    MAGIC,
    MAX_PAYLOAD,
    Frame,
    FrameReader,
    Kind,
    ProtocolError,
    encode_frame,
    raw_frame,
)
from harness.netlink import NLMSG_HEADER, RTM_NEWLINK, decode, link_request

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GOOD = encode_frame(Kind.REPLY, 3, {"RET": 20, "DATA": b"\x14\0\0\0" * 5, "CMD": "ip link"})


def feed_all(chunks: list[bytes]) -> tuple[list, FrameReader]:
    reader, out = FrameReader(), []
    for c in chunks:
        out += reader.feed(c)
        assert reader.pending <= HEADER.size + MAX_PAYLOAD  # memory stays bounded
    return out, reader


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@FUZZ
@given(st.binary(max_size=4096), st.lists(st.integers(0, 4096), max_size=8))
def test_random_bytes_give_only_frames_and_errors_with_offsets(data, cuts):
    out, _ = feed_all(chunked(data, cuts))
    for item in out:
        assert isinstance(item, (Frame, ProtocolError))
        if isinstance(item, ProtocolError):
            assert 0 <= item.offset <= len(data) and "stream offset" in str(item)


@FUZZ
@given(st.binary(max_size=512).filter(lambda b: MAGIC[:1] not in b), st.binary(max_size=512).filter(
    lambda b: MAGIC[:1] not in b), st.lists(st.integers(0, 2048), max_size=6))
def test_a_frame_between_garbage_is_recovered_exactly(before, after, cuts):
    out, _ = feed_all(chunked(before + GOOD + after, cuts))
    frames = [x for x in out if isinstance(x, Frame)]
    assert len(frames) == 1 and frames[0].attrs["CMD"] == "ip link"
    assert bool(before) == any(isinstance(x, ProtocolError) and x.offset == 0 for x in out)


@FUZZ
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.integers(0, len(GOOD) - 1))
def test_a_flipped_byte_or_truncation_never_yields_a_wrong_frame(where, value, keep):
    [original], _ = feed_all([GOOD])
    corrupt = bytearray(GOOD)
    corrupt[where] = value
    out, _ = feed_all([bytes(corrupt)])
    assert all((f.kind, f.id, f.attrs) == (original.kind, original.id, original.attrs)
               for f in out if isinstance(f, Frame))  # a flip the CRC cannot see is a reserved byte
    out, _ = feed_all([GOOD[:keep]])
    assert not any(isinstance(f, Frame) for f in out)


def test_oversized_length_is_rejected_at_once_not_buffered():
    out, reader = feed_all([raw_frame(Kind.REPLY, 1, b"", length=MAX_PAYLOAD + 1) + b"x" * 100])
    assert any("bad header" in str(e) for e in out) and reader.pending < HEADER.size


def test_attribute_claiming_more_than_the_frame_is_a_named_error():
    payload = struct.pack("<HHI", 3, 0, 1 << 30)  # RET, length 1 GiB
    out, _ = feed_all([raw_frame(Kind.REPLY, 1, payload)])
    assert len(out) == 1 and "runs past the frame" in str(out[0]) and out[0].offset == HEADER.size


def test_invalid_utf8_in_a_string_attribute_is_replaced_not_fatal():
    out, _ = feed_all([encode_frame(Kind.REPLY, 1, {"CMD": b"\xff\xfe ip"})])
    assert out[0].attrs["CMD"].endswith(" ip")


# ---- netlink messages from the guest kernel ----

LINK = link_request(RTM_NEWLINK, 7, ifindex=2, ifname="eth0", flags=1, change=1, kind="dummy", carrier=1)


@FUZZ
@given(st.binary(max_size=2048))
def test_decoder_takes_any_datagram(data):
    messages = decode(data)
    assert len(messages) <= len(data) // NLMSG_HEADER.size + 1
    for m in messages:
        str(m), m.as_dict()  # printable whatever came


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(LINK) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(0, len(LINK)))
def test_decoder_reports_mutated_and_truncated_link_messages(flips, keep):
    data = bytearray(LINK * 2)
    for where, value in flips:
        data[NLMSG_HEADER.size + where % (len(LINK) - NLMSG_HEADER.size)] = value  # body only
    for m in decode(bytes(data)) + decode(LINK[:keep]):
        if m.problem:
            assert m.problem in str(m)  # the reason is shown, never swallowed
        elif m.type == RTM_NEWLINK:  # decoded: its fixed header at least is there
            assert isinstance(m.ifindex, int) and isinstance(m.ifi_flags, int)
    if 0 < keep < len(LINK):
        assert [m.problem for m in decode(LINK[:keep]) if m.problem], "a truncated message is reported"


def test_attribute_with_zero_length_does_not_loop():
    # an rtattr of length 0 inside RTM_NEWLINK: a naive walker would never advance
    body = struct.pack("=BxHiII", 0, 1, 2, 0, 0) + struct.pack("=HH", 0, 3) * 4
    data = struct.pack("=IHHII", NLMSG_HEADER.size + len(body), RTM_NEWLINK, 0, 1, 0) + body
    [m] = decode(data)  # returning at all is the point; and the fixed header is still read
    assert (m.type_name, m.ifindex, m.ifi_flags, m.ifname) == ("RTM_NEWLINK", 2, 0, "")  # IFLA_IFNAME of length 0
