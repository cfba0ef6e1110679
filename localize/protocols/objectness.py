"""The ``best`` preset: an objectness map learned in closed form, then boxed by Khan's recipe.

Ebrahimpour & Noelle regress the four box corners on a saliency map. Here the least-squares
regression moves down to the cells of the network's last feature grid (13 x 13 for
SqueezeNet 1.0, 14 x 14 for VGG16) and predicts, for each cell, how much of it lies inside
the object. For cell ``c`` of image ``n``::

    phi_nc = [sqrt(A^1_nc), ..., sqrt(A^L_nc), s^1_nc, ..., s^K_nc]          (D features)
    o_nc   = [(phi_nc - mu) / sd, 1] w

with ``A^l_nc`` the activations (all channels) of layer ``l`` at that cell, and ``s^k_nc`` the
mean over the cell of saliency map ``k`` after Khan's recipe (:func:`sensloc.localize.protocols.mix.recipe`:
positive part, normalized, smoothed, normalized, cut below its mean). The activations say
*what* is at the cell (an object part or background texture, whatever the class), the
saliency maps *whether the explained class* uses it. ``mu`` and ``sd`` standardize each
feature over the training cells, and ``w`` minimizes the ridge objective

    sum_nc (o_nc - t_nc)^2 + lam ||w_without_bias||^2,

``t_nc`` the fraction of the cell covered by the image's ground-truth boxes, solved exactly
from the normal equations (:func:`sensloc.localize.regression.solve_normal_equations`). ``lam`` is
chosen by k-fold cross-validation inside the training images (squared error of the cells).

The map ``o`` (clipped at 0, upsampled bilinearly to the input) is then boxed as by
:class:`sensloc.localize.protocols.mix.BestBoxes` with this one map as its only factor: Khan's recipe, border
mask, the union of the pixels above ``fraction`` of the maximum, scaled about its centre, the
four parameters chosen by CorLoc on the training images. Those training images' maps come from
the same inner cross-validation (each predicted by weights fitted without it), so the box
search sees maps as good as a new image's, not the regression's fit to its own targets.

Measured (SqueezeNet 1.0 with its real weights, the 692 development photos, ground-truth
class known, 5-fold cross-validation with seed 0, everything chosen inside the folds; 95%
bootstrap intervals). The first four rows are prototypes of the same regression before it
entered the library (the evidence features unstandardized, lambda fixed, swept over
10-10^5); the others are this module:

=============================================================  ======================
features of the cells (13 x 13), then the box search            CV CorLoc (95% CI)
=============================================================  ======================
``fire9`` activations alone                                     68.2% (64.7-71.7)
``fire9`` and ``pool8``                                         69.8-70.8%
``fire9``, ``pool8`` and the four recipe maps (this module)     72.1-72.5%
the same map as a fifth factor of ``mix``'s geometric mean      69.5-71.0%
this module, standardized, lambda by inner CV (``evaluate``)    72.1% (68.8-75.4)
the same with fold seeds 1 and 2 (``--seed``)                   72.5% / 71.5%
``mix`` (:mod:`sensloc.localize.protocols.mix`), fold seeds 0 / 1 / 2            70.4 / 69.8 / 68.8%
evidence smoothed by sigma 2 / 8 instead of 4                   72.0% / 72.5%
DeepLIFT with the zero reference as a fifth evidence map        72.3% (68.9-75.6)
``fire9`` alone as the layer (no ``pool8``)                     71.4% (68.1-74.7)
=============================================================  ======================

Every variant of the regression lies within 72 +- 0.6 and inside the others' intervals; the
module keeps Khan's sigma 4 and both layers, chosen before these were measured.

The gain is in the small objects (7.5% of the 67 below a tenth of the image are boxed, 3% by
``mix``; 40% of the 122 between a tenth and a quarter, 37% by ``mix``) and the large ones
(94.5% of the 308 above half, 90.6%), for a loss between a quarter and a half (79.0% of 195,
82.6%). The chosen threshold is high (``fraction`` 0.52-0.62 against ``mix``'s 0.02): the
regression's map is smooth and graded, so the box is the core where coverage is predicted
high, not the support of every hot pixel.

Measured in the same session and dropped (prototypes, same photos and folds): ``mix``'s map
averaged over SLIC or Felzenszwalb superpixels (scikit-image; 25-400 segments, weight searched)
69.1-71.1%; a pixel-wise ridge regression from the recipe maps, their blurs and position
features to the inside of the box 67.2%; contrastive signals at the logits (``e_t - p``, the
log-softmax gradient: 65.5%; ``e_t - 1/K``: 69.8%); the maximum-sum sub-window of the mix
minus a threshold (efficient subwindow search) at most 70.4% even tuned on all photos;
largest or heaviest components for photos with several objects (no better than the union
box on them: 32% against 35%, so no switch can help); and MobileNetV2's maps (the quantized
TFLite weights dequantized, a PyTorch prototype; top-1 76.6% on these photos) through
``mix``'s recipe: 67.5%, and 61-68% mixed with SqueezeNet's.
"""
import numpy as np

