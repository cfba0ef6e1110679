"""The objectness protocol (``best`` preset): cell means, coverage, the ridge fit against an
independent least-squares solve, and boxes on synthetic images whose answer is known."""
import json
from dataclasses import replace

import numpy as np
import pytest

from sensloc.localize.protocols import objectness as ob
from sensloc.localize import presets
from sensloc.localize.folds import folds
from sensloc.localize.protocols.threshold import khan_heat
from sensloc.localize.boxes import iou
from sensloc.saliency.maps import MapSpec

L1 = MapSpec.make("activations", layer="pool8")
L2 = MapSpec.make("activations", layer="fire9")
E = MapSpec.make("guided", "max_abs")
SIZE, GRID = 40, 8


def synthetic(n=60, seed=0):
    """Images with one rectangle; channel 0 of the activations fires inside it (plus noise),
    the other channels are noise, and the saliency map lights the rectangle and a stray blob.
    Rectangles are aligned to the 5-pixel cells, so the coverage targets are 0 or 1."""
    rng = np.random.default_rng(seed)
    acts = rng.random((n, 6, GRID, GRID)) * 0.3
    heat = rng.random((n, SIZE, SIZE)) * 0.05
    boxes = []
    for i in range(n):
        w, h = rng.integers(2, 6, size=2)
        x0, y0 = rng.integers(0, GRID - w + 1), rng.integers(0, GRID - h + 1)
        acts[i, 0, y0:y0 + h, x0:x0 + w] += 1.0
        heat[i, 5 * y0:5 * (y0 + h), 5 * x0:5 * (x0 + w)] += 1.0
        sy, sx = rng.integers(0, SIZE - 4, size=2)
        heat[i, sy:sy + 4, sx:sx + 4] += 1.0          # context the activations do not share
        boxes.append(5.0 * np.array([[x0, y0, x0 + w, y0 + h]]))
    return {L1: acts, L2: np.sqrt(acts), E: heat}, boxes


def test_box_coverage_is_the_covered_fraction_of_each_cell():
    boxes = [np.array([[0, 0, 20, 10]]),                       # two whole cells of 10 x 10
             np.array([[5, 0, 15, 10], [10, 0, 20, 10]]),     # overlapping: the union counts once
             np.array([[-5, 30, 3, 60]])]                      # clipped to the image
    t = ob.box_coverage(boxes, (40, 40), (4, 4))
    np.testing.assert_allclose(t[0, 0], [1, 1, 0, 0])
    np.testing.assert_allclose(t[1, 0], [0.5, 1, 0, 0])
    np.testing.assert_allclose(t[2, 3], [0.3, 0, 0, 0])
    assert t[:, 1:3].sum() == 0 and t[0, 1:].sum() == 0


def test_cell_features_stack_sqrt_activations_and_recipe_cell_means(rng):
    acts = [rng.random((2, 3, 4, 4)), rng.random((2, 5, 4, 4))]
    heat = rng.normal(size=(2, 20, 20))
    phi = ob.cell_features(acts, [heat], 2.0)
    assert phi.shape == (2, 16, 9) and phi.dtype == np.float32
    np.testing.assert_allclose(phi[1, 6, :3], np.sqrt(acts[0][1, :, 1, 2]), rtol=1e-6)
    np.testing.assert_allclose(phi[1, 6, 3:8], np.sqrt(acts[1][1, :, 1, 2]), rtol=1e-6)
    cell = khan_heat(heat, True, 2.0, border_width=0.0)[1, 5:10, 10:15].mean()
    assert phi[1, 6, 8] == pytest.approx(cell, rel=1e-5)
    # another grid is resampled onto the first layer's (tests/test_localize_two_nets.py);
    # other images are refused
    with pytest.raises(ValueError, match="of the same N images"):
        ob.cell_features([acts[0], acts[1][:1]], [heat], 2.0)
    bad = acts[0].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ob.cell_features([bad], [heat], 2.0)


def test_ridge_weights_match_an_independent_least_squares_solve():
    maps, boxes = synthetic(n=30)
    lam = 7.0
    protocol = ob.ObjectnessBoxes((L1, L2), (E,), lambdas=(lam,), sigmas=(2.0,)).fit(maps, boxes)
    phi = ob.cell_features([maps[L1], maps[L2]], [maps[E]], 4.0).reshape(-1, 13).astype(np.float64)
    t = ob.box_coverage(boxes, (SIZE, SIZE), (GRID, GRID)).reshape(-1)
    sd = phi.std(axis=0)
    z = np.hstack([(phi - phi.mean(axis=0)) / sd, np.ones((len(phi), 1))])
    # min ||z w - t||^2 + lam ||w[:-1]||^2 as one stacked least-squares problem
    penalty = np.sqrt(lam) * np.eye(14)[:-1]
    w = np.linalg.lstsq(np.vstack([z, penalty]), np.concatenate([t, np.zeros(13)]), rcond=None)[0]
    np.testing.assert_allclose(protocol.weights, w, rtol=1e-7, atol=1e-9)
    assert protocol.lam == lam


