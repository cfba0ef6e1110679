"""The fast backend's depthwise convolution and ReLU6 steps (MobileNetV2), as Numba kernels.

Same contracts as :func:`nets.reference.depthwise_conv2d_forward` and the rest: weights
``(C, 1, K, K)``, batches ``(N, C, H, W)``, zero padding ``p`` on every side or
``((top, bottom), (left, right))`` (MobileNetV2's ``SAME`` padding, uneven at stride 2), stride
``s``, results in the input's dtype. The tests hold every function equal to the reference.

A depthwise convolution has no sum over channels, hence no matrix product to hand to a GEMM:
each ``(image, channel)`` plane is its own small 2-D filter, and the planes are split among
Numba's threads (a thread owns whole planes, so no two threads write the same element). Layers
below :data:`nets._numba.kernels.PARALLEL_DEPTHWISE_MACS` (MobileNetV2's 28 x 28 and smaller
blocks at batch 1) run serially instead: waking the threads would cost more than they save.

Within a plane, the work is arranged so that the innermost loop is one long contiguous run,
which the compiler turns into vector instructions (a loop along one 7-pixel row stays scalar);
the planes of one channel in several images share its kernel and are stacked one after the
other into one longer run (:data:`STACK_BYTES`), which MobileNetV2's 14 x 14 and 7 x 7 planes
need at batch 8. With the padded input cut into its ``s x s`` phases
``P[a, b][m, l] = x_pad[s*m + a, s*l + b]`` (one phase, the padded plane, at stride 1), each
of width ``PW = ceil((left + W + right) / s)``, tap ``(i, j)`` reads phase ``(i % s, j % s)`` shifted by
``(i // s, j // s)``, so over a "wide" output ``z`` of width ``PW``::

    forward    z[t]                += w[i, j] * P[i % s, j % s][t + shift]    for all t
    backward   P'[i % s, j % s][t + shift] += w[i, j] * z'[t]                 for all t

with ``t = r * PW + q`` flat (plus ``image * PH * PW`` where planes are stacked: every output's
window lies inside its own plane's phases) and ``shift = (i // s) * PW + j // s``. The padding is applied
here, plane by plane into a thread's scratch, not by a padded copy of the whole batch (the
layers pass MobileNetV2's ``SAME`` padding down): at stride 1 with no padding the plane is its
own phase and is read, or added into, in place. The columns ``q >= OW``
of ``z`` are computed and dropped (forward) or held at zero (backward, so they add nothing):
a few percent of extra work for one vector loop per tap. The backward pass is the forward's
loop with source and destination swapped, the transpose (Eq. 1's ``sum_k w_ki s_k`` within
one channel); the padding's share is dropped when the phases are read back. Each output
element receives its taps in the reference's order (``i`` then ``j``), the bias last, so the
sums are rounded as the reference rounds them.

The ReLU6 steps are elementwise loops (serial below
:data:`nets._numba.kernels.PARALLEL_ELEMENTS` values); the rules that mark their ``relu6``
method as fused (:mod:`saliency.rules`) get a one-pass kernel of the same expression
(:func:`relu6_rule`).
"""
import numpy as np
import numba
from numba import njit, prange, uint64

from sensloc.nets._numba.kernels import (PARALLEL_DEPTHWISE_MACS, PARALLEL_ELEMENTS,
                                         columns_inside, relu, serial_twin, threads_for)
from sensloc.nets.reference import conv_output_size, padding_sides
from sensloc.nets.reference import relu6_rule as _reference_relu6_rule

__all__ = ["depthwise_conv2d_forward", "depthwise_conv2d_backward_input",
           "depthwise_conv2d_backward_weight", "relu6", "relu6_backward", "relu6_rule"]


@njit(inline="always")
def _phases(plane, stride, top, left, height, width, clip, out, base):
    # out[a, b, base + m * width + l] = x_pad[s*m + a, s*l + b]: the zero-padded plane cut
    # into its s x s phases (one at stride 1), each flattened with `width` = ceil(padded W / s)
    # columns, from `base` on; of relu6(x) if `clip`. Flat views and unsigned indices: no
    # negative-index checks, so a stride-1 row is copied by vector instructions.
    h, w = plane.shape
    flat, area = plane.reshape(h * w), height * width
    for a in range(stride):
        for b in range(stride):
            l0, l1 = columns_inside(b, stride, left, w, width)
            phase = out[a, b]
            phase[base:base + area] = 0
            for m in range(height):
                row = stride * m + a - top
                if 0 <= row < h:
                    start, at = row * w + b - left, base + m * width
                    for l in range(l0, l1):
                        phase[uint64(at + l)] = flat[uint64(start + stride * l)]
            if clip:
                # afterwards, in one contiguous run over the (cached) phase, which the
                # compiler vectorizes; clipping in the strided copy above left a branch per
                # value, and was 10x slower at stride 2. The padding's zeros stay zero.
                for t in range(base, base + area):
                    v = phase[uint64(t)]   # NaN fails both comparisons and stays NaN, as in relu6
                    phase[uint64(t)] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@njit(inline="always")
