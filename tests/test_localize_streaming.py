"""Evaluation in batches: every protocol reduces a dataset image by image, so reducing it in
batches (and keeping the large reductions on disk) gives the very floats of the whole-array
computation, and cross-validation on the reductions the very boxes.

The reference is the computation on all maps at once (``protocol.fit(maps)`` then
``predict(maps)``, and the NumPy reductions ``flat.mean(0)`` / ``flat.std(0)``); the checks are
exact equality, not a tolerance.
"""
import numpy as np
import pytest

from sensloc.evaluation.row_files import RowFile
from sensloc.localize.boxes import union_boxes
from sensloc.localize.protocols import (KhanBoxes, MixBoxes, ObjectnessBoxes, RegressionBoxes,
                                        ThresholdBoxes, objectness)
from sensloc.localize.protocols.base import (concatenate, cross_validated_boxes,
                                             cross_validated_reduced, put_rows, take)
from sensloc.localize.protocols.mix import mixed_heat
from sensloc.localize.protocols.threshold import FRACTIONS
from test_localize_objectness import E, L1, L2, synthetic



def protocols():
    """A fresh protocol of every family, on the synthetic maps' specs, small grids."""
    return {"threshold": lambda: ThresholdBoxes(E, "union"),
            "largest": lambda: ThresholdBoxes(E, "largest"),
            "khan": lambda: KhanBoxes(E, E),
            "mix": lambda: MixBoxes((E,), sigmas=(1.0, 2.0)),
            "regression": lambda: RegressionBoxes([E], grid_sizes=(4, 8), k=3),
            "objectness": lambda: ObjectnessBoxes((L1, L2), (E,), lambdas=(1.0, 100.0),
                                                  inner_folds=3, sigmas=(1.0,))}


def batches(maps, size):
    n = len(next(iter(maps.values())))
    return [{s: m[start:start + size] for s, m in maps.items()} for start in range(0, n, size)]


@pytest.mark.parametrize("name", sorted(protocols()))
def test_a_reduction_in_batches_equals_the_whole(name):
    maps, boxes = synthetic(n=150, seed=4)
    make = protocols()[name]
    whole = make().reduce(maps)
    for size in (1, 7, 64):
        parts = concatenate(make().reduce(b) for b in batches(maps, size))
        assert parts.keys() == whole.keys()
        for key in whole:
            assert np.array_equal(parts[key], whole[key]), (name, size, key)


@pytest.mark.parametrize("name", sorted(protocols()))
def test_cross_validation_on_reductions_equals_fitting_on_maps(name):
    maps, boxes = synthetic(n=120, seed=5)
    make = protocols()[name]
    from_maps = np.zeros((120, 4))
    fold = np.arange(120) % 3
    for f in range(3):  # the whole-array reference, written out
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        fitted = make().fit({s: m[train] for s, m in maps.items()}, [boxes[i] for i in train])
        from_maps[test] = fitted.predict({s: m[test] for s, m in maps.items()})
    reduced = concatenate(make().reduce(b) for b in batches(maps, 16))
    got = np.zeros((120, 4))
    for f in range(3):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        fitted = make().fit_reduced(take(reduced, train), [boxes[i] for i in train])
        got[test] = fitted.predict_reduced(take(reduced, test))
    assert np.array_equal(got, from_maps)
    assert np.array_equal(cross_validated_boxes(make, maps, boxes, k=4, seed=1)[0],
                          cross_validated_reduced(make, reduced, boxes, k=4, seed=1)[0])


@pytest.mark.parametrize("name", sorted(protocols()))
def test_folds_fitted_on_threads_give_the_boxes_of_one_thread(name):
    maps, boxes = synthetic(n=120, seed=9)
    make = protocols()[name]
    reduced = make().reduce(maps)
    alone, fitted_alone = cross_validated_reduced(make, reduced, boxes, k=5, seed=3)
    threaded, fitted_threaded = cross_validated_reduced(make, reduced, boxes, k=5, seed=3,
                                                        threads=3)
    assert np.array_equal(alone, threaded)
    for a, b in zip(fitted_alone, fitted_threaded):  # the folds' protocols, in fold order
        assert a.params() == b.params()


@pytest.mark.parametrize("name, key", [("threshold", "candidates"), ("largest", "candidates"),
                                       ("khan", "candidates"), ("mix", "union")])
def test_candidate_boxes_are_stored_as_whole_pixel_int16_by_one_rule(name, key):
    maps, boxes = synthetic(n=20, seed=8)
    candidates = protocols()[name]().reduce(maps)[key]
    assert candidates.dtype == np.int16  # whole pixels of a 40 x 40 map
    # The mix's union boxes at every grid point, recomputed in float64 by union_boxes.
    if name == "mix":
        heat = mixed_heat([maps[E]], 2.0, 0.1)
        assert np.array_equal(candidates[:, 1, 0], union_boxes(heat, FRACTIONS))


