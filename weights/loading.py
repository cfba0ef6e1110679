"""Loading a network by installed name or by path, fetching it first when asked.

This sits above :mod:`~sensloc.weights.cache` (where files live) and
:mod:`~sensloc.weights.sources` (how to download and convert them), so that neither imports
the other's caller.
"""
from pathlib import Path

from sensloc import nets
from sensloc.weights import format as weight_format
from sensloc.weights.cache import installed_path, packaged_path, resolve
from sensloc.weights import sources


def load(name_or_path, architecture=None, cache_dir=None, download=False):
    """Load a network by installed name or by path.

    ``weights.load("vgg16")`` reads ``<cache>/weights/vgg16.h5``; ``weights.load("my.h5")``
    reads that file. See :func:`weights.format.load` for the returned network and the errors.

    Parameters
    ----------
    name_or_path : str or os.PathLike
    architecture : str, optional
        Refuse a file holding another architecture. Defaults to ``name_or_path`` when that is
        an architecture name.
    cache_dir : str or os.PathLike, optional
    download : bool
        If ``name_or_path`` names an architecture that is not installed, fetch it first
        (:func:`weights.fetch`: official file, checksum, conversion) instead of failing.

    Returns
    -------
    nets.Network
    """
    is_name = isinstance(name_or_path, str) and name_or_path in nets.ARCHITECTURES \
        and not Path(name_or_path).is_file()
    if download and is_name and not installed_path(name_or_path, cache_dir).is_file() \
            and not packaged_path(name_or_path).is_file():
        print(f"{name_or_path} is not installed: downloading it (checksum verified)")
        sources.fetch(name_or_path, cache_dir=cache_dir)
    path = resolve(name_or_path, cache_dir)
    if architecture is None and is_name:
        architecture = name_or_path
    return weight_format.load(path, architecture=architecture)
