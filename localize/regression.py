"""A learned linear map from heat maps to box corners (Ebrahimpour & Noelle), in closed form.

Each heat map is area-averaged onto a coarse ``n x n`` grid, giving a feature vector ``x`` of
``n**2`` numbers; the box is predicted as ``y = [x, 1] W``, with ``y`` the four corners
``(xmin/W, ymin/H, xmax/W, ymax/H)`` normalized by the image size so that one ``W`` serves
images of every size. ``W`` minimizes the ridge objective

    ||[X, 1] W - Y||^2 + lam ||W_without_bias||^2,

solved exactly from the normal equations. Several maps per image (e.g. two saliency methods)
and several grid sizes are concatenated into one feature vector.

Shapes: ``maps`` ``(N, H, W)`` float; features ``X`` ``(N, D)``; targets ``Y`` ``(N, 4)``;
weights ``(D + 1, 4)``, the last row the bias. Boxes follow :mod:`sensloc.localize.boxes`.
"""
import functools

import numpy as np
import scipy.linalg
import threadpoolctl

from sensloc.localize.boxes import as_boxes, as_size, scale_boxes, single_box
from sensloc.localize.folds import folds
from sensloc.localize.metrics import hits

CV_SCORES = ("corloc", "mse")


def area_average_matrix(length, n_cells):
    """``(n_cells, length)`` matrix whose row ``c`` averages a signal over grid cell ``c``.

    Cell ``c`` covers ``[c L / n, (c + 1) L / n)`` and pixel ``p`` covers ``[p, p + 1)``; the
    entry is the overlap of the two divided by the cell length ``L / n``. So each row sums to 1
    and the average is exact also when ``n`` does not divide ``L`` (a pixel straddling two
    cells is shared between them in proportion to its overlap).
    """
    edges = np.arange(n_cells + 1) * (length / n_cells)
    pixel_start = np.arange(length)[None, :]
    overlap = np.minimum(pixel_start + 1, edges[1:, None]) - np.maximum(pixel_start, edges[:-1, None])
    return np.clip(overlap, 0, None) / (length / n_cells)


def cell_means(maps, grid_hw):
    """Exact area averages of maps (N, H, W) over a ``grid_hw`` grid of cells -> (N, h, w),
    float64: ``g = A_rows m A_cols^T`` with the overlap matrices of :func:`area_average_matrix`."""
    maps = np.asarray(maps, np.float64)
    rows = area_average_matrix(maps.shape[1], grid_hw[0])
    cols = area_average_matrix(maps.shape[2], grid_hw[1])
    return np.einsum("ci,nij,dj->ncd", rows, maps, cols)


def grid_features(maps, n):
    """Area-average each map onto an ``n x n`` grid and normalize it to sum 1.

    ``g[c, d] = (1 / |cell|) integral over cell (c, d) of m`` (exactly, via
    ``g = A_rows m A_cols^T`` with the overlap matrices of :func:`area_average_matrix`), then
    ``x = g / sum(g)``: every cell has the same area, so ``x[c, d]`` is the *fraction of the
    map's total heat* that falls in the cell, independent of the map's scale and resolution.
    An all-zero map gives all-zero features. Because the features of one grid sum to 1 they
    are collinear with the bias column, so fit them with ``lam > 0`` (for ``lam = 0``
    :func:`fit_ridge` returns the minimum-norm solution).

    Parameters
    ----------
    maps : (N, H, W) float array, non-negative
        Heat maps (e.g. after ``saliency.postprocess.positive_part``).
    n : int >= 1
        Grid cells per side; may exceed H or W (cells then share pixels exactly).

    Returns
    -------
    (N, n * n) float64 array, row-major over the grid (cell row, then cell column)
    """
    maps = np.asarray(maps)
    if maps.dtype.kind not in "biuf":
        raise TypeError(f"maps must be a real numeric array; got dtype {maps.dtype}")
    if maps.ndim != 3 or maps.size == 0:
        raise ValueError(f"maps must be a non-empty (N, H, W) array; got shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps contain NaN or infinite values")
    if np.any(maps < 0):
        raise ValueError("maps must be non-negative (heat fractions); apply positive_part first")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"grid size n must be a positive integer; got {n!r}")
    cells = cell_means(maps, (n, n)).reshape(len(maps), n * n)
    totals = cells.sum(axis=1, keepdims=True)
    return np.where(totals > 0, cells / np.where(totals > 0, totals, 1), 0.0)


