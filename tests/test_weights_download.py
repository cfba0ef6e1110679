"""weights.download against a real HTTP server on 127.0.0.1 (no internet needed)."""
import hashlib
import http.server
import socket
import threading
import time

import pytest

from sensloc.weights.download import ChecksumError, DownloadError, download

BODY = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: several read chunks
SHA256 = hashlib.sha256(BODY).hexdigest()
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/good``: the body; ``/truncated``: announces all of it, sends half, hangs up;
    ``/stall``: announces it, sends nothing, waits; anything else: 404."""

    requests = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path not in ("/good", "/truncated", "/stall"):
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if self.path == "/good":
            self.wfile.write(BODY)
        elif self.path == "/truncated":
            self.wfile.write(BODY[:len(BODY) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            time.sleep(2.0)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_good_download_lands_complete_with_no_part_file(server, tmp_path):
    dest = tmp_path / "sub" / "file.bin"  # the folder is created
    assert download(f"{server}/good", dest, SHA256, progress=False) == dest
    assert dest.read_bytes() == BODY
    assert _leftovers(dest.parent) == ["file.bin"]


def test_md5_and_official_sha256_prefix_are_accepted(server, tmp_path):
    download(f"{server}/good", tmp_path / "a", md5=MD5, progress=False)
    download(f"{server}/good", tmp_path / "b", SHA256[:8], progress=False)  # torchvision style
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == BODY


def test_wrong_hash_deletes_everything_and_names_both_hashes(server, tmp_path):
    dest = tmp_path / "file.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as info:
        download(f"{server}/good", dest, wrong, progress=False)
    message = str(info.value)
    assert wrong in message and SHA256 in message and "mismatch" in message
    assert _leftovers(tmp_path) == []


def test_wrong_md5_is_refused(server, tmp_path):
    with pytest.raises(ChecksumError, match="MD5"):
        download(f"{server}/good", tmp_path / "f", md5="f" * 32, progress=False)
    assert _leftovers(tmp_path) == []


def test_truncated_body_is_detected_and_removed(server, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError, match="truncated") as info:
        download(f"{server}/truncated", dest, SHA256, progress=False)
    assert not isinstance(info.value, ChecksumError)  # caught by length, before hashing
    assert str(len(BODY) // 2) in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("path, expected_hash", [("/truncated", SHA256), ("/good", "1" * 64)])
def test_failed_download_leaves_an_existing_file_untouched(server, tmp_path, path,
                                                           expected_hash):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"an older version the user still has")
    with pytest.raises(DownloadError):
        download(f"{server}{path}", dest, expected_hash, progress=False)
    assert dest.read_bytes() == b"an older version the user still has"
    assert _leftovers(tmp_path) == ["file.bin"]


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(BODY)
    before = len(_Handler.requests)
    assert download(f"{server}/good", dest, SHA256, progress=False) == dest
    assert len(_Handler.requests) == before


def test_stale_file_is_replaced_by_a_verified_download(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"stale")
    download(f"{server}/good", dest, SHA256, progress=False)
    assert dest.read_bytes() == BODY


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(f"{server}/missing", tmp_path / "f", SHA256, progress=False)
    assert _leftovers(tmp_path) == []


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens here once the socket is closed


def test_unreachable_server_fails_fast_with_offline_instructions(tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download(f"http://127.0.0.1:{_closed_port()}/vgg16.pth", tmp_path / "f", SHA256,
                 connect_timeout=2.0, progress=False)
    assert time.monotonic() - start < 2.0
    assert "sensloc weights convert" in str(info.value)
    assert _leftovers(tmp_path) == []


def test_stalled_server_hits_the_read_timeout(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="reading failed after 0 bytes"):
        download(f"{server}/stall", tmp_path / "f", SHA256, timeout=0.3, progress=False)
    assert time.monotonic() - start < 1.5
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("kwargs, error", [
    ({"sha256": None}, "unverified download is refused"),
    ({"sha256": "xyz"}, "hex digits"),
    ({"sha256": "abc1234"}, "hex digits"),  # shorter than torchvision's 8
    ({"sha256": SHA256, "md5": "12"}, "md5 must be 32"),
])
def test_bad_hash_arguments_are_refused(tmp_path, kwargs, error):
    with pytest.raises(ValueError, match=error):
        download("http://127.0.0.1:9/x", tmp_path / "f", **kwargs)


def test_non_http_url_is_refused(tmp_path):
    with pytest.raises(ValueError, match="http"):
        download("file:///etc/passwd", tmp_path / "f", SHA256)
