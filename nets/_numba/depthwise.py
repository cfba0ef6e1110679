"""The fast backend's depthwise convolution and ReLU6 steps (MobileNetV2), as Numba kernels.

Same contracts as :func:`nets.reference.depthwise_conv2d_forward` and the rest: weights
``(C, 1, K, K)``, batches ``(N, C, H, W)``, symmetric zero padding ``p``, stride ``s``, results
in the input's dtype. The tests hold every function equal to the reference.

A depthwise convolution has no sum over channels, hence no matrix product to hand to a GEMM:
each ``(image, channel)`` plane is its own small 2-D filter, and the planes are split among
Numba's threads (a thread owns whole planes, so no two threads write the same element). Within
a plane the work is organised by output ROWS, so that the innermost loop runs along a row of
contiguous pixels and the compiler turns it into vector instructions::

    forward    y[r, q]            += w[i, j] * x[s*r + i - p, s*q + j - p]     for q in a row
    backward   dx[s*r + i - p, s*q + j - p] += w[i, j] * dy[r, q]               for q in a row

Both loops visit the same (output pixel, tap) pairs; the backward one is the transposed map
(Eq. 1's ``sum_k w_ki s_k`` within one channel). At stride 1 a row of one is the row of the
other shifted by ``j - p`` (unit stride both sides); at stride 2 the plane's even and odd
columns are first copied apart (:func:`_split_columns`), so that every tap again reads (or,
backward, writes) a contiguous run. Indices are unsigned in the inner loops: Numba then
drops its negative-index check, without which the loops are not vectorized. The zero
padding is never built: taps that would read it are skipped by clipping each row's range of
``q`` (:func:`_columns`), and rows of ``x`` outside the image are skipped whole. Each output
element receives its taps in the reference's order (``i`` then ``j``), so the sums are rounded
as the reference rounds them.

The ReLU6 steps are elementwise loops; the rules that mark their ``relu6`` method as fused
(:mod:`saliency.rules`) get a one-pass kernel of the same expression (:func:`relu6_rule`).
"""
import numpy as np
import numba
from numba import njit, prange, uint64

from sensloc.nets._numba.kernels import relu
from sensloc.nets.reference import conv_output_size
from sensloc.nets.reference import relu6_rule as _reference_relu6_rule

__all__ = ["depthwise_conv2d_forward", "depthwise_conv2d_backward_input",
           "depthwise_conv2d_backward_weight", "relu6", "relu6_backward", "relu6_rule"]


