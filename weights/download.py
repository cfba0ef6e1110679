"""Download a file and check its hash, never leaving a partial or unverified file behind.

The body is streamed to ``<dest>.part`` in the destination's folder while its hash is computed;
only a complete body with the expected hash is renamed to ``dest`` (``os.replace``, atomic).
On any failure (no network, HTTP error, a body shorter than announced, a hash mismatch, Ctrl-C)
the ``.part`` file is deleted and an existing ``dest`` is left untouched.

Connecting uses a short timeout (``connect_timeout``) so that a machine without internet
access gets a clear error within seconds, with instructions for converting a file obtained
elsewhere; reading uses a longer one (``timeout``), the longest silence tolerated mid-download.
Only the standard library (``urllib``) is used; ``tqdm`` draws a progress bar if installed.
"""
import hashlib
import http.client
import os
import ssl
import sys
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from sensloc._files import CHUNK_SIZE, fsync_directory

__all__ = ["download", "check_hashes", "DownloadError", "ChecksumError"]

_OFFLINE_HELP = ("If this machine has no internet access, download {url} on another machine, "
                 "copy it here and run `sensloc weights convert FILE`.")


class DownloadError(OSError):
    """A download failed: no connection, an HTTP error, or a body cut short."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected hash (the file was deleted)."""


# --------------------------------------------------------------------------------------------
# Connections with separate connect and read timeouts
# --------------------------------------------------------------------------------------------
# urllib applies one timeout to both connecting and every read. We want a short one for the
# first (fail fast offline) and a long one for the second (a busy server may pause), so the
# connection classes switch the socket's timeout once connected.

class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args, read_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self):
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, read_timeout, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self):
        super().connect()  # TCP connect and TLS handshake, both under the connect timeout
        self.sock.settimeout(self._read_timeout)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout):
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, request):
        return self.do_open(partial(_HTTPConnection, read_timeout=self._read_timeout), request)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout):
        super().__init__(context=ssl.create_default_context())
        self._read_timeout = read_timeout

    def https_open(self, request):
        return self.do_open(partial(_HTTPSConnection, read_timeout=self._read_timeout), request,
                            context=self._context)


def _opener(read_timeout):
    # build_opener drops its default HTTP(S) handlers when given subclasses of them.
    return urllib.request.build_opener(_HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------

def _check_hex(value, name, lengths):
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a hex string, got {type(value).__name__}")
    value = value.lower()
    if len(value) not in lengths or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{name} must be {' or '.join(map(str, sorted(set(lengths))))} hex "
                         f"digits, got {value!r}")
    return value


def _normalise_hashes(sha256, md5):
    """Validate the expected hashes; ``sha256`` may be a prefix of at least 8 hex digits."""
    sha256 = _check_hex(sha256, "sha256", range(8, 65))
    md5 = _check_hex(md5, "md5", (32,))
    if sha256 is None and md5 is None:
        raise ValueError("give the expected sha256 (or at least md5): an unverified download "
                         "is refused")
    return sha256, md5


def check_hashes(name, actual_sha256, actual_md5, sha256=None, md5=None):
    """Raise :class:`ChecksumError` unless the actual hashes match the expected ones.

    Parameters
    ----------
    name : str
        What was hashed (a URL or a file), for the message.
    actual_sha256, actual_md5 : str
        Hex digests of the bytes.
    sha256 : str, optional
        Expected SHA-256: all 64 hex digits, or a prefix of at least 8 (the convention of
        torchvision file names such as ``vgg16-397923af.pth``).
    md5 : str, optional
        Expected MD5 (what Keras publishes for its weight files).
    """
    sha256, md5 = _normalise_hashes(sha256, md5)
    if sha256 is not None and not actual_sha256.startswith(sha256):
        kind = "SHA-256" if len(sha256) == 64 else f"SHA-256 prefix ({len(sha256)} digits)"
        raise ChecksumError(f"{name}: checksum mismatch: expected {kind} {sha256}, "
                            f"got SHA-256 {actual_sha256}")
    if md5 is not None and actual_md5 != md5:
        raise ChecksumError(f"{name}: checksum mismatch: expected MD5 {md5}, got MD5 "
                            f"{actual_md5} (SHA-256 {actual_sha256})")


