"""The NumPy reference backend: every numerical operation of the layers, written as its equation.

This is the code that runs by default (:mod:`nets.backends`) and the code to read: each function
is the equation in its docstring, vectorized over the batch and the channels by looping over the
few kernel taps (never over pixels), so that VGG16 at 224 x 224 runs a forward and backward pass
in seconds. The fast backend (:mod:`nets._numba`: Numba kernels, Winograd, a packed GEMM) has
functions of the same names and signatures, and the tests hold it equal to these.

Shapes follow the library's convention: batches are ``(N, C, H, W)``, convolution weights
``(O, C, KH, KW)`` (OIHW), square kernels, the same stride ``s`` and zero padding ``p`` on both
axes; ``x_pad`` is ``x`` with ``p`` zeros on every side. Results have the dtype of the input
(float32, or float64 for checks).

Eq. 1 of Ebrahimpour & Noelle, ``s_i = g'(eta_i) * sum_k w_ki s_k``: the backward functions here
are its linear half ``sum_k w_ki s_k`` (the transpose of each layer's linear map) and, for the
plain gradient, its ReLU multiplier ``g'(eta) = 1[eta > 0]``; the other multipliers are rules
(:mod:`saliency.rules`), which :func:`relu_rule` hands the step to.
"""
import numpy as np


def conv_output_size(size, kernel, stride, padding):
    """Output length of a convolution along one axis: ``floor((size + 2p - k) / s) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def pool_output_size(size, kernel, stride, padding, ceil_mode):
    """Output length of a pooling window sweep along one axis.

    Floor mode is ``floor((size + 2p - k) / s) + 1``. Ceil mode (Caffe's default) rounds up
    instead, then drops a last window that would start entirely inside the right padding;
    Caffe and PyTorch share this rule.
    """
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"pooling window {kernel} is larger than the padded input {size + 2 * padding}")
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _taps(kh, kw, stride, oh, ow):
    """``(i, j, rows, cols)`` for every kernel tap: the slices of ``x_pad`` that tap ``(i, j)``
    reads for all outputs at once, ``x_pad[:, :, s*oh + i, s*ow + j]``."""
    for i in range(kh):
        for j in range(kw):
            yield i, j, slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride)


def _pad(x, padding, value=0):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                  constant_values=value)


# ---------------------------------------------------------------------------------- convolution

def conv2d_forward(x, w, b, stride, padding):
    """Convolution (cross-correlation), one kernel tap at a time.

    ``y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, s*oh + i, s*ow + j]``

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (O, C, KH, KW) array
    b : (O,) array
    stride, padding : int

    Returns
    -------
    y : (N, O, OH, OW) array of ``x``'s dtype
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    xp, w = _pad(x, padding), w.astype(x.dtype, copy=False)
    y = np.zeros((n, o, oh, ow), x.dtype)
    for i, j, rows, cols in _taps(kh, kw, stride, oh, ow):
        # sum over c of w[o, c, i, j] * x_pad[n, c, s*oh + i, s*ow + j], for every n, o, oh, ow
        y += np.einsum("oc,nchw->nohw", w[:, :, i, j], xp[:, :, rows, cols], optimize=True)
    return y + b.astype(x.dtype)[:, None, None]


def conv2d_backward_input(dy, w, input_shape, stride, padding):
    """The input signal of a convolution: every tap sends ``w * dy`` back where it read.

    ``dx_pad[n, c, s*oh + i, s*ow + j] += w[o, c, i, j] * dy[n, o, oh, ow]``

    summed over ``o, i, j``: the transpose of :func:`conv2d_forward`'s linear map (a transposed
    convolution), ``dx_i = sum_k w_ki dy_k``. The padding's share is dropped.

    Parameters
    ----------
    dy : (N, O, OH, OW) array
    w : (O, C, KH, KW) array
    input_shape : tuple (N, C, H, W)
    stride, padding : int

    Returns
    -------
    dx : (N, C, H, W) array of ``dy``'s dtype
    """
    n, c, h, wd = input_shape
    _, _, kh, kw = w.shape
    oh, ow = dy.shape[2:]
    w = w.astype(dy.dtype, copy=False)
    dxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dy.dtype)
    for i, j, rows, cols in _taps(kh, kw, stride, oh, ow):
        dxp[:, :, rows, cols] += np.einsum("oc,nohw->nchw", w[:, :, i, j], dy, optimize=True)
    return dxp[:, :, padding:padding + h, padding:padding + wd]


