"""Benchmark sensloc against PyTorch + Captum, each library in its own process.

    python -m benchmarks                 # full run (~25 min on 2 quiet cores, longer under load)
    python -m benchmarks --quick         # batch 1, 3 repeats, 8 IG steps, 4 SmoothGrad samples
    python benchmarks/run.py --nets vgg16 --methods gradient,deeplift --batch 1,8
    python -m benchmarks --memory --first-call --skip-timing

Each side runs in a worker process of its own (``timing_worker.py``) with its own defaults: ours
with the project's process settings (``nets.configure_process``, as the ``sensloc`` command),
PyTorch with none of them, glibc's default malloc included. ``--reference-malloc kept`` gives
the PyTorch process our glibc setting too (freed memory kept), as a check: with glibc's default,
blocks above its dynamic mmap threshold get fresh zero-filled pages on every call, and that
threshold rises with what the process freed before (PyTorch's MobileNetV2 forward pass at batch 8
took 65,700 page faults per call run first in a process and none after a DeepLIFT map), so a
reference method's time can depend on its place in the list.
``OPENBLAS_CORETYPE``, ``OPENBLAS_L2_SIZE`` and ``OMP_WAIT_POLICY``
are removed from the benchmark's environment (a development machine's OpenBLAS pin is not what
users run). Same weights (``nets.random_parameters(seed=0)``, copied into the PyTorch twin) and
inputs on both sides.

For every (net, batch, method): one warm-up call per side (whose maps are compared, as a check
that both sides compute the same thing), then ``repeats`` timed calls alternating between the
two processes (ABBA order) so that load from other processes hits both alike, each after a
pause (``--pause``, 0.1 s): PyTorch's OpenMP workers spin for ~8 ms of CPU after every call
returns (libgomp's default wait policy), which would otherwise run beside the next call of this
library, when it came straight after (half of them, at batch 1 a call of 25-60 ms); the table reports
medians and the min-max range. The ratio is ours / reference: above 1 means this library is
slower.
"""
import argparse
import csv
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from benchmarks._setup import (add_paths, configure_threads, machine,  # noqa: E402
                               reference_available, versions)
from benchmarks.cases import EXPENSIVE, METHODS  # noqa: E402

NETS = ("vgg16", "squeezenet1_0", "mobilenet_v2")
QUICK = {"batch": "1", "repeats": 3, "ig_steps": 8, "sg_samples": 4}
FULL = {"batch": "1,8", "repeats": 9, "ig_steps": 32, "sg_samples": 16}


def _csv_list(text, allowed=None, kind=str):
    items = [kind(v.strip()) for v in text.split(",") if v.strip()]
    if allowed is not None:
        bad = [v for v in items if v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(NETS), help="comma list (default: %(default)s)")
    p.add_argument("--batch", default=None, help="comma list of batch sizes (default 1,8)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma list (default: all)")
    p.add_argument("--expensive-batches", default="1",
                   help="batch sizes at which integrated_gradients and smoothgrad run "
                        "(default 1, to keep the full run near 30 min; 'all' = every --batch)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per side (default 9)")
    p.add_argument("--threads", type=int, default=2, help="NumPy/Numba/PyTorch threads")
    p.add_argument("--pause", type=float, default=0.1,
                   help="seconds of sleep before every timed call, so that neither side's "
                        "threads still spin from its last call during the other's "
                        "(default %(default)s)")
    p.add_argument("--reference-malloc", choices=("default", "kept"), default="default",
                   help="glibc's handling of freed memory in the PyTorch process: 'default' "
                        "(glibc's own, as PyTorch users run it; default) or 'kept' (the setting "
                        "ours runs with, a check: glibc's default makes a method's time depend on "
                        "the methods run before it in the process)")
    p.add_argument("--backend", choices=("numba", "numpy"), default="numba",
                   help="sensloc's backend for the timing section (default %(default)s; the "
                        "memory and first-call workers always measure numba)")
    p.add_argument("--ig-steps", type=int, default=None, help="integration points (default 32)")
    p.add_argument("--sg-samples", type=int, default=None, help="SmoothGrad samples (default 16)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per pass inside IG / SmoothGrad, both sides (default 8)")
    p.add_argument("--out", default=str(HERE / "results"),
                   help="directory for results.csv and results.md (default benchmarks/results)")
    p.add_argument("--no-reference", action="store_true", help="skip PyTorch / Captum")
    p.add_argument("--quick", action="store_true",
                   help="batch 1, repeats 3, ig-steps 8, sg-samples 4 (explicit options win)")
    p.add_argument("--memory", action="store_true",
                   help="peak RSS of a VGG16 DeepLIFT map, each side in its own subprocess")
    p.add_argument("--memory-batch", default="1,8", help="batch sizes for --memory")
    p.add_argument("--first-call", action="store_true",
                   help="process start to first VGG16 gradient map, Numba cache cold and warm")
    p.add_argument("--skip-timing", action="store_true",
                   help="only the --memory / --first-call sections")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.nets = _csv_list(args.nets, NETS)
    args.batch = _csv_list(args.batch, kind=int)
    args.methods = _csv_list(args.methods, METHODS)
    args.expensive_batches = (args.batch if args.expensive_batches == "all"
                              else _csv_list(args.expensive_batches, kind=int))
    args.memory_batch = _csv_list(args.memory_batch, kind=int)
    return args