def _hash_file(path):
    sha, md = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            sha.update(chunk)
            md.update(chunk)
    return sha.hexdigest(), md.hexdigest()


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------

def _progress_bar(progress, total, name):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                leave=False)


def download(url, dest, sha256=None, *, md5=None, timeout=60.0, connect_timeout=10.0,
             progress=None):
    """Download ``url`` to ``dest``, verifying its hash; atomic, and clean on failure.

    If ``dest`` already exists with the expected hash, nothing is downloaded.

    Parameters
    ----------
    url : str
        ``http://`` or ``https://`` address.
    dest : str or os.PathLike
        Final file path; its folder is created if needed. The body is first written to
        ``dest + ".part"`` in the same folder.
    sha256 : str, optional
        Expected SHA-256 of the file, 64 hex digits, or a prefix of at least 8 when only a
        prefix is published. Required unless ``md5`` is given.
    md5 : str, optional
        Expected MD5, checked in addition to (or, if ``sha256`` is None, instead of) SHA-256.
    timeout : float
        Seconds of silence tolerated while reading the body.
    connect_timeout : float
        Seconds allowed to connect (kept short so that offline machines fail fast).
    progress : bool, optional
        Show a ``tqdm`` progress bar; default: when standard error is a terminal.

    Returns
    -------
    pathlib.Path
        ``dest``.

    Raises
    ------
    ChecksumError
        The body's hash differs (message gives the expected and actual hashes).
    DownloadError
        No connection (message says how to proceed offline), HTTP error, or truncated body.
    ValueError, TypeError
        Bad arguments (a malformed hash, a non-HTTP URL, no hash at all).
    """
    sha256, md5 = _normalise_hashes(sha256, md5)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"url must start with http:// or https://, got {url!r}")
    dest = Path(dest)
    if dest.is_file():
        try:
            check_hashes(dest, *_hash_file(dest), sha256=sha256, md5=md5)
            return dest  # already here and verified
        except ChecksumError:
            pass  # a stale or damaged copy: download again, replace it only on success
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch_to(url, part, sha256, md5, timeout, connect_timeout, progress)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    fsync_directory(dest.parent)
    return dest


def _fetch_to(url, part, sha256, md5, timeout, connect_timeout, progress):
    """Stream ``url`` into ``part``, check length and hashes, fsync. Raises DownloadError."""
    request = urllib.request.Request(url, headers={"User-Agent": "sensloc"})
    try:
        response = _opener(timeout).open(request, timeout=connect_timeout)
    except urllib.error.HTTPError as error:
        raise DownloadError(f"{url}: HTTP error {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot connect to download {url} ({reason}). "
                            + _OFFLINE_HELP.format(url=url)) from None
    sha, md = hashlib.sha256(), hashlib.md5()
    received = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _progress_bar(progress, total, part.name[:-len(".part")])
        try:
            with open(part, "wb") as stream:
                while True:
                    try:
                        chunk = response.read(CHUNK_SIZE)
                    except http.client.IncompleteRead as error:
                        received += len(error.partial)
                        raise DownloadError(f"{url}: the connection closed after {received} "
                                            f"of {total} bytes (truncated download)") from None
                    except (OSError, http.client.HTTPException) as error:  # incl. timeouts
                        raise DownloadError(f"{url}: reading failed after {received} bytes "
                                            f"({error}). " + _OFFLINE_HELP.format(url=url)) \
                            from None
                    if not chunk:
                        break
                    stream.write(chunk)
                    sha.update(chunk)
                    md.update(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                stream.flush()
                os.fsync(stream.fileno())
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise DownloadError(f"{url}: received {received} bytes but the server announced "
                            f"{total} (truncated download)")
    check_hashes(url, sha.hexdigest(), md.hexdigest(), sha256=sha256, md5=md5)
