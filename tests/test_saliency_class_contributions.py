"""Class contributions (``sensloc.saliency.class_contributions``): each channel's term of the
class score at each cell, checked against the networks' own class scores (their sum over
channels plus the bias is SqueezeNet's class map before its ReLU and, averaged over the cells,
MobileNetV2's logit), against explicit products, and as a mirrored map kind."""
import numpy as np
import pytest

from sensloc import nets, saliency
from sensloc.saliency.layers import has_linear_head, linear_head
from sensloc.saliency.maps import MapSpec


def _net(name, seed=0):
    """A float64 network with random weights (the identities hold to float64 rounding)."""
    return nets.random_parameters(nets.build(name), seed).astype(np.float64)


def test_squeezenet_contributions_sum_to_the_class_map_before_its_relu(rng):
    net = _net("squeezenet1_0")
    x = rng.normal(size=(2, 3, 99, 99))
    targets = np.array([7, 912])
    trace = net.forward(x)
    c = saliency.class_contributions(net, x, targets)
    assert c.shape == (2, 512, 5, 5) and c.dtype == np.float64
    # conv_final pads by 1: its border cells see only zeros; the inner ones see fire9's cells
    class_map = trace.outputs["conv_final"][np.arange(2), targets][:, 1:-1, 1:-1]
    bias = net.layer("conv_final").bias[targets]
    np.testing.assert_allclose(c.sum(axis=1) + bias[:, None, None], class_map,
                               rtol=1e-12, atol=1e-12)
    weight, fire9 = net.layer("conv_final").weight, trace.outputs["fire9"]
    for n, j, h, w in ((0, 0, 0, 0), (1, 511, 4, 2), (1, 200, 3, 3)):
        assert c[n, j, h, w] == weight[targets[n], j, 0, 0] * fire9[n, j, h, w]


def test_mobilenet_contributions_average_to_the_logit(rng):
    net = _net("mobilenet_v2")
    x = rng.normal(size=(2, 3, 96, 96))
    trace = net.forward(x)
    c = saliency.class_contributions(net, x, trace=trace)  # each image's top-1 output
    top1 = trace.output.argmax(axis=1)
    assert c.shape == (2, 1280, 3, 3)
    bias = net.layer("classifier").bias[top1]
    np.testing.assert_allclose(c.sum(axis=1).mean(axis=(1, 2)) + bias,
                               trace.output[np.arange(2), top1], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(c, saliency.class_contributions(net, x, top1))


def test_linear_heads_are_found_and_fully_connected_heads_refused():
    assert linear_head(nets.build("squeezenet1_0"))[0] == "fire9"
    layer, weight = linear_head(nets.build("mobilenet_v2"))
    assert layer == "head_relu6" and weight.shape == (1001, 1280)
    for name in ("vgg16", "vgg_small"):
        with pytest.raises(ValueError, match="not a linear map of one layer's cells"):
            linear_head(nets.build(name))
    assert [has_linear_head(a) for a in ("squeezenet1_0", "mobilenet_v2", "vgg11", "vgg16")] \
        == [True, True, False, False]


def test_the_map_kind_mirrors_the_photo_and_the_cells_back(rng):
    net = _net("squeezenet1_0", seed=1)
    x = rng.normal(size=(2, 3, 99, 99))
    targets = np.array([1, 2])
    spec = MapSpec.make("class_contributions")
    assert spec.is_features and spec.name == "class_contributions"
    np.testing.assert_array_equal(spec.compute(net, x, targets),
                                  saliency.class_contributions(net, x, targets).astype(np.float32))
    mirrored = MapSpec.make("class_contributions", mirror=True)
    assert mirrored.name == "class_contributions-mirror"
    expected = saliency.class_contributions(net, x[..., ::-1].copy(), targets)[..., ::-1]
    np.testing.assert_array_equal(mirrored.compute(net, x, targets), expected.astype(np.float32))
    with pytest.raises(ValueError, match="no zoom"):
        MapSpec.make("class_contributions", zoom=2.0)
    with pytest.raises(ValueError, match="takes options"):
        MapSpec.make("class_contributions", layer="fire9")
