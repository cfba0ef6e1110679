"""Layers: each a forward/backward pair, the backward reading the cache of its forward.

``y, cache = layer.forward(x)`` and ``dx = layer.backward(dy, cache)``. A *signal* is whatever
is sent backward: the gradient of a score for plain backpropagation, or a modified signal for
the other attribution rules. Eq. 1 of Ebrahimpour & Noelle,

    s_i = g'(eta_i) * sum_k w_ki s_k,

splits every backward step into a *linear* part ``sum_k w_ki s_k`` (convolution, fully
connected, pooling switches, averaging: fixed by the network, implemented here) and a
*nonlinearity* part ``g'(eta_i)`` (ReLU, the choice of switch in max pooling: a *rule*, which
the attribution method chooses).

Rules are duck-typed objects supplied by ``saliency``; ``nets`` knows only this protocol:

``rule.relu(signal, eta, eta_ref)``
    the signal at a ReLU's input, given the signal at its output, the forward input ``eta`` and,
    for reference-based rules, the reference pass's input ``eta_ref`` (else ``None``).
``rule.relu6(signal, eta, eta_ref)``
    the same for a ReLU6 (MobileNetV2), whose derivative is ``1[0 < eta < 6]``.
``rule.max_pool(layer, signal, cache, ref_cache)``
    the signal at a max pool's input; ``layer.route(signal, cache)`` is the switch routing
    that the gradient uses.

``rule=None`` means the plain gradient. Arrays are float32 batches ``(N, C, H, W)`` for
spatial layers and ``(N, D)`` for fully connected ones.

Branches are linear too: where a signal splits in the forward pass (SqueezeNet's fire module
feeding two expands, MobileNetV2's residual connection) the backward signals ADD where the
branches met, and where two branches are summed (a residual addition) the signal goes back
unchanged down both.

The arithmetic is done by the current backend's operations, ``ops.conv2d_forward`` and so on
(:mod:`nets.backends`): by default :mod:`nets.reference`, where each is the NumPy of its
equation; the fast Numba backend has the same functions. Averaging, flattening and
concatenation are a line of NumPy each and stay here.
"""
from dataclasses import dataclass

import numpy as np

from sensloc.nets.backends import ops


class Layer:
    """A named step of a network with no parameters and a linear backward pass by default."""

    def __init__(self, name):
        self.name = name

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy, cache, rule=None, ref_cache=None):
        raise NotImplementedError

    def parameters(self):
        """``{qualified layer name: {"weight": array, "bias": array}}`` for layers that have them."""
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class Conv2d(Layer):
    """2-D convolution (cross-correlation) with zero padding.

    ``y[n, o] = b[o] + sum_c w[o, c] (*) x[n, c]`` with ``(*)`` the strided cross-correlation;
    written out tap by tap in :func:`nets.reference.conv2d_forward`.

    Parameters
    ----------
    weight : (O, C, K, K) float32
    bias : (O,) float32
    stride, padding : int
    """

    def __init__(self, name, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__(name)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = np.zeros((out_channels, in_channels, kernel_size, kernel_size), np.float32)
        self.bias = np.zeros(out_channels, np.float32)

    def forward(self, x):
        """(N, C, H, W) -> (N, O, OH, OW); the cache is the input (for weight gradients later)."""
        return ops.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding), x

    def backward(self, dy, cache, rule=None, ref_cache=None):
        """``dx = sum_o w[o, c] (*)^T dy[n, o]``: a transposed convolution. Rule-independent.

        (N, O, OH, OW) -> (N, C, H, W); :func:`nets.reference.conv2d_backward_input`.
        """
        return ops.conv2d_backward_input(dy, self.weight, cache.shape, self.stride, self.padding)

    def backward_parameters(self, dy, cache):
        """Gradients of the parameters, for training.

        ``dw[o, c] = sum_n dy[n, o] (*) x[n, c]`` (each weight meets every input it read) and
        ``db[o] = sum_{n, oh, ow} dy[n, o, oh, ow]``.

        Returns
        -------
        dict
            ``{"weight": (O, C, K, K), "bias": (O,)}``
        """
        dw, db = ops.conv2d_backward_weight(dy, cache, self.kernel_size, self.stride,
                                            self.padding)
        return {"weight": dw, "bias": db}

    def parameters(self):
        return {self.name: {"weight": self.weight, "bias": self.bias}}


