"""Peak resident memory of one VGG16 DeepLIFT map, in a process of its own.

    python benchmarks/memory_worker.py --side ours|reference --batch 1 --threads 2

Prints one JSON line: ``setup_mb`` (peak RSS, VmHWM, after imports, the model with its weights and the
input), ``peak_mb`` (after the map), their difference and the map's time.

Setup is kept free of transients on both sides so that the peak is the map's: our weights are
drawn in place in float32 (``_setup.fill_random_inplace``; ``nets.random_parameters`` would
hold float64 copies, ~1 GB for fc6 alone), the Numba kernels are loaded on a tiny input beforehand, and the PyTorch twin is built
directly with PyTorch's own initialisation (no NumPy copy of the weights in that process).
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._setup import (INPUT_SIDE, TARGET, apply_thread_setters,  # noqa: E402
                               choose_backend, configure_threads, fill_random_inplace,
                               import_twins)


def maxrss_mb():
    """Peak resident memory of this process in MB.

    Linux's ``ru_maxrss`` survives ``execve``: a worker spawned by a parent that had grown to
    3 GB (after the timing runs) would report 3 GB before doing anything. ``VmHWM`` in
    /proc/self/status belongs to this process's own address space; use it where it exists.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def ours(batch, threads):
    import numpy as np

    from sensloc import nets
    from sensloc import saliency
    choose_backend("numba")
    from sensloc.nets import _numba as fast

    apply_thread_setters(threads)
    net = fill_random_inplace(nets.build("vgg16"))
    rng = np.random.default_rng(1)
    # Load (or compile) the Numba kernels on a tiny input, outside the measured map.
    tiny = rng.standard_normal((1, 2, 6, 6), dtype=np.float32)
    y = fast.conv2d_forward(tiny, np.ones((2, 2, 3, 3), np.float32), np.zeros(2, np.float32), 1, 1)
    fast.conv2d_backward_input(y, np.ones((2, 2, 3, 3), np.float32), tiny.shape, 1, 1)
    p, arg = fast.max_pool_forward(tiny, 2, 2, 0, False)
    fast.max_pool_route(p, arg, tiny.shape)
    x = rng.standard_normal((batch, 3, INPUT_SIDE["vgg16"], INPUT_SIDE["vgg16"]), dtype=np.float32)
    setup = maxrss_mb()
    t = time.perf_counter()
    out = saliency.deeplift(net, x, TARGET, reference="zero", max_pool="difference")
    return setup, time.perf_counter() - t, out.shape


def reference(batch, threads):
    import torch
    from captum.attr import DeepLift

    apply_thread_setters(threads, torch)
    model = import_twins().TorchVGG().eval()
    side = INPUT_SIDE["vgg16"]
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
    setup = maxrss_mb()
    t = time.perf_counter()
    out = DeepLift(model).attribute(x, baselines=torch.zeros_like(x), target=TARGET)
    return setup, time.perf_counter() - t, tuple(out.shape)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=("ours", "reference"), required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    configure_threads(args.threads)
    import warnings
    warnings.filterwarnings("ignore")
    if args.side == "ours":
        setup, seconds, shape = ours(args.batch, args.threads)
    else:
        setup, seconds, shape = reference(args.batch, args.threads)
    peak = maxrss_mb()
    print(json.dumps({"side": args.side, "batch": args.batch, "setup_mb": setup,
                      "peak_mb": peak, "map_increment_mb": peak - setup, "map_seconds": seconds,
                      "shape": list(shape)}))


if __name__ == "__main__":
    main()
