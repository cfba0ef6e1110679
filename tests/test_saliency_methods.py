"""The methods against closed forms: integrated gradients, SmoothGrad, Grad-CAM, neuron selection."""
import numpy as np
import pytest

import saliency
from nets import Conv2d, Flatten, GlobalAvgPool2d, Linear, Network, ReLU
from test_saliency_rules import small_net


@pytest.fixture
def x():
    return np.random.default_rng(1).normal(size=(2, 3, 12, 12))


@pytest.mark.parametrize("method,exact_degree", [
    ("gausslegendre", 7), ("riemann_trapezoid", 1), ("riemann_middle", 1),
    ("riemann_left", 0), ("riemann_right", 0)])
def test_integration_points_integrate_polynomials(method, exact_degree):
    alphas, weights = saliency.integration_points(4, method)
    for degree in range(exact_degree + 1):
        assert np.isclose(np.dot(weights, alphas ** degree), 1 / (degree + 1), rtol=1e-12)
    assert not np.isclose(np.dot(weights, alphas ** (exact_degree + 1)), 1 / (exact_degree + 2))


def test_integrated_gradients_of_a_linear_model_is_exact():
    net = Network("linear", [Flatten("flat"), Linear("fc", 12, 3)], 3, (2, 2), (2, 2), 3)
    net.astype(np.float64)
    rng = np.random.default_rng(0)
    net.layer("fc").weight[...] = rng.normal(size=(3, 12))
    x = rng.normal(size=(2, 3, 2, 2))
    ig = saliency.integrated_gradients(net, x, target=1, steps=2, method="riemann_left")
    np.testing.assert_allclose(ig.reshape(2, -1), x.reshape(2, -1) * net.layer("fc").weight[1],
                               rtol=1e-12)


def test_integrated_gradients_completeness_improves_with_steps(x):
    net = small_net(seed=2)
    errors = [np.abs(saliency.integrated_gradients(net, x, 0, steps=s, return_delta=True)[1]).max()
              for s in (4, 16, 64)]
    assert errors[2] < errors[1] < errors[0]
    ig, delta = saliency.integrated_gradients(net, x, 0, steps=64, batch_size=5, return_delta=True)
    gap = net(x)[:, 0] - net(np.zeros_like(x))[:, 0]
    np.testing.assert_allclose(ig.sum(axis=(1, 2, 3)) - gap, delta, rtol=1e-9)
    # The batch size changes the grouping of path points, not the answer.
    np.testing.assert_allclose(ig, saliency.integrated_gradients(net, x, 0, steps=64, batch_size=64),
                               rtol=1e-10)


def test_smoothgrad_is_seeded_and_averages_given_noise(x):
    net = small_net(seed=3)
    a = saliency.smoothgrad(net, x, 0, samples=5, seed=7)
    np.testing.assert_array_equal(a, saliency.smoothgrad(net, x, 0, samples=5, seed=7))
    assert not np.allclose(a, saliency.smoothgrad(net, x, 0, samples=5, seed=8))
    noise = np.random.default_rng(0).normal(size=(2, 3) + x.shape[1:])
    expected = np.stack([np.mean([saliency.gradient(net, x[i:i + 1] + noise[i, j], 0)[0]
                                  for j in range(3)], axis=0) for i in range(2)])
    np.testing.assert_allclose(saliency.smoothgrad(net, x, 0, noise=noise), expected, rtol=1e-12)
    np.testing.assert_allclose(saliency.smoothgrad(net, x, 0, noise=np.zeros_like(noise)),
                               saliency.gradient(net, x, 0), rtol=1e-12)
    with pytest.raises(ValueError, match="noise must have shape"):
        saliency.smoothgrad(net, x, 0, noise=noise[:, :, :2])


def test_grad_cam_of_a_gap_head_is_the_class_activation_map():
    # conv-relu-GAP-linear: df_t/dA_k = W[t, k] / (h w), so Grad-CAM = relu(sum_k W[t,k] A_k)/(h w),
    # the CAM of Zhou et al. (2016) up to the constant 1/(h w).
    net = Network("cam", [Conv2d("conv", 3, 4, 3, padding=1), ReLU("relu"), GlobalAvgPool2d("gap"),
                          Linear("fc", 4, 5)], 3, None, (6, 6), 5).astype(np.float64)
    rng = np.random.default_rng(1)
    net.load_parameters({n: {k: rng.normal(size=v.shape) for k, v in a.items()}
                         for n, a in net.parameters().items()})
    x = rng.normal(size=(2, 3, 6, 8))
    cam = saliency.grad_cam(net, x, target=3, layer="relu", relu=False)
    activations = net.forward(x).outputs["relu"]
    expected = np.einsum("k,nkhw->nhw", net.layer("fc").weight[3], activations) / 48
    np.testing.assert_allclose(cam, expected, rtol=1e-12)
    np.testing.assert_allclose(saliency.grad_cam(net, x, 3, "relu"), np.maximum(expected, 0))
    with pytest.raises(ValueError, match="spatial"):
        saliency.grad_cam(net, x, 3, "gap")


def test_neuron_selection_picks_activation_times_effect(x):
    net = small_net(seed=4)
    trace = net.forward(x)
    a = trace.outputs["fire2"]
    effect = net.backward(trace, np.eye(4)[[1, 1]], stop="fire2")
    best = (a * effect).reshape(2, -1).argmax(axis=1)
    signal = np.zeros_like(a).reshape(2, -1)
    signal[[0, 1], best] = 1
    guided = net.backward(trace, signal.reshape(a.shape), rule=saliency.Guided(), start="fire2")
    expected = guided / np.abs(guided).max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(saliency.neuron_selection(net, x, 1, "fire2", k=1), expected)
    assert saliency.neuron_selection(net, x, 1, "fire2", k=4).shape == x.shape
    with pytest.raises(ValueError, match="k must lie"):
        saliency.neuron_selection(net, x, 1, "fire2", k=0)


def test_targets_and_references_are_checked(x):
    net = small_net()
    np.testing.assert_array_equal(saliency.targets_for(net(x), None), net(x).argmax(axis=1))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        saliency.gradient(net, x, target=4)
    with pytest.raises(ValueError, match="output must be"):
        saliency.gradient(net, x, 0, output="probability")
    with pytest.raises(ValueError, match="reference shape"):
        saliency.deeplift(net, x, 0, reference=np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match="preprocessing"):
        saliency.deeplift(net, x, 0, reference="black")
    bad = np.zeros(x.shape[1:])
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        saliency.deeplift(net, x, 0, reference=bad)


def test_upsample_matches_bilinear_half_pixel_interpolation():
    torch = pytest.importorskip("torch")
    heat = np.random.default_rng(0).random((2, 13, 13))
    ours = saliency.postprocess.upsample(heat, (227, 200))
    ref = torch.nn.functional.interpolate(torch.from_numpy(heat)[:, None], size=(227, 200),
                                          mode="bilinear", align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
