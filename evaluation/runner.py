"""Evaluation: maps for a dataset (cached, in parallel), boxes from protocols, CorLoc with intervals.

The expensive step, computing heat maps, happens once per (network, map kind, image, class) and
lands in the :class:`~sensloc.evaluation.map_cache.MapCache`; everything after it (fitting thresholds or a
regression, cross-validation, scoring) reads the cache and takes seconds. Per-image results are
appended to a CSV one complete line at a time, so an interrupted evaluation resumes: finished
maps are not recomputed and finished rows are neither lost nor written twice.

The maps are computed in shards of whole batches, by :func:`compute_missing` in this process
(``jobs=1``) or by one shard function, :func:`run_shard`, in worker processes: local ones
(``jobs > 1``) or the workers of a Dask cluster (``dask=...``, :mod:`sensloc.evaluation.distributed`).
Batches sit at fixed positions in the dataset, so an image's maps are the same floats whatever
the number of workers, local or Dask (one BLAS thread each), and however often a shard is re-run;
only ``jobs=1``, on this process's BLAS threads, may round differently (see
tests/test_localize_evaluate.py). Boxes, cross-validation, metrics and the results CSV always
run in the calling process, after every map exists.

Boxes are fitted and predicted in the network input's pixels; IoU is measured in the photo's
own pixels, against its ground-truth boxes (:meth:`sensloc.data.images.Preprocessing.input_to_photo`).
"""
import os
import socket
import tempfile
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sensloc import weights as weight_files
from sensloc.data import images
from sensloc._files import sha256_file

from sensloc.evaluation.map_cache import MapCache, network_key, reduction_key
from sensloc.evaluation.row_files import RowFile
from sensloc.evaluation.results import ResultsFile, digest, iter_results, results_identity
from sensloc.evaluation.workers import spawn_pool
from sensloc.localize.boxes import best_ious, clip_boxes
from sensloc.localize.metrics import bootstrap_ci, hits, per_class_corloc
from sensloc.localize.protocols import CenterBox, WholeImage
from sensloc.localize.protocols.base import cross_validated_reduced


# --------------------------------------------------------------------------- coordinates

def photo_to_input(boxes, photo_size_wh, preprocessing):
    """Boxes (K, 4) in pixels of a photo of size (width, height) -> network-input pixels,
    clipped to the input (:meth:`sensloc.data.images.Preprocessing.photo_to_input`)."""
    h, w = preprocessing.input_size
    return clip_boxes(preprocessing.photo_to_input(boxes, photo_size_wh), (w, h))


# --------------------------------------------------------------------------- maps

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


def reduce_batch(cache, dataset, batch, key, protocol):
    """``protocol``'s reduction of the images ``batch`` (indices), {name: (B, ...) array}: read
    from the cache, or, if any image lacks it, computed from the cached maps and stored. A
    reduction is computed image by image, so it does not depend on the batch it was made in."""
    digests, target = dataset.digests, dataset.target
    paths = [cache.reduction_path(key, digests[i], target(i)) for i in batch]
    if not all(cache.has(path) for path in paths):
        maps = {s: np.stack([cache.load(cache.map_path(s, digests[i], target(i)))
                             for i in batch]) for s in protocol.map_specs}
        reduced = protocol.reduce(maps)
        for row, path in enumerate(paths):
            if not cache.has(path):
                cache.store_reduction(path, {k: v[row] for k, v in reduced.items()})
        return reduced
    rows = [cache.load_reduction(path) for path in paths]
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


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
        if missing_images(cache, dataset, chunk, specs):
            x = images.load_batch([records[i].path for i in chunk], net.preprocessing)
            targets = np.array([dataset.target(i) for i in chunk])
            logits = net(x)
            for row, i in zip(logits, chunk):
                if not cache.has(cache.logits_path(digests[i])):
                    cache.store(cache.logits_path(digests[i]), row)
            for spec in specs:
                paths = [cache.map_path(spec, digests[i], t) for i, t in zip(chunk, targets)]
                if all(cache.has(path) for path in paths):
                    continue
                for path, heat in zip(paths, spec.compute(net, x, targets)):
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
        cache = MapCache(job.cache_root, network_key(net))
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
    cache = MapCache(cache_root, network_key(net))
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
    cache = MapCache(cache_root, network_key(net))
    digests = dataset.digests
    logits = np.stack([cache.load(cache.logits_path(d)) for d in digests])
    maps = {s: np.stack([cache.load(cache.map_path(s, d, dataset.target(i)))
                         for i, d in enumerate(digests)]) for s in specs}
    return maps, logits


#: Images whose maps are in memory at a time while a dataset is reduced.
REDUCE_BATCH = 64
#: A reduction larger than this per image is kept on disk (:mod:`sensloc.evaluation.row_files`).
SPILL_BYTES = 64 * 1024


