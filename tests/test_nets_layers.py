"""Every layer's forward and input signal against HIPS autograd on randomized shapes, on both
backends (every test here runs once with "numpy" and once with "numba").

The autograd versions below are written from the layers' defining equations, independently of
``nets.reference`` and ``nets._numba``; autograd then differentiates them. A layer passes when
its forward equals the equation and its backward (rule=None) equals autograd's
vector-Jacobian product.
"""
import autograd.numpy as anp
import numpy as np
import pytest
from autograd import grad

from sensloc import nets
from sensloc.nets import (Concat, Conv2d, DepthwiseConv2d, Fire, Flatten, GlobalAvgPool2d,
                          InvertedResidual, Linear, MaxPool2d, ReLU, ReLU6, SamePad2d, reference)


@pytest.fixture(autouse=True, params=["numpy", "numba"])
def backend(request):
    """Run the test on each backend."""
    with nets.backend(request.param):
        yield request.param


def ag_conv(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    k = w.shape[2]
    oh = (h + 2 * padding - k) // stride + 1
    ow = (wd + 2 * padding - k) // stride + 1
    xp = anp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode="constant")
    y = 0.0
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            y = y + anp.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y + b[None, :, None, None]


def ag_depthwise(x, w, b, stride, padding):
    """``y[n, c] = b[c] + sum_{i,j} w[c, 0, i, j] x_pad[n, c, s*oh + i, s*ow + j]``."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    oh = (h + 2 * padding - k) // stride + 1
    ow = (wd + 2 * padding - k) // stride + 1
    xp = anp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode="constant")
    y = 0.0
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
            y = y + patch * w[None, :, 0, i, j, None, None]
    return y + b[None, :, None, None]


def ag_same_pad(x, k, stride):
    """TensorFlow's SAME padding, written out: pad to ``(ceil(H/s) - 1) s + k`` rows, the
    smaller half before."""
    pads = []
    for size in x.shape[2:]:
        total = max((-(-size // stride) - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return anp.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode="constant")


def ag_relu6(v):
    return anp.minimum(anp.maximum(v, 0.0), 6.0)


def ag_max_pool(x, k, stride, padding, ceil_mode):
    h, w = x.shape[2:]
    oh = reference.pool_output_size(h, k, stride, padding, ceil_mode)
    ow = reference.pool_output_size(w, k, stride, padding, ceil_mode)
    rows = []
    for r in range(oh):
        h0, h1 = max(r * stride - padding, 0), min(r * stride - padding + k, h)
        cols = []
        for q in range(ow):
            w0, w1 = max(q * stride - padding, 0), min(q * stride - padding + k, w)
            cols.append(anp.max(anp.max(x[:, :, h0:h1, w0:w1], axis=3), axis=2))
        rows.append(anp.stack(cols, axis=-1))
    return anp.stack(rows, axis=-2)


def check_layer(layer, x, reference, rng, rtol=1e-4):
    """Forward equals ``reference(x)``; backward equals autograd's VJP of it."""
    y, cache = layer.forward(x)
    np.testing.assert_allclose(y, reference(x.astype(np.float64)), rtol=rtol, atol=1e-4)
    dy = rng.normal(size=y.shape)
    dx = layer.backward(dy.astype(np.float32), cache)
    dx_ref = grad(lambda v: anp.sum(reference(v) * dy))(x.astype(np.float64))
    np.testing.assert_allclose(dx, dx_ref, rtol=rtol, atol=1e-4)


@pytest.mark.parametrize("seed", range(8))
def test_conv2d(seed):
    rng = np.random.default_rng(seed)
    k, s = int(rng.choice([1, 3, 7])), int(rng.integers(1, 3))
    p = int(rng.integers(0, 2))
    c, o = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    layer = Conv2d("conv", c, o, k, stride=s, padding=p)
    layer.weight[...] = rng.normal(size=layer.weight.shape)
    layer.bias[...] = rng.normal(size=o)
    x = rng.normal(size=(2, c, k + int(rng.integers(0, 9)), k + int(rng.integers(0, 9)))).astype(np.float32)
    w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    check_layer(layer, x, lambda v: ag_conv(v, w, b, s, p), rng)


