"""The ``mix`` protocol (:class:`MixBoxes`) on synthetic maps whose right answer is known by construction."""
import json

import numpy as np
import pytest

from sensloc.localize.protocols import mix as best
from sensloc.localize import presets
from sensloc.localize import protocols as pr
from sensloc.localize.boxes import boxes_from_heatmap, iou, union_boxes
from sensloc.localize.folds import folds
from sensloc.saliency.maps import MapSpec

A = MapSpec.make("deeplift", "sum", reference="blur")
B = MapSpec.make("guided", "max_abs")
SIZE = 40


def blob_maps(n=40, seed=0, noise=0.05):
    """Two maps of one bright rectangle plus faint noise each; the boxes are exact."""
    rng = np.random.default_rng(seed)
    first, second, boxes = np.zeros((n, SIZE, SIZE)), np.zeros((n, SIZE, SIZE)), []
    for i in range(n):
        w, h = rng.integers(8, 25, size=2)
        x0, y0 = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
        first[i, y0:y0 + h, x0:x0 + w] = 1.0
        second[i, y0:y0 + h, x0:x0 + w] = 2.0
        boxes.append(np.array([[x0, y0, x0 + w, y0 + h]], float))
    first += noise * rng.random(first.shape)
    second += noise * rng.random(second.shape)
    return {A: first, B: second}, boxes


def scaled_truth(boxes, scale):
    return [best.scale_about_centre(b, scale, np.array([SIZE, SIZE])) for b in boxes]


def corloc(pred, truth):  # independent of sensloc.localize.metrics
    return np.mean([iou(p, t).max() >= 0.5 for p, t in zip(pred, truth)])


