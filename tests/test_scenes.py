"""The scene generator: determinism, exact boxes, balance, bounded occlusion, visible objects,
saving in the manifest format, and that only the object's shape tells its class."""
import numpy as np
import pytest
from scipy import ndimage

from sensloc.data import scenes
from sensloc.data.scenes import shapes
from sensloc.data.scenes.generate import MAX_OCCLUSION, SIDE_RANGE

N_CLASSES = len(scenes.CLASS_NAMES)


@pytest.fixture(scope="module")
def train_test():
    """2000 training and 1000 test scenes from two different streams."""
    return scenes.generate(2000, seed=11), scenes.generate(1000, seed=12)


def test_class_names():
    assert len(scenes.CLASS_NAMES) >= 10
    assert len(set(scenes.CLASS_NAMES)) == len(scenes.CLASS_NAMES)
    assert scenes.generate(1).class_names == scenes.CLASS_NAMES


def test_shapes_and_dtypes():
    batch = scenes.generate(7, seed=2, size=48, start=3)
    assert batch.images.shape == (7, 48, 48, 3) and batch.images.dtype == np.uint8
    assert batch.labels.shape == (7,) and batch.labels.dtype == np.int64
    assert batch.boxes.shape == (7, 4) and batch.boxes.dtype == np.float64
    assert batch.masks.shape == (7, 48, 48) and batch.masks.dtype == bool
    assert batch.indices.tolist() == list(range(3, 10)) and len(batch) == 7
    empty = scenes.generate(0)
    assert empty.images.shape == (0, 64, 64, 3) and empty.boxes.shape == (0, 4)


def test_same_seed_same_bytes_in_any_chunking():
    whole = scenes.generate(25, seed=3)
    again = scenes.generate(25, seed=3)
    chunks = [scenes.generate(count, seed=3, start=start) for start, count in ((0, 7), (7, 1), (8, 17))]
    for name in ("images", "labels", "boxes", "masks", "occlusion"):
        assert np.array_equal(getattr(whole, name), getattr(again, name))
        assert np.array_equal(getattr(whole, name), np.concatenate([getattr(c, name) for c in chunks]))
    other = scenes.generate(25, seed=4)
    assert not np.array_equal(whole.images, other.images)
    assert not np.array_equal(whole.labels, other.labels)


def test_boxes_are_the_exact_boxes_of_the_masks_and_inside_the_image():
    size = 64
    batch = scenes.generate(200, seed=5, size=size)
    for box, mask in zip(batch.boxes, batch.masks):
        rows, cols = np.nonzero(mask)
        assert box.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    assert np.all(batch.boxes >= 0) and np.all(batch.boxes <= size)
    # Object box sides: geometric mean drawn in SIDE_RANGE. The mask's box is up to ~1.5 px
    # smaller per side than the outline's, where a sharp tip covers less than half a pixel.
    width, height = batch.boxes[:, 2] - batch.boxes[:, 0], batch.boxes[:, 3] - batch.boxes[:, 1]
    side = np.sqrt(width * height) / size
    assert side.min() >= SIDE_RANGE[0] - 3 / size and side.max() <= SIDE_RANGE[1] + 1 / size


def test_every_class_appears_and_labels_are_balanced():
    labels = scenes.generate(10 * N_CLASSES, seed=6).labels
    assert np.bincount(labels, minlength=N_CLASSES).tolist() == [10] * N_CLASSES
    # Each block of N_CLASSES consecutive scenes holds every class once, wherever a batch starts.
    shifted = scenes.generate(3 * N_CLASSES, seed=6, start=4).labels
    assert np.array_equal(shifted, labels[4:4 + 3 * N_CLASSES])
    assert sorted(labels[N_CLASSES:2 * N_CLASSES]) == list(range(N_CLASSES))


def test_occlusion_is_bounded_and_happens_in_about_half_of_the_scenes(train_test):
    occlusion = train_test[0].occlusion
    assert occlusion.min() >= 0 and occlusion.max() <= MAX_OCCLUSION
    assert 0.35 < np.mean(occlusion > 0) < 0.65


