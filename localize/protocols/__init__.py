"""Box protocols: from heat maps to one box per image, fitted on a training set.

Every protocol has the same two steps::

    protocol.fit(maps, gt_boxes)     # maps: {MapSpec: (N, H, W)}; gt_boxes: N arrays (K_n, 4)
    boxes = protocol.predict(maps)   # (N, 4)

All boxes here live in the network input's pixels (``H x W``, the maps' resolution), in the
convention of :mod:`sensloc.localize.boxes`; the evaluation maps them to the photo's pixels. Fitting
chooses what the protocol leaves open (a threshold, regression weights, a mean box size) and is
cheap: the maps are computed once, elsewhere.

Protocols
---------
:class:`ThresholdBoxes`
    threshold one map at a fraction of its maximum, box the largest 8-connected component or
    the union of hot pixels (Simonyan et al.'s protocol); the fraction is tuned on the training
    set unless fixed.
:class:`KhanBoxes`
    Khan et al.'s recipe: two maps, each made positive, normalized, smoothed, normalized again,
    cut below its mean, down-weighted near the border, then mixed and boxed.
:class:`RegressionBoxes`
    Ebrahimpour & Noelle's closed-form least-squares map from grid-averaged maps to box corners.
:class:`CenterBox`, :class:`WholeImage`
    the baselines: the training set's mean box size centred in the image, and the whole image.
"""
import json

import numpy as np

from sensloc.saliency import postprocess

from sensloc.localize.boxes import boxes_from_heatmap, iou
from sensloc.localize.baselines import center_box, mean_box_size
from sensloc.saliency.maps import MapSpec
from sensloc.localize.regression import BoxRegressor

#: Threshold fractions tried when tuning (fractions of each map's maximum).
FRACTIONS = tuple(np.round(np.arange(0.02, 0.81, 0.02), 2))
#: Ridge parameters tried by the regression's inner cross-validation.
LAMBDAS = tuple(10.0 ** np.arange(-6, 3))


def hit_rate(pred_boxes, gt_boxes, threshold=0.5):
    """CorLoc of predicted (N, 4) boxes against N arrays of ground-truth boxes (any may match)."""
    return float(np.mean([iou(p, g).max() >= threshold for p, g in zip(pred_boxes, gt_boxes)]))


class Protocol:
    """Interface: ``map_specs``, ``fit``, ``predict``, ``params`` (JSON-able) and ``kind``."""

    kind = "protocol"
    map_specs = ()

    def fit(self, maps, gt_boxes):
        return self

    def predict(self, maps):
        raise NotImplementedError

    def params(self):
        raise NotImplementedError

    def describe(self):
        return f"{self.kind}({json.dumps(self.params(), sort_keys=True)})"


class ThresholdBoxes(Protocol):
    """Box the pixels above ``fraction * max`` of one map.

    Parameters
    ----------
    spec : MapSpec
    mode : {"union", "largest"}
    fraction : float, optional
        Fixed threshold; ``None`` tunes it on the training set over :data:`FRACTIONS`
        (the best CorLoc, the smallest fraction among ties).
    """

    kind = "threshold"

    def __init__(self, spec, mode="union", fraction=None):
        self.spec, self.mode, self.fraction = spec, mode, fraction
        self.map_specs = (spec,)
        self.scores = None

    def heat(self, maps):
        return maps[self.spec]

    def fit(self, maps, gt_boxes):
        if self.fraction is None:
            heat = self.heat(maps)
            self.scores = [hit_rate(boxes_from_heatmap(heat, t, self.mode), gt_boxes) for t in FRACTIONS]
            self.fraction = float(FRACTIONS[int(np.argmax(self.scores))])
        return self

    def predict(self, maps):
        if self.fraction is None:
            raise ValueError(f"{self.describe()} has no threshold: fit it or give fraction=")
        return boxes_from_heatmap(self.heat(maps), self.fraction, self.mode)

    def params(self):
        return {"spec": self.spec.to_json(), "mode": self.mode, "fraction": self.fraction}

    @classmethod
    def from_params(cls, p):
        return cls(MapSpec.from_json(p["spec"]), p["mode"], p["fraction"])


def khan_heat(heat, positive=True, sigma=4.0, border_width=0.1, border_weight=0.5):
    """One map of Khan et al.'s recipe, (N, H, W) -> (N, H, W).

    ``m <- max(m, 0)`` (if ``positive``), ``m <- m / max m``, Gaussian smoothing by ``sigma``
    pixels, ``m <- m / max m``, values below the map's own mean set to 0, then multiplied by a
    border mask rising linearly from ``border_weight`` at the edge to 1 at ``border_width`` of
    the side.
    """
    m = postprocess.positive_part(heat) if positive else heat
    m = postprocess.normalize(postprocess.gaussian_smooth(postprocess.normalize(m), sigma))
    m = postprocess.zero_below_mean(m)
    return postprocess.apply_border_mask(m, border_width, border_weight)