# ------------------------------------------------------------------------------ formatting

def _fmt_s(v):
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}"


def table(headers, rows, markdown=False, widths=None):
    """Plain-text (aligned; fixed ``widths`` if given) or GitHub-markdown table."""
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---" if i < 3 else "---:" for i in range(len(headers))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines)
    if widths is None:
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    fmt = lambda r: "  ".join(c.ljust(w) if i < 3 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


TIMING_HEADERS = ["net", "batch", "method", "ours (s)", "ours range", "reference (s)",
                  "ref range", "ours/ref", "rel L2 diff"]
PROGRESS_WIDTHS = [13, 5, 20, 8, 13, 13, 13, 8, 12]


def _range(lo, hi):
    return "—" if lo is None else f"{_fmt_s(lo)}-{_fmt_s(hi)}"


def _timing_row(r):
    return [r["net"], r["batch"], r["method"], _fmt_s(r["ours_median_s"]),
            _range(r["ours_min_s"], r["ours_max_s"]), _fmt_s(r["ref_median_s"]),
            _range(r["ref_min_s"], r["ref_max_s"]), _fmt_ratio(r["ratio_median"]),
            r["agreement"]]


# ------------------------------------------------------------------------------ timing

#: Variables removed from both sides' environments: a development machine's OpenBLAS pin
#: (users' machines do not pin it) and any wait policy, which is each side's own business
#: (ours sets it in nets.configure_process, as the sensloc command does; PyTorch sets none).
UNSET_FOR_TIMING = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY")


class Side:
    """One library in its own process (``timing_worker.py``), answering requests in turn."""

    def __init__(self, side, args):
        env = {k: v for k, v in os.environ.items() if k not in UNSET_FOR_TIMING}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "timing_worker.py"), "--side", side,
             "--threads", str(args.threads), "--backend", args.backend]
            + (["--keep-freed-memory"] if side == "reference"
               and args.reference_malloc == "kept" else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"timing worker died (exit {self.proc.wait()}); see its stderr")
        return json.loads(line)

    def close(self):
        try:
            self.ask(op="quit")
        except (BrokenPipeError, RuntimeError, ValueError):
            pass
        self.proc.wait(timeout=60)


