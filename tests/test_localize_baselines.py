import numpy as np
import pytest

from conftest import shared_path
from sensloc.localize.baselines import center_box, mean_box_size
from sensloc.localize.boxes import scale_boxes, whole_image
from sensloc.data.datasets import read_manifest

GT = [np.array([[0, 0, 200, 100]]), np.array([[10, 50, 30, 90], [0, 0, 80, 40]])]
SIZES = [(400, 200), (100, 100)]


def test_whole_image():
    np.testing.assert_array_equal(whole_image((640, 480)), [0, 0, 640, 480])
    np.testing.assert_array_equal(whole_image([(640, 480), (5, 7)]), [[0, 0, 640, 480], [0, 0, 5, 7]])


def test_mean_box_size_hand_computed():
    # Image 1: (200/400, 100/200) = (.5, .5). Image 2: the largest box is 80x40 -> (.8, .4);
    # the hull of both boxes is (0, 0, 80, 90) -> (.8, .9).
    np.testing.assert_allclose(mean_box_size(GT, SIZES, "largest"), [0.65, 0.45])
    np.testing.assert_allclose(mean_box_size(GT, SIZES, "hull"), [0.65, 0.7])
    with pytest.raises(ValueError, match="one image size per image"):
        mean_box_size(GT, SIZES[:1])


def test_center_box_hand_computed_and_batched():
    np.testing.assert_allclose(center_box((200, 100), (0.5, 0.4)), [50, 30, 150, 70])
    np.testing.assert_allclose(center_box([(200, 100), (10, 10)], (0.5, 0.4)), [[50, 30, 150, 70], [2.5, 3, 7.5, 7]])
    with pytest.raises(ValueError, match="fractions"):
        center_box((200, 100), (50, 40))


def test_center_box_transfers_across_image_sizes():
    # Sizes are fractions of the side, so resizing the image resizes the box with it.
    small = center_box((227, 227), (0.6, 0.3))
    np.testing.assert_allclose(center_box((500, 375), (0.6, 0.3)), scale_boxes(small, (227, 227), (500, 375)))


def test_mean_box_size_of_real_tiny_imagenet_boxes():
    records = read_manifest(shared_path("data", "tiny-imagenet-val"))
    boxes = np.concatenate([r.boxes for r in records])  # one box per Tiny ImageNet image
    expected = ((boxes[:, 2] - boxes[:, 0]) / 64).mean(), ((boxes[:, 3] - boxes[:, 1]) / 64).mean()
    np.testing.assert_allclose(mean_box_size([r.boxes for r in records], [(64, 64)] * len(records)), expected)
