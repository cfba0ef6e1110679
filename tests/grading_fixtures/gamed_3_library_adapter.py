"""A GAMED submission of assignment 3: every function delegates to the library.

Run inside the grader's process (the grader of before issue 21) it scores full marks; the grader
runs submissions in a sandbox that cannot import ``sensloc``, so it must score 0 with a message
(tests/test_grade.py).
"""
from sensloc.localize import boxes, metrics, regression


def iou(box_a, box_b):
    return boxes.iou(box_a, box_b)


def corloc(pred_boxes, gt_boxes, threshold=0.5):
    return metrics.corloc(pred_boxes, gt_boxes, threshold)


def grid_features(maps, n):
    return regression.grid_features(maps, n)


def fit_ridge(X, Y, lam):
    return regression.fit_ridge(X, Y, lam)


def predict_boxes(W, X):
    return regression.predict(W, X)


def choose_lambda(X, Y, lambdas, k=5, seed=0):
    return regression.choose_lambda_cv(X, Y, lambdas, k, seed, score="mse")