def run_timing(args, use_ref, csv_path):
    """Each library in its own process; timed calls alternate between them (ABBA order)."""
    import numpy as np

    from benchmarks import cases

    cfg = {"ig_steps": args.ig_steps, "sg_samples": args.sg_samples,
           "batch_size": args.batch_size}
    fields = ["net", "batch", "method", "repeats", "ours_median_s", "ours_min_s", "ours_max_s",
              "ours_warmup_s", "ref_median_s", "ref_min_s", "ref_max_s", "ref_warmup_s",
              "ratio_median", "ratio_min", "agreement"]
    rows = []
    sides = {"ours": Side("ours", args)}
    if use_ref:
        sides["ref"] = Side("reference", args)
    try:
        with open(csv_path, "w", newline="") as f, \
                tempfile.TemporaryDirectory(prefix="sensloc-bench-") as scratch:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            print(table(TIMING_HEADERS, [], widths=PROGRESS_WIDTHS), flush=True)
            for net_name in args.nets:
                for batch in args.batch:
                    for method in args.methods:
                        if method in EXPENSIVE and batch not in args.expensive_batches:
                            continue
                        outs, warm, times = {}, {}, {k: [] for k in sides}
                        for key, side in sides.items():
                            outs[key] = os.path.join(scratch, f"{key}.npy")
                            warm[key] = side.ask(op="prepare", net=net_name, batch=batch,
                                                 method=method, save=outs[key],
                                                 cfg=cfg)["warmup_s"]
                        agreement = "—"
                        if use_ref:
                            agreement = cases.agreement(method, np.load(outs["ours"]),
                                                        np.load(outs["ref"]))
                        order = list(sides)
                        for i in range(args.repeats):
                            for key in (order if i % 2 == 0 else order[::-1]):
                                time.sleep(args.pause)
                                times[key].append(sides[key].ask(op="time")["s"])
                        row = {"net": net_name, "batch": batch, "method": method,
                               "repeats": args.repeats, "agreement": agreement}
                        for key, prefix in (("ours", "ours"), ("ref", "ref")):
                            t = times.get(key)
                            row[f"{prefix}_median_s"] = statistics.median(t) if t else None
                            row[f"{prefix}_min_s"] = min(t) if t else None
                            row[f"{prefix}_max_s"] = max(t) if t else None
                            row[f"{prefix}_warmup_s"] = warm.get(key)
                        row["ratio_median"] = (row["ours_median_s"] / row["ref_median_s"]
                                               if use_ref else None)
                        row["ratio_min"] = (row["ours_min_s"] / row["ref_min_s"]
                                            if use_ref else None)
                        rows.append(row)
                        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                                         for k, v in row.items()})
                        f.flush()
                        line = table(TIMING_HEADERS, [_timing_row(row)], widths=PROGRESS_WIDTHS)
                        print(line.splitlines()[-1], flush=True)
    finally:
        for side in sides.values():
            side.close()
    return rows


# ------------------------------------------------------------------------------ subprocesses

def _worker(script, arguments, env=None):
    """Run a worker script; returns (its JSON report, parent's monotonic time before spawn)."""
    cmd = [sys.executable, str(HERE / script)] + [str(a) for a in arguments]
    t_spawn = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    report = json.loads(lines[-1])
    report["t_spawn"] = t_spawn
    report["t_exit"] = time.monotonic()
    return report


def run_memory(args, use_ref):
    rows = []
    sides = ["ours"] + (["reference"] if use_ref else [])
    for batch in args.memory_batch:
        for side in sides:
            r = _worker("memory_worker.py", ["--side", side, "--batch", batch,
                                             "--threads", args.threads])
            rows.append({"batch": batch, "side": side, **{k: r[k] for k in
                         ("setup_mb", "peak_mb", "map_increment_mb", "map_seconds")}})
            print(f"memory  VGG16 DeepLIFT batch {batch} {side:9s}: peak {r['peak_mb']:.0f} MB "
                  f"(after setup {r['setup_mb']:.0f} MB, +{r['map_increment_mb']:.0f} MB for "
                  f"the map, {r['map_seconds']:.1f} s)", flush=True)
    return rows


def run_first_call(args, use_ref):
    rows = []
    base_env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="sensloc-numba-cache-") as cache_dir:
        env = dict(base_env, NUMBA_CACHE_DIR=cache_dir)
        runs = [("ours", "Numba cache cold (empty NUMBA_CACHE_DIR)", env),
                ("ours", "Numba cache warm (same dir, 2nd process)", env)]
        if use_ref:
            runs += [("reference", "PyTorch+Captum, 1st process", base_env),
                     ("reference", "PyTorch+Captum, 2nd process", base_env)]
        for side, label, run_env in runs:
            r = _worker("first_call_worker.py", ["--side", side, "--threads", args.threads],
                        env=run_env)
            s = r["t_spawn"]
            row = {"side": side, "case": label,
                   "startup_s": r["t_main"] - s,
                   "imports_s": r["t_imported"] - r["t_main"],
                   "build_s": r["t_built"] - r["t_imported"],
                   "first_map_s": r["t_first"] - r["t_built"],
                   "total_to_first_map_s": r["t_first"] - s,
                   "compute_only_s": statistics.median(r["compute"]),
                   "cache_files": r.get("cache_files")}
            row["overhead_s"] = row["total_to_first_map_s"] - row["compute_only_s"]
            rows.append(row)
            print(f"first call  {label:44s}: {row['total_to_first_map_s']:.2f} s to the first "
                  f"map (imports {row['imports_s']:.2f}, build {row['build_s']:.2f}, first map "
                  f"{row['first_map_s']:.2f}); compute only {row['compute_only_s']:.2f} s",
                  flush=True)
    return rows


