"""MobileNetV2 (nets.mobilenet) against independent references.

* A PyTorch twin (``torch_reference.TorchMobileNetV2``, written from the paper, grouped
  ``nn.Conv2d`` for the depthwise convolutions, ``nn.ReLU6``, ``x + h`` residuals) with the same
  weights: logits, and the gradient, guided backprop, deconvnet and DeepLIFT (blurred reference)
  maps through Captum, in float64 to 1e-10 relative. Twice: with random weights, and with the
  real weights of the quantized TFLite file (from ../shared, skipped when absent). The input is
  96 x 96 (the network takes any size; every stride-2 layer then sees an even size, which the
  twin's fixed ``ZeroPad2d((0, 1, 0, 1))`` assumes) to keep the float64 passes quick.
* Captum 0.9 knows only ``nn.ReLU``: its guided backprop and deconvolution hook ``nn.ReLU``
  modules alone, and its DeepLIFT applies the rescale rule only to the module types in its
  table. The tests register ``nn.ReLU6`` in both places (:func:`captum_sees_relu6`), so that
  Captum applies to ReLU6 exactly what it applies to ReLU: guided backprop rectifies the
  gradient at the module's input, ``1[s_in > 0] s_in`` with ``s_in = 1[0 < eta < 6] s``;
  deconvnet rectifies the gradient at its output, ``1[s > 0] s``; DeepLIFT takes the secant.
  The residual additions need nothing: Captum's DeepLIFT treats them as linear (autograd).
* DeepLIFT's summation-to-delta in float32 to 1e-4 relative.
* Classification: the float network against the TFLite interpreter (``ai-edge-litert``,
  test-only) running the quantized files on the development photos.
"""
import dataclasses

import numpy as np
import pytest

from conftest import shared_path

captum = pytest.importorskip("captum", reason="Captum is the reference here")
torch_reference = pytest.importorskip("torch_reference")
torch = torch_reference.torch
nn = torch.nn
from captum._utils.common import _register_backward_hook  # noqa: E402
from captum.attr import Deconvolution, DeepLift, GuidedBackprop, Saliency  # noqa: E402
from captum.attr._core import deep_lift as captum_deep_lift  # noqa: E402
from captum.attr._core.guided_backprop_deconvnet import (  # noqa: E402
    ModifiedReluGradientAttribution)

from sensloc import nets, saliency  # noqa: E402
from sensloc.data.images import resize_image  # noqa: E402
from sensloc.weights import tflite  # noqa: E402
from sensloc.weights.convert import tflite_preprocessing  # noqa: E402

relative_error = torch_reference.relative_error
EXACT = 1e-10
SIDE = 96
FILES = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def model_path(name):
    return shared_path("weights", "mobilenet-tflite", name)


@pytest.fixture(scope="module", params=["random", "tflite"])
def twin(request):
    """``(nets, models, x, targets)``: the network and its twin in float32 and float64 (dicts
    by dtype), two photos (chelsea, coffee) at 96 x 96, and each photo's top-1 class."""
    from skimage import data
    if request.param == "random":
        params = nets.random_parameters(nets.build("mobilenet_v2"), seed=0).parameters()
        scale, zero_point = 1 / 128, 128.0
    else:
        params, (scale, zero_point) = tflite.read_mobilenet_v2(model_path(FILES[0]))
    preprocessing = dataclasses.replace(tflite_preprocessing(scale, zero_point),
                                        input_size=(SIDE, SIDE))
    x = np.stack([preprocessing.apply(resize_image(photo, (SIDE, SIDE), "squash"))
                  for photo in (data.chelsea(), data.coffee())])
    nets_, models, xs = {}, {}, {}
    for dtype in (np.float32, np.float64):
        net = nets.build("mobilenet_v2").load_parameters(params).astype(dtype)
        nets_[dtype] = net
        models[dtype] = torch_reference.torch_model(net).to(torch.float64 if dtype == np.float64
                                                            else torch.float32)
        xs[dtype] = x.astype(dtype)
    targets = nets_[np.float64](xs[np.float64]).argmax(axis=1)
    return request.param, nets_, models, xs, targets


@pytest.fixture
def captum_sees_relu6(monkeypatch):
    """Make Captum treat ``nn.ReLU6`` as it treats ``nn.ReLU`` (see the module docstring)."""
    def register_hooks(self, module):
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))

    monkeypatch.setattr(ModifiedReluGradientAttribution, "_register_hooks", register_hooks)
    monkeypatch.setitem(captum_deep_lift.SUPPORTED_NON_LINEAR, nn.ReLU6,
                        captum_deep_lift.nonlinear)


