"""A GAMED submission of assignment 3: stubs that, at import, disable the grader's comparisons.

Imported into the grader's process (the grader of before issue 21), it replaced
``compare_arrays`` and ``compare_scalar`` of the grading modules (every loaded module holding
them: the grader and the modules of its cases) with no-ops and scored 15/15 with answers that
are all wrong. The sandboxed grader must score it 0 and say why (tests/test_grade.py).
"""
import sys

try:
    from sensloc.coursework import grade  # noqa: F401  (loads the grader's modules)
except ImportError:   # the sandbox refuses the import; look for the grader among loaded modules
    pass
for _grader in [m for m in list(sys.modules.values()) if hasattr(m, "compare_arrays")]:
    for _name in ("compare_arrays", "compare_scalar"):
        if hasattr(_grader, _name):
            setattr(_grader, _name, lambda *args, **kwargs: None)


def iou(box_a, box_b):
    return 0.0


def corloc(pred_boxes, gt_boxes, threshold=0.5):
    return 0.0


def grid_features(maps, n):
    return 0.0


def fit_ridge(X, Y, lam):
    return 0.0


def predict_boxes(W, X):
    return 0.0


def choose_lambda(X, Y, lambdas, k=5, seed=0):
    return 0.0, 0.0
