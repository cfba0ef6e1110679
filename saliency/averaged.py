"""Methods that average a backward pass over many inputs: integrated gradients and SmoothGrad.

Both explain an image by the gradients (or another method's maps) of other images: points on
the straight path from a reference to the image (integrated gradients), or noisy copies of it
(SmoothGrad). Each is a loop over batches of those inputs around
:func:`sensloc.saliency.methods.backpropagate`; the single-pass methods are in
:mod:`sensloc.saliency.methods`.
"""
import numpy as np

from sensloc.saliency.methods import (_add_per_image, _chunks, backpropagate, explained_classes,
                                      gradient, make_reference, scores, targets_for)


def integration_points(steps, method="gausslegendre"):
    """Points ``alpha_j`` in [0, 1] and weights ``w_j`` with ``int_0^1 g ~ sum_j w_j g(alpha_j)``.

    ``riemann_left/right/middle``: ``w_j = 1/steps``; ``riemann_trapezoid``: ``steps``
    evenly spaced points including both ends (half weight there); ``gausslegendre``:
    Gauss-Legendre nodes mapped from [-1, 1] (exact for polynomials of degree < 2*steps).
    """
    if steps < 2:
        raise ValueError(f"integrated gradients needs at least 2 steps, got {steps}")
    j = np.arange(steps)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if method == "riemann_trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return j / (steps - 1), weights
    offsets = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}
    if method not in offsets:
        raise ValueError(f"unknown integration method {method!r}")
    return (j + offsets[method]) / steps, np.full(steps, 1.0 / steps)


def integrated_gradients(net, x, target=None, reference="zero", steps=32, method="gausslegendre",
                         batch_size=8, output="logit", return_delta=False):
    """Integrated gradients (Sundararajan et al., 2017).

    ``IG(x) = (x - x_ref) * int_0^1 df_t/dx (x_ref + alpha (x - x_ref)) d alpha``, the integral
    approximated by :func:`integration_points`. Completeness: ``sum(IG) ~ f_t(x) - f_t(x_ref)``;
    the error of the quadrature is returned with ``return_delta``.

    Parameters
    ----------
    steps, method : quadrature, see :func:`integration_points`
    batch_size : int
        Path points evaluated per forward/backward pass (memory vs. speed).

    Returns
    -------
    attributions : (N, C, H, W) array
    delta : (N,) array ``sum(IG) - (f_t(x) - f_t(x_ref))``, if ``return_delta``
    """
    ref = make_reference(net, x, reference)
    alphas, weights = integration_points(steps, method)
    # The clean image's logits: for the delta, and to find its class if none is given.
    logits = net(x) if return_delta else None
    targets = explained_classes(net, x, target) if logits is None else targets_for(logits, target)
    # All (image, path point) pairs in one list, cut into passes of batch_size: a batch of a
    # few images fills every pass, and bigger passes make bigger (faster) matrix products.
    image = np.repeat(np.arange(len(x)), steps)
    alpha = np.tile(alphas, len(x)).astype(x.dtype)[:, None, None, None]
    weight = np.tile(weights, len(x)).astype(x.dtype)[:, None, None, None]
    total = np.zeros_like(x)
    for rows in _chunks(len(image), batch_size):
        i = image[rows]
        path = ref[i] + alpha[rows] * (x[i] - ref[i])
        grads, _, _ = backpropagate(net, path, targets[i], output=output)
        _add_per_image(total, i, weight[rows] * grads)
    attributions = (x - ref) * total
    if not return_delta:
        return attributions
    expected = scores(logits, targets, output) - scores(net(ref), targets, output)
    return attributions, attributions.sum(axis=(1, 2, 3)) - expected


def smoothgrad(net, x, target=None, samples=16, sigma=0.15, seed=0, noise=None, method=gradient,
               batch_size=8):
    """SmoothGrad (Smilkov et al., 2017): the mean of a method's maps over noisy copies.

    ``SG(x) = 1/n sum_j M(x + e_j)``, ``e_j ~ N(0, (sigma * (max(x) - min(x)))^2)`` per image,
    the target fixed to the clean image's class.

    Parameters
    ----------
    samples : int
    sigma : float
        Noise standard deviation as a fraction of each image's value range.
    seed : int
        Seeds NumPy's generator, so the same call gives the same map.
    noise : (N, samples, C, H, W) array, optional
        Explicit noise (overrides ``samples``, ``sigma`` and ``seed``), e.g. to reproduce
        another library's draw exactly.
    method : callable
        ``method(net, x, target)``, :func:`gradient` by default.
    """
    targets = explained_classes(net, x, target)
    if noise is None:
        scale = sigma * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((len(x), samples) + x.shape[1:], dtype=x.dtype)
        noise *= scale.astype(x.dtype)[:, None, None, None, None]
    noise = np.asarray(noise, dtype=x.dtype)
    if noise.ndim != 5 or noise.shape[0] != len(x) or noise.shape[2:] != x.shape[1:]:
        raise ValueError(f"noise must have shape (N, samples) + {x.shape[1:]}, got {noise.shape}")
    samples = noise.shape[1]
    noise = noise.reshape((-1,) + x.shape[1:])  # (N * samples, C, H, W), image-major
    image = np.repeat(np.arange(len(x)), samples)
    total = np.zeros_like(x)
    for rows in _chunks(len(image), batch_size):
        i = image[rows]
        _add_per_image(total, i, method(net, x[i] + noise[rows], targets[i]))
    return total / samples
