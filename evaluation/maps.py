"""Heat maps of a dataset, computed once per (network, map kind, image, class) into the
:class:`~sensloc.evaluation.map_cache.MapCache`, in this process or in parallel.

The maps are computed in shards of whole batches, by :func:`compute_missing` in this process
(``jobs=1``) or by one shard function, :func:`run_shard`, in worker processes: local ones
(``jobs > 1``) or the workers of a Dask cluster (``dask=...``, :mod:`sensloc.evaluation.distributed`).
Batches sit at fixed positions in the dataset, so an image's maps are the same floats whatever
the number of workers, local or Dask (one BLAS thread each), and however often a shard is re-run;
only ``jobs=1``, on this process's BLAS threads, may round differently (see
tests/test_localize_evaluate.py). Where the maps are made, the protocols' per-image reductions
are made too (:mod:`sensloc.evaluation.reductions`), so that only they travel.

A map kind may name another network (``MapSpec.net``, e.g. MobileNetV2's activations beside
SqueezeNet's maps): its maps are computed by that network
(:func:`sensloc.evaluation.networks.other_network`), from the photo preprocessed *its* way
(MobileNetV2: 224 x 224 RGB; SqueezeNet: 227 x 227 BGR), for the class as *it* numbers it
(``class_index + its class_offset``: MobileNetV2's output 0 is "background"), and cached under
its network key (:func:`sensloc.evaluation.networks.network_cache`).
"""
import os
import socket
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sensloc import weights as weight_files
from sensloc.data import images
from sensloc._files import sha256_file

from sensloc.evaluation.map_cache import reduction_key
from sensloc.evaluation.networks import network_cache, other_network
from sensloc.evaluation.reductions import reduce_batch
from sensloc.evaluation.workers import spawn_pool


@dataclass
class Dataset:
    """Records with the digests that key their cache entries.

    ``class_offset`` is the network's output index of dataset class 0
    (:attr:`sensloc.nets.Network.class_offset`): a record's class is the network's output
    ``class_index + class_offset``. The functions given a network set it
    (:meth:`for_network`); their maps, cache entries and top-1 comparisons read
    :meth:`target`.
    """
    records: list
    digests: list = field(default=None)
    class_offset: int = 0

    def __post_init__(self):
        if not self.records:
            raise ValueError("the dataset is empty")
        if self.digests is None:
            self.digests = [sha256_file(r.path) for r in self.records]

    def target(self, i):
        """The network output index of image ``i``'s class."""
        return self.records[i].class_index + self.class_offset

    def for_network(self, net):
        """This dataset with ``net``'s class offset (itself if it has it already)."""
        if self.class_offset == net.class_offset:
            return self
        return replace(self, class_offset=net.class_offset)


def _compute_other(name, specs, cache, dataset, chunk):
    """Store network ``name``'s maps ``specs`` of the images ``chunk``: the photos preprocessed
    for it, its class numbering, its forward pass shared by the maps that start from it."""
    other = other_network(name)
    records, digests = dataset.records, dataset.digests
    x = images.load_batch([records[i].path for i in chunk], other.preprocessing)
    targets = np.array([records[i].class_index + other.class_offset for i in chunk])
    trace = other.forward(x)
    for spec in specs:
        paths = [cache.map_path(spec, digests[i], dataset.target(i)) for i in chunk]
        if all(cache.has(path) for path in paths):
            continue
        for path, heat in zip(paths, spec.compute(other, x, targets, trace)):
            if not cache.has(path):
                cache.store(path, heat)


def missing_images(cache, dataset, indices, specs, reducers=()):
    """The indices (list of int) of images whose logits, any map or any reduction by
    ``reducers`` (``(key, protocol)`` pairs, :func:`~sensloc.evaluation.map_cache.reduction_key`)
    ``cache`` lacks."""
    digests, target = dataset.digests, dataset.target
    return [i for i in indices
            if not cache.has(cache.logits_path(digests[i]))
            or any(not cache.has(cache.map_path(s, digests[i], target(i))) for s in specs)
            or any(not cache.has(cache.reduction_path(key, digests[i], target(i)))
                   for key, _ in reducers)]


