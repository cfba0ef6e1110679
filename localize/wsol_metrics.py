"""The field's standard map-only localization metrics: MaxBoxAcc (V1, V2) and the pointing games.

These score a *score map* against ground-truth boxes, with no network. The metrics that need the
network (deletion and insertion, the randomization sanity check) live in
:mod:`sensloc.evaluation.faithfulness`. IoU and CorLoc are :mod:`sensloc.localize.boxes`'s and
:mod:`sensloc.localize.metrics`'s (one implementation each); boxes follow the convention of
:mod:`sensloc.localize.boxes` (continuous pixel coordinates, no ``+ 1``).

MaxBoxAcc (Choe et al., "Evaluating weakly supervised object localization methods right",
CVPR 2020; reference code clovaai/wsolevaluation, ``BoxEvaluator``)
    Each map is min-max normalized to [0, 1] and quantized to 8 bits, ``q = floor(255 m)``. At
    every threshold ``tau`` of ``0, 0.01, ..., 0.99`` (``cam_curve_interval = 0.01``) the pixels
    ``q > floor(tau * max q)`` are kept and boxed. V1 boxes the largest region and counts an
    image correct when that box has IoU >= 0.5 with some ground-truth box; V2 boxes every region
    and counts the best match, at each of IoU 0.3, 0.5 and 0.7. The accuracy at a threshold is
    the share of correct images; MaxBoxAcc is its maximum over thresholds (V2: the mean of the
    three maxima, each at its own best threshold). The reference takes the maximum on the images
    it scores; :func:`cross_validated_accuracy` chooses the threshold on the training folds
    instead, as every other number of this project does.

    Where this code departs from the reference, and why: regions are 8-connected components
    (``scipy.ndimage.label``), the largest by pixel count, where the reference takes OpenCV
    contours (``cv2.findContours``, ``RETR_TREE``), the largest by polygon area, and in V2 also
    the boxes of the contours of holes; and the reference's boxes are ``(x, y, x + w, y + h)``
    read with its ``+ 1`` convention (one pixel wider and taller than the region, except at the
    image border, where it clips to ``W - 1``), where ours are the region's exact box. A
    threshold with no pixel gives no box (the reference's ``[0, 0, 0, 0]``): that image is a miss.

Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV 2016;
reference code facebookresearch/TorchRay, ``torchray/benchmark/pointing_game.py``)
    The map's maximum is a point ``(u, v)`` (a pixel's column and row); it is a hit when some
    pixel of the ground-truth region lies at distance ``< 15`` pixels,
    ``(i - v)^2 + (j - u)^2 < 15^2``. The accuracy is the hit rate of each class, averaged over
    classes (TorchRay's ``PointingGame.accuracy``). TorchRay's "difficult" subsets are lists of
    PASCAL VOC and COCO images; no such list exists for ImageNet, so every image counts.

Energy-based pointing game (Wang et al., "Score-CAM: score-weighted visual explanations for
convolutional neural networks", CVPR workshops 2020, Sec. 4.2)
    ``E = sum_{(i,j) in boxes} m+_ij / sum_(i,j) m+_ij``, the share of the map's positive mass
    inside the ground-truth boxes (their union), averaged over images.
"""
import numpy as np
from scipy import ndimage

from sensloc.localize.boxes import EIGHT_CONNECTED, as_boxes, broadcast_iou

#: The score-map thresholds of MaxBoxAcc: ``0, 0.01, ..., 0.99`` (wsolevaluation's
#: ``cam_curve_interval = 0.01``).
CAM_THRESHOLDS = np.arange(0, 1, 0.01)
#: IoU levels: V1 scores at 0.5, V2 averages 0.3, 0.5 and 0.7.
IOU_V1 = (0.5,)
IOU_V2 = (0.3, 0.5, 0.7)
#: The pointing game's tolerance in pixels (TorchRay's default).
POINTING_TOLERANCE = 15


def _as_maps(maps):
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3 or maps.size == 0:
        raise ValueError(f"maps must be a non-empty (N, H, W) array; got shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps contain NaN or infinite values")
    return maps


def normalize_scoremaps(maps):
    """Min-max normalization of each map, ``(m - min m) / (max m - min m)``, (N, H, W) in [0, 1].

    A constant map becomes all zeros (the reference's ``normalize_scoremap``): it has no hot
    region at any threshold.

    Parameters
    ----------
    maps : (N, H, W) float array

    Returns
    -------
    (N, H, W) float64 array
    """
    maps = _as_maps(maps)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


def region_boxes(mask):
    """Boxes of the 8-connected regions of a mask, and which is the largest.

    Parameters
    ----------
    mask : (H, W) bool array

    Returns
    -------
    boxes : (R, 4) float64 array, one box per region in label order (R = 0 for an empty mask)
    largest : int
        Index of the region with the most pixels (the first among ties); -1 if there is none.
    """
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return np.zeros((0, 4)), -1
    slices = ndimage.find_objects(labels)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], np.float64)
    sizes = np.bincount(labels.ravel())[1:]
    return boxes, int(np.argmax(sizes))