from sensloc.saliency import postprocess

from sensloc.localize.protocols.mix import BestBoxes, SCALES, SIGMAS, BORDER_WIDTHS, recipe
from sensloc.saliency.maps import MapSpec
from sensloc.localize.protocols import FRACTIONS, folds, last_spatial_layer
from sensloc.localize.regression import cell_means, solve_normal_equations

#: Ridge parameters tried by the inner cross-validation (the features are standardized).
LAMBDAS = tuple(10.0 ** np.arange(0, 7))
#: Images per block when accumulating ``X^T X`` (bounds the memory of the float64 rows).
BLOCK = 64

#: The numbers that justify the preset (``sensloc evaluate ... --cv 5 --preset best``).
MEASURED = {
    "data": "692 ILSVRC2012 val photos (imagenet-val-227 + imagenet-val-full), SqueezeNet 1.0",
    "protocol": "sensloc.evaluation.runner.evaluate, 5-fold cross_validated_boxes, seed 0",
    "corloc_gt_known": 0.721, "ci95": (0.688, 0.754), "corloc_top1": 0.533,
    "corloc_by_gt_area": {"<10%": 0.075, "10-25%": 0.402, "25-50%": 0.790, ">=50%": 0.945},
    "chosen_lambda_in_every_fold": 1e4,
    "fit_seconds_per_fold_554_photos": 35,
}


