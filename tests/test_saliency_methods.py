"""The methods against closed forms: integrated gradients, SmoothGrad, Grad-CAM, neuron selection,
occlusion; every test on both backends (nets.backends)."""
import numpy as np
import pytest

from sensloc import nets, saliency
from sensloc.nets import Conv2d, Flatten, GlobalAvgPool2d, Linear, Network, ReLU
from test_saliency_rules import small_net


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def backend(request):
    """Run the test on each backend."""
    with nets.backend(request.param):
        yield request.param


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


# ------------------------------------------------------------------------------ occlusion

def linear_net(weight):
    """score_t = sum w_t * x: occlusion's drops have a closed form on it."""
    k, c, h, w = weight.shape
    net = Network("linear", [Flatten("flat"), Linear("fc", c * h * w, k)], c, None, (h, w), k)
    net.astype(np.float64)
    net.layer("fc").weight[...] = weight.reshape(k, -1)
    return net


def test_patch_starts_follow_captum_and_cover_every_pixel():
    np.testing.assert_array_equal(saliency.patch_starts(10, 4, 3), [0, 3, 6])
    np.testing.assert_array_equal(saliency.patch_starts(10, 4, 2), [0, 2, 4, 6])
    np.testing.assert_array_equal(saliency.patch_starts(7, 7, 1), [0])
    np.testing.assert_array_equal(saliency.patch_starts(10, 4, 4), [0, 4, 8])
    cover = saliency.patch_cover(10, 4, 4)  # the last patch is cut to 2 pixels
    np.testing.assert_array_equal(cover.sum(axis=1), [4, 4, 2])
    assert cover.sum(axis=0).min() >= 1


def test_occlusion_of_a_linear_model_is_the_mean_patch_sum():
    # Drop of patch p = sum_{(c,u,v) in p} w_t[c,u,v] (x - b)[c,u,v]; the value of a pixel is
    # the mean drop over the patches covering it. Written as loops, independent of the einsum.
    rng = np.random.default_rng(5)
    weight = rng.normal(size=(3, 2, 7, 9))
    x = rng.normal(size=(2, 2, 7, 9))
    window, stride, baseline = 3, 2, 0.25
    ours = saliency.occlusion(linear_net(weight), x, target=[1, 2], window=window,
                              stride=stride, baseline=baseline, batch_size=5)
    for n, t in enumerate([1, 2]):
        total, count = np.zeros((7, 9)), np.zeros((7, 9))
        for top in saliency.patch_starts(7, window, stride):
            for left in saliency.patch_starts(9, window, stride):
                patch = np.s_[:, top:top + window, left:left + window]
                drop = (weight[t][patch] * (x[n][patch] - baseline)).sum()
                total[patch[1:]] += drop
                count[patch[1:]] += 1
        for c in range(2):
            np.testing.assert_allclose(ours[n, c], total / count, rtol=1e-12, atol=1e-12)


def test_occlusion_peaks_on_the_only_informative_pixel():
    # Only pixel (4, 6) moves the score, so only patches over it change the score, and the
    # pixel itself is the one place every covering patch hides it: the largest mean drop, equal
    # to its whole contribution w x; pixels sharing no patch with it get exactly 0.
    weight = np.zeros((2, 3, 12, 12))
    weight[1, :, 4, 6] = [2.0, -1.0, 0.5]
    x = np.random.default_rng(6).uniform(1, 2, (1, 3, 12, 12))
    heat = saliency.occlusion(linear_net(weight), x, target=1, window=3, stride=1)[0, 0]
    assert np.unravel_index(heat.argmax(), heat.shape) == (4, 6)
    assert np.isclose(heat[4, 6], weight[1, :, 4, 6] @ x[0, :, 4, 6])
    assert np.sum(heat == heat.max()) == 1
    assert heat[7:, :].max() == 0 and heat[:, :4].max() == 0


def test_occlusion_batches_targets_and_bad_input(x):
    net = small_net(seed=4)
    a = saliency.occlusion(net, x, None, window=4, stride=3, batch_size=7)
    np.testing.assert_allclose(a, saliency.occlusion(net, x, net(x).argmax(axis=1), window=4,
                                                     stride=3, batch_size=100), rtol=1e-12)
    np.testing.assert_array_equal(a[:, 0], a[:, 2])  # one value for all channels
    blur = saliency.make_reference(net, x, "blur")
    np.testing.assert_allclose(saliency.occlusion(net, x, 0, 4, 3, baseline="blur"),
                               saliency.occlusion(net, x, 0, 4, 3, baseline=blur), rtol=1e-12)
    assert saliency.METHODS["occlusion"] is saliency.occlusion
    with pytest.raises(ValueError, match="window"):
        saliency.occlusion(net, x, 0, window=13)
    with pytest.raises(ValueError, match="stride"):
        saliency.occlusion(net, x, 0, window=4, stride=5)
    with pytest.raises(ValueError, match="batch_size"):
        saliency.occlusion(net, x, 0, window=4, stride=2, batch_size=0)


def test_explained_classes_runs_the_network_only_to_predict(x, monkeypatch):
    net = small_net()
    predicted = net(x).argmax(axis=1)
    np.testing.assert_array_equal(saliency.methods.explained_classes(net, x, None), predicted)
    np.testing.assert_array_equal(saliency.methods.explained_classes(net, x, "top1"), predicted)

    def no_forward(*args, **kwargs):
        raise AssertionError("the classes were given: no forward pass needed")
    monkeypatch.setattr(net, "forward", no_forward)
    np.testing.assert_array_equal(saliency.methods.explained_classes(net, x, [1, 0]), [1, 0])
    with pytest.raises(ValueError, match="target class indices"):
        saliency.methods.explained_classes(net, x, net.num_classes)


@pytest.mark.parametrize("architecture", ["squeezenet1_0", "mobilenet_v2", "vgg11"])
def test_maps_from_one_shared_forward_pass_equal_separate_passes(architecture):
    """The evaluation runs one forward pass per batch and hands it to every map
    (``MapSpec.compute(..., trace)``): backward passes only read a trace, so each map, taken
    in turn from the one trace, equals the map of its own forward pass, bit for bit."""
    from sensloc.saliency.maps import MapSpec
    options = {"num_classes": 10, "input_size": 32, "hidden": 16} if architecture == "vgg11" else {}
    net = nets.random_parameters(nets.build(architecture, **options), seed=3)
    layer = saliency.layers.feature_layer(net)
    x = np.random.default_rng(4).normal(size=(2, 3, 32, 32)).astype(np.float32)
    targets = np.array([1, 7])
    specs = [MapSpec.make("gradient"), MapSpec.make("guided"), MapSpec.make("deconvnet"),
             MapSpec.make("deeplift", "sum", reference="blur"), MapSpec.make("grad_cam"),
             MapSpec.make("activations", layer=layer),
             MapSpec.make("neuron_selection", k=2), MapSpec.make("gradient", mirror=True)]
    trace = net.forward(x)
    shared = [spec.compute(net, x, targets, trace) for spec in specs]
    for spec, heat in zip(specs, shared):
        alone = spec.compute(net, x, targets)
        assert np.abs(alone).max() > 0, spec.name
        assert np.array_equal(heat, alone), spec.name
    with pytest.raises(ValueError, match="another input"):
        saliency.gradient(net, x.copy(), targets, trace=trace)