def conv2d_backward_weight(dy, x, kernel_size, stride, padding):
    """Parameter gradients of a convolution, one kernel tap at a time.

    ``dw[o, c, i, j] = sum_{n,oh,ow} dy[n, o, oh, ow] * x_pad[n, c, s*oh + i, s*ow + j]`` and
    ``db[o] = sum_{n,oh,ow} dy[n, o, oh, ow]``: every weight collects the signal of each output
    it touched, times the input it read there.

    Parameters
    ----------
    dy : (N, O, OH, OW) array
    x : (N, C, H, W) array
        The forward input.
    kernel_size, stride, padding : int

    Returns
    -------
    dw : (O, C, K, K) array of ``dy``'s dtype
    db : (O,) array
    """
    oh, ow = dy.shape[2:]
    xp = _pad(x, padding).astype(dy.dtype, copy=False)
    dw = np.empty((dy.shape[1], x.shape[1], kernel_size, kernel_size), dy.dtype)
    for i, j, rows, cols in _taps(kernel_size, kernel_size, stride, oh, ow):
        dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, xp[:, :, rows, cols], optimize=True)
    return dw, dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------- depthwise

def padding_sides(padding):
    """``((top, bottom), (left, right))`` of a depthwise convolution's ``padding``: an int, the
    same on every side, or those pairs as given (TensorFlow's ``SAME`` padding is uneven at
    stride 2, :func:`nets.layers.same_padding`)."""
    if np.ndim(padding) == 0:
        return (int(padding),) * 2, (int(padding),) * 2
    (top, bottom), (left, right) = padding
    return (int(top), int(bottom)), (int(left), int(right))


def _pad_sides(x, padding):
    return np.pad(x, ((0, 0), (0, 0)) + padding_sides(padding))


def depthwise_conv2d_forward(x, w, b, stride, padding, relu6_input=False):
    """Depthwise convolution: output channel ``c`` reads input channel ``c`` only.

    ``y[n, c, oh, ow] = b[c] + sum_{i,j} w[c, 0, i, j] * x_pad[n, c, s*oh + i, s*ow + j]``

    A grouped convolution with one group per channel: :func:`conv2d_forward` with the sum over
    input channels dropped. Looping over the kernel taps, each tap is an elementwise product.

    Parameters
    ----------
    x : (N, C, H, W) array
    w : (C, 1, KH, KW) array (PyTorch's layout for ``groups=C``)
    b : (C,) array
    stride : int
    padding : int, or ((top, bottom), (left, right)) (:func:`padding_sides`)
    relu6_input : bool
        Convolve ``relu6(x)`` instead of ``x``: the ReLU6 before the convolution, applied as the
        input is read (MobileNetV2's expansion's ReLU6, whose output only this layer reads;
        :class:`nets.InvertedResidual`).

    Returns
    -------
    y : (N, C, OH, OW) array of ``x``'s dtype, ``OH = (H + top + bottom - KH) // s + 1``
    """
    if relu6_input:
        x = relu6(x)
    n, c = x.shape[:2]
    _, _, kh, kw = w.shape
    xp, w = _pad_sides(x, padding), w.astype(x.dtype, copy=False)
    oh, ow = conv_output_size(xp.shape[2], kh, stride, 0), conv_output_size(xp.shape[3], kw,
                                                                             stride, 0)
    y = np.zeros((n, c, oh, ow), x.dtype)
    for i, j, rows, cols in _taps(kh, kw, stride, oh, ow):
        y += w[:, 0, i, j][:, None, None] * xp[:, :, rows, cols]
    return y + b.astype(x.dtype)[:, None, None]