# ------------------------------------------------------------------------------ main

def main(argv=None):
    args = parse_args(argv)
    configure_threads(args.threads)
    # Every worker (timing, memory, first call) inherits this environment: no OpenBLAS pin and
    # no wait policy; each side sets what it sets itself (see timing_worker.py).
    removed = [f"{n}={os.environ.pop(n)}" for n in UNSET_FOR_TIMING if n in os.environ]
    add_paths()
    use_ref = not args.no_reference
    if use_ref:
        ok, reason = reference_available()
        if not ok:
            print(f"PyTorch/Captum unavailable ({reason}); timing this library alone")
            use_ref = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = _dt.datetime.now()
    host = machine()
    header = [f"# sensloc benchmarks, {started:%Y-%m-%d %H:%M}",
              "",
              f"- machine: {host['cpu']}, {host['cores']} cores; load average at start "
              f"{host['loadavg']}",
              f"- threads: {args.threads} (OpenBLAS, Numba, PyTorch); each library in its own "
              "process with its own defaults (ours: nets.configure_process(), as the sensloc "
              "command; PyTorch: none"
              + ("; but glibc keeps freed memory in both processes, --reference-malloc kept"
                 if args.reference_malloc == "kept" else
                 "; PyTorch with glibc's default malloc, --reference-malloc default")
              + "); removed from the benchmark's environment: "
              + (", ".join(removed) if removed else "nothing (none of "
                 + ", ".join(UNSET_FOR_TIMING) + " was set)"),
              f"- sensloc backend: {args.backend}; {args.pause} s pause before every timed call",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
              f"- settings: repeats {args.repeats}, ig-steps {args.ig_steps}, sg-samples "
              f"{args.sg_samples}, {args.batch_size} images per pass in IG/SmoothGrad; IG and "
              f"SmoothGrad at batch {args.expensive_batches}",
              f"- command: {_command_line()}"]
    print("\n".join(header) + "\n", flush=True)
    sections = []
    if not args.skip_timing:
        rows = run_timing(args, use_ref, out / "results.csv")
        sections.append("## Time per map (median of %d; ratio = ours / reference)\n\n%s\n\n"
                        "`rel L2 diff` = ||ours - reference|| / ||reference|| on the warm-up "
                        "maps (a check that both sides compute the same map)."
                        % (args.repeats, table(TIMING_HEADERS, [_timing_row(r) for r in rows],
                                               markdown=True)))
        print("\n" + table(TIMING_HEADERS, [_timing_row(r) for r in rows]), flush=True)
    if args.memory:
        mem = run_memory(args, use_ref)
        _write_csv(out / "memory.csv", mem)
        sections.append("## Peak resident memory, VGG16 DeepLIFT (zero reference), one process "
                        "per row\n\n" + table(
                            ["batch", "side", "after setup (MB)", "peak (MB)", "map increment (MB)",
                             "map time (s)"],
                            [[m["batch"], m["side"], f"{m['setup_mb']:.0f}", f"{m['peak_mb']:.0f}",
                              f"{m['map_increment_mb']:.0f}", f"{m['map_seconds']:.1f}"]
                             for m in mem], markdown=True))
    if args.first_call:
        fc = run_first_call(args, use_ref)
        _write_csv(out / "first_call.csv", fc)
        sections.append("## First call: process start to the first VGG16 gradient map, batch 1"
                        "\n\n" + table(
                            ["case", "side", "interpreter (s)", "imports (s)", "build+weights (s)",
                             "first map (s)", "total (s)", "compute only (s)", "overhead (s)"],
                            [[c["case"], c["side"], f"{c['startup_s']:.2f}", f"{c['imports_s']:.2f}",
                              f"{c['build_s']:.2f}", f"{c['first_map_s']:.2f}",
                              f"{c['total_to_first_map_s']:.2f}", f"{c['compute_only_s']:.2f}",
                              f"{c['overhead_s']:.2f}"] for c in fc], markdown=True))
    header.append(f"- finished {_dt.datetime.now():%H:%M}, load average at end "
                  f"{machine()['loadavg']}")
    (out / "results.md").write_text("\n".join(header) + "\n\n" + "\n\n".join(sections) + "\n")
    print(f"\nwrote {out / 'results.md'}")


def _command_line():
    prog = "python -m benchmarks" if sys.argv[0].endswith("__main__.py") else "python benchmarks/run.py"
    return " ".join([prog] + sys.argv[1:])


def _write_csv(path, rows):
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
