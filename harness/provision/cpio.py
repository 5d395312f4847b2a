"""A newc ("070701") cpio archive writer: what the kernel unpacks as an initramfs.  Written
here so that device nodes and modes need neither root nor the cpio tool."""
from __future__ import annotations

import stat


class Cpio:
    def __init__(self):
        self._out = bytearray()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._out += header + name.encode() + b"\0"
        self._out += b"\0" * (-len(self._out) % 4) + data
        self._out += b"\0" * (-len(self._out) % 4)

    def dir(self, name: str, mode: int = 0o755):
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name: str, data: bytes, mode: int = 0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self._out)