def depthwise_conv2d_backward_input(dy, w, input_shape, stride, padding):
    """The input signal of a depthwise convolution: a transposed convolution per channel.

    ``dx_pad[n, c, s*oh + i, s*ow + j] += w[c, 0, i, j] * dy[n, c, oh, ow]``

    summed over the taps ``i, j`` only (channel ``c`` of the output read channel ``c`` of the
    input and nothing else), then the padding's share dropped: Eq. 1's ``sum_k w_ki s_k`` where
    the ``k`` are the outputs of the same channel whose window covers ``i``.

    Parameters
    ----------
    dy : (N, C, OH, OW) array
    w : (C, 1, KH, KW) array
    input_shape : tuple (N, C, H, W)
    stride : int
    padding : int, or ((top, bottom), (left, right)) (:func:`padding_sides`)

    Returns
    -------
    dx : (N, C, H, W) array of ``dy``'s dtype
    """
    n, c, h, wd = input_shape
    _, _, kh, kw = w.shape
    oh, ow = dy.shape[2:]
    (top, bottom), (left, right) = padding_sides(padding)
    w = w.astype(dy.dtype, copy=False)
    dxp = np.zeros((n, c, top + h + bottom, left + wd + right), dy.dtype)
    for i, j, rows, cols in _taps(kh, kw, stride, oh, ow):
        dxp[:, :, rows, cols] += w[:, 0, i, j][:, None, None] * dy
    return dxp[:, :, top:top + h, left:left + wd]


def depthwise_conv2d_backward_weight(dy, x, kernel_size, stride, padding):
    """Parameter gradients of a depthwise convolution.

    ``dw[c, 0, i, j] = sum_{n,oh,ow} dy[n, c, oh, ow] * x_pad[n, c, s*oh + i, s*ow + j]`` and
    ``db[c] = sum_{n,oh,ow} dy[n, c, oh, ow]``.

    Parameters
    ----------
    dy : (N, C, OH, OW) array
    x : (N, C, H, W) array
        The forward input.
    kernel_size, stride : int
    padding : int, or ((top, bottom), (left, right)) (:func:`padding_sides`)

    Returns
    -------
    dw : (C, 1, K, K) array of ``dy``'s dtype
    db : (C,) array
    """
    oh, ow = dy.shape[2:]
    xp = _pad_sides(x, padding).astype(dy.dtype, copy=False)
    dw = np.empty((x.shape[1], 1, kernel_size, kernel_size), dy.dtype)
    for i, j, rows, cols in _taps(kernel_size, kernel_size, stride, oh, ow):
        dw[:, 0, i, j] = np.einsum("nchw,nchw->c", dy, xp[:, :, rows, cols])
    return dw, dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------- fully connected

def linear_forward(x, w, b):
    """``y = x W^T + b``: x (N, D_in), W (D_out, D_in) (PyTorch's layout), b (D_out,)
    -> y (N, D_out)."""
    return x @ w.T + b


def linear_backward_input(dy, w):
    """``dx_i = sum_k w_ki dy_k``, i.e. ``dx = dy @ W``: (N, D_out), (D_out, D_in) -> (N, D_in)."""
    return dy @ w


def linear_backward_weight(dy, x):
    """``dW = dy^T x`` (D_out, D_in) and ``db = sum_n dy[n]`` (D_out,), from dy (N, D_out) and
    the forward input x (N, D_in)."""
    return dy.T @ x, dy.sum(axis=0)


# ---------------------------------------------------------------------------------- ReLU

def relu(eta):
    """``g(eta) = max(eta, 0)`` elementwise (NaN stays NaN); any shape, dtype kept."""
    return np.maximum(eta, 0)


def relu_backward(signal, eta):
    """The gradient through a ReLU, Eq. 1's multiplier: ``s_in = g'(eta) * s = 1[eta > 0] * s``.

    ``g'`` is taken as 0 at the kink ``eta = 0``, as every autodiff framework does.
    ``signal`` and ``eta`` share one shape (any); the result has ``signal``'s dtype.
    """
    return (eta > 0) * signal


def relu_rule(rule, signal, eta, eta_ref):
    """The signal at a ReLU's input under an attribution ``rule`` (:mod:`saliency.rules`):
    ``rule.relu(signal, eta, eta_ref)``, the rule's own NumPy expression. ``signal``, ``eta``
    and ``eta_ref`` (the reference pass's ReLU input, or None) share one shape, any.

    (A fast backend may run a fused kernel of the same expression instead, for the rules that
    mark their ``relu`` method as having one; see :mod:`nets.backends`.)
    """
    return rule.relu(signal, eta, eta_ref)


# ---------------------------------------------------------------------------------- ReLU6