def stack_features(feature_arrays):
    """Concatenate feature blocks of the same images side by side.

    Parameters
    ----------
    feature_arrays : sequence of (N, D_i) arrays

    Returns
    -------
    (N, sum_i D_i) float64 array
    """
    blocks = [np.asarray(block, dtype=np.float64) for block in feature_arrays]
    if not blocks:
        raise ValueError("feature_arrays is empty")
    if any(block.ndim != 2 for block in blocks):
        raise ValueError(f"every feature block must be 2-D (N, D); got shapes {[b.shape for b in blocks]}")
    if len({block.shape[0] for block in blocks}) != 1:
        raise ValueError(f"feature blocks describe different numbers of images: {[b.shape[0] for b in blocks]}")
    return np.concatenate(blocks, axis=1)


def target_boxes(gt_boxes, image_sizes_wh, choice="largest"):
    """Regression targets: one ground-truth box per image, normalized by the image size.

    ``y_n = (xmin / W_n, ymin / H_n, xmax / W_n, ymax / H_n)`` of the image's largest box
    (``choice="largest"``) or of the hull of its boxes (``"hull"``).

    Parameters
    ----------
    gt_boxes : sequence of N arrays (K_n, 4) in pixels
    image_sizes_wh : (N, 2) array-like of (width, height)
    choice : {"largest", "hull"}

    Returns
    -------
    (N, 4) float64 array in [0, 1] for boxes inside their images
    """
    sizes = as_size(image_sizes_wh, "image_sizes_wh").reshape(-1, 2)
    if len(gt_boxes) != len(sizes):
        raise ValueError(f"need one image size per image: {len(gt_boxes)} box sets, {len(sizes)} sizes")
    chosen = np.stack([single_box(boxes, choice) for boxes in gt_boxes])
    return scale_boxes(chosen, sizes, np.ones_like(sizes))


def _with_bias(X):
    return np.hstack([X, np.ones((len(X), 1))])