@pytest.mark.parametrize("seed", range(8))
def test_max_pool(seed):
    rng = np.random.default_rng(50 + seed)
    k = int(rng.choice([2, 3]))
    s = int(rng.integers(1, k + 1))
    ceil = bool(seed % 2)
    p = int(rng.integers(0, k // 2 + 1))
    layer = MaxPool2d("pool", k, s, padding=p, ceil_mode=ceil)
    x = rng.normal(size=(2, 3, int(rng.integers(k, 12)), int(rng.integers(k, 12)))).astype(np.float32)
    check_layer(layer, x, lambda v: ag_max_pool(v, k, s, p, ceil), rng)


def test_linear(rng):
    layer = Linear("fc", 7, 5)
    layer.weight[...] = rng.normal(size=(5, 7))
    layer.bias[...] = rng.normal(size=5)
    w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    check_layer(layer, rng.normal(size=(3, 7)).astype(np.float32), lambda v: v @ w.T + b, rng)


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_parameter_gradients(seed):
    """``dL/dw`` and ``dL/db`` for ``L = sum(y * dy)`` equal autograd's, in float64."""
    rng = np.random.default_rng(200 + seed)
    k, s, p = int(rng.choice([1, 3, 5])), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    c, o = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    layer = Conv2d("conv", c, o, k, stride=s, padding=p)
    layer.weight, layer.bias = rng.normal(size=layer.weight.shape), rng.normal(size=o)
    x = rng.normal(size=(3, c, k + int(rng.integers(0, 9)), k + int(rng.integers(0, 9))))
    y, cache = layer.forward(x)
    dy = rng.normal(size=y.shape)
    grads = layer.backward_parameters(dy, cache)
    dw = grad(lambda w: anp.sum(ag_conv(x, w, layer.bias, s, p) * dy))(layer.weight)
    db = grad(lambda b: anp.sum(ag_conv(x, layer.weight, b, s, p) * dy))(layer.bias)
    np.testing.assert_allclose(grads["weight"], dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads["bias"], db, rtol=1e-10, atol=1e-10)


def test_linear_parameter_gradients(rng):
    layer = Linear("fc", 7, 5)
    layer.weight, layer.bias = rng.normal(size=(5, 7)), rng.normal(size=5)
    x = rng.normal(size=(4, 7))
    y, cache = layer.forward(x)
    dy = rng.normal(size=y.shape)
    grads = layer.backward_parameters(dy, cache)
    dw = grad(lambda w: anp.sum((x @ w.T + layer.bias) * dy))(layer.weight)
    db = grad(lambda b: anp.sum((x @ layer.weight.T + b) * dy))(layer.bias)
    np.testing.assert_allclose(grads["weight"], dw, rtol=1e-12)
    np.testing.assert_allclose(grads["bias"], db, rtol=1e-12)


def test_relu(rng):
    check_layer(ReLU("relu"), rng.normal(size=(2, 3, 4, 5)).astype(np.float32),
                lambda v: anp.maximum(v, 0.0), rng)


def test_global_avg_pool_and_flatten(rng):
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    check_layer(GlobalAvgPool2d("gap"), x, lambda v: anp.mean(anp.mean(v, axis=3), axis=2), rng)
    check_layer(Flatten("flatten"), x, lambda v: anp.reshape(v, (2, -1)), rng)


def test_concat_splits_signal(rng):
    a, b = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))
    y, cache = Concat("cat").forward([a, b])
    assert y.shape == (2, 8, 4, 4)
    da, db = Concat("cat").backward(y * 2, cache)
    np.testing.assert_array_equal(da, 2 * a)
    np.testing.assert_array_equal(db, 2 * b)


