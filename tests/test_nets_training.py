"""Training: the loss, the parameter gradients of a whole network, and the optimizers.

The network's parameter gradients are checked against HIPS autograd differentiating the same
computation written from the layers' equations (float64), and against centred finite
differences; the optimizers against ``torch.optim`` step by step. Every test runs on both
backends (nets.backends).
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from sensloc import nets
from sensloc.nets.training import SGD, Adam, softmax_cross_entropy, train_step
from test_nets_layers import ag_conv, ag_max_pool


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def backend(request):
    """Run the test on each backend."""
    with nets.backend(request.param):
        yield request.param


def small_vgg(seed=0):
    """A float64 VGG with the layer types of ``vgg_small``, small enough for autograd."""
    net = nets.vgg("tiny", [3, "M", 4, "M"], num_classes=5, input_size=8, hidden=6)
    return nets.random_parameters(net, seed).astype(np.float64)


def ag_cross_entropy(logits, labels):
    shifted = logits - anp.max(logits, axis=1, keepdims=True)
    log_p = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
    return -anp.mean(log_p[np.arange(len(labels)), labels])


def ag_loss(params, x, labels):
    """The tiny VGG's loss from its equations: conv, ReLU, pool, conv, ReLU, pool, 3 FCs."""
    h = x
    for block in (1, 2):
        conv = params[f"conv{block}_1"]
        h = ag_max_pool(anp.maximum(ag_conv(h, conv["weight"], conv["bias"], 1, 1), 0), 2, 2, 0,
                        False)
    h = anp.reshape(h, (x.shape[0], -1))
    for name in ("fc6", "fc7", "fc8"):
        h = h @ params[name]["weight"].T + params[name]["bias"]
        if name != "fc8":
            h = anp.maximum(h, 0)
    return ag_cross_entropy(h, labels)


def test_cross_entropy_and_its_signal_match_autograd(rng):
    logits, labels = rng.normal(size=(6, 4)) * 5, rng.integers(0, 4, 6)
    loss, signal = softmax_cross_entropy(logits, labels)
    assert loss == pytest.approx(ag_cross_entropy(logits, labels), rel=1e-14)
    np.testing.assert_allclose(signal, grad(ag_cross_entropy)(logits, labels), rtol=1e-12,
                               atol=1e-15)
    # Large logits must not overflow.
    loss, signal = softmax_cross_entropy(np.array([[1000.0, 0.0]]), np.array([1]))
    assert loss == pytest.approx(1000.0) and np.isfinite(signal).all()


def test_cross_entropy_refuses_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def test_network_parameter_gradients_match_autograd(rng):
    net = small_vgg()
    x, labels = rng.normal(size=(3, 3, 8, 8)), np.array([0, 4, 2])
    trace = net.forward(x)
    _, signal = softmax_cross_entropy(trace.output, labels)
    ours = net.backward_parameters(trace, signal)
    params = {name: dict(arrays) for name, arrays in net.parameters().items()}
    reference = grad(ag_loss)(params, x, labels)
    assert list(ours) == list(net.parameters())
    for name in params:
        for key in ("weight", "bias"):
            np.testing.assert_allclose(ours[name][key], reference[name][key], rtol=1e-9,
                                       atol=1e-12, err_msg=f"{name}/{key}")


def test_network_parameter_gradients_match_finite_differences(rng):
    net = small_vgg(seed=1)
    x, labels = rng.normal(size=(2, 3, 8, 8)), np.array([1, 3])
    trace = net.forward(x)
    _, signal = softmax_cross_entropy(trace.output, labels)
    ours = net.backward_parameters(trace, signal)

    def loss():
        return softmax_cross_entropy(net(x), labels)[0]

    step = 1e-6
    for name, arrays in net.parameters().items():
        for key, array in arrays.items():
            for flat in rng.choice(array.size, size=min(3, array.size), replace=False):
                index = np.unravel_index(flat, array.shape)
                saved = array[index]
                array[index] = saved + step
                up = loss()
                array[index] = saved - step
                down = loss()
                array[index] = saved
                assert ours[name][key][index] == pytest.approx((up - down) / (2 * step),
                                                               rel=1e-5, abs=1e-8), (name, key)