def box_coverage(gt_boxes, input_hw, grid_hw):
    """``t[n, c]``: the fraction of cell ``c`` inside the union of image n's boxes, (N, h, w).

    Boxes ``(xmin, ymin, xmax, ymax)`` in input pixels (:mod:`sensloc.localize.boxes`) are drawn on the
    pixel grid (edges rounded to whole pixels), then area-averaged exactly onto the cells.
    """
    out = np.empty((len(gt_boxes),) + tuple(grid_hw))
    mask = np.empty((1,) + tuple(input_hw))  # one image at a time: N full-size masks are large
    for n, boxes in enumerate(gt_boxes):
        mask[:] = 0.0
        for x0, y0, x1, y1 in np.rint(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(int):
            mask[0, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1.0
        out[n] = cell_means(mask, grid_hw)[0]
    return out


def cell_features(activations, evidence, sigma):
    """The features ``phi`` of every cell, (N, h w, D) float32 (rows in row-major cell order).

    Parameters
    ----------
    activations : sequence of L arrays (N, C_l, h, w)
        Layer outputs on one grid (non-negative after ReLU; ``sqrt`` tempers their tails).
    evidence : sequence of K arrays (N, H, W)
        Saliency maps at the input resolution, put through :func:`sensloc.localize.protocols.mix.recipe`.
    sigma : float
        The recipe's smoothing, in input pixels.
    """
    grids = {a.shape[2:] for a in activations}
    if len(grids) != 1:
        raise ValueError(f"the layers must share one grid of cells; got {sorted(grids)}")
    grid = grids.pop()
    blocks = [np.sqrt(np.maximum(np.asarray(a, np.float32), 0)) for a in activations]
    blocks += [cell_means(recipe(m, sigma), grid)[:, None].astype(np.float32) for m in evidence]
    features = np.concatenate(blocks, axis=1)
    n, d = features.shape[:2]
    if not np.isfinite(features).all():
        raise ValueError("the objectness features contain NaN or infinity")
    return np.ascontiguousarray(features.reshape(n, d, -1).transpose(0, 2, 1))


def _gram(features, targets, mean, sd):
    """``Z^T Z`` and ``Z^T t`` of standardized rows with a bias column, accumulated in float64."""
    d = features.shape[2] + 1
    gram, moment = np.zeros((d, d)), np.zeros(d)
    for start in range(0, len(features), BLOCK):
        z = (features[start:start + BLOCK].reshape(-1, d - 1) - mean) / sd
        z = np.hstack([z, np.ones((len(z), 1))])
        gram += z.T @ z
        moment += z.T @ targets[start:start + BLOCK].reshape(-1)
    return gram, moment


def _ridge(gram, moment, lam):
    penalty = np.full(len(gram), float(lam))
    penalty[-1] = 0.0  # the bias is not shrunk
    system = gram + np.diag(penalty)
    w = solve_normal_equations(system, moment)
    return w if w is not None else np.linalg.lstsq(system, moment, rcond=None)[0]


class ObjectnessBoxes(BestBoxes):
    """Cell-wise ridge regression to an objectness map, then :class:`BestBoxes`' union box.

    Parameters
    ----------
    layers : sequence of MapSpec
        ``MapSpec.make("activations", layer=...)`` of layers on one grid of cells.
    evidence : sequence of MapSpec
        Saliency maps whose recipe cell means join the features.
    evidence_sigma : float
        Smoothing of the evidence maps (Khan's 4 px).
    lambdas : sequence of float
        Ridge parameters for the inner cross-validation.
    inner_folds : int
        Folds of the inner cross-validation (``lam`` and the training images' maps).
    sigmas, border_widths, fractions, scales, border_weight, threshold
        The box stage's grid, as for :class:`BestBoxes`.
    lam, mean, sd, weights, ... : optional
        Fitted values (from :meth:`params`).
    """

    kind = "objectness"

    def __init__(self, layers, evidence, evidence_sigma=4.0, lambdas=LAMBDAS, inner_folds=5,
                 sigmas=SIGMAS, border_widths=BORDER_WIDTHS, fractions=FRACTIONS, scales=SCALES,
                 border_weight=0.5, threshold=0.5, lam=None, mean=None, sd=None, weights=None,
                 sigma=None, border_width=None, fraction=None, scale=None, train_corloc=None):
        super().__init__(evidence, sigmas, border_widths, fractions, scales, border_weight,
                         sigma, border_width, fraction, scale, threshold, train_corloc)
        self.layers = tuple(layers)
        if not self.layers or not all(isinstance(s, MapSpec) and s.method == "activations"
                                      for s in self.layers):
            raise ValueError("ObjectnessBoxes needs at least one MapSpec of activations")
        self.evidence = self.map_specs
        self.map_specs = self.layers + self.evidence
        self.evidence_sigma = float(evidence_sigma)
        self.lambdas = tuple(float(v) for v in lambdas)
        self.inner_folds = int(inner_folds)
        if not self.lambdas or self.inner_folds < 2:
            raise ValueError("ObjectnessBoxes needs at least one lambda and two inner folds")
        self.lam = lam
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.sd = None if sd is None else np.asarray(sd, np.float64)
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        self.cell_mse = None  # the inner cross-validation's squared error, set by fit

    @property
    def fitted(self):
        return super().fitted and self.weights is not None

    def features(self, maps):
        missing = [s.name for s in self.map_specs if s not in maps]
        if missing:
            raise KeyError(f"{self.kind} needs the maps {missing}")
        return cell_features([maps[s] for s in self.layers], [maps[s] for s in self.evidence],
                             self.evidence_sigma)

    def _grid_and_input(self, maps):
        return maps[self.layers[0]].shape[2:], maps[self.evidence[0]].shape[1:]

    def _as_map(self, cells, grid_hw, input_hw):
        """Predicted cells (N, h w) -> the objectness map (N, H, W), clipped at 0."""
        cells = np.maximum(cells, 0).reshape(-1, *grid_hw).astype(np.float32)
        return postprocess.upsample(cells, input_hw)

    def _predict_cells(self, features, w):
        """``[(phi - mu) / sd, 1] w`` for features (N, P, D) and weights (D + 1,) or (D + 1, L)."""
        out = np.empty(features.shape[:2] + w.shape[1:])
        for start in range(0, len(features), BLOCK):
            z = (features[start:start + BLOCK] - self.mean) / self.sd
            out[start:start + BLOCK] = z @ w[:-1] + w[-1]
        return out

    def objectness(self, maps):
        """The fitted objectness map (N, H, W) of images with these maps."""
        if self.weights is None:
            raise ValueError(f"{self.kind} is not fitted: call fit")
        grid, size = self._grid_and_input(maps)
        return self._as_map(self._predict_cells(self.features(maps), self.weights), grid, size)

    def _maps(self, maps):
        return [self.objectness(maps)]

    def fit(self, maps, gt_boxes):
        features = self.features(maps)
        grid, size = self._grid_and_input(maps)
        if len(gt_boxes) != len(features):
            raise ValueError(f"{len(features)} images' maps but ground truth for {len(gt_boxes)}")
        targets = box_coverage(gt_boxes, size, grid).reshape(len(features), -1)
        flat = features.reshape(-1, features.shape[2])
        self.mean = flat.mean(axis=0, dtype=np.float64)
        sd = flat.std(axis=0, dtype=np.float64)
        self.sd = np.where(sd > 0, sd, 1.0)  # a constant feature (a dead channel) stays 0
        # Inner folds: one Gram matrix each; the training Gram without fold f is the total
        # minus fold f's, so every lambda and fold costs one solve.
        fold = folds(len(features), self.inner_folds, seed=0)
        parts = [_gram(features[fold == f], targets[fold == f], self.mean, self.sd)
                 for f in range(self.inner_folds)]
        gram, moment = sum(p[0] for p in parts), sum(p[1] for p in parts)
        # Every lambda's weights as one matrix (D + 1, L): each held-out fold is standardized
        # and predicted once for all of them.
        held_out = np.empty(targets.shape + (len(self.lambdas),))
        for f, (g, m) in enumerate(parts):
            w = np.stack([_ridge(gram - g, moment - m, lam) for lam in self.lambdas], axis=1)
            held_out[fold == f] = self._predict_cells(features[fold == f], w)
        errors = np.mean((held_out - targets[..., None]) ** 2, axis=(0, 1))
        best = int(np.argmin(errors))  # the smallest lambda among ties
        self.lam, self.cell_mse = self.lambdas[best], float(errors[best])
        self.weights = _ridge(gram, moment, self.lam)
        return self.fit_factors([self._as_map(held_out[..., best], grid, size)], gt_boxes)

    def params(self):
        p = super().params()
        p.pop("specs")
        p.update({"layers": [s.to_json() for s in self.layers],
                  "evidence": [s.to_json() for s in self.evidence],
                  "evidence_sigma": self.evidence_sigma, "lambdas": list(self.lambdas),
                  "inner_folds": self.inner_folds, "lam": self.lam,
                  "mean": None if self.mean is None else self.mean.tolist(),
                  "sd": None if self.sd is None else self.sd.tolist(),
                  "weights": None if self.weights is None else self.weights.tolist()})
        return p

    @classmethod
    def from_params(cls, p):
        return cls([MapSpec.from_json(s) for s in p["layers"]],
                   [MapSpec.from_json(s) for s in p["evidence"]], p["evidence_sigma"],
                   p["lambdas"], p["inner_folds"], p["sigmas"], p["border_widths"],
                   p["fractions"], p["scales"], p["border_weight"], p["threshold"], p["lam"],
                   p["mean"], p["sd"], p["weights"], p["sigma"], p["border_width"],
                   p["fraction"], p["scale"], p.get("train_corloc"))


def feature_layers(architecture):
    """The layers whose activations describe the cells: the last spatial layer and the pooling
    layer that opens its block, on the same grid (SqueezeNet: ``pool8`` and ``fire9``, 13 x 13;
    VGG16: ``pool4`` and ``relu5_3``, 14 x 14; the small VGG: ``pool3`` and ``relu4_2``)."""
    last = last_spatial_layer(architecture)
    before = "pool8" if last == "fire9" else f"pool{int(last[4]) - 1}"  # relu5_3 -> pool4
    return tuple(MapSpec.make("activations", layer=name) for name in (before, last))


def objectness_protocol(architecture):
    """A fresh, unfitted ``best`` protocol for a network architecture (e.g. ``"vgg16"``)."""
    from sensloc.localize.protocols.mix import best_specs
    return ObjectnessBoxes(feature_layers(architecture), best_specs(architecture))
