"""Where installed weights live, and how a name or a path becomes a weight file.

The cache folder is, first match wins:

1. ``$SENSLOC_CACHE_DIR``;
2. ``$XDG_CACHE_HOME/sensloc`` (the XDG convention on Linux; ignored unless absolute);
3. ``~/.cache/sensloc``.

Installed networks are ``<cache>/weights/<architecture>.h5`` (one per architecture, in the
format of :mod:`weights.format`); downloads in progress and kept source files go to
``<cache>/downloads/``. Networks that ship inside the package (``weights/data/<name>.h5``: the
small VGG that sensloc trains itself) need no installation; an installed file of the same name
takes precedence.
"""
import os
import warnings
from pathlib import Path

from sensloc import nets

from sensloc.weights import format as weight_format

__all__ = ["default_cache_dir", "weights_dir", "downloads_dir", "installed_path", "packaged_path",
           "installed", "resolve"]


def default_cache_dir():
    """The sensloc cache folder (see the module docstring); not created here.

    Returns
    -------
    pathlib.Path
    """
    explicit = os.environ.get("SENSLOC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "sensloc"
    return Path.home() / ".cache" / "sensloc"


def weights_dir(cache_dir=None):
    """``<cache_dir>/weights``: the installed networks (default :func:`default_cache_dir`)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "weights"


def downloads_dir(cache_dir=None):
    """``<cache_dir>/downloads``: where source files are downloaded before conversion."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "downloads"


def installed_path(architecture, cache_dir=None):
    """Where ``architecture`` is (or would be) installed: ``<cache>/weights/<architecture>.h5``.

    Raises
    ------
    ValueError
        If ``architecture`` is not in :data:`nets.ARCHITECTURES`.
    """
    if architecture not in nets.ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: "
                         f"{sorted(nets.ARCHITECTURES)}")
    return weights_dir(cache_dir) / f"{architecture}.h5"


def packaged_path(architecture):
    """``weights/data/<architecture>.h5`` inside the package (it may not exist)."""
    return Path(__file__).parent / "data" / f"{architecture}.h5"


def installed(cache_dir=None):
    """The networks installed in the cache.

    Parameters
    ----------
    cache_dir : str or os.PathLike, optional
        Cache folder; default :func:`default_cache_dir`.

    Returns
    -------
    list of tuple
        ``(architecture, path, source_file, source_sha256)`` sorted by architecture. Files in
        the weights folder that cannot be read as weight files are skipped with a warning
        naming them.
    """
    folder = weights_dir(cache_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.h5")):
        if path.name.startswith("."):  # an atomic write in progress
            continue
        try:
            header = weight_format.read_header(path)
        except (OSError, ValueError) as error:
            warnings.warn(f"skipping unreadable weight file: {error}", stacklevel=2)
            continue
        found.append((header["architecture"], path, header["source_file"],
                      header["source_sha256"]))
    return sorted(found, key=lambda entry: (entry[0], str(entry[1])))


def resolve(name_or_path, cache_dir=None):
    """Turn an architecture name or a file path into the path of a weight file.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        An existing file, or the name of an installed architecture (e.g. ``"vgg16"``).
    cache_dir : str or os.PathLike, optional
        Cache folder; default :func:`default_cache_dir`.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        If the file does not exist, or the architecture is not installed (the message says how
        to install it).
    ValueError
        If ``name_or_path`` is neither an existing file nor a known architecture name.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected an architecture name or a file path, got "
                        f"{type(name_or_path).__name__}")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = os.fspath(name_or_path)
    if isinstance(name_or_path, str) and name in nets.ARCHITECTURES:
        target = installed_path(name, cache_dir)
        if target.is_file():
            return target
        if packaged_path(name).is_file():
            return packaged_path(name)
        raise FileNotFoundError(
            f"{name} is not installed (no {target}). Install it with "
            f"`sensloc weights fetch {name}` (downloads and converts the official file), or, "
            f"on a machine without internet access, copy a file obtained elsewhere and run "
            f"`sensloc weights convert FILE`")
    if path.suffix or os.sep in name or (os.altsep and os.altsep in name):
        raise FileNotFoundError(f"{path}: no such weight file")
    raise ValueError(f"{name!r} is neither an existing file nor an architecture name; "
                     f"architectures: {sorted(nets.ARCHITECTURES)}")