def test_the_architecture_is_table_2(twin):
    _, nets_, _, _, _ = twin
    net = nets_[np.float32]
    assert [layer.name for layer in net.layers][:4] == ["stem_pad", "stem", "stem_relu6",
                                                         "block1"]
    assert list(net.parameters()) == tflite.layer_names()
    assert sum(layer.residual for layer in net.layers if hasattr(layer, "residual")) == 10
    # Keras's MobileNetV2 has 3,538,984 parameters: 17,056 batch-norm channels with four
    # each; folded, they leave one bias each (-3 x 17,056), and the head has a 1001st class
    # (+1,281).
    count = sum(w.size for p in net.parameters().values() for w in p.values())
    assert count == 3_538_984 - 3 * 17_056 + 1_281
    trace = net.forward(np.zeros((1, 3, 224, 224), np.float32))
    assert trace.outputs["head_relu6"].shape == (1, 1280, 7, 7)   # 224 / 32
    assert trace.outputs[net.feature_layer].shape[2:] == (7, 7)


def test_logits_equal_the_twins(twin):
    name, nets_, models, xs, targets = twin
    for dtype, bound in ((np.float64, EXACT), (np.float32, 1e-4)):
        with torch.no_grad():
            theirs = models[dtype](tensor(xs[dtype])).numpy()
        assert theirs.dtype == dtype
        error = relative_error(nets_[dtype](xs[dtype]), theirs)
        print(f"{name} {np.dtype(dtype).name} logits: relative error {error:.2e}")
        assert error <= bound
    if name == "tflite":
        # Egyptian cat (background is class 0); at 96 x 96 the coffee photo reads as red wine
        # (967; espresso, 968, at 224 x 224)
        assert list(targets) == [286, 967]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_maps_match_captum_in_float64(twin, captum_sees_relu6, backend):
    name, nets_, models, xs, t = twin
    net, model, x, tt = nets_[np.float64], models[np.float64], xs[np.float64], tensor(t)
    reference = saliency.make_reference(net, x, "blur")
    with nets.backend(backend):
        ours = {"gradient": saliency.gradient(net, x, t),
                "guided": saliency.guided_backprop(net, x, t),
                "deconvnet": saliency.deconvnet(net, x, t),
                "deeplift": saliency.deeplift(net, x, t, reference=reference)}
    theirs = {"gradient": Saliency(model).attribute(tensor(x), target=tt, abs=False),
              "guided": GuidedBackprop(model).attribute(tensor(x), target=tt),
              "deconvnet": Deconvolution(model).attribute(tensor(x), target=tt),
              "deeplift": DeepLift(model).attribute(tensor(x), baselines=tensor(reference),
                                                    target=tt)}
    for method in ours:
        expected = theirs[method].detach().numpy()
        assert np.abs(expected).max() > 0, method
        error = relative_error(ours[method], expected)
        print(f"{name} {backend} float64 {method}: max|ours - captum| / max|captum| = "
              f"{error:.2e}")
        assert error <= EXACT, method
    # The rules change the maps: guided and deconvnet are not the gradient.
    assert relative_error(ours["guided"], ours["gradient"]) > 0.1
    assert relative_error(ours["deconvnet"], ours["guided"]) > 0.1


def test_relu6_is_not_treated_as_a_relu(twin, captum_sees_relu6):
    """Units above 6 are cut by every gradient-based rule: without that step, the maps differ."""
    name, nets_, _, xs, t = twin
    net, x = nets_[np.float64], xs[np.float64]
    trace = net.forward(x)
    above = sum(int((cache > 6).sum()) for cache in _relu6_inputs(net, trace))
    print(f"{name}: {above} ReLU6 inputs above 6 for two photos")
    assert above > 0


def _relu6_inputs(net, trace):
    for layer in net.layers:
        cache = trace.caches[layer.name]
        if isinstance(layer, nets.ReLU6):
            yield cache
        elif isinstance(layer, nets.InvertedResidual):
            yield from (cache[step.name] for step in layer.steps
                        if isinstance(step, nets.ReLU6))


