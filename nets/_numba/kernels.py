"""The fast backend's kernels: convolution, ReLU steps and GEMMs in Numba.

Why this file is long (~1,100 lines): it is the second implementation of :mod:`nets.reference`,
the speed of the library, and its parts share private helpers (scratch buffers, the BLAS guard,
the threaded GEMM, the chunking of batches) that would otherwise become a public API between
files. Students read :mod:`nets.reference`; this file is held equal to it by the tests.

Every public function named as in :mod:`nets.reference` has its contract (signature, shapes,
dtype, equation); only the way it is computed differs.

Shapes follow the library's convention: batches are ``(N, C, H, W)`` float32, convolution
weights are ``(O, C, KH, KW)`` (OIHW), square kernels, the same stride and zero padding on
both axes.

Convolution is a matrix product. With a chunk of images unrolled into columns,
``cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, s*oh + i, s*ow + j]``, the forward pass is
``Y = W.reshape(O, C*KH*KW) @ cols + b`` and the input signal is
``dx = col2im(W.reshape(O, C*KH*KW).T @ dY)``: the transpose of the same linear map,
``sum_k w_ki s_k`` in the notation of Eq. 1, i.e. a transposed convolution. Training reads the
same product a third way: the weight gradient is ``dY @ cols^T``. A 1x1 stride-1 convolution
needs no unrolling: each image already is the (C, H*W) matrix, and :func:`pointwise_conv2d`
multiplies it block of output rows by block, straight into the output. Large output planes
(SqueezeNet's conv1, 111 x 111 from 7 x 7 kernels: 147 rows of columns, 7 MB per image) are
cut into bands of output rows (:func:`_conv_bands`, :func:`_conv_bands_backward`): a task
unrolls one band of one image into columns of about :data:`BAND_BYTES`, which stay in the
core's cache for the GEMM that reads them (and, backward, for the col2im that folds them back)
instead of going out to memory and back.

The 3x3 stride-1 convolutions that make up VGG16 take a shorter road, Winograd's minimal
filtering F(2x2, 3x3) (Lavin & Gray, 2016; see :func:`winograd_conv2d`): 16 multiplications per
2x2 output tile and channel pair instead of 36, so 2.25x fewer GEMM flops than ``W @ cols``.
The transformed kernels are kept between passes, per weight array (:func:`winograd_memo`).

Threads: one pool does all the parallel work of a pass, Numba's. GEMMs are split among its
threads (:func:`gemm` by columns or rows, :func:`winograd_products` by transformed position),
each running a BLAS GEMM kept single-threaded by :func:`serial_blas`
(:func:`nets._numba.gemm.matmul_into`; the packed Numba GEMM beside it loses to unpinned
OpenBLAS on every shape here), and the other kernels split their outputs,
so no two threads ever write the same element. Waking the pool costs tens of microseconds, so
small layers are not sent to it: the elementwise, depthwise and 1x1 kernels have a serial twin
(:func:`serial_twin`) that runs below a size threshold (:data:`PARALLEL_ELEMENTS` and its
siblings), which is most of MobileNetV2's steps at batch 1. The process settings that make this
pool fast (glibc keeping freed memory, the OpenMP threading layer) are the business of
:func:`nets.backends.configure_process`, never of this module: importing it changes nothing in
the process.
"""
import functools
import importlib
import os
import threading
import types
import weakref
from contextlib import contextmanager

import numba
import numpy as np
from numba import njit, prange, uint64
import threadpoolctl

from sensloc.nets._numba import gemm as gemm_kernel
from sensloc.nets._numba.gemm import matmul_into
from sensloc.nets.reference import conv_output_size


# ---------------------------------------------------------------------------------------------
# Convolution: fast (Numba unrolling + BLAS GEMMs over chunks of images)
# ---------------------------------------------------------------------------------------------

#: Most elements one unrolled chunk may hold (32 MB in float32). Small images (a 64x64 scene) are
#: unrolled many at a time so that a layer is a few large GEMMs, not hundreds of tiny ones;
#: large ones (VGG16's 224x224 blocks) one image at a time, so memory stays bounded.
COLUMN_BUDGET = 1 << 23
#: Output planes at least this large are convolved by bands of output rows, image by image
#: (:func:`_conv_bands`): a band's product is wide enough alone and is written straight into
#: the output, with no copy from the (O, B*OH*OW) layout. SqueezeNet's 27 x 27 expand3x3 at
#: batch 8 (2 threads): forward 1.9-5.8 -> 1.3-4.5 ms, input signal 1.7-5.4 -> 1.2-4.5; at
#: 13 x 13 bands lost at batch 1 (0.29 -> 0.37 ms).
WIDE_PLANE = 512


# ---------------------------------------------------------------------------------------------
# Numba's threads, or the calling thread: a kernel and its serial twin
# ---------------------------------------------------------------------------------------------

#: Below these amounts of work a kernel runs on the calling thread; they were measured with
#: workers that sleep after every kernel (``OMP_WAIT_POLICY=PASSIVE``), and workers that spin
#: take a sixteenth of them (:data:`SPINNING_DIVISOR`). Starting a parallel region
#: wakes a sleeping OpenMP worker,
#: which costs ~45-60 us on the 2-core development machine, idle, and more when other processes
#: hold the second core; a kernel gains from its second thread only when half its serial time
#: is more than that. MobileNetV2 at batch 1 started ~90 parallel kernels per pass (its 14 x 14
#: and 7 x 7 blocks, every ReLU6): ~5 ms of wake-ups in a ~20 ms forward pass.
#: Elementwise passes (ReLU and ReLU6 steps, forward and backward): ~60 us per million values
#: on one thread; two threads were no faster below ~2 million (1 M: 60 us serial, 99 parallel).
PARALLEL_ELEMENTS = 1 << 21
#: Depthwise convolutions, in multiply-adds (``N C OH OW K^2``): ~9-17 GMAC/s on one thread;
#: two threads won from MobileNetV2's first block (3.6 M: 412 -> 326 us), lost at the 14 x 14
#: blocks (1 M: 184 -> 237 us).
PARALLEL_DEPTHWISE_MACS = 1 << 21
#: 1x1 convolutions, in multiply-adds (``N O C H W``): one BLAS GEMM per image on the calling
#: thread beat the threaded row blocks below ~12 M (MobileNetV2's 576 -> 96 at 14 x 14, 10.8 M:
#: 220 vs 214 us; 144 -> 24 at 56 x 56: 282 vs 380 us; 1280 <- 320 at 7 x 7, 20 M: 442 vs 333).
PARALLEL_POINTWISE_MACS = 12 << 20


