"""The packed Numba GEMM (:mod:`nets._numba.gemm`) against NumPy's BLAS, one thread each, same process.

    python benchmarks/gemm.py [--repeats 7]

Shapes are the products VGG16 and SqueezeNet run: the per-position Winograd GEMMs of VGG16's
3x3 layers at batch 1 (``(O, C) @ (C, tiles)``) and im2col/pointwise products. Prints the best
of ``repeats`` calls of each side in GFLOP/s and their ratio; every BLAS is limited to one
thread (:func:`nets._numba.kernels.serial_blas`, which also covers the SciPy BLAS that Numba's
``np.dot`` calls), as inside the library's kernels.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from benchmarks._setup import call_times  # noqa: E402
from sensloc.nets._numba import gemm, kernels  # noqa: E402

SHAPES = [  # (M, K, N, where it occurs)
    (64, 64, 12544, "VGG16 conv1_2, Winograd, batch 1"),
    (128, 64, 3136, "VGG16 conv2_1, Winograd"),
    (128, 128, 3136, "VGG16 conv2_2, Winograd"),
    (256, 256, 784, "VGG16 conv3_x, Winograd"),
    (512, 512, 196, "VGG16 conv4_x, Winograd"),
    (512, 512, 49, "VGG16 conv5_x, Winograd (np.dot: too few columns)"),
    (64, 27, 50176, "VGG16 conv1_1, im2col"),
    (64, 16, 3025, "SqueezeNet fire2 expand1x1"),
    (64, 144, 3025, "SqueezeNet fire2 expand3x3, im2col"),
    (256, 2304, 3136, "large square-ish product"),
]


@njit
def ours(a, b, out):
    gemm.packed_matmul(a, b, out)


@njit
def numba_dot(a, b, out):
    np.dot(a, b, out)   # inside Numba: SciPy's BLAS (cython_blas), what the kernels call


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"tile {gemm.MR} x {gemm.NR} ({gemm.LANES} float32 lanes), depth {gemm.DEPTH}, "
          f"width {gemm.WIDTH}; one thread each")
    print(f"{'M':>5} {'K':>5} {'N':>6}  {'ours GF/s':>9} {'BLAS GF/s':>9} {'in Numba':>9} "
          f"{'ours/BLAS':>9}  where")
    with kernels.serial_blas():
        for m, k, n, where in SHAPES:
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            out = np.empty((m, n), np.float32)
            flops = 2.0 * m * k * n
            t_ours = min(call_times(lambda: ours(a, b, out), args.repeats))
            t_blas = min(call_times(lambda: np.dot(a, b, out), args.repeats))
            t_nb = min(call_times(lambda: numba_dot(a, b, out), args.repeats))
            best_blas = min(t_blas, t_nb)
            print(f"{m:5d} {k:5d} {n:6d}  {flops / t_ours / 1e9:9.1f} {flops / t_blas / 1e9:9.1f} "
                  f"{flops / t_nb / 1e9:9.1f} {best_blas / t_ours:9.2f}x  {where}")


if __name__ == "__main__":
    main()
