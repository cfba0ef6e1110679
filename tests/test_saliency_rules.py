"""The rules against mathematics, on small float64 networks.

* gradient rule == centred finite differences == HIPS autograd;
* guided backprop and deconvnet obey their sign identities;
* DeepLIFT's rescale rule: the secant, the gradient fallback, summation-to-delta (also through
  overlapping 3x3/2 max pools), and the paper's max-pool choice breaking it;
* a new rule needs no layer code.

Every test runs on both backends (nets.backends).
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from sensloc import nets
from sensloc import saliency
from sensloc.nets import Conv2d, Fire, Flatten, GlobalAvgPool2d, Linear, MaxPool2d, Network, ReLU
from test_nets_layers import ag_conv, ag_max_pool


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def backend(request):
    """Run the test on each backend."""
    with nets.backend(request.param):
        yield request.param


def small_net(seed=0, positive_head=False, bias=0.0):
    """conv-relu-pool(3x3/2 ceil, overlapping)-fire-conv-relu-gap-linear, float64."""
    layers = [Conv2d("conv1", 3, 6, 3, padding=1), ReLU("relu1"),
              MaxPool2d("pool1", 3, 2, ceil_mode=True),
              Fire("fire2", 6, 3, 4, 4),
              Conv2d("conv3", 8, 5, 3, padding=1), ReLU("relu3"),
              GlobalAvgPool2d("gap"), Linear("fc", 5, 4)]
    net = Network("small", layers, 3, None, (12, 12), 4).astype(np.float64)
    rng = np.random.default_rng(seed)
    params = {}
    for name, arrays in net.parameters().items():
        w = rng.normal(size=arrays["weight"].shape)
        if positive_head and name != "conv1":
            w = np.abs(w)
        params[name] = {"weight": w, "bias": rng.normal(size=arrays["bias"].shape) * 0.1 + bias}
    return net.load_parameters(params)


def ag_small_net(net, x):
    """The same network written with autograd.numpy from the layers' equations."""
    p = net.parameters()
    h = anp.maximum(ag_conv(x, p["conv1"]["weight"], p["conv1"]["bias"], 1, 1), 0)
    h = ag_max_pool(h, 3, 2, 0, True)
    s = anp.maximum(ag_conv(h, p["fire2/squeeze1x1"]["weight"], p["fire2/squeeze1x1"]["bias"], 1, 0), 0)
    e1 = anp.maximum(ag_conv(s, p["fire2/expand1x1"]["weight"], p["fire2/expand1x1"]["bias"], 1, 0), 0)
    e3 = anp.maximum(ag_conv(s, p["fire2/expand3x3"]["weight"], p["fire2/expand3x3"]["bias"], 1, 1), 0)
    h = anp.concatenate([e1, e3], axis=1)
    h = anp.maximum(ag_conv(h, p["conv3"]["weight"], p["conv3"]["bias"], 1, 1), 0)
    h = anp.mean(anp.mean(h, axis=3), axis=2)
    return h @ p["fc"]["weight"].T + p["fc"]["bias"]


@pytest.fixture
def x():
    return np.random.default_rng(1).normal(size=(2, 3, 12, 12))


def test_gradient_rule_equals_finite_differences_and_autograd(x):
    net = small_net()
    target = np.array([1, 3])
    g = saliency.gradient(net, x, target)
    np.testing.assert_array_equal(g, net.backward(net.forward(x), np.eye(4)[target]))  # rule=None

    for i in range(2):
        ag = grad(lambda v: ag_small_net(net, v)[0, target[i]])(x[i:i + 1])
        np.testing.assert_allclose(g[i:i + 1], ag, rtol=1e-10, atol=1e-12)

    eps, rng = 1e-6, np.random.default_rng(2)
    for _ in range(25):
        idx = (int(rng.integers(2)),) + tuple(int(rng.integers(s)) for s in x.shape[1:])
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        i = idx[0]
        fd = (net(plus)[i, target[i]] - net(minus)[i, target[i]]) / (2 * eps)
        assert abs(fd - g[idx]) <= 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("output", ["softmax", "log_softmax"])
def test_softmax_outputs_equal_finite_differences(x, output):
    net = small_net()
    g = saliency.gradient(net, x, target=2, output=output)

    def score(v):
        z = net(v)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return log_p[:, 2] if output == "log_softmax" else np.exp(log_p[:, 2])

    eps = 1e-6
    for idx in [(0, 0, 3, 4), (1, 2, 7, 7), (0, 1, 11, 0)]:
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (score(plus) - score(minus))[idx[0]] / (2 * eps)
        assert abs(fd - g[idx]) <= 1e-7 * max(1.0, abs(fd))


def relu_input_signals(net, x, rule, target=0):
    """The signal at the input of every ReLU (top level and inside fire modules)."""
    trace = net.forward(x)
    signals = []

    class Recording(type(rule)):
        def relu(self, signal, eta, eta_ref):
            out = super().relu(signal, eta, eta_ref)
            signals.append(out)
            return out

    net.backward(trace, np.eye(4)[[target] * len(x)], rule=Recording())
    return signals


@pytest.mark.parametrize("rule", [saliency.Guided(), saliency.Deconvnet()])
def test_guided_and_deconvnet_pass_only_positive_signals(x, rule):
    signals = relu_input_signals(small_net(), x, rule)
    assert len(signals) == 5 and all((s >= 0).all() for s in signals)
    assert any((s > 0).any() for s in signals)


