"""Where the time goes: per-layer and per-kernel timing of a forward/backward pass.

    python benchmarks/profile_layers.py                       # VGG16, batch 1, 5 repeats
    python benchmarks/profile_layers.py --net squeezenet1_0 --batch 8 --repeats 3 --cprofile
    python benchmarks/profile_layers.py --net mobilenet_v2 --batch 8    # also by block step

Instrumentation happens in this process only, by wrapping (never editing) library callables:
every top-level layer's ``forward`` / ``backward`` (instance attributes), the Numba kernels
``nets._numba.kernels._im2col`` / ``_col2im`` / ``_conv_bands`` / ``_conv_bands_backward``
(convolutions by bands of rows: their unrolling and GEMMs together) /
``_winograd_input_transform`` / ``_winograd_output_transform`` and
``nets._numba.pooling._max_pool_forward`` / ``_max_pool_route``, and the GEMMs
(``nets._numba.kernels.gemm`` and ``winograd_products``; the fully connected layers' forward GEMMs
count there too). Every figure is the median over ``repeats`` passes after one warm-up pass.
Blocks made of steps (MobileNetV2's inverted residuals) have each step wrapped as well, and a
table by step role (expand, its ReLU6, depthwise with its SAME padding, its ReLU6, project,
and the block's "rest": the residual addition and the Python between steps).

Passes profiled: ``forward`` (``net.forward``), ``backward/gradient`` (``net.backward`` with the
gradient rule) and ``backward/deeplift`` (``net.backward`` with the rescale rule and the
reference trace; the rule's NumPy work lands in the ReLU and max-pool rows). With PyTorch
installed, the twin's per-module forward times (hooks, ``no_grad``) and each convolution's
input-gradient (``torch.nn.grad.conv2d_input``) are shown beside ours.
"""
import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._setup import (INPUT_SIDE, TARGET, add_paths, apply_thread_setters,  # noqa: E402
                               choose_backend, configure_threads, import_twins,
                               reference_available)

KERNELS = ("_im2col", "_col2im", "_conv_bands", "_conv_bands_backward",
           "_winograd_input_transform", "_winograd_output_transform")
POOL_KERNELS = ("_max_pool_forward", "_max_pool_route")
GEMMS = ("gemm", "winograd_products")


class _Clock:
    """Accumulates seconds per key for the current pass."""

    def __init__(self):
        self.acc = defaultdict(float)

    def wrap(self, key, fn):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.acc[key] += time.perf_counter() - t
        return timed


def instrument(net, clock):
    from sensloc.nets._numba import kernels, pooling
    for module, names in ((kernels, KERNELS), (pooling, POOL_KERNELS)):
        for name in names:
            setattr(module, name, clock.wrap(name, getattr(module, name)))
    for name in GEMMS:
        setattr(kernels, name, clock.wrap("GEMM", getattr(kernels, name)))
    for layer in net.layers:
        for step in getattr(layer, "steps", ()):   # an inverted residual's sub-layers
            step.forward = clock.wrap(("step", step.name), step.forward)
            if hasattr(step, "forward_relu6_input"):   # the depthwise step after an expansion
                step.forward_relu6_input = clock.wrap(("step", step.name),
                                                      step.forward_relu6_input)
            step.backward = clock.wrap(("step", step.name), step.backward)
        layer.forward = clock.wrap(("layer", layer.name), layer.forward)
        layer.backward = clock.wrap(("layer", layer.name), layer.backward)


def print_steps(net, results, passes):
    """Time by step role summed over the blocks that have steps, and each block's rest."""
    roles = defaultdict(lambda: [0.0] * len(passes))
    for layer in net.layers:
        steps = getattr(layer, "steps", ())
        if not steps:
            continue
        for p, name in enumerate(passes):
            runs = results[name]
            for step in steps:
                roles[step.name.rsplit(".", 1)[1]][p] += med(runs, ("step", step.name))
            # the rest pass by pass, then the median (a difference of medians is not one)
            roles["rest (residual add, Python)"][p] += statistics.median(
                r.get(("layer", layer.name), 0.0) - sum(r.get(("step", step.name), 0.0)
                                                        for step in steps) for r in runs)
    if not roles:
        return
    print("\nblock steps summed over all blocks (ms):")
    print(f"  {'step':28s} " + " ".join(f"{n.split('/')[-1]:>9s}" for n in passes))
    for role, vals in roles.items():
        print(f"  {role:28s} " + " ".join(f"{1e3 * v:9.1f}" for v in vals))