def reduce_dataset(net, dataset, protocols, cache_root, spill_folder=None,
                   batch_size=REDUCE_BATCH):
    """Each protocol's reduction of every image, read a batch at a time.

    The reductions (:meth:`sensloc.localize.protocols.base.Protocol.reduce`) come from the
    cache where the workers stored them (:func:`ensure_maps` with ``reducers``), else they are
    computed here from the cached maps, a batch at a time, and stored (:func:`reduce_batch`).
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
    cache = MapCache(cache_root, network_key(net))
    records, digests = dataset.records, dataset.digests
    n = len(records)
    keys = {name: reduction_key(protocol) for name, protocol in protocols.items()}
    reduced = {name: {} for name in protocols}
    predicted = np.empty(n, np.int64)
    for start in range(0, n, batch_size):
        batch = range(start, min(start + batch_size, n))
        for i in batch:
            predicted[i] = net.dataset_classes(cache.load(cache.logits_path(digests[i])).argmax())
        for name, protocol in protocols.items():
            part = reduce_batch(cache, dataset, batch, keys[name], protocol)
            for key, values in part.items():
                if key not in reduced[name]:  # the first batch tells each row's shape and type
                    big = spill_folder is not None and values[:1].nbytes > SPILL_BYTES
                    reduced[name][key] = (RowFile(spill_folder, values.shape[1:], values.dtype)
                                          if big else np.empty((n,) + values.shape[1:],
                                                               values.dtype))
                rows = reduced[name][key]
                if isinstance(rows, RowFile):
                    rows.append(values)
                    continue
                if not np.can_cast(values.dtype, rows.dtype):  # e.g. boxes not whole pixels
                    rows = reduced[name][key] = rows.astype(np.result_type(rows, values))
                rows[batch.start:batch.stop] = values
    return reduced, predicted


def close_rows(reduced):
    """Remove the files of the reductions :func:`reduce_dataset` kept on disk."""
    for arrays in reduced.values():
        for values in arrays.values():
            if isinstance(values, RowFile):
                values.close()


@dataclass
class Config:
    """One line of the results table: a fitted protocol, or a factory for cross-validation."""
    name: str
    protocol: object = None
    factory: object = None

    @property
    def specs(self):
        p = self.protocol if self.protocol is not None else self.factory()
        return tuple(p.map_specs)

    def identity(self):
        """SHA-256 of what makes this configuration's boxes: ``fitted`` or ``cross-validated``
        and the protocol's class and parameters (fitted ones included), for the results file."""
        if self.protocol is not None:
            return digest(["fitted", type(self.protocol).__name__, self.protocol.params()])
        p = self.factory()
        return digest(["cross-validated", type(p).__name__, p.params()])


def baseline_configs(input_hw):
    """The baselines every evaluation reports, as ordinary protocols: the training images'
    mean box size centred in the input, and the whole input ((H, W) ``input_hw``)."""
    return [Config("baseline: center box", factory=lambda: CenterBox(input_hw=input_hw)),
            Config("baseline: whole image", factory=lambda: WholeImage(input_hw=input_hw))]


def predict_boxes(configs, reduced, gt_input, input_hw, k, seed, fitted=None):
    """{config name: (N, 4) boxes in input pixels}, the baselines last.

    A fitted protocol is applied as it is; a factory's protocols are cross-validated with
    ``k`` folds (:func:`~sensloc.localize.protocols.base.cross_validated_reduced`), or, with
    ``k = 0``, fitted on all images (only the baselines are factories then). ``reduced``
    holds each configuration's reduction of the dataset (:func:`reduce_dataset`).
    A dict given as ``fitted`` receives each cross-validated configuration's k fitted
    protocols.
    """
    n = len(gt_input)
    boxes = {}
    for config in list(configs) + baseline_configs(input_hw):
        mine = reduced.get(config.name, {})
        if config.protocol is not None:
            protocol = config.protocol
        elif k:
            boxes[config.name], protocols = cross_validated_reduced(config.factory, mine,
                                                                    gt_input, k, seed)
            if fitted is not None:
                fitted[config.name] = protocols
            continue
        else:
            protocol = config.factory().fit_reduced(mine, gt_input)
        boxes[config.name] = (protocol.predict_reduced(mine) if protocol.map_specs
                              else protocol.predict_reduced(mine, count=n))
    return boxes


@dataclass
class Summary:
    """CorLoc per configuration with 95% bootstrap intervals."""
    n: int
    rows: dict  # name -> {"corloc", "corloc_top1", "ci95", "n", "per_class": {class: corloc}}
    #: The standard metrics (:class:`~sensloc.evaluation.standard_metrics.MetricRows`), if asked.
    metrics: object = None

    def markdown(self):
        lines = ["| configuration | CorLoc (GT-known) | 95% CI | CorLoc (top-1) | n |",
                 "|---|---:|---|---:|---:|"]
        for name, r in self.rows.items():
            lines.append(f"| {name} | {100 * r['corloc']:.1f}% | {100 * r['ci95'][0]:.1f}-"
                         f"{100 * r['ci95'][1]:.1f}% | {100 * r['corloc_top1']:.1f}% | {r['n']} |")
        return "\n".join(lines)

    def to_json(self):
        configs = {k: v for k, v in self.rows.items() if not k.startswith("baseline: ")}
        baselines = {k[len("baseline: "):]: v for k, v in self.rows.items() if k.startswith("baseline: ")}
        summary = {"configs": configs, "baselines": baselines, "n": self.n}
        if self.metrics is not None:
            summary["metrics"] = self.metrics.to_json()
        return summary


