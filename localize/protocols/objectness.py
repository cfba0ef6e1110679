"""The ``best`` preset's protocol: an objectness map learned in closed form, then boxed like ``mix``.

Ebrahimpour & Noelle regress the four box corners on a saliency map. Here the least-squares
regression moves down to the cells of the network's last feature grid (13 x 13 for
SqueezeNet 1.0, 14 x 14 for VGG16) and predicts, for each cell, how much of it lies inside
the object. For cell ``c`` of image ``n``::

    phi_nc = [sqrt(A^1_nc), ..., sqrt(A^L_nc), ssqrt(C^1_nc), ..., s^1_nc, ..., s^K_nc]
    o_nc   = [(phi_nc - mu) / sd, 1] w                                          (D features)

with ``A^l_nc`` the activations (all channels) of layer ``l`` at that cell (a layer on another
grid, e.g. MobileNetV2's 7 x 7 beside SqueezeNet's 13 x 13, is first resampled bilinearly onto
the first layer's grid, :func:`resample_cells`), ``C^m_nc`` optional class contributions
``W[t, j] a_j`` of the explained class t by channel j
(:func:`sensloc.saliency.class_contributions`; ``ssqrt(v) = sign(v) sqrt|v|``), and ``s^k_nc``
the mean over the cell of saliency map ``k`` after Khan's recipe
(:func:`sensloc.localize.protocols.threshold.khan_heat` without the border mask: positive part,
normalized, smoothed, normalized, cut below its mean). The activations say *what* is at the
cell (an object part or background texture, whatever the class), the saliency maps *whether
the explained class* uses it, and the contributions how much each channel there adds to its
score. ``mu`` and ``sd`` standardize each feature over the training
cells, and ``w`` minimizes the ridge objective

    sum_nc (o_nc - t_nc)^2 + lam ||w_without_bias||^2,

``t_nc`` the fraction of the cell covered by the image's ground-truth boxes, solved exactly
from the normal equations (:func:`sensloc.localize.regression.solve_ridge`). ``lam`` is chosen
by k-fold cross-validation inside the training images (squared error of the cells).

The map ``o`` (clipped at 0, upsampled bilinearly to the input) is then boxed by the ``mix``
protocol's :class:`~sensloc.localize.protocols.mix.BoxSearch` with this one map as its only
factor: Khan's recipe, border mask, the union of the pixels above ``fraction`` of the maximum
(or, offered ``modes=("union", "largest")``, their largest connected region where that scores
better), scaled about its centre, the parameters chosen by CorLoc on the training images. Those
training images' maps come from the same inner cross-validation (each predicted by weights
fitted without it), so the box search sees maps as good as a new image's, not the
regression's fit to its own targets.

Photos that only train (``use_extra_training``: more real boxes, such as tiny-imagenet's, never
scored) join the ridge through their cells' sums alone (:class:`CellMoments`): with weight
``v`` the objective gains ``v sum_{n'c} (o_{n'c} - t_{n'c})^2`` over their cells, standardized
with the training images' ``mu`` and ``sd``, and ``(v, lam)`` are chosen together by the same
inner cross-validation, which scores held-out training images only (``v = 0`` among them,
so the extra photos are used only where they help the images the protocol is fitted on).

With ``mirror=True`` every map is also computed on the mirrored photo (and mirrored back,
``MapSpec.mirror``), and the cells' objectness is the mean of the two views' predictions
(test-time flipping), ``o_nc = [((phi_nc + phi'_nc) / 2 - mu) / sd, 1] w`` since the map is
linear in the features; ``w`` is fitted on the photo as it is, the box search on the mean.

The measurements behind it (72.1% CV CorLoc on the 692 development photos against ``mix``'s
70.4%) and the variants dropped: docs/experiments/objectness.md.
"""
from dataclasses import dataclass, replace

import numpy as np

