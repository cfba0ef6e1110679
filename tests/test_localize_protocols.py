"""Box protocols on synthetic maps whose right answer is known by construction."""
import numpy as np
import pytest

from sensloc.localize import presets
from sensloc.localize import protocols as pr
from sensloc.localize.folds import folds
from sensloc.localize.boxes import iou
from sensloc.saliency.maps import MapSpec

SPEC = MapSpec.make("gradient", "max_abs")
OTHER = MapSpec.make("guided", "max_abs")


def blob_maps(n=60, size=40, seed=0, noise=0.05):
    """Maps with a bright rectangle (the object) plus a fainter distractor; boxes are exact."""
    rng = np.random.default_rng(seed)
    maps, boxes = np.zeros((n, size, size)), []
    for i in range(n):
        w, h = rng.integers(8, 25, size=2)
        x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
        maps[i, y0:y0 + h, x0:x0 + w] = 1.0
        maps[i] += noise * rng.random((size, size))
        boxes.append(np.array([[x0, y0, x0 + w, y0 + h]], float))
    return maps, boxes


def test_threshold_protocol_tunes_a_fraction_that_recovers_the_boxes():
    maps, boxes = blob_maps()
    protocol = pr.ThresholdBoxes(SPEC, mode="union").fit({SPEC: maps}, boxes)
    assert 0.05 < protocol.fraction <= 0.8
    predicted = protocol.predict({SPEC: maps})
    assert np.mean([iou(p, b).max() for p, b in zip(predicted, boxes)]) > 0.95
    # A fixed fraction below the noise floor boxes the whole map instead.
    whole = pr.ThresholdBoxes(SPEC, "union", fraction=0.02).predict({SPEC: maps})
    np.testing.assert_array_equal(whole, np.tile([0, 0, 40, 40], (60, 1)))
    with pytest.raises(ValueError, match="no threshold"):
        pr.ThresholdBoxes(SPEC).predict({SPEC: maps})


def test_largest_component_ignores_a_separate_distractor():
    maps, boxes = blob_maps(n=1, noise=0)
    maps[0, 0:2, 0:2] = 1.0  # a small separate hot spot in the corner
    x0, y0, x1, y1 = boxes[0][0].astype(int)
    if x0 <= 2 and y0 <= 2:
        pytest.skip("the object happens to touch the corner")
    largest = pr.ThresholdBoxes(SPEC, "largest", 0.5).predict({SPEC: maps})[0]
    union = pr.ThresholdBoxes(SPEC, "union", 0.5).predict({SPEC: maps})[0]
    np.testing.assert_array_equal(largest, boxes[0][0])
    np.testing.assert_array_equal(union, [0, 0, x1, y1])


def test_khan_heat_follows_the_recipe():
    heat = np.zeros((1, 50, 50))
    heat[0, 20:30, 20:30] = 2.0
    heat[0, 0, 0] = -5.0
    out = pr.khan_heat(heat, sigma=2.0)
    assert out.min() == 0 and out.max() <= 1
    assert out[0, 25, 25] == out.max()             # the object stays the peak
    assert np.all(out[0][heat[0] < 0] == 0)          # negative evidence removed
    assert (out > 0).mean() < 0.5                    # below-mean values cut away
    edge = np.zeros((1, 50, 50))
    edge[0, 0:10, 20:30] = 1.0
    edge[0, 20:30, 20:30] = 1.0
    masked = pr.khan_heat(edge, sigma=0.5)
    assert masked[0, 0, 25] < 0.6 * masked[0, 25, 25]  # border weight 0.5 at the edge


def test_khan_protocol_mixes_two_maps():
    maps, boxes = blob_maps(seed=1)
    shifted = np.roll(maps, 3, axis=2)  # a second, slightly misaligned map of the same object
    protocol = pr.KhanBoxes(SPEC, OTHER).fit({SPEC: maps, OTHER: shifted}, boxes)
    predicted = protocol.predict({SPEC: maps, OTHER: shifted})
    assert np.mean([iou(p, b).max() >= 0.5 for p, b in zip(predicted, boxes)]) > 0.9
    again = presets.protocol_from_params("khan", protocol.params())
    np.testing.assert_array_equal(again.predict({SPEC: maps, OTHER: shifted}), predicted)


def test_regression_protocol_learns_boxes_from_maps():
    maps, boxes = blob_maps(n=200, seed=2)
    boxes_cv, fitted = pr.cross_validated_boxes(lambda: pr.RegressionBoxes([SPEC], grid_sizes=8),
                                                {SPEC: maps}, boxes, k=5)
    corloc = np.mean([iou(p, b).max() >= 0.5 for p, b in zip(boxes_cv, boxes)])
    center = pr.CenterBox().fit({}, boxes, (40, 40)).predict({}, 200, (40, 40))
    baseline = np.mean([iou(p, b).max() >= 0.5 for p, b in zip(center, boxes)])
    assert corloc > 0.7 and corloc > baseline + 0.5  # measured 0.755 against 0.07
    assert len(fitted) == 5 and fitted[0].regressor.lam in pr.LAMBDAS
    again = presets.protocol_from_params("regression", fitted[0].params())
    np.testing.assert_allclose(again.predict({SPEC: maps}), fitted[0].predict({SPEC: maps}))


