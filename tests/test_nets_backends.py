"""The two backends (nets.backends) are the same functions: equal on every operation, rule and
method, in float64 to 1e-12 relative, and choosing one is explicit.

* Operations on random shapes: strides 1-3, paddings, odd sizes, 1x1 and Winograd-sized
  convolutions, ceil-mode and padded max pools, every ReLU step.
* Rules: each built-in rule's NumPy ``relu`` against the fast backend's fused kernel; a rule
  the fast backend does not know (a user's, or a subclass overriding ``relu``) runs its own
  method there too.
* Depthwise convolutions and ReLU6 steps (MobileNetV2) on random shapes; the depthwise
  kernels also in float32, and each rule's ``relu6`` against its fused kernel.
* Whole networks: VGG16, SqueezeNet 1.0 and MobileNetV2 (at 96 x 96) with random weights, maps of gradient, guided
  backprop, deconvnet, DeepLIFT (both max-pool modes) and Grad-CAM.
* Importing the library changes nothing in the process and loads neither Numba nor llvmlite;
  ``python -m sensloc --help`` does not load Numba either.

Relative error is ``max |numba - numpy| / max |numpy|``: the two differ in the order of their
float64 sums (im2col and Winograd GEMMs against one product per kernel tap), i.e. by a few
units of 1e-16 times the size of the values summed.
"""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from sensloc import nets, saliency
from sensloc.nets import backends
from sensloc.nets import reference
from sensloc.nets._numba import kernels

fast = backends.backend_module("numba")
EQUAL = 1e-12


def relative_error(result, expected):
    scale = np.abs(expected).max()
    return np.abs(result - expected).max() / (scale if scale > 0 else 1.0)


def assert_equal_backends(result, expected):
    assert result.shape == expected.shape and result.dtype == expected.dtype
    assert relative_error(result, expected) <= EQUAL


THRESHOLDS = ("PARALLEL_ELEMENTS", "PARALLEL_DEPTHWISE_MACS", "PARALLEL_POINTWISE_MACS")


@pytest.fixture(params=["serial", "threads"])
def thread_path(request, monkeypatch):
    """Run the fast kernels that have a serial twin (:func:`nets._numba.kernels.serial_twin`)
    on the calling thread, or with Numba's threads, whatever the size of the test's arrays:
    the thresholds that choose between them set to infinity or to 0."""
    limit = 0 if request.param == "threads" else 1 << 62
    for module in (kernels, fast.depthwise):
        for name in THRESHOLDS:
            if hasattr(module, name):
                monkeypatch.setattr(module, name, limit)
    return request.param


def test_serial_twins_are_separate_compilations():
    # One function compiled twice: the twin has its own name, hence its own cache files.
    for kernel in (kernels._relu_gate, kernels._pointwise, fast.depthwise._forward,
                   fast.depthwise._relu6_secant):
        assert kernel.serial is not kernel
        assert kernel.serial.py_func.__qualname__ == kernel.py_func.__qualname__ + "_serial"
        assert kernel.targetoptions["parallel"] and "parallel" not in kernel.serial.targetoptions
    divisor = kernels._threshold_divisor()
    assert kernels.threads_for(kernels._relu_gate, 10, 11 * divisor) is kernels._relu_gate.serial
    assert kernels.threads_for(kernels._relu_gate, 11, 11 * divisor) is kernels._relu_gate


@pytest.mark.parametrize("policy, divisor", [(None, 16), ("PASSIVE", 1), ("passive", 1),
                                             ("ACTIVE", 16)])
def test_spinning_workers_take_smaller_kernels(policy, divisor):
    # The thresholds were measured with passive workers; spinning ones are awake already.
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    script = """if True:
        from sensloc.nets._numba import kernels
        k = kernels._relu_gate
        print(kernels._threshold_divisor(), kernels.threads_for(k, 1000, 16000) is k,
              kernels.threads_for(k, 1001, 1001) is k)
    """
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(divisor), str(divisor == 16), "True"]


# ------------------------------------------------------------------------------ choosing

def test_backends_have_the_same_operations_and_signatures():
    for name in backends.OPERATIONS:
        assert (inspect.signature(getattr(fast, name))
                == inspect.signature(getattr(reference, name))), name


