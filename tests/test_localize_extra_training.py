"""Photos that only train the objectness ridge (``ObjectnessBoxes.use_extra_training``): their
sums against rows at hand, the weighted fit against an independent least-squares solve, the
inner cross-validation's choice of their weight, and the evaluation that never scores them."""
import numpy as np
import pytest

from sensloc.localize.folds import folds
from sensloc.localize.protocols import objectness as ob

from test_localize_objectness import E, GRID, L1, L2, SIZE, bright_square_photos, synthetic


def features_and_targets(maps, boxes):
    phi = ob.cell_features([maps[L1], maps[L2]], [maps[E]], 4.0).astype(np.float64)
    t = ob.box_coverage(boxes, (SIZE, SIZE), (GRID, GRID)).reshape(len(boxes), -1)
    return phi, t


def standardized_rows(phi, mean, sd):
    rows = phi.reshape(-1, phi.shape[-1])
    return np.hstack([(rows - mean) / sd, np.ones((len(rows), 1))])


def test_cell_moments_add_up_and_standardize_like_rows_at_hand(rng):
    phi = rng.normal(3.0, 2.0, size=(500, 7))
    t = rng.random(500)
    moments = ob.CellMoments.of(phi[:200], t[:200]) + ob.CellMoments.of(phi[200:], t[200:])
    whole = ob.CellMoments.of(phi, t)
    assert moments.count == 500
    np.testing.assert_allclose(moments.gram, whole.gram, rtol=1e-13)
    mean, sd = rng.normal(size=7), rng.random(7) + 0.5   # another set's standardization
    gram, moment = moments.standardized(mean, sd)
    z = standardized_rows(phi, mean, sd)
    np.testing.assert_allclose(gram, z.T @ z, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(moment, z.T @ t, rtol=1e-11, atol=1e-9)
    again = ob.CellMoments.from_arrays(moments.to_arrays())
    np.testing.assert_array_equal(again.gram, moments.gram)
    assert again.count == 500 and again.targets == moments.targets


def extra_moments(maps, boxes):
    protocol = ob.ObjectnessBoxes((L1, L2), (E,))
    return protocol.cell_moments(maps, boxes)


def test_extra_photos_join_the_ridge_with_their_weight():
    """min ||z w - t||^2 + v ||z' w - t'||^2 + lam ||w[:-1]||^2, z and z' standardized by the
    training photos' mean and sd alone, as one stacked least-squares problem."""
    maps, boxes = synthetic(n=30)
    extra_maps, extra_boxes = synthetic(n=40, seed=5)
    v, lam = 0.5, 7.0
    protocol = ob.ObjectnessBoxes((L1, L2), (E,), lambdas=(lam,), extra_weights=(v,),
                                  sigmas=(2.0,))
    protocol.use_extra_training(extra_moments(extra_maps, extra_boxes), "extra:40:test")
    protocol.fit(maps, boxes)
    phi, t = features_and_targets(maps, boxes)
    extra_phi, extra_t = features_and_targets(extra_maps, extra_boxes)
    rows = phi.reshape(-1, phi.shape[-1])
    mean, sd = rows.mean(axis=0), rows.std(axis=0)
    a = np.vstack([standardized_rows(phi, mean, sd), np.sqrt(v) * standardized_rows(extra_phi, mean, sd),
                   np.sqrt(lam) * np.eye(14)[:-1]])
    b = np.concatenate([t.ravel(), np.sqrt(v) * extra_t.ravel(), np.zeros(13)])
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(protocol.weights, w, rtol=1e-7, atol=1e-9)
    assert protocol.extra_weight == v
    p = protocol.params()
    assert p["extra_training"] == "extra:40:test" and p["extra_weight"] == v
    loaded = ob.ObjectnessBoxes.from_params(p)
    assert loaded.extra_weight == v and loaded.extra_training == "extra:40:test"
    np.testing.assert_array_equal(loaded.predict(maps), protocol.predict(maps))


def inner_cv_errors(maps, boxes, extra, grid):
    """The held-out cell MSE of every (v, lambda), the extra cells in every inner training set."""
    phi, t = features_and_targets(maps, boxes)
    extra_phi, extra_t = features_and_targets(*extra)
    n, d = len(boxes), phi.shape[-1]
    rows = phi.reshape(-1, d)
    mean, sd = rows.mean(axis=0), rows.std(axis=0)
    fold = folds(n, 5, seed=0)
    errors = []
    for v, lam in grid:
        held_out = np.empty_like(t)
        for f in range(5):
            a = np.vstack([standardized_rows(phi[fold != f], mean, sd),
                           np.sqrt(v) * standardized_rows(extra_phi, mean, sd),
                           np.sqrt(lam) * np.eye(d + 1)[:-1]])
            b = np.concatenate([t[fold != f].ravel(), np.sqrt(v) * extra_t.ravel(), np.zeros(d)])
            w = np.linalg.lstsq(a, b, rcond=None)[0]
            held_out[fold == f] = ((phi[fold == f] - mean) / sd) @ w[:-1] + w[-1]
        errors.append(np.mean((held_out - t) ** 2))
    return np.array(errors)


@pytest.mark.parametrize("wrong_boxes", [False, True])
def test_the_inner_cross_validation_weighs_the_extra_photos(wrong_boxes):
    """Photos like the training ones earn a weight; photos whose boxes are elsewhere get 0."""
    maps, boxes = synthetic(n=15, seed=2)
    extra_maps, extra_boxes = synthetic(n=60, seed=3)
    if wrong_boxes:  # every box moved to the opposite corner of the photo
        extra_boxes = [SIZE - b[:, [2, 3, 0, 1]] for b in extra_boxes]
    weights, lambdas = (0.0, 0.3, 1.0), (1.0, 100.0)
    protocol = ob.ObjectnessBoxes((L1, L2), (E,), lambdas=lambdas, extra_weights=weights,
                                  sigmas=(2.0,))
    protocol.use_extra_training(extra_moments(extra_maps, extra_boxes), "extra")
    protocol.fit(maps, boxes)
    grid = [(v, lam) for v in weights for lam in lambdas]
    errors = inner_cv_errors(maps, boxes, (extra_maps, extra_boxes), grid)
    assert (protocol.extra_weight, protocol.lam) == grid[int(np.argmin(errors))]
    assert protocol.cell_mse == pytest.approx(errors.min(), rel=1e-9)
    assert (protocol.extra_weight == 0.0) == wrong_boxes


def test_without_extra_photos_the_fit_is_what_it_was():
    maps, boxes = synthetic(n=30)
    plain = ob.ObjectnessBoxes((L1, L2), (E,), sigmas=(2.0,)).fit(maps, boxes)
    assert plain.extra_weight is None and "extra_training" not in plain.params()
    told = ob.ObjectnessBoxes((L1, L2), (E,), sigmas=(2.0,), extra_weights=(0.0,))
    told.use_extra_training(extra_moments(*synthetic(n=20, seed=9)), "extra").fit(maps, boxes)
    np.testing.assert_array_equal(told.weights, plain.weights)   # v = 0: the same floats
    with pytest.raises(ValueError, match="not given their moments"):
        ob.ObjectnessBoxes((L1,), (E,)).use_extra_training(None, "extra").fit(maps, boxes)


def test_evaluate_and_fit_boxes_train_on_extra_photos_and_never_score_them(tmp_path, capsys):
    """The command line end to end on a VGG16 with random weights (32 px input): the extra
    photos' moments are cached and reused, recorded in the results' identity and the box
    model, and refused where they cannot apply."""
    import json
    from sensloc import nets, weights
    from sensloc.cli.main import main
    from sensloc.data import images
    from sensloc.evaluation.boxmodels import load_box_model
    prep = images.Preprocessing((32, 32), "RGB", 1 / 255, (0.5,) * 3, (0.25,) * 3, "squash")
    net = nets.random_parameters(nets.build("vgg16", num_classes=3, input_size=32, hidden=16), 3)
    net_file = weights.save(tmp_path / "vgg16.h5", net, prep, ["a", "b", "c"], "random-3",
                            "3" * 64, architecture_options={"num_classes": 3, "input_size": 32,
                                                            "hidden": 16})
    dev = bright_square_photos(tmp_path / "dev", 15, seed=0)
    extra = bright_square_photos(tmp_path / "extra", 20, seed=1)
    common = ["--weights", str(net_file), "--cache", str(tmp_path / "cache")]
    results, summary = tmp_path / "results.csv", tmp_path / "summary.json"
    run = ["evaluate", str(dev), *common, "--preset", "best", "--cv", "3", "--results",
           str(results), "--summary-json", str(summary)]
    assert main(run + ["--extra-training", str(extra)]) == 0
    assert json.loads(summary.read_text())["configs"]["best (3-fold CV)"]["n"] == 15
    scored = {line.split(",")[1] for line in results.read_text().splitlines()[2:]}
    assert not any(image_id.startswith("extra") for image_id in scored)
    assert len(list((tmp_path / "cache").glob("*/moments/*.npz"))) == 1
    capsys.readouterr()
    # the same results file with other extra photos (or none) is another run: refused
    assert main(run) == 2
    assert "results" in capsys.readouterr().err
    # photos both scored and trained on, or extra photos no preset learns from: one line each
    assert main(run + ["--extra-training", str(dev)]) == 2
    assert "are among the photos evaluated" in capsys.readouterr().err
    assert main(["evaluate", str(dev), *common, "--preset", "gradient", "--results",
                 str(tmp_path / "other.csv"), "--extra-training", str(extra)]) == 2
    assert "learns from extra training photos" in capsys.readouterr().err
    model = tmp_path / "best.h5"
    assert main(["fit-boxes", str(dev), *common, "--preset", "best", "--out", str(model),
                 "--extra-training", str(extra)]) == 0
    fitted = load_box_model(model).protocol
    assert fitted.extra_training.startswith("extra:20:") and fitted.extra_weight is not None
    assert main(["fit-boxes", str(dev), *common, "--preset", "khan", "--out",
                 str(tmp_path / "khan.h5"), "--extra-training", str(extra)]) == 2
