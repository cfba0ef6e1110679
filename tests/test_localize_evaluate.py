"""The evaluation runner end to end, on photos and a small VGG that the tests generate.

What is checked: box coordinates survive the trip photo -> network input -> photo; maps are
computed once (a second run computes nothing); an interrupted results file resumes without a
lost or duplicated row; worker processes give the same maps as one process; box models refuse
another network; and the command line writes the summary JSON and figures.
"""
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from sensloc import nets
from sensloc import weights
from sensloc.data import images
from sensloc.evaluation import results as results_file
from sensloc.evaluation import runner as ev
from sensloc.evaluation.maps import Dataset, ensure_maps, load_maps
from sensloc.evaluation.reductions import reduce_dataset
from sensloc._files import sha256_file
from sensloc.localize import protocols as pr
from sensloc.evaluation.boxmodels import load_box_model, save_box_model
from sensloc.cli.main import main
from sensloc.data.datasets import read_manifest
from sensloc.evaluation.map_cache import MapCache, network_key, reduction_key
from sensloc.localize.boxes import iou
from sensloc.saliency.maps import MapSpec

PREP = images.Preprocessing((32, 32), "RGB", 1 / 255, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "squash")


def small_weights(path, seed):
    net = nets.random_parameters(nets.build("vgg11", num_classes=3, input_size=32, hidden=16), seed)
    return weights.save(path, net, PREP, ["square", "disc", "bar"], f"random-{seed}",
                        f"{seed:064x}", architecture_options={"num_classes": 3, "input_size": 32,
                                                              "hidden": 16})


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Twelve 48x40 photos of a bright rectangle on noise, a manifest, and two weight files."""
    folder = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        photo = (rng.random((40, 48, 3)) * 80).astype(np.uint8)
        x0, y0 = int(rng.integers(0, 24)), int(rng.integers(0, 18))
        # Textured, not flat: a flat patch makes neighbouring activations exactly equal, and
        # max-pool switches on exact ties are decided by rounding (different BLAS threads).
        photo[y0:y0 + 20, x0:x0 + 22] = 190 + rng.integers(0, 60, (20, 22, 3))
        Image.fromarray(photo).save(folder / f"p{i}.png")
        rows.append([f"p{i}.png", 48, 40, "n0", i % 3, "thing", f"{x0},{y0},{x0 + 22},{y0 + 20}", f"p{i}"])
    with open(folder / "manifest.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "width", "height", "wnid", "class_index", "class_name", "boxes", "image_id"])
        writer.writerows(rows)
    return {"data": folder, "weights": small_weights(folder / "net.h5", 1),
            "other": small_weights(folder / "other.h5", 2)}


@pytest.mark.parametrize("resize", ["squash", "crop"])
def test_boxes_survive_the_round_trip_through_the_input(resize):
    prep = images.Preprocessing((224, 224), "RGB", 1.0, (0, 0, 0), (1, 1, 1), resize)
    box = np.array([[100.0, 50.0, 400.0, 300.0]])
    inside = ev.photo_to_input(box, (500, 375), prep)
    np.testing.assert_allclose(prep.input_to_photo(inside, (500, 375)), box, atol=1e-9)
    if resize == "squash":
        np.testing.assert_allclose(inside, [[100 * 224 / 500, 50 * 224 / 375, 400 * 224 / 500, 300 * 224 / 375]])
    else:  # 375 -> 256 on the short side: 500 -> 341, crop offset (58, 16)
        np.testing.assert_allclose(inside, [[100 * 341 / 500 - 58, 50 * 256 / 375 - 16,
                                             400 * 341 / 500 - 58, 300 * 256 / 375 - 16]])


def configs():
    gradient = MapSpec.make("gradient", "max_abs")
    return [ev.Config("union", factory=lambda: pr.ThresholdBoxes(gradient, "union")),
            ev.Config("fixed", protocol=pr.ThresholdBoxes(gradient, "largest", 0.3))]


def test_evaluation_caches_maps_and_resumes_results(scene, tmp_path):
    records = read_manifest(scene["data"])
    results = tmp_path / "results.csv"
    summary, boxes = ev.evaluate(scene["weights"], records, configs(), tmp_path / "cache", results,
                                 k=3, progress=False)
    assert set(summary.rows) == {"union", "fixed", "baseline: center box", "baseline: whole image"}
    rows = results_file.read_results(results)
    assert len(rows) == 4 * 12
    for row in rows:  # every row's IoU is that of its box with the ground truth
        record = records[int(row["image_id"][1:])]
        box = np.array([float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")])
        assert abs(float(row["iou"]) - iou(box, record.boxes).max()) < 1e-3
    whole = summary.rows["baseline: whole image"]["corloc"]
    assert whole == np.mean([iou([0, 0, 48, 40], r.boxes).max() >= 0.5 for r in records])

    # Interrupt: cut the file in the middle of a line; the rerun completes it exactly once.
    text = results.read_text()
    results.write_text(text[:len(text) * 2 // 3 - 5])
    net = weights.load(scene["weights"])
    computed, _ = ensure_maps(scene["weights"], net, Dataset(records),
                                 configs()[0].specs, tmp_path / "cache", progress=False)
    assert computed == 0  # every map came from the cache
    again, _ = ev.evaluate(scene["weights"], records, configs(), tmp_path / "cache", results,
                           k=3, progress=False)
    rows = results_file.read_results(results)
    keys = [(r["config"], r["image_id"]) for r in rows]
    assert len(keys) == len(set(keys)) == 48
    assert again.rows == summary.rows


def test_worker_processes_compute_the_same_maps(scene, tmp_path):
    records = read_manifest(scene["data"])
    net = weights.load(scene["weights"])
    spec = (MapSpec.make("gradient", "max_abs"),)
    for jobs, folder in ((1, "serial"), (2, "parallel")):
        computed, _ = ensure_maps(scene["weights"], net, Dataset(records), spec,
                                     tmp_path / folder, jobs=jobs, batch_size=4, progress=False)
        assert computed == 12
    serial, logits_s = load_maps(net, Dataset(records), spec, tmp_path / "serial")
    parallel, logits_p = load_maps(net, Dataset(records), spec, tmp_path / "parallel")
    # Workers run one BLAS thread, this process several: float32 rounding differs slightly and
    # can flip a ReLU sitting at its kink. What must hold is that each worker's map is stored
    # under its own image: every parallel map is nearest to the serial map of the same image.
    a, b = serial[spec[0]].reshape(12, -1), parallel[spec[0]].reshape(12, -1)
    distances = ((a[:, None] - b[None]) ** 2).sum(axis=2)
    assert (distances.argmin(axis=0) == np.arange(12)).all()
    close = np.abs(a - b).max(axis=1) <= 1e-5 * np.abs(a).max(axis=1)
    assert close.sum() >= 10  # measured: 11 of 12 agree to 2e-7, one differs at a kink
    np.testing.assert_allclose(logits_s, logits_p, rtol=1e-4, atol=1e-5)


def test_workers_store_the_reductions_and_this_process_reads_only_them(scene, tmp_path,
                                                                      monkeypatch):
    records = read_manifest(scene["data"])
    net = weights.load(scene["weights"])
    dataset = Dataset(records)
    gradient = MapSpec.make("gradient", "max_abs")
    protocol = pr.MixBoxes((gradient,), sigmas=(1.0,))
    ensure_maps(scene["weights"], net, dataset, (gradient,), tmp_path / "cache", jobs=2,
                   batch_size=4, progress=False, reducers=(protocol,))
    cache = MapCache(tmp_path / "cache", network_key(net))
    key = reduction_key(protocol)
    stored = [cache.reduction_path(key, d, r.class_index) for r, d in zip(records, dataset.digests)]
    assert all(path.is_file() for path in stored)

    def no_maps_here(self, maps):
        raise AssertionError("the reduction was computed again in the evaluating process")

    monkeypatch.setattr(pr.MixBoxes, "reduce", no_maps_here)
    reduced, predicted = reduce_dataset(net, dataset, {"mix": protocol}, tmp_path / "cache",
                                           batch_size=5)
    monkeypatch.undo()
    maps, logits = load_maps(net, dataset, (gradient,), tmp_path / "cache")
    whole = protocol.reduce(maps)  # the workers' reductions, stored, equal the whole array's
    assert all(np.array_equal(reduced["mix"][name], whole[name]) for name in whole)
    assert np.array_equal(predicted, logits.argmax(axis=1))


def test_a_network_with_a_background_output_reads_every_class_one_output_up(scene, tmp_path):
    """MobileNetV2's output 0 is "background" (class_offset 1): a dataset class c is its output
    c + 1. Renumbering the same outputs that way must give the same maps, reductions and top-1
    answers as the plain numbering (checked on the small VGG, outputs 1 and 2 renamed 0 and 1)."""
    records = [r for r in read_manifest(scene["data"]) if r.class_index > 0]
    shifted = [replace(r, class_index=r.class_index - 1) for r in records]
    gradient = MapSpec.make("gradient", "max_abs")
    protocol = pr.ThresholdBoxes(gradient, "largest")
    found = {}
    for offset, rows in ((0, records), (1, shifted)):
        net = weights.load(scene["weights"])
        net.class_offset = offset
        dataset = Dataset(rows)
        ensure_maps(scene["weights"], net, dataset, (gradient,), tmp_path / "cache",
                       batch_size=4, progress=False)
        maps, logits = load_maps(net, dataset, (gradient,), tmp_path / "cache")
        reduced, predicted = reduce_dataset(net, dataset, {"t": protocol}, tmp_path / "cache")
        found[offset] = maps[gradient], reduced["t"], predicted, logits
    # The maps are those of the outputs 1 and 2 (the same cache entries: computed once).
    x = images.load_batch([r.path for r in records], PREP)
    direct = gradient.compute(weights.load(scene["weights"]), x,
                              np.array([r.class_index for r in records]))
    np.testing.assert_array_equal(found[0][0], found[1][0])
    np.testing.assert_allclose(found[1][0], direct, rtol=1e-5, atol=1e-6 * np.abs(direct).max())
    for key in found[0][1]:
        np.testing.assert_array_equal(found[0][1][key], found[1][1][key])
    top = found[0][3].argmax(axis=1)
    np.testing.assert_array_equal(found[0][2], top)
    np.testing.assert_array_equal(found[1][2], np.where(top > 0, top - 1, -1))


def test_box_models_refuse_another_network(scene, tmp_path):
    records = read_manifest(scene["data"])
    net, other = weights.load(scene["weights"]), weights.load(scene["other"])
    protocol = pr.ThresholdBoxes(MapSpec.make("gradient"), "union", 0.25)
    path = save_box_model(tmp_path / "boxes.h5", protocol, net, records)
    model = load_box_model(path).check(net, "gradient")
    assert model.protocol.fraction == 0.25 and model.meta["n_train"] == 12
    with pytest.raises(ValueError, match="fitted for vgg11"):
        model.check(other)
    with pytest.raises(ValueError, match="not 'deeplift'"):
        model.check(net, "deeplift")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="boxes.h5"):
        load_box_model(path)


def test_damaged_cache_entry_is_named(scene, tmp_path):
    net = weights.load(scene["weights"])
    cache = MapCache(tmp_path, network_key(net))
    path = cache.map_path(MapSpec.make("gradient"), "ab" * 32, 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not npy")
    with pytest.raises(ValueError, match="damaged cache entry"):
        cache.load(path)


def test_command_line_fit_evaluate_localize(scene, tmp_path, capsys):
    data, net_file = scene["data"], scene["weights"]
    common = ["--weights", str(net_file), "--cache", str(tmp_path / "cache")]
    model = tmp_path / "union.h5"
    assert main(["fit-boxes", str(data), *common, "--method", "gradient", "--protocol", "union",
                 "--out", str(model)]) == 0
    summary_json, plots = tmp_path / "summary.json", tmp_path / "plots"
    assert main(["evaluate", str(data), *common, "--boxes", str(model), "--preset", "gradient",
                 "--cv", "3", "--results", str(tmp_path / "r.csv"), "--summary-json",
                 str(summary_json), "--plot", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "| union |" in out and "| gradient (3-fold CV) |" in out and "center box" in out
    summary = json.loads(summary_json.read_text())
    assert summary["n"] == 12 and set(summary["baselines"]) == {"center box", "whole image"}
    assert set(summary["configs"]["union"]) == {"corloc", "corloc_top1", "ci95", "n", "per_class"}
    per_class = summary["configs"]["union"]["per_class"]
    assert set(per_class) == {"0", "1", "2"}  # JSON keys; 4 photos of each class
    assert np.isclose(np.mean(list(per_class.values())), summary["configs"]["union"]["corloc"])
    assert (plots / "corloc.png").stat().st_size > 5000

    photo = data / "p0.png"
    assert main(["localize", str(photo), "--weights", str(net_file), "--boxes", str(model),
                 "--out-dir", str(tmp_path / "figs")]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(answer["box"]) == 4 and answer["class_name"] in ("square", "disc", "bar")
    assert 0 <= answer["box"][0] <= answer["box"][2] <= 48
    assert (tmp_path / "figs" / "p0-box.png").exists()
    assert main(["localize", str(photo), "--weights", str(scene["other"]), "--boxes", str(model)]) == 2
    assert "fitted for vgg11" in capsys.readouterr().err


# ------------------------------------------------------------------ results file: what produced it

def copy_scene(scene, folder):
    """The scene's photos and manifest in ``folder`` (a dataset the test may edit)."""
    folder.mkdir()
    for path in scene["data"].glob("p*.png"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "manifest.csv").write_text((scene["data"] / "manifest.csv").read_text())
    return folder


