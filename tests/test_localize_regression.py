import numpy as np
import pytest

from sensloc.localize.baselines import center_box, mean_box_size
from sensloc.localize import regression
from sensloc.localize.metrics import corloc
from sensloc.localize.regression import (BoxRegressor, choose_lambda_cv, fit_ridge, grid_features,
                                         predict, stack_features, target_boxes)

LAMBDAS = [0.0, 1e-3, 1e-1, 1.0, 10.0, 100.0]


def with_bias(X):
    return np.hstack([X, np.ones((len(X), 1))])


def area_average_by_supersampling(one_map, n):
    """Independent reference: split every pixel into n x n equal sub-pixels, then each grid
    cell is exactly a block of H x W sub-pixels, and the cell average is the block mean."""
    height, width = one_map.shape
    fine = np.repeat(np.repeat(one_map, n, axis=0), n, axis=1)
    return fine.reshape(n, height, n, width).mean(axis=(1, 3))


def synthetic_boxes_and_maps(n_images, rng, map_size=32):
    """Maps that are 1 inside a random box and 0 elsewhere, for images of random sizes."""
    sizes = rng.integers(100, 400, size=(n_images, 2)).astype(float)
    corner = rng.uniform(0.05, 0.5, size=(n_images, 2))
    normalized = np.column_stack([corner, corner + rng.uniform(0.2, 0.45, size=(n_images, 2))])
    centres = (np.arange(map_size) + 0.5) / map_size
    inside_x = (centres >= normalized[:, [0]]) & (centres < normalized[:, [2]])
    inside_y = (centres >= normalized[:, [1]]) & (centres < normalized[:, [3]])
    maps = (inside_y[:, :, None] & inside_x[:, None, :]).astype(float)
    gt = [box[None] * np.tile(size, 2) for box, size in zip(normalized, sizes)]
    return maps, gt, sizes


def test_single_hot_pixel_is_shared_by_exact_overlap_fractions():
    # 7 px onto 3 cells of 7/3 px: pixel 2 covers [2, 3), 1/3 of it in cell 0, 2/3 in cell 1.
    one_map = np.zeros((1, 7, 7))
    one_map[0, 2, 2] = 5.0
    expected = np.outer([1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0]).ravel()
    np.testing.assert_allclose(grid_features(one_map, 3)[0], expected, atol=1e-15)


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_grid_features_are_exact_area_averages(rng, n):
    maps = rng.random((3, 7, 10))
    for one_map, features in zip(maps, grid_features(maps, n)):
        cells = area_average_by_supersampling(one_map, n)
        np.testing.assert_allclose(features, (cells / cells.sum()).ravel(), rtol=1e-12)