def serial_twin(kernel):
    """Give a ``parallel=True`` kernel ``kernel.serial``: the same function compiled without
    threads (its ``prange`` loops become ``range``), for work too small to pay for waking them.

    Written once, compiled twice. The twin is a copy of the Python function under another
    qualified name: Numba's on-disk cache files are named after it, and two compilations of one
    function with different options would otherwise load each other's machine code.
    """
    fn = kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__doc__ = fn.__doc__
    # NumPy's error model, as Numba's parallel loops have: a division by zero gives inf or NaN
    # instead of raising, and is not checked for at every element (the check made DeepLIFT's
    # secant 40x slower serially than in parallel)
    options = {k: v for k, v in kernel.targetoptions.items() if k == "fastmath"}
    kernel.serial = njit(cache=True, error_model="numpy", **options)(twin)
    return kernel


#: Workers that spin between kernels (OpenMP's own policy, which
#: :func:`nets.backends.configure_process` keeps, with a longer spin) are already awake: kernels
#: go to them from a sixteenth of the thresholds above. MobileNetV2's batch-1 forward pass went
#: from 9.2 to 7.1 ms; with passive workers a sixteenth was 7-10% slower (benchmarks/RESULTS.md,
#: section "-8").
SPINNING_DIVISOR = 16


@functools.lru_cache(maxsize=None)
def _threshold_divisor():
    # OpenMP reads its wait policy once, when its runtime starts; so does this.
    return 1 if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else SPINNING_DIVISOR


def threads_for(kernel, work, threshold):
    """``kernel`` if ``work`` reaches ``threshold`` (divided by :data:`SPINNING_DIVISOR` unless
    ``OMP_WAIT_POLICY=PASSIVE``), else its serial twin (:func:`serial_twin`)."""
    return kernel if work * _threshold_divisor() >= threshold else kernel.serial


_scratch_space = threading.local()


def _scratch(name, shape, dtype):
    """A temporary array that lives on between calls (one per name, dtype and thread).

    Fresh temporaries of tens of MB come back from the OS as new pages that it zero-fills on
    first touch; reusing them made a VGG16 batch-8 gradient 17% faster. Per thread, so that
    threads calling the library at once (a multi-threaded Dask worker) never share one.
    """
    buffers = _scratch_space.__dict__.setdefault("buffers", {})
    key, size = (name, np.dtype(dtype)), int(np.prod(shape))
    if key not in buffers or buffers[key].size < size:
        buffers[key] = np.empty(size, dtype)
    return buffers[key][:size].reshape(shape)


_blas = {"lock": threading.Lock(), "depth": 0, "libraries": None, "restore": []}


@contextmanager
def serial_blas():
    """Every BLAS library single-threaded inside the block, for GEMMs run in Numba's threads.

    Kernels that may call BLAS from a ``prange`` (:func:`gemm`, :func:`gemm_split_inner`,
    :func:`winograd_products`: :func:`nets._numba.gemm.matmul_into` hands thin products to
    ``np.dot``) must not let BLAS start threads of its own. Multi-threaded BLAS called from
    Python was the alternative, but OpenBLAS's threads spin for a while after every call
    (``OPENBLAS_THREAD_TIMEOUT``, read only when NumPy loads): on 2 cores the Numba kernel
    after each GEMM then shared its cores with them, and VGG16's transforms ran 2-4x slower
    than on one thread. With all parallel
    work in Numba's pool, no second pool spins beside it.

    The limit is process-wide (BLAS has no per-thread setting), so the block nests and counts:
    the first caller to enter sets 1 thread, the last to leave restores what was there, and
    threads that enter meanwhile (a multi-threaded Dask worker) find the limit already set.

    threadpoolctl finds the libraries once; entering and leaving then call each library's
    own get/set functions directly (ctypes). ``threadpoolctl.limit`` and its restore cost
    ~15 us per block, paid by every 1x1 convolution: ~150 blocks per MobileNetV2 pass
    at batch 1, where a whole backward pass is ~20 ms.
    """
    with _blas["lock"]:
        if _blas["depth"] == 0:
            _blas["restore"] = []
            for get, set_ in _blas_libraries():
                threads = get()
                if threads is not None and threads != 1:
                    set_(1)
                    _blas["restore"].append((set_, threads))
        _blas["depth"] += 1
    try:
        yield
    finally:
        with _blas["lock"]:
            _blas["depth"] -= 1
            if _blas["depth"] == 0:
                for set_, threads in _blas["restore"]:
                    set_(threads)


def _blas_libraries():
    """``(get_num_threads, set_num_threads)`` of every BLAS library loaded, found once.

    The BLAS that Numba's np.dot calls is SciPy's (cython_blas): it is loaded first. OpenBLAS's
    threadpoolctl controller lets only the first thread that limited it change it again
    (others are silently ignored); here the first caller to enter and the last to leave may
    differ, so its unchecked setter is used (the lock of :func:`serial_blas` orders calls).
    """
    if _blas["libraries"] is None:
        importlib.import_module("scipy.linalg.cython_blas")
        controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
        _blas["libraries"] = [
            (lib.get_num_threads, getattr(lib, "_real_set_num_threads", lib.set_num_threads))
            for lib in controller.lib_controllers]
    return _blas["libraries"]


def gemm(a, b, out=None, bias=None):
    """``a @ b (+ bias[:, None])`` split among Numba's threads, :func:`nets._numba.gemm.matmul_into`
    in each: by columns of ``b`` where it is wide enough for two tile columns per thread (each
    thread packs only its own part of ``b``), else by rows of ``a``.

    Parameters
    ----------
    a : (M, K) array (copied if not C-contiguous)
    b : (K, N) array of ``a``'s dtype (copied if not C-contiguous)
    out : (M, N) C-contiguous array, optional
    bias : (M,) array, optional
        Added to every column by the thread that wrote it (a convolution's bias).

    Returns
    -------
    (M, N) array
    """
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b, a.dtype)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), a.dtype)
    add_bias = bias is not None
    bias = np.ascontiguousarray(bias if add_bias else np.zeros(0), a.dtype)
    threads = numba.get_num_threads()
    with serial_blas():
        if b.shape[1] >= threads * 2 * gemm_kernel.NR:  # wide: each thread its own columns
            _gemm_columns(a, b, bias, add_bias, out, threads)
        else:
            _gemm_rows(a, b, bias, add_bias, out, max(1, min(threads, a.shape[0])))
    return out


@njit(parallel=True, cache=True)
def _gemm_columns(a, b, bias, add_bias, out, blocks):
    # Block j of columns belongs to one thread, which packs only its own part of b.
    columns = b.shape[1]
    for j in prange(blocks):
        first, last = j * columns // blocks, (j + 1) * columns // blocks
        matmul_into(a, b[:, first:last], out[:, first:last])
        if add_bias:
            for r in range(out.shape[0]):
                out[r, first:last] += bias[r]


