"""Post-processing of saliency maps: from a raw attribution to a heat map worth boxing.

Every function here takes and returns plain arrays, so they compose freely, e.g. Khan et
al.'s recipe ``threshold(apply_border_mask(gaussian_smooth(reduce_channels(a), 2)), 0.2)``.

Shapes: an *attribution* is ``(C, H, W)`` or a batch ``(N, C, H, W)`` (one value per input
channel, as the backward pass returns it); a *heat map* is ``(H, W)`` or a batch ``(N, H, W)``.
Batched functions treat every map of a batch separately (a per-map maximum, never a batch-wide
one). Floating inputs keep their dtype; integer or boolean inputs are computed in float32,
the library's default.
"""
import numpy as np

CHANNEL_REDUCTIONS = ("max_abs", "l2", "sum", "abs_sum")
NORMALIZATIONS = ("max", "minmax", "sum")
BORDER_PROFILES = ("linear", "cosine")
MIXES = ("product", "geometric_mean", "weighted_sum")


def _as_float_array(values, name, ndims):
    """``values`` as a finite, non-empty float array with one of the allowed ``ndims``."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array; got dtype {array.dtype}")
    if array.ndim not in ndims:
        allowed = " or ".join(f"{n}-D" for n in ndims)
        raise ValueError(f"{name} must be {allowed}; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if array.dtype.kind != "f":
        array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_maps(heatmap, name="heatmap"):
    """A ``(H, W)`` or ``(N, H, W)`` heat map, validated."""
    return _as_float_array(heatmap, name, (2, 3))


def _per_map(statistic, maps):
    """``statistic`` (e.g. ``np.max``) of each ``(H, W)`` map, shaped to broadcast against ``maps``."""
    return statistic(maps, axis=(-2, -1), keepdims=True)


def _check_choice(value, choices, name):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def _check_fraction(value, name, low=0.0, high=1.0):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}]; got {value}")
    return float(value)


def reduce_channels(attribution, how="max_abs"):
    """Collapse the channel axis of an attribution into one heat map.

    With ``a[c, i, j]`` the attribution of channel ``c`` at pixel ``(i, j)``:

    - ``"max_abs"``: ``m[i, j] = max_c |a[c, i, j]|`` (Simonyan et al., 2014),
    - ``"l2"``: ``m[i, j] = sqrt(sum_c a[c, i, j]**2)``,
    - ``"sum"``: ``m[i, j] = sum_c a[c, i, j]`` (keeps the sign: evidence for minus against),
    - ``"abs_sum"``: ``m[i, j] = sum_c |a[c, i, j]|``.

    Parameters
    ----------
    attribution : (C, H, W) or (N, C, H, W) float array
        Channel axis third from last, as images are ``(C, H, W)`` in the library.
    how : {"max_abs", "l2", "sum", "abs_sum"}

    Returns
    -------
    (H, W) or (N, H, W) float array
    """
    attribution = _as_float_array(attribution, "attribution", (3, 4))
    _check_choice(how, CHANNEL_REDUCTIONS, "how")
    if how == "max_abs":
        return np.abs(attribution).max(axis=-3)
    if how == "l2":
        return np.sqrt(np.square(attribution).sum(axis=-3))
    if how == "sum":
        return attribution.sum(axis=-3)
    return np.abs(attribution).sum(axis=-3)


def gaussian_smooth(heatmap, sigma, mode="nearest"):
    """Convolve each map with an isotropic Gaussian of standard deviation ``sigma`` pixels.

    ``m'[i, j] = sum_{k, l} G_sigma(k) G_sigma(l) m[i - k, j - l]``, the kernel truncated at
    4 sigma and normalized to sum 1 (``scipy.ndimage.gaussian_filter``). Outside the image the
    map is extended by ``mode``; the default ``"nearest"`` repeats the edge value, so smoothing
    does not by itself darken the border (``"constant"`` would pad with zeros and act as an
    unintended border mask; use :func:`border_mask` for that, explicitly).

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array
        In a batch only the two spatial axes are smoothed.
    sigma : float
        Standard deviation in pixels, ``>= 0``; ``0`` returns an unchanged copy.
    mode : str
        Any boundary mode of ``scipy.ndimage.gaussian_filter``.

    Returns
    -------
    float array of the shape of ``heatmap``
    """
    maps = _as_maps(heatmap)
    sigma = _check_fraction(sigma, "sigma", 0.0, np.inf)
    if sigma == 0:
        return maps.copy()
    per_axis = (0.0,) * (maps.ndim - 2) + (sigma, sigma)
    from scipy import ndimage  # here, not at the top: its import costs a fresh process ~0.5 s
    return ndimage.gaussian_filter(maps, sigma=per_axis, mode=mode, truncate=4.0)


def normalize(heatmap, how="max"):
    """Rescale each map.

    - ``"max"``: ``m / max|m|`` (a non-negative map ends in [0, 1], its maximum at 1),
    - ``"minmax"``: ``(m - min m) / (max m - min m)``, in [0, 1],
    - ``"sum"``: ``m / sum|m|`` (a non-negative map becomes a distribution summing to 1).

    Where the denominator is zero (an all-zero map; for ``"minmax"`` any constant map) there is
    nothing to rescale and the result is all zeros rather than NaN.

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array
    how : {"max", "minmax", "sum"}

    Returns
    -------
    float array of the shape of ``heatmap``
    """
    maps = _as_maps(heatmap)
    _check_choice(how, NORMALIZATIONS, "how")
    if how == "max":
        numerator, denominator = maps, _per_map(np.max, np.abs(maps))
    elif how == "minmax":
        low = _per_map(np.min, maps)
        numerator, denominator = maps - low, _per_map(np.max, maps) - low
    else:
        numerator, denominator = maps, _per_map(np.sum, np.abs(maps))
    safe_denominator = np.where(denominator > 0, denominator, 1)
    return np.where(denominator > 0, numerator / safe_denominator, 0).astype(maps.dtype)


def positive_part(heatmap):
    """``max(m, 0)`` elementwise: keep the evidence for the class, drop the evidence against.

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array

    Returns
    -------
    float array of the shape of ``heatmap``
    """
    return np.maximum(_as_maps(heatmap), 0)


def threshold(heatmap, fraction, relative_to="max"):
    """Set to zero every value below a level relative to its map; keep the others.

    The level is ``fraction * max m`` (``relative_to="max"``) or
    ``min m + fraction * (max m - min m)`` (``relative_to="minmax"``), computed per map.
    Values ``>= level`` are kept unchanged.

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array
    fraction : float in [0, 1]
    relative_to : {"max", "minmax"}

    Returns
    -------
    float array of the shape of ``heatmap``
    """
    maps = _as_maps(heatmap)
    fraction = _check_fraction(fraction, "fraction")
    _check_choice(relative_to, ("max", "minmax"), "relative_to")
    high = _per_map(np.max, maps)
    if relative_to == "max":
        level = fraction * high
    else:
        low = _per_map(np.min, maps)
        level = low + fraction * (high - low)
    return np.where(maps >= level, maps, 0).astype(maps.dtype)


def zero_below_mean(heatmap):
    """Set to zero every value below the mean of its map: ``m * [m >= mean(m)]``.

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array

    Returns
    -------
    float array of the shape of ``heatmap``
    """
    maps = _as_maps(heatmap)
    return np.where(maps >= _per_map(np.mean, maps), maps, 0).astype(maps.dtype)


def _edge_profile(length, width_fraction, edge_weight, profile):
    """Weights ``(length,)`` along one axis: ``edge_weight`` at the edges, 1 beyond the band."""
    # Distance of each pixel centre (i + 0.5) to the nearer edge of [0, length].
    centres = np.arange(length) + 0.5
    distance = np.minimum(centres, length - centres)
    band = width_fraction * length
    if band == 0:
        return np.ones(length)
    ramp = np.minimum(distance / band, 1.0)
    if profile == "cosine":
        # Same end points as the linear ramp, but with zero slope at both ends of the band, so
        # the mask has no kink where it reaches 1.
        ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return edge_weight + (1.0 - edge_weight) * ramp


def border_mask(shape, width_fraction=0.1, edge_weight=0.5, profile="linear"):
    """Weights that fade a heat map towards the image border (Khan et al.).

    Along an axis of length ``L``, a pixel whose centre lies ``d`` pixels from the nearer edge
    gets ``p = e + (1 - e) * r(min(d / (f L), 1))`` with ``e = edge_weight``,
    ``f = width_fraction`` and ``r(t) = t`` (``"linear"``) or ``r(t) = (1 - cos(pi t)) / 2``
    (``"cosine"``). So the weight is ``e`` at the edge and rises to 1 at ``f`` of the side.
    The 2-D mask is the *minimum* of the row and column profiles,
    ``mask[i, j] = min(p_row[i], p_col[j])``: a corner is damped like an edge (a product would
    damp it to ``e**2``), and the mask equals 1 on the whole interior rectangle.

    Parameters
    ----------
    shape : (H, W) tuple of positive ints
    width_fraction : float in [0, 0.5]
        Width of the fading band as a fraction of each side; 0 gives a mask of ones.
    edge_weight : float in [0, 1]
    profile : {"linear", "cosine"}

    Returns
    -------
    (H, W) float64 array with values in [edge_weight, 1]
    """
    if len(shape) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in shape):
        raise ValueError(f"shape must be two positive integers (H, W); got {shape!r}")
    width_fraction = _check_fraction(width_fraction, "width_fraction", 0.0, 0.5)
    edge_weight = _check_fraction(edge_weight, "edge_weight")
    _check_choice(profile, BORDER_PROFILES, "profile")
    rows = _edge_profile(shape[0], width_fraction, edge_weight, profile)
    cols = _edge_profile(shape[1], width_fraction, edge_weight, profile)
    return np.minimum(rows[:, None], cols[None, :])


def apply_border_mask(heatmap, width_fraction=0.1, edge_weight=0.5, profile="linear"):
    """``m * border_mask(m.shape[-2:], ...)``: damp each map near the image border.

    Parameters
    ----------
    heatmap : (H, W) or (N, H, W) float array
    width_fraction, edge_weight, profile
        As in :func:`border_mask`.

    Returns
    -------
    float array of the shape and dtype of ``heatmap``
    """
    maps = _as_maps(heatmap)
    mask = border_mask(maps.shape[-2:], width_fraction, edge_weight, profile)
    return (maps * mask).astype(maps.dtype)


def mix(map_a, map_b, how="product", weight=0.5):
    """Combine two heat maps of the same shape into one.

    With ``w = weight``:

    - ``"product"``: ``a * b`` (hot only where both are hot; ``weight`` is unused),
    - ``"geometric_mean"``: ``a**w * b**(1 - w)`` (``sqrt(a b)`` for ``w = 0.5``; both maps
      must be non-negative),
    - ``"weighted_sum"``: ``w a + (1 - w) b``.

    The maps are not rescaled here: for ``"weighted_sum"`` normalize them first (e.g.
    :func:`normalize` with ``"max"``) or the map with the larger values dominates.

    Parameters
    ----------
    map_a, map_b : (H, W) or (N, H, W) float arrays of the same shape
    how : {"product", "geometric_mean", "weighted_sum"}
    weight : float in [0, 1]

    Returns
    -------
    float array of the common shape
    """
    a, b = _as_maps(map_a, "map_a"), _as_maps(map_b, "map_b")
    if a.shape != b.shape:
        raise ValueError(f"map_a and map_b must have the same shape; got {a.shape} and {b.shape}")
    _check_choice(how, MIXES, "how")
    weight = _check_fraction(weight, "weight")
    dtype = np.result_type(a, b)
    if how == "product":
        return (a * b).astype(dtype)
    if how == "weighted_sum":
        return (weight * a + (1 - weight) * b).astype(dtype)
    if np.any(a < 0) or np.any(b < 0):
        raise ValueError("geometric_mean needs non-negative maps; apply positive_part first")
    return (a**weight * b ** (1 - weight)).astype(dtype)


def _bilinear_matrix(out_size, in_size):
    """(out, in) interpolation weights, half-pixel centres: ``src = (dst + 0.5) * in/out - 0.5``."""
    src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    src = np.clip(src, 0, in_size - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = src - low
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), low] += 1 - frac
    matrix[np.arange(out_size), high] += frac
    return matrix


def upsample(heatmap, size_hw):
    """Bilinear resize of heat maps to ``size_hw`` (e.g. a Grad-CAM map to the input size).

    Pixel centres are aligned as in PyTorch's ``interpolate(..., align_corners=False)`` and
    OpenCV: output pixel ``i`` samples the input at ``(i + 0.5) * in/out - 0.5``, clamped to
    the edge. Separable: ``out = R @ map @ C^T``.

    Parameters
    ----------
    heatmap : (h, w) or (N, h, w) array
    size_hw : (int, int)

    Returns
    -------
    (H, W) or (N, H, W) array, the input's float dtype
    """
    maps = _as_maps(heatmap)
    rows = _bilinear_matrix(int(size_hw[0]), maps.shape[-2])
    cols = _bilinear_matrix(int(size_hw[1]), maps.shape[-1])
    return (rows @ maps @ cols.T).astype(maps.dtype)
