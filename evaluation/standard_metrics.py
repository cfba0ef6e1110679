"""The field's standard metrics for every configuration and map kind of an evaluation.

``sensloc evaluate ... --metrics maxboxacc,pointing,...`` scores, besides CorLoc, the *score
map* of every configuration (the map its box is cut from) and every map kind the configurations
read ("method: ..." rows, the raw maps):

- ``maxboxacc``, ``maxboxaccv2``, ``loc`` (GT-known and top-1 Loc at MaxBoxAcc's threshold),
  ``pointing``, ``energy``: :mod:`sensloc.localize.wsol_metrics`, on all images;
- ``deletion``, ``insertion``, ``sanity``: :mod:`sensloc.evaluation.faithfulness`, on a seeded
  subset of ``metric_images`` images (they run the network tens of times per image).

A configuration's score map: the protocol's ``heat`` (threshold and Khan protocols, ``mix``),
its ``objectness`` map (``best``), or, for a regression, which has no map of its own, the raw
map it reads. A protocol whose map depends on what it fitted (``mix``, ``best``) gives each
image the map of the protocol fitted without the image's fold, and MaxBoxAcc's threshold is
chosen on the training folds (the folds of the evaluation, :func:`sensloc.localize.folds.folds`),
on the training images' maps from the same fitted protocol. The baselines have no map.
"""
from dataclasses import dataclass, field

import numpy as np

from sensloc.data import images
from sensloc.evaluation import faithfulness
from sensloc.localize import wsol_metrics as wsol
from sensloc.localize.folds import folds

#: The names ``--metrics`` accepts (``all``: every one).
METRIC_NAMES = ("maxboxacc", "maxboxaccv2", "loc", "pointing", "energy", "deletion", "insertion",
                "sanity")
#: The ones that run the network.
NETWORK_METRICS = ("deletion", "insertion", "sanity")
#: Table columns: (key in a row, header), shown when the row has the key.
COLUMNS = (("maxboxacc", "MaxBoxAcc (CV)"), ("maxboxacc_reference", "MaxBoxAcc (max on all)"),
           ("maxboxaccv2", "MaxBoxAccV2 (CV)"), ("gt_known_loc", "GT-known Loc"),
           ("top1_loc", "top-1 Loc"), ("pointing", "pointing game"),
           ("energy", "energy pointing"), ("deletion", "deletion AUC"),
           ("insertion", "insertion AUC"), ("sanity", "sanity rho"))


def parse_metrics(text):
    """``"maxboxacc,pointing"`` or ``"all"`` -> a tuple of names in :data:`METRIC_NAMES` order."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if "all" in names:
        return METRIC_NAMES
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown metric {', '.join(unknown) or repr(text)}; known: "
                         f"{', '.join(METRIC_NAMES)}, all")
    return tuple(n for n in METRIC_NAMES if n in names)


def score_map(protocol, maps):
    """The (N, H, W) map a fitted protocol boxes; None for a protocol that reads no map."""
    if not protocol.map_specs:
        return None
    if hasattr(protocol, "objectness"):
        return protocol.objectness(maps)
    if hasattr(protocol, "heat"):
        return protocol.heat(maps)
    return maps[protocol.map_specs[0]]  # a regression: the raw map it reads


@dataclass
class MetricRows:
    """Per row name: {metric key: value}; ``curves`` keeps what the figures draw."""
    rows: dict
    images: int
    network_images: int
    curves: dict = field(default_factory=dict)

    def markdown(self):
        keys = [(k, h) for k, h in COLUMNS if any(k in r for r in self.rows.values())]
        lines = ["| map | " + " | ".join(h for _, h in keys) + " |",
                 "|---|" + "---:|" * len(keys)]
        for name, row in self.rows.items():
            cells = [_cell(k, row.get(k)) for k, _ in keys]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        note = (f"\nmap metrics on {self.images} photos; deletion, insertion and sanity on "
                f"{self.network_images}" if self.network_images else "")
        return "\n".join(lines) + note

    def to_json(self):
        curves = {name: {k: v for k, v in c.items() if k != "hits"}
                  for name, c in self.curves.items()}
        return {"images": self.images, "network_images": self.network_images, "rows": self.rows,
                "curves": curves}


def _cell(key, value):
    if value is None:
        return ""
    if key in ("deletion", "insertion", "sanity"):
        return f"{value:.3f}"
    return f"{100 * value:.1f}%"


def _fold_maps(config, fitted, maps, k):
    """One score map (N, H, W) per fold: the same array k times when the map does not depend
    on the fit, else each fold's fitted protocol applied to every image. None: no map."""
    if config.protocol is not None:
        heat = score_map(config.protocol, maps)
        return None if heat is None else [heat] * k
    fresh = config.factory()
    if not fresh.map_specs:
        return None
    if getattr(fresh, "fitted", True):
        return [score_map(fresh, maps)] * k  # the map needs no fit (threshold, Khan, regression)
    needed = {s: maps[s] for s in fresh.map_specs}
    return [score_map(p, needed) for p in fitted[config.name]]