def test_fire_module(rng):
    fire = Fire("fire", 6, 3, 4, 5)
    params = {}
    for name, arrays in fire.parameters().items():
        for key, value in arrays.items():
            value[...] = rng.normal(size=value.shape)
        params[name] = {k: v.astype(np.float64) for k, v in arrays.items()}

    def reference(v):
        s = anp.maximum(ag_conv(v, params["fire/squeeze1x1"]["weight"], params["fire/squeeze1x1"]["bias"], 1, 0), 0)
        e1 = anp.maximum(ag_conv(s, params["fire/expand1x1"]["weight"], params["fire/expand1x1"]["bias"], 1, 0), 0)
        e3 = anp.maximum(ag_conv(s, params["fire/expand3x3"]["weight"], params["fire/expand3x3"]["bias"], 1, 1), 0)
        return anp.concatenate([e1, e3], axis=1)

    check_layer(fire, rng.normal(size=(2, 6, 7, 6)).astype(np.float32), reference, rng)


@pytest.mark.parametrize("seed", range(8))
def test_depthwise_conv2d(seed):
    rng = np.random.default_rng(300 + seed)
    k, s, p = int(rng.choice([1, 3, 5])), int(rng.integers(1, 4)), int(rng.integers(0, 3))
    c = int(rng.integers(1, 7))
    layer = DepthwiseConv2d("dw", c, k, stride=s, padding=p)
    layer.weight[...] = rng.normal(size=layer.weight.shape)
    layer.bias[...] = rng.normal(size=c)
    x = rng.normal(size=(2, c, k + int(rng.integers(0, 9)), k + int(rng.integers(0, 9))))
    w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    check_layer(layer, x.astype(np.float32), lambda v: ag_depthwise(v, w, b, s, p), rng)


