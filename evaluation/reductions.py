"""Each protocol's reduction of each image (:meth:`sensloc.localize.protocols.base.Protocol.reduce`:
candidate boxes, grid features, cell features), stored beside the maps and read a batch at a
time, so that fitting and scoring hold one batch of maps and small per-image records, never a
dataset of maps. Reductions too large to keep in memory for every image go to
:class:`~sensloc.evaluation.row_files.RowFile` s.
"""
import numpy as np

from sensloc.evaluation.map_cache import reduction_key
from sensloc.evaluation.networks import network_cache
from sensloc.evaluation.row_files import RowFile
from sensloc.localize.protocols.base import put_rows


def reduce_batch(cache, dataset, batch, key, protocol):
    """``protocol``'s reduction of the images ``batch`` (indices), {name: (B, ...) array}: read
    from the cache, or, if any image lacks it, computed from the cached maps and stored. A
    reduction is computed image by image, so it does not depend on the batch it was made in."""
    digests, target = dataset.digests, dataset.target
    paths = [cache.reduction_path(key, digests[i], target(i)) for i in batch]
    if not all(cache.has(path) for path in paths):
        maps = cache.load_maps(protocol.map_specs, [digests[i] for i in batch],
                               [target(i) for i in batch])
        reduced = protocol.reduce(maps)
        for row, path in enumerate(paths):
            if not cache.has(path):
                cache.store_reduction(path, {k: v[row] for k, v in reduced.items()})
        return reduced
    rows = [cache.load_reduction(path) for path in paths]
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


#: Images whose maps are in memory at a time while a dataset is reduced.
REDUCE_BATCH = 64
#: A reduction larger than this per image is kept on disk (:mod:`sensloc.evaluation.row_files`).
SPILL_BYTES = 64 * 1024


def reduce_dataset(net, dataset, protocols, cache_root, spill_folder=None,
                   batch_size=REDUCE_BATCH):
    """Each protocol's reduction of every image, read a batch at a time.

    The reductions (:meth:`sensloc.localize.protocols.base.Protocol.reduce`) come from the
    cache where the workers stored them (:func:`~sensloc.evaluation.maps.ensure_maps` with
    ``reducers``), else they are computed here from the cached maps, a batch at a time, and
    stored (:func:`reduce_batch`).
    Memory holds one batch of maps and, per image, the reductions (candidate boxes, grid
    features: a few kilobytes) and the predicted class, never a dataset of maps. Reductions of
    more than :data:`SPILL_BYTES` per image (the ``best`` preset's cell features) go to
    :class:`~sensloc.evaluation.row_files.RowFile` s in ``spill_folder``, if given.

    Parameters
    ----------
    net : nets.Network
    dataset : Dataset
    protocols : {name: Protocol}
        Fitted protocols, or fresh ones whose reduction spans their whole search (for fitting
        and cross-validation).
    cache_root : path
        The map cache, holding every map the protocols read.
    spill_folder : path, optional
        Where large reductions are written; the caller removes it (:func:`close_rows`).

    Returns
    -------
    reduced : {name: {name: (N, ...) array or RowFile}}
    predicted : (N,) int array
        The network's top-1 class of every image, numbered as the dataset's classes (-1
        where it is an output no dataset class has, such as MobileNetV2's "background").
    """
    dataset = dataset.for_network(net)
    cache = network_cache(cache_root, net, [s for p in protocols.values() for s in p.map_specs])
    records, digests = dataset.records, dataset.digests
    n = len(records)
    keys = {name: reduction_key(protocol) for name, protocol in protocols.items()}
    reduced = {name: {} for name in protocols}

    def spill(values):  # rows of more than SPILL_BYTES go to disk, if there is a folder
        if spill_folder is not None and values[:1].nbytes > SPILL_BYTES:
            return RowFile(spill_folder, values.shape[1:], values.dtype)
        return None

    predicted = np.empty(n, np.int64)
    for start in range(0, n, batch_size):
        batch = range(start, min(start + batch_size, n))
        for i in batch:
            predicted[i] = net.dataset_classes(cache.load(cache.logits_path(digests[i])).argmax())
        for name, protocol in protocols.items():
            put_rows(reduced[name], reduce_batch(cache, dataset, batch, keys[name], protocol),
                     slice(batch.start, batch.stop), n, spill)
    return reduced, predicted


def close_rows(reduced):
    """Remove the files of the reductions :func:`reduce_dataset` kept on disk."""
    for arrays in reduced.values():
        for values in arrays.values():
            if isinstance(values, RowFile):
                values.close()