from sensloc.saliency import postprocess
from sensloc.saliency.maps import MapSpec

from sensloc.localize.folds import folds
from sensloc.localize.protocols.base import Protocol, put_rows
from sensloc.localize.protocols.mix import BORDER_WIDTHS, SCALES, SIGMAS, BoxSearch
from sensloc.localize.protocols.threshold import FRACTIONS, khan_heat
from sensloc.localize.regression import area_average_matrix, cell_means, solve_ridge

#: Ridge parameters tried by the inner cross-validation (the features are standardized).
LAMBDAS = tuple(10.0 ** np.arange(0, 7))
#: A wider range for many features (two networks' activations, ~2,000 per cell): 10^0..10^7.
LAMBDAS_WIDE = tuple(10.0 ** np.arange(0, 8))
#: Weights of the extra training photos' cells tried by the inner cross-validation (0: none).
EXTRA_WEIGHTS = (0.0, 0.1, 0.3)
#: Images per block when accumulating ``X^T X`` (bounds the memory of the float64 rows).
BLOCK = 64


def box_coverage(gt_boxes, input_hw, grid_hw):
    """``t[n, c]``: the fraction of cell ``c`` inside the union of image n's boxes, (N, h, w).

    Boxes ``(xmin, ymin, xmax, ymax)`` in input pixels (:mod:`sensloc.localize.boxes`) are
    drawn on the pixel grid (edges rounded to whole pixels), then area-averaged exactly onto
    the cells.
    """
    out = np.empty((len(gt_boxes),) + tuple(grid_hw))
    rows = area_average_matrix(input_hw[0], grid_hw[0])
    cols = area_average_matrix(input_hw[1], grid_hw[1])
    mask = np.empty(tuple(input_hw))  # one image at a time: N full-size masks are large
    for n, boxes in enumerate(gt_boxes):
        mask[:] = 0.0
        for x0, y0, x1, y1 in np.rint(np.asarray(boxes, np.float64).reshape(-1, 4)).astype(int):
            mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1.0
        out[n] = rows @ mask @ cols.T  # cell_means' A_rows m A_cols^T, as two products
    return out


def resample_cells(activations, grid_hw):
    """Layer outputs (N, C, h', w') resampled bilinearly onto a grid of ``grid_hw`` cells ->
    (N, C, h, w) float32; unchanged if already on it.

    Cell centres are aligned (half-pixel convention of :func:`sensloc.saliency.postprocess.upsample`):
    cell ``i`` of the new grid reads the old grid at ``(i + 0.5) h' / h - 0.5``, clamped to its
    edge, interpolated linearly between the two nearest cells, separably in rows and columns:
    ``out[n, c] = R a[n, c] C^T`` with (h, h') and (w, w') interpolation matrices. Both grids
    cover the whole (squashed) photo, so a cell of either looks at the same part of it.
    """
    a = np.asarray(activations, np.float32)
    n, channels, h, w = a.shape
    if (h, w) == tuple(grid_hw):
        return a
    out = postprocess.upsample(a.reshape(n * channels, h, w), grid_hw)
    return out.reshape(n, channels, *grid_hw)


def signed_sqrt(values):
    """``sign(v) sqrt(|v|)``: tempers the tails of features of either sign."""
    return np.sign(values) * np.sqrt(np.abs(values))


