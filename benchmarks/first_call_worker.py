"""Time from process start to the first VGG16 gradient map (batch 1), in a fresh process.

    NUMBA_CACHE_DIR=/tmp/x python benchmarks/first_call_worker.py --side ours|reference

Prints one JSON line of ``time.monotonic()`` stamps (a system-wide clock on Linux, so the parent
can subtract its own stamp taken before spawning this process): ``t_main`` (interpreter up, this
script running), ``t_imported`` (library imports done), ``t_built`` (VGG16 built with random
weights and the input drawn), ``t_first`` (first map done), and ``compute``: the times of three
further maps in the same process, i.e. compute alone.

Weights: ours are drawn with ``_setup.fill_random_inplace`` and the twin keeps PyTorch's own
initialisation, comparable costs (~1 s and ~0.6 s); ``nets.random_parameters`` takes ~4 s on
VGG16 (against ~1 s) because it draws float64, which would hide the library's own start-up costs.
"""
import time

T_MAIN = time.monotonic()

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=("ours", "reference"), required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from benchmarks._setup import (INPUT_SIDE, TARGET, apply_thread_setters, choose_backend,
                                   configure_threads, fill_random_inplace, import_twins)
    configure_threads(args.threads)
    side = INPUT_SIDE["vgg16"]
    if args.side == "ours":
        import numpy as np

        from sensloc import nets
        from sensloc import saliency
        choose_backend("numba")   # loads Numba and the kernels' modules: part of the imports
        t_imported = time.monotonic()
        apply_thread_setters(args.threads)
        net = fill_random_inplace(nets.build("vgg16"))
        x = np.random.default_rng(1).standard_normal((1, 3, side, side), dtype=np.float32)
        t_built = time.monotonic()
        saliency.gradient(net, x, TARGET)
        t_first = time.monotonic()

        def again():
            return saliency.gradient(net, x, TARGET)
    else:
        import warnings
        warnings.filterwarnings("ignore")
        import torch
        from captum.attr import Saliency
        twins = import_twins()
        t_imported = time.monotonic()
        apply_thread_setters(args.threads, torch)
        model = twins.TorchVGG().eval()
        x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
        t_built = time.monotonic()
        Saliency(model).attribute(x, target=TARGET, abs=False)
        t_first = time.monotonic()

        def again():
            return Saliency(model).attribute(x, target=TARGET, abs=False)
    compute = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        again()
        compute.append(time.perf_counter() - t)
    cache = os.environ.get("NUMBA_CACHE_DIR")
    files = (sum(len(f) for _, _, f in os.walk(cache)) if args.side == "ours" and cache else None)
    print(json.dumps({"t_main": T_MAIN, "t_imported": t_imported, "t_built": t_built,
                      "t_first": t_first, "compute": compute,
                      "compute_median": statistics.median(compute), "cache_files": files}))


if __name__ == "__main__":
    main()
