"""Single-precision matrix product in Numba: packed panels and a register-blocked FMA kernel.

``out = a @ b`` the way BLAS libraries compute it (Goto & van de Geijn, 2008; the BLIS
framework), small enough to read in one sitting:

1. The shared dimension K is cut into blocks of :data:`DEPTH` and the columns of ``b`` into
   blocks of :data:`WIDTH`, so that a block of ``b`` stays in the core's L2 cache while every
   row of ``a`` passes over it.
2. Both operands are *packed*: ``a[i0:i0+MR, k-block]`` is copied to a ``(depth, MR)`` panel
   and ``b[k-block, j0:j0+NR]`` to a ``(depth, NR)`` panel, each contiguous and zero-padded at
   the edges, so the kernel reads both with unit stride whatever the operands' strides
   (a transposed view costs nothing extra).
3. The kernel, :func:`fma_tile`, keeps an ``MR x NR`` tile of ``out`` in vector registers for
   the whole depth: per step k it loads the NR values ``b[k, j0:j0+NR]`` as three vectors,
   broadcasts each of the MR values ``a[i, k]`` and adds ``a[i, k] * b[k, :]`` with fused
   multiply-adds: ``3 MR`` FMAs per ``3 + MR`` loads.

Why it is not what the kernels call: it was written against an OpenBLAS pinned to an older
CPU family (``OPENBLAS_CORETYPE=Haswell``, 8-lane AVX2, on a CPU with 16-lane AVX-512 units),
where it ran 1.15-1.5x faster. Users' machines do not pin OpenBLAS, and the unpinned build picks
its AVX-512 (SkylakeX) kernels: there it beats this kernel on every product VGG16 and
SqueezeNet run (``ours/BLAS`` 0.4-0.95 in ``benchmarks/gemm.py``, run with OPENBLAS_* unset).
So :func:`matmul_into` calls BLAS; :func:`packed_matmul` stays as the readable account of how
a BLAS GEMM works and as the benchmark's contender, tested but not on the library's path.

Single-threaded by design: callers (:mod:`nets._numba.kernels`) split their work among Numba's threads
and call :func:`matmul_into` from each. Float32 only; other dtypes, and products too thin to
fill a tile, go to ``np.dot``.
"""
import numpy as np
from llvmlite import binding as llvm, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Float32 lanes of the widest vector the host's FMA units take (AVX-512: 16, AVX2: 8).
LANES = 16 if llvm.get_host_cpu_features().get("avx512f", False) else 8
#: Columns of a tile: three vectors.
NR = 3 * LANES
#: Rows of a tile. ``3 MR`` accumulators + 3 vectors of ``b`` + 1 broadcast must fit the
#: register file (32 vector registers with AVX-512, 16 with AVX2); 8 divides the channel
#: counts of the usual networks.
MR = 8 if LANES == 16 else 4
#: Depth of a packed block: a ``(DEPTH, NR)`` panel of ``b`` (48 KB with AVX-512) and a
#: ``(DEPTH, MR)`` panel of ``a`` (8 KB) are about an L1 cache.
DEPTH = 256
#: Columns of ``b`` packed at a time: a ``(DEPTH, WIDTH)`` block (480 KB) stays in L2.
WIDTH = 512 // NR * NR


@intrinsic
def fma_tile(typingctx, a_panel, b_panel, c, ldc, depth, accumulate):
    """``c[i, j] (+)= sum_{k < depth} a_panel[k, i] * b_panel[k, j]`` for ``i < MR, j < NR``.

    Parameters
    ----------
    a_panel : (>= depth, MR) C-contiguous float32 array
    b_panel : (>= depth, NR) C-contiguous float32 array
    c : 2-D float32 array whose first element is the tile's corner and whose rows are ``ldc``
        elements apart, with unit stride along a row (a slice ``out[i0:, j0:]``)
    ldc : int
    depth : int
    accumulate : bool
        Add to what ``c`` holds (``+=``) or overwrite it (``=``, ``c`` is not read).
    """
    arrays = (a_panel, b_panel, c)
    if not all(isinstance(t, types.Array) and t.ndim == 2 and t.dtype == types.float32
               for t in arrays) or a_panel.layout != "C" or b_panel.layout != "C":
        return None  # a typing error: the kernel reads raw float32 memory
    f32 = ir.FloatType()
    vec = ir.VectorType(f32, LANES)
    vectors = NR // LANES

    def codegen(context, builder, signature, args):
        a_arg, b_arg, c_arg, ldc_v, depth_v, accumulate = args
        a_ty, b_ty, c_ty = signature.args[:3]

        def data(ty, value):
            return builder.bitcast(context.make_array(ty)(context, builder, value).data,
                                   f32.as_pointer())

        a_ptr, b_ptr, c_ptr = data(a_ty, a_arg), data(b_ty, b_arg), data(c_ty, c_arg)
        index = depth_v.type
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.v{LANES}f32")

        def vector_at(pointer, offset):
            return builder.bitcast(builder.gep(pointer, [offset]), vec.as_pointer())

        def constant(value):
            return ir.Constant(index, value)

        def c_offset(i, h):
            return builder.add(builder.mul(constant(i), ldc_v), constant(h * LANES))

        # The accumulators live in registers (LLVM promotes these stack slots).
        acc = [[cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * LANES))
                for h in range(vectors)] for i in range(MR)]
        with builder.if_then(accumulate):
            for i in range(MR):
                for h in range(vectors):
                    row = builder.load(vector_at(c_ptr, c_offset(i, h)), align=4)
                    builder.store(row, acc[i][h])
        with cgutils.for_range(builder, depth_v) as loop:
            k = loop.index
            b_row = builder.mul(k, constant(NR))
            b_k = [builder.load(vector_at(b_ptr, builder.add(b_row, constant(h * LANES))), align=4)
                   for h in range(vectors)]
            a_row = builder.mul(k, constant(MR))
            for i in range(MR):
                a_ik = builder.load(builder.gep(a_ptr, [builder.add(a_row, constant(i))]))
                lane0 = builder.insert_element(ir.Constant(vec, None), a_ik,
                                               ir.Constant(ir.IntType(32), 0))
                broadcast = builder.shuffle_vector(  # a zero mask: a_ik in every lane
                    lane0, lane0, ir.Constant(ir.VectorType(ir.IntType(32), LANES), None))
                for h in range(vectors):
                    total = builder.call(fma, [broadcast, b_k[h], builder.load(acc[i][h])])
                    builder.store(total, acc[i][h])
        for i in range(MR):
            for h in range(vectors):
                builder.store(builder.load(acc[i][h]), vector_at(c_ptr, c_offset(i, h)), align=4)
        return context.get_dummy_value()

    return types.void(a_panel, b_panel, c, ldc, depth, accumulate), codegen


