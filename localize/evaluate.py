"""Evaluation: maps for a dataset (cached, in parallel), boxes from protocols, CorLoc with intervals.

The expensive step, computing heat maps, happens once per (network, map kind, image, class) and
lands in the :class:`~localize.maps.MapCache`; everything after it (fitting thresholds or a
regression, cross-validation, scoring) reads the cache and takes seconds. Per-image results are
appended to a CSV one complete line at a time, so an interrupted evaluation resumes: finished
maps are not recomputed and finished rows are neither lost nor written twice.

Boxes are fitted and predicted in the network input's pixels; IoU is measured in the photo's
own pixels, against its ground-truth boxes (:func:`input_to_photo`).
"""
import csv
import io
import os
import time
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

import weights as weight_files
from weights._files import sha256_file

from .boxes import clip_boxes, iou
from .maps import MapCache, network_key
from .metrics import bootstrap_ci, per_class_corloc
from .protocols import CenterBox, WholeImage, cross_validated_boxes

RESULT_COLUMNS = ("config", "image_id", "true_class", "predicted_class", "xmin", "ymin", "xmax",
                  "ymax", "iou", "hit", "hit_top1")


# --------------------------------------------------------------------------- coordinates

def _geometry(photo_size_wh, preprocessing):
    width, height = photo_size_wh
    (new_h, new_w), (top, left) = weight_files.resize_geometry(
        (height, width), preprocessing.input_size, preprocessing.resize)
    return np.array([width / new_w, height / new_h]), np.array([left, top])


def input_to_photo(boxes, photo_size_wh, preprocessing):
    """Boxes (K, 4) in network-input pixels -> pixels of a photo of size (width, height),
    undoing the resize and the crop of ``preprocessing``."""
    scale, offset = _geometry(photo_size_wh, preprocessing)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([(b[:, :2] + offset) * scale, (b[:, 2:] + offset) * scale], axis=1)


def photo_to_input(boxes, photo_size_wh, preprocessing):
    """Boxes (K, 4) in pixels of a photo of size (width, height) -> network-input pixels,
    clipped to the input."""
    scale, offset = _geometry(photo_size_wh, preprocessing)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    moved = np.concatenate([b[:, :2] / scale - offset, b[:, 2:] / scale - offset], axis=1)
    h, w = preprocessing.input_size
    return clip_boxes(moved, (w, h))


# --------------------------------------------------------------------------- maps

@dataclass
class Dataset:
    """Records with the digests that key their cache entries."""
    records: list
    digests: list = field(default=None)

    def __post_init__(self):
        if not self.records:
            raise ValueError("the dataset is empty")
        if self.digests is None:
            self.digests = [sha256_file(r.path) for r in self.records]


def compute_missing(net, cache, dataset, indices, specs, batch_size=8):
    """Compute and store the logits and maps that ``cache`` lacks for the given images.

    Returns the number of images that needed any work.
    """
    records, digests = dataset.records, dataset.digests
    todo = [i for i in indices
            if not cache.has(cache.logits_path(digests[i]))
            or any(not cache.has(cache.map_path(s, digests[i], records[i].class_index)) for s in specs)]
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        x = weight_files.load_batch([records[i].path for i in chunk], net.preprocessing)
        targets = np.array([records[i].class_index for i in chunk])
        logits = net(x)
        for row, i in zip(logits, chunk):
            cache.store(cache.logits_path(digests[i]), row)
        for spec in specs:
            missing = [j for j, i in enumerate(chunk)
                       if not cache.has(cache.map_path(spec, digests[i], targets[j]))]
            if not missing:
                continue
            maps = spec.compute(net, x[missing], targets[missing])
            for j, heat in zip(missing, maps):
                cache.store(cache.map_path(spec, digests[chunk[j]], targets[j]), heat)
    return len(todo)


_worker = {}


def _start_worker(weight_path, cache_root):
    # Each process loads the network once and keeps it for all its shards.
    net = weight_files.load(weight_path)
    _worker.update(net=net, cache=MapCache(cache_root, network_key(net)))


def _work_on_shard(job):
    records, digests, specs, batch_size = job
    shard = Dataset(records, digests)
    return len(records), compute_missing(_worker["net"], _worker["cache"], shard,
                                         range(len(records)), specs, batch_size)


#: Worker processes run one BLAS / Numba thread each: the processes share the cores instead.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}


