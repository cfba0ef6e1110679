"""Boxes: from hot pixels to a box, moving boxes between resolutions, and their overlap.

Coordinate convention (used by every module of ``localize``)
------------------------------------------------------------
A box is ``(xmin, ymin, xmax, ymax)``, float64, in *continuous* pixel coordinates of its image:
pixel ``(row i, column j)`` covers the unit square ``[j, j + 1) x [i, i + 1)``. So

- the box of a set of pixels is ``(min col, min row, max col + 1, max row + 1)``,
- the whole ``W x H`` image is ``(0, 0, W, H)``,
- ``area = (xmax - xmin) * (ymax - ymin)``, with no ``+ 1`` anywhere,
- changing resolution is a pure scaling of the coordinates (:func:`scale_boxes`).

A box is valid when its coordinates are finite, ``xmin <= xmax`` and ``ymin <= ymax``.
Several boxes are a ``(K, 4)`` array; a single box may also be given as ``(4,)``.
"""
import numpy as np

BOX_MODES = ("largest", "union")
BOX_CHOICES = ("largest", "hull")

# 8-connectivity: pixels touching only at a corner belong to the same component.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def as_boxes(boxes, name="boxes"):
    """``boxes`` as a validated float64 array of shape ``(4,)`` or ``(K, 4)``.

    Raises
    ------
    TypeError
        For non-numeric input.
    ValueError
        For a wrong shape, NaN/infinite coordinates, or ``xmin > xmax`` / ``ymin > ymax``.
    """
    array = np.asarray(boxes)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (4,) or (K, 4); got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    inverted = (array[..., 0] > array[..., 2]) | (array[..., 1] > array[..., 3])
    if np.any(inverted):
        first = array.reshape(-1, 4)[np.flatnonzero(inverted)[0]]
        raise ValueError(f"{name} has a box with xmin > xmax or ymin > ymax: {first.tolist()}")
    return array


def as_size(size_wh, name="image_size_wh"):
    """``size_wh`` as a float64 array ``(2,)`` or ``(N, 2)`` of positive ``(width, height)``."""
    array = np.asarray(size_wh)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric (width, height); got dtype {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (2,) or (N, 2) as (width, height); got {array.shape}")
    if not np.all(np.isfinite(array) & (array > 0)):
        raise ValueError(f"{name} must be positive and finite; got {array.tolist()}")
    return array


def box_area(boxes):
    """``(xmax - xmin) * (ymax - ymin)``.

    Parameters
    ----------
    boxes : (4,) or (K, 4) array

    Returns
    -------
    float or (K,) float64 array
    """
    boxes = as_boxes(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def whole_image(image_size_wh):
    """The box ``(0, 0, W, H)`` of a whole ``W x H`` image, ``(4,)`` float64 (``(N, 4)`` for ``(N, 2)`` sizes)."""
    size = as_size(image_size_wh)
    zeros = np.zeros_like(size)
    return np.concatenate([zeros, size], axis=-1)


def single_box(boxes, choice="largest"):
    """One box standing for all the ground-truth boxes of an image.

    ``"largest"``: the box of largest area (the first on ties); ``"hull"``: the smallest box
    containing them all, ``(min xmin, min ymin, max xmax, max ymax)``.

    Parameters
    ----------
    boxes : (K, 4) or (4,) array, K >= 1
    choice : {"largest", "hull"}

    Returns
    -------
    (4,) float64 array
    """
    boxes = as_boxes(boxes).reshape(-1, 4)
    if len(boxes) == 0:
        raise ValueError("boxes is empty: an image needs at least one box")
    if choice not in BOX_CHOICES:
        raise ValueError(f"choice must be one of {BOX_CHOICES}; got {choice!r}")
    if choice == "largest":
        return boxes[np.argmax(box_area(boxes))].copy()
    return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])


