"""The packed Numba GEMM against float64 NumPy: edge tiles, depth and width blocks, strides."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from sensloc.nets._numba import gemm


@njit
def matmul_into(a, b, out):
    gemm.matmul_into(a, b, out)


@njit
def tile(a_panel, b_panel, c, depth, accumulate):
    gemm.fma_tile(a_panel, b_panel, c, c.shape[1], depth, accumulate)


def assert_product(result, a, b):
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tolerance = 2e-6 * np.sqrt(a.shape[1]) * np.abs(a).max() * np.abs(b).max()
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=tolerance)


def test_tile_shape_fits_the_vector_registers():
    registers = 32 if gemm.LANES == 16 else 16
    vectors = gemm.NR // gemm.LANES
    assert gemm.NR % gemm.LANES == 0
    assert vectors * gemm.MR + vectors + 1 <= registers  # accumulators, row of b, broadcast


@pytest.mark.parametrize("accumulate", [False, True])
def test_fma_tile_adds_or_overwrites(rng, accumulate):
    depth = 37
    a_panel = rng.normal(size=(depth + 3, gemm.MR)).astype(np.float32)  # rows past depth unread
    b_panel = rng.normal(size=(depth + 3, gemm.NR)).astype(np.float32)
    a_panel[depth:], b_panel[depth:] = np.nan, np.nan
    before = rng.normal(size=(gemm.MR, gemm.NR)).astype(np.float32)
    c = before.copy()
    tile(a_panel, b_panel, c, depth, accumulate)
    product = a_panel[:depth].T.astype(np.float64) @ b_panel[:depth]
    np.testing.assert_allclose(c, product + before if accumulate else product, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,k,n", [
    (gemm.MR, 16, 2 * gemm.NR),                        # one row of whole tiles
    (gemm.MR + 5, 300, 2 * gemm.NR + 7),               # edge tiles on both sides
    (3 * gemm.MR + 1, 2 * gemm.DEPTH + 9, 100),        # three depth blocks, the last short
    (2 * gemm.MR, 40, gemm.WIDTH + gemm.NR + 3),       # two width blocks
])
def test_packed_matmul_equals_float64_matmul(rng, m, k, n):
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(k, n)).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    gemm.packed_matmul(a, b, out)
    assert_product(out, a, b)


def test_packed_matmul_reads_any_strides_and_writes_a_column_block(rng):
    m, k, n = 2 * gemm.MR + 3, 70, 3 * gemm.NR + 5
    a = np.asfortranarray(rng.normal(size=(m, k)).astype(np.float32))   # a transposed view
    b = rng.normal(size=(k, 2 * n)).astype(np.float32)[:, ::2]          # every other column
    wide = np.full((m, n + 20), np.nan, np.float32)
    gemm.packed_matmul(a, b, wide[:, 10:10 + n])
    assert_product(wide[:, 10:10 + n], a, b)
    assert np.isnan(wide[:, :10]).all() and np.isnan(wide[:, 10 + n:]).all()


@pytest.mark.parametrize("m,k,n,dtype", [
    (gemm.MR, 64, 2 * gemm.NR, np.float32),     # every product goes to BLAS (np.dot):
    (gemm.MR - 1, 64, 200, np.float32),         # shapes that once chose between the packed
    (40, 64, 2 * gemm.NR - 1, np.float32),      # kernel and BLAS, kept as cases
    (40, 8, 200, np.float32),
    (40, 64, 200, np.float64),
])
def test_matmul_into_from_compiled_code(rng, m, k, n, dtype):
    a, b = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    matmul_into(a, b, out)
    assert_product(out, a, b)
    wide = np.full((m, n + 4), np.nan, dtype)  # out strided: a column block
    matmul_into(a, b, wide[:, 2:2 + n])
    assert_product(wide[:, 2:2 + n], a, b)
    assert np.isnan(wide[:, :2]).all() and np.isnan(wide[:, 2 + n:]).all()


def test_avx2_tile_shape_computes_the_same_product(tmp_path):
    # On a host without AVX-512 the tile is 4 x 24 in 8-lane vectors. Run that configuration
    # in a fresh process whose LLVM host features lack AVX-512 (with its own Numba cache).
    script = """if True:
        import numpy as np
        import llvmlite.binding as llvm
        real = llvm.get_host_cpu_features()
        avx2_only = type(real)((k, v and not k.startswith("avx512")) for k, v in real.items())
        llvm.get_host_cpu_features = lambda: avx2_only  # Numba compiles for it too
        from sensloc.nets._numba import gemm
        assert (gemm.LANES, gemm.MR, gemm.NR) == (8, 4, 24), (gemm.LANES, gemm.MR, gemm.NR)
        rng = np.random.default_rng(0)
        for m, k, n in [(4, 16, 48), (13, 300, 100), (9, 600, 530)]:
            a = rng.normal(size=(m, k)).astype(np.float32)
            b = rng.normal(size=(k, n)).astype(np.float32)
            out = np.full((m, n), np.nan, np.float32)
            gemm.packed_matmul(a, b, out)
            expected = a.astype(np.float64) @ b
            assert np.abs(out - expected).max() < 1e-4 * np.sqrt(k), np.abs(out - expected).max()
        print("ok")
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