def test_backward_parameters_refuses_composite_layers():
    net = nets.squeezenet1_0()
    trace = net.forward(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(TypeError, match="composite"):
        net.backward_parameters(trace, np.zeros_like(trace.output))


def run_torch_optimizer(torch_optimizer, params, grads_per_step, weight_decay, **options):
    import torch
    tensors = {(name, key): torch.tensor(value.copy(), requires_grad=True)
               for name, arrays in params.items() for key, value in arrays.items()}
    groups = [{"params": [t for (_, key), t in tensors.items() if key == "weight"],
               "weight_decay": weight_decay},
              {"params": [t for (_, key), t in tensors.items() if key == "bias"],
               "weight_decay": 0.0}]
    optimizer = torch_optimizer(groups, **options)
    for grads in grads_per_step:
        for (name, key), tensor in tensors.items():
            tensor.grad = torch.tensor(grads[name][key])
        optimizer.step()
    return {(name, key): t.detach().numpy() for (name, key), t in tensors.items()}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizers_match_torch(rng, kind):
    torch = pytest.importorskip("torch")
    params = {"a": {"weight": rng.normal(size=(3, 4)), "bias": rng.normal(size=3)},
              "b": {"weight": rng.normal(size=(2, 3, 3, 3)), "bias": rng.normal(size=2)}}
    steps = [{name: {key: rng.normal(size=v.shape) for key, v in arrays.items()}
              for name, arrays in params.items()} for _ in range(6)]
    expected = run_torch_optimizer(
        torch.optim.SGD if kind == "sgd" else torch.optim.Adam, params, steps, 0.01,
        lr=0.05, **({"momentum": 0.9} if kind == "sgd" else {"betas": (0.8, 0.99), "eps": 1e-6}))
    ours = {name: {key: v.copy() for key, v in arrays.items()} for name, arrays in params.items()}
    optimizer = SGD(ours, lr=0.05, momentum=0.9, weight_decay=0.01) if kind == "sgd" else \
        Adam(ours, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01)
    for grads in steps:
        optimizer.step(grads)
    for (name, key), value in expected.items():
        np.testing.assert_allclose(ours[name][key], value, rtol=1e-12, atol=1e-14)


def test_optimizer_refuses_non_finite_gradients():
    params = {"a": {"weight": np.ones(2), "bias": np.zeros(1)},
              "b": {"weight": np.ones(2), "bias": np.zeros(1)}}
    optimizer = SGD(params, lr=0.1)
    with pytest.raises(FloatingPointError, match="b/bias"):
        optimizer.step({"a": {"weight": np.ones(2), "bias": np.ones(1)},
                        "b": {"weight": np.ones(2), "bias": np.array([np.inf])}})
    # Nothing was updated, not even the layers before the bad one.
    np.testing.assert_array_equal(params["a"]["weight"], 1.0)
    np.testing.assert_array_equal(params["a"]["bias"], 0.0)


def test_training_fits_a_learnable_problem(rng):
    """Bright-left versus bright-right images: a few Adam steps must learn them."""
    net = nets.random_parameters(
        nets.vgg("tiny", [4, "M", 8, "M"], num_classes=2, input_size=8, hidden=16), seed=3)
    optimizer = Adam(net.parameters(), lr=3e-3)

    def batch(n):
        labels = rng.integers(0, 2, n)
        x = rng.normal(scale=0.3, size=(n, 3, 8, 8)).astype(np.float32)
        x[labels == 0, :, :, :4] += 1
        x[labels == 1, :, :, 4:] += 1
        return x, labels

    first_loss, _ = train_step(net, *batch(64), optimizer)
    for _ in range(60):
        loss, correct = train_step(net, *batch(64), optimizer)
    x, labels = batch(256)
    assert (net(x).argmax(axis=1) == labels).mean() > 0.97
    assert loss < first_loss / 4