def relu6(eta):
    """``g(eta) = min(max(eta, 0), 6)`` elementwise (MobileNetV2's nonlinearity); any shape."""
    return np.minimum(np.maximum(eta, 0), eta.dtype.type(6))


def relu6_backward(signal, eta):
    """The gradient through a ReLU6: ``s_in = g'(eta) * s = 1[0 < eta < 6] * s``.

    Two kinks, at 0 and at 6, where ``g'`` is taken as 0 (PyTorch's ``hardtanh`` backward does
    the same). ``signal`` and ``eta`` share one shape; the result has ``signal``'s dtype.
    """
    return ((eta > 0) & (eta < 6)) * signal


def relu6_rule(rule, signal, eta, eta_ref):
    """The signal at a ReLU6's input under an attribution ``rule``:
    ``rule.relu6(signal, eta, eta_ref)`` (see :mod:`saliency.rules`); a rule written for ReLU
    only is refused with a message rather than silently treated as a ReLU."""
    method = getattr(rule, "relu6", None)
    if method is None:
        raise TypeError(f"the rule {rule!r} has no relu6 method; networks with ReLU6 "
                        "(MobileNetV2) need one (see sensloc.saliency.rules)")
    return method(signal, eta, eta_ref)


# ---------------------------------------------------------------------------------- max pooling

def max_pool_forward(x, kernel, stride, padding, ceil_mode):
    """Max pooling over square windows, one window tap at a time.

    ``y[n, c, oh, ow] = max_{i,j} x_pad[n, c, s*oh + i, s*ow + j]`` with the padding at -inf
    (it never wins). ``argmax`` holds the flat index ``h * W + w`` of the first maximum in
    row-major order (PyTorch's tie-break): the *switch* that routes the backward signal.

    Parameters
    ----------
    x : (N, C, H, W) float array
    kernel, stride, padding : int
    ceil_mode : bool
        Round the output size up (:func:`pool_output_size`).

    Returns
    -------
    y : (N, C, OH, OW) array of ``x``'s dtype
    argmax : (N, C, OH, OW) int64 array
    """
    n, c, h, w = x.shape
    oh = pool_output_size(h, kernel, stride, padding, ceil_mode)
    ow = pool_output_size(w, kernel, stride, padding, ceil_mode)
    # A ceil-mode window may reach past the padding: pad far enough for every tap it reads.
    bottom = max(padding, (oh - 1) * stride + kernel - h - padding)
    right = max(padding, (ow - 1) * stride + kernel - w - padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, bottom), (padding, right)), constant_values=-np.inf)
    top = np.arange(oh)[:, None] * stride - padding    # (OH, 1): each window's first row in x
    left = np.arange(ow)[None, :] * stride - padding   # (1, OW): its first column
    y = np.full((n, c, oh, ow), -np.inf, x.dtype)
    # A window whose every pixel is -inf keeps its first pixel inside x as the switch.
    argmax = np.broadcast_to(np.maximum(top, 0) * w + np.maximum(left, 0), y.shape).copy()
    for i, j, rows, cols in _taps(kernel, kernel, stride, oh, ow):
        tap = xp[:, :, rows, cols]
        wins = tap > y   # strictly greater: an earlier tap keeps a tie
        y = np.where(wins, tap, y)
        argmax = np.where(wins, (top + i) * w + (left + j), argmax)
    return y, argmax


def max_pool_route(dy, argmax, input_shape):
    """Send each window's signal to the input that won it (the gradient of max pooling).

    ``dx[n, c, argmax[n, c, oh, ow]] += dy[n, c, oh, ow]`` (flat ``h * W + w`` indices per
    plane): overlapping windows (3x3 stride 2) that pick the same pixel ADD their signals.

    Parameters
    ----------
    dy : (N, C, OH, OW) array
    argmax : (N, C, OH, OW) int array, from :func:`max_pool_forward`
    input_shape : tuple (N, C, H, W)

    Returns
    -------
    dx : (N, C, H, W) array of ``dy``'s dtype
    """
    n, c, h, w = input_shape
    plane_start = np.arange(n * c).reshape(n, c, 1, 1) * (h * w)   # each plane's first flat index
    dx = np.bincount((plane_start + argmax).ravel(), weights=dy.ravel(), minlength=n * c * h * w)
    return dx.reshape(input_shape).astype(dy.dtype, copy=False)