def test_objects_stand_out_from_their_surroundings():
    # Mean colour of the object's inner pixels against the mean of a 3-px band around it.
    batch = scenes.generate(300, seed=7)
    distances = []
    for image, mask in zip(batch.images.astype(float), batch.masks):
        band = ndimage.binary_dilation(mask, iterations=3) & ~mask
        inner = ndimage.binary_erosion(mask)
        distances.append(np.linalg.norm(image[inner].mean(axis=0) - image[band].mean(axis=0)))
    assert np.percentile(distances, 2) > 40


def _least_squares_accuracy(train_features, train_labels, test_features, test_labels):
    """Accuracy of a linear classifier fitted by least squares to one-hot targets (standardized
    features plus a bias)."""
    mean, scale = train_features.mean(axis=0), train_features.std(axis=0) + 1e-9

    def design(features):
        return np.column_stack([(features - mean) / scale, np.ones(len(features))])

    weights = np.linalg.lstsq(design(train_features), np.eye(N_CLASSES)[train_labels], rcond=None)[0]
    return np.mean(np.argmax(design(test_features) @ weights, axis=1) == test_labels)


def _nearest_centroid_accuracy(train_features, train_labels, test_features, test_labels):
    mean, scale = train_features.mean(axis=0), train_features.std(axis=0) + 1e-9
    train, test = (train_features - mean) / scale, (test_features - mean) / scale
    centroids = np.stack([train[train_labels == c].mean(axis=0) for c in range(N_CLASSES)])
    nearest = np.argmin(((test[:, None] - centroids[None]) ** 2).sum(axis=2), axis=1)
    return np.mean(nearest == test_labels)


def _colour_and_box_features(batch):
    """Mean colour of the object and of the whole image, a 64-bin colour histogram of the
    image, and the box's width, height, area and aspect: (N, 74)."""
    images = batch.images.astype(np.float64)
    masks = batch.masks[..., None]
    object_colour = (images * masks).sum(axis=(1, 2)) / masks.sum(axis=(1, 2))
    image_colour = images.mean(axis=(1, 2))
    bins = batch.images // 64
    codes = (bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]).astype(np.int64)
    histograms = np.stack([np.bincount(c.ravel(), minlength=64) for c in codes]) / codes[0].size
    width, height = batch.boxes[:, 2] - batch.boxes[:, 0], batch.boxes[:, 3] - batch.boxes[:, 1]
    box = np.column_stack([width, height, width * height, width / height])
    return np.column_stack([object_colour, image_colour, histograms, box])


def _shape_features(batch):
    """Four Hu moment invariants of each mask (log |.|) and the share of its box it fills: (N, 5)."""
    features = []
    for mask, box in zip(batch.masks, batch.boxes):
        rows, cols = np.nonzero(mask)
        x, y, n = cols - cols.mean(), rows - rows.mean(), len(cols)

        def eta(p, q):  # normalized central moment
            return np.sum(x ** p * y ** q) / n ** (1 + (p + q) / 2)

        n20, n02, n11 = eta(2, 0), eta(0, 2), eta(1, 1)
        n30, n03, n21, n12 = eta(3, 0), eta(0, 3), eta(2, 1), eta(1, 2)
        hu = [n20 + n02, (n20 - n02) ** 2 + 4 * n11 ** 2,
              (n30 - 3 * n12) ** 2 + (3 * n21 - n03) ** 2, (n30 + n12) ** 2 + (n21 + n03) ** 2]
        fill = n / ((box[2] - box[0]) * (box[3] - box[1]))
        features.append(np.log(np.abs(hu) + 1e-12).tolist() + [fill])
    return np.array(features)


def test_colour_texture_and_box_size_do_not_tell_the_class(train_test):
    train, test = train_test
    chance = 1 / N_CLASSES
    features = [_colour_and_box_features(batch) for batch in (train, test)]
    for classify in (_least_squares_accuracy, _nearest_centroid_accuracy):
        accuracy = classify(features[0], train.labels, features[1], test.labels)
        assert accuracy < 2 * chance, (classify.__name__, accuracy)


