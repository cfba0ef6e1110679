from collections import deque

import numpy as np
import pytest

from sensloc.localize.boxes import (as_boxes, best_iou, best_ious, box_area, box_from_mask,
                                    boxes_at_fractions, boxes_from_heatmap, clip_boxes, iou,
                                    largest_component_boxes, scale_boxes, single_box)


def pixel_mask(box, shape=(12, 12)):
    """Raster an integer box (continuous convention) into the pixels it covers."""
    mask = np.zeros(shape, dtype=bool)
    xmin, ymin, xmax, ymax = (int(v) for v in box)
    mask[ymin:ymax, xmin:xmax] = True
    return mask


def largest_component_box_by_flood_fill(mask):
    """Independent reference: breadth-first 8-connected flood fill, first component wins ties."""
    seen = np.zeros_like(mask)
    best = None
    for start in zip(*np.nonzero(mask)):  # raster order
        if seen[start]:
            continue
        seen[start], queue, pixels = True, deque([start]), []
        while queue:
            i, j = queue.popleft()
            pixels.append((i, j))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    k, m = i + di, j + dj
                    if 0 <= k < mask.shape[0] and 0 <= m < mask.shape[1] and mask[k, m] and not seen[k, m]:
                        seen[k, m] = True
                        queue.append((k, m))
        if best is None or len(pixels) > len(best):
            best = pixels
    rows, cols = zip(*best)
    return [min(cols), min(rows), max(cols) + 1, max(rows) + 1]


def test_iou_hand_computed():
    assert iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert iou([0, 0, 2, 2], [0, 0, 2, 1]) == pytest.approx(0.5)
    assert iou([0, 0, 4, 4], [1, 1, 2, 2]) == pytest.approx(1 / 16)
    assert iou([0, 0, 2, 2], [2, 0, 4, 2]) == 0.0  # sharing an edge is no overlap
    assert iou([0, 0, 2, 2], [5, 5, 6, 6]) == 0.0
    assert iou([1.5, 2, 3.5, 7], [1.5, 2, 3.5, 7]) == 1.0
    assert iou([1, 1, 1, 3], [1, 1, 1, 3]) == 0.0  # zero-area boxes have no overlap to measure


def test_iou_matches_pixel_counting(rng):
    corners = np.sort(rng.integers(0, 12, size=(30, 2, 2)), axis=1)  # per box: sorted x's, sorted y's
    boxes = np.column_stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0] + 1, corners[:, 1, 1] + 1])
    masks = [pixel_mask(box) for box in boxes]
    expected = np.array([[np.sum(a & b) / np.sum(a | b) for b in masks[10:]] for a in masks[:10]])
    matrix = iou(boxes[:10], boxes[10:])
    assert matrix.shape == (10, 20)
    np.testing.assert_allclose(matrix, expected)
    np.testing.assert_allclose(iou(boxes[3], boxes[10:]), expected[3])
    np.testing.assert_allclose(iou(boxes[:10], boxes[12]), expected[:, 2])


def test_best_iou_takes_the_best_ground_truth():
    assert best_iou([0, 0, 2, 2], [[1, 1, 3, 3], [0, 0, 2, 1]]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        best_iou([[0, 0, 1, 1]] * 2, [[0, 0, 1, 1]])


@pytest.mark.parametrize("bad", [[0, 0, 1], [2, 0, 1, 1], [0, 3, 1, 1], [0, 0, np.nan, 1]])
def test_invalid_boxes_are_refused(bad):
    with pytest.raises(ValueError):
        as_boxes(bad)


def test_box_area_and_single_box():
    boxes = [[10, 50, 30, 90], [0, 0, 80, 40]]
    np.testing.assert_array_equal(box_area(boxes), [800, 3200])
    np.testing.assert_array_equal(single_box(boxes, "largest"), [0, 0, 80, 40])
    np.testing.assert_array_equal(single_box(boxes, "hull"), [0, 0, 80, 90])


def test_largest_component_and_union_of_two_blobs():
    mask = np.zeros((10, 12), dtype=bool)
    mask[1:3, 1:4] = True   # 6 pixels: rows 1-2, columns 1-3
    mask[5:9, 6:10] = True  # 16 pixels: rows 5-8, columns 6-9
    np.testing.assert_array_equal(box_from_mask(mask, "largest"), [6, 5, 10, 9])
    np.testing.assert_array_equal(box_from_mask(mask, "union"), [1, 1, 10, 9])


def test_single_pixel_box_has_unit_area():
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 3] = True
    np.testing.assert_array_equal(box_from_mask(mask), [3, 2, 4, 3])