def test_lambda_is_chosen_by_the_inner_cross_validation():
    maps, boxes = synthetic(n=30, seed=1)
    lambdas = (1e-2, 1e2, 1e6)
    protocol = ob.ObjectnessBoxes((L1,), (E,), lambdas=lambdas, sigmas=(2.0,)).fit(maps, boxes)
    phi = ob.cell_features([maps[L1]], [maps[E]], 4.0).astype(np.float64)
    t = ob.box_coverage(boxes, (SIZE, SIZE), (GRID, GRID)).reshape(30, -1)
    d = phi.shape[2]
    mean, sd = phi.reshape(-1, d).mean(axis=0), phi.reshape(-1, d).std(axis=0)
    fold = folds(30, 5, seed=0)
    errors = []
    for lam in lambdas:
        held_out = np.empty_like(t)
        for f in range(5):
            z = np.concatenate([(phi[fold != f].reshape(-1, d) - mean) / sd,
                                np.ones(((fold != f).sum() * GRID * GRID, 1))], axis=1)
            a = np.vstack([z, np.sqrt(lam) * np.eye(d + 1)[:-1]])
            w = np.linalg.lstsq(a, np.concatenate([t[fold != f].ravel(), np.zeros(d)]), rcond=None)[0]
            held_out[fold == f] = ((phi[fold == f] - mean) / sd) @ w[:-1] + w[-1]
        errors.append(np.mean((held_out - t) ** 2))
    assert protocol.lam == lambdas[int(np.argmin(errors))]
    assert protocol.cell_mse == pytest.approx(min(errors), rel=1e-9)


def test_objectness_boxes_find_the_rectangle_and_ignore_the_stray_blob():
    maps, boxes = synthetic(n=80)
    train, test = np.arange(60), np.arange(60, 80)
    protocol = ob.ObjectnessBoxes((L1, L2), (E,), sigmas=(1.0,))
    protocol.fit({s: m[train] for s, m in maps.items()}, [boxes[i] for i in train])
    predicted = protocol.predict({s: m[test] for s, m in maps.items()})
    hits = [iou(p, boxes[i]).max() >= 0.5 for p, i in zip(predicted, test)]
    assert np.mean(hits) >= 0.9
    # The saliency map alone boxes the stray blob too: most union boxes miss.
    from sensloc.localize.protocols.mix import MixBoxes
    alone = MixBoxes((E,), sigmas=(1.0,)).fit({E: maps[E][train]}, [boxes[i] for i in train])
    alone_boxes = alone.predict({E: maps[E][test]})
    assert np.mean([iou(p, boxes[i]).max() >= 0.5 for p, i in zip(alone_boxes, test)]) < 0.7


def test_params_round_trip_and_errors():
    maps, boxes = synthetic(n=25)
    protocol = ob.ObjectnessBoxes((L1,), (E,), lambdas=(1.0, 10.0), sigmas=(2.0,),
                                  modes=("union", "largest")).fit(maps, boxes)
    assert protocol.search.mode in ("union", "largest")
    params = json.loads(json.dumps(protocol.params()))
    again = presets.protocol_from_params("objectness", params)
    np.testing.assert_array_equal(again.predict(maps), protocol.predict(maps))
    assert again.map_specs == (L1, E) and again.fitted
    assert (again.search.modes, again.search.mode) == (("union", "largest"), protocol.search.mode)
    with pytest.raises(ValueError, match="not fitted"):
        ob.ObjectnessBoxes((L1,), (E,)).predict(maps)
    with pytest.raises(KeyError, match="needs the maps"):
        ob.ObjectnessBoxes((L1,), (E,)).fit({E: maps[E]}, boxes)
    with pytest.raises(ValueError, match="ground truth for 3"):
        ob.ObjectnessBoxes((L1,), (E,)).fit(maps, boxes[:3])
    with pytest.raises(ValueError, match="activations"):
        ob.ObjectnessBoxes((E,), (E,))


def test_the_best_preset_is_the_objectness_protocol():
    squeeze = presets.preset("best", "squeezenet1_0")
    assert squeeze.kind == "objectness"
    assert [s.options for s in squeeze.layers] == [(("layer", "pool8"),), (("layer", "fire9"),)]
    assert len(squeeze.evidence) == 4
    vgg = presets.preset("best", "vgg16")
    assert [dict(s.options)["layer"] for s in vgg.layers] == ["pool4", "relu5_3"]
    assert presets.preset("mix", "squeezenet1_0").kind == "mix"
    # best boxes the union of the hot pixels; best_two_nets may box their largest region too
    assert squeeze.search.modes == ("union",)
    assert presets.preset("best_two_nets", "squeezenet1_0").search.modes == ("union", "largest")


