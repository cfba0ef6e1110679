"""Assignment 4's cases: Grad-CAM from activations and gradients, and Khan et al.'s recipe (border
mask, one map's recipe, union box, two maps mixed by their geometric mean) (references:
:func:`sensloc.saliency.grad_cam`, :mod:`sensloc.saliency.postprocess`,
:func:`sensloc.localize.protocols.khan_heat`, :func:`sensloc.localize.boxes.boxes_from_heatmap`).
"""
import numpy as np

from sensloc import saliency

from sensloc.localize import boxes as box_lib

from sensloc.coursework._checks import Assignment, Case, Part, close_to, random_network


def _khan_reference():
    """The library's Khan et al. recipe (imported here only: assignment 4's references)."""
    from sensloc.localize.protocols import khan_heat
    return khan_heat


def _grad_cam_cases(rng):
    cases = []
    for number, (kind, layer) in enumerate((("gap", "relu2"), ("no_pool", "relu2"), ("flatten", "relu2")), start=1):
        net, shape = random_network(kind, rng)
        x = rng.normal(size=(3,) + shape)
        target = rng.integers(0, net.num_classes, len(x))
        trace = net.forward(x)
        signal = np.zeros_like(trace.output)
        signal[np.arange(len(x)), target] = 1.0
        activations = trace.outputs[layer]
        gradients = net.backward(trace, signal, stop=layer)
        expected = saliency.grad_cam(net, x, target, layer=layer)
        alphas = gradients.mean(axis=(2, 3), keepdims=True)

        def diagnose(got, case, activations=activations, gradients=gradients, alphas=alphas):
            if close_to(got, (alphas * activations).sum(axis=1)):
                return "Apply the final ReLU: CAM = max(sum_k alpha_k A_k, 0)"
            if close_to(got, np.maximum((gradients * activations).sum(axis=1), 0)):
                return "alpha_k is the MEAN of the gradients over the map's pixels, one number per channel"
        cases.append(Case(f"network {number}, layer {layer}, activations {activations.shape}",
                          (activations, gradients), expected, diagnose=diagnose))
    return cases


def _border_cases(rng):
    cases = []
    for shape, width, edge in (((10, 10), 0.1, 0.5), ((12, 20), 0.25, 0.2), ((7, 9), 0.5, 0.0),
                               ((6, 8), 0.0, 0.5), ((16, 11), 0.3, 0.75)):
        expected = saliency.postprocess.border_mask(shape, width, edge)

        def diagnose(got, case, shape=shape, width=width, edge=edge):
            rows = expected_profile(shape[0], width, edge)
            cols = expected_profile(shape[1], width, edge)
            if close_to(got, rows[:, None] * cols[None, :]):
                return "Take the MINIMUM of the row and column weights, not their product"
        cases.append(Case(f"shape {shape}, width_fraction {width}, edge_weight {edge}",
                          (shape, width, edge), expected, diagnose=diagnose))
    return cases


def expected_profile(length, width, edge):
    """The weights along one axis (pixel centres at i + 0.5), for diagnoses."""
    centres = np.arange(length) + 0.5
    band = width * length
    ramp = np.ones(length) if band == 0 else np.minimum(np.minimum(centres, length - centres) / band, 1.0)
    return edge + (1 - edge) * ramp


def _random_heat(rng, shape):
    """Maps with a few blobs and noise, some values negative."""
    n, h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    heat = rng.normal(0, 0.05, shape)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            r, c, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 4)
            heat[i] += rng.uniform(0.5, 2) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * s * s))
    return heat


def _khan_heat_cases(rng):
    khan_heat = _khan_reference()
    cases = []
    for shape, sigma, width, edge in (((2, 20, 24), 2.0, 0.1, 0.5), ((3, 16, 16), 0.0, 0.2, 0.3),
                                      ((2, 24, 18), 3.0, 0.0, 0.5), ((1, 30, 30), 4.0, 0.1, 0.5)):
        heat = _random_heat(rng, shape)
        expected = khan_heat(heat, True, sigma, width, edge)

        def diagnose(got, case, heat=heat, sigma=sigma, width=width, edge=edge):
            if close_to(got, khan_heat(np.abs(heat), False, sigma, width, edge)):
                return "Take the positive part max(m, 0) first, not the absolute value"
            if width > 0 and close_to(got, khan_heat(heat, True, sigma, 0.0, edge)):
                return "Multiply by the border mask at the end"
        cases.append(Case(f"maps {shape}, sigma {sigma}, border {width} at weight {edge}",
                          (heat, sigma, width, edge), expected, diagnose=diagnose))
    return cases


