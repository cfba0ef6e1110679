import numpy as np
import pytest

from sensloc.saliency.postprocess import (apply_border_mask, border_mask, gaussian_smooth, mix,
                                          normalize, positive_part, reduce_channels, threshold,
                                          zero_below_mean)

# A (3, 1, 2) attribution: channel values (1, -2, 0) at the first pixel, (-3, 2, 1) at the second.
ATTRIBUTION = np.array([[[1.0, -3.0]], [[-2.0, 2.0]], [[0.0, 1.0]]])


@pytest.mark.parametrize("how, expected", [
    ("max_abs", [[2.0, 3.0]]),
    ("l2", [[np.sqrt(5.0), np.sqrt(14.0)]]),
    ("sum", [[-1.0, 0.0]]),
    ("abs_sum", [[3.0, 6.0]]),
])
def test_reduce_channels_hand_computed(how, expected):
    np.testing.assert_allclose(reduce_channels(ATTRIBUTION, how), expected)


def test_reduce_channels_batch_reduces_each_image(rng):
    batch = rng.normal(size=(4, 3, 5, 6)).astype(np.float32)
    reduced = reduce_channels(batch, "l2")
    assert reduced.shape == (4, 5, 6) and reduced.dtype == np.float32
    np.testing.assert_allclose(reduced[2], reduce_channels(batch[2], "l2"))


@pytest.mark.parametrize("bad, error", [
    (np.zeros((5, 5)), ValueError),
    (np.full((3, 2, 2), np.nan), ValueError),
    (np.zeros((3, 0, 4)), ValueError),
    (np.array([[["a"]]]), TypeError),
])
def test_reduce_channels_rejects_bad_input(bad, error):
    with pytest.raises(error):
        reduce_channels(bad)
    with pytest.raises(ValueError, match="how"):
        reduce_channels(ATTRIBUTION, "mean")


