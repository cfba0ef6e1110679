"""Evaluation on a real Dask ``LocalCluster`` (worker processes, one thread each).

What is checked: a run in which one worker is killed (SIGKILL) in the middle of a shard still
writes exactly the CSV and summary of a local ``--jobs 2`` run, with each worker process reading
the weight file once; the command line's ``--dask local`` prints the same table as a local run;
an unreachable scheduler and a missing ``distributed`` are one-line errors; and on the real
SqueezeNet and photos the Dask run's CSV equals the local run's, byte for byte.
"""
import os
import signal
import sys

import numpy as np
import pytest

from sensloc import weights

from sensloc.evaluation import results as results_file
from sensloc.evaluation import runner as ev
from sensloc.evaluation.maps import Dataset, ShardJob, load_maps, run_shard, weight_loads
from sensloc.cli.main import main
from sensloc.data.datasets import read_manifest
from sensloc.localize.presets import preset
from test_localize_evaluate import configs, scene  # noqa: F401 (scene is a fixture)

distributed = pytest.importorskip("distributed")
from sensloc.evaluation.distributed import local_cluster  # noqa: E402


class KillAfterStores(distributed.WorkerPlugin):
    """Kills the first worker process that stores its ``after``-th cache entry, once per run.

    The kill comes from inside the worker (SIGKILL to its own pid) so that it lands in the middle
    of a shard, after some of its entries are written and before the rest, on every machine; a
    marker file created with O_EXCL makes sure only one worker dies, even after restarts.
    """

    def __init__(self, marker, after):
        self.marker, self.after = str(marker), after

    def setup(self, worker):
        from sensloc.evaluation.map_cache import MapCache
        original, marker, after, stored = MapCache.store, self.marker, self.after, [0]

        def store(cache, path, array):
            original(cache, path, array)
            stored[0] += 1
            if stored[0] == after:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)

        MapCache.store = store


def test_killed_worker_loses_nothing_and_numbers_equal_a_local_run(scene, tmp_path):  # noqa: F811
    records = read_manifest(scene["data"])
    local_csv, dask_csv = tmp_path / "local.csv", tmp_path / "dask.csv"
    local, _ = ev.evaluate(scene["weights"], records, configs(), tmp_path / "local-cache", local_csv,
                           k=3, jobs=2, batch_size=2, progress=False)
    marker = tmp_path / "killed-pid"
    with local_cluster(2) as client:
        client.register_plugin(KillAfterStores(marker, after=3))
        before = set(client.run(os.getpid).values())
        # 12 images in shards of 2: six tasks; a worker dies after its third cache write,
        # i.e. half-way through its first shard. The run connects by address, as to an
        # existing cluster.
        summary, _ = ev.evaluate(scene["weights"], records, configs(), tmp_path / "dask-cache",
                                 dask_csv, k=3, batch_size=2, progress=False,
                                 dask=client.scheduler.address)
        after = set(client.run(os.getpid).values())
        loads = client.run(weight_loads)
    killed = int(marker.read_text())
    assert killed in before and killed not in after  # a worker really died and was replaced
    # Six shards, weights read at most once per worker process (the replacement worker may
    # have found no shard left to run).
    assert set(loads.values()) <= {0, 1} and 1 in loads.values()
    assert dask_csv.read_bytes() == local_csv.read_bytes()  # no lost, duplicated or torn row
    keys = [(r["config"], r["image_id"]) for r in results_file.read_results(dask_csv)]
    assert len(keys) == len(set(keys)) == 4 * 12
    assert summary.rows == local.rows
    # The half-done shard was re-run with the same batches: the maps are the same floats.
    net, dataset = weights.load(scene["weights"]), Dataset(records)
    specs = configs()[0].specs
    (local_maps, local_logits), (dask_maps, dask_logits) = (
        load_maps(net, dataset, specs, tmp_path / name) for name in ("local-cache", "dask-cache"))
    assert np.array_equal(local_logits, dask_logits)
    assert all(np.array_equal(local_maps[s], dask_maps[s]) for s in specs)


def test_command_line_dask_local_prints_the_local_table(scene, tmp_path, capsys):  # noqa: F811
    common = [str(scene["data"]), "--weights", str(scene["weights"]), "--preset", "gradient",
              "--cv", "3", "--jobs", "2"]
    tables = []
    for name, extra in (("local", []), ("dask", ["--dask", "local"])):
        assert main(["evaluate", *common, "--cache", str(tmp_path / name), "--results",
                     str(tmp_path / f"{name}.csv"), *extra]) == 0
        tables.append(capsys.readouterr().out.split("\n\nper-image")[0])
    assert "| gradient (3-fold CV) |" in tables[0] and tables[0] == tables[1]
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "dask.csv").read_bytes()