def _union_box_cases(rng):
    cases = []
    for label, shape, fraction in (("two blobs", (3, 20, 24), 0.5), ("low threshold", (2, 16, 16), 0.1),
                                   ("threshold 1 (the peak only)", (2, 12, 15), 1.0),
                                   ("one map all zero or negative", (3, 10, 10), 0.3)):
        heat = np.maximum(_random_heat(rng, shape), 0)
        if "zero" in label:
            heat[1] = -np.abs(heat[1])
            heat[2] = 0.0
        expected = box_lib.boxes_from_heatmap(heat, fraction, "union")

        def diagnose(got, case):
            got = np.asarray(got, dtype=np.float64)
            if got.shape == case.expected.shape and close_to(got[:, 2:] + 1, case.expected[:, 2:]):
                return "The box is continuous: a hot pixel (row i, column j) covers [j, j + 1) x [i, i + 1)"
            if got.shape == case.expected.shape and close_to(got[:, [1, 0, 3, 2]], case.expected):
                return "A box is (xmin, ymin, xmax, ymax): x is the column, y the row"
        cases.append(Case(f"{label}, maps {shape}, fraction {fraction}", (heat, fraction), expected,
                          diagnose=diagnose))
    return cases


def _khan_boxes_cases(rng):
    khan_heat = _khan_reference()
    cases = []
    for shape, sigma, fraction in (((2, 20, 20), 2.0, 0.3), ((3, 24, 16), 3.0, 0.5), ((2, 18, 22), 1.0, 0.2)):
        map_a, map_b = _random_heat(rng, shape), _random_heat(rng, shape)
        heat = saliency.postprocess.mix(khan_heat(map_a, True, sigma), khan_heat(map_b, True, sigma),
                                        "geometric_mean")
        expected = box_lib.boxes_from_heatmap(heat, fraction, "union")
        product = box_lib.boxes_from_heatmap(khan_heat(map_a, True, sigma) * khan_heat(map_b, True, sigma),
                                             fraction, "union")

        def diagnose(got, case, product=product):
            if not close_to(product, case.expected) and close_to(got, product):
                return "Mix with the geometric mean sqrt(a * b), not the product a * b"
        cases.append(Case(f"two maps {shape}, sigma {sigma}, fraction {fraction}",
                          (map_a, map_b, sigma, fraction), expected, diagnose=diagnose))
    return cases


ASSIGNMENT_4 = Assignment(4, "cam", "4_cam_and_khan.py",
                          "Grad-CAM and Khan et al.'s recipe from maps to boxes", [
    Part("grad_cam", 3, _grad_cam_cases,
         "alpha = gradients.mean(axis=(2, 3)); CAM = max(sum_k alpha[:, k] * A[:, k], 0)"),
    Part("border_mask", 3, _border_cases,
         "per axis: d = min(i + 0.5, L - i - 0.5); p = e + (1 - e) * min(d / (f L), 1) (1 if f = 0); "
         "mask = min(p_row[:, None], p_col[None, :])"),
    Part("khan_heat", 3, _khan_heat_cases,
         "max(m, 0); m / max m; Gaussian smoothing (sigma, mode 'nearest', truncate 4); m / max m; "
         "zero below the map's mean; times your border_mask", uses=("border_mask",)),
    Part("union_box", 3, _union_box_cases,
         "hot = m >= fraction * max m (nothing hot if max m <= 0: the whole image (0, 0, W, H)); "
         "box = (first hot column, first hot row, last hot column + 1, last hot row + 1)"),
    Part("khan_boxes", 3, _khan_boxes_cases,
         "a, b = khan_heat of each map; heat = sqrt(a * b); union_box(heat, fraction)",
         uses=("khan_heat", "union_box")),
])