def test_cross_validation_never_sees_the_test_fold():
    class Memorize(pr.Protocol):
        """Predicts the training box of the most similar training map: perfect if it leaks."""
        map_specs = (SPEC,)

        def reduce(self, maps):
            return {"maps": maps[SPEC]}

        def fit_reduced(self, reduced, gt_boxes):
            self.maps, self.boxes = reduced["maps"], gt_boxes
            return self

        def predict_reduced(self, reduced):
            distance = ((reduced["maps"][:, None] - self.maps[None]) ** 2).sum(axis=(2, 3))
            return np.stack([self.boxes[j][0] for j in distance.argmin(axis=1)])

    maps, boxes = blob_maps(n=50, seed=3)
    leaked = Memorize().fit({SPEC: maps}, boxes).predict({SPEC: maps})
    assert np.mean([iou(p, b).max() for p, b in zip(leaked, boxes)]) == 1.0
    honest, _ = pr.cross_validated_boxes(Memorize, {SPEC: maps}, boxes, k=5)
    assert np.mean([iou(p, b).max() for p, b in zip(honest, boxes)]) < 0.6
    assert np.bincount(folds(50, 5)).tolist() == [10] * 5
    with pytest.raises(ValueError, match="2 <= k"):
        folds(3, 5)


def test_center_box_baseline_uses_the_mean_size():
    boxes = [np.array([[0, 0, 10, 20]]), np.array([[5, 5, 35, 25]])]
    protocol = pr.CenterBox().fit({}, boxes, input_hw=(40, 40))
    np.testing.assert_allclose(protocol.size_fraction, [0.5, 0.5])
    np.testing.assert_allclose(protocol.predict({}, 1, (40, 40)), [[10, 10, 30, 30]])
    np.testing.assert_allclose(pr.WholeImage().predict({}, 2, (40, 30)), [[0, 0, 30, 40]] * 2)


def test_presets_are_known():
    for name in presets.PRESETS:
        assert presets.preset(name, "squeezenet1_0").map_specs
    assert presets.preset("grad_cam", "vgg16").spec.options == (("layer", "relu5_3"),)
    with pytest.raises(ValueError, match="unknown preset"):
        presets.preset("best-ever", "vgg16")


def test_baselines_are_cross_validated_like_every_protocol():
    """The runner's center box: each fold's box has the mean size of the *other* folds."""
    from sensloc.evaluation.runner import predict_boxes
    rng = np.random.default_rng(7)
    corners = rng.uniform(0, 40, (23, 4))
    boxes = [np.array([[min(a, c), min(b, d), max(a, c), max(b, d)]]) for a, b, c, d in corners]
    got = predict_boxes([], {}, boxes, (40, 48), k=3, seed=2)
    assert list(got) == ["baseline: center box", "baseline: whole image"]
    fold = folds(23, 3, seed=2)
    for f in range(3):
        train = [b[0] for b, g in zip(boxes, fold) if g != f]
        w = np.mean([(b[2] - b[0]) / 48 for b in train]) * 48
        h = np.mean([(b[3] - b[1]) / 40 for b in train]) * 40
        np.testing.assert_allclose(got["baseline: center box"][fold == f],
                                   [[24 - w / 2, 20 - h / 2, 24 + w / 2, 20 + h / 2]] * (fold == f).sum())
    np.testing.assert_array_equal(got["baseline: whole image"], [[0, 0, 48, 40]] * 23)
    # Without cross-validation the center box is fitted on all images.
    everything = predict_boxes([], {}, boxes, (40, 48), k=0, seed=2)["baseline: center box"]
    w = np.mean([b[0, 2] - b[0, 0] for b in boxes])
    np.testing.assert_allclose(everything[0, [0, 2]], [24 - w / 2, 24 + w / 2])


def test_one_feature_layer_for_grad_cam_neuron_selection_and_the_presets(rng):
    """``explain --method grad_cam`` (the default layer) and the ``grad_cam`` preset agree."""
    from sensloc import nets, saliency
    from sensloc.saliency.layers import feature_layer
    assert feature_layer("squeezenet1_0") == "fire9" and feature_layer("vgg16") == "relu5_3"
    assert feature_layer("mobilenet_v2") == "head_relu6"
    for architecture in nets.ARCHITECTURES:
        layer = feature_layer(architecture)
        assert presets.preset("grad_cam", architecture).spec.options == (("layer", layer),)
        assert dict(presets.preset("dwaraknath", architecture).spec.options)["layer"] == layer
        assert dict(presets.preset("mix", architecture).map_specs[-1].options)["layer"] == layer
        small = {"input_size": 32, "hidden": 8} if architecture.startswith("vgg") else {}
        nets.build(architecture, num_classes=4, **small).layer(layer)  # the layer exists
    net = nets.random_parameters(nets.squeezenet1_0(num_classes=5), seed=1)
    x = rng.normal(size=(1, 3, 67, 67)).astype(np.float32)
    np.testing.assert_array_equal(saliency.grad_cam(net, x, 2),
                                  saliency.grad_cam(net, x, 2, layer="fire9"))
    np.testing.assert_array_equal(saliency.neuron_selection(net, x, 2, k=2),
                                  saliency.neuron_selection(net, x, 2, layer="fire9", k=2))
    # A network that declares no feature layer: the last layer with a spatial output.
    net.name, net.feature_layer = "my_net", None
    trace = net.forward(x)
    assert feature_layer(net, trace) == [n for n, o in trace.outputs.items() if o.ndim == 4][-1]
    with pytest.raises(ValueError, match="declares no feature layer"):
        feature_layer("my_net")