def threshold_ious(maps, gt_boxes, thresholds=CAM_THRESHOLDS):
    """The best IoU of each map's boxes at every threshold: the one pass behind MaxBoxAcc V1 and V2.

    At threshold ``tau``: the regions of ``q_n > floor(tau max q_n)``, ``q_n = floor(255 m_n)``
    and ``m_n`` the min-max normalized map (see the module docstring), each boxed;
    ``largest[n, t] = max_k IoU(box of the largest region, gt_n[k])`` (V1) and
    ``every[n, t] = max_r max_k IoU(box of region r, gt_n[k])`` (V2). No region: IoU 0.

    Parameters
    ----------
    maps : (N, H, W) float array
        Score maps, any range (normalized here).
    gt_boxes : sequence of N arrays (K_n, 4)
        Ground-truth boxes in the maps' pixel coordinates.
    thresholds : (T,) floats in [0, 1)

    Returns
    -------
    largest, every : (N, T) float64 arrays
    """
    quantized = np.floor(normalize_scoremaps(maps) * 255)
    if len(gt_boxes) != len(quantized):
        raise ValueError(f"{len(quantized)} maps but ground truth for {len(gt_boxes)} images")
    thresholds = np.asarray(thresholds, np.float64)
    largest = np.zeros((len(quantized), len(thresholds)))
    every = np.zeros_like(largest)
    for n, (q, truth) in enumerate(zip(quantized, gt_boxes)):
        truth = as_boxes(truth, "gt_boxes").reshape(-1, 4)
        for t, tau in enumerate(thresholds):
            boxes, top = region_boxes(q > np.floor(tau * q.max()))
            if top < 0:
                continue  # no region above the threshold: no box, a miss
            overlap = broadcast_iou(boxes[:, None], truth[None]).max(axis=1)  # (R,)
            largest[n, t], every[n, t] = overlap[top], overlap.max()
    return largest, every


def box_accuracy_hits(maps, gt_boxes, thresholds=CAM_THRESHOLDS, iou_levels=IOU_V1,
                      multi_region=False):
    """Per image, threshold and IoU level: is the map's box correct? The counts behind MaxBoxAcc.

    ``hit[n, t, l] = IoU_n(tau_t) >= iou_levels[l]`` with the IoU of :func:`threshold_ious`:
    the largest region's (V1, ``multi_region=False``) or the best region's (V2).

    Returns
    -------
    (N, T, L) bool array
    """
    largest, every = threshold_ious(maps, gt_boxes, thresholds)
    return levels_hit(every if multi_region else largest, iou_levels)


def levels_hit(ious, iou_levels):
    """``ious[..., None] >= iou_levels``: (N, T) IoUs -> (N, T, L) hits."""
    return np.asarray(ious)[..., None] >= np.asarray(iou_levels, np.float64)


def max_box_accuracy(hits):
    """The reference's MaxBoxAcc: the best accuracy over thresholds on the images themselves.

    Parameters
    ----------
    hits : (N, T, L) bool array from :func:`box_accuracy_hits`

    Returns
    -------
    accuracy : float, ``mean_l max_t mean_n hits[n, t, l]`` (V1 has L = 1)
    best_thresholds : (L,) int array, the index of the best threshold per level (first on ties)
    """
    curves = np.asarray(hits, bool).mean(axis=0)  # (T, L)
    return float(curves.max(axis=0).mean()), curves.argmax(axis=0)


def cross_validated_hits(hits, fold):
    """Each image scored at the threshold that is best on the *other* folds.

    For fold ``f`` and level ``l``: ``t_f = argmax_t mean_{n not in f} hits_f[n, t, l]`` (the
    smallest threshold among ties), then ``cv[n, l] = hits_f[n, t_f, l]`` for ``n`` in ``f``.
    ``hits_f`` is ``hits`` itself, or, for a map that depends on a fit, the f-th of k arrays:
    every image scored on the map of the protocol fitted without fold ``f``.

    Parameters
    ----------
    hits : (N, T, L) bool array, or a sequence of k of them (one per fold)
    fold : (N,) int array of fold indices ``0 .. k - 1`` (:func:`sensloc.localize.folds.folds`)

    Returns
    -------
    cv_hits : (N, L) bool array
    chosen : (k, L) int array, the threshold index chosen for each fold and level
    """
    fold = np.asarray(fold)
    k = int(fold.max()) + 1
    per_fold = [np.asarray(hits, bool)] * k if isinstance(hits, np.ndarray) else \
        [np.asarray(h, bool) for h in hits]
    if len(per_fold) != k or any(h.shape[0] != len(fold) or h.ndim != 3 for h in per_fold):
        raise ValueError(f"hits must be (N, T, L) with N = {len(fold)}, or one such array per fold")
    cv = np.zeros((len(fold), per_fold[0].shape[2]), bool)
    chosen = []
    for f, h in enumerate(per_fold):
        best = h[fold != f].mean(axis=0).argmax(axis=0)  # (L,)
        cv[fold == f] = h[fold == f][:, best, np.arange(h.shape[2])]
        chosen.append(best)
    return cv, np.array(chosen)


