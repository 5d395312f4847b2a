"""Release tarballs by name, fetched the way build systems fetch them.

A kernel entry names a file (`linux-3.14.40.tar.xz`) and its sha256; the file is looked for in
an ordered list of mirrors — directories and http(s) URLs, `{major}` standing for the release's
major number (kernel.org's layout is `.../v{major}.x/`) — and kept, once its checksum matches, in
the download cache.  A file found nowhere, or only with the wrong checksum, is a UsageError
(exit 2); when a mirror could not be reached and no other had the file, a NetworkError (exit 3).
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import NetworkError, UsageError

KERNEL_ORG = "https://cdn.kernel.org/pub/linux/kernel/v{major}.x/"
# Seconds without a byte from a mirror before it counts as unreachable.
STALL_TIMEOUT = 30.0


def is_url(mirror: str) -> bool:
    return re.match(r"https?://", mirror) is not None


class _Miss(Exception):
    """This mirror has no good copy; `network` when it could not be asked at all."""

    def __init__(self, what: str, network: bool = False):
        super().__init__(what)
        self.network = network


def _copy_checked(src, dest: Path, sha256: str) -> None:
    """Stream `src` (a binary file object) into dest, keeping it only if its sha256 is `sha256`."""
    h = hashlib.sha256()
    part = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        with open(part, "wb") as out:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise _Miss(f"has sha256 {h.hexdigest()}, not {sha256}")
        part.rename(dest)
    finally:
        part.unlink(missing_ok=True)


def _from_directory(where: Path, name: str, dest: Path, sha256: str) -> None:
    path = where / name
    if not path.is_file():
        raise _Miss("no such file" if where.is_dir() else "no such directory")
    with open(path, "rb") as f:
        _copy_checked(f, dest, sha256)


def _from_url(url: str, dest: Path, sha256: str, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            _copy_checked(response, dest, sha256)
    except urllib.error.HTTPError as e:
        raise _Miss(f"HTTP {e.code} {e.reason}", network=e.code >= 500) from None
    except TimeoutError:
        raise _Miss(f"no data for {timeout:g} s", network=True) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Miss(f"no answer in {timeout:g} s", network=True) from None
        raise _Miss(f"unreachable ({getattr(reason, 'strerror', None) or reason})", network=True) from None
    except OSError as e:
        raise _Miss(f"transfer failed ({e.strerror or e})", network=True) from None


def _location(mirror: str, name: str) -> str:
    major = re.match(r"linux-(\d+)\.", name)
    if "{major}" in mirror:
        if not major:
            raise _Miss("its {major} needs a file named linux-X.Y...")
        mirror = mirror.replace("{major}", major.group(1))
    return mirror.rstrip("/") + "/" + name if is_url(mirror) else str(Path(mirror) / name)


def obtain(what: str, name: str, sha256: str, mirrors: list[str], cache: Path,
           timeout: float = STALL_TIMEOUT, say=print) -> Path:
    """The path of `name` in the download cache, fetched from the first mirror with a copy
    whose sha256 matches.  `what` names the configuration entry in errors."""
    downloads = cache / "downloads"
    dest = downloads / name
    if dest.is_file():
        with open(dest, "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() == sha256:
                return dest
        dest.unlink()  # a stale or corrupted copy: fetch it again
    downloads.mkdir(parents=True, exist_ok=True)
    tried, network = [], False
    for mirror in mirrors:
        try:
            location = _location(mirror, name)
            if is_url(location):
                say(f"{what}: fetching {location}")
                _from_url(location, dest, sha256, timeout)
            else:
                _from_directory(Path(location).parent, name, dest, sha256)
            say(f"{what}: {name} from {location}, sha256 verified")
            return dest
        except _Miss as miss:
            tried.append(f"{mirror} ({miss})")
            network |= miss.network
    listing = "; ".join(tried) or "no mirrors configured"
    if network:
        raise NetworkError(f"{what}: {name} could not be fetched; tried: {listing}; "
                           "check the network, or put the file in a mirror directory listed in testbed.yaml's mirrors:")
    raise UsageError(f"{what}: {name} with sha256 {sha256} is in no mirror; tried: {listing}; "
                     f"put the file into one of them (or into {downloads}), or add a mirror to testbed.yaml's mirrors:")

