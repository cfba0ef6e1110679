import numpy as np
import pytest

from conftest import shared_path
from sensloc.localize.boxes import box_area
from sensloc.data.datasets import read_manifest
from sensloc.localize.metrics import (bootstrap_ci, corloc, hits, per_class_corloc, top1_corloc,
                                      top1_hits)

# IoUs: 1/7 and 1/2 for the first image, 1/2 for the second, 0 for the third.
PRED = np.array([[0, 0, 2, 2], [0, 0, 10, 10], [0, 0, 1, 1]], dtype=float)
GT = [np.array([[1, 1, 3, 3], [0, 0, 2, 1]]), np.array([[0, 0, 10, 5]]), np.array([[5, 5, 6, 6]])]


def test_hits_and_corloc_hand_computed():
    np.testing.assert_array_equal(hits(PRED, GT), [True, True, False])  # IoU 0.5 is a hit
    assert corloc(PRED, GT) == pytest.approx(2 / 3)
    assert corloc(PRED, GT, threshold=0.6) == 0.0
    assert corloc(PRED, GT, threshold=1 / 7) == pytest.approx(2 / 3)


def test_top1_needs_the_right_class_too():
    np.testing.assert_array_equal(top1_hits(PRED, GT, [3, 5, 1], [3, 4, 1]), [True, False, False])
    assert top1_corloc(PRED, GT, [3, 5, 1], [3, 4, 1]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="pred_classes"):
        top1_hits(PRED, GT, [3, 5], [3, 4, 1])


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="ground truth for 2"):
        hits(PRED, GT[:2])
    with pytest.raises(ValueError, match="threshold"):
        hits(PRED, GT, threshold=0)


def test_per_class_corloc_hand_computed():
    result = per_class_corloc([True, False, True, True, False], [0, 0, 1, 2, 2])
    assert result == {0: 0.5, 1: 1.0, 2: 0.5}
    assert per_class_corloc([1, 0], ["cat", "dog"]) == {"cat": 1.0, "dog": 0.0}
    with pytest.raises(ValueError, match="boolean"):
        per_class_corloc([0.5, 1.0], [0, 1])


def test_bootstrap_of_constant_hits_is_degenerate():
    assert bootstrap_ci(np.ones(50, dtype=bool)) == (1.0, 1.0)
    assert bootstrap_ci(np.zeros(50, dtype=bool)) == (0.0, 0.0)


def test_bootstrap_of_half_hits_matches_the_normal_approximation():
    n = 400
    low, high = bootstrap_ci(np.arange(n) % 2 == 0)
    assert low < 0.5 < high
    assert high - low == pytest.approx(2 * 1.96 * np.sqrt(0.25 / n), rel=0.1)
    assert bootstrap_ci(np.arange(n) % 2 == 0) == (low, high)  # seeded


def test_bootstrap_equals_resampling_images_with_replacement(rng):
    sample = rng.random(60) < 0.3
    indices = rng.integers(0, len(sample), size=(20000, len(sample)))
    expected = np.quantile(sample[indices].mean(axis=1), [0.025, 0.975])
    np.testing.assert_allclose(bootstrap_ci(sample, n_resamples=20000, seed=1), expected, atol=1 / 60 + 1e-9)


def test_bootstrap_refuses_bad_arguments():
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([True, False], level=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([True, False], n_resamples=0)


def test_whole_image_corloc_on_real_images_equals_the_box_area_fraction():
    # For a box inside the image, IoU(whole image, box) = area(box) / area(image): an
    # independent closed form for the whole-image baseline.
    records = read_manifest(shared_path("data", "imagenet-val-227"))
    whole = np.array([[0, 0, r.width, r.height] for r in records], dtype=float)
    gt = [r.boxes for r in records]
    expected = [box_area(r.boxes).max() / (r.width * r.height) >= 0.5 for r in records]
    np.testing.assert_array_equal(hits(whole, gt), expected)
    assert corloc(whole, gt) == pytest.approx(np.mean(expected))