def peak_points(maps):
    """The maximum of each map as a point ``(x, y)`` at the centre of its pixel, (N, 2).

    The first maximum in raster order (``numpy.argmax``) on ties.
    """
    maps = _as_maps(maps)
    rows, cols = np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])
    return np.stack([cols + 0.5, rows + 0.5], axis=1)


def pointing_hits(points, gt_boxes, tolerance=POINTING_TOLERANCE):
    """The pointing game: is the point within ``tolerance`` pixels of a ground-truth box?

    The point lies in pixel ``(u, v) = (floor x, floor y)``; a box covers the pixels whose
    centres it contains, columns ``j`` with ``xmin <= j + 1/2 < xmax`` (all pixels of an
    integer box ``[xmin, xmax)``). Hit when ``(i - v)^2 + (j - u)^2 < tolerance^2`` for some
    covered pixel ``(i, j)`` (TorchRay's strict inequality): the distance from ``(u, v)`` to the
    nearest covered pixel is ``dx = max(j0 - u, 0, u - j1)`` (``j0, j1`` the first and last
    column), likewise ``dy``.

    Parameters
    ----------
    points : (N, 2) float array of ``(x, y)`` in the boxes' pixel coordinates
    gt_boxes : sequence of N arrays (K_n, 4)
    tolerance : float > 0, pixels

    Returns
    -------
    (N,) bool array
    """
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(gt_boxes):
        raise ValueError(f"points must have shape ({len(gt_boxes)}, 2); got {points.shape}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive; got {tolerance}")
    found = np.zeros(len(points), bool)
    for n, ((x, y), truth) in enumerate(zip(points, gt_boxes)):
        truth = as_boxes(truth, "gt_boxes").reshape(-1, 4)
        u, v = np.floor(x), np.floor(y)
        first = np.ceil(truth[:, :2] - 0.5)  # first covered column, row
        last = np.ceil(truth[:, 2:] - 0.5) - 1  # last covered column, row
        covers = np.all(last >= first, axis=1)  # a box narrower than a pixel centre covers none
        dx = np.maximum.reduce([first[:, 0] - u, np.zeros(len(truth)), u - last[:, 0]])
        dy = np.maximum.reduce([first[:, 1] - v, np.zeros(len(truth)), v - last[:, 1]])
        found[n] = np.any(covers & (dx ** 2 + dy ** 2 < tolerance ** 2))
    return found


def class_mean_accuracy(hits, classes):
    """TorchRay's pointing accuracy: the hit rate of each class, averaged over the classes."""
    hits, classes = np.asarray(hits, bool), np.asarray(classes)
    labels, inverse = np.unique(classes, return_inverse=True)
    per_class = np.bincount(inverse, weights=hits) / np.bincount(inverse)
    return float(per_class.mean())


def box_mask(gt_boxes, shape_hw):
    """(H, W) bool: the pixels whose centres lie in at least one box (K, 4)."""
    height, width = shape_hw
    rows, cols = np.arange(height) + 0.5, np.arange(width) + 0.5
    mask = np.zeros((height, width), bool)
    for xmin, ymin, xmax, ymax in as_boxes(gt_boxes, "gt_boxes").reshape(-1, 4):
        mask |= ((rows >= ymin) & (rows < ymax))[:, None] & ((cols >= xmin) & (cols < xmax))[None]
    return mask


def energy_in_boxes(maps, gt_boxes):
    """Energy-based pointing game: ``E_n = sum_{boxes} max(m, 0) / sum max(m, 0)`` per image.

    Parameters
    ----------
    maps : (N, H, W) float array
    gt_boxes : sequence of N arrays (K_n, 4) in the maps' pixel coordinates

    Returns
    -------
    (N,) float array in [0, 1]; a map with no positive value has no energy anywhere: 0
    """
    maps = np.maximum(_as_maps(maps), 0)
    if len(gt_boxes) != len(maps):
        raise ValueError(f"{len(maps)} maps but ground truth for {len(gt_boxes)} images")
    share = np.zeros(len(maps))
    for n, (m, truth) in enumerate(zip(maps, gt_boxes)):
        total = m.sum()
        if total > 0:
            share[n] = m[box_mask(truth, m.shape)].sum() / total
    return share