def kind(layer):
    return type(layer).__name__


def measure(net, passes, repeats, clock):
    """{pass name: [acc dict per repeat]} and wall times, after one warm-up of each pass."""
    results, walls = {}, {}
    for name, fn in passes.items():
        fn()
        runs, wall = [], []
        for _ in range(repeats):
            clock.acc.clear()
            t = time.perf_counter()
            fn()
            wall.append(time.perf_counter() - t)
            runs.append(dict(clock.acc))
        results[name], walls[name] = runs, statistics.median(wall)
    return results, walls


def med(runs, key):
    return statistics.median(r.get(key, 0.0) for r in runs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="vgg16", choices=sorted(INPUT_SIDE))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--cprofile", action="store_true",
                   help="also cProfile one saliency.gradient and one saliency.deeplift call")
    args = p.parse_args()
    configure_threads(args.threads)
    add_paths()
    import numpy as np

    from sensloc import nets
    from sensloc.saliency.rules import Rescale
    use_ref = not args.no_reference and reference_available()[0]
    torch = None
    if use_ref:
        import torch
    choose_backend("numba")
    apply_thread_setters(args.threads, torch)

    net = nets.random_parameters(nets.build(args.net))
    side = INPUT_SIDE[args.net]
    x = np.random.default_rng(1).standard_normal((args.batch, 3, side, side), dtype=np.float32)
    model = import_twins().torch_model(net) if use_ref else None
    clock = _Clock()

    if args.cprofile:   # before instrumenting, so the profile shows the library's own frames
        import cProfile
        import pstats

        from sensloc import saliency
        for label, fn in (("gradient", lambda: saliency.gradient(net, x, TARGET)),
                          ("deeplift", lambda: saliency.deeplift(net, x, TARGET))):
            fn()
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            print(f"\n=== cProfile: saliency.{label}, {args.net}, batch {args.batch} "
                  f"(top 14 by own time) ===")
            pstats.Stats(prof).sort_stats("tottime").print_stats(14)

    instrument(net, clock)
    ref_x = np.zeros_like(x)
    trace, ref_trace = net.forward(x), net.forward(ref_x)
    one_hot = np.zeros_like(trace.output)
    one_hot[:, TARGET] = 1
    passes = {"forward": lambda: net.forward(x),
              "backward/gradient": lambda: net.backward(trace, one_hot),
              "backward/deeplift": lambda: net.backward(trace, one_hot, rule=Rescale(),
                                                        ref_trace=ref_trace)}
    results, walls = measure(net, passes, args.repeats, clock)

    # torch twin: per-module forward times via hooks
    torch_fwd = {}
    if use_ref and hasattr(model, "features"):   # (the MobileNetV2 twin has no such list)
        mods = list(model.features) + (list(model.classifier) if hasattr(model, "classifier")
                                       else [model.conv_final, model.relu_final, model.pool_final])
        acc, start = defaultdict(list), {}

        def pre(m, _):
            start[m] = time.perf_counter()

        def post(m, _, __):
            acc[m].append(time.perf_counter() - start[m])
        hooks = [h for m in mods for h in (m.register_forward_pre_hook(pre),
                                           m.register_forward_hook(post))]
        xt = torch.from_numpy(x.copy())
        with torch.no_grad():
            for _ in range(args.repeats + 1):
                model(xt)
        for h in hooks:
            h.remove()
        ours_mods = [layer for layer in net.layers if kind(layer) != "Flatten"]
        torch_mods = [m for m in mods if type(m).__name__ != "Flatten"]
        if len(ours_mods) == len(torch_mods):
            for layer, m in zip(ours_mods, torch_mods):
                torch_fwd[layer.name] = statistics.median(acc[m][1:])

    print(f"\n=== {args.net}, batch {args.batch}, {args.threads} threads: median of "
          f"{args.repeats} passes (ms) ===")
    print(f"pass wall times: " + ", ".join(f"{k} {1e3 * v:.0f}" for k, v in walls.items()))
    head = f"{'layer':22s} {'kind':10s} {'fwd':>8s} {'bwd grad':>9s} {'bwd dlift':>10s}"
    head += f" {'torch fwd':>10s}" if torch_fwd else ""
    print(head)
    by_kind = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for layer in net.layers:
        key = ("layer", layer.name)
        vals = [med(results[name], key) for name in passes]
        row = f"{layer.name:22s} {kind(layer):10s} " + " ".join(
            f"{1e3 * v:{w}.1f}" for v, w in zip(vals, (8, 9, 10)))
        if torch_fwd:
            tf = torch_fwd.get(layer.name)
            row += f" {1e3 * tf:10.1f}" if tf is not None else f" {'':>10s}"
            by_kind[kind(layer)][3] += tf or 0.0
        print(row)
        for i, v in enumerate(vals):
            by_kind[kind(layer)][i] += v
    print("\nby layer type (ms):")
    for k, v in sorted(by_kind.items(), key=lambda kv: -sum(kv[1][:3])):
        row = f"  {k:10s} fwd {1e3 * v[0]:8.1f}  bwd grad {1e3 * v[1]:8.1f}  bwd dlift {1e3 * v[2]:8.1f}"
        print(row + (f"  torch fwd {1e3 * v[3]:8.1f}" if torch_fwd else ""))
    print_steps(net, results, passes)
    print("\nby kernel (ms; conv 'rest' = conv layers minus the kernels named: padding, bias "
          "add, zero-filling dx, Python):")
    conv_names = [("layer", layer.name) for layer in net.layers if kind(layer) in ("Conv2d", "Fire")]
    conv_names += [("step", step.name) for layer in net.layers
                   for step in getattr(layer, "steps", ()) if kind(step) == "Conv2d"]
    for name in passes:
        runs = results[name]
        kern = {k: med(runs, k) for k in KERNELS + POOL_KERNELS + ("GEMM",)}
        conv_total = statistics.median(sum(r.get(c, 0.0) for c in conv_names) for r in runs)
        transforms = kern["_winograd_input_transform"] + kern["_winograd_output_transform"]
        bands = kern["_conv_bands"] + kern["_conv_bands_backward"]
        rest = (conv_total - kern["_im2col"] - kern["_col2im"] - kern["GEMM"] - transforms
                - bands)
        parts = [f"im2col {1e3 * kern['_im2col']:.0f}", f"GEMM {1e3 * kern['GEMM']:.0f}",
                 f"by bands (unroll + GEMM) {1e3 * bands:.0f}",
                 f"Winograd transforms {1e3 * transforms:.0f}",
                 f"col2im {1e3 * kern['_col2im']:.0f}", f"conv rest {1e3 * rest:.0f}",
                 f"maxpool fwd kernel {1e3 * kern['_max_pool_forward']:.0f}",
                 f"maxpool route kernel {1e3 * kern['_max_pool_route']:.0f}"]
        print(f"  {name:18s} wall {1e3 * walls[name]:6.0f}: " + ", ".join(parts))

    if use_ref and args.net == "vgg16":
        print("\nconvolution input-gradient per layer (ms): ours conv2d_backward_input vs "
              "torch.nn.grad.conv2d_input")
        from sensloc.nets._numba import kernels
        for layer in [lay for lay in net.layers if kind(lay) == "Conv2d"]:
            xin = trace.caches[layer.name]
            dy = np.ones_like(trace.outputs[layer.name])
            f_ours = lambda: kernels.conv2d_backward_input(dy, layer.weight, xin.shape,  # noqa
                                                           layer.stride, layer.padding)
            w_t, dy_t = torch.from_numpy(layer.weight), torch.from_numpy(dy)
            f_ref = lambda: torch.nn.grad.conv2d_input(xin.shape, w_t, dy_t,  # noqa
                                                       stride=layer.stride, padding=layer.padding)
            ts = {}
            for lab, f in (("ours", f_ours), ("torch", f_ref)):
                f()
                t = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    f()
                    t.append(time.perf_counter() - t0)
                ts[lab] = statistics.median(t)
            print(f"  {layer.name:10s} ours {1e3 * ts['ours']:7.1f}  torch {1e3 * ts['torch']:7.1f}")


if __name__ == "__main__":
    main()