def _check_design(X, Y=None):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a non-empty (N, D) array; got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    if Y is None:
        return X
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must be (N, T) with N = {X.shape[0]} rows like X; got shape {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN or infinite values")
    return X, Y


def fit_ridge(X, Y, lam):
    """Ridge regression with an unregularized bias, in closed form.

    With ``X1 = [X, 1]`` (a column of ones appended),

        W = (X1^T X1 + lam I')^-1 X1^T Y,

    ``I'`` the identity with a 0 in the bias position, so the bias is not shrunk (shifting
    every target by a constant shifts only the bias row). The symmetric system is solved by a
    Cholesky factorization. If it is not (numerically) positive definite, which for ``lam = 0``
    happens with collinear features or fewer images than features, the minimum-norm
    least-squares solution of the equivalent stacked system ``[X1; sqrt(lam) I'] W = [Y; 0]``
    is returned instead (``numpy.linalg.lstsq``).

    Parameters
    ----------
    X : (N, D) float array
    Y : (N, T) float array, T = 4 for box corners
    lam : float >= 0

    Returns
    -------
    (D + 1, T) float64 array, the last row the bias
    """
    X, Y = _check_design(X, Y)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0; got {lam}")
    X1 = _with_bias(X)
    W = solve_ridge(X1.T @ X1, X1.T @ Y, lam)
    if W is not None:
        return W
    stacked_X = np.vstack([X1, np.diag(np.sqrt(ridge_penalty(X1.shape[1], lam)))])
    stacked_Y = np.vstack([Y, np.zeros((X1.shape[1], Y.shape[1]))])
    return np.linalg.lstsq(stacked_X, stacked_Y, rcond=None)[0]


def ridge_penalty(size, lam):
    """The diagonal of ``lam I'``, (size,): ``lam`` everywhere but the bias (last) position."""
    penalty = np.full(size, float(lam))
    penalty[-1] = 0.0  # the bias is not shrunk
    return penalty


def solve_ridge(gram, moment, lam):
    """The ridge solution from the normal equations, ``(G + lam I')^-1 m``, or None if singular.

    ``G = X1^T X1`` (D + 1, D + 1) and ``m = X1^T Y`` (D + 1,) or (D + 1, T) for a design
    ``X1`` whose last column is the bias, which is not shrunk (:func:`ridge_penalty`). Callers
    that build ``G`` and ``m`` block by block (too many rows for memory) use this directly;
    :func:`fit_ridge` is the same solve from ``X`` and ``Y``.
    """
    return solve_normal_equations(gram + np.diag(ridge_penalty(len(gram), lam)), moment)


def solve_normal_equations(gram, moment):
    """``gram^-1 moment`` by a Cholesky factorization, or None if ``gram`` is singular.

    ``gram`` (D, D) is symmetric positive semi-definite (``X^T X`` plus a penalty). Collinear
    columns may still factor, with a pivot at rounding-error level; that counts as singular
    too rather than return huge, meaningless weights.
    """
    # One BLAS thread: a (D, D) factorization with D in the hundreds gains nothing from more,
    # and OpenBLAS's threads collapse when the cores are shared (measured 60x slower with 2
    # threads on 2 busy cores: 1.4 s instead of 0.023 s for D = 774).
    with _blas_controller().limit(limits=1, user_api="blas"):
        try:
            factor = scipy.linalg.cho_factor(gram)
        except np.linalg.LinAlgError:
            return None
        pivots = np.diag(factor[0]) ** 2
        if pivots.min() > len(gram) * np.finfo(float).eps * np.diag(gram).max():
            return scipy.linalg.cho_solve(factor, moment)
    return None


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, found once: finding them walks every
    shared library of the process, ~1 ms per ``threadpool_limits`` block, and the objectness
    fit of one evaluation solves ~180 systems of ~4 ms each."""
    return threadpoolctl.ThreadpoolController()


def predict(W, X):
    """Normalized boxes ``[X, 1] W``, made valid.

    Every coordinate is clipped to [0, 1] (the image), then each corner pair is put in order
    (``xmin, xmax = min, max`` of the two predicted x values, likewise for y): a regressor
    that swaps two corners still states the extent it predicts.

    Parameters
    ----------
    W : (D + 1, 4) array from :func:`fit_ridge`
    X : (N, D) array

    Returns
    -------
    (N, 4) float64 array of valid boxes inside [0, 1] x [0, 1]
    """
    X = _check_design(X)
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (X.shape[1] + 1, 4):
        raise ValueError(f"W must have shape ({X.shape[1] + 1}, 4) for {X.shape[1]} features; got {W.shape}")
    raw = np.clip(_with_bias(X) @ W, 0.0, 1.0)
    return np.column_stack([
        np.minimum(raw[:, 0], raw[:, 2]), np.minimum(raw[:, 1], raw[:, 3]),
        np.maximum(raw[:, 0], raw[:, 2]), np.maximum(raw[:, 1], raw[:, 3]),
    ])


def choose_lambda_cv(X, Y, lambdas, k=5, seed=0, score="corloc", gt_boxes=None, threshold=0.5):
    """Pick the ridge parameter by k-fold cross-validation inside the training data.

    The images are split into ``k`` folds by :func:`sensloc.localize.folds.folds` (seeded);
    for every ``lam`` a model is fitted on ``k - 1`` folds and scored on the held-out one, with
    the boxes :func:`predict` returns:

    - ``"mse"``: mean over images and corners of ``(y_hat - y)^2`` (lower is better),
    - ``"corloc"``: fraction of held-out images whose box has ``IoU >= threshold`` with one of
      their ground-truth boxes (higher is better). IoU is unchanged by scaling x and y, so it
      is computed in normalized coordinates. CorLoc takes few values, so ties are broken by
      the lower MSE.

    Parameters
    ----------
    X : (N, D) float array
    Y : (N, 4) float array of normalized target boxes
    lambdas : sequence of floats >= 0
    k : int, 2 <= k <= N
    seed : int
    score : {"corloc", "mse"}
    gt_boxes : sequence of N arrays (K_n, 4) in normalized coordinates, optional
        All ground-truth boxes for CorLoc (e.g. ``scale_boxes(boxes, size, (1, 1))``);
        by default each image's target box ``Y[n]`` is its only ground truth.
    threshold : float
        IoU needed for a CorLoc hit.

    Returns
    -------
    best_lambda : float
    scores : (len(lambdas),) float64 array
        Mean held-out score of each lambda (CorLoc or MSE, as asked).
    """
    X, Y = _check_design(X, Y)
    lambdas = np.asarray(lambdas, dtype=np.float64).ravel()
    if lambdas.size == 0 or np.any(~np.isfinite(lambdas) | (lambdas < 0)):
        raise ValueError(f"lambdas must be a non-empty list of finite numbers >= 0; got {lambdas.tolist()}")
    if score not in CV_SCORES:
        raise ValueError(f"score must be one of {CV_SCORES}; got {score!r}")
    if not isinstance(k, (int, np.integer)) or not 2 <= k <= len(X):
        raise ValueError(f"k must be an integer between 2 and the number of images {len(X)}; got {k!r}")
    if gt_boxes is None:
        gt_boxes = list(Y)
    elif len(gt_boxes) != len(X):
        raise ValueError(f"gt_boxes has {len(gt_boxes)} entries for {len(X)} images")

    fold = folds(len(X), k, seed)
    squared_error = np.zeros(len(lambdas))
    n_hits = np.zeros(len(lambdas))
    for f in range(k):
        train, held_out = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        for index, lam in enumerate(lambdas):
            boxes = predict(fit_ridge(X[train], Y[train], lam), X[held_out])
            squared_error[index] += np.sum((boxes - Y[held_out]) ** 2)
            if score == "corloc":
                n_hits[index] += hits(boxes, [gt_boxes[n] for n in held_out], threshold).sum()
    mse = squared_error / Y.size
    if score == "mse":
        return float(lambdas[np.argmin(mse)]), mse
    corloc = n_hits / len(X)
    # lexsort sorts by the last key first: highest CorLoc, then lowest MSE.
    return float(lambdas[np.lexsort((mse, -corloc))[0]]), corloc


class BoxRegressor:
    """Heat maps -> grid features -> ridge regression -> boxes in pixels.

    Parameters
    ----------
    grid_sizes : int or sequence of ints
        Grid cells per side; several sizes are concatenated (e.g. ``(2, 4, 8)``).
    lam : float >= 0
        Ridge parameter, or the one chosen by cross-validation in :meth:`fit`.
    target : {"largest", "hull"}
        Which box stands for an image with several ground-truth boxes.

    Attributes
    ----------
    weights : (D + 1, 4) float64 array or None before fitting
    n_maps : int or None
        Number of map kinds per image the model was fitted on.
    cv_scores : (L,) array or None
        Cross-validation CorLoc of each candidate lambda, when :meth:`fit` chose it.
    """

    def __init__(self, grid_sizes=(4,), lam=1.0, target="largest"):
        sizes = (grid_sizes,) if isinstance(grid_sizes, (int, np.integer)) else tuple(grid_sizes)
        if not sizes or any(not isinstance(n, (int, np.integer)) or n < 1 for n in sizes):
            raise ValueError(f"grid_sizes must be positive integers; got {grid_sizes!r}")
        if target not in ("largest", "hull"):
            raise ValueError(f"target must be 'largest' or 'hull'; got {target!r}")
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"lam must be a finite number >= 0; got {lam}")
        self.grid_sizes = tuple(int(n) for n in sizes)
        self.lam = float(lam)
        self.target = target
        self.weights = None
        self.n_maps = None
        self.cv_scores = None

    @staticmethod
    def _map_list(maps):
        """One ``(N, H, W)`` array, or a sequence of them (several map kinds), as a list."""
        if isinstance(maps, np.ndarray) and maps.ndim == 3:
            return [maps]
        maps = list(maps)
        if not maps or any(np.ndim(kind) != 3 for kind in maps):
            raise ValueError("maps must be an (N, H, W) array or a sequence of (N, H, W) arrays")
        return maps

    def features(self, maps):
        """``(N, D)`` features: every map kind on every grid size, D = n_maps * sum(n**2)."""
        return stack_features([grid_features(kind, n) for kind in self._map_list(maps) for n in self.grid_sizes])

    def fit(self, maps, gt_boxes, image_sizes, lambdas=None, k=5, seed=0):
        """Fit the weights; with ``lambdas``, first choose ``lam`` by k-fold CorLoc.

        Parameters
        ----------
        maps : (N, H, W) array or sequence of such arrays (several map kinds)
        gt_boxes : sequence of N arrays (K_n, 4) in pixels of each image
        image_sizes : (N, 2) array-like of (width, height) of the images the boxes refer to
        lambdas : sequence of floats, optional
            Candidates for :func:`choose_lambda_cv` (scored by CorLoc against all boxes).
        k, seed : int
            Folds and shuffling seed of the cross-validation.

        Returns
        -------
        self
        """
        map_list = self._map_list(maps)
        return self.fit_features(self.features(map_list), len(map_list), gt_boxes, image_sizes,
                                 lambdas, k, seed)

    def fit_features(self, X, n_maps, gt_boxes, image_sizes, lambdas=None, k=5, seed=0):
        """:meth:`fit` from the features ``X`` (N, D) of ``n_maps`` map kinds
        (:meth:`features`), for a caller that computed them in batches."""
        sizes = as_size(image_sizes, "image_sizes").reshape(-1, 2)
        Y = target_boxes(gt_boxes, sizes, self.target)
        if len(X) != len(Y):
            raise ValueError(f"{len(X)} maps but {len(Y)} images with boxes")
        if lambdas is not None:
            normalized_gt = [scale_boxes(as_boxes(b).reshape(-1, 4), s, (1.0, 1.0)) for b, s in zip(gt_boxes, sizes)]
            self.lam, self.cv_scores = choose_lambda_cv(X, Y, lambdas, k, seed, "corloc", normalized_gt)
        self.weights = fit_ridge(X, Y, self.lam)
        self.n_maps = int(n_maps)
        return self

    def predict(self, maps, image_sizes):
        """Boxes ``(N, 4)`` float64 in pixels of images of the given ``(N, 2)`` sizes."""
        if self.weights is None:
            raise ValueError("BoxRegressor is not fitted: call fit() or from_dict() first")
        map_list = self._map_list(maps)
        if len(map_list) != self.n_maps:
            raise ValueError(f"the model was fitted on {self.n_maps} map kind(s); got {len(map_list)}")
        return self.predict_features(self.features(map_list), image_sizes)

    def predict_features(self, X, image_sizes):
        """:meth:`predict` from the features ``X`` (N, D) (:meth:`features`)."""
        if self.weights is None:
            raise ValueError("BoxRegressor is not fitted: call fit() or from_dict() first")
        normalized = predict(self.weights, X)
        sizes = as_size(image_sizes, "image_sizes").reshape(-1, 2)
        if len(sizes) != len(normalized):
            raise ValueError(f"{len(normalized)} maps but {len(sizes)} image sizes")
        return scale_boxes(normalized, np.ones_like(sizes), sizes)

    def to_dict(self):
        """Plain values: ``grid_sizes`` (int64 array), ``lam``, ``target``, ``n_maps``, ``weights``."""
        if self.weights is None:
            raise ValueError("BoxRegressor is not fitted: nothing to save")
        return {
            "grid_sizes": np.array(self.grid_sizes, dtype=np.int64),
            "lam": self.lam,
            "target": self.target,
            "n_maps": int(self.n_maps),
            "weights": self.weights.copy(),
        }

    @classmethod
    def from_dict(cls, state):
        """Rebuild a fitted regressor from :meth:`to_dict`'s output."""
        missing = {"grid_sizes", "lam", "target", "n_maps", "weights"} - set(state)
        if missing:
            raise ValueError(f"BoxRegressor state lacks {sorted(missing)}")
        model = cls([int(n) for n in np.ravel(state["grid_sizes"])], float(state["lam"]), str(state["target"]))
        model.n_maps = int(state["n_maps"])
        weights = np.asarray(state["weights"], dtype=np.float64)
        n_features = model.n_maps * sum(n * n for n in model.grid_sizes)
        if weights.shape != (n_features + 1, 4):
            raise ValueError(f"weights must have shape ({n_features + 1}, 4) for this grid; got {weights.shape}")
        model.weights = weights
        return model
