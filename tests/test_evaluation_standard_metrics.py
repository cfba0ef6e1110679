"""``sensloc evaluate --metrics``: every metric for every configuration and map kind, in the
printed table, the summary JSON and the figures, on generated photos and a small VGG; the
numbers equal the metric functions applied to the cached maps directly."""
import json

import numpy as np
import pytest

from sensloc import weights
from sensloc.cli.main import main
from sensloc.data.datasets import read_manifest
from sensloc.evaluation import runner as ev
from sensloc.evaluation.maps import Dataset, load_maps
from sensloc.evaluation.standard_metrics import METRIC_NAMES, parse_metrics
from sensloc.localize import wsol_metrics as wsol
from sensloc.localize.folds import folds
from sensloc.saliency.maps import MapSpec
from test_localize_evaluate import PREP, scene  # noqa: F401 (scene is a fixture)

def test_metric_names():
    assert parse_metrics("all") == METRIC_NAMES
    assert parse_metrics("pointing, maxboxacc") == ("maxboxacc", "pointing")
    with pytest.raises(ValueError, match="unknown metric bogus"):
        parse_metrics("maxboxacc,bogus")


def test_evaluate_with_every_metric(scene, tmp_path, capsys):
    data, common = scene["data"], ["--weights", str(scene["weights"]), "--cache",
                                   str(tmp_path / "cache")]
    summary_json, plots = tmp_path / "summary.json", tmp_path / "plots"
    assert main(["evaluate", str(data), *common, "--preset", "gradient", "khan", "--cv", "3",
                 "--results", str(tmp_path / "r.csv"), "--summary-json", str(summary_json),
                 "--metrics", "all", "--metric-images", "3", "--plot", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "| map | MaxBoxAcc (CV) |" in out and "| method: gradient-max_abs |" in out
    metrics = json.loads(summary_json.read_text())["metrics"]
    rows = metrics["rows"]
    assert metrics["images"] == 12 and metrics["network_images"] == 3
    assert set(rows) == {"gradient (3-fold CV)", "khan (3-fold CV)", "method: gradient-max_abs",
                         "method: deeplift-reference=zero-sum", "method: guided-max_abs"}
    for name, row in rows.items():
        for key in ("maxboxacc", "maxboxaccv2", "gt_known_loc", "top1_loc", "pointing", "energy"):
            assert 0 <= row[key] <= 1, (name, key)
        assert 0 <= row["deletion"] <= 1 and 0 <= row["insertion"] <= 1
        assert row["top1_loc"] <= row["gt_known_loc"] == row["maxboxacc"]
        assert row["maxboxacc"] <= row["maxboxacc_reference"] + 1e-12  # CV cannot beat the max
    # The gradient preset reads the cached gradient map itself: the same numbers.
    assert rows["gradient (3-fold CV)"]["maxboxacc"] == rows["method: gradient-max_abs"]["maxboxacc"]
    assert all(-1 <= rows[m]["sanity"] <= 1 for m in rows if m.startswith("method: "))

    # The runner's numbers are the metric functions on the cached maps, folds of seed 0.
    records = read_manifest(data)
    net = weights.load(scene["weights"])
    spec = MapSpec.make("gradient", "max_abs")
    maps, logits = load_maps(net, Dataset(records), [spec], tmp_path / "cache")
    gt_input = [ev.photo_to_input(r.boxes, (r.width, r.height), PREP) for r in records]
    fold = folds(12, 3, 0)
    cv, _ = wsol.cross_validated_hits(wsol.box_accuracy_hits(maps[spec], gt_input), fold)
    assert rows["method: gradient-max_abs"]["maxboxacc"] == pytest.approx(cv.mean())
    v2, _ = wsol.cross_validated_hits(wsol.box_accuracy_hits(
        maps[spec], gt_input, iou_levels=wsol.IOU_V2, multi_region=True), fold)
    assert rows["method: gradient-max_abs"]["maxboxaccv2"] == pytest.approx(v2.mean())
    energy = wsol.energy_in_boxes(maps[spec], gt_input).mean()
    assert rows["method: gradient-max_abs"]["energy"] == pytest.approx(energy)
    # Pointing: the peak of each map, in photo pixels (48/32 wide, 40/32 high), vs the boxes.
    peaks = wsol.peak_points(maps[spec]) * np.array([48 / 32, 40 / 32])
    found = wsol.pointing_hits(peaks, [r.boxes for r in records])
    assert rows["method: gradient-max_abs"]["pointing_all_images"] == pytest.approx(found.mean())

    for figure in ("corloc.png", "corloc-by-size.png", "maxboxacc-thresholds.png",
                   "deletion-insertion.png", "best-worst-khan__3-fold_CV_.png"):
        assert (plots / figure).stat().st_size > 5000, figure


def test_without_metrics_the_summary_has_none(scene, tmp_path, capsys):
    summary_json = tmp_path / "summary.json"
    assert main(["evaluate", str(scene["data"]), "--weights", str(scene["weights"]), "--cache",
                 str(tmp_path / "cache"), "--preset", "gradient", "--cv", "3", "--results",
                 str(tmp_path / "r.csv"), "--summary-json", str(summary_json)]) == 0
    assert "| map |" not in capsys.readouterr().out
    assert "metrics" not in json.loads(summary_json.read_text())


def test_an_unknown_metric_is_refused_before_any_work(scene, tmp_path, capsys):
    assert main(["evaluate", str(scene["data"]), "--weights", str(scene["weights"]), "--cache",
                 str(tmp_path / "cache"), "--preset", "gradient", "--metrics", "maxboxacc,iou",
                 "--results", str(tmp_path / "r.csv")]) == 2
    assert "--metrics: unknown metric iou" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r.csv").exists()


def test_metrics_stream_through_batches(scene, tmp_path, monkeypatch):
    """The metrics read the maps a few images at a time: the numbers of batches of 5 equal one
    batch of all 12, and, for ``mix`` (whose map depends on each fold's fit), the metric
    functions applied to the whole arrays of the fold maps."""
    from sensloc.evaluation import standard_metrics as sm
    original, calls, summaries = sm.standard_metrics, [], {}
    for size in (5, 12):
        def batched(*args, size=size, **kwargs):
            calls.append(args)
            return original(*args, **kwargs, batch_size=size)
        monkeypatch.setattr(sm, "standard_metrics", batched)
        summaries[size] = ev.evaluate(scene["weights"], read_manifest(scene["data"]),
                                      [ev.Config("mix", factory=lambda: _preset("mix")),
                                       ev.Config("khan", factory=lambda: _preset("khan"))],
                                      tmp_path / "cache", tmp_path / f"r{size}.csv", k=3,
                                      metrics=METRIC_NAMES[:6] + ("deletion",),
                                      metric_images=4, progress=False)[0].metrics
    assert summaries[5].rows == summaries[12].rows
    assert set(summaries[5].rows) >= {"mix", "khan"}

    # mix: fold f's protocol boxes every image; image n is scored on its own fold's map.
    net, dataset, cache_root, configs, fitted = calls[0][:5]
    records = read_manifest(scene["data"])
    specs = _preset("mix").map_specs
    maps, _ = load_maps(net, Dataset(records), specs, cache_root)
    gt_input = [ev.photo_to_input(r.boxes, (r.width, r.height), PREP) for r in records]
    fold = folds(12, 3, 0)
    heats = [p.heat(maps) for p in fitted["mix"]]
    cv, _ = wsol.cross_validated_hits([wsol.box_accuracy_hits(h, gt_input) for h in heats], fold)
    assert summaries[5].rows["mix"]["maxboxacc"] == pytest.approx(cv.mean(), abs=1e-12)
    outside = np.stack([heats[f][n] for n, f in enumerate(fold)]).astype(np.float32)
    energy = wsol.energy_in_boxes(outside, gt_input).mean()
    assert summaries[5].rows["mix"]["energy"] == pytest.approx(energy, rel=1e-12)


def _preset(name):
    from sensloc.localize.presets import preset
    return preset(name, "vgg11")