def test_activation_maps_are_the_layer_outputs():
    from sensloc import nets
    net = nets.random_parameters(nets.vgg_small(), 0)
    x = np.random.default_rng(0).normal(size=(2, 3, *net.input_size)).astype(np.float32)
    layer = [name for name, out in net.forward(x).outputs.items() if out.ndim == 4][-1]
    spec = MapSpec.make("activations", layer=layer)
    np.testing.assert_array_equal(spec.compute(net, x, np.array([0, 1])),
                                  net.forward(x).outputs[layer])
    assert spec.name == f"activations-layer={layer}"
    with pytest.raises(KeyError, match="no layer"):
        MapSpec.make("activations", layer="nowhere").compute(net, x, np.array([0, 1]))
    # the mirrored view: the mirrored image's layer output, mirrored back along its columns
    mirrored = MapSpec.make("activations", layer=layer, mirror=True)
    np.testing.assert_array_equal(mirrored.compute(net, x, np.array([0, 1])),
                                  net.forward(x[..., ::-1].copy()).outputs[layer][..., ::-1])
    assert mirrored.name == f"activations-layer={layer}-mirror"
    with pytest.raises(ValueError, match="no zoom"):
        MapSpec.make("activations", layer=layer, zoom=2.0)


def bright_square_photos(folder, count, seed):
    """``count`` 32 x 32 photos of a bright 14 px square on noise, with its box, written to
    ``folder`` with their manifest (image ids ``<folder name><i>``)."""
    import csv
    from PIL import Image
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "manifest.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["file", "width", "height", "wnid", "class_index", "class_name", "boxes",
                         "image_id"])
        for i in range(count):
            photo = (rng.random((32, 32, 3)) * 80).astype(np.uint8)
            x0, y0 = rng.integers(0, 16, size=2)
            photo[y0:y0 + 14, x0:x0 + 14] = 200
            Image.fromarray(photo).save(folder / f"p{i}.png")
            writer.writerow([f"p{i}.png", 32, 32, "n0", i % 3, "thing",
                             f"{x0},{y0},{x0 + 14},{y0 + 14}", f"{folder.name}{i}"])
    return folder


