"""The host <-> agent wire protocol: one declarative description, used to encode, decode and to
generate the agent's C header (guest/proto.h), so the two sides cannot drift apart.

A frame is a 24-byte header followed by a payload of attributes:

    magic "NLTB" | version u8 | kind u8 | reserved u16 | id u32 | length u32 | crc32 u32 | rsvd u32

The CRC covers the header (with the crc field zero) and the payload.  Attributes are
type u16 | reserved u16 | length u32 | value, padded to 4 bytes; integers are signed 64-bit
little-endian, everything else is raw bytes.  The reader resynchronises on the magic, so garbage
on the channel costs a protocol error, never a hang.
"""
from __future__ import annotations

import enum
import struct
import zlib

from .. import PROJECT

MAGIC = b"NLTB"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIII")
ATTR_HEADER = struct.Struct("<HHI")
MAX_PAYLOAD = 4 << 20
GUEST_HEADER = PROJECT / "guest" / "proto.h"


class Kind(enum.IntEnum):
    HELLO = 1    # agent -> host once it is ready
    REQUEST = 2  # host -> agent
    REPLY = 3    # agent -> host, same id as the request
    EVENT = 4    # agent -> host, unsolicited
    ERROR = 5    # agent -> host: a frame it could not attribute to a request


class Op(enum.IntEnum):
    PING = 1
    SOCKET = 2
    SETSOCKOPT = 3
    GETSOCKOPT = 4
    BIND = 5
    CONNECT = 6
    GETSOCKNAME = 7
    SENDMSG = 8
    RECVMSG = 9
    CLOSE = 10
    RUN = 11
    READ_FILE = 12
    STREAM = 13    # from now on, send everything FD receives as EVENT frames (id = this request's)
    UNSTREAM = 14  # stop streaming FD; its events all precede this reply
    AT = 15        # at each guest time of SCHEDULE, sleep until it and, with PAUSE, stop the machine


INT, BYTES, STR = "int", "bytes", "str"

# name, number, value kind.  Append only: numbers are the wire format.
ATTRS = [
    ("OP", 1, INT),
    ("ERROR", 2, STR),          # a protocol or request error (not a syscall errno)
    ("RET", 3, INT),            # the syscall's return value
    ("ERRNO", 4, INT),          # errno when RET is -1, else 0
    ("T_NS", 5, INT),           # CLOCK_MONOTONIC right after the syscall returned
    ("FD", 6, INT),
    ("FAMILY", 7, INT),
    ("TYPE", 8, INT),
    ("PROTOCOL", 9, INT),
    ("LEVEL", 10, INT),
    ("OPTNAME", 11, INT),
    ("INT_VALUE", 12, INT),     # setsockopt with an int / getsockopt's value read as an int
    ("VALUE", 13, BYTES),       # setsockopt with raw bytes / getsockopt's raw value
    ("OPTLEN", 14, INT),
    ("PORTID", 15, INT),
    ("GROUPS", 16, INT),
    ("DATA", 17, BYTES),
    ("FLAGS", 18, INT),
    ("BUFSIZE", 19, INT),
    ("TIMEOUT_MS", 20, INT),
    ("MSG_FLAGS", 21, INT),
    ("SRC_FAMILY", 22, INT),
    ("SRC_PORTID", 23, INT),
    ("SRC_GROUPS", 24, INT),
    ("CONTROL", 25, BYTES),     # recvmsg's control buffer, cmsgs as the kernel wrote them
    ("TIMED_OUT", 26, INT),     # the agent's wait expired before the syscall could run
    ("CMD", 27, STR),
    ("STATUS", 28, INT),        # exit status of a command
    ("SIGNAL", 29, INT),        # signal that ended a command
    ("OUTPUT", 30, BYTES),      # stdout and stderr of a command
    ("PATH", 31, STR),
    ("DST_FAMILY", 32, INT),
    ("DST_PORTID", 33, INT),
    ("DST_GROUPS", 34, INT),
    ("VERSION", 35, INT),
    ("RELEASE", 36, STR),       # uname -r of the guest
    ("PID", 37, INT),
    ("INODE", 38, INT),         # a socket's inode, the key of /proc/net/netlink
    ("MAXLEN", 39, INT),
    ("NAMELEN", 40, INT),       # msg_namelen the kernel returned
    ("UID", 41, INT),           # run this request with this effective uid (and GID) instead of root
    ("GID", 42, INT),
    ("BACKGROUND", 43, INT),    # run the request in a child process; its reply comes when it ends
    ("T_START_NS", 44, INT),    # CLOCK_MONOTONIC right before the syscall
    ("PTY", 45, INT),           # run a command on a pseudo-terminal (line-buffered stdio)
    ("SCHEDULE", 46, BYTES),    # int64 ns offsets from when the agent took the request (AT)
    ("PAUSE", 47, INT),         # AT: at each time, stop the machine until the host continues it
    ("TIMES", 48, BYTES),       # AT: int64 (reached, resumed) CLOCK_MONOTONIC ns pairs, one per time
    ("QUEUED", 49, INT),        # recvmsg: something was already queued when the request came
    ("HOLD", 50, INT),          # once the reply is out, stop the machine until the host continues it
    ("HELD", 51, INT),          # in a reply: the machine stops right after it (HOLD was honoured)
]
ATTR_BY_NAME = {name: (num, kind) for name, num, kind in ATTRS}
ATTR_BY_NUM = {num: (name, kind) for name, num, kind in ATTRS}


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame; `offset` is where in the stream."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} (stream offset {offset})")
        self.offset = offset


def _crc(header: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(header)) & 0xFFFFFFFF


