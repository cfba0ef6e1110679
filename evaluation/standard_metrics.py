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
from sensloc.evaluation.networks import network_cache
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
    """One score map (B, H, W) of a batch per fold: the same array k times when the map does
    not depend on the fit, else each fold's fitted protocol applied to the batch. None: no map."""
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


def map_rows(configs, fitted, specs, k):
    """(row name, function of a batch's maps {spec: (B, H, W)} giving its k fold maps or None):
    the configurations, then the map kinds except features (activations)."""
    rows = [(c.name, lambda maps, c=c: _fold_maps(c, fitted, maps, k)) for c in configs]
    return rows + [(f"method: {s.name}", lambda maps, s=s: [maps[s]] * k)
                   for s in specs if not s.is_features]


#: MaxBoxAcc's IoU levels: V1 (0.5) and V2 (0.3, 0.5, 0.7).
LEVELS = {"v1": wsol.IOU_V1, "v2": wsol.IOU_V2}


class _BoxScores:
    """One row's per-image records, filled a batch of maps at a time (nothing map-sized).

    MaxBoxAcc with its threshold chosen on the training folds scores image ``n`` of fold ``f``
    on map ``f`` (the map of the protocol fitted without fold ``f``) at
    ``t_f = argmax_t sum_{m not in f} hit_f[m, t]``. So this keeps, per fold, the hits of its
    map summed over the images outside the fold, ``outside[v]`` (k, T, L), and per image the
    hits of its own fold's map at every threshold, ``own[v]`` (N, T/8, L) bits; the
    out-of-fold map's peak (pointing) and energy per image; the out-of-fold maps of the
    network metrics' few images (deletion, insertion).
    """

    def __init__(self, n, k, chosen_count, shape_hw):
        thresholds = len(wsol.CAM_THRESHOLDS)
        self.outside = {v: np.zeros((k, thresholds, len(l)), np.int64) for v, l in LEVELS.items()}
        self.own = {v: np.zeros((n, (thresholds + 7) // 8, len(l)), np.uint8)
                    for v, l in LEVELS.items()}
        self.pointing = np.zeros(n, bool)
        self.energy = np.zeros(n)
        self.chosen_maps = np.zeros((chosen_count, *shape_hw), np.float32)

    def add(self, batch, fold_maps, here, gt_input, sweep, point_hits, chosen_at):
        """Record a batch: images ``batch`` (slice), ``fold_maps`` k (B, H, W) maps, ``here``
        (B,) their folds, ``sweep(heat)`` the threshold IoUs, ``point_hits(points)`` the
        pointing game's hits, ``chosen_at`` (positions in the batch, rows of chosen maps)."""
        own = {v: np.zeros((len(here), len(wsol.CAM_THRESHOLDS), len(l)), bool)
               for v, l in LEVELS.items()}
        outside_map = np.empty(fold_maps[0].shape, np.float32)
        for f, heat in enumerate(fold_maps):
            if f == 0 or heat is not fold_maps[f - 1]:
                largest, every = sweep(heat)
                hits = {"v1": wsol.levels_hit(largest, LEVELS["v1"]),
                        "v2": wsol.levels_hit(every, LEVELS["v2"])}
            for v, h in hits.items():
                self.outside[v][f] += h[here != f].sum(axis=0)
                own[v][here == f] = h[here == f]
            outside_map[here == f] = heat[here == f]
        for v in LEVELS:
            self.own[v][batch] = np.packbits(own[v], axis=1)
        self.pointing[batch] = point_hits(wsol.peak_points(outside_map))
        self.energy[batch] = wsol.energy_in_boxes(outside_map, gt_input)
        positions, rows = chosen_at
        self.chosen_maps[rows] = outside_map[positions]

    def hits(self, v, fold):
        """(cross-validated (N, L), own-fold (N, T, L)) hits, as
        :func:`~sensloc.localize.wsol_metrics.cross_validated_hits` gives them."""
        own = np.unpackbits(self.own[v], axis=1, count=len(wsol.CAM_THRESHOLDS)).astype(bool)
        best = self.outside[v].argmax(axis=1)  # (k, L): the first best threshold on ties
        levels = np.arange(own.shape[2])
        return own[np.arange(len(own))[:, None], best[fold], levels[None]], own

    def row(self, fold, predicted, classes, wanted):
        """The metrics of this row {key: value} and its curves."""
        row, curves = {}, {}
        v1, own = self.hits("v1", fold)
        if "maxboxacc" in wanted or "loc" in wanted:
            row["maxboxacc"] = float(v1.mean())
            # The reference's number: the best threshold on all images, out-of-fold maps.
            row["maxboxacc_reference"] = wsol.max_box_accuracy(own)[0]
            curves["maxboxacc_by_threshold"] = own[:, :, 0].mean(axis=0).tolist()
        if "maxboxaccv2" in wanted:
            v2, _ = self.hits("v2", fold)
            row["maxboxaccv2"] = float(v2.mean(axis=0).mean())
            row["maxboxaccv2_per_iou"] = {str(l): float(v)
                                          for l, v in zip(LEVELS["v2"], v2.mean(0))}
        if "loc" in wanted:
            row["gt_known_loc"] = float(v1[:, 0].mean())
            row["top1_loc"] = float((v1[:, 0] & (predicted == classes)).mean())
        if "pointing" in wanted:
            row["pointing"] = wsol.class_mean_accuracy(self.pointing, classes)
            row["pointing_all_images"] = float(self.pointing.mean())
        if "energy" in wanted:
            row["energy"] = float(self.energy.mean())
        curves["hits"] = v1[:, 0]  # per image, for the figures
        return row, curves


def subset(n, count, seed):
    """The first ``count`` images of a seeded permutation of ``n``, sorted (the network metrics'
    images; the same for every row)."""
    return np.sort(np.random.default_rng(seed).permutation(n)[:min(count, n)])


#: Images whose maps are in memory at a time while the metrics are scored.
METRICS_BATCH = 64


def standard_metrics(net, dataset, cache_root, configs, fitted, predicted, gt_input, k, seed,
                     wanted, metric_images=32, progress=True, batch_size=METRICS_BATCH):
    """Every wanted metric for every configuration with a map and every map kind.

    The cached maps are read ``batch_size`` images at a time and reduced to small per-image
    records (:class:`_BoxScores`), so memory does not hold a dataset of maps; the numbers do
    not depend on the batch size.

    Parameters
    ----------
    net : nets.Network
    dataset : evaluation.maps.Dataset
    cache_root : path, the map cache holding every map the configurations read
    configs : list of runner.Config
    fitted : {config name: list of k fitted protocols}, from the cross-validation
    predicted : (N,) int array, the network's top-1 classes numbered as the dataset's
    gt_input : N arrays (K_n, 4), ground truth in input pixels
    k, seed : the evaluation's folds (``k = 0``: 5 folds for MaxBoxAcc's threshold)
    wanted : tuple of names from :data:`METRIC_NAMES`
    metric_images : int, images for deletion, insertion and sanity

    Returns
    -------
    MetricRows
    """
    from tqdm import tqdm
    dataset = dataset.for_network(net)
    records, digests = dataset.records, dataset.digests
    specs = tuple(dict.fromkeys(s for c in configs for s in c.specs))
    cache = network_cache(cache_root, net, specs)
    n, k = len(records), (k or 5)
    fold = folds(n, k, seed)
    prep = net.preprocessing
    classes = np.array([r.class_index for r in records])
    targets = np.array([dataset.target(i) for i in range(n)])  # the true classes' outputs
    chosen = subset(n, metric_images, seed) if set(wanted) & set(NETWORK_METRICS) else \
        np.zeros(0, np.int64)
    rows = map_rows(configs, fitted, specs, k)
    scores, same_as = {}, {}  # rows reading the very same cached map share one record
    for start in tqdm(range(0, n, batch_size), desc="metrics", disable=not progress):
        batch = slice(start, min(start + batch_size, n))
        maps = cache.load_maps(specs, digests[batch], targets[batch])
        gt = gt_input[batch]
        cached, sweeps = {id(m): s for s, m in maps.items()}, {}

        def sweep(heat):  # a cached map read by several rows is swept once (~60 ms a map)
            spec = cached.get(id(heat))
            if spec is None:
                return wsol.threshold_ious(heat, gt)
            if spec not in sweeps:
                sweeps[spec] = wsol.threshold_ious(heat, gt)
            return sweeps[spec]

        def point_hits(points):  # the peak in photo pixels, against the photo's boxes
            photo = [prep.input_to_photo(np.r_[p, p], (r.width, r.height))[0, :2]
                     for p, r in zip(points, records[batch])]
            return wsol.pointing_hits(np.array(photo), [r.boxes for r in records[batch]])

        inside = np.flatnonzero((chosen >= batch.start) & (chosen < batch.stop))
        chosen_at = (chosen[inside] - batch.start, inside)
        shared = {}
        for name, make_maps in rows:
            fold_maps = make_maps(maps)
            if fold_maps is None:
                continue
            same = tuple(cached.get(id(m)) for m in fold_maps)
            if None not in same and same in shared:
                same_as[name] = shared[same]
                continue
            shared[same] = name
            if name not in scores:
                scores[name] = _BoxScores(n, k, len(chosen), fold_maps[0].shape[1:])
            scores[name].add(batch, fold_maps, fold[batch], gt, sweep, point_hits, chosen_at)
    x = images.load_batch([records[i].path for i in chosen], prep) if len(chosen) else None
    result = MetricRows({}, n, len(chosen))
    for name, _ in rows:
        if name in same_as:
            result.rows[name] = dict(result.rows[same_as[name]])
            result.curves[name] = result.curves[same_as[name]]
            continue
        if name not in scores:
            continue
        row, curves = scores[name].row(fold, predicted, classes, wanted)
        for mode in ("deletion", "insertion"):
            if mode in wanted:
                curve = faithfulness.causal_curves(net, x, scores[name].chosen_maps,
                                                   targets[chosen], mode)
                row[mode] = float(faithfulness.curve_auc(curve).mean())
                curves[mode] = curve.mean(axis=0).tolist()
        result.rows[name] = row
        result.curves[name] = curves
    if "sanity" in wanted:
        for spec in specs:
            if spec.is_features or not cache.owns(spec):
                continue  # features, or another network's map (the cascade randomizes net)
            original = cache.load_maps([spec], [digests[i] for i in chosen], targets[chosen])
            blocks, rho = faithfulness.cascading_randomization(
                net, spec, x, targets[chosen], seed=seed, original=original[spec])
            row = result.rows[f"method: {spec.name}"]
            row["sanity"] = float(rho.mean())
            row["sanity_by_block"] = dict(zip(blocks, rho.mean(axis=1).round(4).tolist()))
    return result
