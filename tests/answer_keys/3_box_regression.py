"""ANSWER KEY (teachers only; not shipped with the package): assignment 3.

Written from the equations with NumPy alone; tests/test_grade.py checks it scores full marks.
The skeleton's text follows.
"""
"""Assignment 3: scoring boxes (IoU, CorLoc) and Ebrahimpour & Noelle's closed-form least-squares
box regression, with the ridge parameter chosen by cross-validation.

See ``tutorials/04_maps_to_boxes.ipynb``. Conventions of ``localize/boxes.py``:

* a box is ``(xmin, ymin, xmax, ymax)`` in *continuous* pixel coordinates: pixel
  ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``;
* ``area = (xmax - xmin) * (ymax - ymin)``, with no ``+ 1`` anywhere.

Rules of the game

* Use NumPy (``numpy.linalg`` is fine). The grader runs your file in a separate process that
  cannot import the library (``sensloc``): a file that tries scores 0.
* Keep the function names and signatures.

Grade your work::

    sensloc grade 3 path/to/3_box_regression.py       # or: python -m sensloc.coursework.grade 3 FILE

Parts and points: iou (2), corloc (2), grid_features (3), fit_ridge (3), predict_boxes (2),
choose_lambda (3).

Estimated time: 2 to 3 hours.
"""
import numpy as np


def iou(box_a, box_b):
    """Part 1. Intersection over union of two boxes, ``|A n B| / |A u B| = I / (area A + area B - I)``.

    Two boxes whose union has zero area (both degenerate) have IoU 0.

    Parameters
    ----------
    box_a, box_b : (4,) arrays

    Returns
    -------
    float
    """
    box_a, box_b = np.asarray(box_a, dtype=float), np.asarray(box_b, dtype=float)
    inter = (max(0.0, min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]))
             * max(0.0, min(box_a[3], box_b[3]) - max(box_a[1], box_b[1])))
    area = lambda box: (box[2] - box[0]) * (box[3] - box[1])
    union = area(box_a) + area(box_b) - inter
    return float(inter / union) if union > 0 else 0.0


def corloc(pred_boxes, gt_boxes, threshold=0.5):
    """Part 2. CorLoc: the fraction of images whose predicted box hits.

    ``hit_n = [max_k IoU(pred_n, gt_n[k]) >= threshold]`` (any ground-truth box of the image may
    match; the comparison is inclusive), and ``CorLoc = (1/N) sum_n hit_n``.

    Parameters
    ----------
    pred_boxes : (N, 4) array
    gt_boxes : list of N arrays, the n-th of shape (K_n, 4)
    threshold : float

    Returns
    -------
    float in [0, 1]
    """
    hits = [max(iou(pred, gt) for gt in np.asarray(boxes).reshape(-1, 4)) >= threshold
            for pred, boxes in zip(pred_boxes, gt_boxes)]
    return float(np.mean(hits))


def grid_features(maps, n):
    """Part 3. Average each heat map over an ``n x n`` grid of equal cells, then normalize.

    ``g[c, d]`` is the mean of the map over cell ``(c, d)`` (cell row ``c``, cell column ``d``), and
    ``x = g / sum(g)``: the fraction of the map's heat in each cell. An all-zero map gives
    all-zero features. In the graded cases H and W are multiples of n.

    Parameters
    ----------
    maps : (N, H, W) array, non-negative
    n : int

    Returns
    -------
    (N, n * n) array, row-major over the grid (cell row, then cell column)
    """
    N, H, W = maps.shape
    g = maps.reshape(N, n, H // n, n, W // n).mean(axis=(2, 4)).reshape(N, n * n)
    total = g.sum(axis=1, keepdims=True)
    return np.where(total > 0, g / np.where(total > 0, total, 1.0), 0.0)


def fit_ridge(X, Y, lam):
    """Part 4. Ridge regression with an unregularized bias, in closed form.

    With ``X1 = [X, 1]`` (a column of ones appended) the weights minimize
    ``||[X, 1] W - Y||^2 + lam ||W_without_bias||^2``; the normal equations give

        W = (X1^T X1 + lam I')^-1 X1^T Y,

    ``I'`` the identity with a 0 in the bias position. In the graded cases ``lam > 0`` and the
    system has a unique solution.

    Parameters
    ----------
    X : (N, D) array
    Y : (N, T) array
    lam : float > 0

    Returns
    -------
    (D + 1, T) array, the LAST row the bias
    """
    X1 = np.hstack([X, np.ones((len(X), 1))])
    penalty = lam * np.eye(X1.shape[1])
    penalty[-1, -1] = 0.0   # the bias is not penalized
    return np.linalg.solve(X1.T @ X1 + penalty, X1.T @ Y)


def predict_boxes(W, X):
    """Part 5. Normalized boxes ``[X, 1] W``, made valid.

    Clip every coordinate to [0, 1], then put each corner pair in order:
    ``xmin, xmax = min, max`` of the two predicted x values (columns 0 and 2), likewise for y
    (columns 1 and 3).

    Parameters
    ----------
    W : (D + 1, 4) array, the last row the bias
    X : (N, D) array

    Returns
    -------
    (N, 4) array of valid boxes inside [0, 1] x [0, 1]
    """
    raw = np.clip(np.hstack([X, np.ones((len(X), 1))]) @ W, 0.0, 1.0)
    return np.column_stack([np.minimum(raw[:, 0], raw[:, 2]), np.minimum(raw[:, 1], raw[:, 3]),
                            np.maximum(raw[:, 0], raw[:, 2]), np.maximum(raw[:, 1], raw[:, 3])])


def choose_lambda(X, Y, lambdas, k=5, seed=0):
    """Part 6. Choose the ridge parameter by k-fold cross-validation of the squared error.

    Shuffle and split exactly like this (the grader checks the numbers)::

        order = np.random.default_rng(seed).permutation(len(X))
        folds = [order[i::k] for i in range(k)]    # dealt out in turn, as sensloc.localize.folds

    For every ``lam`` and every fold: fit with your ``fit_ridge`` on the other folds, predict the
    fold's boxes with your ``predict_boxes``, and add up the squared errors ``(y_hat - y)^2``.
    The score of ``lam`` is the mean squared error over all images and all 4 corners (the total
    divided by ``Y.size``). The best ``lam`` has the lowest score (the first one on ties).

    Parameters
    ----------
    X : (N, D) array
    Y : (N, 4) array of normalized boxes
    lambdas : sequence of floats > 0
    k, seed : int

    Returns
    -------
    best_lambda : float
    scores : (len(lambdas),) array of mean squared errors
    """
    order = np.random.default_rng(seed).permutation(len(X))
    folds = [order[i::k] for i in range(k)]
    scores = np.zeros(len(lambdas))
    for index, lam in enumerate(lambdas):
        for fold in folds:
            train = np.setdiff1d(np.arange(len(X)), fold)
            boxes = predict_boxes(fit_ridge(X[train], Y[train], lam), X[fold])
            scores[index] += np.sum((boxes - Y[fold]) ** 2)
    scores /= Y.size
    return float(lambdas[int(np.argmin(scores))]), scores
