"""File helpers shared by the weight modules: atomic replacement and hashing.

A weight file is either complete or absent: writers fill a temporary file in the destination's
own folder, flush it to disk, and only then rename it over the destination. ``os.replace`` is
atomic on POSIX and Windows when both names are on the same file system, which is why the
temporary file lives beside the destination rather than in ``/tmp``.
"""
import hashlib
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

#: Bytes read at a time when hashing or copying (large enough to be fast, small enough for memory).
CHUNK_SIZE = 1 << 20


def fsync_file(path):
    """Flush a closed file's data to the disk (so a power cut cannot leave a renamed empty file)."""
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def fsync_directory(path):
    """Flush a directory entry (the rename itself) to disk; a no-op where unsupported (Windows)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _new_file(folder, prefix):
    """Create an empty file ``<prefix><random>.tmp`` in ``folder`` that did not exist before.

    Unlike ``tempfile.mkstemp`` (mode 0600), the mode is 0666 less the process's umask, as for
    any file the user creates: the file becomes the user's output, readable as they expect.
    """
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


@contextmanager
def atomic_write(dest):
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` atomically.

    The caller writes and closes the temporary file inside the ``with`` block. On normal exit it
    is fsynced and renamed to ``dest``; if the block raises, the temporary file is deleted and
    ``dest`` (if it existed) is left exactly as it was.

    Parameters
    ----------
    dest : str or os.PathLike
        The final path. Its folder is created if missing.

    Yields
    ------
    pathlib.Path
        The temporary path (``.<name>.<random>.tmp`` in the same folder).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_file(dest.parent, f".{dest.name}.")
    try:
        yield temporary
        fsync_file(temporary)
        os.replace(temporary, dest)
    except BaseException:
        # BaseException too: a Ctrl-C in the middle must not leave a stray temporary file.
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(dest.parent)


def sha256_file(path):
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()