class Linear(Layer):
    """Fully connected layer ``y = x W^T + b``.

    Parameters
    ----------
    weight : (D_out, D_in) float32 (PyTorch's layout)
    bias : (D_out,) float32
    """

    def __init__(self, name, in_features, out_features):
        super().__init__(name)
        self.in_features, self.out_features = in_features, out_features
        self.weight = np.zeros((out_features, in_features), np.float32)
        self.bias = np.zeros(out_features, np.float32)

    def forward(self, x):
        """(N, D_in) -> (N, D_out); the cache is the input."""
        return ops.linear_forward(x, self.weight, self.bias), x

    def backward(self, dy, cache, rule=None, ref_cache=None):
        """``dx_i = sum_k w_ki dy_k``, i.e. ``dy @ W``: (N, D_out) -> (N, D_in).
        Rule-independent."""
        return ops.linear_backward_input(dy, self.weight)

    def backward_parameters(self, dy, cache):
        """``dW = dy^T x`` (D_out, D_in) and ``db = sum_n dy[n]`` (D_out,), for training."""
        dw, db = ops.linear_backward_weight(dy, cache)
        return {"weight": dw, "bias": db}

    def parameters(self):
        return {self.name: {"weight": self.weight, "bias": self.bias}}


class ReLU(Layer):
    """``g(eta) = max(eta, 0)``; the backward multiplier is the rule's business.

    The cache is the forward input ``eta``. With no rule the multiplier is the derivative,
    ``s_in = g'(eta) * s = 1[eta > 0] * s`` (0 at the kink, as every autodiff framework does;
    :func:`nets.reference.relu_backward`); with a rule it is ``rule.relu(s, eta, eta_ref)``
    (:func:`nets.reference.relu_rule`). Any shape.
    """

    def forward(self, x):
        return ops.relu(x), x

    def backward(self, dy, cache, rule=None, ref_cache=None):
        if rule is None:
            return ops.relu_backward(dy, cache)
        return ops.relu_rule(rule, dy, cache, ref_cache)


@dataclass(frozen=True)
class PoolCache:
    """What max pooling remembers: input, output and the switches (flat argmax per window)."""
    x: np.ndarray
    y: np.ndarray
    argmax: np.ndarray


