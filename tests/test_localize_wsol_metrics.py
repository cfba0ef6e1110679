"""MaxBoxAcc (V1, V2), the pointing game and the energy pointing game on hand-made maps whose
answers are known, and against independent re-implementations written here from the
references' definitions (clovaai/wsolevaluation's BoxEvaluator, TorchRay's PointingGame)."""
from collections import deque

import numpy as np
import pytest

from sensloc.localize import wsol_metrics as wsol
from sensloc.localize.folds import folds


def rectangle_map(shape, box, value=1.0, background=0.0):
    """A map equal to ``value`` on the pixels of the integer box (x0, y0, x1, y1)."""
    m = np.full(shape, background)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = value
    return m


# --------------------------------------------------------------------------- MaxBoxAcc

def test_a_map_that_is_one_on_the_object_is_correct_at_every_threshold():
    box = (20, 10, 50, 30)
    heat = rectangle_map((64, 64), box)[None]
    largest, every = wsol.threshold_ious(heat, [np.array([box], float)])
    assert np.all(largest == 1.0) and np.all(every == 1.0)
    hits = wsol.box_accuracy_hits(heat, [np.array([box], float)])
    assert hits.shape == (1, 100, 1) and hits.all()
    assert wsol.max_box_accuracy(hits)[0] == 1.0


def test_a_plateau_around_the_object_is_boxed_below_its_level_only():
    # Object 255, a ring at 0.5 -> floor(0.5 * 255) = 127: kept while floor(255 tau) < 127,
    # i.e. tau <= 0.49 (0.49 * 255 = 124.95; 0.50 * 255 = 127.5 -> 127, not > 127).
    heat = rectangle_map((64, 64), (4, 4, 60, 60), 0.5)
    heat[20:30, 20:40] = 1.0
    truth = [np.array([[20, 20, 40, 30]], float)]
    largest, _ = wsol.threshold_ious(heat[None], truth)
    outer_iou = (20 * 10) / (56 * 56)
    np.testing.assert_allclose(largest[0, :50], outer_iou)
    np.testing.assert_allclose(largest[0, 50:], 1.0)
    hits = wsol.box_accuracy_hits(heat[None], truth)
    accuracy, best = wsol.max_box_accuracy(hits)
    assert accuracy == 1.0 and best.tolist() == [50]  # the smallest threshold among ties


def test_v1_boxes_the_largest_region_v2_every_region():
    # A large blob away from the object and a small one exactly on it.
    heat = rectangle_map((80, 80), (40, 40, 80, 80))  # 1600 pixels, not the object
    heat[5:15, 5:15] = 1.0  # 100 pixels: the object
    truth = [np.array([[5, 5, 15, 15]], float)]
    largest, every = wsol.threshold_ious(heat[None], truth)
    assert np.all(largest == 0.0) and np.all(every == 1.0)
    assert wsol.max_box_accuracy(wsol.box_accuracy_hits(heat[None], truth))[0] == 0.0
    v2 = wsol.box_accuracy_hits(heat[None], truth, iou_levels=wsol.IOU_V2, multi_region=True)
    assert v2.shape == (1, 100, 3) and v2.all()


def test_v2_averages_its_three_iou_levels_each_at_its_best_threshold():
    # A predicted box of IoU 0.6 with the truth at every threshold: V2 = (1 + 1 + 0) / 3.
    heat = rectangle_map((40, 40), (0, 0, 30, 20))[None]  # area 600
    truth = [np.array([[0, 0, 18, 20]], float)]  # area 360 inside it: IoU 0.6
    hits = wsol.box_accuracy_hits(heat, truth, iou_levels=wsol.IOU_V2, multi_region=True)
    np.testing.assert_allclose(wsol.max_box_accuracy(hits)[0], 2 / 3)


def test_a_constant_or_empty_map_is_a_miss():
    truth = [np.array([[0, 0, 10, 10]], float)] * 2
    heat = np.stack([np.zeros((10, 10)), np.full((10, 10), 3.0)])
    largest, every = wsol.threshold_ious(heat, truth)
    assert not largest.any() and not every.any()  # no box, IoU 0, even for the whole image
    np.testing.assert_array_equal(wsol.normalize_scoremaps(heat), 0)


