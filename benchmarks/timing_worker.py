"""One side of the timing comparison in a process of its own, driven by ``run.py`` over a pipe.

    python benchmarks/timing_worker.py --side ours|reference [--threads 2] [--backend numba]
                                       [--keep-freed-memory]

Each library runs as its users run it: ``ours`` applies the project's own process settings
(:func:`nets.configure_process`: glibc keeping freed memory, OpenMP's own wait policy), as the
``sensloc`` command does; ``reference`` applies none of them (PyTorch with its own defaults),
except glibc keeping freed memory when given ``--keep-freed-memory`` (``run.py`` passes it
unless ``--reference-malloc default``: glibc's default makes a method's time depend on what
the process freed before, see ``run.py``).
Both get the same thread count (2 by default, the core count of the development machine, which
is also PyTorch's default there). The parent removes ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE``
from both environments: users' machines do not pin OpenBLAS.

Requests arrive one JSON object per line on stdin; each is answered by one JSON line on stdout
(anything else the libraries print goes to stderr):

``{"op": "prepare", "net": .., "batch": .., "method": .., "save": path, "cfg": {..}}``
    build the network (``nets.random_parameters(seed=0)``; the reference copies those weights
    into its PyTorch twin) and the input (``default_rng(1)``), compute the map once (the
    warm-up), save it to ``path`` for the parent's agreement check; answers ``{"warmup_s": t}``.
``{"op": "time"}``
    one timed call of the prepared map; answers ``{"s": t}``.
``{"op": "quit"}``
"""
import json
import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=("ours", "reference"), required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", choices=("numba", "numpy"), default="numba")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="glibc keeps freed memory (nets.keep_freed_memory); ours always does")
    args = p.parse_args()
    from benchmarks._setup import (INPUT_SIDE, apply_thread_setters, choose_backend,
                                   configure_threads, import_twins)
    configure_threads(args.threads)
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr   # the pipe carries answers only
    warnings.filterwarnings("ignore", category=UserWarning)   # Captum warns on every call
    import numpy as np
    from sensloc import nets
    from benchmarks import cases
    torch = twins = None
    if args.side == "ours":
        choose_backend(args.backend)   # configure_process() for numba, as the CLI does
        apply_thread_setters(args.threads)
    else:
        if args.keep_freed_memory:
            nets.backends.keep_freed_memory()   # the setting alone, before PyTorch allocates
        import torch
        twins = import_twins()
        apply_thread_setters(args.threads, torch)
    built = {}
    call = None
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "quit":
            break
        if op == "prepare":
            name = request["net"]
            if built.get("name") != name:
                built.clear()
                net = nets.random_parameters(nets.build(name), seed=0)
                built.update(name=name, net=net,
                             model=twins.torch_model(net) if twins is not None else None)
            side = INPUT_SIDE[name]
            x = np.random.default_rng(1).standard_normal(
                (request["batch"], 3, side, side), dtype=np.float32)
            if args.side == "ours":
                call = cases.ours(request["method"], built["net"], x, request["cfg"])
            else:
                call = cases.reference(request["method"], built["model"], name, x,
                                       request["cfg"])
            start = time.perf_counter()
            out = call()
            answer = {"warmup_s": time.perf_counter() - start}
            np.save(request["save"], np.asarray(out))
            del out
        elif op == "time":
            start = time.perf_counter()
            call()
            answer = {"s": time.perf_counter() - start}
        else:
            raise ValueError(f"unknown request {op!r}")
        reply.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
