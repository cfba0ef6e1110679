"""Deletion and insertion (RISE) on a model whose curves are known in closed form, RISE's blur
against an explicit 11 x 11 convolution, and the cascading randomization sanity check on a
small network."""
import numpy as np
import pytest
from scipy import signal

from sensloc import nets
from sensloc.evaluation import faithfulness as ff
from sensloc.saliency.maps import MapSpec


class MeanIntensityModel:
    """Two classes with probabilities ``(s, 1 - s)``, ``s`` the mean of the input: the logits
    ``(log s, log(1 - s))``. Deleting (zeroing) a pixel of value ``a`` lowers ``s`` by
    ``a / (C H W)``, so the deletion curve is piecewise linear in the share of pixels deleted."""

    def __call__(self, x):
        s = np.clip(x.reshape(len(x), -1).mean(axis=1, dtype=np.float64), 1e-300, 1 - 1e-12)
        return np.stack([np.log(s), np.log1p(-s)], axis=1)


def two_halves():
    """A 10 x 10 image, 0.8 on the top five rows (A), 0.2 on the bottom five (B): s = 0.5."""
    x = np.full((1, 3, 10, 10), 0.2, np.float32)
    x[:, :, :5] = 0.8
    return x


def test_deletion_auc_of_a_linear_model_by_hand():
    # Deleting a share f of the pixels, A first: s = 0.5 - 0.8 f up to f = 1/2, then
    # 0.1 - 0.2 (f - 1/2). Its area is 0.15 + 0.025 = 0.175, and the trapezoid rule is exact
    # because the kink at f = 1/2 is a step of the 20 (5 pixels each). B first: 0.5 - 0.2 f,
    # then 0.4 - 0.8 (f - 1/2): area 0.225 + 0.1 = 0.325.
    x = two_halves()
    good = np.zeros((1, 10, 10))
    good[0, :5] = 1.0
    curve = ff.causal_curves(MeanIntensityModel(), x, good, [0], "deletion", steps=20)
    f = np.arange(21) / 20
    expected = np.where(f <= 0.5, 0.5 - 0.8 * f, 0.1 - 0.2 * (f - 0.5))
    np.testing.assert_allclose(curve[0], expected, atol=1e-6)  # float32 image
    np.testing.assert_allclose(ff.curve_auc(curve), [0.175], atol=1e-6)
    bad = ff.causal_curves(MeanIntensityModel(), x, 1 - good, [0], "deletion", steps=20)
    np.testing.assert_allclose(ff.curve_auc(bad), [0.325], atol=1e-6)


def test_insertion_goes_from_the_blurred_image_to_the_image():
    x = two_halves()
    heat = np.zeros((1, 10, 10))
    heat[0, :5] = 1.0
    curve = ff.causal_curves(MeanIntensityModel(), x, heat, [0], "insertion", steps=4)
    np.testing.assert_allclose(curve[0, 0], ff.blurred(x).mean(), rtol=1e-5)
    np.testing.assert_allclose(curve[0, -1], 0.5, rtol=1e-6)
    # After half the pixels (all of A) are back, s = (A's original mass + B's blurred mass).
    b = ff.blurred(x)
    half = (x[:, :, :5].sum() + b[:, :, 5:].sum()) / x.size
    np.testing.assert_allclose(curve[0, 2], half, rtol=1e-5)


def test_blur_equals_rises_kernel_as_an_explicit_convolution():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 30, 25)).astype(np.float32)
    d = np.arange(-5, 6)
    kernel = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / (2 * 5.0 ** 2))
    kernel /= kernel.sum()  # 11 x 11, sigma 5, sum 1
    expected = np.stack([[signal.convolve2d(channel, kernel, mode="same", boundary="fill")
                          for channel in image] for image in x])
    np.testing.assert_allclose(ff.blurred(x), expected, atol=1e-5)


def test_auc_is_the_normalized_trapezoid():
    assert ff.curve_auc(np.array([1.0, 1.0, 1.0])) == 1.0
    np.testing.assert_allclose(ff.curve_auc(np.array([[0.0, 1.0], [1.0, 0.5]])), [0.5, 0.75])
    np.testing.assert_allclose(ff.curve_auc(np.linspace(0, 1, 11) ** 2), np.trapezoid(
        np.linspace(0, 1, 11) ** 2, dx=0.1))


def test_bad_arguments_are_refused():
    x = two_halves()
    with pytest.raises(ValueError, match="mode"):
        ff.causal_curves(MeanIntensityModel(), x, np.zeros((1, 10, 10)), [0], "erase")
    with pytest.raises(ValueError, match="shape"):
        ff.causal_curves(MeanIntensityModel(), x, np.zeros((1, 9, 10)), [0], "deletion")


def test_rank_correlation_of_absolute_values():
    a = np.arange(12.0).reshape(3, 4)
    assert ff.rank_correlation(a, -a) == pytest.approx(1.0)  # absolute values: same ranking
    assert ff.rank_correlation(a, a[::-1, ::-1]) == pytest.approx(-1.0)
    assert ff.rank_correlation(a, np.zeros_like(a)) == 0.0


def test_cascading_randomization_from_the_top(monkeypatch):
    net = nets.random_parameters(nets.build("vgg11", num_classes=3, input_size=32, hidden=16), 1)
    before = {k: {kk: vv.copy() for kk, vv in v.items()} for k, v in net.parameters().items()}
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    spec = MapSpec.make("gradient", "max_abs")
    blocks, rho = ff.cascading_randomization(net, spec, x, np.array([0, 1]), seed=5)
    names = list(net.parameters())
    assert blocks[0] == names[-1].split("/")[0] and blocks[-1] == names[0].split("/")[0]
    assert rho.shape == (len(blocks), 2) and np.all(np.abs(rho) <= 1)
    # The trained network is left untouched.
    for name, arrays in net.parameters().items():
        np.testing.assert_array_equal(arrays["weight"], before[name]["weight"])
    # Random weights of another seed change the gradient map: rank correlation well below 1
    # once everything is random.
    assert rho[-1].max() < 0.9
    # Control: a "randomization" to the trained weights themselves gives rho = 1 at every stage.
    monkeypatch.setattr(ff.nets, "random_parameters", lambda copy_of_net, seed: copy_of_net)
    _, same = ff.cascading_randomization(net, spec, x, np.array([0, 1]), seed=5)
    np.testing.assert_allclose(same, 1.0, atol=1e-12)