def encode_attrs(attrs: dict) -> bytes:
    out = bytearray()
    for name, value in attrs.items():
        num, kind = ATTR_BY_NAME[name]
        if kind == INT:
            raw = struct.pack("<q", int(value))
        elif kind == STR:
            raw = value.encode() if isinstance(value, str) else bytes(value)
        else:
            raw = bytes(value)
        out += ATTR_HEADER.pack(num, 0, len(raw)) + raw + b"\0" * (-len(raw) % 4)
    return bytes(out)


def decode_attrs(payload: bytes, offset: int = 0) -> dict:
    """Attributes as {NAME: value}; unknown attribute numbers are kept as "ATTR_<n>"."""
    attrs, pos = {}, 0
    while pos < len(payload):
        if pos + ATTR_HEADER.size > len(payload):
            raise ProtocolError("truncated attribute header", offset + pos)
        num, _, length = ATTR_HEADER.unpack_from(payload, pos)
        start, end = pos + ATTR_HEADER.size, pos + ATTR_HEADER.size + length
        if end > len(payload):
            raise ProtocolError(f"attribute {num} length {length} runs past the frame", offset + pos)
        raw = payload[start:end]
        name, kind = ATTR_BY_NUM.get(num, (f"ATTR_{num}", BYTES))
        if kind == INT:
            if length != 8:
                raise ProtocolError(f"integer attribute {name} has length {length}", offset + pos)
            attrs[name] = struct.unpack("<q", raw)[0]
        elif kind == STR:
            attrs[name] = raw.decode("utf-8", "replace")
        else:
            attrs[name] = raw
        pos = end + (-length % 4)
    return attrs


def raw_frame(kind: int, ident: int, payload: bytes, length: int | None = None, crc_ok: bool = True) -> bytes:
    """A frame around `payload` as bytes; `length` and `crc_ok` make the broken ones tests feed in."""
    length = len(payload) if length is None else length
    crc = _crc(HEADER.pack(MAGIC, VERSION, kind, 0, ident, length, 0, 0), payload)
    return HEADER.pack(MAGIC, VERSION, kind, 0, ident, length, crc if crc_ok else crc ^ 1, 0) + payload


def encode_frame(kind: Kind, ident: int, attrs: dict) -> bytes:
    return raw_frame(kind, ident, encode_attrs(attrs))


class Frame:
    __slots__ = ("kind", "id", "attrs")

    def __init__(self, kind: int, ident: int, attrs: dict):
        self.kind, self.id, self.attrs = kind, ident, attrs

    def __repr__(self):
        return f"Frame({Kind(self.kind).name}, id={self.id}, {self.attrs!r})"


class FrameReader:
    """Incremental decoder: feed() bytes as they arrive, get back frames and protocol errors.

    Memory is bounded: a header announcing more than MAX_PAYLOAD is rejected, and bytes that
    cannot start a frame are dropped while searching for the next magic.
    """

    def __init__(self):
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete (bounded: at most one header and its payload)."""
        return len(self._buf)

    def _drop(self, n: int):
        del self._buf[:n]
        self._offset += n

    def feed(self, data: bytes) -> list[Frame | ProtocolError]:
        self._buf += data
        out: list[Frame | ProtocolError] = []
        while True:
            at = self._buf.find(MAGIC)
            if at < 0:
                keep = len(MAGIC) - 1  # a magic split across two reads
                if len(self._buf) > keep:
                    out.append(ProtocolError(f"{len(self._buf) - keep} bytes of garbage", self._offset))
                    self._drop(len(self._buf) - keep)
                return out
            if at > 0:
                out.append(ProtocolError(f"{at} bytes of garbage before a frame", self._offset))
                self._drop(at)
            if len(self._buf) < HEADER.size:
                return out
            magic, version, kind, _, ident, length, crc, _ = HEADER.unpack_from(self._buf)
            if version != VERSION or length > MAX_PAYLOAD or kind not in Kind._value2member_map_:
                out.append(ProtocolError(
                    f"bad header (version {version}, kind {kind}, length {length})", self._offset))
                self._drop(1)
                continue
            if len(self._buf) < HEADER.size + length:
                return out
            header = HEADER.pack(magic, version, kind, 0, ident, length, 0, 0)
            payload = bytes(self._buf[HEADER.size:HEADER.size + length])
            if _crc(header, payload) != crc:
                out.append(ProtocolError("CRC mismatch", self._offset))
                self._drop(1)
                continue
            try:
                out.append(Frame(kind, ident, decode_attrs(payload, self._offset + HEADER.size)))
            except ProtocolError as e:
                out.append(e)
            self._drop(HEADER.size + length)


def c_header() -> str:
    """guest/proto.h, generated from the tables above (`python -m harness.agent.protocol`)."""
    lines = ["/* Generated by `python -m harness.agent.protocol` from harness/agent/protocol.py: do not edit. */",
             "#pragma once", f'#define PROTO_MAGIC "{MAGIC.decode()}"', f"#define PROTO_VERSION {VERSION}",
             f"#define PROTO_HEADER_SIZE {HEADER.size}", f"#define PROTO_MAX_PAYLOAD {MAX_PAYLOAD}", ""]
    lines += [f"#define KIND_{k.name} {k.value}" for k in Kind] + [""]
    lines += [f"#define OP_{o.name} {o.value}" for o in Op] + [f"#define OP_MAX {max(Op)}", ""]
    lines += [f"#define A_{name} {num}" for name, num, _ in ATTRS]
    lines += [f"#define A_MAX {max(num for _, num, _ in ATTRS)}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(c_header(), end="")
