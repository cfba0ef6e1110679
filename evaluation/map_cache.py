"""Heat maps for datasets, computed once and cached on disk.

Evaluations ask for many box protocols over the same maps, so every map is cached under a key
made of

* the network: architecture, the SHA-256 of its source weights, its preprocessing (a map kind
  that names another network, ``MapSpec(net=...)``, lives under that network's key, at that
  network's output index of the class);
* the map kind (:class:`sensloc.saliency.maps.MapSpec`): method, options, reduction, and the
  view of the image (mirrored, zoomed);
* the image: SHA-256 of the file's bytes (so a renamed photo is still found, an edited one is not);
* the explained class.

Beside the maps, the cache keeps each image's *reduction* by a box protocol (what the protocol
needs of the image's maps: :meth:`sensloc.localize.protocols.base.Protocol.reduce`), keyed by
the protocol's kind and parameters (:func:`reduction_key`), so that workers reduce the maps
they computed and the evaluating process reads kilobytes per image instead of the maps.

Cache files are ``.npy`` float32 arrays (reductions: ``.npz`` of their arrays as they are)
written atomically (temporary file + rename): an interrupted run leaves complete entries or
none, and resumes where it stopped.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from sensloc._files import atomic_write


def network_key(net):
    """16 hex digits naming a network's weights and preprocessing (the cache's first level)."""
    if net.preprocessing is None or net.source is None:
        raise ValueError("maps can be cached only for networks loaded with weights.load")
    identity = {"architecture": net.name, "sha256": net.source["sha256"],
                "preprocessing": {k: np.asarray(v).tolist()
                                  for k, v in net.preprocessing.to_attrs().items()}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


#: Version of what a reduction stores: 2 keeps whole-pixel boxes as int16 (1: float64).
REDUCTION_FORMAT = 2


def reduction_key(protocol):
    """16 hex digits naming what a protocol's reduction of an image depends on: its kind and
    :meth:`~sensloc.localize.protocols.base.Protocol.reduction_params` (an unfitted protocol
    reduces for its whole search, a fitted one for its fit)."""
    identity = {"kind": protocol.kind, "params": protocol.reduction_params(),
                "format": REDUCTION_FORMAT}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


class MapCache:
    """Heat maps and logits of one network, on disk under ``root/<network key>/``, and the
    maps of the other networks that map kinds name (``MapSpec.net``) under theirs.

    Parameters
    ----------
    root : path
        Cache folder (e.g. ``<user cache>/maps``).
    net_key : str
        From :func:`network_key`.
    class_offset : int
        The network's output index of dataset class 0 (``Network.class_offset``).
    others : dict, optional
        ``{architecture: (network key, class offset)}`` of the other networks whose maps this
        cache holds (:func:`sensloc.evaluation.networks.network_cache` fills it).
    name : str, optional
        The network's architecture: a map kind naming it is the network's own.

    Every path takes ``target``, the class as *this* network numbers it; a map of another
    network is stored at that network's number, ``target - class_offset + its offset``.
    """

    def __init__(self, root, net_key, class_offset=0, others=None, name=None):
        self.root = Path(root)
        self.folder = self.root / net_key
        self.class_offset, self.name = int(class_offset), name
        self.others = dict(others or {})

    def owns(self, spec):
        """Whether ``spec`` is a map of this cache's own network."""
        return spec.net is None or spec.net == self.name

    def map_path(self, spec, image_sha, target):
        folder, target = self.folder, int(target)
        if not self.owns(spec):
            if spec.net not in self.others:
                raise ValueError(f"map kind {spec.name} reads network {spec.net}, which this "
                                 f"map cache was not opened with")
            key, offset = self.others[spec.net]
            folder, target = self.root / key, target - self.class_offset + offset
        return folder / spec.name / image_sha[:2] / f"{image_sha}-{target}.npy"

    def logits_path(self, image_sha):
        return self.folder / "logits" / image_sha[:2] / f"{image_sha}.npy"

    def reduction_path(self, key, image_sha, target):
        return self.folder / "reductions" / key / image_sha[:2] / f"{image_sha}-{int(target)}.npz"

    def has(self, path):
        return path.is_file()

    def load(self, path):
        try:
            return np.load(path)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{path}: damaged cache entry ({error}); delete it to recompute") from error

    def store(self, path, array):
        with atomic_write(path) as temporary, open(temporary, "wb") as stream:
            np.save(stream, np.asarray(array, np.float32))

    def load_maps(self, specs, digests, targets):
        """{spec: (B, H, W)}: the cached maps of the images ``digests`` for the classes
        ``targets`` (network outputs), one array per map kind."""
        return {s: np.stack([self.load(self.map_path(s, d, t)) for d, t in zip(digests, targets)])
                for s in specs}

    def load_reduction(self, path):
        """{name: array} of one image's reduction."""
        try:
            with np.load(path) as stored:
                return {name: stored[name] for name in stored.files}
        except (ValueError, OSError, EOFError, KeyError) as error:
            raise ValueError(f"{path}: damaged cache entry ({error}); delete it to recompute") from error

    def store_reduction(self, path, arrays):
        """One image's reduction {name: array}, stored exactly (no conversion)."""
        with atomic_write(path) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, **arrays)
