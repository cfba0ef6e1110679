"""Fold assignment for k-fold cross-validation: the one used everywhere in ``localize``.

The evaluation's outer cross-validation (:func:`sensloc.localize.protocols.cross_validated_boxes`),
the regression's choice of lambda (:func:`sensloc.localize.regression.choose_lambda_cv`) and the
objectness map's inner folds all split images with :func:`folds`, so one seed means one split.
"""
import numpy as np


def folds(n, k, seed=0):
    """A fold index in ``[0, k)`` for each of ``n`` images: a seeded shuffle dealt out in turn.

    ``order = permutation(n)`` (``numpy.random.default_rng(seed)``), then the image at
    position ``j`` of ``order`` goes to fold ``j mod k``; folds differ in size by at most one.

    Parameters
    ----------
    n : int
        Number of images.
    k : int, 2 <= k <= n
    seed : int

    Returns
    -------
    (n,) int64 array
    """
    if not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ValueError(f"cross-validation needs 2 <= k <= number of images ({n}), got k={k!r}")
    order = np.random.default_rng(seed).permutation(n)
    assignment = np.empty(n, np.int64)
    assignment[order] = np.arange(n) % k
    return assignment