class MaxPool2d(Layer):
    """Max pooling over square windows, floor or ceil (Caffe) output rounding.

    ``y[n, c, oh, ow] = max_{(h, w) in window(oh, ow)} x[n, c, h, w]``
    """

    def __init__(self, name, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__(name)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def forward(self, x):
        y, argmax = ops.max_pool_forward(x, self.kernel_size, self.stride, self.padding,
                                         self.ceil_mode)
        return y, PoolCache(x, y, argmax)

    def route(self, signal, cache):
        """Send each window's signal to the input that won it; overlapping winners add up:
        ``dx[argmax] += dy`` (:func:`nets.reference.max_pool_route`),
        (N, C, OH, OW) -> (N, C, H, W)."""
        return ops.max_pool_route(signal, cache.argmax, cache.x.shape)

    def backward(self, dy, cache, rule=None, ref_cache=None):
        if rule is None:
            return self.route(dy, cache)
        return rule.max_pool(self, dy, cache, ref_cache)


class GlobalAvgPool2d(Layer):
    """``y[n, c] = mean_{h, w} x[n, c, h, w]``: (N, C, H, W) -> (N, C). Linear; its backward
    spreads each signal evenly, ``dx[n, c, h, w] = dy[n, c] / (H W)``."""

    def forward(self, x):
        return x.mean(axis=(2, 3), dtype=x.dtype), x.shape

    def backward(self, dy, cache, rule=None, ref_cache=None):
        n, c, h, w = cache
        return np.broadcast_to((dy / dy.dtype.type(h * w))[:, :, None, None], cache).copy()


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W) in C-major order (PyTorch's; Keras flattens H, W, C)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy, cache, rule=None, ref_cache=None):
        return dy.reshape(cache)


class Concat(Layer):
    """Stack a list of (N, C_i, H, W) arrays along channels; the backward splits the signal
    back into the (N, C_i, H, W) pieces (the transpose of stacking)."""

    def forward(self, xs):
        return np.concatenate(xs, axis=1), [x.shape[1] for x in xs]

    def backward(self, dy, cache, rule=None, ref_cache=None):
        return np.split(dy, np.cumsum(cache)[:-1], axis=1)


class Fire(Layer):
    """SqueezeNet's fire module: squeeze 1x1, then 1x1 and 3x3 expands side by side.

    ``s = relu(squeeze(x)); y = concat(relu(expand1x1(s)), relu(expand3x3(s)))``

    The two expand branches read the same squeeze output, so their backward signals add there.
    Sub-layers are named ``{name}/squeeze1x1``, ``{name}/expand1x1``, ``{name}/expand3x3``.
    """

    def __init__(self, name, in_channels, squeeze, expand1x1, expand3x3):
        super().__init__(name)
        self.squeeze = Conv2d(f"{name}/squeeze1x1", in_channels, squeeze, 1)
        self.squeeze_relu = ReLU(f"{name}/relu_squeeze1x1")
        self.expand1 = Conv2d(f"{name}/expand1x1", squeeze, expand1x1, 1)
        self.expand1_relu = ReLU(f"{name}/relu_expand1x1")
        self.expand3 = Conv2d(f"{name}/expand3x3", squeeze, expand3x3, 3, padding=1)
        self.expand3_relu = ReLU(f"{name}/relu_expand3x3")
        self.concat = Concat(f"{name}/concat")
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x):
        caches = {}
        s = x
        for layer in (self.squeeze, self.squeeze_relu):
            s, caches[layer.name] = layer.forward(s)
        branches = []
        for conv, relu in ((self.expand1, self.expand1_relu), (self.expand3, self.expand3_relu)):
            e, caches[conv.name] = conv.forward(s)
            e, caches[relu.name] = relu.forward(e)
            branches.append(e)
        y, caches[self.concat.name] = self.concat.forward(branches)
        return y, caches

    def backward(self, dy, cache, rule=None, ref_cache=None):
        def ref(layer):
            return None if ref_cache is None else ref_cache[layer.name]

        d_branches = self.concat.backward(dy, cache[self.concat.name])
        ds = 0
        for d, (conv, relu) in zip(d_branches, ((self.expand1, self.expand1_relu),
                                                 (self.expand3, self.expand3_relu))):
            d = relu.backward(d, cache[relu.name], rule, ref(relu))
            ds = ds + conv.backward(d, cache[conv.name])
        ds = self.squeeze_relu.backward(ds, cache[self.squeeze_relu.name], rule, ref(self.squeeze_relu))
        return self.squeeze.backward(ds, cache[self.squeeze.name])

    def parameters(self):
        params = {}
        for layer in (self.squeeze, self.expand1, self.expand3):
            params.update(layer.parameters())
        return params


