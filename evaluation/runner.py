"""Evaluation: boxes from protocols on a dataset, CorLoc with intervals, per-image results.

:func:`evaluate` makes sure every map and reduction is cached (:mod:`sensloc.evaluation.maps`,
the expensive step, once per (network, map kind, image, class)), reads the reductions a batch
at a time (:mod:`sensloc.evaluation.reductions`), fits each protocol or cross-validates it, and
scores the boxes; everything after the maps runs in the calling process and takes seconds to
minutes. Per-image results are appended to a CSV one complete line at a time, so an interrupted
evaluation resumes: finished maps are not recomputed and finished rows are neither lost nor
written twice.

Boxes are fitted and predicted in the network input's pixels; IoU is measured in the photo's
own pixels, against its ground-truth boxes (:meth:`sensloc.data.images.Preprocessing.input_to_photo`).
"""
import tempfile
from dataclasses import dataclass

import numpy as np

from sensloc import weights as weight_files

from sensloc.evaluation.maps import Dataset, ensure_maps
from sensloc.evaluation.networks import network_cache, network_identities
from sensloc.nets.backends import return_freed_memory
from sensloc.evaluation.reductions import close_rows, reduce_dataset
from sensloc.evaluation.results import (ResultsFile, dataset_digest, digest, iter_results,
                                        results_identity)
from sensloc.localize.boxes import best_ious, clip_boxes
from sensloc.localize.metrics import bootstrap_ci, hits, per_class_corloc
from sensloc.localize.protocols import CenterBox, WholeImage
from sensloc.localize.protocols.base import cross_validated_reduced
from sensloc.localize.protocols.objectness import CellMoments


# --------------------------------------------------------------------------- coordinates

def photo_to_input(boxes, photo_size_wh, preprocessing):
    """Boxes (K, 4) in pixels of a photo of size (width, height) -> network-input pixels,
    clipped to the input (:meth:`sensloc.data.images.Preprocessing.photo_to_input`)."""
    h, w = preprocessing.input_size
    return clip_boxes(preprocessing.photo_to_input(boxes, photo_size_wh), (w, h))



# --------------------------------------------------------------------------- extra training photos

#: Photos whose moments are summed at a time (their maps are in memory meanwhile).
MOMENTS_BATCH = 32


def training_moments(weight_path, net, dataset, protocol, cache_root, jobs=1, batch_size=8,
                     progress=True, dask=None):
    """:class:`~sensloc.localize.protocols.objectness.CellMoments` of photos that only train
    ``protocol`` (one that ``takes_extra_training``), summed over ``dataset``.

    Their maps (``protocol.training_specs``) are computed and cached like any photo's
    (:func:`ensure_maps`), read :data:`MOMENTS_BATCH` photos at a time, and reduced to the
    sums, which are kept beside the maps under a key of the map kinds and the photos, classes
    and boxes (``<network key>/moments/<key>.npz``): one pass per set of photos, whatever the
    folds, seeds and parameters of the fit.
    """
    specs = protocol.training_specs
    dataset = dataset.for_network(net)
    cache = network_cache(cache_root, net, specs)
    source = {k: v for k, v in protocol.reduction_params().items() if k != "mirror"}
    key = digest([protocol.kind, source, dataset_digest(dataset), dataset.class_offset])[:16]
    path = cache.folder / "moments" / f"{key}.npz"
    if cache.has(path):
        return CellMoments.from_arrays(cache.load_reduction(path))
    ensure_maps(weight_path, net, dataset, specs, cache_root, jobs, batch_size, progress, dask)
    prep, records = net.preprocessing, dataset.records
    total = None
    for start in range(0, len(records), MOMENTS_BATCH):
        batch = range(start, min(start + MOMENTS_BATCH, len(records)))
        maps = cache.load_maps(specs, [dataset.digests[i] for i in batch],
                               [dataset.target(i) for i in batch])
        gt = [photo_to_input(records[i].boxes, (records[i].width, records[i].height), prep)
              for i in batch]
        part = protocol.cell_moments(maps, gt)
        total = part if total is None else total + part
    cache.store_reduction(path, total.to_arrays())
    return total


def extra_training_source(dataset):
    """The name extra training photos are recorded by: ``extra:<count>:<digest>``."""
    return f"extra:{len(dataset.records)}:{dataset_digest(dataset)[:16]}"


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