def test_results_of_another_run_are_refused_not_reported(scene, tmp_path):
    data = copy_scene(scene, tmp_path / "data")
    results, cache = tmp_path / "results.csv", tmp_path / "cache"
    run = dict(cache_root=cache, results_path=results, k=3, progress=False)
    first, _ = ev.evaluate(scene["weights"], read_manifest(data), configs(), **run)
    kept = results.read_bytes()
    header = json.loads(kept.decode().splitlines()[0][len(results_file.RESULTS_MAGIC):])
    assert header["weights_sha256"] == sha256_file(scene["weights"])
    assert header["folds"] == 3 and header["seed"] == 0 and header["images"] == 12
    assert set(header["configs"]) == {"union", "fixed"}

    # The same run resumes: nothing appended, the same numbers.
    again, _ = ev.evaluate(scene["weights"], read_manifest(data), configs(), **run)
    assert again.rows == first.rows and results.read_bytes() == kept

    # Each changed input is named, and the file is left as it was.
    manifest = (data / "manifest.csv").read_text()
    rows = list(csv.reader(manifest.splitlines()))
    rows[1][6] = "0,0,48,40"  # one ground-truth box edited
    with open(data / "manifest.csv", "w", newline="") as stream:
        csv.writer(stream).writerows(rows)
    changes = [("digest of the images, classes and boxes", dict(records=read_manifest(data))),
               ("seed", dict(seed=1)), ("folds", dict(k=2)),
               ("weight file SHA-256", dict(weight_path=scene["other"]))]
    (data / "manifest.csv").write_text(manifest)
    for name, change in changes:
        arguments = {"weight_path": scene["weights"], "records": read_manifest(data),
                     "configs": configs(), **run, **change}
        with pytest.raises(ValueError, match=f"holds results of another run \\({name} "):
            ev.evaluate(**arguments)
        assert results.read_bytes() == kept
    changed = [ev.Config("union", factory=lambda: pr.ThresholdBoxes(MapSpec.make("gradient"), "largest"))]
    with pytest.raises(ValueError, match="configuration 'union' has other parameters"):
        ev.evaluate(scene["weights"], read_manifest(data), changed, **run)
    assert results.read_bytes() == kept

    # A new configuration joins the file: its rows are appended, the old ones kept.
    more = configs() + [ev.Config("largest", factory=lambda: pr.ThresholdBoxes(
        MapSpec.make("gradient", "max_abs"), "largest"))]
    grown, _ = ev.evaluate(scene["weights"], read_manifest(data), more, **run)
    assert grown.rows["union"] == first.rows["union"] and grown.rows["largest"]["n"] == 12
    assert results.read_bytes().split(b"\n", 1)[1].startswith(kept.split(b"\n", 1)[1])
    assert len(results_file.read_results(results)) == 48 + 12


