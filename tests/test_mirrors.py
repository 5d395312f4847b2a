"""Release tarballs by name from an ordered list of mirrors, against a real HTTP server on
127.0.0.1: found, wrong checksum, missing, a server that never answers, kernel.org's layout."""
import contextlib
import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.provision import mirrors
from harness.errors import NetworkError, UsageError

ROOT = Path(__file__).resolve().parent.parent
NAME = "linux-3.99.1.tar.xz"
BODY = b"not really a kernel, but bytes with a checksum\n" * 1000
SHA = hashlib.sha256(BODY).hexdigest()


@contextlib.contextmanager
def http_server(files: dict[str, bytes]):
    """Serves `files` by URL path; yields the base URL and the paths asked for."""
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_server():
    """Accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        listener.close()


def obtain(tmp_path, mirror_list, **kw):
    return mirrors.obtain("kernels.t.tarball", NAME, SHA, mirror_list, tmp_path / "cache", say=lambda s: None, **kw)


def test_fetched_over_http_verified_and_kept(tmp_path):
    with http_server({f"/pub/{NAME}": BODY}) as (url, asked):
        got = obtain(tmp_path, [f"{url}/pub/"])
        assert got.read_bytes() == BODY and got.parent == tmp_path / "cache" / "downloads"
        again = obtain(tmp_path, [f"{url}/pub/"])
    assert again == got and asked == [f"/pub/{NAME}"]  # the second time from the cache
    assert list(got.parent.iterdir()) == [got]  # no partial file left


def test_kernel_org_layout_and_mirror_order(tmp_path):
    empty = tmp_path / "lab-mirror"
    empty.mkdir()
    with http_server({f"/v3.x/{NAME}": BODY}) as (url, asked):
        got = obtain(tmp_path, [str(empty), f"{url}/v{{major}}.x/"])
    assert got.read_bytes() == BODY and asked == [f"/v3.x/{NAME}"]


def test_a_directory_mirror_is_copied_into_the_cache(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / NAME).write_bytes(BODY)
    got = obtain(tmp_path, [str(tmp_path / "m")])
    assert got.read_bytes() == BODY and got != tmp_path / "m" / NAME


def test_a_wrong_checksum_is_skipped_for_the_next_mirror_and_named(tmp_path):
    bad = b"tampered" + BODY
    with http_server({f"/{NAME}": bad}) as (url, _):
        with pytest.raises(UsageError) as e:
            obtain(tmp_path, [url])
        assert f"has sha256 {hashlib.sha256(bad).hexdigest()}, not {SHA}" in str(e.value)
        assert "kernels.t.tarball" in str(e.value) and url in str(e.value)
        (tmp_path / "good").mkdir()
        (tmp_path / "good" / NAME).write_bytes(BODY)
        assert obtain(tmp_path, [url, str(tmp_path / "good")]).read_bytes() == BODY
    assert not list((tmp_path / "cache" / "downloads").glob(".*part*"))


def test_missing_everywhere_is_a_usage_error_listing_what_was_tried(tmp_path):
    with http_server({}) as (url, _):
        with pytest.raises(UsageError) as e:
            obtain(tmp_path, [str(tmp_path / "nowhere"), url])
    message = str(e.value)
    assert "no such directory" in message and "HTTP 404" in message and "mirrors:" in message


def test_a_server_that_hangs_is_a_network_error_within_the_timeout(tmp_path):
    with silent_server() as url:
        with pytest.raises(NetworkError, match=r"no (data|answer) (for|in) 0\.5 s"):
            obtain(tmp_path, [url], timeout=0.5)


def test_an_unreachable_mirror_then_a_good_one(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / NAME).write_bytes(BODY)
    with pytest.raises(NetworkError, match="unreachable"):
        obtain(tmp_path, [dead])
    assert obtain(tmp_path, [dead, str(tmp_path / "m")]).read_bytes() == BODY


def test_the_cli_exits_2_for_a_missing_tarball_and_3_for_a_network_failure(tmp_path):
    def fetch(mirror: str):
        (tmp_path / "testbed.yaml").write_text(
            f"kernels:\n  old: {{tarball: {NAME}, sha256: {SHA}}}\nmirrors: [{mirror!r}]\ncache: cache\n")
        return subprocess.run([sys.executable, "-m", "harness", "--config", str(tmp_path / "testbed.yaml"),
                               "kernel", "fetch"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    r = fetch(str(tmp_path / "empty"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and NAME in r.stderr, r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    r = fetch(dead)
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "unreachable" in r.stderr, r.stderr