class DepthwiseConv2d(Layer):
    """Depthwise convolution: every channel filtered by its own ``K x K`` kernel.

    ``y[n, c] = b[c] + w[c, 0] (*) x[n, c]``, a convolution with ``groups = C`` (PyTorch's
    ``Conv2d(C, C, K, groups=C)``, TensorFlow's ``DepthwiseConv2D``). Its backward pass is
    Eq. 1's linear half channel by channel: a transposed convolution of each channel's signal
    with that channel's kernel (:func:`nets.reference.depthwise_conv2d_backward_input`).

    Parameters
    ----------
    weight : (C, 1, K, K) float32
    bias : (C,) float32
    stride : int
    padding : int or "same"
        Zero padding on every side, or TensorFlow's ``SAME`` padding for each input's size
        (:func:`same_padding`; what :class:`SamePad2d` before the layer would add, without
        the padded copy of the batch).
    """

    def __init__(self, name, channels, kernel_size, stride=1, padding=0):
        super().__init__(name)
        self.in_channels = self.out_channels = channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.weight = np.zeros((channels, 1, kernel_size, kernel_size), np.float32)
        self.bias = np.zeros(channels, np.float32)

    def padding_for(self, shape):
        """The padding for an input of ``shape`` (N, C, H, W): ``self.padding`` if an int, else
        ``((top, bottom), (left, right))``."""
        if self.padding != "same":
            return self.padding
        return tuple(same_padding(size, self.kernel_size, self.stride) for size in shape[2:])

    def forward(self, x):
        """(N, C, H, W) -> (N, C, OH, OW); the cache is the input."""
        return ops.depthwise_conv2d_forward(x, self.weight, self.bias, self.stride,
                                            self.padding_for(x.shape)), x

    def forward_relu6_input(self, eta):
        """``forward(relu6(eta))``, the ReLU6 applied as the input is read and never stored
        (``relu6_input`` of :func:`nets.reference.depthwise_conv2d_forward`). The cache is
        ``eta``; :meth:`backward` reads only its shape (:meth:`backward_parameters` needs the
        cache of :meth:`forward`)."""
        return ops.depthwise_conv2d_forward(eta, self.weight, self.bias, self.stride,
                                            self.padding_for(eta.shape), relu6_input=True), eta

    def backward(self, dy, cache, rule=None, ref_cache=None):
        """``dx[n, c] = w[c, 0] (*)^T dy[n, c]``: (N, C, OH, OW) -> (N, C, H, W). Rule-independent."""
        return ops.depthwise_conv2d_backward_input(dy, self.weight, cache.shape, self.stride,
                                                   self.padding_for(cache.shape))

    def backward_parameters(self, dy, cache):
        """``dw[c, 0] = sum_n dy[n, c] (*) x[n, c]`` (C, 1, K, K) and ``db[c]`` (C,), for training;
        ``cache`` is :meth:`forward`'s (the input ``x``)."""
        dw, db = ops.depthwise_conv2d_backward_weight(dy, cache, self.kernel_size, self.stride,
                                                      self.padding_for(cache.shape))
        return {"weight": dw, "bias": db}

    def parameters(self):
        return {self.name: {"weight": self.weight, "bias": self.bias}}


class ReLU6(Layer):
    """``g(eta) = min(max(eta, 0), 6)``: a ReLU capped at 6 (MobileNetV2).

    Two kinks: the derivative is ``g'(eta) = 1[0 < eta < 6]``, so with no rule
    ``s_in = 1[0 < eta < 6] * s`` (:func:`nets.reference.relu6_backward`); with a rule the step
    is ``rule.relu6(s, eta, eta_ref)`` (:func:`nets.reference.relu6_rule`). The cache is the
    forward input ``eta``. Any shape.
    """

    def forward(self, x):
        return ops.relu6(x), x

    def backward(self, dy, cache, rule=None, ref_cache=None):
        if rule is None:
            return ops.relu6_backward(dy, cache)
        return ops.relu6_rule(rule, dy, cache, ref_cache)


