"""Two thread pools on two cores: NumPy's OpenBLAS and Numba's OpenMP workers, alternating.

    python benchmarks/thread_pools.py

A forward or backward pass alternates OpenBLAS GEMMs with Numba ``parallel=True`` kernels
(im2col, col2im, max pooling, the fused ReLU rules). Both pools busy-wait after a call; with
2 threads each on 2 cores, the pool that is needed next waits for the spinning one to be
descheduled. This script times, in a fresh process per setting, a small GEMM (a SqueezeNet
expand3x3: 64x144 @ 144x3025) alone, the fast backend's ``relu_gate`` (``nets._numba.kernels``)
on 193,600 values alone, and the two alternating, under environment settings that stop one
pool from spinning. (No ``nets.configure_process`` here: the environment is what is measured.)
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = [
    ("default (2 OpenBLAS + 2 Numba threads)", {}),
    ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("OPENBLAS_THREAD_TIMEOUT=4", {"OPENBLAS_THREAD_TIMEOUT": "4"}),
    ("both", {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}),
    ("NUMBA_THREADING_LAYER=workqueue", {"NUMBA_THREADING_LAYER": "workqueue"}),
    ("OpenBLAS 1 thread, Numba 2", {"OPENBLAS_NUM_THREADS": "1"}),
    ("OpenBLAS 2, Numba 1 thread", {"NUMBA_NUM_THREADS": "1"}),
]


def child():
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from benchmarks._setup import call_times
    from sensloc.nets._numba import kernels
    rng = np.random.default_rng(0)
    w = rng.random((64, 144), dtype=np.float32)
    c = rng.random((144, 3025), dtype=np.float32)
    out = np.empty((64, 3025), np.float32)
    s = rng.random(64 * 3025, dtype=np.float32) - 0.5
    e = rng.random(64 * 3025, dtype=np.float32) - 0.5

    def gemm():
        np.matmul(w, c, out=out)

    def relu():
        kernels.relu_gate(s, e)

    def both():
        gemm()
        relu()

    def med(f, n=200):
        return 1e3 * statistics.median(call_times(f, n))

    print(json.dumps({"gemm": med(gemm), "relu": med(relu), "both": med(both)}))


def main():
    if "--child" in sys.argv:
        return child()
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "NUMBA_THREADING_LAYER")}
    base.update({"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "NUMBA_NUM_THREADS": "2"})
    print(f"{'setting':40s} {'GEMM':>8s} {'relu_gate':>10s} {'alternating':>12s}   (ms, median of 200)")
    for label, extra in SETTINGS:
        proc = subprocess.run([sys.executable, __file__, "--child"], env={**base, **extra},
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{label:40s} failed: {proc.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{label:40s} {r['gemm']:8.3f} {r['relu']:10.3f} {r['both']:12.3f}")


if __name__ == "__main__":
    main()