def test_grid_features_divisible_case_is_block_mean_and_normalization(rng):
    maps = rng.random((2, 8, 12))
    blocks = maps.reshape(2, 4, 2, 4, 3).mean(axis=(2, 4)).reshape(2, 16)
    np.testing.assert_allclose(grid_features(maps, 4), blocks / blocks.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(grid_features(7 * maps, 4), grid_features(maps, 4))  # scale-free
    np.testing.assert_array_equal(grid_features(np.zeros((1, 5, 5)), 2), 0)
    with pytest.raises(ValueError, match="non-negative"):
        grid_features(-maps, 2)
    with pytest.raises(ValueError, match="grid size"):
        grid_features(maps, 0)


def test_stack_features():
    stacked = stack_features([np.ones((3, 4)), np.zeros((3, 9))])
    assert stacked.shape == (3, 13) and stacked[:, :4].sum() == 12
    with pytest.raises(ValueError, match="different numbers"):
        stack_features([np.ones((3, 4)), np.ones((2, 4))])


def test_target_boxes_normalize_the_chosen_box():
    gt = [np.array([[10, 20, 30, 60]]), np.array([[0, 0, 10, 10], [40, 40, 100, 50]])]
    np.testing.assert_allclose(
        target_boxes(gt, [(100, 200), (100, 50)], "largest"), [[0.1, 0.1, 0.3, 0.3], [0.4, 0.8, 1.0, 1.0]]
    )
    np.testing.assert_allclose(target_boxes(gt, [(100, 200), (100, 50)], "hull")[1], [0, 0, 1, 1])


def test_ridge_without_penalty_is_least_squares(rng):
    X, Y = rng.normal(size=(50, 5)), rng.normal(size=(50, 4))
    np.testing.assert_allclose(fit_ridge(X, Y, 0.0), np.linalg.lstsq(with_bias(X), Y, rcond=None)[0], atol=1e-12)


def test_ridge_satisfies_the_normal_equations(rng):
    X, Y, lam = rng.normal(size=(30, 6)), rng.normal(size=(30, 4)), 2.3
    W = fit_ridge(X, Y, lam)
    penalty = np.diag([lam] * 6 + [0.0])
    np.testing.assert_allclose((with_bias(X).T @ with_bias(X) + penalty) @ W, with_bias(X).T @ Y, atol=1e-10)


def test_ridge_does_not_shrink_the_bias(rng):
    X, Y = rng.normal(size=(30, 6)), rng.normal(size=(30, 4))
    shift = np.array([1.0, -2.0, 3.0, 0.5])
    W, W_shifted = fit_ridge(X, Y, 5.0), fit_ridge(X, Y + shift, 5.0)
    np.testing.assert_allclose(W_shifted[:-1], W[:-1], atol=1e-12)
    np.testing.assert_allclose(W_shifted[-1], W[-1] + shift, atol=1e-12)


def test_collinear_features_fall_back_to_the_minimum_norm_solution(rng):
    X = rng.normal(size=(20, 3))
    X = np.hstack([X, X[:, :1]])  # a duplicated column: X^T X is singular
    Y = rng.normal(size=(20, 4))
    np.testing.assert_allclose(fit_ridge(X, Y, 0.0), np.linalg.pinv(with_bias(X)) @ Y, atol=1e-10)


def test_predict_clips_and_orders_corners():
    W = np.array([[1.2, -0.1, 0.3, 0.5], [0.8, 0.6, 0.2, 0.9]])  # one feature and the bias
    # x = 1: (2.0, 0.5, 0.5, 1.4) -> clipped (1, .5, .5, 1) -> ordered (.5, .5, 1, 1).
    # x = 0: the bias (.8, .6, .2, .9) -> ordered (.2, .6, .8, .9).
    np.testing.assert_allclose(predict(W, [[1.0], [0.0]]), [[0.5, 0.5, 1, 1], [0.2, 0.6, 0.8, 0.9]])
    with pytest.raises(ValueError, match="shape"):
        predict(W, [[1.0, 2.0]])


def test_regression_recovers_a_known_linear_map(rng):
    X = rng.uniform(size=(200, 6))
    W_true = rng.uniform(-0.05, 0.05, size=(7, 4))
    W_true[-1] = [0.2, 0.2, 0.7, 0.7]
    Y = with_bias(X) @ W_true
    W = fit_ridge(X, Y, 0.0)
    np.testing.assert_allclose(W, W_true, atol=1e-10)
    np.testing.assert_allclose(predict(W, X), Y, atol=1e-10)


def test_cross_validation_picks_no_penalty_for_noiseless_data(rng):
    X = rng.uniform(size=(60, 5))
    W_true = rng.uniform(-0.05, 0.05, size=(6, 4))
    W_true[-1] = [0.2, 0.2, 0.7, 0.7]
    best, scores = choose_lambda_cv(X, with_bias(X) @ W_true, LAMBDAS, score="mse")
    assert best == 0.0 and scores[0] < 1e-20
    assert np.all(np.diff(scores) > 0)  # every bit of shrinkage only adds bias


def test_cross_validation_picks_a_large_penalty_for_noisy_collinear_features(rng):
    # 30 noisy copies of one latent variable, 40 images: least squares fits the noise.
    latent = rng.normal(size=40)
    X = latent[:, None] + 0.5 * rng.normal(size=(40, 30))
    Y = 0.5 + 0.1 * latent[:, None] + 0.05 * rng.normal(size=(40, 4))
    best, scores = choose_lambda_cv(X, Y, LAMBDAS, score="mse")
    assert best >= 1.0 and scores[LAMBDAS.index(best)] < scores[0] / 5


def test_cross_validated_corloc_ties_are_broken_by_mse(rng):
    X = rng.uniform(size=(40, 3))
    Y = np.column_stack([0.1 + 0.1 * X[:, 0], 0.1 + 0.1 * X[:, 1], 0.7 + 0.1 * X[:, 2], np.full(40, 0.8)])
    Y += 0.01 * rng.normal(size=Y.shape)
    # Any overlap is a hit at this threshold, so every lambda scores CorLoc 1.
    best, scores = choose_lambda_cv(X, Y, LAMBDAS, score="corloc", threshold=1e-9)
    np.testing.assert_array_equal(scores, 1.0)
    assert best == choose_lambda_cv(X, Y, LAMBDAS, score="mse")[0]


def test_box_regressor_beats_the_center_baseline_on_held_out_images(rng):
    maps, gt, sizes = synthetic_boxes_and_maps(300, rng)
    test_maps, test_gt, test_sizes = synthetic_boxes_and_maps(200, rng)
    model = BoxRegressor(grid_sizes=(4, 8), target="largest").fit(maps, gt, sizes, lambdas=[1e-3, 1e-1, 10.0])
    assert model.lam in (1e-3, 1e-1, 10.0) and model.cv_scores.shape == (3,)
    predicted = model.predict(test_maps, test_sizes)
    assert np.all(predicted[:, 2:] <= test_sizes) and np.all(predicted >= 0)  # in pixels of each image
    regression_corloc = corloc(predicted, test_gt)
    baseline_corloc = corloc(center_box(test_sizes, mean_box_size(gt, sizes)), test_gt)
    assert regression_corloc > 0.9 > 0.2 > baseline_corloc


def test_box_regressor_with_several_map_kinds_round_trips_through_a_dict(rng):
    maps, gt, sizes = synthetic_boxes_and_maps(40, rng)
    kinds = [maps, np.sqrt(maps + rng.random(maps.shape))]
    model = BoxRegressor(grid_sizes=(2, 4), lam=0.5).fit(kinds, gt, sizes)
    assert model.weights.shape == (2 * (4 + 16) + 1, 4)
    state = model.to_dict()
    restored = BoxRegressor.from_dict(state)
    np.testing.assert_array_equal(restored.predict(kinds, sizes), model.predict(kinds, sizes))
    with pytest.raises(ValueError, match="map kind"):
        restored.predict(maps, sizes)
    with pytest.raises(ValueError, match="weights must have shape"):
        BoxRegressor.from_dict({**state, "weights": state["weights"][:-1]})
    with pytest.raises(ValueError, match="not fitted"):
        BoxRegressor().predict(maps, sizes)


def test_cell_means_are_exact_area_averages(rng):
    maps = rng.random((3, 10, 14))
    got = regression.cell_means(maps, (4, 7))
    # 10 rows into 4 cells of 2.5 rows: split every pixel in two, then average blocks of 5.
    fine = np.repeat(np.repeat(maps, 2, axis=1), 1, axis=2)
    expected = fine.reshape(3, 4, 5, 7, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got.shape == (3, 4, 7)


def test_cross_validation_uses_the_shared_fold_assignment(rng):
    """choose_lambda_cv's held-out MSE is that of the folds of sensloc.localize.folds.folds."""
    from sensloc.localize.folds import folds
    X = rng.uniform(size=(37, 4))
    Y = rng.uniform(size=(37, 4))
    lambdas = [1e-3, 1.0]
    _, scores = choose_lambda_cv(X, Y, lambdas, k=4, seed=5, score="mse")
    fold = folds(37, 4, seed=5)
    for lam, score in zip(lambdas, scores):
        error = 0.0
        for f in range(4):
            W = fit_ridge(X[fold != f], Y[fold != f], lam)
            error += np.sum((predict(W, X[fold == f]) - Y[fold == f]) ** 2)
        assert score == pytest.approx(error / Y.size, rel=1e-12)
