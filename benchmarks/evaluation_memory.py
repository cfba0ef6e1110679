"""The evaluation client's peak memory and wall time against the number of rows.

    python benchmarks/evaluation_memory.py [--rows 1000,5000,20000] [--preset best mix khan ebrahimpour]
    python benchmarks/evaluation_memory.py --boxes best.h5 [--rows ...]   # fitted box models

Builds manifests of 1,000, 5,000 and 20,000 rows from the development photos
(``imagenet-val-227`` and ``imagenet-val-full`` in the shared data), repeated under distinct
image ids, so that the map cache computes each photo's maps once: what grows with the rows is
the evaluation itself (reading maps, reducing them, cross-validating, writing results). Each
row count runs ``sensloc evaluate MANIFEST --preset ... --cv 5`` in its own process, with the
maps already cached (a first, untimed run on the photos fills the cache), and reports that
process's peak resident memory (``wait4``'s ``ru_maxrss``) and wall time, and both as ratios
to the smallest run. With ``--boxes``, the runs apply fitted box models (``sensloc fit-boxes``)
instead of cross-validating presets.

Defaults: the real SqueezeNet 1.0, installed in ``$SENSLOC_CACHE_DIR`` (``sensloc weights
convert .../compressed_SqueezeNet.net``), and its map cache there.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def repeated_manifest(sources, rows, path):
    """A manifest of ``rows`` lines cycling through the photos of ``sources`` (manifest CSVs),
    each line with its own image id (``r<k>-<id>``) and an absolute file path."""
    lines = []
    for source in sources:
        with open(source, newline="", encoding="utf-8-sig") as stream:
            for row in csv.DictReader(stream):
                row["file"] = str((Path(source).parent / row["file"]).resolve())
                lines.append(row)
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(lines[0]))
        writer.writeheader()
        for k in range(rows):
            row = dict(lines[k % len(lines)])
            row["image_id"] = f"r{k // len(lines)}-{row['image_id']}"
            writer.writerow(row)


def run_measured(command, folder):
    """Run ``command`` in ``folder`` and measure it: (wall seconds, CPU seconds (user + system,
    less sensitive than the wall to other work on a shared machine), peak resident MB, stdout)."""
    started = time.perf_counter()
    with open(folder / "out.txt", "w") as out, open(folder / "err.txt", "w") as err:
        process = subprocess.Popen(command, cwd=folder, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{' '.join(command)} failed:\n{(folder / 'err.txt').read_text()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, (folder / "out.txt").read_text()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = Path(os.environ.get("SENSLOC_SHARED", ROOT.parent / "shared"))
    parser.add_argument("--data", nargs="+", default=[str(shared / "data" / "imagenet-val-227"),
                                                      str(shared / "data" / "imagenet-val-full")])
    parser.add_argument("--rows", default="1000,5000,20000")
    parser.add_argument("--preset", nargs="+", default=["best", "mix", "khan", "ebrahimpour"])
    parser.add_argument("--boxes", nargs="+", metavar="FILE",
                        help="fitted box models to apply instead of the presets")
    parser.add_argument("--net", default="squeezenet1_0")
    parser.add_argument("--jobs", type=int, default=2, help="for the untimed map run (default 2)")
    parser.add_argument("--skip-fill", action="store_true",
                        help="the map cache already holds every photo's maps: no untimed run")
    args = parser.parse_args(argv)
    sources = [Path(d) / "manifest.csv" for d in args.data]
    for source in sources:
        if not source.is_file():
            sys.exit(f"no manifest at {source}: give --data, or set SENSLOC_SHARED")
    sensloc = [sys.executable, "-m", "sensloc"]
    options = ["--net", args.net] + (["--boxes", *map(os.path.abspath, args.boxes)] if args.boxes
                                     else ["--cv", "5", "--preset", *args.preset])
    scratch = Path(tempfile.mkdtemp(prefix="sensloc-eval-memory-"))
    what = f"box models {' '.join(args.boxes)}" if args.boxes else f"presets {' '.join(args.preset)}"
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}; {what}")
    # Maps of every photo, once (untimed): afterwards every run reads them from the cache.
    (scratch / "fill").mkdir()
    if not args.skip_fill:
        subprocess.run([*sensloc, "evaluate", *map(str, args.data), *options, "--jobs", str(args.jobs),
                        "--results", "r.csv"], cwd=scratch / "fill", check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    table = []
    for rows in [int(r) for r in args.rows.split(",")]:
        folder = scratch / f"rows-{rows}"
        folder.mkdir()
        repeated_manifest(sources, rows, folder / "manifest.csv")
        seconds, cpu, peak, out = run_measured([*sensloc, "evaluate", "manifest.csv", *options,
                                           "--results", "r.csv"], folder)
        first = Path(args.boxes[0]).stem if args.boxes else args.preset[0]
        corloc = [line for line in out.splitlines() if line.startswith(f"| {first} ")]
        table.append((rows, seconds, cpu, peak))
        print(f"  {rows} rows: {seconds:.0f} s wall, {cpu:.0f} s CPU, peak {peak:.0f} MB; "
              f"load average {os.getloadavg()[0]:.1f}; {corloc[0] if corloc else ''}", flush=True)
    first_rows, first_seconds, first_cpu, first_peak = table[0]
    print("\n| rows | wall s | CPU s | CPU s per 1,000 rows | peak resident MB | peak / smallest "
          "| CPU / smallest |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rows, seconds, cpu, peak in table:
        print(f"| {rows} | {seconds:.0f} | {cpu:.0f} | {1000 * cpu / rows:.0f} | {peak:.0f} | "
              f"{peak / first_peak:.2f}x | {cpu / first_cpu:.2f}x (rows {rows / first_rows:.0f}x) |")
    print(f"\nload average after: {os.getloadavg()}; scratch folder {scratch}")


if __name__ == "__main__":
    main()
