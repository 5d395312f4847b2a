"""Debian packages, from the machine's apt or from any suite of Debian's archive.

A package named without a suite comes from the machine's own apt sources.  A package named with
one (`linux-image-amd64/bullseye`) comes through a private apt configuration under the cache —
its own sources list, package lists and state — so the machine's apt sources never change: a
release (`bullseye`) with its -updates and -security suites, as a machine of that release would
see them; a suite with a dash in it (`bookworm-backports`, `bullseye-security`) alone.  apt
checks the archive's signatures with the keyring Debian 12 ships for bullseye, bookworm and trixie.
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import NetworkError, UsageError

ARCHIVE = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Package lists younger than this are used as they are: a second `make setup` asks no server.
LISTS_MAX_AGE = 24 * 3600.0
# apt's own per-connection timeout; the whole update is bounded by this many seconds.
UPDATE_TIMEOUT = 300.0


def source_lines(suite: str) -> list[str]:
    suites = [(ARCHIVE, suite)] if "-" in suite else \
        [(ARCHIVE, suite), (ARCHIVE, f"{suite}-updates"), (SECURITY, f"{suite}-security")]
    return [f"deb [signed-by={KEYRING}] {uri} {s} main" for uri, s in suites]


@dataclass(frozen=True)
class Apt:
    """apt as the machine has it (suite None), or a private apt for one Debian suite."""
    suite: str | None = None

    def _dir(self, cache: Path) -> Path:
        return cache / "apt" / str(self.suite)

    def _options(self, cache: Path) -> list[str]:
        if self.suite is None:
            return []
        d = self._dir(cache)
        settings = {"Dir::Etc::SourceList": d / "sources.list", "Dir::Etc::SourceParts": d / "sources.list.d",
                    "Dir::Etc::Preferences": "/dev/null", "Dir::Etc::PreferencesParts": d / "preferences.d",
                    "Dir::State::Lists": d / "lists", "Dir::State::status": d / "status", "Dir::Cache": d / "cache",
                    "APT::Architectures": "amd64", "Acquire::Languages": "none", "APT::Sandbox::User": "root",
                    "Acquire::http::Timeout": "30"}
        return [arg for k, v in settings.items() for arg in ("-o", f"{k}={v}")]

    def refresh(self, cache: Path, say=print) -> None:
        """Fetch the suite's package lists into the private configuration unless they are fresh."""
        if self.suite is None:
            return
        d = self._dir(cache)
        sources = "\n".join(source_lines(self.suite)) + "\n"
        stamp = d / "updated"
        if (stamp.exists() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
                and (d / "sources.list").read_text() == sources):
            return
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "status").touch()
        (d / "sources.list").write_text(sources)
        say(f"apt {self.suite}: updating the package lists in {d}")
        try:
            r = subprocess.run(["apt-get", *self._options(cache), "-q", "update"], capture_output=True, text=True,
                               timeout=UPDATE_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise NetworkError(f"apt {self.suite}: no package lists after {UPDATE_TIMEOUT:g} s "
                               f"from {ARCHIVE}") from None
        failed = [line for line in (r.stdout + r.stderr).splitlines() if re.match(r"(E:|W: Failed|Err:)", line)]
        if any("does not have a Release file" in line for line in failed):
            raise UsageError(f"Debian suite {self.suite}: not in Debian's archive ({ARCHIVE}); "
                             "name a suite such as bullseye, bookworm-backports or trixie")
        if r.returncode or failed:
            raise NetworkError(f"apt {self.suite}: cannot fetch the package lists: "
                               f"{(failed or (r.stderr.strip() or 'apt-get update failed').splitlines())[0]}")
        stamp.touch()

    def show(self, package: str, cache: Path) -> dict[str, str]:
        """The fields of the version apt would install (`package` or `package=version`)."""
        r = subprocess.run(["apt-cache", *self._options(cache), "show", "--no-all-versions", package],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        fields = dict(re.findall(r"^([\w-]+): (.*)$", r.stdout, re.M))
        if r.returncode or "Version" not in fields:
            where = f"Debian's {self.suite}" if self.suite else "the machine's apt sources"
            hint = "check the name and the suite" if self.suite else \
                "check the name, or run `apt-get update`, or name a suite (package/suite)"
            raise UsageError(f"Debian package {package}: not in {where} "
                             f"({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'unknown'}); {hint}")
        return fields

    def download(self, package: str, version: str, cache: Path, into: Path) -> Path:
        """The .deb of package=version, downloaded into the directory `into`."""
        r = subprocess.run(["apt-get", *self._options(cache), "download", "-q", f"{package}={version}"], cwd=into,
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        debs = list(into.glob(f"{package}_*.deb"))
        if r.returncode or not debs:
            raise NetworkError(f"Debian package {package}={version}: download failed: "
                               f"{(r.stderr.strip() or r.stdout.strip()).splitlines()[-1:]}")
        return debs[0]


def parse(spec: str) -> tuple[str, Apt]:
    """'package/suite' (or 'package') as the package name and the apt it comes from."""
    package, _, suite = spec.partition("/")
    return package, Apt(suite or None)