def cell_features(activations, evidence, sigma, contributions=()):
    """The features ``phi`` of every cell, (N, h w, D) float32 (rows in row-major cell order).

    Parameters
    ----------
    activations : sequence of L arrays (N, C_l, h_l, w_l)
        Layer outputs (non-negative after ReLU; ``sqrt`` tempers their tails). The first
        layer's grid ``(h, w) = (h_1, w_1)`` is the grid of cells; a layer on another grid is
        resampled onto it (:func:`resample_cells`), then put through ``sqrt``.
    evidence : sequence of K arrays (N, H, W)
        Saliency maps at the input resolution, put through Khan's recipe without the border
        mask (:func:`sensloc.localize.protocols.threshold.khan_heat`, ``border_width=0``).
    sigma : float
        The recipe's smoothing, in input pixels.
    contributions : sequence of M arrays (N, C_m, h_m, w_m)
        Class contributions of either sign, resampled onto the grid, then put through
        :func:`signed_sqrt`.
    """
    cells = list(activations) + list(contributions)
    if any(np.ndim(a) != 4 for a in cells) or len({len(a) for a in cells}) != 1:
        raise ValueError("activations and contributions must be (N, C, h, w) arrays of the same "
                         f"N images; got shapes {[np.shape(a) for a in cells]}")
    grid = tuple(activations[0].shape[2:])
    blocks = [np.sqrt(np.maximum(resample_cells(a, grid), 0)) for a in activations]
    blocks += [signed_sqrt(resample_cells(c, grid)) for c in contributions]
    blocks += [cell_means(khan_heat(m, True, sigma, border_width=0.0), grid)[:, None]
               .astype(np.float32) for m in evidence]
    features = np.concatenate(blocks, axis=1)
    n, d = features.shape[:2]
    if not np.isfinite(features).all():
        raise ValueError("the objectness features contain NaN or infinity")
    return np.ascontiguousarray(features.reshape(n, d, -1).transpose(0, 2, 1))


def _blocks(indices):
    """Runs of :data:`BLOCK` consecutive entries of ``indices``: the unit in which features are
    read, accumulated and predicted. Every sum depends on how the rows are grouped, so the
    groups depend on the images alone, never on how a caller batched them."""
    return [indices[start:start + BLOCK] for start in range(0, len(indices), BLOCK)]


def _moments(features, indices):
    """Mean and standard deviation of every feature over the cells of images ``indices``.

    Read a block at a time, yet the same floats as ``flat.mean(0, dtype=float64)`` and
    ``flat.std(0, dtype=float64)`` of all the rows at once: NumPy sums along the first axis
    row after row, so the running total enters each block as its first row.

    Parameters
    ----------
    features : (N, P, D) float32 array, or rows read by index (see :meth:`ObjectnessBoxes.fit_reduced`)
    indices : (M,) int array

    Returns
    -------
    mean, sd : (D,) float64 arrays
    """
    d = features.shape[2]
    total, squares = np.zeros(d), np.zeros(d)
    for block in _blocks(indices):
        rows = features[block].reshape(-1, d).astype(np.float64)
        total = np.concatenate([total[None], rows]).sum(axis=0)
    count = len(indices) * features.shape[1]
    mean = total / count
    for block in _blocks(indices):
        deviation = features[block].reshape(-1, d) - mean
        squares = np.concatenate([squares[None], deviation * deviation]).sum(axis=0)
    return mean, np.sqrt(squares / count)


def _gram(features, indices, targets, mean, sd):
    """``Z^T Z`` and ``Z^T t`` of the standardized rows of images ``indices`` with a bias
    column, accumulated in float64 a block at a time."""
    d = features.shape[2] + 1
    gram, moment = np.zeros((d, d)), np.zeros(d)
    for block in _blocks(indices):
        z = (features[block].reshape(-1, d - 1) - mean) / sd
        z = np.hstack([z, np.ones((len(z), 1))])
        gram += z.T @ z
        moment += z.T @ targets[block].reshape(-1)
    return gram, moment