def test_the_masks_shape_tells_the_class(train_test):
    train, test = train_test
    features = [_shape_features(batch) for batch in (train, test)]
    accuracy = _nearest_centroid_accuracy(features[0], train.labels, features[1], test.labels)
    assert accuracy > 0.6


def test_coverage_is_the_exact_area_of_a_polygon():
    # A rectangle whose horizontal edges lie between sub-lines is covered exactly.
    rectangle = np.array([[10.3, 10.0], [20.7, 10.0], [20.7, 21.0], [10.3, 21.0]])
    cover = shapes.coverage_image([rectangle], 32, 32)
    assert cover.sum() == pytest.approx(10.4 * 11, abs=1e-4)
    assert cover[15, 10] == pytest.approx(0.7) and cover[15, 20] == pytest.approx(0.7)
    # A ring with its hole: area of the two polygons, to the sub-line sampling in y.
    ring = [r * 12 + 16 for r in shapes.SHAPES["ring"]]
    expected = shapes.signed_area(ring[0]) + shapes.signed_area(ring[1])
    assert shapes.coverage_image(ring, 32, 32).sum() == pytest.approx(expected, rel=2e-3)
    # Half outside the image: only the inside half counts.
    assert shapes.coverage_image([rectangle - [15.5, 0]], 32, 32).sum() == pytest.approx(5.2 * 11, abs=1e-4)


def test_save_scenes_round_trip_through_the_manifest_reader(tmp_path):
    from sensloc.data.datasets import read_manifest
    from sensloc.data.images import load_image

    batch = scenes.generate(12, seed=8, start=20)
    manifest = scenes.save_scenes(tmp_path / "val", batch)
    records = read_manifest(tmp_path / "val")
    assert manifest == tmp_path / "val" / "manifest.csv" and len(records) == 12
    for n, record in enumerate(records):
        assert record.class_index == batch.labels[n]
        assert record.wnid == scenes.CLASS_NAMES[batch.labels[n]]
        assert (record.width, record.height) == (64, 64)
        assert np.array_equal(record.boxes, batch.boxes[n:n + 1])
        assert np.array_equal(load_image(record.path), batch.images[n])
    # Saving the same batch again is fine; a different one is refused and changes nothing.
    before = manifest.read_bytes()
    scenes.save_scenes(tmp_path / "val", batch)
    with pytest.raises(FileExistsError, match="manifest.csv already exists"):
        scenes.save_scenes(tmp_path / "val", scenes.generate(12, seed=9))
    assert manifest.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "val").iterdir() if p.name.startswith("scene_9_")) == []
    assert not [p for p in (tmp_path / "val").iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize("arguments, error, message", [
    ({"count": -1}, ValueError, "count must be >= 0"),
    ({"count": 2.0}, TypeError, "count must be an integer"),
    ({"count": 1, "size": 31}, ValueError, "size must be >= 32"),
    ({"count": 1, "seed": 1.5}, TypeError, "seed must be an integer"),
    ({"count": 1, "seed": "0"}, TypeError, "seed must be an integer"),
    ({"count": 1, "seed": True}, TypeError, "seed must be an integer"),
    ({"count": 1, "seed": -1}, ValueError, "seed must be >= 0"),
    ({"count": 1, "start": -2}, ValueError, "start must be >= 0"),
])
def test_bad_input_is_refused(arguments, error, message):
    with pytest.raises(error, match=message):
        scenes.generate(**arguments)


def test_save_scenes_refuses_what_is_not_a_batch(tmp_path):
    with pytest.raises(TypeError, match="scenes.Scenes"):
        scenes.save_scenes(tmp_path, np.zeros((1, 64, 64, 3), np.uint8))


def test_numpy_integers_are_accepted():
    a = scenes.generate(np.int64(3), seed=np.uint32(2), size=np.int32(40))
    b = scenes.generate(3, seed=2, size=40)
    assert np.array_equal(a.images, b.images)