def summarize(rows, names, image_ids):
    """The :class:`Summary` of results rows (an iterable of dicts, read once) for the
    configurations ``names`` and the images ``image_ids``; per row it keeps three integers."""
    wanted = set(image_ids)
    kept = {name: [] for name in names}
    for r in rows:
        if r["config"] in kept and r["image_id"] in wanted:
            kept[r["config"]].append((int(r["hit"]), int(r["hit_top1"]), int(r["true_class"])))
    table = {}
    for name in names:
        found, top1, classes = np.array(kept[name], np.int64).reshape(-1, 3).T
        low, high = bootstrap_ci(found) if len(found) else (np.nan, np.nan)
        table[name] = {"corloc": float(found.mean()), "corloc_top1": float(top1.mean()),
                       "ci95": [float(low), float(high)], "n": int(len(found)),
                       "per_class": {int(c): float(v) for c, v in
                                     per_class_corloc(found, classes).items()}}
    return Summary(len(wanted), table)


def evaluate(weight_path, records, configs, cache_root, results_path, k=5, seed=0, jobs=1,
             batch_size=8, progress=True, dask=None, metrics=(), metric_images=32):
    """Evaluate box configurations on a dataset.

    Parameters
    ----------
    weight_path : path
        The network's weight file (workers load it by path).
    records : list of ImageRecord
    configs : list of Config
        Fitted protocols (applied as they are) and/or factories (cross-validated with ``k``
        folds, seeded).
    cache_root : path
        The map cache folder.
    results_path : path
        Per-image CSV, appended to and resumed from if it holds results of this same run
        (:class:`ResultsFile`); results of another run, or another file, raise ValueError
        before any work.
    jobs : int
        Local worker processes for the maps (the workers of the cluster with ``dask="local"``).
    dask : None, "local", str or distributed.Client
        Compute the maps on a Dask cluster instead (see :func:`ensure_maps`); everything after
        the maps runs here, in this process, so the numbers equal a local run's.
    metrics : tuple of str
        Standard metrics to add (:data:`sensloc.evaluation.standard_metrics.METRIC_NAMES`),
        in ``Summary.metrics``; ``metric_images`` photos for those that run the network.

    Returns
    -------
    Summary, and the per-configuration boxes in photo pixels
    """
    net = weight_files.load(weight_path)
    dataset = Dataset(list(records))
    specs = tuple(dict.fromkeys(s for c in configs for s in c.specs))
    # Checked before any map is computed; nothing is written until the first row.
    results = ResultsFile(results_path, results_identity(weight_path, net, dataset, configs, k,
                                                         seed, batch_size))
    # A fitted protocol reduces for its fit, a fresh one from a factory for its whole search;
    # the reductions are made where the maps are (on the workers) and read here.
    reducers = {c.name: c.protocol if c.protocol is not None else c.factory() for c in configs}
    ensure_maps(weight_path, net, dataset, specs, cache_root, jobs, batch_size, progress, dask,
                tuple(reducers.values()))
    prep = net.preprocessing
    gt_input = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in dataset.records]
    fitted = {}
    with tempfile.TemporaryDirectory(prefix="reductions-", dir=cache_root) as spill:
        reduced, predicted = reduce_dataset(net, dataset, reducers, cache_root, spill)
        try:
            boxes = predict_boxes(configs, reduced, gt_input, prep.input_size, k, seed,
                                  fitted)
        finally:
            close_rows(reduced)
    photo_boxes = {}
    try:
        truth = [r.boxes for r in dataset.records]
        for name, input_boxes in boxes.items():
            photo_boxes[name] = [prep.input_to_photo(box, (r.width, r.height))[0]
                                 for r, box in zip(dataset.records, input_boxes)]
            overlaps = best_ious(np.array(photo_boxes[name]), truth)
            found = hits(np.array(photo_boxes[name]), truth)  # IoU >= 0.5 with a true box
            for record, box, cls, overlap, hit in zip(dataset.records, photo_boxes[name],
                                                      predicted, overlaps, found):
                results.add(name, record, int(cls), box, float(overlap), bool(hit))
    finally:
        results.close()
    summary = summarize(iter_results(results_path), list(boxes),
                        [r.image_id for r in dataset.records])
    if metrics:
        # The standard metrics score whole maps, so they read them all (unlike the boxes,
        # which are fitted from per-image reductions read a batch at a time).
        from sensloc.evaluation.standard_metrics import standard_metrics
        maps, logits = load_maps(net, dataset, specs, cache_root)
        summary.metrics = standard_metrics(net, dataset.records, configs, fitted, maps, logits,
                                           gt_input, k, seed, tuple(metrics), metric_images,
                                           progress)
    return summary, photo_boxes
