"""Occlusion sensitivity: the one method without a backward pass.

It hides square patches of the input and measures how much the explained score drops
(Zeiler & Fergus, 2014), patches placed as Captum's ``Occlusion`` places them.
"""
import numpy as np

from sensloc.saliency.methods import _chunks, make_reference, scores, targets_for


def patch_starts(length, window, stride):
    """First index of every occluding patch along one axis: ``0, s, 2s, ..., ceil((L-w)/s) s``.

    Captum's convention: the first patch sits at index 0 and the patches step by ``stride``
    until one reaches the end, so the last may stick out and be cut to fit.
    """
    count = -(-(length - window) // stride) + 1  # ceil((L - w) / s) + 1
    return np.arange(count) * stride


def patch_cover(length, window, stride):
    """(K, L) 0/1 matrix along one axis: ``cover[k, i] = 1`` where patch ``k`` covers ``i``."""
    starts = patch_starts(length, window, stride)[:, None]
    index = np.arange(length)[None, :]
    return ((index >= starts) & (index < starts + window)).astype(np.float64)


def occlusion(net, x, target=None, window=32, stride=16, baseline=0.0, batch_size=32,
              output="logit"):
    """Occlusion sensitivity (Zeiler & Fergus, 2014), defined as Captum's ``Occlusion``.

    A square patch of ``window x window`` pixels, all channels, is set to the baseline,
    the patch slides by ``stride`` (the first at the top-left corner, the last ones cut off
    at the border, :func:`patch_starts`), and every pixel gets the mean drop of the explained
    score over the ``n_ij`` patches that cover it:

        a[c, i, j] = 1/n_ij * sum_{p covers (i, j)} (f_t(x) - f_t(x with patch p = baseline))

    With ``R`` the (A, H) and ``K`` the (B, W) patch-cover matrices of the two axes
    (:func:`patch_cover`) and ``D`` the (A, B) drops, that is ``(R^T D K) / (R^T 1)(1^T K)``.
    The value is the same for every channel. Only forward passes: ``A B`` of them per image,
    ``batch_size`` occluded copies at a time.

    Parameters
    ----------
    x : (N, C, H, W) array, preprocessed
    target : None, int or (N,) ints
    window : int
        Side of the square patch in pixels, at most ``min(H, W)``.
    stride : int
        Step between patches, ``1 <= stride <= window`` (a larger step would leave pixels
        that no patch covers).
    baseline : float, "zero", "black", "blur" or array
        What the patch shows: a number in preprocessed space (0 is the dataset's mean
        colour), or a reference of :func:`make_reference` (e.g. the blurred image).
    batch_size : int
        Occluded copies per forward pass (memory vs. speed; the result does not depend on it).
    output : "logit", "softmax" or "log_softmax"

    Returns
    -------
    (N, C, H, W) array, the dtype of ``x``
    """
    n, _, height, width = x.shape
    window, stride, batch_size = int(window), int(stride), int(batch_size)
    if not 1 <= window <= min(height, width):
        raise ValueError(f"window must lie in [1, {min(height, width)}], got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must lie in [1, window={window}], got {stride}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(baseline, (int, float)):
        fill = np.full_like(x, baseline)
    else:
        fill = make_reference(net, x, baseline)
    logits = net(x)
    targets = targets_for(logits, target)
    clean = scores(logits, targets, output)
    rows, cols = patch_cover(height, window, stride), patch_cover(width, window, stride)
    tops, lefts = np.meshgrid(patch_starts(height, window, stride),
                              patch_starts(width, window, stride), indexing="ij")
    tops, lefts = tops.ravel(), lefts.ravel()  # patch p = (a, b) at index a * B + b
    # All (image, patch) pairs in one list, cut into passes of batch_size, as in
    # integrated_gradients: a few images still fill every pass.
    image = np.repeat(np.arange(n), len(tops))
    patch = np.tile(np.arange(len(tops)), n)
    drops = np.zeros(len(image), np.float64)
    for part in _chunks(len(image), batch_size):
        copies = x[image[part]].copy()
        for k, (i, p) in enumerate(zip(image[part], patch[part])):
            box = np.s_[:, tops[p]:tops[p] + window, lefts[p]:lefts[p] + window]
            copies[k][box] = fill[i][box]
        drops[part] = clean[image[part]] - scores(net(copies), targets[image[part]], output)
    drops = drops.reshape(n, len(rows), len(cols))
    total = np.einsum("ah,nab,bw->nhw", rows, drops, cols)
    covering = np.outer(rows.sum(axis=0), cols.sum(axis=0))
    heat = (total / covering).astype(x.dtype)
    return np.repeat(heat[:, None], x.shape[1], axis=1)
