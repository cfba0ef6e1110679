"""The fast backend's depthwise convolution and ReLU6 (MobileNetV2), as Numba kernels.

Same contracts as :func:`nets.reference.depthwise_conv2d_forward` and the rest: weights
``(C, 1, K, K)``, batches ``(N, C, H, W)``, symmetric zero padding, results in the input's
dtype. A depthwise convolution has no sum over channels, hence no matrix product to hand to a
GEMM: each ``(image, channel)`` plane is its own small 2-D filter, and the planes are split
among Numba's threads (no two threads write the same plane). The ReLU6 steps are elementwise
loops split the same way. The tests hold every function equal to the reference.
"""
import numpy as np
from numba import njit, prange

from sensloc.nets.reference import conv_output_size, relu6_rule

__all__ = ["depthwise_conv2d_forward", "depthwise_conv2d_backward_input",
           "depthwise_conv2d_backward_weight", "relu6", "relu6_backward", "relu6_rule"]


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


@njit(parallel=True, cache=True)
def _forward(xp, w, b, stride, y):
    n, c, oh, ow = y.shape
    k = w.shape[2]
    for plane in prange(n * c):
        image, channel = plane // c, plane % c
        for r in range(oh):
            for q in range(ow):
                acc = b[channel]
                for i in range(k):
                    for j in range(k):
                        acc += w[channel, 0, i, j] * xp[image, channel, stride * r + i,
                                                        stride * q + j]
                y[image, channel, r, q] = acc


@njit(parallel=True, cache=True)
def _backward_input(dy, w, stride, dxp):
    n, c, oh, ow = dy.shape
    k = w.shape[2]
    for plane in prange(n * c):
        image, channel = plane // c, plane % c
        for r in range(oh):
            for q in range(ow):
                s = dy[image, channel, r, q]
                for i in range(k):
                    for j in range(k):
                        dxp[image, channel, stride * r + i, stride * q + j] += \
                            w[channel, 0, i, j] * s


@njit(parallel=True, cache=True)
def _backward_weight(dy, xp, stride, dw, db):
    n, c, oh, ow = dy.shape
    k = dw.shape[2]
    for channel in prange(c):  # each thread owns its channels' dw and db
        for image in range(n):
            for r in range(oh):
                for q in range(ow):
                    s = dy[image, channel, r, q]
                    db[channel] += s
                    for i in range(k):
                        for j in range(k):
                            dw[channel, 0, i, j] += s * xp[image, channel, stride * r + i,
                                                           stride * q + j]


def depthwise_conv2d_forward(x, w, b, stride, padding):
    """(N, C, H, W), (C, 1, K, K), (C,) -> (N, C, OH, OW); see the reference's equation."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    oh, ow = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
    y = np.empty((n, c, oh, ow), x.dtype)
    _forward(np.ascontiguousarray(_pad(x, padding)), np.ascontiguousarray(w, x.dtype),
             np.ascontiguousarray(b, x.dtype), stride, y)
    return y


def depthwise_conv2d_backward_input(dy, w, input_shape, stride, padding):
    """(N, C, OH, OW) -> (N, C, H, W): each plane's transposed convolution."""
    n, c, h, wd = input_shape
    dxp = np.zeros((n, c, h + 2 * padding, wd + 2 * padding), dy.dtype)
    _backward_input(np.ascontiguousarray(dy), np.ascontiguousarray(w, dy.dtype), stride, dxp)
    return dxp[:, :, padding:padding + h, padding:padding + wd]


def depthwise_conv2d_backward_weight(dy, x, kernel_size, stride, padding):
    """``dw`` (C, 1, K, K) and ``db`` (C,) in ``dy``'s dtype."""
    c = x.shape[1]
    dw = np.zeros((c, 1, kernel_size, kernel_size), dy.dtype)
    db = np.zeros(c, dy.dtype)
    _backward_weight(np.ascontiguousarray(dy), np.ascontiguousarray(_pad(x, padding), dy.dtype),
                     stride, dw, db)
    return dw, db


@njit(parallel=True, cache=True)
def _relu6(e, o):
    for k in prange(e.size):
        v = e[k]  # NaN fails both comparisons and stays NaN, as in the reference
        o[k] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(parallel=True, cache=True)
def _relu6_gate(s, e, o):
    for k in prange(s.size):
        o[k] = s[k] if 0 < e[k] < 6 else 0.0


def relu6(eta):
    """``min(max(eta, 0), 6)`` elementwise, in parallel; any shape, dtype kept."""
    out = np.empty(eta.shape, eta.dtype)
    _relu6(np.ascontiguousarray(eta).reshape(-1), out.reshape(-1))
    return out


def relu6_backward(signal, eta):
    """``1[0 < eta < 6] * signal`` elementwise, in parallel; ``signal``'s shape and dtype."""
    out = np.empty(signal.shape, signal.dtype)
    _relu6_gate(np.ascontiguousarray(signal).reshape(-1),
                np.ascontiguousarray(eta, signal.dtype).reshape(-1), out.reshape(-1))
    return out