def test_deeplift_summation_to_delta(twin):
    """Float32: ``sum(C) == f_t(x) - f_t(x_ref)`` to 1e-4 relative, three references."""
    name, nets_, _, xs, t = twin
    if name == "random":
        pytest.skip("random weights give logit differences of 0.3-1.4, the size of the float32 "
                    "rounding of the ~1e4 terms summed; the real weights give a real gap")
    net, x = nets_[np.float32], xs[np.float32]
    rng = np.random.default_rng(3)
    for reference in ("zero", "blur", rng.normal(size=x.shape).astype(np.float32)):
        _, delta = saliency.deeplift(net, x, t, reference=reference, return_delta=True)
        ref = saliency.make_reference(net, x, reference)
        rows = np.arange(len(t))
        gap = net(x)[rows, t] - net(ref)[rows, t]
        relative = np.abs(delta) / np.abs(gap)
        label = reference if isinstance(reference, str) else "random"
        print(f"{name} float32 DeepLIFT ({label}): f(x) - f(ref) = {gap}, relative error "
              f"{relative}")
        assert np.all(np.abs(gap) > 0.5)
        assert np.all(relative <= 1e-4)


# ------------------------------------------------------------------ against the TFLite interpreter

#: Photos of the development set classified by both (the first ones of the manifest). All 649
#: were measured once (README): 97.8% (quant) and 97.4% (ptq) agreement.
PHOTOS = 60


@pytest.mark.parametrize("name", FILES)
def test_top1_agrees_with_the_tflite_interpreter(name, tmp_path):
    """On the development photos, squashed to 224 x 224 uint8 RGB, the float network (the
    converted file, float32, fast backend) picks the interpreter's top-1 class on >= 95%.

    The quantized output is a uint8/int8 softmax, so two classes can tie at its top; ours then
    counts as agreeing when it is one of them.
    """
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter",
                                             reason="the TFLite interpreter is the reference")
    import csv

    from sensloc import weights
    from sensloc.data.images import load_resized
    folder = shared_path("data", "imagenet-val-227")
    with open(folder / "manifest.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))[:PHOTOS]
    net = weights.load(weights.convert(model_path(name), out=tmp_path / "mobilenet_v2.h5"))
    interpreter = interpreter_module.Interpreter(model_path=str(model_path(name)))
    interpreter.allocate_tensors()
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    agree = correct_ours = correct_theirs = 0
    with nets.backend("numba"):
        for row in rows:
            image = load_resized(folder / row["file"], (224, 224), "squash")
            interpreter.set_tensor(source["index"], image[None])
            interpreter.invoke()
            scores = interpreter.get_tensor(sink["index"])[0].astype(np.int64)
            ours = int(net(net.preprocessing.apply(image)[None]).argmax())
            agree += scores[ours] == scores.max()
            # The manifest numbers ImageNet's classes 0-999; output 0 is "background".
            correct_ours += net.dataset_classes(ours) == int(row["class_index"])
            correct_theirs += scores.argmax() == int(row["class_index"]) + 1
    assert net.class_offset == 1 and net.class_names[0] == "background"
    print(f"{name}: top-1 agreement {agree}/{len(rows)}; accuracy float {correct_ours}, "
          f"TFLite {correct_theirs}")
    assert agree >= 0.95 * len(rows)
    assert correct_ours >= 0.6 * len(rows)  # a real classifier (measured 75-79% on all photos)


# ------------------------------------------------------------------ every method and preset

def test_every_map_method_and_preset_runs_on_mobilenet_v2():
    """Each map kind the methods offer, and each map every preset reads, computes on
    MobileNetV2 (random weights, 64 x 64): the shape of the input, finite, not all zero."""
    from sensloc.localize.presets import PRESETS, mix_specs, objectness_layers, preset
    from sensloc.saliency.maps import METHOD_OPTIONS, MapSpec
    net = nets.random_parameters(nets.build("mobilenet_v2"), seed=1)
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    specs = {MapSpec.make(method) for method in METHOD_OPTIONS
             if method not in ("activations", "integrated_gradients", "smoothgrad",
                               "occlusion")}
    specs |= {MapSpec.make("integrated_gradients", steps=4), MapSpec.make("smoothgrad", samples=2),
              MapSpec.make("occlusion", window=32, stride=32)}
    specs |= set(mix_specs("mobilenet_v2")) | set(objectness_layers("mobilenet_v2"))
    for name in PRESETS:
        assert preset(name, "mobilenet_v2") is not None
    with nets.backend("numba"):
        for spec in sorted(specs, key=lambda s: s.name):
            heat = spec.compute(net, x, np.array([5]))
            if spec.is_features:  # activations, class contributions: cells x channels
                assert heat.shape[2:] == (2, 2), spec.name   # 64 / 32
            else:
                assert heat.shape == (1, 64, 64), spec.name
            assert np.isfinite(heat).all() and np.abs(heat).max() > 0, spec.name
