"""Baselines that look at no pixel: a centred box of the average size (the whole image is
:func:`sensloc.localize.boxes.whole_image`).

Any localization method must beat these. The centre box is Ebrahimpour & Noelle's baseline:
a box with the training set's mean width and height, centred in the image. Sizes are kept as
*fractions* of the image side (box width / image width, box height / image height), so a mean
measured on one set of images transfers to images of any other size. Boxes follow the
convention of :mod:`sensloc.localize.boxes`.
"""
import numpy as np

from sensloc.localize.boxes import as_size, single_box


def mean_box_size(gt_boxes, image_sizes, target="largest"):
    """Mean normalized size ``(mean_n w_n / W_n, mean_n h_n / H_n)`` of ground-truth boxes.

    ``(w_n, h_n)`` is the size of the box standing for image ``n``: its largest ground-truth box
    (``target="largest"``) or the hull of all of them (``"hull"``), see
    :func:`sensloc.localize.boxes.single_box`.

    Parameters
    ----------
    gt_boxes : sequence of N arrays (K_n, 4), in pixels of their image
    image_sizes : (N, 2) array-like of (width, height)
    target : {"largest", "hull"}

    Returns
    -------
    (2,) float64 array ``(width fraction, height fraction)``, each in [0, 1] for boxes inside
    their images
    """
    sizes = as_size(image_sizes, "image_sizes").reshape(-1, 2)
    if len(gt_boxes) != len(sizes) or len(sizes) == 0:
        raise ValueError(f"need one image size per image: {len(gt_boxes)} box sets, {len(sizes)} sizes")
    chosen = np.stack([single_box(boxes, target) for boxes in gt_boxes])
    box_sizes = chosen[:, 2:] - chosen[:, :2]
    return (box_sizes / sizes).mean(axis=0)


def center_box(image_size_wh, mean_box_size_wh):
    """A box of ``(f_w W, f_h H)`` centred in a ``W x H`` image.

    ``((W - f_w W) / 2, (H - f_h H) / 2, (W + f_w W) / 2, (H + f_h H) / 2)``.

    Parameters
    ----------
    image_size_wh : (2,) or (N, 2) array-like of (width, height)
    mean_box_size_wh : (2,) array-like ``(f_w, f_h)`` in (0, 1]
        Box size as fractions of the image side, e.g. from :func:`mean_box_size`.

    Returns
    -------
    (4,) or (N, 4) float64 array
    """
    size = as_size(image_size_wh)
    fractions = np.asarray(mean_box_size_wh, dtype=np.float64)
    if fractions.shape != (2,) or not np.all((fractions > 0) & (fractions <= 1)):
        raise ValueError(
            f"mean_box_size_wh must be two fractions of the image side in (0, 1]; got {fractions.tolist()}"
        )
    half_extent = fractions * size / 2
    centre = size / 2
    return np.concatenate([centre - half_extent, centre + half_extent], axis=-1)