def _pad(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


@njit(inline="always")
def _columns(j, stride, padding, width, out_width):
    """``[q0, q1)``: the output columns whose tap ``j`` reads inside the row,
    ``0 <= s*q + j - p < width`` (Python's floor division rounds the bounds correctly)."""
    q0 = max(0, -((j - padding) // stride))                 # ceil((p - j) / s)
    q1 = min(out_width, (width - 1 + padding - j) // stride + 1)
    return q0, q1


@njit(inline="always")
def _split_columns(plane, stride, phases):
    # phases[h, phase, m] = plane[h, s*m + phase]: at stride s the columns one tap reads,
    # s*q + j - p, are then one phase's contiguous run.
    h, width = plane.shape
    for row in range(h):
        for phase in range(stride):
            m = 0
            for col in range(phase, width, stride):
                phases[row, phase, m] = plane[row, col]
                m += 1


@njit(inline="always")
def _join_columns(phases, stride, plane):
    # The inverse of _split_columns: plane[h, s*m + phase] = phases[h, phase, m].
    h, width = plane.shape
    for row in range(h):
        for phase in range(stride):
            m = 0
            for col in range(phase, width, stride):
                plane[row, col] = phases[row, phase, m]
                m += 1


@njit(inline="always")
def _tap_columns(k, stride, padding, width, out_width):
    """For every tap column j: ``[q0, q1)``, the output columns whose tap reads inside the
    row (:func:`_columns`), the phase of the columns it reads and their shift within it."""
    ranges = np.empty((k, 4), np.int64)
    for j in range(k):
        ranges[j, 0], ranges[j, 1] = _columns(j, stride, padding, width, out_width)
        ranges[j, 2], ranges[j, 3] = (j - padding) % stride, (j - padding) // stride
    return ranges


@njit(parallel=True, cache=True)
def _forward(x, w, b, stride, padding, blocks, y):
    # y (N, C, OH, OW) = per-plane correlation of x (N, C, H, W) with w (C, 1, K, K), plus b.
    # Planes are dealt to threads in `blocks` runs, each with its own scratch for stride > 1.
    n, c, h, width = x.shape
    out_height, out_width = y.shape[2], y.shape[3]
    k, planes = w.shape[2], n * c
    taps = _tap_columns(k, stride, padding, width, out_width)
    for block in prange(blocks):
        phases = np.empty((h if stride > 1 else 0, stride, -(-width // stride)), x.dtype)
        for plane in range(block * planes // blocks, (block + 1) * planes // blocks):
            image, channel = plane // c, plane % c
            src, dst = x[image, channel], y[image, channel]
            if stride > 1:
                _split_columns(src, stride, phases)
            for r in range(out_height):
                row = dst[r]
                for q in range(out_width):
                    row[q] = 0
                for i in range(k):
                    hi = stride * r + i - padding
                    if hi < 0 or hi >= h:
                        continue                 # a padded row: its taps add zero
                    for j in range(k):
                        weight = w[channel, 0, i, j]
                        q0, q1, shift = taps[j, 0], taps[j, 1], taps[j, 3]
                        # column s*q + j - p of the row is element q + shift of `line`
                        line = src[hi] if stride == 1 else phases[hi, taps[j, 2]]
                        # unsigned indices: no negative-index wraparound, so the loop is
                        # vectorized (q0 + shift >= 0 by the clipping of _columns)
                        for q in range(q0, q1):
                            row[uint64(q)] += weight * line[uint64(q + shift)]
                bias = b[channel]
                for q in range(out_width):
                    row[q] += bias               # last, as the reference adds it


@njit(parallel=True, cache=True)
def _backward_input(dy, w, stride, padding, blocks, dx):
    # dx (N, C, H, W) = per-plane transposed correlation of dy (N, C, OH, OW) with w: each
    # output row r adds into input rows s*r + i - p of its own plane (a thread owns the plane;
    # at stride > 1 it adds into the plane's column phases, interleaved back at the end).
    n, c, h, width = dx.shape
    out_height, out_width = dy.shape[2], dy.shape[3]
    k, planes = w.shape[2], n * c
    taps = _tap_columns(k, stride, padding, width, out_width)
    for block in prange(blocks):
        phases = np.empty((h if stride > 1 else 0, stride, -(-width // stride)), dx.dtype)
        for plane in range(block * planes // blocks, (block + 1) * planes // blocks):
            image, channel = plane // c, plane % c
            src, dst = dy[image, channel], dx[image, channel]
            if stride == 1:
                dst[:] = 0
            else:
                phases[:] = 0
            for r in range(out_height):
                signal = src[r]
                for i in range(k):
                    hi = stride * r + i - padding
                    if hi < 0 or hi >= h:
                        continue                 # the padding's share is dropped
                    for j in range(k):
                        weight = w[channel, 0, i, j]
                        q0, q1, shift = taps[j, 0], taps[j, 1], taps[j, 3]
                        line = dst[hi] if stride == 1 else phases[hi, taps[j, 2]]
                        for q in range(q0, q1):
                            line[uint64(q + shift)] += weight * signal[uint64(q)]
            if stride > 1:
                _join_columns(phases, stride, dst)


def _blocks(planes):
    """Runs of planes to deal to Numba's threads: a few per thread, for balance."""
    return max(1, min(planes, 8 * numba.get_num_threads()))


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
    """(N, C, H, W), (C, 1, K, K), (C,) -> (N, C, OH, OW); see the reference's equation,
    ``y[n, c, oh, ow] = b[c] + sum_{i,j} w[c, 0, i, j] * x_pad[n, c, s*oh + i, s*ow + j]``."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    oh, ow = conv_output_size(h, k, stride, padding), conv_output_size(wd, k, stride, padding)
    y = np.empty((n, c, oh, ow), x.dtype)
    _forward(np.ascontiguousarray(x), np.ascontiguousarray(w, x.dtype),
             np.ascontiguousarray(b, x.dtype), stride, padding, _blocks(n * c), y)
    return y


def depthwise_conv2d_backward_input(dy, w, input_shape, stride, padding):
    """(N, C, OH, OW) -> (N, C, H, W): each plane's transposed convolution,
    ``dx_pad[n, c, s*oh + i, s*ow + j] += w[c, 0, i, j] * dy[n, c, oh, ow]``, padding dropped."""
    dx = np.empty(tuple(input_shape), dy.dtype)
    _backward_input(np.ascontiguousarray(dy), np.ascontiguousarray(w, dy.dtype), stride,
                    padding, _blocks(dx.shape[0] * dx.shape[1]), dx)
    return dx


def depthwise_conv2d_backward_weight(dy, x, kernel_size, stride, padding):
    """``dw`` (C, 1, K, K) and ``db`` (C,) in ``dy``'s dtype (training only: plain loops)."""
    c = x.shape[1]
    dw = np.zeros((c, 1, kernel_size, kernel_size), dy.dtype)
    db = np.zeros(c, dy.dtype)
    _backward_weight(np.ascontiguousarray(dy), np.ascontiguousarray(_pad(x, padding), dy.dtype),
                     stride, dw, db)
    return dw, db


# ---------------------------------------------------------------------------------- ReLU6

def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype).reshape(-1)


@njit(parallel=True, cache=True)
def _relu6(e, o):
    for k in prange(e.size):
        v = e[k]  # NaN fails both comparisons and stays NaN, as in the reference
        o[k] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(parallel=True, cache=True)
def _relu6_gate(s, e, guided, o):
    # 1[0 < eta < 6] * s, times 1[s > 0] too if guided; each index written once.
    for k in prange(s.size):
        o[k] = s[k] if 0 < e[k] < 6 and (s[k] > 0 or not guided) else 0.0


@njit(parallel=True, cache=True)
def _relu6_secant(s, e, r, eps, zero, six, o):
    # DeepLIFT's rescale at a ReLU6, the expression of saliency.rules.Rescale.relu6 in one
    # pass. `zero` and `six` have the arrays' dtype, so float32 arithmetic stays float32.
    for k in prange(s.size):
        delta_in = e[k] - r[k]
        if abs(delta_in) >= eps:
            g_e = zero if e[k] < zero else (six if e[k] > six else e[k])
            g_r = zero if r[k] < zero else (six if r[k] > six else r[k])
            o[k] = s[k] * (g_e - g_r) / delta_in
        else:
            o[k] = s[k] if zero < e[k] < six else zero


def relu6(eta):
    """``min(max(eta, 0), 6)`` elementwise, in parallel; any shape, dtype kept."""
    out = np.empty(eta.shape, eta.dtype)
    _relu6(np.ascontiguousarray(eta).reshape(-1), out.reshape(-1))
    return out


def relu6_gate(signal, eta, guided=False):
    """``1[0 < eta < 6] * signal``, times ``1[signal > 0]`` too if ``guided``; arrays of one
    shape (any), the result in ``signal``'s dtype."""
    out = np.empty(signal.shape, signal.dtype)
    _relu6_gate(_flat(signal, signal.dtype), _flat(eta, signal.dtype), guided, out.reshape(-1))
    return out


def relu6_backward(signal, eta):
    """``1[0 < eta < 6] * signal`` elementwise, in parallel; ``signal``'s shape and dtype."""
    return relu6_gate(signal, eta)


def _relu6_rescale(rule, signal, eta, eta_ref):
    if eta_ref is None:
        return rule.relu6(signal, eta, eta_ref)   # the rule's own message
    dtype = signal.dtype
    out = np.empty(signal.shape, dtype)
    _relu6_secant(_flat(signal, dtype), _flat(eta, dtype), _flat(eta_ref, dtype),
                  dtype.type(rule.eps), dtype.type(0), dtype.type(6), out.reshape(-1))
    return out


def _relu6_deconvnet(rule, signal, eta, eta_ref):
    return relu(signal)   # 1[s > 0] * s = max(s, 0)


#: The fused kernel of each kind of ReLU6 step a rule may declare (``relu6.fused`` in
#: :mod:`saliency.rules`): the one-pass twin of the rule's NumPy expression.
FUSED_RELU6_RULES = {
    "gradient": lambda rule, signal, eta, eta_ref: relu6_gate(signal, eta),
    "guided": lambda rule, signal, eta, eta_ref: relu6_gate(signal, eta, guided=True),
    "deconvnet": _relu6_deconvnet,
    "rescale": _relu6_rescale,
}


def relu6_rule(rule, signal, eta, eta_ref):
    """``rule.relu6(signal, eta, eta_ref)``, by a fused kernel where this backend has one.

    As :func:`nets._numba.kernels.relu_rule` does for ReLU: a rule whose ``relu6`` method
    carries ``fused = kind`` (a kind of :data:`FUSED_RELU6_RULES`) runs that kernel, one
    parallel pass instead of NumPy's masks and temporaries (MobileNetV2's DeepLIFT spent a
    third of its backward pass there); any other rule runs its method, and a rule with no
    ``relu6`` is refused by :func:`nets.reference.relu6_rule`. Same contract as it.
    """
    fused = FUSED_RELU6_RULES.get(getattr(getattr(rule, "relu6", None), "fused", None))
    if fused is None:
        return _reference_relu6_rule(rule, signal, eta, eta_ref)
    return fused(rule, signal, eta, eta_ref)
