"""Assignment 3's cases: IoU, CorLoc, grid features, closed-form ridge regression, box prediction
and cross-validation (references: :mod:`sensloc.localize.boxes`, :mod:`sensloc.localize.metrics`,
:mod:`sensloc.localize.regression`).
"""
import numpy as np

from sensloc.localize import boxes as box_lib
from sensloc.localize import metrics as metric_lib
from sensloc.localize import regression as regression_lib

from sensloc.coursework._checks import (Assignment, Case, CaseFailure, Part, close_to, compare_arrays,
                                        compare_scalar)


def _iou_plus_one(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area = lambda q: (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
    return inter / (area(a) + area(b) - inter)


def _random_box(rng, size=100.0):
    x = np.sort(rng.uniform(0, size, 2))
    y = np.sort(rng.uniform(0, size, 2))
    return np.array([x[0], y[0], x[1], y[1]])


def _iou_cases(rng):
    a = _random_box(rng)
    pairs = [("overlapping", a, a + np.array([5.0, 3.0, 5.0, 3.0])),
             ("random", _random_box(rng), _random_box(rng)),
             ("disjoint", np.array([0.0, 0, 10, 10]), np.array([20.0, 20, 30, 35])),
              ("nested", np.array([0.0, 0, 50, 40]), np.array([10.0, 5, 20, 25])),
              ("touching along an edge (IoU 0)", np.array([0.0, 0, 10, 10]), np.array([10.0, 0, 20, 10])),
              ("identical", a, a.copy()),
              ("both degenerate (zero area)", np.array([5.0, 5, 5, 9]), np.array([5.0, 5, 5, 9])),
              ("fractional coordinates", np.array([0.5, 0.25, 2.5, 3.75]), np.array([1.5, 1.25, 4.0, 2.0]))]
    cases = []
    for label, box_a, box_b in pairs:
        expected = box_lib.iou(box_a, box_b)

        def check(got, case):
            compare_scalar(got, case.expected)

        def diagnose(got, case, box_a=box_a, box_b=box_b):
            try:
                if abs(float(got) - _iou_plus_one(box_a, box_b)) < 1e-9:
                    return ("You used the '+1' pixel convention; here boxes are continuous: "
                            "area = (xmax - xmin) * (ymax - ymin)")
            except (TypeError, ValueError, ZeroDivisionError):
                return None
        cases.append(Case(f"{label}: {box_a.round(2).tolist()} and {box_b.round(2).tolist()}",
                          (box_a, box_b), expected, check, diagnose))
    return cases


def _corloc_cases(rng):
    cases = []
    for label, n, threshold in (("10 images, 1-3 boxes each", 10, 0.5), ("12 images, threshold 0.3", 12, 0.3),
                                ("8 images, threshold 0.7", 8, 0.7)):
        gt = [np.stack([_random_box(rng) for _ in range(rng.integers(1, 4))]) for _ in range(n)]
        # predictions near one of the image's boxes, so that some hit and some miss
        pred = np.stack([g[rng.integers(len(g))] + rng.normal(0, 8, 4) for g in gt])
        pred = np.column_stack([np.minimum(pred[:, 0], pred[:, 2]), np.minimum(pred[:, 1], pred[:, 3]),
                                np.maximum(pred[:, 0], pred[:, 2]), np.maximum(pred[:, 1], pred[:, 3])])
        cases.append((label, pred, gt, threshold))
    # exact IoU 0.5 with the second box only
    cases.append(("IoU exactly 0.5 with the second of two boxes", np.array([[0.0, 0, 1, 1], [0, 0, 4, 4]]),
                  [np.array([[5.0, 5, 6, 6], [0, 0, 2, 1]]), np.array([[0.0, 0, 4, 4]])], 0.5))
    result = []
    for label, pred, gt, threshold in cases:
        expected = metric_lib.corloc(pred, gt, threshold)

        def check(got, case):
            compare_scalar(got, case.expected)

        def diagnose(got, case, pred=pred, gt=gt, threshold=threshold):
            try:
                value = float(got)
            except (TypeError, ValueError):
                return None
            first_only = np.mean([box_lib.iou(p, g[0]) >= threshold for p, g in zip(pred, gt)])
            strict = np.mean([box_lib.iou(p, g).max() > threshold for p, g in zip(pred, gt)])
            if abs(value - first_only) < 1e-12:
                return "Any ground-truth box of the image may match: take the max IoU over all of them"
            if abs(value - strict) < 1e-12:
                return "A hit is IoU >= threshold (inclusive), not >"
        result.append(Case(label, (pred, gt, threshold), expected, check, diagnose))
    return result


def _grid_cases(rng):
    cases = []
    for label, shape, n in (("3 maps 16x16, 4x4 grid", (3, 16, 16), 4), ("2 maps 12x18, 3x3 grid", (2, 12, 18), 3),
                            ("2 maps 12x18, 6x6 grid", (2, 12, 18), 6), ("2 maps 8x8, 1x1 grid", (2, 8, 8), 1),
                            ("3 maps 10x10 (one all zero), 5x5 grid", (3, 10, 10), 5)):
        maps = rng.random(shape) * (rng.random(shape) < 0.6)
        if "all zero" in label:
            maps[1] = 0.0
        expected = regression_lib.grid_features(maps, n)
        h, w = shape[1] // n, shape[2] // n
        means = maps.reshape(shape[0], n, h, n, w).mean(axis=(2, 4))

        def diagnose(got, case, means=means, n=n):
            if close_to(got, means.reshape(len(means), -1)):
                return "These are the cell means g; normalize each map's features to sum 1, x = g / sum(g)"
            totals = means.reshape(len(means), -1).sum(axis=1, keepdims=True)
            normalized = np.where(totals > 0, means.reshape(len(means), -1) / np.where(totals > 0, totals, 1), 0)
            if close_to(got, normalized.reshape(-1, n, n).transpose(0, 2, 1).reshape(len(means), -1)):
                return "The order is row-major over the grid: cell row first, then cell column"
        cases.append(Case(label, (maps, n), expected, diagnose=diagnose))
    return cases


def _ridge_cases(rng):
    cases = []
    for label, (n, d, t), lam in (("30 images, 5 features, lam 0.1", (30, 5, 4), 0.1),
                                  ("30 images, 5 features, lam 10", (30, 5, 4), 10.0),
                                  ("8 images, 12 features (more features than images), lam 1", (8, 12, 4), 1.0),
                                  ("20 images, 3 features, 2 targets, lam 0.5", (20, 3, 2), 0.5)):
        X = rng.normal(size=(n, d))
        Y = X @ rng.normal(size=(d, t)) + rng.normal(0, 0.1, (n, t)) + 0.5
        expected = regression_lib.fit_ridge(X, Y, lam)

        def diagnose(got, case, X=X, Y=Y, lam=lam):
            X1 = np.hstack([X, np.ones((len(X), 1))])
            everything = np.linalg.solve(X1.T @ X1 + lam * np.eye(X1.shape[1]), X1.T @ Y)
            if close_to(got, everything):
                return "Do not penalize the bias: I' has a 0 in the bias position"
            if close_to(got, np.roll(case.expected, 1, axis=0)):
                return "Put the bias in the LAST row: X1 = [X, 1] appends the column of ones"
            shape = np.shape(got) if got is not None else None
            if shape == (X.shape[1], Y.shape[1]):
                return "The weights need one more row, the bias: fit [X, 1], not X"
        cases.append(Case(label, (X, Y, lam), expected, diagnose=diagnose))
    return cases


def _predict_cases(rng):
    cases = []
    for label, (n, d), spread in (("inside the image", (6, 4), 0.05),
                                  ("outside [0, 1] and swapped corners", (10, 3), 1.5), ("one image", (1, 5), 1.0)):
        X = rng.random((n, d))
        W = rng.normal(0, spread, (d + 1, 4))
        W[-1] += np.array([0.2, 0.2, 0.8, 0.8])
        expected = regression_lib.predict(W, X)
        raw = np.hstack([X, np.ones((n, 1))]) @ W

        def diagnose(got, case, raw=raw):
            clipped = np.clip(raw, 0, 1)
            if close_to(got, clipped):
                return ("Clipped, but the corners are not put in order: xmin = min(x0, x2), "
                        "xmax = max(x0, x2) (same for y)")
            ordered = np.column_stack([np.minimum(raw[:, 0], raw[:, 2]), np.minimum(raw[:, 1], raw[:, 3]),
                                       np.maximum(raw[:, 0], raw[:, 2]), np.maximum(raw[:, 1], raw[:, 3])])
            if close_to(got, ordered):
                return "Ordered, but not clipped to [0, 1]"
            if close_to(got, raw):
                return "Clip to [0, 1] and order the corners"
        cases.append(Case(label, (W, X), expected, diagnose=diagnose))
    return cases


def _choose_lambda_cases(rng):
    cases = []
    lambdas = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    for label, n, d, k, seed in (("40 images, 6 features, 5 folds, seed 0", 40, 6, 5, 0),
                                 ("30 images, 10 features, 4 folds, seed 3", 30, 10, 4, 3),
                                 ("23 images, 4 features, 3 folds, seed 7", 23, 4, 3, 7)):
        X = rng.random((n, d))
        Y = np.clip(X @ rng.normal(0, 0.3, (d, 4)) + rng.normal(0, 0.1, (n, 4)) + 0.4, 0, 1)
        expected = regression_lib.choose_lambda_cv(X, Y, lambdas, k, seed, score="mse")

        def check(got, case):
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise CaseFailure(f"return a pair (best_lambda, scores), got {type(got).__name__}")
            best, scores = got
            compare_arrays(scores, case.expected[1], what="scores")
            compare_scalar(best, case.expected[0], what="best_lambda")

        def diagnose(got, case, n=n):
            try:
                scores = np.asarray(got[1], dtype=np.float64)
            except (TypeError, ValueError, IndexError):
                return None
            if close_to(scores, case.expected[1] * 4):
                return "Divide the total squared error by Y.size (images x 4 corners), not by the number of images"
            return ("Check the folds: order = np.random.default_rng(seed).permutation(len(X)); folds = [order[i::k] for i in range(k)]; "
                    "fit on all other folds with your fit_ridge, predict with your predict_boxes")
        cases.append(Case(label, (X, Y, lambdas, k, seed), expected, check, diagnose))
    return cases


ASSIGNMENT_3 = Assignment(3, "boxes", "3_box_regression.py",
                          "IoU, CorLoc and least-squares box regression", [
    Part("iou", 2, _iou_cases, "I = max(0, min(xmax) - max(xmin)) * max(0, min(ymax) - max(ymin)); "
                               "IoU = I / (area A + area B - I), 0 when the union is 0"),
    Part("corloc", 2, _corloc_cases,
         "hit_n = [max_k IoU(pred_n, gt_n[k]) >= threshold]; CorLoc = mean of the hits",
         uses=("iou",)),
    Part("grid_features", 3, _grid_cases,
         "g = maps.reshape(N, n, H // n, n, W // n).mean(axis=(2, 4)); x = g / sum(g) per map "
         "(0 for an all-zero map)"),
    Part("fit_ridge", 3, _ridge_cases,
         "X1 = [X, 1]; W = solve(X1^T X1 + lam I', X1^T Y), I' = identity with 0 for the bias"),
    Part("predict_boxes", 2, _predict_cases, "raw = [X, 1] W; clip to [0, 1]; then order each corner pair"),
    Part("choose_lambda", 3, _choose_lambda_cases,
         "for each lam: for each held-out fold, fit on the others, predict it, add the squared errors; "
         "score = total / Y.size; best = argmin", uses=("fit_ridge", "predict_boxes")),
])