def compute_missing(net, cache, dataset, indices, specs, batch_size=8, reducers=()):
    """Compute and store the logits, maps and reductions that ``cache`` lacks for the images.

    ``indices`` are cut into consecutive batches of ``batch_size``, and a batch lacking any
    map is computed whole: a network's floats can depend on the batch an image shares (BLAS
    picks other kernels for other matrix shapes; measured on VGG's dense layers), so an image
    is always computed with the same neighbours, however often its shard is re-run and whatever
    part of it a killed worker had stored. Callers pass whole aligned batches
    (:func:`batch_ranges`). Then each of ``reducers`` (``(key, protocol)`` pairs) reduces the
    batch's maps, where the cache lacks its reduction (:func:`reduce_batch`).

    Returns the number of images that needed any work.
    """
    dataset = dataset.for_network(net)
    records, digests = dataset.records, dataset.digests
    indices = list(indices)
    todo = 0
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        lacking = missing_images(cache, dataset, chunk, specs, reducers)
        if not lacking:
            continue
        todo += len(lacking)
        own = [s for s in specs if cache.owns(s)]
        for name in sorted({s.net for s in specs if not cache.owns(s)}):
            group = [s for s in specs if s.net == name]
            if any(not cache.has(cache.map_path(s, dataset.digests[i], dataset.target(i)))
                   for i in chunk for s in group):
                _compute_other(name, group, cache, dataset, chunk)
        if missing_images(cache, dataset, chunk, own):
            x = images.load_batch([records[i].path for i in chunk], net.preprocessing)
            targets = np.array([dataset.target(i) for i in chunk])
            # One forward pass gives the logits and starts every map that reads it.
            trace = net.forward(x)
            for row, i in zip(trace.output, chunk):
                if not cache.has(cache.logits_path(digests[i])):
                    cache.store(cache.logits_path(digests[i]), row)
            for spec in own:
                paths = [cache.map_path(spec, digests[i], t) for i, t in zip(chunk, targets)]
                if all(cache.has(path) for path in paths):
                    continue
                for path, heat in zip(paths, spec.compute(net, x, targets, trace)):
                    if not cache.has(path):
                        cache.store(path, heat)
        for key, protocol in reducers:
            reduce_batch(cache, dataset, chunk, key, protocol)
    return todo