@pytest.mark.parametrize("content", [b'{"n": 12, "configs": {"a": 1}}',  # no final newline
                                     b"config,image_id,true_class,predicted_class,xmin,ymin,xmax,"
                                     b"ymax,iou,hit,hit_top1\nunion,p0,0,1,0,0,1,1,0.1,0,0\nunion,p",
                                     b"\xff\xd8\xff\xe0 a photo", b"# sensloc results v1 {broken\n"])
def test_a_file_that_is_not_a_results_file_is_never_modified(scene, tmp_path, content):
    other = tmp_path / "summary.json"
    other.write_bytes(content)
    with pytest.raises(ValueError, match="summary.json"):
        ev.evaluate(scene["weights"], read_manifest(scene["data"]), configs(), tmp_path / "cache",
                    other, k=3, progress=False)
    assert other.read_bytes() == content
    with pytest.raises(ValueError, match="summary.json"):
        results_file.read_results(other)
    assert other.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no map computed either


def test_results_file_is_created_at_the_first_row_with_the_umask(scene, tmp_path):
    import os
    identity = {"configs": {"a": "1"}, "seed": 0}
    with pytest.raises(ValueError, match="the folder .*nodir does not exist"):
        results_file.ResultsFile(tmp_path / "nodir" / "r.csv", identity)
    results = results_file.ResultsFile(tmp_path / "r.csv", identity)
    assert not (tmp_path / "r.csv").exists()  # a run that fails before its first row leaves nothing
    record = read_manifest(scene["data"])[0]
    old = os.umask(0o027)
    try:
        results.add("a", record, 0, [0, 0, 4, 4], 0.25, False)
    finally:
        os.umask(old)
        results.close()
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o640
    assert [r["iou"] for r in results_file.read_results(tmp_path / "r.csv")] == ["0.250000"]
