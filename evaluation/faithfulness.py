"""Metrics that ask the network: deletion and insertion AUC, the randomization sanity check.

Deletion and insertion (Petsiuk et al., "RISE: randomized input sampling for explanation of
black-box models", BMVC 2018; reference code eclique/RISE, ``evaluation.py``, ``CausalMetric``)
    The pixels are ordered by the map, most salient first. Deletion starts from the image and
    replaces them, a fixed share per step, by the *substrate* ``0`` (the zero of the network's
    input: its mean image); insertion starts from the image blurred (a Gaussian of
    ``sigma = 5`` px on an 11 x 11 kernel, zero padding) and puts the original pixels back in
    the same order. After each step the network's softmax probability of the class is read;
    the curve ``p_0, ..., p_S`` (``S`` steps, ``p_0`` the start, ``p_S`` the finish) is scored by
    its normalized area, the trapezoid rule over ``[0, 1]``:
    ``AUC = (sum_i p_i - p_0 / 2 - p_S / 2) / S``. Deletion: lower is better; insertion: higher.
    The reference removes 224 pixels per step (224 steps for a 224 x 224 image); here the number
    of steps is fixed (:data:`STEPS`), step ``i`` having changed ``round(i H W / S)`` pixels, for
    every map resolution alike. The class is the one the map explains (the ground-truth class
    here), where the reference explains and scores the top-1 class.

Cascading randomization (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018)
    The network's weights are replaced by random ones (He-normal, :func:`sensloc.nets.random_parameters`)
    block by block from the top (the logits) down, cumulatively; after each block the map of the
    same image and class is recomputed and compared with the trained network's map by the
    Spearman rank correlation of their absolute values. A map that explains what the network
    learned must change: a low correlation passes the check. The per-method number is the mean
    correlation over the images and the stages of the cascade.
"""
import copy

import numpy as np
from scipy import ndimage
from scipy.stats import spearmanr

from sensloc import nets

#: Steps of the deletion and insertion curves (the curve has STEPS + 1 points).
STEPS = 20
#: RISE's blur for the insertion substrate: ``gkern(klen=11, nsig=5)``.
BLUR_SIGMA, BLUR_RADIUS = 5.0, 5


def blurred(x, sigma=BLUR_SIGMA, radius=BLUR_RADIUS):
    """Insertion's start: each channel convolved with a Gaussian of ``sigma`` truncated at
    ``radius`` pixels (weights normalized to sum 1), zero padding, (N, C, H, W) -> same."""
    x = np.asarray(x, np.float32)
    return ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="constant", cval=0.0,
                                   truncate=radius / sigma)


def causal_curves(net, x, heat, targets, mode, steps=STEPS):
    """Deletion or insertion curves: the class probability as pixels change in the map's order.

    Parameters
    ----------
    net : nets.Network
    x : (N, C, H, W) float32, preprocessed inputs
    heat : (N, H, W) float array, the maps (most salient = largest value; ties in pixel order)
    targets : (N,) int, the class of each map
    mode : {"deletion", "insertion"}
    steps : int >= 1

    Returns
    -------
    (N, steps + 1) float64: ``p[n, i] = softmax(net(x_i))[targets[n]]``, ``x_0`` the start
    (the image for deletion, the blurred image for insertion), ``x_steps`` the finish.
    """
    x = np.asarray(x, np.float32)
    heat = np.asarray(heat)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}")
    if heat.shape != (x.shape[0],) + x.shape[2:]:
        raise ValueError(f"heat must have shape {(x.shape[0],) + x.shape[2:]}; got {heat.shape}")
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"steps must be a positive integer; got {steps!r}")
    n, channels, height, width = x.shape
    pixels = height * width
    substrate = np.zeros_like(x) if mode == "deletion" else blurred(x)
    start, finish = (x, substrate) if mode == "deletion" else (substrate, x)
    counts = np.round(np.arange(steps + 1) * pixels / steps).astype(int)
    curves = np.empty((n, steps + 1))
    for i in range(n):
        order = np.argsort(-heat[i].ravel(), kind="stable")
        batch = np.repeat(start[i].reshape(1, channels, pixels), steps + 1, axis=0)
        end = finish[i].reshape(channels, pixels)
        for s, count in enumerate(counts):
            changed = order[:count]
            batch[s][:, changed] = end[:, changed]
        probabilities = nets.softmax(net(batch.reshape(steps + 1, channels, height, width)))
        curves[i] = probabilities[:, targets[i]]
    return curves


def curve_auc(curves):
    """Normalized area under curves on ``[0, 1]``, the trapezoid rule: ``(sum p - p_0 / 2 -
    p_S / 2) / S`` for (..., S + 1) values; returns (...)."""
    curves = np.asarray(curves, np.float64)
    return (curves.sum(axis=-1) - curves[..., 0] / 2 - curves[..., -1] / 2) / (curves.shape[-1] - 1)


def blocks_from_top(net):
    """The network's parameter blocks (``conv_final``, ``fire9``, ..., ``conv1``), top first: a
    layer ``fire9/expand1x1`` belongs to block ``fire9``."""
    return list(dict.fromkeys(name.split("/")[0] for name in net.parameters()))[::-1]


def rank_correlation(a, b):
    """Spearman's rank correlation of two maps' absolute values; 0 when either is constant
    (no ranking to agree with)."""
    a, b = np.abs(np.ravel(a)), np.abs(np.ravel(b))
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b)[0])


def cascading_randomization(net, spec, x, targets, seed=0, original=None):
    """Adebayo et al.'s cascade for one map kind: rank correlations with the trained maps.

    Parameters
    ----------
    net : nets.Network, trained
    spec : saliency.maps.MapSpec
    x : (N, C, H, W) float32, preprocessed inputs
    targets : (N,) int
    seed : int, of the random weights
    original : (N, H, W), optional, the trained network's maps (computed if not given)

    Returns
    -------
    blocks : list of str, the cascade's stages (block randomized last, cumulatively)
    rho : (len(blocks), N) float64, Spearman's rho of |map| after each stage with |original|
    """
    if original is None:
        original = spec.compute(net, x, targets)
    # A copy has the network's exact shapes (its architecture options included); the trained
    # network is left as it is.
    randomized = copy.deepcopy(net)
    random = nets.random_parameters(copy.deepcopy(net), seed=seed).parameters()
    params = {name: dict(arrays) for name, arrays in net.parameters().items()}
    blocks = blocks_from_top(net)
    rho = np.empty((len(blocks), len(x)))
    for stage, block in enumerate(blocks):
        for name in params:
            if name.split("/")[0] == block:
                params[name] = random[name]
        randomized.load_parameters(params)
        maps = spec.compute(randomized, x, targets)
        rho[stage] = [rank_correlation(a, b) for a, b in zip(original, maps)]
    return blocks, rho