@dataclass(frozen=True)
class CellMoments:
    """The sums over the cells of photos that only train, all that the ridge needs of them.

    ``count`` cells with features ``phi`` (D,) and targets ``t``: ``features = sum phi`` (D,),
    ``gram = sum phi phi^T`` (D, D), ``targets = sum t``, ``moment = sum phi t`` (D,), in
    float64. They add over batches of photos, and standardizing the rows afterwards is algebra
    on them (:meth:`standardized`), so one pass over the photos serves every fold.
    """
    count: int
    features: np.ndarray
    gram: np.ndarray
    targets: float
    moment: np.ndarray

    @classmethod
    def of(cls, features, targets):
        """The sums of cells ``features`` (M, D) with ``targets`` (M,)."""
        phi = np.asarray(features, np.float64)
        t = np.asarray(targets, np.float64)
        return cls(len(phi), phi.sum(axis=0), phi.T @ phi, float(t.sum()), phi.T @ t)

    def __add__(self, other):
        return CellMoments(self.count + other.count, self.features + other.features,
                           self.gram + other.gram, self.targets + other.targets,
                           self.moment + other.moment)

    def standardized(self, mean, sd):
        """``Z^T Z`` (D + 1, D + 1) and ``Z^T t`` (D + 1,) of the rows ``z = [(phi - mean) / sd, 1]``,
        as :func:`_gram` gives them for rows at hand::

            sum (phi - mu)(phi - mu)^T = G - mu s^T - s mu^T + n mu mu^T,   s = sum phi
            sum (phi - mu) t           = m - mu sum t
        """
        n, s = float(self.count), self.features
        centred = self.gram - np.outer(mean, s) - np.outer(s, mean) + n * np.outer(mean, mean)
        gram = np.empty((len(s) + 1,) * 2)
        gram[:-1, :-1] = centred / np.outer(sd, sd)
        gram[:-1, -1] = gram[-1, :-1] = (s - n * mean) / sd
        gram[-1, -1] = n
        moment = np.append((self.moment - mean * self.targets) / sd, self.targets)
        return gram, moment

    def to_arrays(self):
        return {"count": np.int64(self.count), "features": self.features, "gram": self.gram,
                "targets": np.float64(self.targets), "moment": self.moment}

    @classmethod
    def from_arrays(cls, arrays):
        return cls(int(arrays["count"]), arrays["features"], arrays["gram"],
                   float(arrays["targets"]), arrays["moment"])


class _ViewMean:
    """Rows read as the mean of two views' features, ``(a[rows] + b[rows]) / 2``: the photo's
    and its mirror's (``ObjectnessBoxes(mirror=True)``), arrays or rows kept on disk."""

    def __init__(self, photo, mirrored):
        self.photo, self.mirrored, self.shape = photo, mirrored, photo.shape

    def __len__(self):
        return len(self.photo)

    def __getitem__(self, rows):
        return (self.photo[rows] + self.mirrored[rows]) / np.float32(2)


def _ridge(gram, moment, lam):
    w = solve_ridge(gram, moment, lam)
    if w is None:  # lam > 0 makes the system positive definite; rounding can still break it
        raise ValueError(f"the objectness regression is singular at lambda {lam}: use a larger one")
    return w