@njit(parallel=True, cache=True)
def _gemm_rows(a, b, bias, add_bias, out, blocks):
    # Block j of rows belongs to one thread; row slices of C-contiguous arrays stay contiguous.
    rows = a.shape[0]
    for j in prange(blocks):
        first, last = j * rows // blocks, (j + 1) * rows // blocks
        matmul_into(a[first:last], b, out[first:last])
        if add_bias:
            for r in range(first, last):
                out[r] += bias[r]


def gemm_split_inner(a, b):
    """``a @ b`` with the shared dimension K split among Numba's threads, BLAS single-threaded.

    ``a @ b = sum_j a[:, K_j] @ b[K_j]``: each thread multiplies its block of rows of ``b`` and
    the partial products are summed. For a few rows of ``a`` against a tall ``b``, where
    :func:`gemm`'s split has nothing to divide: a fully connected layer's input signal
    ``dy @ W``, bound by reading ``W`` once.

    Parameters
    ----------
    a : (M, K) array
    b : (K, N) array of ``a``'s dtype (copied if not C-contiguous)

    Returns
    -------
    (M, N) array
    """
    b = np.ascontiguousarray(b)
    a_t = np.ascontiguousarray(np.asarray(a, b.dtype).T)  # its row blocks are a's column blocks
    blocks = max(1, min(numba.get_num_threads(), b.shape[0]))
    partial = np.empty((blocks, a_t.shape[1], b.shape[1]), b.dtype)
    with serial_blas():
        _gemm_inner_blocks(a_t, b, partial)
    return partial.sum(axis=0)


@njit(parallel=True, cache=True)
def _gemm_inner_blocks(a_t, b, partial):
    # partial[j] = a[:, K_j] @ b[K_j]; thread j owns partial[j].
    inner, blocks = b.shape[0], partial.shape[0]
    for j in prange(blocks):
        first, last = j * inner // blocks, (j + 1) * inner // blocks
        matmul_into(a_t[first:last].T, b[first:last], partial[j])