def batch_ranges(n, batch_size):
    """Batches of the whole dataset: ``range(0, b)``, ``range(b, 2b)``, ... whatever the
    executor or the number of workers, so every run computes an image in the same batch."""
    return [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker process needs to compute one shard's maps; small, no pixels.

    Attributes
    ----------
    weight_path : str
        Absolute path of the weight file, as the worker sees it.
    weight_sha256 : str
        SHA-256 of the file the client read; a worker whose file differs refuses to run.
    cache_root : str
        The map cache folder, where the worker stores the shard's logits and maps.
    records : tuple of ImageRecord
        The shard's images (read by the worker from ``record.path``).
    digests : tuple of str
        Their SHA-256 digests (the cache keys).
    specs : tuple of MapSpec
    batch_size : int
    reducers : tuple of (str, Protocol)
        Protocols whose reductions of the shard's images the worker stores beside the maps,
        with their keys (:func:`~sensloc.evaluation.map_cache.reduction_key`).
    """
    weight_path: str
    weight_sha256: str
    cache_root: str
    records: tuple
    digests: tuple
    specs: tuple
    batch_size: int
    reducers: tuple = ()


#: This process's network: loaded by the first shard, reused by every later one (a worker reads
#: the weight file once, not once per image). Keyed by (path, SHA-256); one at a time.
_loaded = {"key": None, "net": None, "loads": 0}
# Layers keep forward caches for the backward pass, so one network serves one thread at a time;
# a worker with several threads runs its shards one after another.
_network_lock = threading.Lock()


def run_shard(job):
    """Compute and cache the logits and maps a shard lacks, in this (worker) process.

    The one shard function of both executors: local ``--jobs`` processes and Dask workers.

    Parameters
    ----------
    job : ShardJob

    Returns
    -------
    images : int
        Images in the shard.
    computed : int
        Images that needed any work (0 when a re-run finds everything cached).
    """
    with _network_lock:
        key = (job.weight_path, job.weight_sha256)
        if _loaded["key"] != key:
            found = sha256_file(job.weight_path)
            if found != job.weight_sha256:
                raise ValueError(f"{job.weight_path} on worker {socket.gethostname()} has SHA-256 "
                                 f"{found[:16]}..., not the client's {job.weight_sha256[:16]}...: "
                                 "workers must read the same weight file")
            _loaded.update(key=None, net=None)  # free the previous network before loading
            _loaded.update(key=key, net=weight_files.load(job.weight_path), loads=_loaded["loads"] + 1)
        net = _loaded["net"]
        cache = network_cache(job.cache_root, net, job.specs)
        computed = compute_missing(net, cache, Dataset(list(job.records), list(job.digests)),
                                   range(len(job.records)), job.specs, job.batch_size,
                                   job.reducers)
    return len(job.records), computed


def weight_loads():
    """How many times this process has read a weight file (tests check: once per worker)."""
    return _loaded["loads"]


@contextmanager
def process_pool(jobs):
    """The local executor: ``jobs`` fresh processes (spawned, not forked: Numba's and
    OpenBLAS's thread pools do not survive a fork), one BLAS thread each.

    Yields ``(map_unordered, workers)``: ``map_unordered(function, items)`` yields
    ``function(item)`` for every item as each completes.
    """
    with spawn_pool(jobs) as pool:
        yield pool.imap_unordered, jobs


def shards_of(batches, batch_size, workers):
    """Group batches (lists of indices) into shards (flat lists of indices): about four shards
    per worker, so that a slow or lost shard is a small part of the run, each at least one
    batch and at most 64 images (a shard is also the unit of progress and of re-runs)."""
    images = sum(len(b) for b in batches)
    per_shard = max(1, min(64, images // max(1, 4 * workers)) // batch_size)
    return [[i for batch in batches[s:s + per_shard] for i in batch]
            for s in range(0, len(batches), per_shard)]


def ensure_maps(weight_path, net, dataset, specs, cache_root, jobs=1, batch_size=8, progress=True,
                dask=None, reducers=()):
    """Make sure the cache holds every image's logits, maps and reductions, computing what is
    missing.

    With ``jobs > 1`` the images are split into shards computed by fresh local worker processes;
    with ``dask`` by the workers of a Dask cluster (:mod:`sensloc.evaluation.distributed`). Either way each
    worker process loads the weights once and runs :func:`run_shard`, and the cache's atomic
    writes make shards safe to interrupt and re-run.

    Parameters
    ----------
    weight_path : path
        The weight file ``net`` was loaded from (workers load it by path).
    net : nets.Network
    dataset : Dataset
    specs : sequence of MapSpec
    cache_root : path
    jobs : int
        Local worker processes; with ``dask="local"``, the workers of the local Dask cluster.
    dask : None, "local", str or distributed.Client
        None: run locally. "local": a temporary ``LocalCluster`` of ``jobs`` workers. A scheduler
        address such as ``"tcp://10.0.0.5:8786"``, or a connected ``distributed.Client``.
    reducers : sequence of Protocol
        Protocols whose reductions of every image are stored beside the maps, computed where
        the maps are (by the workers), so that only the reductions travel to this process.

    Returns
    -------
    computed : int
        Images that needed any work.
    seconds : float
    """
    from tqdm import tqdm
    dataset = dataset.for_network(net)
    cache = network_cache(cache_root, net, specs)
    reducers = tuple((reduction_key(p), p) for p in reducers)
    started = time.time()
    # Only batches lacking something go out, so a resumed run starts no workers for nothing and
    # its shards are all real work.
    pending = [list(b) for b in batch_ranges(len(dataset.records), batch_size)
               if missing_images(cache, dataset, b, specs, reducers)]
    if not pending:
        return 0, time.time() - started
    if jobs <= 1 and dask is None:
        executor = nullcontext((None, 1))
    elif dask is None:
        executor = process_pool(jobs)
    else:
        from sensloc.evaluation.distributed import dask_executor
        executor = dask_executor(dask, jobs)
    computed = 0
    with executor as (map_unordered, workers):
        shards = shards_of(pending, batch_size, workers)
        bar = tqdm(total=sum(map(len, shards)), unit="img", desc="maps", disable=not progress,
                   smoothing=0.1)
        if map_unordered is None:  # in this process, with its own network and threads
            for indices in shards:
                computed += compute_missing(net, cache, dataset, indices, specs, batch_size,
                                            reducers)
                bar.update(len(indices))
        else:
            # Absolute paths: workers need not share this process's working directory.
            weight_path = os.path.abspath(weight_path)
            weight_sha256 = sha256_file(weight_path)
            work = [ShardJob(weight_path, weight_sha256, os.path.abspath(cache_root),
                             tuple(replace(dataset.records[i],
                                           path=Path(os.path.abspath(dataset.records[i].path)))
                                   for i in indices),
                             tuple(dataset.digests[i] for i in indices), tuple(specs), batch_size,
                             reducers)
                    for indices in shards]
            for done, count in map_unordered(run_shard, work):
                computed += count
                bar.update(done)
        bar.close()
    unseen = missing_images(cache, dataset, [i for b in pending for i in b], specs, reducers)
    if unseen:  # the workers wrote where this process cannot read
        raise OSError(f"the workers finished, but {len(unseen)} images' maps are missing from "
                      f"{cache.folder} here (e.g. {dataset.records[unseen[0]].path}): the map "
                      "cache must be one folder that this machine and every worker reach at the "
                      "same path (a shared file system; choose it with --cache)")
    return computed, time.time() - started


def load_maps(net, dataset, specs, cache_root):
    """{spec: (N, H, W)} maps for the true classes, and the (N, K) logits, from the cache."""
    dataset = dataset.for_network(net)
    cache = network_cache(cache_root, net, specs)
    digests = dataset.digests
    logits = np.stack([cache.load(cache.logits_path(d)) for d in digests])
    maps = cache.load_maps(specs, digests, [dataset.target(i) for i in range(len(digests))])
    return maps, logits