def test_union_boxes_box_every_pixel_above_the_level(rng):
    heat = rng.random((6, 23, 31)) ** 4
    heat[2] = 0.0                      # no positive value: the whole image
    heat[3] = -heat[3]
    fractions = (0.02, 0.3, 0.55, 1.0)
    fast = union_boxes(heat, fractions)
    assert fast.shape == (6, 4, 4)
    for n in range(6):
        for j, f in enumerate(fractions):
            rows, cols = np.nonzero(heat[n] >= f * heat[n].max())
            expected = ([0, 0, 31, 23] if heat[n].max() <= 0 else
                        [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
            np.testing.assert_array_equal(fast[n, j], expected)
            np.testing.assert_array_equal(boxes_from_heatmap(heat[n], f, "union"), expected)


def test_scores_are_the_training_corloc_of_every_candidate(rng):
    maps, boxes = blob_maps(n=12, seed=5)
    protocol = best.MixBoxes((A, B), sigmas=(2.0,), border_widths=(0.1,), scales=(1.0,))
    table = protocol.scores(maps, boxes)
    heat = best.mixed_heat([maps[A], maps[B]], 2.0, 0.1, 0.5)
    expected = [corloc(boxes_from_heatmap(heat, f, "union"), boxes) for f in pr.FRACTIONS]
    np.testing.assert_array_equal(table[(2.0, 0.1, 1.0, "union")], expected)


def test_mixed_heat_is_the_geometric_mean_of_khan_maps_with_the_border_mask(rng):
    maps = [rng.normal(size=(3, 30, 30)), rng.random((3, 30, 30))]
    mix = best.mixed_heat(maps, 2.0, 0.2, 0.5)
    khan = [pr.khan_heat(m, True, 2.0, 0.2, 0.5) for m in maps]
    np.testing.assert_allclose(mix, np.sqrt(khan[0] * khan[1]), rtol=1e-5, atol=1e-7)
    assert mix.dtype == np.float32 and mix.min() >= 0
    with pytest.raises(ValueError, match="share one"):
        best.mixed_heat([maps[0], maps[1][:2]], 2.0)


def test_fit_and_predict_recover_the_boxes():
    maps, boxes = blob_maps()
    protocol = best.MixBoxes((A, B)).fit(maps, boxes)
    search = protocol.search
    assert search.sigma in best.SIGMAS and search.border_width in best.BORDER_WIDTHS
    assert search.fraction in pr.FRACTIONS and search.scale in best.SCALES
    assert search.train_corloc == 1.0
    predicted = protocol.predict(maps)
    assert predicted.shape == (40, 4)
    assert np.all(predicted[:, :2] <= predicted[:, 2:])
    assert np.all((predicted >= 0) & (predicted <= SIZE))
    assert corloc(predicted, boxes) == 1.0


def test_params_round_trip_through_json():
    maps, boxes = blob_maps(seed=1)
    protocol = best.MixBoxes((A, B), sigmas=(1.0, 3.0)).fit(maps, boxes)
    params = json.loads(json.dumps(protocol.params()))
    again = best.MixBoxes.from_params(params)
    assert again.map_specs == (A, B) and again.search.sigmas == (1.0, 3.0)
    assert again.search.params() == protocol.search.params()
    np.testing.assert_array_equal(again.predict(maps), protocol.predict(maps))
    assert again.describe().startswith("mix(")


def test_fit_chooses_the_scale_its_training_labels_ask_for():
    maps, boxes = blob_maps(seed=2, noise=0.0)
    grid = dict(sigmas=(0.0,), threshold=0.95)  # unsmoothed maps: the union box is the blob
    for scale in (0.9, 1.1):
        protocol = best.MixBoxes((A, B), **grid).fit(maps, scaled_truth(boxes, scale))
        assert protocol.search.scale == scale and protocol.search.train_corloc == 1.0
    # The scores the choice was made from are the training CorLoc of every grid point.
    protocol = best.MixBoxes((A, B), **grid)
    table = protocol.scores(maps, scaled_truth(boxes, 1.1))
    assert set(table) == {(0.0, w, s, "union") for w in best.BORDER_WIDTHS for s in best.SCALES}
    assert table[(0.0, 0.1, 1.1, "union")].max() == 1.0
    assert table[(0.0, 0.1, 1.0, "union")].max() == 0.0


def two_blob_maps(n=30, seed=6):
    """One map per image: the object, a rectangle, and a smaller, fainter distractor square in
    the opposite corner region; the union box spans both, the largest component is the object."""
    rng = np.random.default_rng(seed)
    heat, boxes = np.zeros((n, SIZE, SIZE)), []
    for i in range(n):
        w, h = rng.integers(10, 15, size=2)
        x0, y0 = rng.integers(0, 6, size=2)
        heat[i, y0:y0 + h, x0:x0 + w] = 1.0
        d = rng.integers(3, 6)
        heat[i, SIZE - 4 - d:SIZE - 4, SIZE - 4 - d:SIZE - 4] = 0.9
        boxes.append(np.array([[x0, y0, x0 + w, y0 + h]], float))
    return {A: heat}, boxes


def test_the_search_chooses_the_largest_component_where_a_distractor_spoils_the_union():
    maps, boxes = two_blob_maps()
    grid = dict(sigmas=(0.0,), border_widths=(0.1,), scales=(1.0,), threshold=0.5)
    union = best.MixBoxes((A,), **grid).fit(maps, boxes)
    assert union.search.mode == "union" and union.search.train_corloc < 0.2
    both = best.MixBoxes((A,), modes=("union", "largest"), **grid).fit(maps, boxes)
    assert both.search.mode == "largest" and both.search.train_corloc == 1.0
    assert corloc(both.predict(maps), boxes) == 1.0
    # The scores say so: each mode's training CorLoc at every fraction, from its own boxes.
    table = best.MixBoxes((A,), modes=("union", "largest"), **grid).scores(maps, boxes)
    heat = best.mixed_heat([maps[A]], 0.0, 0.1, 0.5)
    for mode in ("union", "largest"):
        expected = [corloc(boxes_from_heatmap(heat, f, mode), boxes) for f in pr.FRACTIONS]
        np.testing.assert_array_equal(table[(0.0, 0.1, 1.0, mode)], expected)
    # Where both modes box the same (one blob per image), the tie goes to the union.
    single, truth = blob_maps(n=12, seed=7)
    assert best.MixBoxes((A, B), modes=("union", "largest"), **grid).fit(single, truth).search.mode == "union"
    # The choice survives JSON, and a box model written before modes existed cuts the union.
    params = json.loads(json.dumps(both.params()))
    again = best.MixBoxes.from_params(params)
    assert again.search.modes == ("union", "largest") and again.search.mode == "largest"
    np.testing.assert_array_equal(again.predict(maps), both.predict(maps))
    old = {k: v for k, v in union.params().items() if k not in ("modes", "mode")}
    assert best.MixBoxes.from_params(old).search.mode == "union"
    with pytest.raises(ValueError, match="modes must be distinct names"):
        best.BoxSearch(modes=("union", "hull"))
    with pytest.raises(ValueError, match="modes must be distinct names"):
        best.BoxSearch(modes=("union", "union"))
    with pytest.raises(ValueError, match="not among the modes"):
        best.BoxSearch(mode="largest")


def test_cross_validation_fits_on_the_training_folds_only():
    # Images of fold 0 say "boxes 10% larger than the blob", those of fold 1 "10% smaller":
    # each fold's protocol must learn the *other* fold's scale and so miss every test image.
    maps, boxes = blob_maps(n=30, seed=3, noise=0.0)
    fold = folds(30, 2, seed=0)
    truth = [best.scale_about_centre(b, 1.1 if f == 0 else 0.9, np.array([SIZE, SIZE]))
             for b, f in zip(boxes, fold)]
    factory = lambda: best.MixBoxes((A, B), sigmas=(0.0,), threshold=0.95)  # noqa: E731
    predicted, fitted = pr.cross_validated_boxes(factory, maps, truth, k=2, seed=0)
    assert [p.search.scale for p in fitted] == [0.9, 1.1]
    assert all(p.search.train_corloc == 1.0 for p in fitted)
    hits = [iou(p, t).max() >= 0.95 for p, t in zip(predicted, truth)]
    assert not any(hits)
    # Fitted on everything instead, it can only please one half.
    everything = factory().fit(maps, truth)
    assert everything.search.train_corloc == pytest.approx(max(np.mean(fold == 0), np.mean(fold == 1)))


def test_errors_and_presets():
    maps, boxes = blob_maps(n=5)
    with pytest.raises(ValueError, match="not fitted"):
        best.MixBoxes((A, B)).predict(maps)
    with pytest.raises(KeyError, match="needs the maps"):
        best.MixBoxes((A, B)).fit({A: maps[A]}, boxes)
    with pytest.raises(ValueError, match="ground truth for 4"):
        best.MixBoxes((A, B)).fit(maps, boxes[:4])
    with pytest.raises(ValueError, match="at least one"):
        best.MixBoxes(())
    squeeze, vgg = presets.preset("mix", "squeezenet1_0"), presets.preset("mix", "vgg16")
    assert squeeze.kind == "mix" and isinstance(squeeze, pr.Protocol)
    assert squeeze.map_specs[-1].options == (("layer", "fire9"),)
    assert vgg.map_specs[-1].options == (("layer", "relu5_3"),)
    assert squeeze.map_specs[0].options == (("reference", "blur"),)
    assert not squeeze.fitted and squeeze.params()["scale"] is None


def test_a_box_model_saved_with_the_old_kind_best_loads_as_mix(tmp_path):
    """Box models written while MixBoxes was BestBoxes say kind "best"; they load as MixBoxes."""
    import h5py
    from sensloc import nets
    from sensloc.data import images
    from sensloc.evaluation.boxmodels import load_box_model, save_box_model
    from sensloc.data.datasets import ImageRecord
    maps, boxes = blob_maps(n=10, seed=6)
    protocol = best.MixBoxes((A, B), sigmas=(2.0,), scales=(1.0,)).fit(maps, boxes)
    net = nets.random_parameters(nets.vgg_small(num_classes=3), 0)
    net.preprocessing = images.Preprocessing((64, 64), "RGB", 1 / 255, (0.5,) * 3, (0.25,) * 3,
                                             "squash")
    net.source = {"sha256": "0" * 64}
    records = [ImageRecord(path=tmp_path / "a.png", width=40, height=40, class_index=0,
                           wnid="n0", boxes=boxes[0], image_id="a")]
    path = save_box_model(tmp_path / "mix.h5", protocol, net, records)
    with h5py.File(path, "a") as f:
        assert f.attrs["protocol"] == "mix"
        f.attrs["protocol"] = "best"  # as BestBoxes wrote it
        # ... with the factors as one JSON string each, as before views existed
        params = json.loads(f["params"][()])
        params["specs"] = [A.to_json(), B.to_json()]
        del f["params"]
        f.create_dataset("params", data=json.dumps(params))
    loaded = load_box_model(path).protocol
    assert type(loaded) is best.MixBoxes and loaded.kind == "mix"
    assert loaded.factors == ((A,), (B,))
    np.testing.assert_array_equal(loaded.predict(maps), protocol.predict(maps))


# --------------------------------------------------------------------------- views of the image

def small_squeezenet(symmetric):
    """A random SqueezeNet with 10 classes; ``symmetric`` makes every kernel its own mirror
    image, ``w = (w + w[..., ::-1]) / 2``, so that the network commutes with mirroring."""
    from sensloc import nets
    net = nets.random_parameters(nets.squeezenet1_0(num_classes=10), seed=0)
    if symmetric:
        net.load_parameters({name: {"weight": (a["weight"] + a["weight"][..., ::-1]) / 2,
                                    "bias": a["bias"]} for name, a in net.parameters().items()})
    return net


def test_mirrored_views_of_a_mirror_symmetric_network_equal_the_image_s_map(rng):
    # 67 pixels: every convolution and pool grid of SqueezeNet covers the input exactly, so
    # with mirror-symmetric kernels the map of the mirrored photo is the mirrored map.
    x = rng.normal(size=(2, 3, 67, 67)).astype(np.float32)
    targets = np.array([3, 7])
    plain, mirrored = MapSpec.make("grad_cam", layer="fire9"), \
        MapSpec.make("grad_cam", layer="fire9", mirror=True)
    symmetric = small_squeezenet(True)
    np.testing.assert_allclose(mirrored.compute(symmetric, x, targets),
                               plain.compute(symmetric, x, targets), rtol=1e-4, atol=1e-6)
    # An ordinary network does not commute with mirroring: the view is then the map of the
    # mirrored photo, mirrored back, and a different map.
    net = small_squeezenet(False)
    got = mirrored.compute(net, x, targets)
    np.testing.assert_allclose(got, plain.compute(net, x[..., ::-1].copy(), targets)[..., ::-1],
                               rtol=1e-5, atol=1e-7)
    assert np.abs(got - plain.compute(net, x, targets)).max() > 0.05 * got.max()


def test_zoomed_views_explain_the_resized_image_and_return_the_input_size(rng):
    from sensloc import nets
    from sensloc.saliency import postprocess
    x = rng.normal(size=(2, 3, 67, 67)).astype(np.float32)
    targets = np.array([1, 2])
    net = small_squeezenet(False)
    zoomed = MapSpec.make("gradient", "max_abs", zoom=1.5)
    got = zoomed.compute(net, x, targets)
    assert got.shape == (2, 67, 67) and zoomed.name == "gradient-max_abs-zoom=1.5"
    big = postprocess.upsample(x.reshape(6, 67, 67), (100, 100)).reshape(2, 3, 100, 100)
    expected = postprocess.upsample(MapSpec.make("gradient").compute(net, big, targets), (67, 67))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="fully convolutional"):
        zoomed.compute(nets.vgg_small(), np.zeros((1, 3, 32, 32), np.float32), [0])
    with pytest.raises(ValueError, match="zoom must be"):
        MapSpec.make("gradient", zoom=0)


def test_views_have_their_own_cache_names_and_survive_json():
    plain = MapSpec.make("deeplift", "sum", reference="blur")
    view = MapSpec.make("deeplift", "sum", reference="blur", mirror=True, zoom=1.5)
    assert plain.name == "deeplift-reference=blur-sum"  # unchanged: older caches stay valid
    assert view.name == "deeplift-reference=blur-sum-mirror-zoom=1.5" and view != plain
    assert MapSpec.from_json(view.to_json()) == view
    old = json.dumps({"method": "guided", "reduce": "max_abs", "options": {}})
    assert MapSpec.from_json(old) == MapSpec.make("guided")


def test_view_average_normalizes_each_view_before_averaging():
    first = np.array([[[2.0, -1.0], [0.0, 1.0]]])
    second = np.array([[[10.0, 10.0], [0.0, -5.0]]])
    np.testing.assert_allclose(best.view_average([first, second]),
                               [[[1.0, 0.5], [0.0, 0.25]]])
    np.testing.assert_array_equal(best.view_average([first, np.zeros_like(first)]),
                                  [[[0.5, 0.0], [0.0, 0.25]]])
    with pytest.raises(ValueError, match="share one"):
        best.view_average([first, second[:, :1]])


def test_a_factor_of_views_is_their_average_in_the_mix():
    maps, boxes = blob_maps(n=6, seed=4)
    mirror = MapSpec.make("deeplift", "sum", reference="blur", mirror=True)
    maps[mirror] = maps[A][:, :, ::-1].copy()
    protocol = best.MixBoxes([(A, mirror), B], sigmas=(2.0,), border_widths=(0.1,),
                              scales=(1.0,)).fit(maps, boxes)
    assert protocol.map_specs == (A, mirror, B)
    expected = best.mixed_heat([best.view_average([maps[A], maps[mirror]]), maps[B]], 2.0,
                               0.1, 0.5)
    np.testing.assert_array_equal(protocol.heat(maps), expected)
    again = best.MixBoxes.from_params(json.loads(json.dumps(protocol.params())))
    assert again.factors == protocol.factors
    np.testing.assert_array_equal(again.predict(maps), protocol.predict(maps))


def test_occlusion_map_kinds_run_the_method_and_name_their_patches(rng):
    from sensloc import saliency
    x = rng.normal(size=(2, 3, 67, 67)).astype(np.float32)
    targets = np.array([1, 2])
    net = small_squeezenet(False)
    spec = MapSpec.make("occlusion", "sum", window=24, stride=12, baseline=0.0)
    assert spec.name == "occlusion-baseline=0.0-stride=12-window=24-sum"
    assert MapSpec.from_json(spec.to_json()) == spec
    expected = saliency.occlusion(net, x, targets, window=24, stride=12).sum(axis=1)
    np.testing.assert_allclose(spec.compute(net, x, targets), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="takes options"):
        MapSpec.make("occlusion", patch=8)