@njit(cache=True)
def pack_rows(a, i0, k0, depth, panel):
    """``panel[k, i] = a[i0 + i, k0 + k]`` for ``k < depth, i < MR``; rows past ``a`` are zero."""
    rows = min(MR, a.shape[0] - i0)
    for k in range(depth):
        for i in range(rows):
            panel[k, i] = a[i0 + i, k0 + k]
        for i in range(rows, MR):
            panel[k, i] = 0.0


@njit(cache=True)
def pack_columns(b, k0, n0, depth, panels):
    """``panels[q, k, j] = b[k0 + k, n0 + q NR + j]`` for ``k < depth`` and the panels that
    cover ``b``'s columns from ``n0`` on (at most ``panels.shape[0]``); columns past ``b`` are
    zero. Reads ``b`` row by row, so a C-ordered ``b`` streams through the cache once."""
    cols = min(panels.shape[0] * NR, b.shape[1] - n0)
    for k in range(depth):
        for c in range(cols):
            panels[c // NR, k, c % NR] = b[k0 + k, n0 + c]
        for c in range(cols, -(-cols // NR) * NR):
            panels[c // NR, k, c % NR] = 0.0


@njit(cache=True)
def packed_matmul(a, b, out):
    """``out[...] = a @ b`` for float32 ``a`` (M, K), ``b`` (K, N), ``out`` (M, N), any
    strides except that ``out``'s rows must have unit stride (see the module docstring)."""
    m, inner = a.shape
    n = b.shape[1]
    ldc = out.strides[0] // out.itemsize
    row_panels = -(-m // MR)
    a_packed = np.empty((row_panels, DEPTH, MR), np.float32)
    b_packed = np.empty((WIDTH // NR, DEPTH, NR), np.float32)
    edge = np.empty((MR, NR), np.float32)
    for k0 in range(0, inner, DEPTH):
        depth = min(DEPTH, inner - k0)
        for p in range(row_panels):
            pack_rows(a, p * MR, k0, depth, a_packed[p])
        for n0 in range(0, n, WIDTH):
            col_panels = -(-min(WIDTH, n - n0) // NR)
            pack_columns(b, k0, n0, depth, b_packed[:col_panels])
            for q in range(col_panels):
                j0 = n0 + q * NR
                for p in range(row_panels):
                    i0 = p * MR
                    if i0 + MR <= m and j0 + NR <= n:
                        fma_tile(a_packed[p], b_packed[q], out[i0:, j0:], ldc, depth, k0 > 0)
                    else:  # an edge tile: through a full-size buffer, then its valid part
                        rows, cols = min(MR, m - i0), min(NR, n - j0)
                        if k0 > 0:  # the first depth block overwrites: out is not read
                            for i in range(rows):
                                for j in range(cols):
                                    edge[i, j] = out[i0 + i, j0 + j]
                        fma_tile(a_packed[p], b_packed[q], edge, NR, depth, k0 > 0)
                        for i in range(rows):
                            for j in range(cols):
                                out[i0 + i, j0 + j] = edge[i, j]


def matmul_into(a, b, out):
    """``out[...] = a @ b`` with BLAS (``np.dot``; inside Numba that is SciPy's BLAS).
    Callable from Numba-compiled code (single-threaded under
    :func:`nets._numba.kernels.serial_blas`; see the module docstring).

    Parameters
    ----------
    a : (M, K) array
    b : (K, N) array
    out : (M, N) array with unit stride along its rows
    """
    np.dot(a, b, out)


@njit(cache=True)
def _dot_into(a, b, out):
    np.dot(a, b, out)


@njit(cache=True)
def _dot_copy(a, b, out):
    product = np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = product[i, j]


@overload(matmul_into, jit_options={"cache": True})
def _matmul_into(a, b, out):
    # np.dot writes only into C-contiguous arrays; a column block of one is strided. Unpinned
    # OpenBLAS beats packed_matmul on every shape measured (benchmarks/gemm.py), so no branch.
    blas = _dot_into if out.layout == "C" else _dot_copy
    return lambda a, b, out: blas(a, b, out)