def test_fit_boxes_and_localize_with_the_best_preset(tmp_path, capsys):
    """The command line end to end: a VGG16 (random weights, 32 px input) fits ``best`` on
    photos of a bright rectangle, saves the model, and boxes a photo with it."""
    from sensloc import nets
    from sensloc import weights
    from sensloc.data import images
    from sensloc.cli.main import main
    prep = images.Preprocessing((32, 32), "RGB", 1 / 255, (0.5,) * 3, (0.25,) * 3, "squash")
    net = nets.random_parameters(nets.build("vgg16", num_classes=3, input_size=32, hidden=16), 3)
    net_file = weights.save(tmp_path / "vgg16.h5", net, prep, ["a", "b", "c"], "random-3", "3" * 64,
                            architecture_options={"num_classes": 3, "input_size": 32, "hidden": 16})
    bright_square_photos(tmp_path, 10, seed=0)
    common = ["--weights", str(net_file), "--cache", str(tmp_path / "cache")]
    model = tmp_path / "best.h5"
    assert main(["fit-boxes", str(tmp_path), *common, "--preset", "best", "--out", str(model)]) == 0
    from sensloc.evaluation.boxmodels import load_box_model
    loaded = load_box_model(model).protocol
    assert loaded.kind == "objectness" and loaded.fitted
    assert [dict(s.options)["layer"] for s in loaded.layers] == ["pool4", "relu5_3"]
    capsys.readouterr()
    assert main(["localize", str(tmp_path / "p0.png"), "--weights", str(net_file), "--boxes",
                 str(model), "--out-dir", str(tmp_path / "figs")]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= answer["box"][0] < answer["box"][2] <= 32


C = MapSpec.make("class_contributions")


def with_views(maps, seed=0):
    """The synthetic maps plus class contributions (either sign) and every kind's mirrored
    view: the photo's maps flipped plus noise, so the two views differ."""
    rng = np.random.default_rng(seed)
    maps = dict(maps)
    maps[C] = maps[L1][:, :3] * rng.normal(size=(1, 3, 1, 1))
    for spec in list(maps):
        flipped = maps[spec][..., ::-1]
        maps[replace(spec, mirror=True)] = flipped + 0.1 * rng.random(flipped.shape)
    return maps


def test_cell_features_put_class_contributions_through_a_signed_square_root(rng):
    acts, heat = rng.random((2, 3, 4, 4)), rng.normal(size=(2, 20, 20))
    contributions = rng.normal(size=(2, 2, 4, 4))
    phi = ob.cell_features([acts], [heat], 2.0, [contributions])
    assert phi.shape == (2, 16, 6)
    expected = np.sign(contributions[1, :, 1, 2]) * np.sqrt(np.abs(contributions[1, :, 1, 2]))
    np.testing.assert_allclose(phi[1, 6, 3:5], expected, rtol=1e-6)
    assert (phi[..., 3:5] < 0).any()  # the sign is kept
    np.testing.assert_array_equal(phi[..., [0, 1, 2, 5]], ob.cell_features([acts], [heat], 2.0))


def test_mirror_averages_the_two_views_objectness():
    """mirror=True: the ridge is fitted on the photos as they are (the same weights as without
    views), and the map is the mean of both views' cell predictions, boxed by the search."""
    base, boxes = synthetic(n=30)
    maps = with_views(base)
    kw = dict(lambdas=(1.0, 100.0), sigmas=(2.0,), contributions=(C,))
    viewed = ob.ObjectnessBoxes((L1, L2), (E,), mirror=True, **kw)
    assert set(viewed.map_specs) == {L1, L2, C, E} | {replace(s, mirror=True)
                                                       for s in (L1, L2, C, E)}
    viewed.fit(maps, boxes)
    single = ob.ObjectnessBoxes((L1, L2), (E,), **kw).fit(maps, boxes)
    np.testing.assert_array_equal(viewed.weights, single.weights)
    assert viewed.lam == single.lam
    cells = []
    for mirrored in (False, True):
        specs = [replace(s, mirror=mirrored) for s in (L1, L2, C, E)]
        phi = ob.cell_features([maps[specs[0]], maps[specs[1]]], [maps[specs[3]]], 4.0,
                               [maps[specs[2]]]).astype(np.float64)
        cells.append(((phi - viewed.mean) / viewed.sd) @ viewed.weights[:-1] + viewed.weights[-1])
    expected = np.maximum((cells[0] + cells[1]) / 2, 0).reshape(-1, GRID, GRID)
    from sensloc.saliency.postprocess import upsample
    objectness = viewed.objectness(maps)
    np.testing.assert_allclose(objectness, upsample(expected.astype(np.float32), (SIZE, SIZE)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(viewed.predict(maps), viewed.search.predict([objectness]))
    # the file keeps both, and a file written before them reads as neither
    again = presets.protocol_from_params("objectness", json.loads(json.dumps(viewed.params())))
    assert again.mirror and again.contributions == (C,)
    np.testing.assert_array_equal(again.predict(maps), viewed.predict(maps))
    older = {k: v for k, v in ob.ObjectnessBoxes((L1,), (E,)).params().items()
             if k not in ("mirror", "contributions")}
    older = presets.protocol_from_params("objectness", older)
    assert (older.mirror, older.contributions) == (False, ())
    with pytest.raises(ValueError, match="mirror=True adds"):
        ob.ObjectnessBoxes((replace(L1, mirror=True),), (E,))
    with pytest.raises(ValueError, match="class_contributions"):
        ob.ObjectnessBoxes((L1,), (E,), contributions=(L2,))
    with pytest.raises(KeyError, match="-mirror"):
        ob.ObjectnessBoxes((L1,), (E,), mirror=True).fit(base, boxes)


def test_cached_reductions_are_keyed_by_what_the_features_depend_on():
    """Another lambda grid or box search reuses the cached cell features; other map kinds,
    views or networks do not (MixBoxes' reduction is its search's boxes: its grid counts)."""
    from sensloc.evaluation.map_cache import reduction_key
    from sensloc.localize.protocols.mix import MixBoxes
    key = reduction_key(ob.ObjectnessBoxes((L1,), (E,)))
    assert reduction_key(ob.ObjectnessBoxes((L1,), (E,), lambdas=(3.0,), fractions=(0.5,),
                                            modes=("union", "largest"))) == key
    for other in (ob.ObjectnessBoxes((L1, L2), (E,)), ob.ObjectnessBoxes((L1,), (E,), mirror=True),
                  ob.ObjectnessBoxes((L1,), (E,), contributions=(C,)),
                  ob.ObjectnessBoxes((L1,), (E,), evidence_sigma=2.0),
                  ob.ObjectnessBoxes((L1,), (E,)).use_networks({"squeezenet1_0": "a" * 64})):
        assert reduction_key(other) != key
    assert reduction_key(MixBoxes((E,), fractions=(0.5,))) != reduction_key(MixBoxes((E,)))