def test_normalization_is_min_max():
    heat = np.array([[[-2.0, 0.0], [2.0, 6.0]]])
    np.testing.assert_allclose(wsol.normalize_scoremaps(heat), [[[0, 0.25], [0.5, 1.0]]])


def components(mask):
    """8-connected components by breadth-first search: a list of (rows, cols) index arrays."""
    seen = np.zeros_like(mask, bool)
    found = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        queue, pixels = deque([start]), []
        seen[start] = True
        while queue:
            i, j = queue.popleft()
            pixels.append((i, j))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1] and mask[a, b] \
                            and not seen[a, b]:
                        seen[a, b] = True
                        queue.append((a, b))
        found.append(np.array(pixels))
    return found


def pixel_iou(region_box, truth):
    """IoU of two integer boxes counted in pixels (sets of covered pixels)."""
    def cells(b):
        x0, y0, x1, y1 = (int(v) for v in b)
        return {(i, j) for i in range(y0, y1) for j in range(x0, x1)}
    a, b = cells(region_box), cells(truth)
    return len(a & b) / len(a | b) if a | b else 0.0


def reference_ious(heat, truth, thresholds):
    """BoxEvaluator's sweep written from its definition: min-max normalize, 8-bit quantize,
    keep q > floor(tau max q), box each region; the largest region by pixels (V1), the best
    region (V2); IoU counted over pixel sets."""
    m = (heat - heat.min()) / (heat.max() - heat.min())
    q = np.floor(m * 255)
    largest, every = [], []
    for tau in thresholds:
        regions = components(q > np.floor(tau * q.max()))
        if not regions:
            largest.append(0.0), every.append(0.0)
            continue
        boxes = [(p[:, 1].min(), p[:, 0].min(), p[:, 1].max() + 1, p[:, 0].max() + 1)
                 for p in regions]
        overlaps = [max(pixel_iou(b, t) for t in truth) for b in boxes]
        largest.append(overlaps[int(np.argmax([len(p) for p in regions]))])
        every.append(max(overlaps))
    return np.array(largest), np.array(every)


def test_the_sweep_equals_a_re_implementation_from_the_definition():
    rng = np.random.default_rng(3)
    from scipy import ndimage
    heat = np.stack([ndimage.gaussian_filter(rng.random((24, 28)), 1.5) for _ in range(3)])
    truth = [np.array([[3, 2, 15, 12]], float), np.array([[0, 0, 28, 24]], float),
             np.array([[2, 2, 8, 9], [12, 10, 26, 22]], float)]
    thresholds = np.arange(0, 1, 0.05)
    largest, every = wsol.threshold_ious(heat, truth, thresholds)
    for n in range(3):
        ref_largest, ref_every = reference_ious(heat[n], truth[n], thresholds)
        np.testing.assert_allclose(largest[n], ref_largest, atol=1e-12)
        np.testing.assert_allclose(every[n], ref_every, atol=1e-12)
    assert (every >= largest).all() and (every > largest).any()  # V2 sees more regions


def test_cross_validated_threshold_is_chosen_on_the_other_folds():
    # Two folds, two thresholds: fold 0 images hit only at threshold 1, fold 1 images only at
    # threshold 0. Each fold's threshold comes from the other fold, so every image misses.
    fold = np.array([0, 0, 1, 1])
    hits = np.zeros((4, 2, 1), bool)
    hits[:2, 1] = True
    hits[2:, 0] = True
    cv, chosen = wsol.cross_validated_hits(hits, fold)
    assert chosen.tolist() == [[0], [1]] and not cv.any()
    # The reference's in-sample maximum would report 50% here.
    assert wsol.max_box_accuracy(hits)[0] == 0.5
    # With one array per fold, fold f's images are scored on the f-th array.
    per_fold = [np.ones((4, 2, 1), bool), np.zeros((4, 2, 1), bool)]
    cv, _ = wsol.cross_validated_hits(per_fold, fold)
    assert cv[:, 0].tolist() == [True, True, False, False]