class ObjectnessBoxes(Protocol):
    """Cell-wise ridge regression to an objectness map, then the ``mix`` box search on it.

    Parameters
    ----------
    layers : sequence of MapSpec
        ``MapSpec.make("activations", layer=...)`` of layers on one grid of cells.
    evidence : sequence of MapSpec
        Saliency maps whose recipe cell means join the features.
    contributions : sequence of MapSpec
        ``MapSpec.make("class_contributions", net=...)``: the explained class's terms by
        channel, as more cell features (signed square root).
    mirror : bool
        Predict each photo's objectness as the mean of its and its mirror's (every map kind
        is read in both views).
    extra_weights : sequence of float >= 0
        Weights of the extra training photos' cells (:meth:`use_extra_training`) tried by the
        inner cross-validation, together with ``lambdas``.
    evidence_sigma : float
        Smoothing of the evidence maps (Khan's 4 px).
    lambdas : sequence of float > 0
        Ridge parameters for the inner cross-validation.
    inner_folds : int
        Folds of the inner cross-validation (``lam`` and the training images' maps).
    sigmas, border_widths, fractions, scales, border_weight, threshold, modes
        The box stage's grid (:class:`~sensloc.localize.protocols.mix.BoxSearch`,
        ``self.search``); ``modes=("union", "largest")`` lets it box the largest connected
        region of the hot cells where that scores better on the training images.
    lam, mean, sd, weights, extra_weight, ... : optional
        Fitted values (from :meth:`params`).
    extra_training : str, optional
        What :meth:`use_extra_training` named the extra training photos by (a digest).
    networks : dict, optional
        ``{architecture: weights SHA-256 or None}`` of the networks whose maps it reads (the
        evaluation's own and every ``MapSpec.net``), recorded by :meth:`use_networks` before
        fitting; a fitted protocol refuses maps of other weights.
    """

    kind = "objectness"
    takes_extra_training = True

    def __init__(self, layers, evidence, evidence_sigma=4.0, lambdas=LAMBDAS, inner_folds=5,
                 sigmas=SIGMAS, border_widths=BORDER_WIDTHS, fractions=FRACTIONS, scales=SCALES,
                 border_weight=0.5, threshold=0.5, lam=None, mean=None, sd=None, weights=None,
                 sigma=None, border_width=None, fraction=None, scale=None, train_corloc=None,
                 networks=None, modes=("union",), contributions=(), mirror=False,
                 extra_weights=EXTRA_WEIGHTS, extra_weight=None, extra_training=None):
        self.layers, self.evidence = tuple(layers), tuple(evidence)
        self.contributions, self.mirror = tuple(contributions), bool(mirror)
        if not self.layers or not all(isinstance(s, MapSpec) and s.method == "activations"
                                      for s in self.layers):
            raise ValueError("ObjectnessBoxes needs at least one MapSpec of activations")
        if not all(isinstance(s, MapSpec) and s.method == "class_contributions"
                   for s in self.contributions):
            raise ValueError("ObjectnessBoxes' contributions must be MapSpecs of "
                             "class_contributions")
        if not self.evidence or not all(isinstance(s, MapSpec) and not s.is_features
                                        for s in self.evidence):
            raise ValueError("ObjectnessBoxes needs at least one MapSpec of evidence (heat maps)")
        if any(s.mirror for s in self.layers + self.contributions + self.evidence):
            raise ValueError("ObjectnessBoxes takes the photo's map kinds; mirror=True adds "
                             "their mirrored views")
        self.map_specs = self._specs(False) + (self._specs(True) if self.mirror else ())
        self.evidence_sigma = float(evidence_sigma)
        self.lambdas = tuple(float(v) for v in lambdas)
        self.inner_folds = int(inner_folds)
        if not self.lambdas or min(self.lambdas) <= 0 or self.inner_folds < 2:
            raise ValueError("ObjectnessBoxes needs lambdas > 0 and at least two inner folds")
        self.search = BoxSearch(sigmas, border_widths, fractions, scales, border_weight, sigma,
                                border_width, fraction, scale, threshold, train_corloc, modes)
        self.lam = lam
        self.mean = None if mean is None else np.asarray(mean, np.float64)
        self.sd = None if sd is None else np.asarray(sd, np.float64)
        self.weights = None if weights is None else np.asarray(weights, np.float64)
        self.cell_mse = None  # the inner cross-validation's squared error, set by fit
        self.networks = None if networks is None else dict(networks)
        self.extra_weights = tuple(float(v) for v in extra_weights)
        if not self.extra_weights or min(self.extra_weights) < 0:
            raise ValueError("ObjectnessBoxes' extra_weights must be >= 0")
        self.extra_weight, self.extra_training = extra_weight, extra_training
        self.extra = None  # CellMoments of the extra training photos, from use_extra_training

    def use_extra_training(self, moments, source):
        """Fit with photos that only train: ``moments`` (:class:`CellMoments`, from
        :meth:`cell_moments` of their maps summed over them) and ``source``, a string naming
        those photos (recorded in :meth:`params`). ``moments`` may come later, before the fit
        (an evaluation names the photos before it computes their maps). Returns itself."""
        self.extra, self.extra_training = moments, str(source)
        return self

    @property
    def training_specs(self):
        """The map kinds that extra training photos need: the photo's view of each kind."""
        return self._specs(False)

    def cell_moments(self, maps, gt_boxes):
        """:class:`CellMoments` of these photos' cells (their maps, the photo's view, and their
        ground-truth boxes in input pixels), to add up over the extra training photos."""
        features = self.features(maps)
        grid, size = self._grid_and_input(maps)
        targets = box_coverage(gt_boxes, size, grid).reshape(-1)
        return CellMoments.of(features.reshape(-1, features.shape[2]), targets)

    def use_networks(self, networks):
        """Say which networks' maps it will read, ``{architecture: weights SHA-256 or None}``
        (:func:`sensloc.evaluation.networks.network_identities`). Unfitted, it records them
        (:meth:`params` keeps them); fitted, it refuses, in one line, networks other than those
        it was fitted on (another architecture, or other weights where both SHA-256 are known).
        Returns itself."""
        networks = dict(networks)
        named = {s.net for s in self.map_specs if s.net is not None}
        absent = sorted(named - set(networks))
        if absent:
            raise ValueError(f"{self.kind} reads maps of {absent}, not among the networks given "
                             f"{sorted(networks)}")
        if self.networks is None or not self.fitted:
            self.networks = networks
            return self
        if sorted(self.networks) != sorted(networks):
            raise ValueError(f"this {self.kind} model was fitted on the networks "
                             f"{sorted(self.networks)}, not {sorted(networks)}: refit it")
        for name, sha in sorted(self.networks.items()):
            if sha and networks[name] and sha != networks[name]:
                raise ValueError(f"this {self.kind} model was fitted on {name} weights "
                                 f"{sha[:12]}..., not {networks[name][:12]}...: refit it")
        return self

    @property
    def fitted(self):
        return self.search.fitted and self.weights is not None

    def _specs(self, mirrored):
        """The map kinds of one view, in feature order: layers, contributions, evidence."""
        specs = self.layers + self.contributions + self.evidence
        return tuple(replace(s, mirror=True) for s in specs) if mirrored else specs

    def features(self, maps, mirrored=False):
        """:func:`cell_features` of the photos' maps, or of their mirrors' (``mirrored``)."""
        specs = self._specs(mirrored)
        missing = [s.name for s in specs if s not in maps]
        if missing:
            raise KeyError(f"{self.kind} needs the maps {missing}")
        layers, contributions = len(self.layers), len(self.layers) + len(self.contributions)
        return cell_features([maps[s] for s in specs[:layers]],
                             [maps[s] for s in specs[contributions:]], self.evidence_sigma,
                             [maps[s] for s in specs[layers:contributions]])

    def _viewed(self, reduced):
        """The features the fitted map reads: the photos', or the mean of both views'."""
        if self.mirror:
            return _ViewMean(reduced["features"], reduced["mirrored_features"])
        return reduced["features"]

    def _grid_and_input(self, maps):
        return maps[self.layers[0]].shape[2:], maps[self.evidence[0]].shape[1:]

    def _as_map(self, cells, grid_hw, input_hw):
        """Predicted cells (N, h w) -> the objectness map (N, H, W), clipped at 0."""
        cells = np.maximum(cells, 0).reshape(-1, *grid_hw).astype(np.float32)
        return postprocess.upsample(cells, input_hw)

    def _cell_blocks(self, features, indices, w):
        """Yield ``(block, [(phi - mu) / sd, 1] w)`` for the :func:`_blocks` of images
        ``indices``: (B,) indices and (B, P) or (B, P, L) predictions, for features (N, P, D)
        and weights (D + 1,) or (D + 1, L). The same blocks give the same floats."""
        for block in _blocks(indices):
            z = (features[block] - self.mean) / self.sd
            yield block, z @ w[:-1] + w[-1]

    def _predict_cells(self, features, indices, w):
        """:meth:`_cell_blocks` of images ``indices`` as one array (M, P) or (M, P, L)."""
        out = np.empty((len(indices), features.shape[1]) + w.shape[1:])
        start = 0
        for block, cells in self._cell_blocks(features, indices, w):
            out[start:start + len(block)] = cells
            start += len(block)
        return out

    def objectness(self, maps):
        """The fitted objectness map (N, H, W) of images with these maps."""
        if self.weights is None:
            raise ValueError(f"{self.kind} is not fitted: call fit")
        reduced = self.reduce(maps)
        grid, size = self._shapes(reduced)
        every = np.arange(len(reduced["features"]))
        return self._as_map(self._predict_cells(self._viewed(reduced), every, self.weights),
                            grid, size)

    def reduce(self, maps):
        """``features`` (N, P, D) of the grid's P cells (:func:`cell_features`), with
        ``mirror`` also ``mirrored_features``, the mirrored photos' (mirrored back), and
        ``grid_hw`` and ``input_hw`` (N, 2): the cells' grid and the maps' size."""
        features = self.features(maps)
        grid, size = self._grid_and_input(maps)
        n = len(features)
        reduced = {"features": features, "grid_hw": np.tile(np.array(grid), (n, 1)),
                   "input_hw": np.tile(np.array(size), (n, 1))}
        if self.mirror:
            reduced["mirrored_features"] = self.features(maps, mirrored=True)
        return reduced

    @staticmethod
    def _shapes(reduced):
        """The cells' grid and the maps' size, (h, w) and (H, W), of a reduction."""
        return (tuple(int(v) for v in reduced["grid_hw"][0]),
                tuple(int(v) for v in reduced["input_hw"][0]))

    def fit_reduced(self, reduced, gt_boxes):
        """Fit on the reduction of the training images (:meth:`reduce`).

        ``reduced["features"]`` may be an array or rows kept on disk: anything with ``shape``,
        ``len`` and ``features[indices]`` reading those images' rows. It is read a block of
        :data:`BLOCK` images at a time, so memory holds a block of features and predictions,
        the (D + 1)^2 Gram matrices and, per image, the box search's candidate boxes (int16).
        """
        features = reduced["features"]
        grid, size = self._shapes(reduced)
        n = len(features)
        if len(gt_boxes) != n:
            raise ValueError(f"{n} images' maps but ground truth for {len(gt_boxes)}")
        targets = box_coverage(gt_boxes, size, grid).reshape(n, -1)
        every = np.arange(n)
        self.mean, sd = _moments(features, every)
        self.sd = np.where(sd > 0, sd, 1.0)  # a constant feature (a dead channel) stays 0
        # Inner folds: one Gram matrix each; the training Gram without fold f is the total
        # minus fold f's, so every lambda and fold costs one solve.
        fold = folds(n, self.inner_folds, seed=0)
        members = [np.flatnonzero(fold == f) for f in range(self.inner_folds)]
        parts = [_gram(features, m, targets, self.mean, self.sd) for m in members]
        gram, moment = sum(p[0] for p in parts), sum(p[1] for p in parts)
        # The extra photos' cells, standardized like these, in every inner training set.
        extra_gram, extra_moment, grid_v = 0.0, 0.0, (0.0,)
        if self.extra_training is not None:
            if self.extra is None:
                raise ValueError(f"{self.kind} was told of extra training photos "
                                 f"({self.extra_training}) but not given their moments")
            extra_gram, extra_moment = self.extra.standardized(self.mean, self.sd)
            grid_v = self.extra_weights
        tried = [(v, lam) for v in grid_v for lam in self.lambdas]
        # Every (v, lambda)'s weights as one matrix (D + 1, L) per fold: each held-out block
        # is standardized and predicted once for all of them, and only its squared errors kept.
        weights = [np.stack([_ridge(gram - g + v * extra_gram, moment - mo + v * extra_moment,
                                    lam) for v, lam in tried], axis=1)
                   for g, mo in parts]
        squared = np.zeros(len(tried))
        for m, w in zip(members, weights):
            for block, cells in self._cell_blocks(features, m, w):
                squared += ((cells - targets[block][..., None]) ** 2).sum(axis=(0, 1))
        errors = squared / targets.size
        best = int(np.argmin(errors))  # the smallest weight, then lambda, among ties
        v, self.lam = tried[best]
        self.cell_mse = float(errors[best])
        self.extra_weight = None if self.extra_training is None else v
        self.weights = _ridge(gram + v * extra_gram, moment + v * extra_moment, self.lam)
        # The box search on the training images' held-out maps of that lambda: predicted again
        # in the same blocks with the same weights (so the same floats as above, or the mean of
        # both views'), each block boxed at once; only the boxes stay.
        self.search.unfit()
        boxes, viewed = {}, self._viewed(reduced)
        for m, w in zip(members, weights):
            for block, cells in self._cell_blocks(viewed, m, w):
                put_rows(boxes, self.search.reduce([self._as_map(cells[..., best], grid, size)]),
                         block, n)
        self.search.fit_reduced(boxes, gt_boxes)
        return self

    def predict_reduced(self, reduced):
        if not self.fitted:
            raise ValueError(f"{self.kind} is not fitted: call fit")
        features = self._viewed(reduced)
        grid, size = self._shapes(reduced)
        boxes = np.empty((len(features), 4))
        for block in _blocks(np.arange(len(features))):
            cells = self._predict_cells(features, block, self.weights)
            boxes[block] = self.search.predict([self._as_map(cells, grid, size)])
        return boxes

    def params(self):
        p = self.search.params()
        p.update(self.reduction_params())
        p.update({"lambdas": list(self.lambdas), "inner_folds": self.inner_folds, "lam": self.lam,
                  "mean": None if self.mean is None else self.mean.tolist(),
                  "sd": None if self.sd is None else self.sd.tolist(),
                  "weights": None if self.weights is None else self.weights.tolist()})
        if self.extra_training is not None:  # absent without extra photos, as before them
            p.update({"extra_training": self.extra_training,
                      "extra_weights": list(self.extra_weights), "extra_weight": self.extra_weight})
        return p

    def reduction_params(self):
        """What the cell features depend on: the map kinds, the evidence's smoothing, the
        views and the networks (not lambda, the box search or the fit)."""
        p = {"layers": [s.to_json() for s in self.layers],
             "contributions": [s.to_json() for s in self.contributions],
             "evidence": [s.to_json() for s in self.evidence],
             "evidence_sigma": self.evidence_sigma, "mirror": self.mirror}
        if self.networks is not None:  # absent when never told, as before it existed
            p["networks"] = dict(sorted(self.networks.items()))
        return p

    @classmethod
    def from_params(cls, p):
        protocol = cls([MapSpec.from_json(s) for s in p["layers"]],
                       [MapSpec.from_json(s) for s in p["evidence"]], p["evidence_sigma"],
                       p["lambdas"], p["inner_folds"], lam=p["lam"], mean=p["mean"], sd=p["sd"],
                       weights=p["weights"], networks=p.get("networks"),
                       # absent from files written before they existed
                       contributions=[MapSpec.from_json(s) for s in p.get("contributions", [])],
                       mirror=p.get("mirror", False),
                       extra_weights=p.get("extra_weights", EXTRA_WEIGHTS),
                       extra_weight=p.get("extra_weight"), extra_training=p.get("extra_training"))
        protocol.search = BoxSearch.from_params(p)
        return protocol