def test_guided_equals_gradient_when_every_backward_signal_is_positive(x):
    # All weights above conv1 non-negative: every backward signal above conv1 is >= 0, so the
    # guided rule drops nothing the gradient keeps.
    net = small_net(positive_head=True)
    np.testing.assert_allclose(saliency.guided_backprop(net, x, 1), saliency.gradient(net, x, 1),
                               rtol=1e-12)


def test_deconvnet_ignores_the_forward_state(x):
    # Large positive biases switch every ReLU on: the gradient then ignores the forward state
    # too, and with positive weights above conv1 the three rules coincide.
    net = small_net(positive_head=True, bias=50.0)
    g = saliency.gradient(net, x, 1)
    np.testing.assert_allclose(saliency.deconvnet(net, x, 1), g, rtol=1e-12)
    # ... whereas with mixed-sign weights deconvnet != guided != gradient.
    net = small_net(seed=3)
    maps = [f(net, x, 1) for f in (saliency.gradient, saliency.guided_backprop, saliency.deconvnet)]
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[1], maps[2])


def test_guided_is_deconvnet_masked_at_the_last_relu():
    # One hidden layer: guided = W1^T (1[eta>0] relu(w2)), deconvnet = W1^T relu(w2).
    net = Network("mlp", [Flatten("flat"), Linear("fc1", 12, 7), ReLU("relu"), Linear("fc2", 7, 2)],
                  3, (2, 2), (2, 2), 2).astype(np.float64)
    rng = np.random.default_rng(4)
    net.load_parameters({n: {k: rng.normal(size=v.shape) for k, v in a.items()}
                         for n, a in net.parameters().items()})
    x = rng.normal(size=(1, 3, 2, 2))
    w1, w2 = net.layer("fc1").weight, net.layer("fc2").weight[0]
    eta = net.forward(x).outputs["fc1"][0]
    np.testing.assert_allclose(saliency.guided_backprop(net, x, 0).ravel(),
                               w1.T @ ((eta > 0) * np.maximum(w2, 0)), rtol=1e-12)
    np.testing.assert_allclose(saliency.deconvnet(net, x, 0).ravel(), w1.T @ np.maximum(w2, 0),
                               rtol=1e-12)
    np.testing.assert_allclose(saliency.gradient(net, x, 0).ravel(), w1.T @ ((eta > 0) * w2),
                               rtol=1e-12)


def test_rescale_relu_is_the_secant_with_gradient_fallback():
    rule = saliency.Rescale()
    eta = np.array([2.0, -1.0, 3.0, -2.0, 0.5, 0.5])
    ref = np.array([1.0, -3.0, -1.0, 1.0, 0.5, 0.5 - 1e-12])
    s = np.full(6, 2.0)
    # secants: (2-1)/1, 0/2, (3-0)/4, (0-1)/(-3); equal inputs -> g'(eta) = 1; |d| < 1e-10 -> 1
    np.testing.assert_allclose(rule.relu(s, eta, ref), 2 * np.array([1, 0, 0.75, 1 / 3, 1, 1]))
    with pytest.raises(ValueError, match="reference"):
        rule.relu(s, eta, None)
    with pytest.raises(ValueError, match="max_pool"):
        saliency.Rescale(max_pool="average")


@pytest.mark.parametrize("reference", ["zero", "blur", "random"])
def test_deeplift_summation_to_delta_through_overlapping_pools(x, reference):
    net = small_net(seed=5)
    if reference == "random":
        reference = np.random.default_rng(6).normal(size=x.shape[1:])
    contributions, delta = saliency.deeplift(net, x, target=[0, 2], reference=reference,
                                             return_delta=True)
    ref = saliency.make_reference(net, x, reference)
    expected = net(x)[[0, 1], [0, 2]] - net(ref)[[0, 1], [0, 2]]
    np.testing.assert_allclose(contributions.sum(axis=(1, 2, 3)), expected, rtol=1e-10, atol=1e-12)
    assert np.abs(delta).max() <= 1e-10 * np.abs(expected).max()


def test_deeplift_gradient_max_pool_breaks_summation_where_switches_differ(x):
    net = small_net(seed=5)
    ref = np.random.default_rng(6).normal(size=x.shape)
    _, delta = saliency.deeplift(net, x, 0, ref, max_pool="gradient", return_delta=True)
    assert np.abs(delta).min() > 1e-6  # the paper's choice is not complete ...
    same_switches = x + 1e-3 * np.random.default_rng(7).normal(size=x.shape)
    trace, ref_trace = net.forward(x), net.forward(same_switches)
    assert np.array_equal(trace.caches["pool1"].argmax, ref_trace.caches["pool1"].argmax)
    _, delta = saliency.deeplift(net, x, 0, same_switches, max_pool="gradient", return_delta=True)
    assert np.abs(delta).max() <= 1e-12  # ... except where both passes pick the same winners


def test_deeplift_of_a_reference_close_to_the_input_is_gradient_times_input(x):
    net = small_net(seed=8)
    ref = x - 1e-7 * np.random.default_rng(9).normal(size=x.shape)
    contributions = saliency.deeplift(net, x, 1, ref)
    np.testing.assert_allclose(contributions, (x - ref) * saliency.gradient(net, x, 1), rtol=1e-4,
                               atol=1e-16)


def test_a_new_rule_needs_no_layer_code(x):
    class Leaky(saliency.Rule):
        """Pass 10% of the signal through inactive units."""

        def relu(self, signal, eta, eta_ref):
            return signal * np.where(eta > 0, 1.0, 0.1)

    net = small_net()
    leaky = saliency.backpropagate(net, x, 0, Leaky())[0]
    assert leaky.shape == x.shape
    assert not np.allclose(leaky, saliency.gradient(net, x, 0))