def predict_boxes(configs, reduced, gt_input, input_hw, k, seed, fitted=None, threads=1):
    """{config name: (N, 4) boxes in input pixels}, the baselines last.

    A fitted protocol is applied as it is; a factory's protocols are cross-validated with
    ``k`` folds (:func:`~sensloc.localize.protocols.base.cross_validated_reduced`), or, with
    ``k = 0``, fitted on all images (only the baselines are factories then), the folds on
    ``threads`` threads. ``reduced`` holds each configuration's reduction of the dataset
    (:func:`reduce_dataset`).
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
                                                                    gt_input, k, seed, threads)
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
             batch_size=8, progress=True, dask=None, metrics=(), metric_images=32,
             owns_process=False, extra_records=()):
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
        Local worker processes for the maps (the workers of the cluster with ``dask="local"``),
        then threads for the cross-validated fits, one fold per thread (without Dask).
    dask : None, "local", str or distributed.Client
        Compute the maps on a Dask cluster instead (see :func:`ensure_maps`); everything after
        the maps runs here, in this process, so the numbers equal a local run's.
    metrics : tuple of str
        Standard metrics to add (:data:`sensloc.evaluation.standard_metrics.METRIC_NAMES`),
        in ``Summary.metrics``; ``metric_images`` photos for those that run the network.
    extra_records : list of ImageRecord
        Photos with boxes that only train: every cross-validated protocol that
        ``takes_extra_training`` adds them to each fold's fit (:func:`training_moments`); they
        are never scored, and may not be among ``records``.
    owns_process : bool
        The caller owns the process (the ``sensloc`` command): once the maps exist, glibc
        stops keeping freed memory (:func:`sensloc.nets.backends.return_freed_memory`), so
        that the fits' dataset-sized arrays do not leave the heap at their sum.

    Returns
    -------
    Summary, and the per-configuration boxes in photo pixels
    """
    net = weight_files.load(weight_path)
    dataset = Dataset(list(records))
    specs = tuple(dict.fromkeys(s for c in configs for s in c.specs))
    # Every protocol is told the networks it reads (their weights' SHA-256): a fitted one
    # refuses others before any work, a fresh one records them in its parameters.
    networks = network_identities(net, specs)
    extra, moments = (Dataset(list(extra_records)) if extra_records else None), {}
    learners = [c.name for c in configs
                if c.factory is not None and c.factory().takes_extra_training] if extra else []
    if extra is not None:
        if not learners:
            raise ValueError("none of the configurations learns from extra training photos "
                             "(the cross-validated presets best and best_two_nets do)")
        shared = sorted(set(extra.digests) & set(dataset.digests))
        if shared:
            raise ValueError(f"{len(shared)} of the extra training photos are among the photos "
                             "evaluated (e.g. " + next(str(r.path) for r, d in zip(
                                 extra.records, extra.digests) if d == shared[0]) + ")")

    def told(name, factory):  # the protocol, told the networks and the extra photos
        protocol = factory().use_networks(networks)
        if name in learners:  # the moments exist from when the maps do (identity needs none)
            protocol.use_extra_training(moments.get(name), extra_training_source(extra))
        return protocol

    configs = [Config(c.name, c.protocol.use_networks(networks)) if c.protocol is not None
               else Config(c.name, factory=lambda n=c.name, f=c.factory: told(n, f))
               for c in configs]
    # Checked before any map is computed; nothing is written until the first row.
    results = ResultsFile(results_path, results_identity(weight_path, net, dataset, configs, k,
                                                         seed, batch_size))
    # A fitted protocol reduces for its fit, a fresh one from a factory for its whole search;
    # the reductions are made where the maps are (on the workers) and read here.
    reducers = {c.name: c.protocol if c.protocol is not None else c.factory() for c in configs}
    ensure_maps(weight_path, net, dataset, specs, cache_root, jobs, batch_size, progress, dask,
                tuple(reducers.values()))
    for name in learners:
        moments[name] = training_moments(weight_path, net, extra, reducers[name], cache_root,
                                         jobs, batch_size, progress, dask)
    if owns_process:
        return_freed_memory()
    prep = net.preprocessing
    gt_input = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in dataset.records]
    fitted = {}
    with tempfile.TemporaryDirectory(prefix="reductions-", dir=cache_root) as spill:
        reduced, predicted = reduce_dataset(net, dataset, reducers, cache_root, spill)
        try:
            boxes = predict_boxes(configs, reduced, gt_input, prep.input_size, k, seed,
                                  fitted, threads=jobs if dask is None else 1)
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
        from sensloc.evaluation.standard_metrics import standard_metrics
        summary.metrics = standard_metrics(net, dataset, cache_root, configs, fitted, predicted,
                                           gt_input, k, seed, tuple(metrics), metric_images,
                                           progress)
    return summary, photo_boxes
