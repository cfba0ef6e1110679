"""Localization scores: CorLoc, its top-1 variant, per class, with bootstrap confidence intervals.

A predicted box *hits* an image when its IoU with at least one of the image's ground-truth
boxes is ``>= threshold`` (0.5, the PASCAL criterion). CorLoc is the fraction of hits. The
top-1 variant (ILSVRC's top-1 localization accuracy) also demands that the predicted class is
the true class. Boxes follow the convention of :mod:`sensloc.localize.boxes`.
"""
import numpy as np

from sensloc.localize.boxes import as_boxes, best_ious


def _check_pairing(pred_boxes, gt_boxes):
    pred = np.asarray(pred_boxes)
    if pred.ndim not in (2, 3) or pred.shape[-1] != 4:
        raise ValueError(f"pred_boxes must have shape (N, 4) or (N, F, 4); got {pred.shape}")
    as_boxes(pred.reshape(-1, 4), "pred_boxes")
    if len(gt_boxes) != len(pred):
        raise ValueError(f"{len(pred)} predicted boxes but ground truth for {len(gt_boxes)} images")
    if len(pred) == 0:
        raise ValueError("no images to score: pred_boxes is empty")
    return pred


def hits(pred_boxes, gt_boxes, threshold=0.5):
    """``hit_n = [max_k IoU(pred_n, gt_n[k]) >= threshold]`` for every image ``n``.

    Parameters
    ----------
    pred_boxes : (N, 4) array, or (N, F, 4) for F candidate boxes per image
        One predicted box per image (or several, each scored on its own).
    gt_boxes : sequence of N arrays, the n-th of shape (K_n, 4) (or (4,))
        All ground-truth boxes of each image, in the same coordinates as ``pred_boxes``.
    threshold : float in (0, 1]

    Returns
    -------
    (N,) bool array, or (N, F) for candidates
    """
    pred = _check_pairing(pred_boxes, gt_boxes)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1]; got {threshold}")
    return best_ious(pred, gt_boxes) >= threshold


def corloc(pred_boxes, gt_boxes, threshold=0.5):
    """CorLoc ``= (1/N) sum_n hit_n``, the fraction of images localized (see :func:`hits`).

    Returns
    -------
    float in [0, 1]; for (N, F, 4) candidates, the (F,) CorLoc of each candidate column
    """
    found = hits(pred_boxes, gt_boxes, threshold)
    return float(np.mean(found)) if found.ndim == 1 else found.mean(axis=0)


def _as_labels(labels, name, length):
    labels = np.asarray(labels)
    if labels.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},); got {labels.shape}")
    return labels


def top1_hits(pred_boxes, gt_boxes, pred_classes, true_classes, threshold=0.5):
    """``hit_n and pred_class_n == true_class_n``: a hit with the right label.

    Parameters
    ----------
    pred_boxes, gt_boxes, threshold
        As in :func:`hits`.
    pred_classes, true_classes : (N,) arrays of class labels

    Returns
    -------
    (N,) bool array
    """
    box_hits = hits(pred_boxes, gt_boxes, threshold)
    pred_classes = _as_labels(pred_classes, "pred_classes", len(box_hits))
    true_classes = _as_labels(true_classes, "true_classes", len(box_hits))
    return box_hits & (pred_classes == true_classes)


def top1_corloc(pred_boxes, gt_boxes, pred_classes, true_classes, threshold=0.5):
    """Top-1 localization accuracy: the mean of :func:`top1_hits`, a float in [0, 1]."""
    return float(np.mean(top1_hits(pred_boxes, gt_boxes, pred_classes, true_classes, threshold)))


def _as_hits(hit_vector):
    hit_vector = np.asarray(hit_vector)
    if hit_vector.ndim != 1 or hit_vector.size == 0:
        raise ValueError(f"hits must be a non-empty 1-D array; got shape {hit_vector.shape}")
    if hit_vector.dtype != bool:
        if hit_vector.dtype.kind not in "iuf" or not np.all((hit_vector == 0) | (hit_vector == 1)):
            raise ValueError("hits must be boolean (or 0/1) values")
        hit_vector = hit_vector.astype(bool)
    return hit_vector


def per_class_corloc(hit_vector, classes):
    """CorLoc of each class: ``{c: mean(hits[classes == c])}``.

    Parameters
    ----------
    hit_vector : (N,) bool array
    classes : (N,) array of class labels (ints or strings)

    Returns
    -------
    dict mapping each label present (as a Python scalar), in sorted order, to a float
    """
    hit_vector = _as_hits(hit_vector)
    classes = _as_labels(classes, "classes", len(hit_vector))
    labels, inverse = np.unique(classes, return_inverse=True)
    hits_per_class = np.bincount(inverse, weights=hit_vector, minlength=len(labels))
    images_per_class = np.bincount(inverse, minlength=len(labels))
    return {label.item(): float(h / n) for label, h, n in zip(labels, hits_per_class, images_per_class)}


def bootstrap_ci(hit_vector, n_resamples=10000, level=0.95, seed=0):
    """Percentile bootstrap confidence interval of CorLoc (the mean of ``hits``).

    The bootstrap resamples the N images with replacement and recomputes the mean; the interval
    is the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of those means. For 0/1 values the
    number of hits in a resample of N images drawn with replacement is exactly
    ``Binomial(N, p)`` with ``p`` the observed CorLoc, so the counts are drawn directly: the
    same distribution as resampling indices, in O(n_resamples) memory instead of
    O(n_resamples * N).

    Parameters
    ----------
    hit_vector : (N,) bool array
    n_resamples : int >= 1
    level : float in (0, 1)
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns
    -------
    (low, high) : tuple of floats
    """
    hit_vector = _as_hits(hit_vector)
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    n_images = len(hit_vector)
    rng = np.random.default_rng(seed)
    resampled_means = rng.binomial(n_images, hit_vector.mean(), size=n_resamples) / n_images
    low, high = np.quantile(resampled_means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
