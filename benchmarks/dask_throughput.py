"""Throughput of the map step on a local Dask cluster with 1, 2, 4... workers.

    python benchmarks/dask_throughput.py [--photos 40] [--workers 1,2,4] [--preset khan]

For each worker count: start a ``LocalCluster`` (one thread per worker, single-threaded BLAS
and Numba, as ``sensloc evaluate --dask local --jobs N``), warm every worker up (weight file
read, Numba kernels loaded from their cache) on one photo, then time ``ensure_maps`` on the
photos into a fresh map cache. Reported per worker count: cluster start-up, warm-up, the timed
run's wall time, images per second and its ratio to one worker, and where the wall time went:
the workers' compute time per image (from Dask's task stream) and the share of worker-seconds
spent computing ("busy"; the rest is scheduling, shard imbalance at the end, idle). Also timed,
for reference: the same photos in this one process (``--jobs 1``, BLAS and Numba on all cores)
and, with ``--pool``, the local ``--jobs N`` process pool at the same worker counts.

Defaults: the real SqueezeNet 1.0 (``sensloc weights convert .../compressed_SqueezeNet.net``,
found through ``$SENSLOC_CACHE_DIR``) and the first photos of ``../shared/data/imagenet-val-227``.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_average():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def warm_up(job):
    """Run one shard in this worker: reads the weights, loads the Numba kernels."""
    from sensloc.evaluation.maps import run_shard
    from sensloc.evaluation.workers import start_worker
    start_worker("numba")   # as the backend plugin of ensure_maps will (registered later)
    return run_shard(job)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="squeezenet1_0",
                        help="installed name or weight file (default squeezenet1_0)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imagenet-val-227"))
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--preset", default="khan", help="whose map kinds to compute (default khan)")
    parser.add_argument("--batch", type=int, default=2,
                        help="batch size (default 2: 20 batches of 40 photos spread evenly on 4 workers)")
    parser.add_argument("--pool", action="store_true", help="also time the local --jobs N pool")
    parser.add_argument("--skip-in-process", action="store_true",
                        help="do not time --jobs 1 in this process (slow on a loaded machine)")
    args = parser.parse_args(argv)

    from sensloc import weights
    from distributed import get_task_stream
    from sensloc.data.datasets import read_manifest
    from sensloc.evaluation.distributed import local_cluster
    from sensloc.evaluation.maps import Dataset, ShardJob, ensure_maps
    from sensloc.localize.presets import preset
    from sensloc._files import sha256_file
    from sensloc.evaluation.workers import start_worker
    start_worker("numba")   # this process and, through it, every worker: the fast backend

    weight_path = Path(weights.resolve(args.weights)).resolve()
    net = weights.load(weight_path)
    records = read_manifest(args.data)
    dataset = Dataset(records[1:args.photos + 1])  # records[0] is the warm-up photo
    specs = tuple(preset(args.preset, net.name).map_specs)
    scratch = Path(tempfile.mkdtemp(prefix="sensloc-dask-bench-"))
    n = len(dataset.records)
    print(f"{net.name}, {n} photos of {args.data}, maps {', '.join(s.name for s in specs)}, "
          f"batch {args.batch}; {os.cpu_count()} CPUs; load average {load_average()}")
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")

    def timed(folder, **options):
        started = time.perf_counter()
        computed, _ = ensure_maps(weight_path, net, dataset, specs, scratch / folder,
                                  batch_size=args.batch, progress=False, **options)
        assert computed == n, computed
        return time.perf_counter() - started

    rows = []
    ensure_maps(weight_path, net, Dataset(records[:1]), specs, scratch / "warm", progress=False)
    if not args.skip_in_process:
        seconds = timed("in-process")
        rows.append(("this process, --jobs 1 (all cores)", "", "", seconds, n / seconds, "", "", ""))
        print(f"  in-process: {seconds:.1f} s ({load_average()})", flush=True)

    warm_job = ShardJob(str(weight_path), sha256_file(weight_path), str(scratch / "warm-workers"),
                        tuple(records[:1]), (sha256_file(records[0].path),), specs, 1)
    first = None
    for workers in [int(w) for w in args.workers.split(",")]:
        started = time.perf_counter()
        with local_cluster(workers) as client:
            startup = time.perf_counter() - started
            started = time.perf_counter()
            client.run(warm_up, warm_job)
            warm = time.perf_counter() - started
            with get_task_stream(client=client) as stream:
                seconds = timed(f"dask-{workers}", dask=client)
            computing = sum(s["stop"] - s["start"] for task in stream.data
                            for s in task["startstops"] if s["action"] == "compute")
        first = first or seconds  # the first worker count's wall time (1 worker by default)
        rows.append((f"Dask LocalCluster, {workers} worker{'s' * (workers > 1)}", f"{startup:.1f}",
                     f"{warm:.1f}", seconds, n / seconds, f"{first / seconds:.2f}x",
                     f"{computing / n:.2f}", f"{100 * computing / (seconds * workers):.0f}%"))
        print(f"  dask {workers}: {seconds:.1f} s ({load_average()})", flush=True)
        if args.pool and workers > 1:  # (--jobs 1 is the in-process row)
            seconds = timed(f"pool-{workers}", jobs=workers)
            rows.append((f"local process pool, --jobs {workers}", "", "", seconds, n / seconds,
                         f"{first / seconds:.2f}x", "", ""))
            print(f"  pool {workers}: {seconds:.1f} s ({load_average()})", flush=True)
    shutil.rmtree(scratch)

    print("\n| executor | start-up s | warm-up s | wall s | images/s | vs 1 worker | "
          "worker s / image | busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, startup, warm, seconds, rate, ratio, per_image, busy in rows:
        print(f"| {name} | {startup} | {warm} | {seconds:.1f} | {rate:.2f} | {ratio} | {per_image} | {busy} |")
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
