"""Whole presets: ``sensloc evaluate --preset best mix khan`` against the same maps computed
with PyTorch + Captum, in photos per second, on the same photos and cores.

    python benchmarks/preset_throughput.py [--photos 64] [--jobs 2] [--repeats 3]

Both sides run in processes of their own, spawn to exit, alternating ``--repeats`` times:

- **ours**: ``sensloc evaluate SUBSET --net squeezenet1_0 --preset best mix khan --cv 5 --jobs 2``
  with an empty map cache: photos decoded and hashed, the seven maps the presets read computed
  (one forward pass per batch shared by all of them) and cached, reduced, the three presets
  cross-validated, results written. The ``sensloc`` command's own settings.
- **reference**: this script's ``--reference-worker``: PyTorch with its own defaults (no thread
  or OpenMP settings of ours) runs the PyTorch twin of the same network with the same weights
  (tests/torch_reference.py) and computes the same seven maps with Captum
  (:func:`benchmarks.cases.captum_preset_maps`: DeepLIFT with blurred and zero references,
  guided backprop, gradient, Grad-CAM, two layers' activations) for each photo's true class,
  8 photos a batch, decoded by the same preprocessing. It keeps the maps in memory and fits no
  box: everything it skips is in its favour.

SUBSET is the development photos (``imagenet-val-227`` and ``imagenet-val-full`` of the shared
data, 692 photos), or their first ``--photos``. Weights: the real
SqueezeNet 1.0, installed in ``$SENSLOC_CACHE_DIR`` (``sensloc weights convert
.../compressed_SqueezeNet.net``). ``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE`` and
``OMP_WAIT_POLICY`` are removed from both sides' environments, as on a user's machine.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.*, run as a script
PRESETS = ("best", "mix", "khan")
#: What a user's machine does not set (a development pin of OpenBLAS, a wait policy).
UNSET = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY")


def reference_worker(manifest, net_name, batch_size):
    """The seven maps of every photo of ``manifest`` with PyTorch + Captum, ``batch_size`` at a time."""
    import warnings
    from benchmarks import cases
    from benchmarks._setup import import_twins
    from sensloc import weights
    from sensloc.data import images
    from sensloc.data.datasets import read_manifest
    warnings.filterwarnings("ignore", category=UserWarning)  # Captum warns on every call
    net = weights.load(weights.resolve(net_name))
    model = import_twins().torch_model(net)
    records = read_manifest(manifest)
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        x = images.load_batch([r.path for r in batch], net.preprocessing)
        cases.captum_preset_maps(model, net.name, x,
                                 [r.class_index + net.class_offset for r in batch])


def timed(command, cwd, env):
    """Wall seconds of ``command`` from spawn to exit (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    return seconds


def main(argv=None):
    from benchmarks.evaluation_memory import repeated_manifest
    from sensloc.data.datasets import read_manifest
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = Path(os.environ.get("SENSLOC_SHARED", ROOT.parent / "shared"))
    parser.add_argument("--data", nargs="+", default=[str(shared / "data" / name) for name in
                                                      ("imagenet-val-227", "imagenet-val-full")],
                        help="photo folders with a manifest.csv (default: the development photos)")
    parser.add_argument("--photos", type=int, default=None,
                        help="the first PHOTOS of them (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="our worker processes (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--net", default="squeezenet1_0")
    parser.add_argument("--reference-worker", metavar="MANIFEST", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference_worker:
        return reference_worker(args.reference_worker, args.net, 8)
    sources = [Path(folder) / "manifest.csv" for folder in args.data]
    for source in sources:
        if not source.is_file():
            sys.exit(f"no manifest at {source}: give --data, or set SENSLOC_SHARED")
    if args.photos is None:
        args.photos = sum(len(read_manifest(source)) for source in sources)
    scratch = Path(tempfile.mkdtemp(prefix="sensloc-preset-throughput-"))
    manifest = scratch / "manifest.csv"
    repeated_manifest(sources, args.photos, manifest)
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}; {args.photos} photos; "
          f"presets {' '.join(PRESETS)}; ours --jobs {args.jobs}", flush=True)
    times = {"ours": [], "reference": []}
    for repeat in range(args.repeats):
        folder = scratch / f"ours-{repeat}"
        folder.mkdir()
        times["ours"].append(timed(
            [sys.executable, "-m", "sensloc", "evaluate", str(manifest), "--net", args.net,
             "--preset", *PRESETS, "--cv", "5", "--jobs", str(args.jobs), "--cache",
             str(folder / "cache"), "--results", str(folder / "r.csv")], folder, env))
        times["reference"].append(timed(
            [sys.executable, str(Path(__file__).resolve()), "--net", args.net,
             "--reference-worker", str(manifest)], scratch, env))
        print(f"  run {repeat + 1}: ours {times['ours'][-1]:.1f} s, "
              f"reference {times['reference'][-1]:.1f} s", flush=True)
    ours, ref = (statistics.median(times[side]) for side in ("ours", "reference"))
    print(f"\n| side | median s | range s | photos / s |\n|---|---:|---:|---:|")
    for side, median in (("sensloc evaluate", ours), ("PyTorch + Captum maps", ref)):
        spread = times["ours" if side.startswith("sensloc") else "reference"]
        print(f"| {side} | {median:.1f} | {min(spread):.1f}-{max(spread):.1f} | "
              f"{args.photos / median:.2f} |")
    print(f"\nthroughput ours / reference: {ref / ours:.2f}x; load average after "
          f"{os.getloadavg()}; scratch folder {scratch}")


if __name__ == "__main__":
    main()