def test_backend_is_chosen_explicitly_and_restored():
    assert nets.current_backend() == "numpy"            # the default
    with nets.backend("numba"):
        assert nets.current_backend() == "numba"
        assert backends.ops.conv2d_forward is fast.conv2d_forward
        with nets.backend("numpy"):
            assert backends.ops.conv2d_forward is reference.conv2d_forward
        assert nets.current_backend() == "numba"
    assert nets.current_backend() == "numpy"
    assert nets.use_backend("numba") == "numpy" and nets.use_backend("numpy") == "numba"
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        nets.use_backend("torch")
    assert nets.current_backend() == "numpy"
    with pytest.raises(AttributeError, match="no backend operation"):
        backends.ops.winograd_weights


# ------------------------------------------------------------------------------ operations

def conv_case(rng, winograd=False):
    k = 3 if winograd else int(rng.choice([1, 2, 3, 5, 7]))
    stride = 1 if winograd else int(rng.integers(1, 4))
    padding = int(rng.integers(0, 3)) if winograd else int(rng.integers(0, k // 2 + 2))
    c, o = ((int(rng.integers(32, 40)), int(rng.integers(8, 20))) if winograd
            else (int(rng.integers(1, 7)), int(rng.integers(1, 7))))
    n = int(rng.integers(1, 4))
    h, w = int(rng.integers(k, k + 13)), int(rng.integers(k, k + 13))
    return (rng.normal(size=(n, c, h, w)), rng.normal(size=(o, c, k, k)), rng.normal(size=o),
            stride, padding)


@pytest.mark.parametrize("winograd", [False, True])
@pytest.mark.parametrize("seed", range(10))
def test_convolution_operations_are_equal(seed, winograd):
    x, w, b, s, p = conv_case(np.random.default_rng(seed), winograd)
    y = reference.conv2d_forward(x, w, b, s, p)
    assert_equal_backends(fast.conv2d_forward(x, w, b, s, p), y)
    dy = np.random.default_rng(50 + seed).normal(size=y.shape)
    assert_equal_backends(fast.conv2d_backward_input(dy, w, x.shape, s, p),
                          reference.conv2d_backward_input(dy, w, x.shape, s, p))
    for ours, theirs in zip(fast.conv2d_backward_weight(dy, x, w.shape[2], s, p),
                            reference.conv2d_backward_weight(dy, x, w.shape[2], s, p)):
        assert_equal_backends(ours, theirs)


@pytest.mark.parametrize("k, stride, padding", [(7, 2, 0), (5, 1, 2), (3, 2, 1), (7, 3, 3),
                                               (3, 1, 0)])
def test_wide_convolutions_by_bands_equal_the_reference(monkeypatch, k, stride, padding):
    """Large output planes go by bands of output rows (kernels._conv_bands and its backward,
    even then odd bands): thresholds lowered so that small planes take that road with many
    bands, a last band cut short, and bands thinner than the (k - s) / s rows the backward
    pass's parity split needs. Float64 to EQUAL, float32 within the rounding bound of any
    order of summation."""
    monkeypatch.setattr(kernels, "WIDE_PLANE", 16)
    monkeypatch.setattr(kernels, "BAND_BYTES", 1)           # one output row per band, forward
    calls = []
    for name in ("_conv_bands", "_conv_bands_backward"):
        kernel = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _k=kernel, _n=name: (calls.append(_n),
                                                                          _k(*a))[1])
    rng = np.random.default_rng(600 + 10 * k + stride)
    x = rng.normal(size=(3, 2, 23, 19))
    w, b = rng.normal(size=(5, 2, k, k)), rng.normal(size=5)
    y = reference.conv2d_forward(x, w, b, stride, padding)
    assert y.shape[2] * y.shape[3] >= 16 and y.shape[2] > 3
    assert_equal_backends(fast.conv2d_forward(x, w, b, stride, padding), y)
    dy = rng.normal(size=y.shape)
    dx = reference.conv2d_backward_input(dy, w, x.shape, stride, padding)
    assert_equal_backends(fast.conv2d_backward_input(dy, w, x.shape, stride, padding), dx)
    assert calls == ["_conv_bands"] + 2 * ["_conv_bands_backward"]   # (not Winograd's road)

    f32 = np.float32
    bound = (2 * k * k * 5 + 1) * np.finfo(f32).eps
    x32, w32, b32, dy32 = (a.astype(f32) for a in (x, w, b, dy))
    y = reference.conv2d_forward(*(a.astype(np.float64) for a in (x32, w32, b32)), stride,
                                 padding)
    terms = reference.conv2d_forward(np.abs(x32).astype(np.float64),
                                     np.abs(w32).astype(np.float64),
                                     np.abs(b32).astype(np.float64), stride, padding)
    y32 = fast.conv2d_forward(x32, w32, b32, stride, padding)
    assert y32.dtype == f32 and np.all(np.abs(y32 - y) <= bound * terms)
    dx = reference.conv2d_backward_input(dy32.astype(np.float64), w32.astype(np.float64),
                                         x.shape, stride, padding)
    terms = reference.conv2d_backward_input(np.abs(dy32).astype(np.float64),
                                            np.abs(w32).astype(np.float64), x.shape, stride,
                                            padding)
    dx32 = fast.conv2d_backward_input(dy32, w32, x.shape, stride, padding)
    assert dx32.dtype == f32 and np.all(np.abs(dx32 - dx) <= bound * terms)


@pytest.mark.parametrize("seed", range(10))
def test_max_pool_operations_are_equal(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 5))
    s, p, ceil = int(rng.integers(1, k + 1)), int(rng.integers(0, k // 2 + 1)), bool(seed % 2)
    x = rng.normal(size=(int(rng.integers(1, 3)), 3, int(rng.integers(k, 15)),
                         int(rng.integers(k, 15))))
    x[0, 0, :2, :2] = 0.5                          # ties: the first maximum wins on both
    y, argmax = reference.max_pool_forward(x, k, s, p, ceil)
    y_fast, argmax_fast = fast.max_pool_forward(x, k, s, p, ceil)
    np.testing.assert_array_equal(y_fast, y)       # a selection: exactly equal
    np.testing.assert_array_equal(argmax_fast, argmax)
    dy = rng.normal(size=y.shape)
    np.testing.assert_array_equal(fast.max_pool_route(dy, argmax, x.shape),
                                  reference.max_pool_route(dy, argmax, x.shape))


def test_max_pool_of_all_minus_infinity_keeps_the_first_pixel():
    x = np.full((1, 1, 3, 3), -np.inf)
    for ops in (reference, fast):
        y, argmax = ops.max_pool_forward(x, 2, 2, 0, True)
        assert np.all(y == -np.inf) and argmax.ravel().tolist() == [0, 2, 6, 8]


def test_linear_and_relu_operations_are_equal(rng):
    x, w, b = rng.normal(size=(3, 40)), rng.normal(size=(7, 40)), rng.normal(size=7)
    assert_equal_backends(fast.linear_forward(x, w, b), reference.linear_forward(x, w, b))
    dy = rng.normal(size=(3, 7))
    assert_equal_backends(fast.linear_backward_input(dy, w), reference.linear_backward_input(dy, w))
    eta, s = rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(2, 3, 5, 4))
    eta[0, 0, 0] = 0.0                                   # the kink
    np.testing.assert_array_equal(fast.relu(eta), reference.relu(eta))
    np.testing.assert_array_equal(fast.relu_backward(s, eta), reference.relu_backward(s, eta))
    for dtype in (np.float32, np.float64):
        assert fast.relu_backward(s.astype(dtype), eta).dtype == dtype
        assert reference.relu_backward(s.astype(dtype), eta).dtype == dtype


@pytest.mark.parametrize("seed", range(10))
def test_depthwise_convolution_operations_are_equal(thread_path, seed):
    rng = np.random.default_rng(150 + seed)
    k, s = int(rng.choice([1, 3, 5])), int(rng.integers(1, 4))
    p, c, n = int(rng.integers(0, k // 2 + 2)), int(rng.integers(1, 9)), int(rng.integers(1, 4))
    x = rng.normal(size=(n, c, int(rng.integers(k, k + 13)), int(rng.integers(k, k + 13))))
    w, b = rng.normal(size=(c, 1, k, k)), rng.normal(size=c)
    y = reference.depthwise_conv2d_forward(x, w, b, s, p)
    assert_equal_backends(fast.depthwise_conv2d_forward(x, w, b, s, p), y)
    dy = rng.normal(size=y.shape)
    assert_equal_backends(fast.depthwise_conv2d_backward_input(dy, w, x.shape, s, p),
                          reference.depthwise_conv2d_backward_input(dy, w, x.shape, s, p))
    for ours, theirs in zip(fast.depthwise_conv2d_backward_weight(dy, x, k, s, p),
                            reference.depthwise_conv2d_backward_weight(dy, x, k, s, p)):
        assert_equal_backends(ours, theirs)
    for dtype in (np.float32, np.float64):  # the input's dtype is kept
        assert fast.depthwise_conv2d_forward(x.astype(dtype), w, b, s, p).dtype == dtype


def test_relu6_operations_are_equal(thread_path, rng):
    eta, s = 5 * rng.normal(size=(2, 3, 5, 4)), rng.normal(size=(2, 3, 5, 4))
    eta[0, 0, 0, :3] = [0.0, 6.0, np.nan]                # both kinks, and NaN passes through
    np.testing.assert_array_equal(fast.relu6(eta), reference.relu6(eta))
    assert np.isnan(reference.relu6(eta)[0, 0, 0, 2])
    eta[0, 0, 0, 2] = 3.0
    np.testing.assert_array_equal(fast.relu6_backward(s, eta), reference.relu6_backward(s, eta))
    np.testing.assert_array_equal(reference.relu6_backward(s, eta)[0, 0, 0, :2], [0.0, 0.0])
    for dtype in (np.float32, np.float64):
        assert fast.relu6(eta.astype(dtype)).dtype == dtype
        assert fast.relu6_backward(s.astype(dtype), eta).dtype == dtype



@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("seed", range(3))
def test_depthwise_kernels_equal_the_reference_on_random_shapes(thread_path, stride, batch, seed):
    """The phase-split kernels (nets/_numba/depthwise.py) against the reference's taps.

    Odd and even sizes, kernels 1, 3 and 5, paddings 0 to k//2 + 1: the same on every side
    (batch 3), or drawn side by side, ``((top, bottom), (left, right))`` (batch 1; MobileNetV2's
    SAME padding is (0, 1) at stride 2 on even sizes). Float64 to EQUAL; float32 within the
    rounding bound of any order of summation (the kernels add the taps in the reference's
    order, so on this machine they are even bit-equal to the reference's float32).
    """
    rng = np.random.default_rng(300 + 10 * seed + stride + batch)
    k = (3, 1, 5)[seed]
    p, c = int(rng.integers(0, k // 2 + 2)), int(rng.integers(1, 12))
    if batch == 1:
        p = tuple(tuple(int(v) for v in rng.integers(0, k // 2 + 2, size=2)) for _ in "hw")
    h, w_ = (int(v) for v in rng.integers(k + 1, k + 20, size=2))
    x = rng.normal(size=(batch, c, h, w_))
    w, b = rng.normal(size=(c, 1, k, k)), rng.normal(size=c)
    y = reference.depthwise_conv2d_forward(x, w, b, stride, p)
    assert_equal_backends(fast.depthwise_conv2d_forward(x, w, b, stride, p), y)
    dy = rng.normal(size=y.shape)
    dx = reference.depthwise_conv2d_backward_input(dy, w, x.shape, stride, p)
    assert_equal_backends(fast.depthwise_conv2d_backward_input(dy, w, x.shape, stride, p), dx)

    # float32: against float64 arithmetic on the same float32-rounded inputs; the bound is
    # that of any summation order, (K*K + 1) float32 epsilons of the sum of |terms|
    f32, f64 = np.float32, np.float64
    x, w, b, dy = (a.astype(f32) for a in (x, w, b, dy))
    bound = (k * k + 1) * np.finfo(f32).eps
    y = reference.depthwise_conv2d_forward(x.astype(f64), w.astype(f64), b.astype(f64), stride, p)
    terms = reference.depthwise_conv2d_forward(np.abs(x.astype(f64)), np.abs(w.astype(f64)),
                                               np.abs(b.astype(f64)), stride, p)
    y32 = fast.depthwise_conv2d_forward(x, w, b, stride, p)
    assert y32.dtype == f32
    assert np.all(np.abs(y32 - y) <= bound * terms)
    dx = reference.depthwise_conv2d_backward_input(dy.astype(f64), w.astype(f64), x.shape,
                                                   stride, p)
    terms = reference.depthwise_conv2d_backward_input(np.abs(dy.astype(f64)),
                                                      np.abs(w.astype(f64)), x.shape, stride, p)
    dx32 = fast.depthwise_conv2d_backward_input(dy, w, x.shape, stride, p)
    assert dx32.dtype == f32
    assert np.all(np.abs(dx32 - dx) <= bound * terms)


@pytest.mark.parametrize("stack", [1, 2, 5])
@pytest.mark.parametrize("stride, padding", [(1, 1), (1, 0), (2, ((0, 1), (0, 1))), (3, 2)])
def test_depthwise_planes_stacked_by_channel_equal_the_reference(thread_path, monkeypatch, stack,
                                                                stride, padding):
    """A channel's planes in several images go through the taps stacked (depthwise.STACK_BYTES):
    one image at a time, two (the last group of five a single image) or all five, forward, of
    a ReLU6 and backward, against the reference's taps."""
    rng = np.random.default_rng(700 + 10 * stack + stride)
    x = 4 * rng.normal(size=(5, 3, 9, 7))
    w, b = rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3)
    pads = fast.depthwise._pads(padding)
    area = -(-(pads[0] + 9 + pads[1]) // stride) * -(-(pads[2] + 7 + pads[3]) // stride)
    monkeypatch.setattr(fast.depthwise, "STACK_BYTES", stack * area * x.itemsize)
    for relu6_input in (False, True):
        assert_equal_backends(
            fast.depthwise_conv2d_forward(x, w, b, stride, padding, relu6_input=relu6_input),
            reference.depthwise_conv2d_forward(x, w, b, stride, padding,
                                               relu6_input=relu6_input))
    y = reference.depthwise_conv2d_forward(x, w, b, stride, padding)
    dy = rng.normal(size=y.shape)
    assert_equal_backends(fast.depthwise_conv2d_backward_input(dy, w, x.shape, stride, padding),
                          reference.depthwise_conv2d_backward_input(dy, w, x.shape, stride,
                                                                    padding))


@pytest.mark.parametrize("stride, padding", [(1, 1), (1, 0), (2, ((0, 1), (0, 1))), (3, 2)])
def test_depthwise_convolution_of_a_relu6_equals_the_two_steps(thread_path, stride, padding):
    """``relu6_input=True`` (the ReLU6 applied as the input is read, MobileNetV2's expansions)
    is ``depthwise(relu6(x))`` on both backends, bit for bit, float32 and float64, NaN
    included; stride 1 without padding is the case the fast kernel would otherwise read in
    place."""
    rng = np.random.default_rng(500 + stride)
    x = 5 * rng.normal(size=(2, 5, 9, 8))          # values below 0, inside (0, 6) and above 6
    x[0, 0, 0, :3] = [0.0, 6.0, np.nan]
    w, b = rng.normal(size=(5, 1, 3, 3)), rng.normal(size=5)
    for dtype in (np.float64, np.float32):
        xs, ws, bs = (a.astype(dtype) for a in (x, w, b))
        two_steps = reference.depthwise_conv2d_forward(reference.relu6(xs), ws, bs, stride,
                                                       padding)
        for ops in (reference, fast):
            fused = ops.depthwise_conv2d_forward(xs, ws, bs, stride, padding, relu6_input=True)
            assert fused.dtype == dtype
            np.testing.assert_array_equal(fused, two_steps)
    assert np.isnan(two_steps).any() and not np.isnan(two_steps).all()   # the NaN went through


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("seed", range(3))
def test_pointwise_convolutions_equal_the_reference(thread_path, batch, seed):
    """1x1 stride-1 convolutions (kernels.pointwise_conv2d: a GEMM per image and block of
    output rows, the bias added in place), forward and input signal, odd sizes, few and many
    channels (one row block, or several), float64 and float32."""
    rng = np.random.default_rng(400 + 10 * seed + batch)
    c, o = (int(v) for v in rng.integers(1, 70, size=2))
    h, w_ = (int(v) for v in rng.integers(1, 40, size=2))
    x, w, b = rng.normal(size=(batch, c, h, w_)), rng.normal(size=(o, c, 1, 1)), rng.normal(size=o)
    y = reference.conv2d_forward(x, w, b, 1, 0)
    assert_equal_backends(fast.conv2d_forward(x, w, b, 1, 0), y)
    dy = rng.normal(size=y.shape)
    assert_equal_backends(fast.conv2d_backward_input(dy, w, x.shape, 1, 0),
                          reference.conv2d_backward_input(dy, w, x.shape, 1, 0))
    y32 = fast.conv2d_forward(x.astype(np.float32), w.astype(np.float32), b, 1, 0)
    assert y32.dtype == np.float32
    # float32 rounding of C products summed (and of the inputs): C + 3 epsilons of |terms|
    terms = reference.conv2d_forward(np.abs(x), np.abs(w), np.abs(b), 1, 0)
    assert np.all(np.abs(y32 - y) <= (c + 3) * np.finfo(np.float32).eps * terms)

# ------------------------------------------------------------------------------ rules

RULES = [saliency.Gradient(), saliency.Guided(), saliency.Deconvnet(), saliency.Rescale()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_fused_relu_kernels_equal_the_rules_numpy(thread_path, rng, rule, dtype):
    s, eta, ref = (rng.normal(size=(2, 4, 6, 5)).astype(dtype) for _ in range(3))
    eta[0, 0, 0] = 0.0                                   # the kink
    ref[0, 1, 0] = eta[0, 1, 0]                          # no difference: the gradient
    ref[0, 1, 1, 0] = eta[0, 1, 1, 0] + 1e-12            # below eps: the gradient
    assert rule.relu.fused in kernels.FUSED_RELU_RULES   # this backend has a kernel for it
    numpy_step = reference.relu_rule(rule, s, eta, ref)
    assert numpy_step.dtype == dtype
    # Same expression, same arithmetic order: equal to the last bit, float32 included.
    np.testing.assert_array_equal(fast.relu_rule(rule, s, eta, ref), numpy_step)


def test_rules_the_fast_backend_does_not_know_run_their_own_numpy(rng, monkeypatch):
    calls = []

    class Counting(saliency.Guided):        # overrides relu: its method has no `fused` mark
        def relu(self, signal, eta, eta_ref):
            calls.append("counting")
            return super().relu(signal, eta, eta_ref)

    class Leaky(saliency.Rule):             # a student's rule
        def relu(self, signal, eta, eta_ref):
            return signal * np.where(eta > 0, 1.0, 0.1)

    monkeypatch.setitem(kernels.FUSED_RELU_RULES, "guided",
                        lambda *args: calls.append("fused") or kernels._guided(*args))
    s, eta = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    np.testing.assert_array_equal(fast.relu_rule(Counting(), s, eta, None),
                                  (eta > 0) * (s > 0) * s)
    np.testing.assert_array_equal(fast.relu_rule(saliency.Guided(), s, eta, None),
                                  (eta > 0) * (s > 0) * s)
    assert calls == ["counting", "fused"]
    np.testing.assert_array_equal(fast.relu_rule(Leaky(), s, eta, None), Leaky().relu(s, eta, None))
    with pytest.raises(ValueError, match="reference"):
        fast.relu_rule(saliency.Rescale(), s, eta, None)



@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_fused_relu6_kernels_equal_the_rules_numpy(thread_path, rng, rule, dtype):
    s, eta, ref = ((4 * rng.normal(size=(2, 4, 6, 5)) + 3).astype(dtype) for _ in range(3))
    eta[0, 0, 0, :2] = [0.0, 6.0]                        # both kinks
    ref[0, 1, 0] = eta[0, 1, 0]                          # no difference: the gradient
    ref[0, 1, 1, 0] = eta[0, 1, 1, 0] + 1e-12            # below eps: the gradient
    assert (eta > 6).any() and (eta < 0).any() and (ref > 6).any()
    assert rule.relu6.fused in fast.depthwise.FUSED_RELU6_RULES
    numpy_step = reference.relu6_rule(rule, s, eta, ref)
    assert numpy_step.dtype == dtype
    # Same expression, same arithmetic order: equal to the last bit, float32 included.
    np.testing.assert_array_equal(fast.relu6_rule(rule, s, eta, ref), numpy_step)


def test_relu6_rules_the_fast_backend_does_not_know_run_their_own_numpy(rng):
    class Halved(saliency.Gradient):        # overrides relu6: its method has no `fused` mark
        def relu6(self, signal, eta, eta_ref):
            return 0.5 * super().relu6(signal, eta, eta_ref)

    class ReluOnly(saliency.Rule):          # a rule written for ReLU only
        def relu(self, signal, eta, eta_ref):
            return signal

    s, eta = rng.normal(size=(2, 3, 4, 4)), 4 * rng.normal(size=(2, 3, 4, 4))
    np.testing.assert_array_equal(fast.relu6_rule(Halved(), s, eta, None),
                                  0.5 * ((eta > 0) & (eta < 6)) * s)
    with pytest.raises(TypeError, match="relu6"):
        fast.relu6_rule(ReluOnly(), s, eta, None)
    with pytest.raises(ValueError, match="reference"):
        fast.relu6_rule(saliency.Rescale(), s, eta, None)

# ------------------------------------------------------------------------------ whole networks

METHODS = {
    "gradient": lambda net, x, t, ref: saliency.gradient(net, x, t),
    "guided": lambda net, x, t, ref: saliency.guided_backprop(net, x, t),
    "deconvnet": lambda net, x, t, ref: saliency.deconvnet(net, x, t),
    "deeplift": lambda net, x, t, ref: saliency.deeplift(net, x, t, reference=ref),
    "deeplift_gradient_pools": lambda net, x, t, ref: saliency.deeplift(
        net, x, t, reference=ref, max_pool="gradient"),
    # (before its final ReLU: with random weights the whole map may be negative)
    "grad_cam": lambda net, x, t, ref: saliency.grad_cam(net, x, t, relu=False),
}


@pytest.mark.parametrize("name, side", [("vgg16", 224), ("squeezenet1_0", 227),
                                        ("mobilenet_v2", 96)])
def test_whole_network_maps_are_equal_on_both_backends(name, side):
    net = nets.random_parameters(nets.build(name), seed=0).astype(np.float64)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 3, side, side))
    ref = rng.normal(size=x.shape)                 # no ties in the reference's pool windows
    target = 7
    for method, compute in METHODS.items():
        if method == "deeplift_gradient_pools" and name == "mobilenet_v2":
            continue  # no max pools: the same map as "deeplift"
        with nets.backend("numpy"):
            expected = compute(net, x, target, ref)
        with nets.backend("numba"):
            result = compute(net, x, target, ref)
        assert np.abs(expected).max() > 0, method
        error = relative_error(result, expected)
        print(f"{name} {method}: max|numba - numpy| / max|numpy| = {error:.2e}")
        assert error <= EQUAL, (method, error)


# ------------------------------------------------------------------------------ the process

def test_importing_the_library_changes_nothing_and_loads_no_numba():
    script = """if True:
        import json, os, sys
        before = dict(os.environ)
        import sensloc, sensloc.nets, sensloc.saliency, sensloc.localize, sensloc.weights
        import sensloc.cli
        changed = sorted(k for k in set(before) | set(os.environ)
                         if before.get(k) != os.environ.get(k))
        backend = sensloc.nets.current_backend()
        sensloc.nets.use_backend("numba")      # selecting is not yet loading: the first op loads
        print(json.dumps({"changed": changed, "backend": backend,
                          "loaded": sorted(m for m in ("numba", "llvmlite", "sensloc.nets._numba")
                                           if m in sys.modules)}))
    """
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY",)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True, cwd="/").stdout
    import json
    assert json.loads(out.strip().splitlines()[-1]) == {"changed": [], "backend": "numpy",
                                                         "loaded": []}


def test_command_line_help_loads_no_numba():
    # -X importtime lists every module the command imports, on stderr.
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "sensloc", "--help"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and "usage: sensloc" in proc.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "sensloc.cli.main" in imported          # the listing is what it claims to be
    assert not [m for m in imported if m.split(".")[0] in ("numba", "llvmlite")]