def same_padding(size, kernel, stride):
    """TensorFlow's ``SAME`` padding along one axis: ``(before, after)`` pixels.

    ``total = max((ceil(size / stride) - 1) * stride + kernel - size, 0)``, the smaller half
    before. At stride 2 on an even size that is 0 before and 1 after, which no symmetric
    padding expresses.
    """
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePad2d(Layer):
    """Zero padding that makes the next ``kernel x kernel``, ``stride`` convolution (with no
    padding of its own) give TensorFlow's ``SAME`` output, ``ceil(H / stride)`` rows, for any
    input size (:func:`same_padding`).

    (N, C, H, W) -> (N, C, H + top + bottom, W + left + right); linear, its backward pass cuts
    the padding's share of the signal away (nothing flows back to a constant zero).
    """

    def __init__(self, name, kernel_size, stride):
        super().__init__(name)
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        (top, bottom), (left, right) = (same_padding(size, self.kernel_size, self.stride)
                                        for size in x.shape[2:])
        y = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        return y, (top, left, x.shape)

    def backward(self, dy, cache, rule=None, ref_cache=None):
        top, left, (_, _, h, w) = cache
        return np.ascontiguousarray(dy[:, :, top:top + h, left:left + w])


class InvertedResidual(Layer):
    """MobileNetV2's block (Sandler et al., 2018, Fig. 4d): widen, filter each channel, narrow.

    ::

        h = relu6(expand(x))                   1x1 convolution to t * C channels (absent if t = 1)
        h = relu6(depthwise(h))                3x3 depthwise convolution, stride s, SAME padding
        y = project(h) [+ x]                   1x1 convolution back to C' channels, NO nonlinearity

    The projection is linear (the "linear bottleneck"); where ``s = 1`` and ``C' = C`` the
    block's input is added to its output. The addition is linear with weight 1 on both inputs,
    so in Eq. 1 the signal at ``y`` reaches ``x`` twice: unchanged along the skip connection,
    and through the block's layers; the two add at ``x``. Attribution rules act only at the two
    ReLU6s inside.

    Sub-layers are named ``{name}.expand``, ``{name}.expand_relu6``, ``{name}.depthwise``,
    ``{name}.depthwise_relu6``, ``{name}.project``. The depthwise convolution pads as
    TensorFlow's ``SAME`` itself (``padding="same"``): a :class:`SamePad2d` step before it gave
    the same numbers but copied the widest tensor of the block with NumPy, one thread, in the
    forward pass (2.1 of 22 ms at batch 1 on one thread) and again to crop its input signal.
    """

    def __init__(self, name, in_channels, expansion, out_channels, stride):
        super().__init__(name)
        hidden = in_channels * expansion
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.expansion = expansion
        steps = []
        if expansion != 1:
            steps += [Conv2d(f"{name}.expand", in_channels, hidden, 1),
                      ReLU6(f"{name}.expand_relu6")]
        steps += [DepthwiseConv2d(f"{name}.depthwise", hidden, 3, stride, padding="same"),
                  ReLU6(f"{name}.depthwise_relu6"),
                  Conv2d(f"{name}.project", hidden, out_channels, 1)]
        self.steps = steps
        for step in steps:  # as attributes too, so that Network.astype finds them
            setattr(self, step.name.rsplit(".", 1)[1], step)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        caches = {}
        if self.expansion != 1:
            eta, caches[self.expand.name] = self.expand.forward(x)
            # relu6(eta) is read by the depthwise convolution alone, which applies the ReLU6 as
            # it reads: the block's largest array is not written twice. The ReLU6's cache is
            # eta, as its own forward pass leaves it.
            caches[self.expand_relu6.name] = eta
            h, caches[self.depthwise.name] = self.depthwise.forward_relu6_input(eta)
        else:
            h, caches[self.depthwise.name] = self.depthwise.forward(x)
        for step in (self.depthwise_relu6, self.project):
            h, caches[step.name] = step.forward(h)
        if self.residual:
            h += x   # in place: the projection's output is cached nowhere
        return h, caches

    def backward(self, dy, cache, rule=None, ref_cache=None):
        ds = dy
        for step in reversed(self.steps):
            ref = None if ref_cache is None else ref_cache[step.name]
            ds = step.backward(ds, cache[step.name], rule, ref)
        if self.residual:   # the skip connection carries dy back unchanged; the two add at x
            ds += dy        # in place: ds is this call's own array
        return ds

    def parameters(self):
        params = {}
        for step in self.steps:
            params.update(step.parameters())
        return params