@pytest.mark.parametrize("side, k, stride", [(8, 3, 2), (9, 3, 2), (7, 3, 1), (10, 5, 3)])
def test_depthwise_conv2d_same_padding(rng, side, k, stride):
    """``padding="same"`` (MobileNetV2's blocks) is SAME padding written out, then a depthwise
    convolution with no padding: forward, input signal and parameter gradients, on a
    (side, side + 1) input, so rows and columns get different paddings at stride 2."""
    c = 3
    layer = DepthwiseConv2d("dw", c, k, stride=stride, padding="same")
    layer.weight[...] = rng.normal(size=layer.weight.shape)
    layer.bias[...] = rng.normal(size=c)
    x = rng.normal(size=(2, c, side, side + 1))
    w, b = layer.weight.astype(np.float64), layer.bias.astype(np.float64)
    check_layer(layer, x.astype(np.float32),
                lambda v: ag_depthwise(ag_same_pad(v, k, stride), w, b, stride, 0), rng)
    y, cache = layer.forward(x)
    assert y.shape[2:] == (-(-side // stride), -(-(side + 1) // stride))
    dy = rng.normal(size=y.shape)
    grads = layer.backward_parameters(dy, cache)
    dw = grad(lambda w_: anp.sum(ag_depthwise(ag_same_pad(x, k, stride), w_, b, stride, 0)
                                 * dy))(w)
    np.testing.assert_allclose(grads["weight"], dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads["bias"], dy.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_depthwise_conv2d_parameter_gradients(seed):
    rng = np.random.default_rng(400 + seed)
    k, s, p = int(rng.choice([1, 3])), int(rng.integers(1, 3)), int(rng.integers(0, 2))
    c = int(rng.integers(1, 6))
    layer = DepthwiseConv2d("dw", c, k, stride=s, padding=p)
    layer.weight, layer.bias = rng.normal(size=layer.weight.shape), rng.normal(size=c)
    x = rng.normal(size=(3, c, k + int(rng.integers(0, 9)), k + int(rng.integers(0, 9))))
    y, cache = layer.forward(x)
    dy = rng.normal(size=y.shape)
    grads = layer.backward_parameters(dy, cache)
    dw = grad(lambda w: anp.sum(ag_depthwise(x, w, layer.bias, s, p) * dy))(layer.weight)
    db = grad(lambda b: anp.sum(ag_depthwise(x, layer.weight, b, s, p) * dy))(layer.bias)
    np.testing.assert_allclose(grads["weight"], dw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grads["bias"], db, rtol=1e-10, atol=1e-10)


def test_relu6(rng):
    # values spread over [-12, 12]: both kinks are crossed
    check_layer(ReLU6("relu6"), (4 * rng.normal(size=(2, 3, 5, 6))).astype(np.float32),
                ag_relu6, rng)


@pytest.mark.parametrize("side, k, stride", [(8, 3, 2), (9, 3, 2), (7, 3, 1), (10, 5, 3),
                                             (6, 1, 1)])
def test_same_pad(rng, side, k, stride):
    x = rng.normal(size=(2, 3, side, side + 1)).astype(np.float32)
    check_layer(SamePad2d("pad", k, stride), x, lambda v: ag_same_pad(v, k, stride), rng)
    y, _ = SamePad2d("pad", k, stride).forward(x)
    # a k x k, stride-s convolution of the padded input gives ceil(H / s) rows, as SAME promises
    assert (y.shape[2] - k) // stride + 1 == -(-side // stride)


@pytest.mark.parametrize("c_in, t, c_out, stride, side", [
    (4, 1, 3, 1, 7),     # no expansion (block1), no residual: the channels change
    (4, 3, 4, 1, 6),     # residual addition
    (3, 2, 5, 2, 8),     # stride 2 on an even size: SAME pads after only
    (3, 2, 5, 2, 7),
])
def test_inverted_residual(rng, c_in, t, c_out, stride, side):
    block = InvertedResidual("b", c_in, t, c_out, stride)
    assert block.residual == (stride == 1 and c_in == c_out)
    params = {}
    for name, arrays in block.parameters().items():
        for key, value in arrays.items():
            value[...] = rng.normal(size=value.shape)
        params[name] = {k: v.astype(np.float64) for k, v in arrays.items()}
    assert ("b.expand" in params) == (t != 1)

    def reference(v):
        h = v
        if t != 1:
            h = ag_relu6(ag_conv(h, params["b.expand"]["weight"], params["b.expand"]["bias"], 1, 0))
        h = ag_relu6(ag_depthwise(ag_same_pad(h, 3, stride), params["b.depthwise"]["weight"],
                                  params["b.depthwise"]["bias"], stride, 0))
        h = ag_conv(h, params["b.project"]["weight"], params["b.project"]["bias"], 1, 0)
        return v + h if stride == 1 and c_in == c_out else h

    check_layer(block, rng.normal(size=(2, c_in, side, side)).astype(np.float32), reference, rng)


def test_layers_run_in_float64(rng):
    layer = Conv2d("conv", 2, 3, 3, padding=1)
    layer.weight = rng.normal(size=layer.weight.shape)
    layer.bias = rng.normal(size=3)
    x = rng.normal(size=(1, 2, 5, 5))
    y, cache = layer.forward(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ag_conv(x, layer.weight, layer.bias, 1, 1), rtol=1e-12)
    assert layer.backward(np.ones_like(y), cache).dtype == np.float64


def test_conv_winograd_memo_follows_in_place_weight_changes(rng, backend):
    # The fast backend keeps the transformed kernels between passes; changing the weights in
    # place (as optimizers and the randomization sanity check do) or replacing them must show.
    from sensloc.nets._numba import kernels
    conv = Conv2d("c", 48, 9, 3, padding=1)  # Winograd both ways (kernels.uses_winograd)
    assert kernels.uses_winograd(3, 1, 1, 48, 9) and kernels.uses_winograd(3, 1, 1, 48, 9, True)
    x = rng.normal(size=(2, 48, 6, 5)).astype(np.float32)
    conv.weight[...] = rng.normal(size=conv.weight.shape)
    for change in (None, "in place", "replaced", "float64"):
        if change == "in place":
            conv.weight *= -0.5
        elif change == "replaced":
            conv.weight = rng.normal(size=conv.weight.shape).astype(np.float32)
        elif change == "float64":
            conv.weight, conv.bias, x = (a.astype(np.float64) for a in (conv.weight, conv.bias, x))
        # float32 rounding of 432-term sums, against the size of the outputs; a stale memo
        # is off by the outputs' own size
        y, cache = conv.forward(x)
        expected = reference.conv2d_forward(x, conv.weight, conv.bias, 1, 1)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
        dy = rng.normal(size=y.shape).astype(y.dtype)
        expected = reference.conv2d_backward_input(dy, conv.weight, x.shape, 1, 1)
        np.testing.assert_allclose(conv.backward(dy, cache), expected, rtol=1e-5,
                                   atol=1e-5 * np.abs(expected).max())