def test_cross_validation_uses_the_projects_folds():
    hits = np.random.default_rng(0).random((50, 10, 1)) > 0.5
    fold = folds(50, 5, seed=0)
    cv, chosen = wsol.cross_validated_hits(hits, fold)
    for f in range(5):
        best = int(np.argmax(hits[fold != f, :, 0].mean(axis=0)))
        assert chosen[f, 0] == best
        np.testing.assert_array_equal(cv[fold == f, 0], hits[fold == f, best, 0])


# --------------------------------------------------------------------------- pointing games

def torchray_hit(mask, point, tolerance=15):
    """TorchRay's PointingGame.evaluate: a disc of radius `tolerance` around the point (u, v)
    (strict inequality) meets the object's mask."""
    v, u = np.meshgrid((np.arange(mask.shape[0]) - point[1]) ** 2,
                       (np.arange(mask.shape[1]) - point[0]) ** 2, indexing="ij")
    return bool((mask & ((v + u) < tolerance ** 2)).any())


@pytest.mark.parametrize("x, y, expected", [
    (30.5, 30.5, True),  # inside
    (60.5, 30.5, True),  # 14 px right of the last column (46)
    (61.5, 30.5, False),  # 15 px: not < 15
    (55.5, 58.5, True),  # dx = 9, dy = 11: 202 < 225
    (55.5, 59.5, False),  # dx = 9, dy = 12: 225
])
def test_pointing_game_within_15_pixels(x, y, expected):
    box = np.array([[20, 10, 47, 48]], float)  # columns 20..46, rows 10..47
    assert wsol.pointing_hits(np.array([[x, y]]), [box])[0] == expected
    assert torchray_hit(wsol.box_mask(box, (100, 100)), (int(x), int(y))) == expected


def test_pointing_game_equals_torchray_on_random_points_and_boxes():
    rng = np.random.default_rng(1)
    for _ in range(200):
        corners = np.sort(rng.uniform(0, 80, (2, 2)), axis=0)  # rows: min, max
        boxes = np.array([[corners[0, 0], corners[0, 1], corners[1, 0] + 1, corners[1, 1] + 1]])
        point = rng.uniform(0, 80, 2)
        mask = wsol.box_mask(boxes, (82, 82))
        assert wsol.pointing_hits(point[None], [boxes])[0] == torchray_hit(
            mask, np.floor(point).astype(int))


def test_the_peak_is_the_first_maximum_and_pointing_accuracy_averages_classes():
    heat = np.zeros((2, 10, 12))
    heat[0, 3, 7] = 2.0
    heat[1, 5, 2] = heat[1, 6, 9] = 1.0  # a tie: the first in raster order
    np.testing.assert_array_equal(wsol.peak_points(heat), [[7.5, 3.5], [2.5, 5.5]])
    # Class 0: 1 of 1 hit, class 1: 1 of 3: TorchRay's mean of class accuracies is 2/3,
    # the share of images 1/2.
    found = np.array([True, True, False, False])
    assert wsol.class_mean_accuracy(found, [0, 1, 1, 1]) == pytest.approx(2 / 3)


def test_energy_share_by_hand():
    heat = np.zeros((1, 10, 10))
    heat[0, 2:4, 2:4] = 3.0  # 4 pixels x 3 = 12 inside
    heat[0, 8, 8] = 4.0  # 4 outside
    heat[0, 0, 9] = -5.0  # negative: not energy
    share = wsol.energy_in_boxes(heat, [np.array([[2, 2, 4, 4]], float)])
    np.testing.assert_allclose(share, [12 / 16])
    # Two overlapping boxes count their union once; no positive mass: 0.
    share = wsol.energy_in_boxes(np.stack([heat[0], -np.ones((10, 10))]),
                                 [np.array([[2, 2, 4, 4], [3, 3, 9, 9]], float),
                                  np.array([[0, 0, 5, 5]], float)])
    np.testing.assert_allclose(share, [1.0, 0.0])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        wsol.threshold_ious(np.full((1, 4, 4), np.nan), [np.zeros((1, 4))])
    with pytest.raises(ValueError, match="ground truth"):
        wsol.threshold_ious(np.zeros((2, 4, 4)), [np.zeros((1, 4))])
    with pytest.raises(ValueError, match="points"):
        wsol.pointing_hits(np.zeros((2, 3)), [np.zeros((1, 4))] * 2)