def box_from_mask(mask, mode="largest", heatmap=None):
    """The box of the hot pixels of a boolean mask.

    ``"union"``: the bounding box of all True pixels. ``"largest"``: the bounding box of the
    largest 8-connected component (``scipy.ndimage.label`` with a 3x3 structure of ones),
    largest by pixel count; ties go to the component with the larger sum of ``heatmap`` if a
    heat map is given, else to the first component in raster order.

    An empty mask returns the whole image ``(0, 0, W, H)``: a map with no hot pixel cannot
    localize anything better than the whole image, and an evaluation must still score it.

    Parameters
    ----------
    mask : (H, W) bool array
    mode : {"largest", "union"}
    heatmap : (H, W) float array, optional
        Only used to break ties between equally large components.

    Returns
    -------
    (4,) float64 array ``(xmin, ymin, xmax, ymax)``
    """
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a boolean array (threshold the map first); got dtype {mask.dtype}")
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D (H, W) array; got shape {mask.shape}")
    if mode not in BOX_MODES:
        raise ValueError(f"mode must be one of {BOX_MODES}; got {mode!r}")
    if heatmap is not None:
        heatmap = np.asarray(heatmap, dtype=np.float64)
        if heatmap.shape != mask.shape:
            raise ValueError(f"heatmap shape {heatmap.shape} differs from mask shape {mask.shape}")
    height, width = mask.shape
    if not mask.any():
        return whole_image((width, height))
    if mode == "largest":
        from scipy import ndimage  # here: a fresh process pays ~0.5 s to import it
        labels, n_components = ndimage.label(mask, structure=EIGHT_CONNECTED)
        if n_components > 1:  # (one component is the whole mask, boxed below)
            sizes = np.bincount(labels.ravel())[1:]  # label 0 is the background
            candidates = np.flatnonzero(sizes == sizes.max()) + 1
            if heatmap is not None and len(candidates) > 1:
                heat = ndimage.sum_labels(heatmap, labels, candidates)
                candidates = candidates[[np.argmax(heat)]]
            rows, cols = ndimage.find_objects(labels, candidates[0])[-1]  # its bounding slices
            return np.array([cols.start, rows.start, cols.stop, rows.stop], dtype=np.float64)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def boxes_from_heatmap(heatmap, fraction, mode="largest"):
    """Threshold each map at ``fraction * max`` and box the hot pixels.

    Hot pixels are ``m[i, j] >= fraction * max m`` (Simonyan et al.'s protocol), then
    :func:`box_from_mask` with ``mode``, breaking ties with the heat. A map with no positive
    value has no hot region and yields the whole image box.

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array
    fraction : float in (0, 1]
    mode : {"largest", "union"}

    Returns
    -------
    (4,) float64 array for one map, (N, 4) for a batch
    """
    maps = _checked_heatmaps(heatmap, [fraction], (2, 3))
    boxes = _boxes_at_fractions(maps.reshape((-1,) + maps.shape[-2:]), [fraction], mode)
    return boxes[:, 0].reshape(maps.shape[:-2] + (4,))


def boxes_at_fractions(heatmaps, fractions, mode):
    """:func:`boxes_from_heatmap` of every map at every fraction, ``(N, F, 4)``, computed at
    once: :func:`union_boxes` or :func:`largest_component_boxes` by ``mode``.

    Parameters
    ----------
    heatmaps : (N, H, W) float array
    fractions : sequence of F floats in (0, 1]
    mode : {"largest", "union"}

    Returns
    -------
    (N, F, 4) float64 array
    """
    return _boxes_at_fractions(_checked_heatmaps(heatmaps, fractions, (3,)), fractions, mode)


def _boxes_at_fractions(maps, fractions, mode):
    """:func:`boxes_at_fractions` of checked maps (N, H, W)."""
    if mode not in BOX_MODES:
        raise ValueError(f"mode must be one of {BOX_MODES}; got {mode!r}")
    return (union_boxes if mode == "union" else largest_component_boxes)(maps, fractions)


