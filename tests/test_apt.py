"""Debian packages from a suite the machine's apt does not have, through the testbed's own apt
configuration: the machine's apt sources are never changed.  Asks Debian's archive (a day's
package lists are cached)."""
import hashlib
from pathlib import Path

import pytest

from harness.provision import apt
from harness.errors import UsageError


def apt_sources_digest() -> str:
    files = sorted(p for p in Path("/etc/apt").rglob("*") if p.is_file() and "sources" in str(p))
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def test_a_release_is_its_suites_as_a_machine_of_it_has_them():
    assert apt.source_lines("bullseye") == [
        f"deb [signed-by={apt.KEYRING}] http://deb.debian.org/debian bullseye main",
        f"deb [signed-by={apt.KEYRING}] http://deb.debian.org/debian bullseye-updates main",
        f"deb [signed-by={apt.KEYRING}] http://deb.debian.org/debian-security bullseye-security main"]
    assert apt.source_lines("bookworm-backports") == [
        f"deb [signed-by={apt.KEYRING}] http://deb.debian.org/debian bookworm-backports main"]
    assert apt.parse("linux-source-5.10/bullseye") == ("linux-source-5.10", apt.Apt("bullseye"))
    assert apt.parse("linux-image-amd64") == ("linux-image-amd64", apt.Apt(None))


def test_bullseye_through_a_private_configuration(cfg):
    before = apt_sources_digest()
    bullseye = apt.Apt("bullseye")
    bullseye.refresh(cfg.cache, say=lambda s: None)
    fields = bullseye.show("linux-source-5.10", cfg.cache)
    assert fields["Version"].startswith("5.10.") and fields["Package"] == "linux-source-5.10"
    image = bullseye.show("linux-image-amd64", cfg.cache)["Depends"]
    assert image.startswith("linux-image-5.10.0-"), image
    assert apt_sources_digest() == before


def test_an_unknown_package_or_suite_is_one_line(cfg, tmp_path):
    with pytest.raises(UsageError, match=r"^Debian package linux-source-2\.6: not in Debian's bullseye \(.*\); "
                                         r"check the name and the suite$"):
        apt.Apt("bullseye").show("linux-source-2.6", cfg.cache)
    with pytest.raises(UsageError, match=r"^Debian suite bullseye-nope: not in Debian's archive"):
        apt.Apt("bullseye-nope").refresh(tmp_path, say=lambda s: None)