def map_rows(configs, fitted, maps, k, seed):
    """Yield (row name, k fold maps, or a function giving them) for the configurations with
    a map, then the map kinds; lazily, so that one row's fold maps are in memory at a time."""
    for config in configs:
        yield config.name, lambda config=config: _fold_maps(config, fitted, maps, k)
    for spec in maps:
        if spec.method != "activations":
            yield f"method: {spec.name}", lambda spec=spec: [maps[spec]] * k


def box_metrics(fold_maps, fold, gt_input, photo_boxes, photo_sizes, prep, predicted, classes,
                wanted, sweep):
    """MaxBoxAcc V1/V2, Loc, pointing and energy of one row; returns (row dict, curves, OOF map).

    ``fold_maps`` holds k (N, H, W) maps (repeats of one array when the map needs no fit);
    image ``n`` is scored on ``fold_maps[fold[n]]``, its threshold chosen on the other folds'
    images of the same map. ``sweep(heat)`` is :func:`~sensloc.localize.wsol_metrics.threshold_ious`
    against the ground truth in input pixels (remembered for the cached maps).
    """
    row, curves = {}, {}
    n = len(gt_input)
    outside = np.empty(fold_maps[0].shape, np.float32)  # each image's out-of-fold map
    hits = {"v1": [], "v2": []}  # per fold (N, T, L): the fold's map on every image
    for f, heat in enumerate(fold_maps):
        if f == 0 or heat is not fold_maps[f - 1]:
            largest, every = sweep(heat)
        outside[fold == f] = heat[fold == f]
        hits["v1"].append(wsol.levels_hit(largest, wsol.IOU_V1))
        hits["v2"].append(wsol.levels_hit(every, wsol.IOU_V2))
    v1, _ = wsol.cross_validated_hits(hits["v1"], fold)
    v2, _ = wsol.cross_validated_hits(hits["v2"], fold)
    if "maxboxacc" in wanted or "loc" in wanted:
        row["maxboxacc"] = float(v1.mean())
        # The reference's number: the best threshold on all images, out-of-fold maps.
        oof_hits = np.stack([hits["v1"][fold[i]][i] for i in range(n)])
        row["maxboxacc_reference"] = wsol.max_box_accuracy(oof_hits)[0]
        curves["maxboxacc_by_threshold"] = oof_hits[:, :, 0].mean(axis=0).tolist()
    if "maxboxaccv2" in wanted:
        row["maxboxaccv2"] = float(v2.mean(axis=0).mean())
        row["maxboxaccv2_per_iou"] = {str(l): float(v) for l, v in zip(wsol.IOU_V2, v2.mean(0))}
    if "loc" in wanted:
        row["gt_known_loc"] = float(v1[:, 0].mean())
        row["top1_loc"] = float((v1[:, 0] & (predicted == classes)).mean())
    if "pointing" in wanted:
        points = wsol.peak_points(outside)
        photo_points = np.array([prep.input_to_photo(np.r_[p, p], size)[0, :2]
                                 for p, size in zip(points, photo_sizes)])
        found = wsol.pointing_hits(photo_points, photo_boxes)
        row["pointing"] = wsol.class_mean_accuracy(found, classes)
        row["pointing_all_images"] = float(found.mean())
    if "energy" in wanted:
        row["energy"] = float(wsol.energy_in_boxes(outside, gt_input).mean())
    curves["hits"] = v1[:, 0]  # per image, for the figures
    return row, curves, outside