def _checked_heatmaps(heatmap, fractions, ndims):
    """``heatmap`` as an array, refused in one line unless real, finite, non-empty and of one
    of the ``ndims``, with every fraction in (0, 1]."""
    maps = np.asarray(heatmap)
    if maps.dtype.kind not in "biuf":
        raise TypeError(f"heatmap must be a real numeric array; got dtype {maps.dtype}")
    if maps.ndim not in ndims or maps.size == 0:
        shapes = " or ".join({2: "(H, W)", 3: "(N, H, W)"}[d] for d in ndims)
        raise ValueError(f"heatmap must be a non-empty {shapes} array; got shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("heatmap contains NaN or infinite values")
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must lie in (0, 1]; got {fraction}")
    return maps


def pixel_boxes(boxes):
    """Boxes whose corners lie on pixel edges, stored as int16: the same numbers in a quarter
    of float64's memory.

    The union and component boxes of a map (:func:`union_boxes`, :func:`boxes_from_heatmap`)
    are whole pixels, and a dataset's reductions keep dozens of them per image (a box search
    keeps one per grid point): the threshold protocols and the ``mix`` box search store their
    candidate boxes through this one rule. Boxes that are not all whole numbers in
    ``[0, 32767]`` are returned unchanged. Arithmetic on int16 would overflow (an area of 227 x 227 px does): every
    function of this module reads boxes as float64.

    Parameters
    ----------
    boxes : (..., 4) float array

    Returns
    -------
    (..., 4) int16 array, or ``boxes`` itself
    """
    boxes = np.asarray(boxes)
    if boxes.size and (boxes.min() < 0 or boxes.max() > np.iinfo(np.int16).max):
        return boxes
    stored = boxes.astype(np.int16)
    return stored if np.array_equal(stored, boxes) else boxes


def scale_boxes(boxes, from_size_wh, to_size_wh):
    """Move boxes from an image of one size to the same image resized (squashed) to another.

    ``x' = x * W_to / W_from`` and ``y' = y * H_to / H_from``: exact in continuous coordinates,
    whatever the aspect ratios (e.g. a box found on the 227x227 network input, back to the
    500x375 photo).

    Parameters
    ----------
    boxes : (4,) or (K, 4) array
    from_size_wh, to_size_wh : (2,) array-like, or (K, 2) for one size per box

    Returns
    -------
    float64 array of the shape of ``boxes``
    """
    boxes = as_boxes(boxes)
    ratio = as_size(to_size_wh, "to_size_wh") / as_size(from_size_wh, "from_size_wh")
    return boxes * np.concatenate([ratio, ratio], axis=-1)


def clip_boxes(boxes, image_size_wh):
    """Clip boxes to the image: ``x`` into ``[0, W]``, ``y`` into ``[0, H]``.

    Parameters
    ----------
    boxes : (4,) or (K, 4) array
    image_size_wh : (2,) array-like, or (K, 2) for one size per box

    Returns
    -------
    float64 array of the shape of ``boxes``
    """
    boxes = as_boxes(boxes)
    size = as_size(image_size_wh)
    return np.clip(boxes, 0, np.concatenate([size, size], axis=-1))


def iou(boxes_a, boxes_b):
    """Intersection over union, ``|A n B| / |A u B| = I / (area A + area B - I)``.

    Two boxes of zero union (both degenerate) have IoU 0.

    Parameters
    ----------
    boxes_a : (4,) or (N, 4) array
    boxes_b : (4,) or (M, 4) array

    Returns
    -------
    float for two single boxes, (M,) or (N,) float64 for a box against several, and the
    pairwise (N, M) matrix for two arrays of boxes.
    """
    a, b = as_boxes(boxes_a, "boxes_a"), as_boxes(boxes_b, "boxes_b")
    overlap = broadcast_iou(a.reshape(-1, 1, 4), b.reshape(1, -1, 4))
    if a.ndim == 1 and b.ndim == 1:
        return float(overlap[0, 0])
    if a.ndim == 1:
        return overlap[0]
    if b.ndim == 1:
        return overlap[:, 0]
    return overlap


def broadcast_iou(boxes_a, boxes_b):
    """IoU of boxes ``(..., 4)`` broadcast against boxes ``(..., 4)``, elementwise, no checks.

    The one implementation of ``I / (area A + area B - I)`` behind :func:`iou` and
    :func:`best_ious`; the shapes broadcast as NumPy arrays do (``(N, 1, 4)`` against
    ``(1, M, 4)`` gives the ``(N, M)`` matrix). Two boxes of zero union have IoU 0.

    Returns
    -------
    float64 array of the broadcast shape without its last axis
    """
    a, b = np.asarray(boxes_a, np.float64), np.asarray(boxes_b, np.float64)
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def best_iou(pred_box, gt_boxes):
    """``max_k IoU(pred_box, gt_boxes[k])``: the overlap with the best-matching ground truth.

    Parameters
    ----------
    pred_box : (4,) array
    gt_boxes : (K, 4) or (4,) array, K >= 1

    Returns
    -------
    float
    """
    pred = as_boxes(pred_box, "pred_box")
    if pred.ndim != 1:
        raise ValueError(f"pred_box must be a single box (4,); got shape {pred.shape}")
    gt = as_boxes(gt_boxes, "gt_boxes").reshape(-1, 4)
    if len(gt) == 0:
        raise ValueError("gt_boxes is empty: an image needs at least one ground-truth box")
    return float(np.max(iou(pred, gt)))


#: Images scored at a time by :func:`best_ious`.
IOU_CHUNK = 1024


def best_ious(pred_boxes, gt_boxes):
    """:func:`best_iou` of every image at once: ``max_k IoU(pred[n, ...], gt_n[k])``.

    The ground truth of the N images is padded to ``(N, K, 4)`` (``K`` the most boxes of any
    image) and the padding is ignored, so one call scores all images, and for ``(N, F, 4)``
    predictions all ``F`` candidates of each image (a grid search's boxes).

    Parameters
    ----------
    pred_boxes : (N, 4) or (N, F, 4) array
    gt_boxes : sequence of N arrays (K_n, 4) (or (4,)), K_n >= 1

    Returns
    -------
    (N,) or (N, F) float64 array
    """
    pred = np.asarray(pred_boxes, np.float64)
    if pred.ndim not in (2, 3) or pred.shape[-1] != 4:
        raise ValueError(f"pred_boxes must have shape (N, 4) or (N, F, 4); got {pred.shape}")
    as_boxes(pred.reshape(-1, 4), "pred_boxes")
    if len(gt_boxes) != len(pred):
        raise ValueError(f"{len(pred)} predicted boxes but ground truth for {len(gt_boxes)} images")
    truth = [as_boxes(g, "gt_boxes").reshape(-1, 4) for g in gt_boxes]
    if any(len(t) == 0 for t in truth):
        raise ValueError("gt_boxes has an empty entry: an image needs at least one ground-truth box")
    candidates = pred if pred.ndim == 3 else pred[:, None]
    best = np.empty(candidates.shape[:2])
    # A chunk of images at a time: the (N, F, K) intermediates of a whole dataset's search
    # (K the most boxes of any image) would take more memory than everything else.
    for start in range(0, len(truth), IOU_CHUNK):
        chunk = truth[start:start + IOU_CHUNK]
        k = max(len(t) for t in chunk)
        padded, valid = np.zeros((len(chunk), k, 4)), np.zeros((len(chunk), k), bool)
        for n, t in enumerate(chunk):
            padded[n, :len(t)], valid[n, :len(t)] = t, True
        overlap = broadcast_iou(candidates[start:start + len(chunk), :, None, :],
                                padded[:, None, :, :])  # (chunk, F, K)
        best[start:start + len(chunk)] = np.where(valid[:, None, :], overlap, -1.0).max(axis=2)
    return best if pred.ndim == 3 else best[:, 0]


def union_boxes(heatmaps, fractions):
    """Union boxes of ``m >= f * max m`` for many fractions at once, ``(N, F, 4)``.

    The box of all hot pixels (Simonyan et al.'s union box; :func:`boxes_from_heatmap` with
    ``mode="union"`` is this function for one fraction). A row holds a hot pixel exactly when
    its maximum reaches the level, so the box comes from the row and column maxima and each
    fraction costs ``O(H + W)`` per map instead of ``O(H W)``. A map with no positive value
    has no hot region and gives the whole image.

    Parameters
    ----------
    heatmaps : (N, H, W) float array
    fractions : sequence of F floats in (0, 1]

    Returns
    -------
    (N, F, 4) float64 array
    """
    heat = np.asarray(heatmaps)
    n, h, w = heat.shape
    rows, cols = heat.max(axis=2), heat.max(axis=1)
    peak = rows.max(axis=1)
    out = np.empty((n, len(fractions), 4))
    for j, f in enumerate(fractions):
        level = (f * peak)[:, None]
        r, c = rows >= level, cols >= level
        box = np.stack([c.argmax(1), r.argmax(1), w - c[:, ::-1].argmax(1),
                        h - r[:, ::-1].argmax(1)], axis=1).astype(np.float64)
        box[peak <= 0] = whole_image((w, h))
        out[:, j] = box
    return out


def largest_component_boxes(heatmaps, fractions):
    """Boxes of the largest 8-connected component of ``m >= f * max m`` for many fractions,
    ``(N, F, 4)`` (:func:`boxes_from_heatmap` with ``mode="largest"`` is this function for one
    fraction; ties between equally large components are broken by their heat).

    One object among several, or the object without a stray hot blob: where the hot pixels
    fall apart, the union box spans the gap and this box does not.

    Parameters
    ----------
    heatmaps : (N, H, W) float array
    fractions : sequence of F floats in (0, 1]

    Returns
    -------
    (N, F, 4) float64 array
    """
    heat = np.asarray(heatmaps)
    out = union_boxes(heat, fractions)  # every hot pixel lies in it: label only that window
    for n, m in enumerate(heat):
        peak = m.max()
        if peak <= 0:  # no hot pixel: the union box is already the whole image
            continue
        for j, f in enumerate(fractions):
            x0, y0, x1, y1 = out[n, j].astype(int)
            window = m[y0:y1, x0:x1]
            out[n, j] = box_from_mask(window >= f * peak, "largest", heatmap=window)
            out[n, j] += (x0, y0, x0, y0)
    return out