def test_eight_connectivity_joins_diagonal_pixels():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # one 3-pixel diagonal component
    mask[5, 3:5] = True                           # a 2-pixel component
    np.testing.assert_array_equal(box_from_mask(mask, "largest"), [0, 0, 3, 3])


def test_largest_component_matches_flood_fill(rng):
    for _ in range(25):
        mask = rng.random((15, 17)) < 0.3
        np.testing.assert_array_equal(box_from_mask(mask), largest_component_box_by_flood_fill(mask))


def test_ties_go_to_the_hotter_component_else_the_first():
    mask = np.zeros((4, 8), dtype=bool)
    mask[1, 1:3] = mask[1, 5:7] = True
    heat = np.where(mask, 1.0, 0.0)
    heat[1, 6] = 2.0
    np.testing.assert_array_equal(box_from_mask(mask), [1, 1, 3, 2])
    np.testing.assert_array_equal(box_from_mask(mask, heatmap=heat), [5, 1, 7, 2])


def test_empty_mask_gives_the_whole_image_and_bad_masks_are_refused():
    np.testing.assert_array_equal(box_from_mask(np.zeros((4, 7), dtype=bool)), [0, 0, 7, 4])
    with pytest.raises(TypeError, match="boolean"):
        box_from_mask(np.ones((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        box_from_mask(np.ones((2, 3, 3), dtype=bool))


def test_boxes_from_heatmap_hand_computed_and_batched():
    heat = np.zeros((6, 8))
    heat[1, 1], heat[1, 2], heat[4, 6], heat[0, 7] = 1.0, 0.6, 0.55, 0.4
    np.testing.assert_array_equal(boxes_from_heatmap(heat, 0.5, "union"), [1, 1, 7, 5])
    np.testing.assert_array_equal(boxes_from_heatmap(heat, 0.5, "largest"), [1, 1, 3, 2])
    np.testing.assert_array_equal(boxes_from_heatmap(heat, 0.39, "union"), [1, 0, 8, 5])
    batch = np.stack([heat, np.zeros((6, 8)), -np.ones((6, 8))])
    np.testing.assert_array_equal(boxes_from_heatmap(batch, 0.5), [[1, 1, 3, 2], [0, 0, 8, 6], [0, 0, 8, 6]])
    with pytest.raises(ValueError, match="fraction"):
        boxes_from_heatmap(heat, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        boxes_from_heatmap(np.full((3, 3), np.nan), 0.5)


def test_largest_component_boxes_of_many_fractions_are_the_flood_fill_boxes(rng):
    # Smooth random maps fall apart into several blobs at the higher fractions.
    noise = rng.random((5, 19, 23)) ** 3
    heat = (noise + np.roll(noise, 1, 1) + np.roll(noise, 1, 2) + np.roll(noise, (1, 1), (1, 2)))
    heat[3] = 0.0   # no positive value: the whole image
    heat[4, 2:4, 2:4] = heat[4, 12:14, 15:17] = heat[4].max() * 2  # two equal blobs: the hotter
    heat[4, 13, 16] *= 1.5
    fractions = (0.1, 0.35, 0.6, 0.85, 1.0)
    boxes = largest_component_boxes(heat, fractions)
    assert boxes.shape == (5, 5, 4)
    several = 0
    for n in range(4):
        for j, f in enumerate(fractions):
            mask = heat[n] >= f * heat[n].max() if heat[n].max() > 0 else np.zeros_like(heat[n], bool)
            expected = largest_component_box_by_flood_fill(mask) if mask.any() else [0, 0, 23, 19]
            np.testing.assert_array_equal(boxes[n, j], expected)
            np.testing.assert_array_equal(boxes_from_heatmap(heat[n], f, "largest"), expected)
            several += mask.any() and not np.array_equal(expected, boxes_from_heatmap(heat[n], f, "union"))
    assert several >= 3  # the maps do fall apart, so the two modes are told apart
    np.testing.assert_array_equal(boxes[4, 2], [15, 12, 17, 14])  # the tie: the hotter blob
    # boxes_at_fractions: either mode for every fraction at once, checked like boxes_from_heatmap
    np.testing.assert_array_equal(boxes_at_fractions(heat, fractions, "largest"), boxes)
    np.testing.assert_array_equal(boxes_at_fractions(heat, fractions, "union"),
                                  np.stack([boxes_from_heatmap(heat, f, "union") for f in fractions], 1))
    with pytest.raises(ValueError, match="NaN"):
        boxes_at_fractions(np.full((1, 3, 3), np.nan), fractions, "union")
    with pytest.raises(ValueError, match="fraction"):
        boxes_at_fractions(heat, (0.5, 0.0), "largest")
    with pytest.raises(ValueError, match="mode"):
        boxes_at_fractions(heat, fractions, "hull")


def test_scale_boxes_hand_computed_and_consistent_with_upsampled_masks():
    np.testing.assert_allclose(scale_boxes([10, 20, 30, 40], (100, 200), (50, 400)), [5, 40, 15, 80])
    np.testing.assert_allclose(
        scale_boxes([[0, 0, 10, 10], [5, 5, 10, 10]], [[10, 10], [20, 10]], [[20, 30], [20, 20]]),
        [[0, 0, 20, 30], [5, 10, 10, 20]],
    )
    mask = np.zeros((5, 7), dtype=bool)
    mask[1:3, 2:6] = True
    upsampled = np.kron(mask, np.ones((3, 2), dtype=bool))  # each pixel -> 3 rows x 2 columns
    np.testing.assert_allclose(box_from_mask(upsampled), scale_boxes(box_from_mask(mask), (7, 5), (14, 15)))


def test_clip_boxes():
    np.testing.assert_array_equal(clip_boxes([-5, 3, 120, 90], (100, 80)), [0, 3, 100, 80])
    with pytest.raises(ValueError, match="positive"):
        clip_boxes([0, 0, 1, 1], (0, 10))


def test_best_ious_of_many_images_and_candidates_equal_the_iou_loop(rng):
    corners = rng.uniform(0, 50, (5, 3, 4))
    candidates = np.concatenate([np.minimum(corners[..., :2], corners[..., 2:]),
                                 np.maximum(corners[..., :2], corners[..., 2:])], axis=-1)
    truth = [candidates[0, :2] + 1, candidates[1, :1], candidates[2] * 0.9, candidates[3, 1:] - 2,
             np.array([0, 0, 50, 50.0])]
    expected = np.array([[np.max(iou(c, t)) for c in cs] for cs, t in zip(candidates, truth)])
    np.testing.assert_array_equal(best_ious(candidates, truth), expected)   # (N, F, 4)
    np.testing.assert_array_equal(best_ious(candidates[:, 1], truth), expected[:, 1])  # (N, 4)
    assert best_ious(candidates[:, 1], truth)[4] == best_iou(candidates[4, 1], truth[4])
    with pytest.raises(ValueError, match="ground truth for 4"):
        best_ious(candidates, truth[:4])
    with pytest.raises(ValueError, match="xmin > xmax"):
        best_ious(candidates[:, :, ::-1], truth)


def test_whole_pixel_boxes_are_kept_exactly_in_int16_and_others_unchanged():
    from sensloc.localize.boxes import pixel_boxes
    boxes = np.array([[0.0, 3.0, 227.0, 226.0], [5.0, 5.0, 32767.0, 6.0]])
    stored = pixel_boxes(boxes)
    assert stored.dtype == np.int16 and np.array_equal(stored.astype(np.float64), boxes)
    for other in ([[0.5, 3.0, 227.0, 226.0]], [[0.0, 0.0, 32768.0, 1.0]], [[-1.0, 0, 4, 4]]):
        assert pixel_boxes(np.array(other)).dtype == np.float64
    # Scoring reads them as float64: an int16 area (227 x 227 > 32767) would overflow.
    assert best_ious(stored[:1], [boxes[:1]])[0] == 1.0