def _chunks(count, per_image, plane=0):
    """``(start, stop)`` ranges of images whose unrolled columns fit :data:`COLUMN_BUDGET`,
    single images where the output ``plane`` (OH * OW) reaches :data:`WIDE_PLANE`."""
    size = 1 if plane >= WIDE_PLANE else max(1, min(count, COLUMN_BUDGET // max(per_image, 1)))
    return [(start, min(start + size, count)) for start in range(0, count, size)]


@njit(inline="always")
def columns_inside(offset, stride, left, width, count):
    """``[l0, l1)`` within ``[0, count)``: the columns ``l`` whose pixel ``s*l + offset - left``
    lies inside a row of ``width``, e.g. the output columns whose tap ``offset`` reads the
    unpadded input (im2col), or the columns of a stride phase (:mod:`nets._numba.depthwise`).
    Floor division rounds the bounds the right way."""
    l0 = min(count, max(0, -((offset - left) // stride)))   # ceil((left - offset) / s)
    l1 = min(count, (width - 1 + left - offset) // stride + 1)
    return l0, max(l0, l1)


@njit(inline="always")
def _unroll_rows(plane, c, kh, kw, stride, padding, w, first, last, ow, cols, base):
    # The kh*kw rows of `cols` that channel c of one image fills (plane: its flat (H*W)
    # pixels), for the output rows [first, last): column base + (r - first) * ow + q of row
    # (c, i, j) is x_pad[s*r + i, s*q + j].
    h = plane.size // w
    for i in range(kh):
        for j in range(kw):
            out = cols[(c * kh + i) * kw + j]
            q0, q1 = columns_inside(j, stride, padding, w, ow)
            for r in range(first, last):
                hi = stride * r + i - padding
                start, at = hi * w + j - padding, base + (r - first) * ow
                if hi < 0 or hi >= h:
                    q0r, q1r = 0, 0
                else:
                    q0r, q1r = q0, q1
                for q in range(q0r):
                    out[uint64(at + q)] = 0.0
                # unsigned indices (no negative-index checks) and stride 1 apart from the
                # others: a contiguous copy that the compiler vectorizes
                if stride == 1:
                    for q in range(q0r, q1r):
                        out[uint64(at + q)] = plane[uint64(start + q)]
                else:
                    for q in range(q0r, q1r):
                        out[uint64(at + q)] = plane[uint64(start + stride * q)]
                for q in range(q1r, ow):
                    out[uint64(at + q)] = 0.0


@njit(parallel=True, cache=True, fastmath=False)
def _im2col(x, kh, kw, stride, padding, oh, ow, cols):
    # x is a chunk (B, C, H, W); column (b, r, q) of cols is output pixel (r, q) of image b.
    # A task owns one (image, channel) plane: its kh*kw rows of `cols` within that image's
    # columns, so writes never collide and RGB inputs (3 channels) still give 3*B tasks.
    count, c_in, h, w = x.shape
    flat = x.reshape(count, c_in, h * w)
    for task in prange(count * c_in):
        b, c = task // c_in, task % c_in
        _unroll_rows(flat[b, c], c, kh, kw, stride, padding, w, 0, oh, ow, cols, b * oh * ow)


@njit(inline="always")
def _fold_rows(cols, c, kh, kw, stride, padding, w, first, last, ow, plane, base):
    # The transpose of _unroll_rows: adds the kh*kw rows of `cols` that belong to channel c
    # (output rows [first, last), from column `base`) into the flat (H*W) plane of dx, taps in
    # the order i, j, then r, q.
    h = plane.size // w
    for i in range(kh):
        for j in range(kw):
            row = cols[(c * kh + i) * kw + j]
            q0, q1 = columns_inside(j, stride, padding, w, ow)
            for r in range(first, last):
                hi = stride * r + i - padding
                if hi < 0 or hi >= h:
                    continue
                at, start = base + (r - first) * ow, hi * w + j - padding
                if stride == 1:
                    for q in range(q0, q1):
                        plane[uint64(start + q)] += row[uint64(at + q)]
                else:
                    for q in range(q0, q1):
                        plane[uint64(start + stride * q)] += row[uint64(at + q)]


@njit(parallel=True, cache=True, fastmath=False)
def _col2im(cols, kh, kw, stride, padding, oh, ow, dx):
    # Overlapping windows add into the same pixel: a task owns one (image, channel) plane of
    # dx and adds its taps in the same order as a loop over channels would (i, j, then r, q).
    count, c_in, h, w = dx.shape
    flat = dx.reshape(count, c_in, h * w)
    for task in prange(count * c_in):
        b, c = task // c_in, task % c_in
        _fold_rows(cols, c, kh, kw, stride, padding, w, 0, oh, ow, flat[b, c], b * oh * ow)


def _is_pointwise(kernel_size, stride, padding):
    """A 1x1 convolution with stride 1 and no padding reads the pixels themselves."""
    return kernel_size == 1 and stride == 1 and padding == 0


def _channels_first(a):
    """A chunk (B, C, H, W) as the matrix (C, B*H*W) the GEMMs read (no copy for one image)."""
    count, c = a.shape[:2]
    if count == 1:
        return a[0].reshape(c, -1)
    out = np.empty((c, a[0, 0].size * count), a.dtype)
    _channels_first_copy(np.ascontiguousarray(a).reshape(count, c, -1), out)
    return out


@njit(parallel=True, cache=True)
def _channels_first_copy(a, out):
    # a (B, C, P) -> out (C, B*P); a thread owns channels.
    count, channels, size = a.shape
    for c in prange(channels):
        for i in range(count):
            for k in range(size):
                out[c, i * size + k] = a[i, c, k]


@njit(parallel=True, cache=True)
def _batch_first_copy(m, bias, y):
    # m (O, B*P) -> y (B, O, P), plus bias[o]; a thread owns output channels.
    count, channels, size = y.shape
    for o in prange(channels):
        for i in range(count):
            for k in range(size):
                y[i, o, k] = m[o, i * size + k] + bias[o]


def _unroll(x, k, stride, padding, oh, ow):
    """The chunk ``x`` (B, C, H, W) as columns (C*K*K, B*OH*OW) (see the module docstring)."""
    if _is_pointwise(k, stride, padding):
        return _channels_first(x)
    cols = _scratch("columns", (x.shape[1] * k * k, x.shape[0] * oh * ow), x.dtype)
    _im2col(np.ascontiguousarray(x), k, k, stride, padding, oh, ow, cols)
    return cols


def conv2d_forward(x, w, b, stride, padding):
    """Fast convolution; same contract as :func:`nets.reference.conv2d_forward` (float32 or
    float64): ``y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o, c, i, j] x_pad[n, c, s oh + i, s ow + j]``.
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    if uses_winograd(kh, stride, padding, c, o):
        return winograd_conv2d(x, winograd_memo(w), b, padding)
    if _is_pointwise(kh, stride, padding):
        return pointwise_conv2d(x, w.reshape(o, c), b)
    oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    w_mat = w.reshape(o, -1)
    y = np.empty((n, o, oh, ow), dtype=x.dtype)
    b = np.ascontiguousarray(b, x.dtype)
    if oh * ow >= WIDE_PLANE:
        rows = _band_rows(w_mat.shape[1], ow, x.dtype.itemsize, oh)
        with serial_blas():
            _conv_bands(np.ascontiguousarray(x), np.ascontiguousarray(w_mat, x.dtype), b, kh,
                        stride, padding, rows, y)
        return y
    for start, stop in _chunks(n, c * kh * kw * oh * ow, oh * ow):
        cols = _unroll(x[start:stop], kh, stride, padding, oh, ow)
        if stop - start == 1:  # write straight into the output: no copy for large images
            gemm(w_mat, cols, y[start].reshape(o, oh * ow), bias=b)
        else:
            _batch_first_copy(gemm(w_mat, cols), b, y[start:stop].reshape(stop - start, o, -1))
    return y


#: Bytes of the unrolled columns of one band of output rows (:func:`_conv_bands`), about half
#: a core's L2 cache here. SqueezeNet's conv1 at batch 8 (8-row bands): forward 15.6 -> 9.4 ms,
#: input signal 17.7 -> 10.3 (the whole image at once before); 128 KB bands 10.4 ms,
#: 1-2 MB 9.3.
BAND_BYTES = 1 << 19


@njit(parallel=True, cache=True)
def _conv_bands(x, w_mat, bias, k, stride, padding, rows, y):
    # y[n, :, r0:r1] = w_mat @ unroll(x[n], output rows r0:r1) + bias: a task per image and
    # band of `rows` output rows, unrolled into columns of its own that stay in cache for the
    # product (BLAS, single-threaded) written straight after it.
    n, c_in, h, w = x.shape
    o, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    bands = -(-oh // rows)
    flat, out = x.reshape(n, c_in, h * w), y.reshape(n, o, oh * ow)
    for task in prange(n * bands):
        image, first = task // bands, (task % bands) * rows
        last = min(oh, first + rows)
        width = (last - first) * ow
        cols = np.empty((c_in * k * k, width), x.dtype)
        for c in range(c_in):
            _unroll_rows(flat[image, c], c, k, k, stride, padding, w, first, last, ow, cols, 0)
        product = np.empty((o, width), x.dtype)
        matmul_into(w_mat, cols, product)
        for oc in range(o):
            dst, src, shift = out[image, oc], product[oc], bias[oc]
            for t in range(width):
                dst[uint64(first * ow + t)] = src[uint64(t)] + shift


@njit(parallel=True, cache=True)
def _conv_bands_backward(dy, w_mat_t, k, stride, padding, rows, parity, dx):
    # dx[n] += col2im(w_mat_t @ dy[n, :, r0:r1]) for the bands of output rows r0:r1 whose
    # index has the given parity: a task per image and band, as in _conv_bands. Bands of one
    # parity read disjoint rows of dx (rows >= (k - s) / s), so their tasks never add into the
    # same pixel; the caller runs the even bands, then the odd ones.
    n, c_in, h, w = dx.shape
    o, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    bands = -(-oh // rows)
    half = (bands - parity + 1) // 2
    signal_flat, dx_flat = dy.reshape(n, o, oh * ow), dx.reshape(n, c_in, h * w)
    for task in prange(n * half):
        image, first = task // half, (2 * (task % half) + parity) * rows
        last = min(oh, first + rows)
        width = (last - first) * ow
        signal = np.empty((o, width), dy.dtype)
        for oc in range(o):
            src, dst = signal_flat[image, oc], signal[oc]
            for t in range(width):
                dst[uint64(t)] = src[uint64(first * ow + t)]
        cols = np.empty((c_in * k * k, width), dy.dtype)
        matmul_into(w_mat_t, signal, cols)
        for c in range(c_in):
            _fold_rows(cols, c, k, k, stride, padding, w, first, last, ow, dx_flat[image, c], 0)


def _band_rows(columns, ow, itemsize, oh):
    """Output rows per band of :func:`_conv_bands`: unrolled columns of about
    :data:`BAND_BYTES`."""
    return max(1, min(oh, BAND_BYTES // (itemsize * columns * ow)))


def conv2d_backward_input(dy, w, input_shape, stride, padding):
    """Fast input signal; same contract as :func:`nets.reference.conv2d_backward_input` (float32
    or float64): ``dx_pad[n, c, s*oh + i, s*ow + j] += w[o, c, i, j] * dy[n, o, oh, ow]``.
    """
    n, c, h, wd = input_shape
    o, _, kh, kw = w.shape
    if uses_winograd(kh, stride, padding, c, o, transposed=True):
        # The transposed convolution of a 3x3 stride-1 one is a 3x3 stride-1 correlation of the
        # signal with the flipped kernels, input and output channels swapped, padding 2 - p.
        return winograd_conv2d(dy, winograd_memo(w), np.zeros(c, dy.dtype), 2 - padding,
                               transposed=True)
    if _is_pointwise(kh, stride, padding):   # dx[n] = W^T dy[n], image by image
        return pointwise_conv2d(dy, w.reshape(o, c), None, transposed=True)
    oh, ow = dy.shape[2:]
    w_mat_t = np.ascontiguousarray(w.reshape(o, -1).T)  # small; gemm splits its rows
    dx = np.zeros((n, c, h, wd), dtype=dy.dtype)   # col2im adds every tap's share
    if oh * ow >= WIDE_PLANE:   # by bands; (k - s) / s rows at least, for the parity split
        rows = max(_band_rows(c * kh * kw, ow, dy.itemsize, oh), -(-(kh - stride) // stride))
        with serial_blas():
            for parity in (0, 1):
                _conv_bands_backward(np.ascontiguousarray(dy), w_mat_t.astype(dy.dtype), kh,
                                     stride, padding, rows, parity, dx)
        return dx
    for start, stop in _chunks(n, c * kh * kw * oh * ow, oh * ow):
        cols = gemm(w_mat_t, _channels_first(dy[start:stop]))
        _col2im(cols, kh, kw, stride, padding, oh, ow, dx[start:stop])
    return dx


#: Bytes of the block of output rows one task of a 1x1 convolution writes: small enough to
#: stay in cache between its GEMM and the bias added after it, large enough that the GEMMs
#: are few: each packs the whole image ``x[n]`` again. 512 KB was 8 rows at MobileNetV2's
#: 112 x 112 planes (12 packings of the input for one 96-row expansion); 2 MB, 40 rows there,
#: made its 1x1 convolutions 4-14% faster at batch 1 and 8 on one and two threads
#: (alternating runs on the loaded 2-core machine) and left SqueezeNet 1.0's gradient as it was.
POINTWISE_BLOCK_BYTES = 1 << 21


def pointwise_conv2d(x, w_mat, b, transposed=False):
    """A 1x1 stride-1 convolution, ``y[n, o, p] = b[o] + sum_c w[o, c] x[n, c, p]``, image by
    image and block of output channels by block, each GEMM writing straight into the output.

    The general path (:func:`conv2d_forward`) gathers a chunk of images into one (C, B*H*W)
    matrix, and its threads each multiply a block of COLUMNS, which is not contiguous in the
    output: BLAS then writes a temporary that is copied over, the bias is added in a further
    pass and the (O, B*H*W) product is scattered back to (B, O, H, W). For a 1x1 convolution
    every image is already the (C, H*W) matrix the GEMM reads, and a block of ROWS of the
    output, ``y[n, o0:o1]``, is contiguous: each task of Numba's threads multiplies
    ``w[o0:o1] @ x[n]`` into it (BLAS, single-threaded) and adds the bias while the block is
    still in cache (:data:`POINTWISE_BLOCK_BYTES`). MobileNetV2's expansions and projections
    (forward, and their input signals with ``W^T``) are all 1x1: 2-3x faster at batch 8.

    Parameters
    ----------
    x : (N, C, H, W) array
    w_mat : (O, C) array, or (C, O) if ``transposed``
        The kernels as a matrix.
    b : (O,) array, or None for no bias
    transposed : bool
        Multiply by ``w_mat.T`` (the input signal of a 1x1 convolution, ``W^T dy[n]``): BLAS
        reads the transpose in place on the calling thread; the threaded row blocks need it
        copied (copying every layer's ``W^T`` was ~2 ms of a MobileNetV2 backward pass).

    Returns
    -------
    y : (N, O, H, W) array of ``x``'s dtype
    """
    n, c, h, wd = x.shape
    o, size = w_mat.shape[1 if transposed else 0], h * wd
    # output rows per task: a block within the budget, a multiple of 8 (the GEMM kernels'
    # tile), and small enough that every thread gets a couple of tasks
    rows = max(8, POINTWISE_BLOCK_BYTES // (x.dtype.itemsize * size) // 8 * 8)
    tasks_wanted = -(-2 * numba.get_num_threads() // n)
    rows = max(1, min(rows, o, -(-o // tasks_wanted)))
    # Small products run on the calling thread, one GEMM per image (PARALLEL_POINTWISE_MACS),
    # and so do those whose row blocks would be thinner than two 8-row tiles: every task
    # packs the whole image again (MobileNetV2's 16 <- 96 input signal at 112 x 112, batch 1:
    # 4-row blocks 1120 us, one GEMM 553 us).
    kernel = threads_for(_pointwise, n * o * c * size if rows >= min(o, 16) else 0,
                         PARALLEL_POINTWISE_MACS)
    w_mat = np.ascontiguousarray(w_mat, x.dtype)
    if kernel is _pointwise.serial:
        rows = o
    elif transposed:   # row blocks of W^T: of a contiguous copy
        w_mat, transposed = np.ascontiguousarray(w_mat.T), False
    y = np.empty((n, o, h, wd), x.dtype)
    bias = np.ascontiguousarray(np.zeros(o) if b is None else b, x.dtype)
    with serial_blas():
        kernel(w_mat, np.ascontiguousarray(x).reshape(n, c, size), bias, b is not None, rows,
               transposed, y.reshape(n, o, size))
    return y


@serial_twin
@njit(parallel=True, cache=True)
def _pointwise(w, x, bias, add_bias, rows, transposed, y):
    # y[n, o0:o1] = w[o0:o1] @ x[n] (+ bias): a task owns one image's block of output rows,
    # contiguous in y, so BLAS writes it in place and no two threads write the same element.
    # `transposed`: y[n] = w.T @ x[n], whole images only (rows == O).
    n, o = y.shape[0], y.shape[1]
    blocks = -(-o // rows)
    for task in prange(n * blocks):
        image, first = task // blocks, (task % blocks) * rows
        last = min(o, first + rows)
        out = y[image, first:last]
        if transposed:
            matmul_into(w.T, x[image], out)
        else:
            matmul_into(w[first:last], x[image], out)
        if add_bias:
            for r in range(last - first):
                out[r] += bias[first + r]


# ---------------------------------------------------------------------------------------------
# Convolution: Winograd F(2x2, 3x3) for 3x3 stride-1 kernels
# ---------------------------------------------------------------------------------------------
# A 2x2 tile of a 3x3 correlation, read from the 4x4 input tile d under it, is
#     Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, all matrices below)
# with g the 3x3 kernel and
#     B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
#     G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
#     A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
# Summed over input channels, the elementwise product at each of the 16 positions k of the
# 4x4 transformed tile is a matrix product over channels:
#     M[k] = U[k] @ V[k],   U[k] = (G g G^T)[k] as (O, C),   V[k] = (B^T d B)[k] as (C, tiles),
# 16 GEMMs with 16/36 of the multiplications of the direct form. The transforms only add and
# halve, so float32 stays within a few ulps of the direct sum (the tests hold it to the naive
# kernel at the same tolerance as im2col).

#: Numba kernels below index the 16 transformed positions as ``k = 4 * row + column``.
WINOGRAD_POSITIONS = 16


def uses_winograd(kernel_size, stride, padding, in_channels, out_channels, transposed=False):
    """Whether a convolution's forward pass (or, ``transposed``, its input signal) uses Winograd.

    Possible for 3x3 kernels at stride 1 with padding <= 2 (so that the transpose has padding
    >= 0); chosen where it beat im2col + GEMM (BLAS GEMMs both, 2 threads, OpenBLAS unpinned). The
    transforms cost in proportion to the channels they read and write, the GEMM saving in
    proportion to their product, so thin layers stay with im2col:

    - forward: at least 48 input and 8 output channels (SqueezeNet's expand3x3 after a
      32-channel squeeze at batch 8: Winograd 6.2 / 1.8 ms at 55 x 55 / 27 x 27, im2col by
      bands of rows 5.3 / 1.3 ms; after 48 channels, 2.8 against 2.7 ms at batch 8 and 0.36
      against 0.56 at batch 1; VGG16's layers, 64 channels and more, 1.5-3x faster with
      Winograd);
    - input signal: at least 8 channels on both sides and at most twice as many output as
      input channels, because its input transform reads the output's channels (SqueezeNet's
      4x expanding expand3x3 at batch 8: im2col 1.4-8.8 ms, Winograd 2.2-11.5 ms; VGG's
      doubling layers 54 vs 61 ms at batch 8).
    """
    if not (kernel_size == 3 and stride == 1 and padding <= 2):
        return False
    if transposed:
        return min(in_channels, out_channels) >= 8 and out_channels <= 2 * in_channels
    return in_channels >= 48 and out_channels >= 8


# The 1-D transforms; the 2-D ones apply them to the columns, then to the rows of a tile.

@njit(inline="always")
def _g(g0, g1, g2, half):
    """``G @ (g0, g1, g2)``: kernel taps -> 4 transformed taps."""
    return g0, half * (g0 + g1 + g2), half * (g0 - g1 + g2), g2


@njit(inline="always")
def _bt(d0, d1, d2, d3):
    """``B^T @ (d0, d1, d2, d3)``: input pixels -> 4 transformed values."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _at(m0, m1, m2, m3):
    """``A^T @ (m0, m1, m2, m3)``: 4 products -> 2 output pixels."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(parallel=True, cache=True)
def _winograd_kernel_transform(w, half, u):
    # u[4i + j, o, c] = (G w[o, c] G^T)[i, j]; a thread owns whole output channels o.
    for o in prange(w.shape[0]):
        for c in range(w.shape[1]):
            # (indexing w directly: a view per (o, c) would cost reference counting)
            c0 = _g(w[o, c, 0, 0], w[o, c, 1, 0], w[o, c, 2, 0], half)  # columns of G g
            c1 = _g(w[o, c, 0, 1], w[o, c, 1, 1], w[o, c, 2, 1], half)
            c2 = _g(w[o, c, 0, 2], w[o, c, 1, 2], w[o, c, 2, 2], half)
            # rows of (G g) G^T
            u[0, o, c], u[1, o, c], u[2, o, c], u[3, o, c] = _g(c0[0], c1[0], c2[0], half)
            u[4, o, c], u[5, o, c], u[6, o, c], u[7, o, c] = _g(c0[1], c1[1], c2[1], half)
            u[8, o, c], u[9, o, c], u[10, o, c], u[11, o, c] = _g(c0[2], c1[2], c2[2], half)
            u[12, o, c], u[13, o, c], u[14, o, c], u[15, o, c] = _g(c0[3], c1[3], c2[3], half)


@njit(parallel=True, cache=True)
def _winograd_input_transform(xp, th, tw, v):
    # xp is zero-padded so that every 4x4 tile (rows 2ty.., columns 2tx..) lies inside it;
    # v[4i + j, c, t] = (B^T d B)[i, j] with t = (n * th + ty) * tw + tx. A thread owns channels c.
    for c in prange(xp.shape[1]):
        for n in range(xp.shape[0]):
            for ty in range(th):
                r = 2 * ty
                for tx in range(tw):
                    q = 2 * tx
                    t = (n * th + ty) * tw + tx
                    # columns of B^T d (indexing xp directly: row views would cost reference
                    # counting in the inner loop)
                    c0 = _bt(xp[n, c, r, q], xp[n, c, r + 1, q], xp[n, c, r + 2, q], xp[n, c, r + 3, q])
                    c1 = _bt(xp[n, c, r, q + 1], xp[n, c, r + 1, q + 1], xp[n, c, r + 2, q + 1],
                             xp[n, c, r + 3, q + 1])
                    c2 = _bt(xp[n, c, r, q + 2], xp[n, c, r + 1, q + 2], xp[n, c, r + 2, q + 2],
                             xp[n, c, r + 3, q + 2])
                    c3 = _bt(xp[n, c, r, q + 3], xp[n, c, r + 1, q + 3], xp[n, c, r + 2, q + 3],
                             xp[n, c, r + 3, q + 3])
                    # rows of (B^T d) B
                    v[0, c, t], v[1, c, t], v[2, c, t], v[3, c, t] = _bt(c0[0], c1[0], c2[0], c3[0])
                    v[4, c, t], v[5, c, t], v[6, c, t], v[7, c, t] = _bt(c0[1], c1[1], c2[1], c3[1])
                    v[8, c, t], v[9, c, t], v[10, c, t], v[11, c, t] = _bt(c0[2], c1[2], c2[2], c3[2])
                    v[12, c, t], v[13, c, t], v[14, c, t], v[15, c, t] = _bt(c0[3], c1[3], c2[3], c3[3])


@njit(parallel=True, cache=True)
def _winograd_output_transform(m, bias, th, tw, y):
    # y[n, o, 2ty + i, 2tx + j] = (A^T m A)[i, j] + bias[o], clipped at odd output sizes.
    # A thread owns output channels o.
    oh, ow = y.shape[2], y.shape[3]
    for o in prange(y.shape[1]):
        for n in range(y.shape[0]):
            for ty in range(th):
                for tx in range(tw):
                    t = (n * th + ty) * tw + tx
                    c0 = _at(m[0, o, t], m[4, o, t], m[8, o, t], m[12, o, t])  # columns of A^T m
                    c1 = _at(m[1, o, t], m[5, o, t], m[9, o, t], m[13, o, t])
                    c2 = _at(m[2, o, t], m[6, o, t], m[10, o, t], m[14, o, t])
                    c3 = _at(m[3, o, t], m[7, o, t], m[11, o, t], m[15, o, t])
                    # rows of (A^T m) A, clipped to the output
                    top_left, top_right = _at(c0[0], c1[0], c2[0], c3[0])
                    bottom_left, bottom_right = _at(c0[1], c1[1], c2[1], c3[1])
                    r, q = 2 * ty, 2 * tx
                    y[n, o, r, q] = top_left + bias[o]
                    if q + 1 < ow:
                        y[n, o, r, q + 1] = top_right + bias[o]
                    if r + 1 < oh:
                        y[n, o, r + 1, q] = bottom_left + bias[o]
                        if q + 1 < ow:
                            y[n, o, r + 1, q + 1] = bottom_right + bias[o]


_winograd_memos = {}


def winograd_memo(w):
    """:func:`winograd_weights` of ``w``, kept between passes for as long as ``w`` lives.

    Transforming VGG16's kernels takes 20 ms, so the transform is kept per weight array (by
    identity; dropped when the array is freed). Weights change in place (optimizers, loading,
    the sanity checks' randomization), so the memo also holds a copy of the weights it was made
    from and compares them on every call (:func:`same_values`, in parallel).
    """
    key = id(w)
    memo = _winograd_memos.get(key)
    if memo is None or memo[0]() is not w or not same_values(memo[1], w):  # values, shape, dtype
        def forget(_, key=key):
            _winograd_memos.pop(key, None)
        memo = (weakref.ref(w, forget), w.copy(), winograd_weights(w))
        _winograd_memos[key] = memo
    return memo[2]


def same_values(a, b):
    """``np.array_equal(a, b)`` for two arrays of one shape and dtype, in parallel and with no
    temporary (a layer compares its weights with the copy its Winograd kernels were made from
    on every pass: 2 x 58 MB for VGG16, 7.6 ms per gradient with ``np.array_equal``)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return _count_differences(_flat(a, a.dtype), _flat(b, b.dtype)) == 0


@njit(parallel=True, cache=True)
def _count_differences(a, b):
    count = 0
    for k in prange(a.size):
        if a[k] != b[k]:  # NaN != NaN, as in np.array_equal
            count += 1
    return count


def winograd_weights(w):
    """Transformed kernels ``U[k] = (G w[o, c] G^T)[k]`` for :func:`winograd_conv2d`.

    Parameters
    ----------
    w : (O, C, 3, 3) array

    Returns
    -------
    u : (16, O, C) array of ``w``'s dtype
    """
    u = np.empty((WINOGRAD_POSITIONS,) + w.shape[:2], w.dtype)
    _winograd_kernel_transform(np.ascontiguousarray(w), w.dtype.type(0.5), u)
    return u


#: Flipping a 3x3 kernel swaps rows 0 and 3 of ``G g`` (and leaves 1 and 2): the transformed
#: position (i, j) of the flipped kernel is position (_FLIP[i], _FLIP[j]) of the original.
_FLIP = (3, 1, 2, 0)
#: Position k of the flipped kernel's transform is position ``FLIPPED_POSITIONS[k]`` of the
#: original's.
FLIPPED_POSITIONS = np.array([4 * _FLIP[i] + _FLIP[j] for i in range(4) for j in range(4)])


def winograd_products(u, v, transposed=False):
    """The 16 GEMMs ``M[k] = U[k] @ V[k]`` (or ``U^T`` of the flipped kernel, for the transpose).

    Parameters
    ----------
    u : (16, O, C) array
        From :func:`winograd_weights`.
    v : (16, C, T) array, or (16, O, T) if ``transposed``
        Transformed input tiles.
    transposed : bool
        Multiply by the transformed kernels of the transposed convolution instead: flipped,
        channels swapped, i.e. ``U[FLIPPED_POSITIONS[k]].T`` (no copy is made).

    Returns
    -------
    m : (16, O, T) array, or (16, C, T) if ``transposed``, a per-thread scratch buffer
    """
    rows = u.shape[2] if transposed else u.shape[1]
    m = _scratch("winograd_products", (WINOGRAD_POSITIONS, rows, v.shape[2]), v.dtype)
    with serial_blas():
        _winograd_products(u, v, FLIPPED_POSITIONS, transposed, m)
    return m


@njit(parallel=True, cache=True)
def _winograd_products(u, v, flipped, transposed, m):
    # A thread owns whole positions k: 8 GEMMs each on 2 threads, BLAS single-threaded inside.
    for k in prange(m.shape[0]):
        if transposed:
            matmul_into(u[flipped[k]].T, v[k], m[k])
        else:
            matmul_into(u[k], v[k], m[k])


def winograd_conv2d(x, u, b, padding, transposed=False):
    """3x3 stride-1 correlation by Winograd's F(2x2, 3x3), chunks of images at a time.

    ``y[n, o] = b[o] + sum_c w[o, c] (*) x[n, c]`` computed as ``Y = A^T [U[k] @ V[k]]_k A``
    tile by tile (see the comment above :data:`WINOGRAD_POSITIONS`).

    Parameters
    ----------
    x : (N, C, H, W) array
    u : (16, O, C) array
        From :func:`winograd_weights`.
    b : (O,) array, or (C,) if ``transposed``
    padding : int
        Zero padding on every side.
    transposed : bool
        Correlate with the flipped kernels, channels swapped (:func:`winograd_products`): with
        padding ``2 - p`` this is the transpose of the convolution with padding ``p``, and
        ``x`` is then the (N, O, H, W) signal at its output.

    Returns
    -------
    y : (N, O, H + 2p - 2, W + 2p - 2) array, or (N, C, ...) if ``transposed``
    """
    n, c, h, wd = x.shape
    o = u.shape[2] if transposed else u.shape[1]
    oh, ow = h + 2 * padding - 2, wd + 2 * padding - 2
    th, tw = -(-oh // 2), -(-ow // 2)
    y = np.empty((n, o, oh, ow), x.dtype)
    b = np.ascontiguousarray(b, x.dtype)
    for start, stop in _chunks(n, WINOGRAD_POSITIONS * max(c, o) * th * tw):
        count = stop - start
        # Zero-pad once, to whole tiles: every 4x4 read is then inside the array.
        xp = _scratch("winograd_input", (count, c, 2 * th + 2, 2 * tw + 2), x.dtype)
        rows, cols = min(h, 2 * th + 2 - padding), min(wd, 2 * tw + 2 - padding)
        xp[:, :, :padding] = 0
        xp[:, :, padding + rows:] = 0
        xp[:, :, :, :padding] = 0
        xp[:, :, :, padding + cols:] = 0
        xp[:, :, padding:padding + rows, padding:padding + cols] = x[start:stop, :, :rows, :cols]
        v = _scratch("winograd_tiles", (WINOGRAD_POSITIONS, c, count * th * tw), x.dtype)
        _winograd_input_transform(xp, th, tw, v)
        m = winograd_products(u, v, transposed)
        _winograd_output_transform(m, b, th, tw, y[start:stop])
    return y


def conv2d_backward_weight(dy, x, kernel_size, stride, padding):
    """Fast parameter gradients; same contract as :func:`nets.reference.conv2d_backward_weight`.

    The weight gradient is the forward's GEMM read the other way: ``dw = dY @ cols^T`` with
    ``dY`` the signal as (O, B*OH*OW) and ``cols`` the forward's unrolled input, summed over
    chunks of images.
    """
    n, c, h, wd = x.shape
    o = dy.shape[1]
    oh, ow = dy.shape[2:]
    dw = np.zeros((o, c * kernel_size * kernel_size), dy.dtype)
    for start, stop in _chunks(n, c * kernel_size * kernel_size * oh * ow):
        cols = _unroll(x[start:stop], kernel_size, stride, padding, oh, ow)
        dw += _channels_first(dy[start:stop]) @ cols.T
    return dw.reshape(o, c, kernel_size, kernel_size), dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------------------------------------
# ReLU, forward and backward multipliers: one parallel pass instead of NumPy's one-thread ufuncs,
# masks, products and temporaries
# ---------------------------------------------------------------------------------------------

@serial_twin
@njit(parallel=True, cache=True)
def _relu(e, zero, o):
    # `not e <= 0` keeps NaN (as np.maximum does) instead of hiding it as 0.
    for k in prange(e.size):
        o[k] = e[k] if not e[k] <= zero else zero


def relu(eta):
    """``max(eta, 0)`` elementwise (NaN stays NaN), in parallel: NumPy's ufunc is one thread.

    Parameters
    ----------
    eta : array of any shape, float32 or float64

    Returns
    -------
    array of ``eta``'s shape and dtype
    """
    out = np.empty(eta.shape, eta.dtype)
    threads_for(_relu, eta.size, PARALLEL_ELEMENTS)(_flat(eta, eta.dtype), eta.dtype.type(0),
                                                   out.reshape(-1))
    return out


@serial_twin
@njit(parallel=True, cache=True)
def _relu_gate(s, e, guided, o):
    # Flat (1-D) arrays; each index is written once, so threads never collide.
    for k in prange(s.size):
        o[k] = s[k] if e[k] > 0 and (s[k] > 0 or not guided) else 0.0


def _flat(a, dtype):
    return np.ascontiguousarray(a, dtype).reshape(-1)


def relu_gate(signal, eta, guided=False):
    """``signal * 1[eta > 0]`` (the gradient), times ``1[signal > 0]`` too if ``guided``.

    Parameters
    ----------
    signal, eta : arrays of one shape (any), float32 or float64

    Returns
    -------
    array of that shape and ``signal``'s dtype
    """
    out = np.empty(signal.shape, signal.dtype)
    threads_for(_relu_gate, signal.size, PARALLEL_ELEMENTS)(
        _flat(signal, signal.dtype), _flat(eta, signal.dtype), guided, out.reshape(-1))
    return out


@serial_twin
@njit(parallel=True, cache=True)
def _relu_secant(s, e, r, eps, zero, o):
    # Flat arrays. `zero` has the arrays' dtype, so float32 stays float32 (a literal 0.0
    # would promote the arithmetic to float64).
    for k in prange(s.size):
        delta_in = e[k] - r[k]
        if abs(delta_in) >= eps:
            relu_e = e[k] if e[k] > zero else zero
            relu_r = r[k] if r[k] > zero else zero
            o[k] = s[k] * (relu_e - relu_r) / delta_in
        else:
            o[k] = s[k] if e[k] > zero else zero


def relu_secant(signal, eta, eta_ref, eps):
    """DeepLIFT's rescale multiplier applied to ``signal``, in one pass.

    ``signal * (relu(eta) - relu(eta_ref)) / (eta - eta_ref)`` where ``|eta - eta_ref| >= eps``,
    else ``signal * 1[eta > 0]``. Arrays of one shape; returns that shape and ``signal``'s dtype.
    """
    dtype = signal.dtype
    out = np.empty(signal.shape, dtype)
    threads_for(_relu_secant, signal.size, PARALLEL_ELEMENTS)(
        _flat(signal, dtype), _flat(eta, dtype), _flat(eta_ref, dtype), dtype.type(eps),
        dtype.type(0), out.reshape(-1))
    return out


def relu_backward(signal, eta):
    """The gradient through a ReLU, ``1[eta > 0] * s``, in one pass; same contract as
    :func:`nets.reference.relu_backward`."""
    return relu_gate(signal, eta)


def _guided(rule, signal, eta, eta_ref):
    return relu_gate(signal, eta, guided=True)


def _deconvnet(rule, signal, eta, eta_ref):
    return relu(signal)   # 1[s > 0] * s = max(s, 0)


def _rescale(rule, signal, eta, eta_ref):
    if eta_ref is None:
        return rule.relu(signal, eta, eta_ref)   # the rule's own message
    return relu_secant(signal, eta, eta_ref, rule.eps)


#: The fused kernel of each kind of ReLU step a rule may declare (``relu.fused`` in
#: :mod:`saliency.rules`): the one-pass twin of the rule's NumPy expression.
FUSED_RELU_RULES = {"gradient": lambda rule, signal, eta, eta_ref: relu_gate(signal, eta),
                    "guided": _guided, "deconvnet": _deconvnet, "rescale": _rescale}


def relu_rule(rule, signal, eta, eta_ref):
    """``rule.relu(signal, eta, eta_ref)``, by a fused kernel where this backend has one.

    A rule whose ``relu`` method carries ``fused = kind`` with a kind of
    :data:`FUSED_RELU_RULES` runs that kernel (same values as the method, one parallel pass
    instead of NumPy's masks and temporaries); any other rule, including a subclass that
    overrides ``relu`` (its new method has no mark) and a student's own rule, runs its method.
    Same contract as :func:`nets.reference.relu_rule`.
    """
    fused = FUSED_RELU_RULES.get(getattr(rule.relu, "fused", None))
    if fused is None:
        return rule.relu(signal, eta, eta_ref)
    return fused(rule, signal, eta, eta_ref)


# ---------------------------------------------------------------------------------------------
# Fully connected layers: threaded GEMMs
# ---------------------------------------------------------------------------------------------

def linear_forward(x, w, b):
    """``y = x W^T + b``; same contract as :func:`nets.reference.linear_forward`."""
    # As y^T = W x^T + b: the rows of W (thousands) split well among threads, those of x not.
    return np.ascontiguousarray(gemm(w, x.T, bias=b).T)


def linear_backward_input(dy, w):
    """``dx = dy @ W`` with the shared dimension split among threads (:func:`gemm_split_inner`:
    bound by reading W once); same contract as :func:`nets.reference.linear_backward_input`."""
    return gemm_split_inner(dy, w)
