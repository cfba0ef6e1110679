"""benchmarks/learning_curve.py: the curve fits, their extrapolation, the nested subsets, and the
whole-fold row against the library's own cross-validation."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from sensloc.data.datasets import ImageRecord
from sensloc.data.images import Preprocessing
from sensloc.localize.metrics import hits
from sensloc.localize.protocols import RegressionBoxes
from sensloc.localize.protocols.base import cross_validated_boxes
from sensloc.saliency.maps import MapSpec

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("learning_curve",
                                               REPO / "benchmarks" / "learning_curve.py")
lc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lc)

TRUTH = {"a": 0.80, "b": 1.2, "c": 0.45}
SIZES = np.array([50, 100, 200, 300, 400, 554], np.float64)


def test_power_law_recovers_a_known_curve_and_its_value_at_225k():
    # Noise-free points: the residual is 0 at the truth. The bounded 1-D search stops within
    # sqrt(eps) c + xatol / 3 ~ 7e-9 of c; a and b follow by an exact linear solve, moved by
    # at most |d(a, b)/dc| ~ b n^-c ln n < 10 times that: 1e-7 leaves a margin of > 1.5x.
    fit = lc.fit_power_law(SIZES, lc.power_law(TRUTH, SIZES))
    for key in "abc":
        assert fit[key] == pytest.approx(TRUTH[key], abs=1e-7)
    assert not fit["at_bound"]
    expected = 0.80 - 1.2 * 225_000 ** -0.45  # 0.7839...
    assert lc.power_law(fit, lc.PAPER_PHOTOS) == pytest.approx(expected, abs=1e-7)


def test_power_law_scatter_matches_the_linearized_covariance():
    # Gaussian noise sigma on 8 points over three decades: to first order the estimates scatter
    # with covariance sigma^2 (J^T J)^-1, J = [1, -n^-c, b n^-c ln n] the model's Jacobian.
    # Over R = 200 noise draws the sample sd has a relative standard error 1/sqrt(2R) = 5%
    # (so +-15% is 3 of them) and the mean one of SE / sqrt(R) (4 of them allowed).
    n, sigma, replicates = np.geomspace(50, 50_000, 8), 0.002, 200
    c, b = TRUTH["c"], TRUTH["b"]
    jacobian = np.column_stack([np.ones_like(n), -n ** -c, b * n ** -c * np.log(n)])
    se = sigma * np.sqrt(np.diag(np.linalg.inv(jacobian.T @ jacobian)))
    rng = np.random.default_rng(0)
    estimates = np.array([[f[k] for k in "abc"] for f in (
        lc.fit_power_law(n, lc.power_law(TRUTH, n) + sigma * rng.standard_normal(len(n)))
        for _ in range(replicates))])
    truth = np.array([TRUTH[k] for k in "abc"])
    np.testing.assert_array_less(np.abs(estimates.mean(axis=0) - truth),
                                 4 * se / np.sqrt(replicates))
    assert np.all(np.abs(estimates.std(axis=0) / se - 1) < 0.15)


def test_log_linear_recovers_a_known_line():
    y = 0.40 + 0.05 * np.log10(SIZES)
    fit = lc.fit_log_linear(SIZES, y)
    assert fit["alpha"] == pytest.approx(0.40, abs=1e-12)
    assert fit["beta"] == pytest.approx(0.05, abs=1e-12)
    assert lc.log_linear(fit, 225_000) == pytest.approx(0.40 + 0.05 * np.log10(225_000), abs=1e-12)


def test_a_flat_curve_puts_c_on_a_bound():
    # No growth at all: any c fits with b = 0, so the search reports that it did not pin c.
    fit = lc.fit_power_law(SIZES, np.full(len(SIZES), 0.55))
    assert fit["a"] == pytest.approx(0.55, abs=1e-12) and fit["rss"] < 1e-20
    assert lc.power_law(fit, lc.PAPER_PHOTOS) == pytest.approx(0.55, abs=1e-9)


def test_bootstrap_of_identical_photos_collapses_to_the_fit():
    # Every photo has the same hit rate at each size: every resample gives the same points,
    # so every refit equals the fit to the points themselves.
    points = lc.power_law(TRUTH, SIZES)
    boot = lc.bootstrap_fits(np.repeat(points[:, None], 40, axis=1), SIZES, resamples=5)
    fit = lc.fit_power_law(SIZES, points)
    np.testing.assert_allclose(boot["power_at"], lc.power_law(fit, lc.PAPER_PHOTOS), atol=1e-12)
    np.testing.assert_allclose(boot["c"], fit["c"], atol=1e-12)


def test_nested_subsets_are_nested_inside_the_fold_and_seeded():
    train = np.array([3, 5, 8, 13, 21, 34, 55, 89, 144, 233])
    sizes = [2, 5, 9, 50]
    subsets = lc.nested_subsets(train, sizes, draws=4, seed=[7, 1])
    assert len(subsets) == 4
    for draw in subsets:
        assert [len(s) for s in draw] == [2, 5, 9, 10]  # a size past the fold: the whole fold
        for small, large in zip(draw, draw[1:]):
            assert set(small) <= set(large)
        assert set(draw[-1]) == set(train) and len(set(draw[-1])) == len(train)
    # Seeded: the same seed gives the same subsets, whatever the sizes asked; draws differ.
    again = lc.nested_subsets(train, [9], draws=4, seed=[7, 1])
    for d in range(4):
        np.testing.assert_array_equal(again[d][0], subsets[d][2])
    assert len({tuple(d[-1]) for d in subsets}) == 4  # four different orders of the fold
    other = lc.nested_subsets(train, sizes, draws=1, seed=[7, 2])
    assert tuple(other[0][-1]) != tuple(subsets[0][-1])


def synthetic(count, side=32, seed=0):
    """Maps with a bright rectangle where each image's box is, plus noise; records of photos
    as large as the input (so the squash maps boxes to themselves)."""
    rng = np.random.default_rng(seed)
    maps = rng.random((count, side, side)).astype(np.float32) * 0.3
    records = []
    for i in range(count):
        x0, y0 = rng.integers(0, side // 2, 2)
        x1, y1 = x0 + rng.integers(6, side // 2), y0 + rng.integers(6, side // 2)
        maps[i, y0:y1, x0:x1] += 1.0
        records.append(ImageRecord(Path(f"{i}.png"), side, side, 0, "n0", [[x0, y0, x1, y1]],
                                   str(i)))
    return maps, records


def test_the_whole_fold_row_is_the_librarys_cross_validation():
    maps, records = synthetic(60)
    spec = MapSpec.make("gradient", "max_abs")
    make = lambda: RegressionBoxes([spec], grid_sizes=4)  # noqa: E731
    prep = Preprocessing((32, 32), "RGB", 1.0, (0, 0, 0), (1, 1, 1), "squash")
    gt = [r.boxes for r in records]
    reduced = make().reduce({spec: maps})
    found, train_sizes = lc.curve_hits(make, reduced, gt, records, prep, [10, 30, 100],
                                       draws=2, k=5, seed=3)
    assert found.shape == (3, 2, 60)
    np.testing.assert_allclose(train_sizes, [10, 30, 48])
    reference, _ = cross_validated_boxes(make, {spec: maps}, gt, k=5, seed=3)
    for d in range(2):
        np.testing.assert_array_equal(found[2, d], hits(reference, gt))
    # Ten photos per fold learn less than 48 (the maps make the boxes easy to learn).
    assert found[0].mean() < found[2].mean()


def test_merge_keeps_a_presets_curve_and_adds_only_its_extra_rows():
    def run(sizes, same, corloc):
        return {"train_sizes": sizes, "corloc": corloc, "photo_ci": [[0, 1]] * len(sizes),
                "draw_ci": [[0, 1]] * len(sizes), "same_domain": same,
                "photo_means": [[c, c] for c in corloc]}
    results = {"best": run([50, 554], [True, True], [0.6, 0.7])}
    lc.merge(results, {"best": run([554, 654], [True, False], [0.71, 0.72]),
                       "ebrahimpour": run([50], [True], [0.5])})
    assert results["best"]["train_sizes"] == [50, 554, 654]
    assert results["best"]["corloc"] == [0.6, 0.7, 0.72]
    assert results["best"]["photo_means"][-1] == [0.72, 0.72]
    assert results["ebrahimpour"]["corloc"] == [0.5]