class KhanBoxes(ThresholdBoxes):
    """Khan et al.: two maps through :func:`khan_heat`, mixed, then thresholded and boxed.

    Parameters
    ----------
    spec_a, spec_b : MapSpec
        E.g. DeepLIFT (channel sum, positive part taken here) and guided backprop
        (max of absolute values over channels).
    mix : {"geometric_mean", "product", "weighted_sum"}
    sigma, border_width, border_weight : see :func:`khan_heat`
    mode, fraction : see :class:`ThresholdBoxes`
    """

    kind = "khan"

    def __init__(self, spec_a, spec_b, mix="geometric_mean", sigma=4.0, border_width=0.1,
                 border_weight=0.5, mode="union", fraction=None):
        super().__init__(spec_a, mode, fraction)
        self.spec_b, self.mix = spec_b, mix
        self.sigma, self.border_width, self.border_weight = sigma, border_width, border_weight
        self.map_specs = (spec_a, spec_b)

    def heat(self, maps):
        a, b = (khan_heat(maps[s], True, self.sigma, self.border_width, self.border_weight)
                for s in self.map_specs)
        return postprocess.mix(a, b, self.mix)

    def params(self):
        return {"spec_a": self.spec.to_json(), "spec_b": self.spec_b.to_json(), "mix": self.mix,
                "sigma": self.sigma, "border_width": self.border_width,
                "border_weight": self.border_weight, "mode": self.mode, "fraction": self.fraction}

    @classmethod
    def from_params(cls, p):
        return cls(MapSpec.from_json(p["spec_a"]), MapSpec.from_json(p["spec_b"]), p["mix"],
                   p["sigma"], p["border_width"], p["border_weight"], p["mode"], p["fraction"])


class RegressionBoxes(Protocol):
    """Ebrahimpour & Noelle: ridge regression from n x n grid averages of maps to box corners.

    ``W = (X^T X + lambda I')^-1 X^T Y`` (:func:`sensloc.localize.regression.fit_ridge`), with lambda
    chosen by k-fold cross-validation inside the training set (:data:`LAMBDAS`).

    Parameters
    ----------
    specs : sequence of MapSpec
        One or several map kinds; their features are concatenated.
    grid_sizes : int or tuple of int
    target : {"largest", "hull"}
        Which box stands for an image with several ground-truth boxes.
    """

    kind = "regression"

    def __init__(self, specs, grid_sizes=(16,), target="largest", k=5, regressor=None):
        self.map_specs = tuple(specs)
        self.grid_sizes = (grid_sizes,) if np.isscalar(grid_sizes) else tuple(grid_sizes)
        self.target, self.k = target, k
        self.regressor = regressor

    def _maps(self, maps):
        return [maps[s] for s in self.map_specs]

    def fit(self, maps, gt_boxes):
        kinds = self._maps(maps)
        size = np.array([kinds[0].shape[2], kinds[0].shape[1]], np.float64)
        self.regressor = BoxRegressor(self.grid_sizes, target=self.target).fit(
            kinds, gt_boxes, np.tile(size, (len(gt_boxes), 1)), lambdas=LAMBDAS, k=self.k)
        return self

    def predict(self, maps):
        if self.regressor is None:
            raise ValueError("the regression is not fitted")
        kinds = self._maps(maps)
        size = np.array([kinds[0].shape[2], kinds[0].shape[1]], np.float64)
        return self.regressor.predict(kinds, np.tile(size, (len(kinds[0]), 1)))

    def params(self):
        p = {"specs": [s.to_json() for s in self.map_specs], "grid_sizes": list(self.grid_sizes),
             "target": self.target, "k": self.k}
        if self.regressor is not None:
            state = self.regressor.to_dict()
            p.update(lam=state["lam"], weights=state["weights"].tolist())
        return p

    @classmethod
    def from_params(cls, p):
        regressor = None
        if "weights" in p:
            regressor = BoxRegressor.from_dict({
                "grid_sizes": p["grid_sizes"], "lam": p["lam"], "target": p["target"],
                "n_maps": len(p["specs"]), "weights": np.array(p["weights"])})
        return cls([MapSpec.from_json(s) for s in p["specs"]], p["grid_sizes"], p["target"],
                   p["k"], regressor)


class CenterBox(Protocol):
    """Ebrahimpour & Noelle's baseline: the training set's mean box size, centred."""

    kind = "center"

    def __init__(self, target="largest", size_fraction=None):
        self.target, self.size_fraction = target, size_fraction

    def fit(self, maps, gt_boxes, input_hw=None):
        h, w = input_hw if input_hw is not None else next(iter(maps.values())).shape[1:]
        self.size_fraction = mean_box_size(gt_boxes, np.tile([w, h], (len(gt_boxes), 1)),
                                           self.target).tolist()
        return self

    def predict(self, maps, count=None, input_hw=None):
        h, w = input_hw if input_hw is not None else next(iter(maps.values())).shape[1:]
        count = count if count is not None else len(next(iter(maps.values())))
        return np.tile(center_box([w, h], self.size_fraction), (count, 1))

    def params(self):
        return {"target": self.target, "size_fraction": self.size_fraction}

    @classmethod
    def from_params(cls, p):
        return cls(p["target"], p["size_fraction"])