def test_gaussian_smooth_of_a_delta_is_the_sampled_gaussian():
    sigma, size = 2.0, 21
    delta = np.zeros((size, size))
    delta[10, 10] = 1.0
    offsets = np.arange(-8, 9)  # the kernel is truncated at 4 sigma
    kernel = np.exp(-offsets**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    expected = np.zeros((size, size))
    expected[2:19, 2:19] = np.outer(kernel, kernel)
    np.testing.assert_allclose(gaussian_smooth(delta, sigma), expected, atol=1e-12)


def test_gaussian_smooth_keeps_maps_of_a_batch_apart_and_edges_bright():
    batch = np.zeros((2, 15, 15))
    batch[0, 7, 7] = 1.0  # 7 px from every edge, beyond the kernel's 4 sigma = 6 px
    smoothed = gaussian_smooth(batch, 1.5)
    assert smoothed[0].sum() == pytest.approx(1.0) and np.all(smoothed[1] == 0)
    # "nearest" extends the edge value, so a constant map stays constant up to its border.
    np.testing.assert_allclose(gaussian_smooth(np.full((6, 6), 3.0), 2.0), 3.0)
    np.testing.assert_array_equal(gaussian_smooth(batch, 0), batch)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_smooth(batch, -1.0)


def test_normalize_hand_computed():
    np.testing.assert_allclose(normalize([[1.0, 2.0], [4.0, -8.0]], "max"), [[0.125, 0.25], [0.5, -1.0]])
    np.testing.assert_allclose(normalize([[1.0, 3.0], [5.0, 9.0]], "minmax"), [[0, 0.25], [0.5, 1]])
    np.testing.assert_allclose(normalize([[1.0, 3.0], [0.0, 4.0]], "sum"), [[0.125, 0.375], [0, 0.5]])


def test_normalize_batch_uses_each_maps_own_scale_and_is_safe_on_flat_maps():
    batch = np.stack([np.full((2, 2), 2.0), np.array([[0.0, 1.0], [2.0, 4.0]])])
    np.testing.assert_allclose(normalize(batch, "max")[1], [[0, 0.25], [0.5, 1]])
    np.testing.assert_array_equal(normalize(batch, "minmax")[0], 0)  # constant map
    for how in ("max", "minmax", "sum"):
        np.testing.assert_array_equal(normalize(np.zeros((3, 3)), how), 0)


def test_positive_part_threshold_and_mean():
    np.testing.assert_array_equal(positive_part([[-1.0, 2.0], [0.0, -3.0]]), [[0, 2], [0, 0]])
    heat = np.array([[0.1, 0.5], [0.3, 1.0]])
    np.testing.assert_array_equal(threshold(heat, 0.4), [[0, 0.5], [0, 1.0]])
    np.testing.assert_array_equal(threshold(heat, 0.5), [[0, 0.5], [0, 1.0]])  # level itself kept
    np.testing.assert_array_equal(threshold([[2.0, 4.0], [6.0, 10.0]], 0.5, "minmax"), [[0, 0], [6, 10]])
    batch = np.stack([heat, 10 * heat])
    np.testing.assert_array_equal(threshold(batch, 0.4)[1], [[0, 5], [0, 10]])
    np.testing.assert_array_equal(zero_below_mean([[1.0, 2.0], [3.0, 6.0]]), [[0, 0], [3, 6]])
    with pytest.raises(ValueError, match="fraction"):
        threshold(heat, 1.5)


def test_border_mask_linear_profile_hand_computed():
    mask = border_mask((10, 20), width_fraction=0.2, edge_weight=0.5)
    # Rows: band 2 px, centres 0.5 and 1.5 px from the edge -> ramps 1/4, 3/4.
    # Columns: band 4 px, centres 0.5 .. 3.5 px -> ramps 1/8, 3/8, 5/8, 7/8.
    np.testing.assert_allclose(mask[:3, 10], [0.625, 0.875, 1.0])
    np.testing.assert_allclose(mask[5, :5], [0.5625, 0.6875, 0.8125, 0.9375, 1.0])
    assert mask[0, 0] == pytest.approx(0.5625)  # the minimum of the two profiles, not a product
    np.testing.assert_array_equal(mask[2:8, 4:16], 1.0)
    np.testing.assert_array_equal(mask, mask[::-1, ::-1])


def test_border_mask_cosine_profile_and_limits():
    mask = border_mask((10, 10), width_fraction=0.2, edge_weight=0.2, profile="cosine")
    ramp = (1 - np.cos(np.pi * 0.25)) / 2
    assert mask[0, 5] == pytest.approx(0.2 + 0.8 * ramp)
    np.testing.assert_array_equal(border_mask((4, 6), width_fraction=0.0), 1.0)
    for bad in [dict(shape=(0, 5)), dict(shape=(5, 5), width_fraction=0.6), dict(shape=(5, 5), profile="x")]:
        with pytest.raises(ValueError):
            border_mask(**bad)


def test_apply_border_mask_multiplies_every_map(rng):
    batch = rng.random((3, 8, 12)).astype(np.float32)
    masked = apply_border_mask(batch, 0.25, 0.3, "cosine")
    assert masked.dtype == np.float32
    np.testing.assert_allclose(masked[1], batch[1] * border_mask((8, 12), 0.25, 0.3, "cosine"), rtol=1e-6)


def test_mix_hand_computed():
    a, b = np.array([[4.0, 0.0]]), np.array([[9.0, 5.0]])
    np.testing.assert_allclose(mix(a, b, "product"), [[36, 0]])
    np.testing.assert_allclose(mix(a, b, "geometric_mean"), [[6, 0]])
    np.testing.assert_allclose(mix(a, b, "geometric_mean", 0.25), [[4**0.25 * 9**0.75, 0]])
    np.testing.assert_allclose(mix(a, b, "weighted_sum", 0.25), [[7.75, 3.75]])
    with pytest.raises(ValueError, match="same shape"):
        mix(a, np.zeros((2, 1)))
    with pytest.raises(ValueError, match="non-negative"):
        mix(-a, b, "geometric_mean")
