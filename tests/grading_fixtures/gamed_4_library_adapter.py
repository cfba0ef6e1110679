"""A GAMED submission of assignment 4: every function delegates to the library.

Run inside the grader's process (the grader of before issue 21) it would score full marks; the
grader runs submissions in a sandbox that cannot import ``sensloc``, so it must score 0 with a
message (tests/test_grade.py).
"""
import numpy as np

from sensloc.saliency import postprocess
from sensloc.localize import boxes, protocols


def grad_cam(activations, gradients):
    return np.maximum((gradients.mean(axis=(2, 3), keepdims=True) * activations).sum(axis=1), 0)


def border_mask(shape, width_fraction, edge_weight):
    return postprocess.border_mask(tuple(shape), width_fraction, edge_weight)


def khan_heat(heat, sigma, border_width, border_weight):
    return protocols.khan_heat(heat, True, sigma, border_width, border_weight)


def union_box(heat, fraction):
    return boxes.boxes_from_heatmap(heat, fraction, "union")


def khan_boxes(map_a, map_b, sigma, fraction, border_width=0.1, border_weight=0.5):
    heat = postprocess.mix(khan_heat(map_a, sigma, border_width, border_weight),
                           khan_heat(map_b, sigma, border_width, border_weight), "geometric_mean")
    return union_box(heat, fraction)
