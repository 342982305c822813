"""The download stage against a local HTTP server that supports (or refuses) Range and can cut connections."""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from benloss.data.download import DownloadError, download

PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class Server:
    """A threaded server on 127.0.0.1 serving PAYLOAD at /archive.tar.gz, counting the bytes it sends."""

    def __init__(self, ranges: bool = True, cut_first_at: int | None = None) -> None:
        self.sent = 0
        self.requests: list[str | None] = []
        self.ranges = ranges
        self.cut_first_at = cut_first_at
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path != "/archive.tar.gz":
                    self.send_error(404, "Not Found")
                    return
                header = self.headers.get("Range")
                owner.requests.append(header)
                start = 0
                if header and owner.ranges:
                    start = int(re.match(r"bytes=(\d+)-", header).group(1))
                    if start >= len(PAYLOAD):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_first_at is not None and len(owner.requests) == 1:
                    body = body[: owner.cut_first_at]
                self.wfile.write(body)
                owner.sent += len(body)
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/archive.tar.gz"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_clean_download(tmp_path):
    with Server() as server:
        path = download(server.url, tmp_path / "a.tar.gz", MD5, backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    assert server.sent == len(PAYLOAD)
    assert not (tmp_path / "a.tar.gz.part").exists()


def test_cut_connection_resumes_without_starting_over(tmp_path):
    half = len(PAYLOAD) // 2
    with Server(cut_first_at=half) as server:
        path = download(server.url, tmp_path / "a.tar.gz", MD5, backoff=0.01)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={half}-"]
    assert server.sent == len(PAYLOAD)  # every byte once: it did not start over


def test_partial_file_from_a_killed_run_is_resumed(tmp_path):
    (tmp_path / "a.tar.gz.part").write_bytes(PAYLOAD[:1000])
    with Server() as server:
        download(server.url, tmp_path / "a.tar.gz", MD5, backoff=0.01)
    assert server.sent == len(PAYLOAD) - 1000
    assert (tmp_path / "a.tar.gz").read_bytes() == PAYLOAD


def test_server_without_range_support_falls_back_to_a_full_download(tmp_path):
    (tmp_path / "a.tar.gz.part").write_bytes(b"stale bytes")
    with Server(ranges=False) as server:
        download(server.url, tmp_path / "a.tar.gz", MD5, backoff=0.01)
    assert (tmp_path / "a.tar.gz").read_bytes() == PAYLOAD


def test_wrong_checksum_is_a_clear_error_and_no_output(tmp_path):
    with Server() as server, pytest.raises(DownloadError, match=f"expected {'0' * 32}, got {MD5}"):
        download(server.url, tmp_path / "a.tar.gz", "0" * 32, backoff=0.01)
    assert not (tmp_path / "a.tar.gz").exists()
    assert (tmp_path / "a.tar.gz.md5-mismatch").read_bytes() == PAYLOAD


def test_404_is_a_clear_error_without_retries(tmp_path):
    with Server() as server, pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url.replace("archive", "missing"), tmp_path / "a.tar.gz", MD5, backoff=0.01)
    assert not (tmp_path / "a.tar.gz").exists()


def test_gives_up_after_bounded_retries(tmp_path):
    with pytest.raises(DownloadError, match="giving up after 3 tries"):
        download("http://127.0.0.1:9/none.tar.gz", tmp_path / "a.tar.gz", MD5, retries=3, backoff=0.01, timeout=2)


def test_existing_output_skips_the_network(tmp_path):
    (tmp_path / "a.tar.gz").write_bytes(PAYLOAD)
    assert download("http://127.0.0.1:9/none", tmp_path / "a.tar.gz", MD5) == tmp_path / "a.tar.gz"


def test_cli_reports_failure_with_nonzero_exit(tmp_path):
    from benloss.cli import main

    with Server() as server, pytest.raises(SystemExit) as exit_info:
        main(["download", "--url", server.url, "--md5", "1" * 32, "--out", str(tmp_path / "x"), "--retries", "1"])
    assert exit_info.value.code == 1
    assert not Path(tmp_path / "x").exists()
