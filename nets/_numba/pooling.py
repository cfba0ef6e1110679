"""The fast backend's max pooling (:func:`nets.reference.max_pool_forward` and
:func:`nets.reference.max_pool_route`, same contracts), as Numba kernels.

A thread owns whole ``(image, channel)`` planes, so no two threads write the same element.
Forward, every window's maximum and its switch (the flat index of the first largest value in
row-major order, as the reference keeps it); the windows that lie wholly inside the
plane skip the clipping tests, and the 3x3 and 2x2 ones (SqueezeNet's, VGG's) are written out
tap by tap. Backward, the signal is routed to the switches, and where overlapping windows
picked the same pixel the signals add.
"""
import numpy as np
from numba import njit, prange

from sensloc.nets.reference import pool_output_size

__all__ = ["max_pool_forward", "max_pool_route"]


@njit(inline="always")
def _keep_larger(v, at, best, best_at):
    # strictly larger: of tied values the first in row-major order stays the switch
    if v > best:
        return v, at
    return best, best_at


@njit(inline="always")
def _window_max(xp, first, w, kernel, best, best_at):
    # The max of a k x k window lying inside the plane xp (flat, rows of w), from its top-left
    # flat index `first`. SqueezeNet's 3x3 and VGG's 2x2 windows are written out tap by tap:
    # unrolled, the 3x3 pools take half the time of the loop over taps.
    a = first
    if kernel == 3:
        for _ in range(3):
            best, best_at = _keep_larger(xp[a], a, best, best_at)
            best, best_at = _keep_larger(xp[a + 1], a + 1, best, best_at)
            best, best_at = _keep_larger(xp[a + 2], a + 2, best, best_at)
            a += w
    elif kernel == 2:
        for _ in range(2):
            best, best_at = _keep_larger(xp[a], a, best, best_at)
            best, best_at = _keep_larger(xp[a + 1], a + 1, best, best_at)
            a += w
    else:
        for i in range(kernel):
            for j in range(kernel):
                best, best_at = _keep_larger(xp[a + i * w + j], a + i * w + j, best, best_at)
    return best, best_at


@njit(parallel=True, cache=True)
def _max_pool_forward(x, kernel, stride, padding, y, argmax):
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    # Windows of output rows [r0, r1) and columns [q0, q1) lie wholly inside the plane; the
    # others are clipped by the padding or by ceil mode's last window.
    r0, r1 = -(-padding // stride), (h - kernel + padding) // stride + 1
    q0, q1 = -(-padding // stride), (w - kernel + padding) // stride + 1
    planes = x.reshape(n * c, h * w)
    maxima, switches = y.reshape(n * c, oh * ow), argmax.reshape(n * c, oh * ow)
    for plane in prange(n * c):
        xp = planes[plane]
        for r in range(oh):
            h0 = max(r * stride - padding, 0)
            h1 = min(r * stride - padding + kernel, h)
            for q in range(ow):
                w0 = max(q * stride - padding, 0)
                w1 = min(q * stride - padding + kernel, w)
                best, best_at = xp[h0 * w + w0], h0 * w + w0
                if r0 <= r < r1 and q0 <= q < q1:
                    best, best_at = _window_max(xp, h0 * w + w0, w, kernel, best, best_at)
                else:
                    for hi in range(h0, h1):
                        for wj in range(w0, w1):
                            best, best_at = _keep_larger(xp[hi * w + wj], hi * w + wj,
                                                         best, best_at)
                maxima[plane, r * ow + q] = best
                switches[plane, r * ow + q] = best_at


@njit(parallel=True, cache=True)
def _max_pool_route(dy, argmax, dx):
    # Overlapping windows (3x3 stride 2) may pick the same pixel twice: the signals ADD.
    # A thread owns a whole (n, c) plane, so the additions never race; it zeroes the plane
    # first (in parallel, and while the plane is in its cache).
    n, c, oh, ow = dy.shape
    h, w = dx.shape[2], dx.shape[3]
    for plane in prange(n * c):
        b, ch = plane // c, plane % c
        for i in range(h):
            for j in range(w):
                dx[b, ch, i, j] = 0
        for r in range(oh):
            for q in range(ow):
                k = argmax[b, ch, r, q]
                dx[b, ch, k // w, k % w] += dy[b, ch, r, q]


def max_pool_forward(x, kernel, stride, padding, ceil_mode):
    """Fast max pooling; same contract as :func:`nets.reference.max_pool_forward`."""
    n, c, h, w = x.shape
    oh = pool_output_size(h, kernel, stride, padding, ceil_mode)
    ow = pool_output_size(w, kernel, stride, padding, ceil_mode)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow), dtype=np.int64)
    _max_pool_forward(np.ascontiguousarray(x), kernel, stride, padding, y, argmax)
    return y, argmax


def max_pool_route(dy, argmax, input_shape):
    """Fast switch routing; same contract as :func:`nets.reference.max_pool_route`."""
    dx = np.empty(input_shape, dtype=dy.dtype)
    _max_pool_route(np.ascontiguousarray(dy), argmax, dx)
    return dx
