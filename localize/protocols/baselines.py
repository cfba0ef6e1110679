"""The baselines as protocols: they read no map, and are cross-validated like every preset.

``CenterBox`` is Ebrahimpour & Noelle's baseline (the training set's mean box size, centred;
:func:`sensloc.localize.baselines.center_box`), ``WholeImage`` the whole input
(:func:`sensloc.localize.boxes.whole_image`). Neither has maps to learn the input's size or the
number of images from, so the size is given (``input_hw``, the network input's ``(H, W)``)
and ``predict`` takes ``count``. They reduce an image to nothing.
"""
import numpy as np

from sensloc.localize.baselines import center_box, mean_box_size
from sensloc.localize.boxes import whole_image
from sensloc.localize.protocols.base import Protocol


def _input_hw(maps, input_hw):
    if input_hw is not None:
        return tuple(input_hw)
    if not maps:
        raise ValueError("a baseline needs the input size: give input_hw=(H, W)")
    return next(iter(maps.values())).shape[1:]


def _count(maps, count):
    if count is not None:
        return int(count)
    if not maps:
        raise ValueError("a baseline reads no map: give the number of images, count=")
    return len(next(iter(maps.values())))


class CenterBox(Protocol):
    """Ebrahimpour & Noelle's baseline: the training set's mean box size, centred.

    Parameters
    ----------
    target : {"largest", "hull"}
        Which box stands for an image with several ground-truth boxes.
    size_fraction : (2,) floats, optional
        The fitted mean ``(width, height)`` as fractions of the image side.
    input_hw : (H, W), optional
        The network input's size (else read from the maps' shape).
    """

    kind = "center"

    def __init__(self, target="largest", size_fraction=None, input_hw=None):
        self.target, self.size_fraction = target, size_fraction
        self.input_hw = None if input_hw is None else tuple(input_hw)

    def fit(self, maps, gt_boxes, input_hw=None):
        self.input_hw = _input_hw(maps, input_hw or self.input_hw)
        return self.fit_reduced({}, gt_boxes)

    def fit_reduced(self, reduced, gt_boxes):
        h, w = _input_hw({}, self.input_hw)
        self.size_fraction = mean_box_size(gt_boxes, np.tile([w, h], (len(gt_boxes), 1)),
                                           self.target).tolist()
        return self

    def predict(self, maps, count=None, input_hw=None):
        self.input_hw = _input_hw(maps, input_hw or self.input_hw)
        return self.predict_reduced({}, _count(maps, count))

    def predict_reduced(self, reduced, count=None):
        h, w = _input_hw({}, self.input_hw)
        return np.tile(center_box([w, h], self.size_fraction), (_count({}, count), 1))

    def params(self):
        return {"target": self.target, "size_fraction": self.size_fraction}

    @classmethod
    def from_params(cls, p):
        return cls(p["target"], p["size_fraction"])


class WholeImage(Protocol):
    """The whole image as the box: what a localizer must beat to have learned anything."""

    kind = "whole_image"

    def __init__(self, input_hw=None):
        self.input_hw = None if input_hw is None else tuple(input_hw)

    def predict(self, maps, count=None, input_hw=None):
        self.input_hw = _input_hw(maps, input_hw or self.input_hw)
        return self.predict_reduced({}, _count(maps, count))

    def predict_reduced(self, reduced, count=None):
        h, w = _input_hw({}, self.input_hw)
        return np.tile(whole_image((w, h)), (_count({}, count), 1))

    def params(self):
        return {}

    @classmethod
    def from_params(cls, p):
        return cls()