def _unphase(phases, stride, top, left, height, width, base, plane):
    # The inverse of _phases, dropping the padding: plane[r, c] = x_pad[r + top, c + left].
    h, w = plane.shape
    flat = plane.reshape(h * w)
    for a in range(stride):
        for b in range(stride):
            l0, l1 = columns_inside(b, stride, left, w, width)
            phase = phases[a, b]
            for m in range(height):
                row = stride * m + a - top
                if 0 <= row < h:
                    start, at = row * w + b - left, base + m * width
                    for l in range(l0, l1):
                        flat[uint64(start + stride * l)] = phase[uint64(at + l)]


@njit(inline="always")
def _layout(like, images, height, width, k, stride, pads, in_place):
    """The stride-phase layout of one channel's planes, stacked image after image, shared by
    the forward and backward kernels.

    Returns ``area``, the elements of one plane's phase, ``PH * PW``; ``direct``, True where a
    plane is its own phase (stride 1, no padding, one image) and ``in_place`` allows it to be
    read or added into in place; ``taps``, (K*K, 3) int: for tap
    ``(i, j)`` at row ``i * K + j``, its phase ``(i % s, j % s)`` and the flat shift
    ``(i // s) * PW + j // s`` (tap ``(i, j)`` reads ``x_pad[s*r + i, s*q + j]`` = its phase at
    ``[r + i // s, q + j // s]``, i.e. flat index ``t + shift`` for wide index
    ``t = image * area + r * PW + q``); and a thread's zeroed scratch in ``like``'s dtype:
    ``phases`` (s, s, images * area), empty when ``direct``, and ``wide`` (images * area,).
    """
    top, bottom, left, right = pads
    ph, pw = -(-(top + height + bottom) // stride), -(-(left + width + right) // stride)
    area = ph * pw
    direct = (in_place and images == 1 and stride == 1 and top == 0 and bottom == 0
              and left == 0 and right == 0)
    taps = np.empty((k * k, 3), np.int64)
    for i in range(k):
        for j in range(k):
            taps[i * k + j, 0], taps[i * k + j, 1] = i % stride, j % stride
            taps[i * k + j, 2] = (i // stride) * pw + j // stride
    phases = np.zeros((stride, stride, 0 if direct else images * area), like.dtype)
    wide = np.zeros(images * area, like.dtype)
    return ph, pw, area, direct, taps, phases, wide


@serial_twin
@njit(parallel=True, cache=True)
def _forward(x, w, b, stride, pads, clip, stack, blocks, y):
    # y (N, C, OH, OW) = per-plane correlation of x (N, C, H, W) (of relu6(x) if `clip`, which
    # the copy into the phases applies) with w (C, 1, K, K), plus b. A thread takes runs of
    # channels (`blocks` runs in all), with scratch of its own; the planes of one channel share
    # its kernel, and `stack` of them at a time are stacked, so that every tap is one vector
    # loop over all of them.
    n, c, h, width = x.shape
    out_height, out_width = y.shape[2], y.shape[3]
    k = w.shape[2]
    for block in prange(blocks):
        ph, pw, area, direct, taps, phases, wide = _layout(
            x, stack, h, width, k, stride, pads, not clip)
        for task in range(block * c * -(-n // stack) // blocks,
                          (block + 1) * c * -(-n // stack) // blocks):
            channel, first = task % c, (task // c) * stack
            images = min(stack, n - first)
            # the wide output's elements used, per task: a channel's last stack may be shorter
            run = (images - 1) * area + (out_height - 1) * pw + out_width
            if not direct:
                for image in range(images):
                    _phases(x[first + image, channel], stride, pads[0], pads[2], ph, pw, clip,
                            phases, image * area)
            for tap in range(k * k):
                src = (x[first, channel].reshape(h * width) if direct
                       else phases[taps[tap, 0], taps[tap, 1]])
                shift, weight = taps[tap, 2], w[channel, 0, tap // k, tap % k]
                # unsigned indices: no negative-index check, so the loops are vectorized.
                # Between planes, t + shift stays inside t's own plane wherever t is an output
                # (the phases hold the window); elsewhere `wide` holds values that are dropped.
                if tap == 0:                     # the first tap starts the sums (0 + a = a)
                    for t in range(run):
                        wide[uint64(t)] = weight * src[uint64(t + shift)]
                else:
                    for t in range(run):
                        wide[uint64(t)] += weight * src[uint64(t + shift)]
            bias = b[channel]
            for image in range(images):
                out = y[first + image, channel].reshape(out_height * out_width)
                for r in range(out_height):
                    at = image * area + r * pw
                    for q in range(out_width):   # the bias last, as the reference adds it
                        out[uint64(r * out_width + q)] = wide[uint64(at + q)] + bias


@serial_twin
@njit(parallel=True, cache=True)
def _backward_input(dy, w, stride, pads, stack, blocks, dx):
    # dx (N, C, H, W) = per-plane transposed correlation of dy (N, C, OH, OW) with w: the
    # forward's loops with source and destination swapped, adding into the padded planes'
    # phases (a channel's N planes stacked), which are then read back into dx (the padding's
    # share is dropped there).
    n, c, h, width = dx.shape
    out_height, out_width = dy.shape[2], dy.shape[3]
    k = w.shape[2]
    for block in prange(blocks):
        # `wide` is zero outside the outputs (columns q >= OW, rows between planes), so those
        # add nothing; an output's taps land inside its own plane's phases
        ph, pw, area, direct, taps, phases, wide = _layout(
            dx, stack, h, width, k, stride, pads, True)
        for task in range(block * c * -(-n // stack) // blocks,
                          (block + 1) * c * -(-n // stack) // blocks):
            channel, first = task % c, (task // c) * stack
            images = min(stack, n - first)
            # the wide output's elements used, per task: a channel's last stack may be shorter
            run = (images - 1) * area + (out_height - 1) * pw + out_width
            for image in range(images):
                signal = dy[first + image, channel].reshape(out_height * out_width)
                for r in range(out_height):
                    at = image * area + r * pw
                    for q in range(out_width):
                        wide[uint64(at + q)] = signal[uint64(r * out_width + q)]
            if direct:
                dx[first, channel] = 0
            else:
                phases[:] = 0
            for tap in range(k * k):
                dst = (dx[first, channel].reshape(h * width) if direct
                       else phases[taps[tap, 0], taps[tap, 1]])
                shift, weight = taps[tap, 2], w[channel, 0, tap // k, tap % k]
                for t in range(run):
                    dst[uint64(t + shift)] += weight * wide[uint64(t)]
            if not direct:
                for image in range(images):
                    _unphase(phases, stride, pads[0], pads[2], ph, pw, image * area,
                             dx[first + image, channel])


#: Bytes of a thread's stacked wide output (``PH * PW`` values per image): a channel's planes
#: are stacked while it fits the L1 cache, which each of the K*K taps passes over. MobileNetV2
#: at batch 8, whose 14 x 14 and 7 x 7 planes made vector loops of 61-225 values: forward 43.9
#: -> 41.0 ms, gradient 88.0 -> 82.9 (8-32 KB alike; 56 x 56 planes stacked by 8 were slower).
STACK_BYTES = 16 << 10


def _launch(kernel, images, channels, plane, itemsize, macs):
    """The kernel to run, the images stacked per task and the number of runs of tasks to deal
    out: with Numba's threads, a few runs per thread, for balance; below
    :data:`nets._numba.kernels.PARALLEL_DEPTHWISE_MACS` multiply-adds
    (:func:`nets._numba.kernels.threads_for`), the serial twin with one run."""
    stack = max(1, min(images, STACK_BYTES // (plane * itemsize)))
    tasks = channels * -(-images // stack)
    if threads_for(kernel, macs, PARALLEL_DEPTHWISE_MACS) is kernel.serial:
        return kernel.serial, stack, 1
    return kernel, stack, max(1, min(tasks, 8 * numba.get_num_threads()))


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


def _pads(padding):
    """``(top, bottom, left, right)`` of an int or ``((top, bottom), (left, right))``."""
    (top, bottom), (left, right) = padding_sides(padding)
    return top, bottom, left, right


def depthwise_conv2d_forward(x, w, b, stride, padding, relu6_input=False):
    """(N, C, H, W), (C, 1, K, K), (C,) -> (N, C, OH, OW); see the reference's equation,
    ``y[n, c, oh, ow] = b[c] + sum_{i,j} w[c, 0, i, j] * x_pad[n, c, s*oh + i, s*ow + j]``;
    ``padding`` an int or ``((top, bottom), (left, right))``; with ``relu6_input``, of
    ``relu6(x)``, clipped as each plane is copied into a thread's scratch (no pass of its own
    over the input, MobileNetV2's largest arrays: a forward pass 7% faster at batch 8)."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    pads = _pads(padding)
    oh = conv_output_size(pads[0] + h + pads[1], k, stride, 0)
    ow = conv_output_size(pads[2] + wd + pads[3], k, stride, 0)
    y = np.empty((n, c, oh, ow), x.dtype)
    plane = -(-(pads[0] + h + pads[1]) // stride) * -(-(pads[2] + wd + pads[3]) // stride)
    kernel, stack, blocks = _launch(_forward, n, c, plane, x.itemsize, y.size * k * k)
    kernel(np.ascontiguousarray(x), np.ascontiguousarray(w, x.dtype),
           np.ascontiguousarray(b, x.dtype), stride, pads, bool(relu6_input), stack, blocks, y)
    return y


def depthwise_conv2d_backward_input(dy, w, input_shape, stride, padding):
    """(N, C, OH, OW) -> (N, C, H, W): each plane's transposed convolution,
    ``dx_pad[n, c, s*oh + i, s*ow + j] += w[c, 0, i, j] * dy[n, c, oh, ow]``, padding dropped."""
    dx = np.empty(tuple(input_shape), dy.dtype)
    n, c, h, wd = dx.shape
    pads = _pads(padding)
    plane = -(-(pads[0] + h + pads[1]) // stride) * -(-(pads[2] + wd + pads[3]) // stride)
    kernel, stack, blocks = _launch(_backward_input, n, c, plane, dy.itemsize,
                                    dy.size * w[0].size)
    kernel(np.ascontiguousarray(dy), np.ascontiguousarray(w, dy.dtype), stride, pads, stack,
           blocks, dx)
    return dx


def depthwise_conv2d_backward_weight(dy, x, kernel_size, stride, padding):
    """``dw`` (C, 1, K, K) and ``db`` (C,) in ``dy``'s dtype (training only: plain loops)."""
    c = x.shape[1]
    dw = np.zeros((c, 1, kernel_size, kernel_size), dy.dtype)
    db = np.zeros(c, dy.dtype)
    xp = np.pad(x, ((0, 0), (0, 0)) + padding_sides(padding))
    _backward_weight(np.ascontiguousarray(dy), np.ascontiguousarray(xp, dy.dtype), stride, dw, db)
    return dw, db


# ---------------------------------------------------------------------------------- ReLU6

def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype).reshape(-1)


@serial_twin
@njit(parallel=True, cache=True)
def _relu6(e, o):
    for k in prange(e.size):
        v = e[k]  # NaN fails both comparisons and stays NaN, as in the reference
        o[k] = 0.0 if v < 0 else (6.0 if v > 6 else v)


@serial_twin
@njit(parallel=True, cache=True)
def _relu6_gate(s, e, guided, o):
    # 1[0 < eta < 6] * s, times 1[s > 0] too if guided; each index written once.
    for k in prange(s.size):
        o[k] = s[k] if 0 < e[k] < 6 and (s[k] > 0 or not guided) else 0.0


@serial_twin
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
    threads_for(_relu6, eta.size, PARALLEL_ELEMENTS)(np.ascontiguousarray(eta).reshape(-1),
                                                     out.reshape(-1))
    return out


def relu6_gate(signal, eta, guided=False):
    """``1[0 < eta < 6] * signal``, times ``1[signal > 0]`` too if ``guided``; arrays of one
    shape (any), the result in ``signal``'s dtype."""
    out = np.empty(signal.shape, signal.dtype)
    threads_for(_relu6_gate, signal.size, PARALLEL_ELEMENTS)(
        _flat(signal, signal.dtype), _flat(eta, signal.dtype), guided, out.reshape(-1))
    return out


def relu6_backward(signal, eta):
    """``1[0 < eta < 6] * signal`` elementwise, in parallel; ``signal``'s shape and dtype."""
    return relu6_gate(signal, eta)


def _relu6_rescale(rule, signal, eta, eta_ref):
    if eta_ref is None:
        return rule.relu6(signal, eta, eta_ref)   # the rule's own message
    dtype = signal.dtype
    out = np.empty(signal.shape, dtype)
    threads_for(_relu6_secant, signal.size, PARALLEL_ELEMENTS)(
        _flat(signal, dtype), _flat(eta, dtype), _flat(eta_ref, dtype),
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