def test_unreachable_scheduler_and_missing_dask_are_one_line_errors(scene, tmp_path, capsys,  # noqa: F811
                                                                    monkeypatch):
    import dask
    argv = ["evaluate", str(scene["data"]), "--weights", str(scene["weights"]), "--preset",
            "gradient", "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r.csv")]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main([*argv, "--dask", "tcp://127.0.0.1:9"]) == 2  # port 9: nobody listens
    err = capsys.readouterr().err
    assert err.startswith("sensloc: error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    assert err.count("\n") == 1

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    assert main([*argv, "--dask", "local"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "sensloc[dask]"' in err and err.count("\n") == 1
    assert not (tmp_path / "r.csv").exists()


def test_real_squeezenet_on_dask_equals_local_run(squeezenet_file, tmp_path):
    from conftest import shared_path
    folder = shared_path("data", "imagenet-val-227")
    records = read_manifest(folder)[:8]
    config = [ev.Config("gradient", factory=lambda: preset("gradient", "squeezenet1_0"))]
    runs = {}
    for name, options in (("local", {}), ("dask", {"dask": "local"})):
        summary, _ = ev.evaluate(squeezenet_file, records, config, tmp_path / f"{name}-cache",
                                 tmp_path / f"{name}.csv", k=2, jobs=2, progress=False, **options)
        runs[name] = summary
    assert (tmp_path / "local.csv").read_bytes() == (tmp_path / "dask.csv").read_bytes()
    assert runs["local"].rows == runs["dask"].rows and runs["dask"].n == 8


def test_worker_refuses_a_weight_file_other_than_the_clients(scene, tmp_path):  # noqa: F811
    records = read_manifest(scene["data"])[:1]
    job = ShardJob(str(scene["weights"]), "0" * 64, str(tmp_path), tuple(records),
                      ("ab" * 32,), configs()[0].specs, 1)
    with pytest.raises(ValueError, match="workers must read the same weight file"):
        run_shard(job)


def test_a_corrupt_photo_stops_the_dask_run_naming_it(scene, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "data"
    folder.mkdir()
    manifest = (scene["data"] / "manifest.csv").read_text().splitlines()
    (folder / "manifest.csv").write_text("\n".join(manifest[:4]) + "\n")
    for line in manifest[1:4]:
        name = line.split(",")[0]
        (folder / name).write_bytes((scene["data"] / name).read_bytes())
    (folder / "p1.png").write_bytes(b"\x89PNG not really")
    assert main(["evaluate", str(folder), "--weights", str(scene["weights"]), "--preset", "gradient",
                 "--cv", "2", "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "r.csv"),
                 "--dask", "local"]) == 2
    err = capsys.readouterr().err
    assert "sensloc: error:" in err and "p1.png" in err and "Traceback" not in err


class CacheElsewhere(distributed.WorkerPlugin):
    """Makes the workers store their maps under another folder, as on a cluster whose workers
    do not share the client's file system."""

    def __init__(self, folder):
        self.folder = str(folder)

    def setup(self, worker):
        from sensloc.evaluation.map_cache import MapCache
        original, folder = MapCache.__init__, self.folder

        def init(cache, root, *args, **kwargs):
            original(cache, folder, *args, **kwargs)

        MapCache.__init__ = init


def test_a_cache_the_client_cannot_see_is_named(scene, tmp_path):  # noqa: F811
    records = read_manifest(scene["data"])[:4]
    with local_cluster(1) as client:
        client.register_plugin(CacheElsewhere(tmp_path / "worker-disk"))
        with pytest.raises(OSError, match="must be one folder that this machine and every worker"):
            ev.evaluate(scene["weights"], records, configs(), tmp_path / "client-disk",
                        tmp_path / "r.csv", k=2, progress=False, dask=client)
    assert not (tmp_path / "r.csv").exists()


def test_fit_boxes_on_workers_fits_the_local_model(scene, tmp_path, capsys):  # noqa: F811
    """``fit-boxes --jobs 2`` and ``--dask local`` compute the maps and reductions on workers;
    the fitted model (here mix: thresholds, weights and blur chosen on all 12 photos) equals
    the one fitted in this process."""
    from sensloc.evaluation.boxmodels import load_box_model
    common = [str(scene["data"]), "--weights", str(scene["weights"]), "--preset", "mix"]
    fitted = {}
    for name, extra in (("serial", []), ("jobs", ["--jobs", "2"]), ("dask", ["--dask", "local"])):
        out = tmp_path / f"{name}.h5"
        assert main(["fit-boxes", *common, "--cache", str(tmp_path / name), "--out", str(out),
                     *extra]) == 0
        fitted[name] = load_box_model(out).protocol.params()
    assert "fitted on 12 images" in capsys.readouterr().out
    assert fitted["serial"] == fitted["jobs"] == fitted["dask"]
    assert fitted["serial"] != preset("mix", "vgg11").params()  # a fit happened
