"""Assignment 4: Grad-CAM, and Khan et al.'s recipe from two heat maps to a box.

Two of the methods that ``tutorials/06_comparison.ipynb`` ranks, in NumPy (Grad-CAM is introduced
in ``tutorials/05_more_methods.ipynb``, Khan et al.'s recipe in ``tutorials/04_maps_to_boxes.ipynb``):

* Grad-CAM (Selvaraju et al., 2017) weighs a convolutional layer's feature maps ``A_k`` by the
  mean gradient of the class score over each map, ``alpha_k = mean_{h,w} df_t/dA_k``, and keeps
  the positive part: ``CAM = relu(sum_k alpha_k A_k)`` (library: ``saliency.grad_cam``).
* Khan et al.'s recipe (library: ``localize/protocols/__init__.py``, ``khan_heat`` and
  ``KhanBoxes``) turns each of two maps (e.g. DeepLIFT and guided backprop) into clean heat:
  positive part, normalize by the max, smooth with a Gaussian, normalize again, cut every value
  below the map's mean, weigh down the border; then it mixes the two maps by their geometric
  mean ``sqrt(a * b)`` and boxes all the hot pixels (the *union* box).

Rules of the game

* Use NumPy; ``scipy.ndimage.gaussian_filter`` is allowed for the smoothing. The grader runs
  your file in a separate process that cannot import the library (``sensloc``): a file that
  tries scores 0. Grad-CAM receives the activations and gradients as arrays (the grader ran
  the network).
* Arrays are float64 in the grader. Keep the function names and signatures.

Grade your work::

    sensloc grade 4 path/to/4_cam_and_khan.py       # or: python -m sensloc.coursework.grade 4 FILE

Parts and points: grad_cam (3), border_mask (3), khan_heat (3), union_box (3), khan_boxes (3).

Estimated time: 2 to 3 hours.
"""
import numpy as np


def grad_cam(activations, gradients):
    """Part 1. Grad-CAM from a layer's activations and the gradient of the class score there.

    ``alpha[n, k] = mean over (h, w) of gradients[n, k]`` and
    ``CAM[n] = max(sum_k alpha[n, k] * activations[n, k], 0)``.

    Parameters
    ----------
    activations : (N, K, h, w) array
        The layer's output ``A``.
    gradients : (N, K, h, w) array
        ``df_t / dA`` for image ``n``'s target class ``t``.

    Returns
    -------
    (N, h, w) array
    """
    # TODO
    raise NotImplementedError("TODO part 1: grad_cam")


def border_mask(shape, width_fraction, edge_weight):
    """Part 2. Weights that fade a map towards the image border (Khan et al.), linear profile.

    Along an axis of length ``L``, the pixel ``i`` has its centre at ``i + 0.5``, at distance
    ``d = min(i + 0.5, L - (i + 0.5))`` from the nearer edge; its weight is
    ``p = e + (1 - e) * min(d / (f L), 1)`` with ``e = edge_weight`` and ``f = width_fraction``
    (``p = 1`` everywhere when ``f = 0``). The 2-D mask is the minimum of the two profiles,
    ``mask[i, j] = min(p_row[i], p_col[j])``.

    Parameters
    ----------
    shape : (H, W) tuple
    width_fraction : float in [0, 0.5]
    edge_weight : float in [0, 1]

    Returns
    -------
    (H, W) array
    """
    # TODO
    raise NotImplementedError("TODO part 2: border_mask")


def khan_heat(heat, sigma, border_width, border_weight):
    """Part 3. One map of Khan et al.'s recipe, map by map.

    1. ``m = max(m, 0)``;
    2. ``m = m / max m`` (an all-zero map stays all zero);
    3. Gaussian smoothing of each map with standard deviation ``sigma`` pixels (``sigma = 0``:
       no smoothing): ``scipy.ndimage.gaussian_filter(m, sigma, mode="nearest", truncate=4.0)``
       on one (H, W) map;
    4. ``m = m / max m`` again;
    5. values below the map's own mean set to 0: ``m * [m >= mean(m)]``;
    6. times your ``border_mask((H, W), border_width, border_weight)``.

    Parameters
    ----------
    heat : (N, H, W) array
    sigma : float >= 0
    border_width, border_weight : floats, as in :func:`border_mask`

    Returns
    -------
    (N, H, W) array
    """
    # TODO
    raise NotImplementedError("TODO part 3: khan_heat")


def union_box(heat, fraction):
    """Part 4. The box around every hot pixel of each map.

    Hot pixels are ``m >= fraction * max m``; a map whose maximum is ``<= 0`` has no hot pixel
    and gets the whole image box ``(0, 0, W, H)``. Boxes are ``(xmin, ymin, xmax, ymax)`` in
    continuous coordinates: pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)``, so
    the box is ``(first hot column, first hot row, last hot column + 1, last hot row + 1)``.

    Parameters
    ----------
    heat : (N, H, W) array
    fraction : float in (0, 1]

    Returns
    -------
    (N, 4) array
    """
    # TODO
    raise NotImplementedError("TODO part 4: union_box")


def khan_boxes(map_a, map_b, sigma, fraction, border_width=0.1, border_weight=0.5):
    """Part 5. Khan et al.'s boxes from two maps of the same images.

    ``a = khan_heat(map_a, ...)``, ``b = khan_heat(map_b, ...)``, ``heat = sqrt(a * b)`` (their
    geometric mean: hot only where both are hot), then ``union_box(heat, fraction)``.

    Parameters
    ----------
    map_a, map_b : (N, H, W) arrays
    sigma, fraction, border_width, border_weight : floats

    Returns
    -------
    (N, 4) array
    """
    # TODO: your parts 3 and 4.
    raise NotImplementedError("TODO part 5: khan_boxes")