def subset(n, count, seed):
    """The first ``count`` images of a seeded permutation of ``n``, sorted (the network metrics'
    images; the same for every row)."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:min(count, n)])


def standard_metrics(net, records, configs, fitted, maps, logits, gt_input, k, seed, wanted,
                     metric_images=32, progress=True):
    """Every wanted metric for every configuration with a map and every map kind.

    Parameters
    ----------
    net : nets.Network
    records : list of ImageRecord
    configs : list of runner.Config
    fitted : {config name: list of k fitted protocols}, from the cross-validation
    maps : {MapSpec: (N, H, W)}, the cached maps of the true classes
    logits : (N, K), the cached logits
    gt_input : N arrays (K_n, 4), ground truth in input pixels
    k, seed : the evaluation's folds (``k = 0``: 5 folds for MaxBoxAcc's threshold)
    wanted : tuple of names from :data:`METRIC_NAMES`
    metric_images : int, images for deletion, insertion and sanity

    Returns
    -------
    MetricRows
    """
    from tqdm import tqdm
    n, k = len(records), (k or 5)
    fold = folds(n, k, seed)
    prep = net.preprocessing
    classes = np.array([r.class_index for r in records])
    predicted = net.dataset_classes(logits.argmax(axis=1))
    targets = classes + net.class_offset  # the network's outputs of the true classes
    photo_boxes = [r.boxes for r in records]
    photo_sizes = [(r.width, r.height) for r in records]
    chosen = subset(n, metric_images, seed) if set(wanted) & set(NETWORK_METRICS) else []
    x = images.load_batch([records[i].path for i in chosen], prep) if len(chosen) else None
    result = MetricRows({}, n, len(chosen))
    rows = list(map_rows(configs, fitted, maps, k, seed))
    # A cached map read by several rows (gradient: its preset, ebrahimpour's regression, its
    # method row) is swept once; a sweep costs ~60 ms per map.
    cached, sweeps = {id(m): spec for spec, m in maps.items()}, {}

    def sweep(heat):
        spec = cached.get(id(heat))
        if spec is None:
            return wsol.threshold_ious(heat, gt_input)
        if spec not in sweeps:
            sweeps[spec] = wsol.threshold_ious(heat, gt_input)
        return sweeps[spec]

    done = {}  # rows reading the very same cached map (gradient, ebrahimpour) share results
    for name, make_maps in tqdm(rows, desc="metrics", disable=not progress):
        fold_maps = make_maps()
        if fold_maps is None:
            continue
        same = tuple(cached.get(id(m)) for m in fold_maps)
        if None not in same and same in done:
            result.rows[name] = dict(result.rows[done[same]])
            result.curves[name] = result.curves[done[same]]
            continue
        done[same] = name
        row, curves, outside = box_metrics(fold_maps, fold, gt_input, photo_boxes, photo_sizes,
                                           prep, predicted, classes, wanted, sweep)
        for mode in ("deletion", "insertion"):
            if mode in wanted:
                curve = faithfulness.causal_curves(net, x, outside[chosen], targets[chosen], mode)
                row[mode] = float(faithfulness.curve_auc(curve).mean())
                curves[mode] = curve.mean(axis=0).tolist()
        result.rows[name] = row
        result.curves[name] = curves
    if "sanity" in wanted:
        for spec in maps:
            if spec.method == "activations":
                continue
            blocks, rho = faithfulness.cascading_randomization(
                net, spec, x, targets[chosen], seed=seed, original=maps[spec][chosen])
            row = result.rows[f"method: {spec.name}"]
            row["sanity"] = float(rho.mean())
            row["sanity_by_block"] = dict(zip(blocks, rho.mean(axis=1).round(4).tolist()))
    return result