def test_batches_put_in_their_rows_equal_the_whole_in_any_order(tmp_path):
    maps, boxes = synthetic(n=150, seed=7)
    make = protocols()["threshold"]
    whole = make().reduce(maps)
    order = np.random.default_rng(0).permutation(150)
    into = {}
    for start in range(0, 150, 13):  # scattered rows, as the objectness fit's folds
        rows = order[start:start + 13]
        put_rows(into, make().reduce({s: m[rows] for s, m in maps.items()}), rows, 150)
    assert into["candidates"].dtype == np.int16
    assert np.array_equal(into["candidates"], whole["candidates"])
    # Boxes that are not whole pixels after int16 ones widen the array, keeping the first.
    put_rows(into, {"candidates": np.full((1, 40, 4), 2.5)}, [3], 150)
    assert into["candidates"].dtype == np.float64 and np.all(into["candidates"][3] == 2.5)
    assert np.array_equal(into["candidates"][4:], whole["candidates"][4:])
    # A row store takes the batches in order.
    def store(values):
        return RowFile(tmp_path, values.shape[1:], values.dtype)
    on_disk = {}
    for start in range(0, 150, 64):
        part = make().reduce({s: m[start:start + 64] for s, m in maps.items()})
        put_rows(on_disk, part, slice(start, start + 64), 150, store)
    assert np.array_equal(on_disk["candidates"][np.arange(150)], whole["candidates"])
    with pytest.raises(ValueError, match="in order"):
        put_rows(on_disk, part, slice(0, 22), 150, store)
    on_disk["candidates"].close()


def test_features_on_disk_give_the_same_fit_as_in_memory(tmp_path):
    maps, boxes = synthetic(n=150, seed=6)
    make = protocols()["objectness"]
    reduced = make().reduce(maps)
    rows = RowFile(tmp_path, reduced["features"].shape[1:], np.float32)
    for b in batches(maps, 13):
        rows.append(make().reduce(b)["features"])
    assert rows.shape == reduced["features"].shape
    # Nameless while open: a process killed now leaves nothing behind in the folder.
    assert not list(tmp_path.iterdir())
    assert np.array_equal(rows[[149, 0, 77]], reduced["features"][[149, 0, 77]])
    on_disk = {**reduced, "features": rows}
    memory, fitted_memory = cross_validated_reduced(make, reduced, boxes, k=3, seed=2)
    disk, fitted_disk = cross_validated_reduced(make, on_disk, boxes, k=3, seed=2)
    assert np.array_equal(memory, disk)
    for a, b in zip(fitted_memory, fitted_disk):
        assert a.params() == b.params()
    rows.close()
    assert not list(tmp_path.iterdir())


def test_block_moments_equal_numpys_whole_array_mean_and_std(rng):
    features = (rng.random((200, 30, 17)) ** 4 * 1e3).astype(np.float32)
    features[:, :, 3] = 2.5  # a constant feature: sd exactly 0
    flat = features.reshape(-1, 17)
    indices = np.flatnonzero(rng.random(200) < 0.8)
    mean, sd = objectness._moments(features, indices)
    chosen = features[indices].reshape(-1, 17)
    assert np.array_equal(mean, chosen.mean(axis=0, dtype=np.float64))
    assert np.array_equal(sd, chosen.std(axis=0, dtype=np.float64))
    assert sd[3] == 0 and np.all(sd[np.arange(17) != 3] > 0)
    assert not np.array_equal(mean, flat.mean(axis=0, dtype=np.float64))  # the subset matters


def test_objectness_fit_keeps_errors_not_predictions_yet_chooses_as_the_whole_array(rng):
    """The fit keeps each lambda's summed squared error and boxes the best lambda's held-out
    maps block by block. Reference: every held-out prediction in one (N, P, L) array, its
    mean squared error per lambda, and a box search fitted on all the held-out maps at once."""
    from sensloc.localize.folds import folds
    from sensloc.localize.protocols.mix import BoxSearch
    maps, boxes = synthetic(n=150, seed=7)
    lambdas = (0.01, 1.0, 100.0, 1e4)
    protocol = ObjectnessBoxes((L1, L2), (E,), lambdas=lambdas, inner_folds=3, sigmas=(1.0, 2.0))
    protocol.fit(maps, boxes)
    reduced = protocol.reduce(maps)
    features, (grid, size) = reduced["features"], protocol._shapes(reduced)
    targets = objectness.box_coverage(boxes, size, grid).reshape(150, -1)
    z = (features - protocol.mean) / protocol.sd
    held_out = np.empty(targets.shape + (len(lambdas),))
    fold = folds(150, 3, seed=0)
    for f in range(3):
        train, test = fold != f, fold == f
        a = np.concatenate([z[train].reshape(-1, z.shape[2]), np.ones((train.sum() * z.shape[1], 1))], 1)
        for j, lam in enumerate(lambdas):
            # Ridge with an unpenalized bias: (A^T A + lam [I 0; 0 0]) w = A^T t.
            penalty = lam * np.eye(a.shape[1])
            penalty[-1, -1] = 0
            w = np.linalg.solve(a.T @ a + penalty, a.T @ targets[train].reshape(-1))
            held_out[test, :, j] = z[test] @ w[:-1] + w[-1]
    errors = np.mean((held_out - targets[..., None]) ** 2, axis=(0, 1))
    best = int(np.argmin(errors))
    assert protocol.lam == lambdas[best]
    assert abs(protocol.cell_mse - errors[best]) <= 1e-9 * errors[best]
    assert np.sort(errors)[1] > (1 + 1e-5) * errors[best]  # a choice far above rounding (7e-4)
    search = BoxSearch(sigmas=(1.0, 2.0)).fit([protocol._as_map(held_out[..., best], grid, size)],
                                              boxes)
    assert (search.sigma, search.border_width, search.fraction, search.scale) == \
        (protocol.search.sigma, protocol.search.border_width, protocol.search.fraction,
         protocol.search.scale)
