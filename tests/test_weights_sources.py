"""weights.sources: the table of known files, and fetch() end to end over local HTTP."""
import dataclasses
import functools
import hashlib
import http.server
import re
import socket
import threading
from urllib.parse import urlparse

import pytest

from sensloc import nets
from sensloc import weights
from conftest import shared_path
from sensloc.weights import sources
from sensloc.weights.download import ChecksumError, DownloadError

SQUEEZENET_SHA256 = "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261"


def test_every_architecture_has_a_default_source_or_ships_with_the_package():
    from sensloc.weights import packaged_path
    packaged = {name for name in nets.ARCHITECTURES if packaged_path(name).is_file()}
    assert packaged == {"vgg_small"}
    assert set(sources.DEFAULT_SOURCE) == set(nets.ARCHITECTURES) - packaged \
        - set(sources.CONVERT_ONLY)
    with pytest.raises(ValueError, match="mobilenet_v2 cannot be downloaded.*weights convert"):
        sources.get_source("mobilenet_v2")
    for architecture, name in sources.DEFAULT_SOURCE.items():
        assert sources.get_source(architecture).name == name


@pytest.mark.parametrize("entry", list(sources.SOURCES.values()),
                         ids=lambda s: f"{s.architecture}-{s.name}")
def test_table_entries_are_well_formed(entry):
    assert entry.architecture in nets.ARCHITECTURES
    assert urlparse(entry.url).scheme == "https"
    assert entry.url.endswith("/" + entry.filename)
    assert entry.sha256 or entry.md5
    if entry.sha256:
        assert re.fullmatch(r"[0-9a-f]{8}([0-9a-f]{56})?", entry.sha256)
    if entry.md5:
        assert re.fullmatch(r"[0-9a-f]{32}", entry.md5)
    if entry.name == "torchvision":
        # torchvision names files <arch>-<first 8 hex digits of the SHA-256>.pth: the full
        # digests in the table must agree with the official prefix.
        prefix = re.fullmatch(r"vgg\d+-([0-9a-f]{8})\.pth", entry.filename)[1]
        assert entry.sha256.startswith(prefix)


def test_squeezenet_entry_matches_the_real_file():
    path = shared_path("weights", "squeezenet-1.0-dc", "compressed_SqueezeNet.net")
    entry = sources.get_source("squeezenet1_0")
    assert entry.filename == path.name and entry.size == path.stat().st_size
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == SQUEEZENET_SHA256


def test_unknown_source_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"no source 'caffe' for vgg16; known: \['keras', "
                                         r"'torchvision'\]"):
        sources.get_source("vgg16", "caffe")
    with pytest.raises(ValueError, match="unknown architecture"):
        sources.get_source("alexnet")


# --------------------------------------------------------------------------------------------
# fetch() against a local server
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def file_server():
    """Serve the shared SqueezeNet folder on 127.0.0.1."""
    folder = shared_path("weights", "squeezenet-1.0-dc")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _point_squeezenet_at(monkeypatch, url, **changes):
    entry = sources.SOURCES[("squeezenet1_0", "deep-compression")]
    monkeypatch.setitem(sources.SOURCES, ("squeezenet1_0", "deep-compression"),
                        dataclasses.replace(entry, url=url, **changes))


def test_fetch_downloads_verifies_converts_and_installs(file_server, monkeypatch, tmp_path):
    _point_squeezenet_at(monkeypatch, f"{file_server}/compressed_SqueezeNet.net")
    path = weights.fetch("squeezenet1_0", cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "weights" / "squeezenet1_0.h5"
    assert weights.installed(tmp_path) == [
        ("squeezenet1_0", path, "compressed_SqueezeNet.net", SQUEEZENET_SHA256)]
    assert list((tmp_path / "downloads").iterdir()) == []  # the 0.7 MB source is not kept
    net = weights.load("squeezenet1_0", cache_dir=tmp_path)
    assert net.class_names[285] == "Egyptian cat"

    kept = weights.fetch("squeezenet1_0", "deep-compression", tmp_path, keep_download=True,
                         progress=False)
    assert kept == path
    assert [p.name for p in (tmp_path / "downloads").iterdir()] == ["compressed_SqueezeNet.net"]


def test_fetch_with_a_bad_checksum_installs_nothing(file_server, monkeypatch, tmp_path):
    _point_squeezenet_at(monkeypatch, f"{file_server}/compressed_SqueezeNet.net",
                         sha256="f" * 64)
    with pytest.raises(ChecksumError, match=SQUEEZENET_SHA256):
        weights.fetch("squeezenet1_0", cache_dir=tmp_path, progress=False)
    assert weights.installed(tmp_path) == []
    assert list((tmp_path / "downloads").iterdir()) == []


def test_fetch_offline_fails_fast_and_keeps_what_is_installed(monkeypatch, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    installed = tmp_path / "weights" / "squeezenet1_0.h5"
    installed.parent.mkdir()
    installed.write_bytes(b"previously installed")
    _point_squeezenet_at(monkeypatch, f"http://127.0.0.1:{port}/compressed_SqueezeNet.net")
    with pytest.raises(DownloadError, match="sensloc weights convert FILE"):
        weights.fetch("squeezenet1_0", cache_dir=tmp_path, progress=False, connect_timeout=2)
    assert installed.read_bytes() == b"previously installed"