class WholeImage(Protocol):
    """The whole image as the box: what a localizer must beat to have learned anything."""

    kind = "whole_image"

    def predict(self, maps, count=None, input_hw=None):
        h, w = input_hw if input_hw is not None else next(iter(maps.values())).shape[1:]
        count = count if count is not None else len(next(iter(maps.values())))
        return np.tile([0.0, 0.0, float(w), float(h)], (count, 1))

    def params(self):
        return {}

    @classmethod
    def from_params(cls, p):
        return cls()


PROTOCOLS = {cls.kind: cls for cls in (ThresholdBoxes, KhanBoxes, RegressionBoxes, CenterBox,
                                       WholeImage)}


def protocol_from_params(kind, params):
    if kind == "best":  # defined in sensloc.localize.protocols.mix and .objectness, which build on this module
        from sensloc.localize.protocols.mix import BestBoxes
        return BestBoxes.from_params(params)
    if kind == "objectness":
        from sensloc.localize.protocols.objectness import ObjectnessBoxes
        return ObjectnessBoxes.from_params(params)
    if kind not in PROTOCOLS:
        raise ValueError(f"unknown box protocol {kind!r}; known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[kind].from_params(params)


def folds(n, k, seed=0):
    """A fold index in [0, k) for each of n images: a seeded shuffle cut in k near-equal parts."""
    if not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= k <= number of images ({n}), got k={k}")
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, np.int64)
    assignment[order] = np.arange(n) % k
    return assignment


def cross_validated_boxes(make_protocol, maps, gt_boxes, k=5, seed=0):
    """Boxes for every image from a protocol fitted on the other folds only.

    Parameters
    ----------
    make_protocol : callable
        Returns a fresh, unfitted protocol.
    maps : {MapSpec: (N, H, W)}
    gt_boxes : N arrays (K_n, 4), input pixels

    Returns
    -------
    boxes : (N, 4)
    fitted : list of the k fitted protocols
    """
    n = len(gt_boxes)
    fold = folds(n, k, seed)
    boxes = np.zeros((n, 4))
    fitted = []
    for f in range(k):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        protocol = make_protocol()
        protocol.fit({s: m[train] for s, m in maps.items()}, [gt_boxes[i] for i in train])
        boxes[test] = protocol.predict({s: m[test] for s, m in maps.items()})
        fitted.append(protocol)
    return boxes, fitted


# ------------------------------------------------------------------------------------ presets

def last_spatial_layer(architecture):
    """The layer whose output Grad-CAM and neuron selection read by default: the last
    convolutional feature map before the classifier (VGG16's ``relu5_3``)."""
    if architecture.startswith("squeezenet"):
        return "fire9"
    return {"vgg_small": "relu4_2", "vgg11": "relu5_2", "vgg13": "relu5_2",
            "vgg19": "relu5_4"}.get(architecture, "relu5_3")


def preset(name, architecture):
    """A fresh, unfitted protocol by preset name (see :data:`PRESETS`)."""
    layer = last_spatial_layer(architecture)
    gradient = MapSpec.make("gradient", "max_abs")
    if name == "ebrahimpour":
        return RegressionBoxes([gradient], grid_sizes=16)
    if name == "khan":
        return KhanBoxes(MapSpec.make("deeplift", "sum", reference="zero"),
                         MapSpec.make("guided", "max_abs"))
    if name == "dwaraknath":
        # k = 20: the top 5 neurons cluster on the most discriminative part and box only it
        # (35.5% CV CorLoc on the development photos, against 55.3% with 20).
        return ThresholdBoxes(MapSpec.make("neuron_selection", "max_abs", layer=layer, k=20),
                              mode="union")
    if name == "gradient":
        return ThresholdBoxes(gradient, mode="union")
    if name == "grad_cam":
        return ThresholdBoxes(MapSpec.make("grad_cam", layer=layer), mode="largest")
    if name == "mix":
        from sensloc.localize.protocols.mix import best_protocol
        return best_protocol(architecture)
    if name == "best":
        from sensloc.localize.protocols.objectness import objectness_protocol
        return objectness_protocol(architecture)
    raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")


#: Preset names and what they are.
PRESETS = {
    "ebrahimpour": "vanilla sensitivity map (max |grad| over channels), 16x16 grid, ridge regression",
    "khan": "DeepLIFT (zero reference) x guided backprop: smooth, cut, border mask, geometric mean, union box",
    "dwaraknath": "top-20 neurons of the last spatial layer by activation x gradient, guided backprop, union box",
    "gradient": "vanilla sensitivity map, union box at a tuned threshold",
    "grad_cam": "Grad-CAM at the last spatial layer, largest component at a tuned threshold",
    "mix": "DeepLIFT (blur reference), |guided|, |gradient| and Grad-CAM through Khan's recipe, "
           "geometric mean, border mask, union box scaled about its centre; all parameters "
           "chosen inside the training data (localize/best.py)",
    "best": "objectness map by cell-wise ridge regression (closed form) from the last layers' "
            "activations and the mix's four saliency maps to ground-truth box coverage, then "
            "boxed like mix; lambda and the box parameters chosen inside the training data "
            "(localize/objectness.py)",
}