def ensure_maps(weight_path, net, dataset, specs, cache_root, jobs=1, batch_size=8, progress=True):
    """Make sure the cache holds every image's logits and maps, computing what is missing.

    With ``jobs > 1`` the images are split into shards computed by fresh worker processes
    (spawned, not forked: Numba's and OpenBLAS's thread pools do not survive a fork), each
    loading the weights once; the cache's atomic writes make them safe to interrupt.

    Returns
    -------
    computed : int
        Images that needed any work.
    seconds : float
    """
    from tqdm import tqdm
    cache = MapCache(cache_root, network_key(net))
    n = len(dataset.records)
    shard = max(batch_size, min(64, n // max(1, 4 * jobs)))
    shards = [range(s, min(s + shard, n)) for s in range(0, n, shard)]
    bar = tqdm(total=n, unit="img", desc="maps", disable=not progress, smoothing=0.1)
    started, computed = time.time(), 0
    if jobs <= 1:
        for indices in shards:
            computed += compute_missing(net, cache, dataset, indices, specs, batch_size)
            bar.update(len(indices))
    else:
        work = [([dataset.records[i] for i in idx], [dataset.digests[i] for i in idx], specs,
                 batch_size) for idx in shards]
        saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
        os.environ.update(SINGLE_THREAD_ENV)
        try:
            with get_context("spawn").Pool(jobs, _start_worker,
                                           (str(weight_path), str(cache_root))) as pool:
                for done, count in pool.imap_unordered(_work_on_shard, work):
                    computed += count
                    bar.update(done)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    bar.close()
    return computed, time.time() - started


def load_maps(net, dataset, specs, cache_root):
    """{spec: (N, H, W)} maps for the true classes, and the (N, K) logits, from the cache."""
    cache = MapCache(cache_root, network_key(net))
    records, digests = dataset.records, dataset.digests
    logits = np.stack([cache.load(cache.logits_path(d)) for d in digests])
    maps = {s: np.stack([cache.load(cache.map_path(s, d, r.class_index))
                         for r, d in zip(records, digests)]) for s in specs}
    return maps, logits


# --------------------------------------------------------------------------- results file

def read_results(path):
    """Rows of a results CSV, dropping a last line cut short by an interruption."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as stream:
        text = stream.read()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        with open(path, "w", newline="") as stream:  # truncate the torn line away
            stream.write(text)
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and tuple(rows[0].keys()) != RESULT_COLUMNS:
        raise ValueError(f"{path} is not a sensloc results file (columns {tuple(rows[0].keys())})")
    return rows


class ResultsFile:
    """Append-only per-image results; one complete line per write, flushed to disk."""

    def __init__(self, path):
        self.path = path
        self.done = {(r["config"], r["image_id"]) for r in read_results(path)}
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        self.stream = open(path, "a", newline="")
        if new:
            self._write(RESULT_COLUMNS)

    def _write(self, values):
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(values)
        self.stream.write(line.getvalue())
        self.stream.flush()
        os.fsync(self.stream.fileno())

    def add(self, config, record, predicted_class, box, overlap):
        if (config, record.image_id) in self.done:
            return
        hit = overlap >= 0.5
        self._write([config, record.image_id, record.class_index, predicted_class,
                     *(f"{v:.2f}" for v in box), f"{overlap:.6f}", int(hit),
                     int(hit and predicted_class == record.class_index)])
        self.done.add((config, record.image_id))

    def close(self):
        self.stream.close()


# --------------------------------------------------------------------------- evaluation

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


def predict_boxes(configs, maps, gt_input, input_hw, k, seed):
    """{config name: (N, 4) boxes in input pixels}, baselines included."""
    n = len(gt_input)
    boxes = {}
    for config in configs:
        needed = {s: maps[s] for s in config.specs}
        if config.protocol is not None:
            boxes[config.name] = config.protocol.predict(needed)
        else:
            boxes[config.name] = cross_validated_boxes(config.factory, needed, gt_input, k, seed)[0]
    center = np.zeros((n, 4))
    if k:
        for f_boxes, test in _center_cv(gt_input, input_hw, k, seed):
            center[test] = f_boxes
    else:
        center = CenterBox().fit({}, gt_input, input_hw).predict({}, n, input_hw)
    boxes["baseline: center box"] = center
    boxes["baseline: whole image"] = WholeImage().predict({}, n, input_hw)
    return boxes


def _center_cv(gt_input, input_hw, k, seed):
    from .protocols import folds
    fold = folds(len(gt_input), k, seed)
    for f in range(k):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        model = CenterBox().fit({}, [gt_input[i] for i in train], input_hw)
        yield model.predict({}, len(test), input_hw), test


@dataclass
class Summary:
    """CorLoc per configuration with 95% bootstrap intervals."""
    n: int
    rows: dict  # name -> {"corloc", "corloc_top1", "ci95", "n", "per_class": {class: corloc}}

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
        return {"configs": configs, "baselines": baselines, "n": self.n}


def summarize(rows, names, image_ids):
    wanted = set(image_ids)
    table = {}
    for name in names:
        mine = [r for r in rows if r["config"] == name and r["image_id"] in wanted]
        hits = np.array([int(r["hit"]) for r in mine])
        top1 = np.array([int(r["hit_top1"]) for r in mine])
        low, high = bootstrap_ci(hits) if len(hits) else (np.nan, np.nan)
        classes = np.array([int(r["true_class"]) for r in mine])
        table[name] = {"corloc": float(hits.mean()), "corloc_top1": float(top1.mean()),
                       "ci95": [float(low), float(high)], "n": int(len(hits)),
                       "per_class": {int(c): float(v) for c, v in
                                     per_class_corloc(hits, classes).items()}}
    return Summary(len(wanted), table)


def evaluate(weight_path, records, configs, cache_root, results_path, k=5, seed=0, jobs=1,
             batch_size=8, progress=True):
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
        Per-image CSV, appended to (and resumed from).

    Returns
    -------
    Summary, and the per-configuration boxes in photo pixels
    """
    net = weight_files.load(weight_path)
    dataset = Dataset(list(records))
    specs = tuple(dict.fromkeys(s for c in configs for s in c.specs))
    ensure_maps(weight_path, net, dataset, specs, cache_root, jobs, batch_size, progress)
    maps, logits = load_maps(net, dataset, specs, cache_root)
    prep = net.preprocessing
    gt_input = [photo_to_input(r.boxes, (r.width, r.height), prep) for r in dataset.records]
    boxes = predict_boxes(configs, maps, gt_input, prep.input_size, k, seed)
    predicted = logits.argmax(axis=1)
    results = ResultsFile(results_path)
    photo_boxes = {}
    try:
        for name, input_boxes in boxes.items():
            photo_boxes[name] = []
            for record, box, cls in zip(dataset.records, input_boxes, predicted):
                box = input_to_photo(box, (record.width, record.height), prep)[0]
                photo_boxes[name].append(box)
                results.add(name, record, int(cls), box, float(iou(box, record.boxes).max()))
    finally:
        results.close()
    summary = summarize(read_results(results_path), list(boxes), [r.image_id for r in dataset.records])
    return summary, photo_boxes
