"""The saliency methods against Captum on the same weights and inputs.

VGG16 with random weights at 224x224 and SqueezeNet 1.0 with the real (Deep Compression) weights
explain real photos (scikit-image's chelsea and coffee); the PyTorch twins of
``torch_reference`` carry the same parameters. The criterion of the issue is
``max |ours - captum| <= 1e-4 * max |captum|`` (:func:`torch_reference.relative_error`).

What the measurements taught (numbers in the tests' printed output):

* In float64 every method agrees with Captum to rounding (1e-15 .. 1e-13; integrated gradients
  1e-8, because Captum multiplies by quadrature weights rounded to float32).
* In float32, maps that depend on which side of a ReLU kink (or which max-pool winner) a unit
  falls miss the criterion (gradient: VGG16 1.8e-2, SqueezeNet 8e-3): the two frameworks'
  float32 forward passes disagree about the sign of one or two pre-activations out of 5e6 to
  1.4e7, and whichever lands on the other side from float64 is off (on VGG16 Captum's float32
  map is 1.3e-2 from its float64 map too). Our float32 backward pass run through the float64
  pass's kinks matches Captum in float64 to <1e-6: the kinks are the whole story. Guided
  backprop and deconvnet on VGG16 and Grad-CAM on both nets hold the criterion in float32.
* DeepLIFT: Captum 0.9.0 does not apply its own max-pool rule when a pool reads the output of
  an ``nn.ReLU`` module (VGG16 everywhere, SqueezeNet's pool1). Its backward hooks
  (``captum._utils.common._register_backward_hook``) put two tensor hooks on that one tensor:
  the ReLU's hook that records its output gradient runs BEFORE the pool's hook that rewrites
  the gradient, so the ReLU's secant multiplies the plain switch-routed gradient. The result
  is exactly our ``max_pool="gradient"``, and summation-to-delta fails (by ~39 logits on VGG16
  with a blurred reference). Giving each pool an input tensor of its own (a ``clone`` module in
  front of it, :func:`pools_with_own_inputs`) restores Captum's intended rule, which then equals
  our ``max_pool="difference"`` exactly on VGG16 (2x2 windows do not overlap). On SqueezeNet
  (3x3 stride 2 windows overlap) Captum's rule still breaks summation-to-delta by 10-15 logits,
  because its ``max_unpool2d`` ASSIGNS where our routing ADDS; with an adding unpool patched
  in (:func:`adding_maxpool2d`) Captum equals our rule exactly. Ours is not made to copy either
  defect: its summation-to-delta holds everywhere.
* Occlusion (forward passes only) is compared on a small random net: Captum's map is float32
  even for float64 inputs (it divides after ``.float()``), so float32 rounding is the closest
  possible agreement (measured 3e-8 .. 4e-8 relative; 7e-7 .. 1.2e-6 with float32 nets).
"""
import contextlib
import re

import numpy as np
import pytest

captum = pytest.importorskip("captum", reason="Captum is the reference here")
torch_reference = pytest.importorskip("torch_reference")
torch = torch_reference.torch
nn = torch.nn
F = nn.functional
from captum.attr import (Deconvolution, DeepLift, GuidedBackprop, InputXGradient,  # noqa: E402
                         IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion, Saliency)
from captum.attr._core import deep_lift as captum_deep_lift  # noqa: E402

from sensloc import nets  # noqa: E402
from sensloc import saliency  # noqa: E402
from sensloc.nets.layers import PoolCache  # noqa: E402
from sensloc.nets.network import Trace  # noqa: E402
from test_saliency_rules import small_net  # noqa: E402
from sensloc.data.images import CAFFE_VGG16, resize_image  # noqa: E402

relative_error = torch_reference.relative_error

#: The issue's criterion, max |ours - captum| <= TOL * max |captum|.
TOL = 1e-4
#: Float64 agreement: rounding only.
EXACT = 1e-10
#: Captum's version shows the DeepLIFT defects described above (hook order; assigning unpool).
CAPTUM_VERSION = tuple(int(v) for v in re.findall(r"\d+", captum.__version__)[:2])
CAPTUM_DEFECTIVE = CAPTUM_VERSION <= (0, 9)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ------------------------------------------------------------------------------------ helpers

def tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def numpy(t):
    return t.detach().numpy()


def report(what, ratio):
    print(f"{what}: max|ours - captum| / max|captum| = {ratio:.3e}")
    return ratio


class _Clone(nn.Module):
    """``x -> x.clone()``: a tensor of its own for the module that follows."""

    def forward(self, x):
        return x.clone()


@contextlib.contextmanager
def pools_with_own_inputs(model):
    """Put a :class:`_Clone` in front of every max pool of ``model.features`` (same parameters).

    With the pool reading the ReLU's output tensor directly, Captum's backward hooks of the two
    modules sit on one tensor and the ReLU reads the gradient before the pool rewrites it.
    """
    original = model.features
    modules = []
    for module in original:
        if isinstance(module, nn.MaxPool2d):
            modules.append(_Clone())
        modules.append(module)
    model.features = nn.Sequential(*modules)
    try:
        yield model
    finally:
        model.features = original


def adding_unpool2d(values, indices, kernel_size, stride, padding, output_size):
    """``F.max_unpool2d`` that ADDS the values of windows sharing a winner (overlapping windows)."""
    n, c, h, w = output_size
    out = values.new_zeros(n, c, h * w)
    out.scatter_add_(2, indices.flatten(2), values.flatten(2))
    return out.view(n, c, h, w)


def adding_maxpool2d(module, inputs, outputs, grad_input, grad_output, eps=1e-10):
    """Captum's DeepLIFT max-pool rule with :func:`adding_unpool2d` in place of the assignment."""
    return captum_deep_lift.maxpool(module, F.max_pool2d, adding_unpool2d, inputs, outputs,
                                    grad_input, grad_output, eps=eps)


def captum_deeplift(model, x, reference, targets):
    """Captum's DeepLIFT attributions and its convergence delta (N,), as arrays."""
    attributions, delta = DeepLift(model).attribute(tensor(x), baselines=tensor(reference),
                                                    target=tensor(targets),
                                                    return_convergence_delta=True)
    return numpy(attributions), numpy(delta)


def float32_trace_with_float64_kinks(net64, x64):
    """A float32 trace of ``x`` whose ReLU inputs and pool switches come from the float64 pass.

    A float32 backward pass through it is a fixed linear map computed in float32: it differs
    from the float64 gradient by rounding alone, never by a kink taken on the other side.
    """
    def cast(cache):
        if isinstance(cache, PoolCache):
            return PoolCache(cache.x.astype(np.float32), cache.y.astype(np.float32), cache.argmax)
        if isinstance(cache, dict):
            return {name: cast(value) for name, value in cache.items()}
        if isinstance(cache, np.ndarray) and cache.dtype == np.float64:
            return cache.astype(np.float32)
        return cache

    trace = net64.forward(x64)
    return Trace(input=x64.astype(np.float32), caches=cast(trace.caches),
                 outputs={name: out.astype(np.float32) for name, out in trace.outputs.items()})


def relu_inputs(caches):
    """Every ReLU input of a trace (fire modules included), in forward order."""
    found = []
    for name, cache in caches.items():
        if isinstance(cache, dict):
            found += relu_inputs(cache)
        elif name.rsplit("/", 1)[-1].startswith("relu"):
            found.append(cache)
    return found


def torch_relu_inputs(model, x):
    found = []
    hooks = [m.register_forward_pre_hook(lambda module, args: found.append(numpy(args[0]).copy()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(tensor(x))
    finally:
        for hook in hooks:
            hook.remove()
    return found


# ----------------------------------------------------------------------------------- fixtures

class Case:
    """One network in float32 and float64, its PyTorch twins, the photos and their targets.

    ``x`` is the first photo alone (1, 3, H, W), which most tests explain to save time;
    ``pair`` holds both photos.
    """

    def __init__(self, name, net32, photos, cam_layer, cam_module_index):
        self.name = name
        self.nets = {np.float32: net32}
        net64 = nets.build(net32.name, num_classes=net32.num_classes)
        net64.load_parameters(net32.parameters()).astype(np.float64)
        net64.preprocessing = net32.preprocessing
        self.nets[np.float64] = net64
        # The twins share the arrays' memory: VGG16 in two precisions is 2.5 GB, not 5.
        self.models = {dtype: torch_reference.torch_model(net, copy=False)
                       for dtype, net in self.nets.items()}
        pre = net32.preprocessing
        x = np.stack([pre.apply(resize_image(p, pre.input_size, pre.resize)) for p in photos])
        self.pair = {np.float32: x, np.float64: x.astype(np.float64)}
        self.pair_targets = net32(x).argmax(axis=1)
        self.x = {dtype: pair[:1] for dtype, pair in self.pair.items()}
        self.targets = self.pair_targets[:1]
        self.cam_layer, self.cam_module_index = cam_layer, cam_module_index
        self.references = {
            "blur": saliency.make_reference(net64, self.x[np.float64], "blur"),
            "random": np.random.default_rng(7).uniform(-120, 120, self.x[np.float64].shape),
            "zero": np.zeros_like(self.x[np.float64]),
        }

        self._results = {}

    def cam_module(self, dtype):
        return self.models[dtype].features[self.cam_module_index]

    def result(self, key, compute):
        """``compute()``, once per case (tests share Captum's float64 maps)."""
        if key not in self._results:
            self._results[key] = compute()
        return self._results[key]

    def gap(self, dtype, reference):
        """``f_t(x) - f_t(x_ref)`` per image, computed without the saliency package."""
        net = self.nets[dtype]
        logits = self.result(("logits", dtype), lambda: net(self.x[dtype]))
        rows = np.arange(len(logits))
        return logits[rows, self.targets] - net(np.asarray(reference, dtype))[rows, self.targets]

    def captum_gradient(self, dtype):
        x, tt = tensor(self.x[dtype]), tensor(self.targets)
        return self.result(("gradient", dtype), lambda: numpy(
            Saliency(self.models[dtype]).attribute(x, target=tt, abs=False)))

    def captum_guided(self, dtype):
        x, tt = tensor(self.x[dtype]), tensor(self.targets)
        return self.result(("guided", dtype), lambda: numpy(
            GuidedBackprop(self.models[dtype]).attribute(x, target=tt)))


@pytest.fixture(scope="module")
def photos():
    from skimage import data
    return [data.chelsea(), data.coffee()]


@pytest.fixture(scope="module", params=["vgg16", "squeezenet1_0"])
def case(request, photos):
    if request.param == "vgg16":
        net = nets.random_parameters(nets.build("vgg16"), seed=0)
        net.preprocessing = CAFFE_VGG16
        # features[29] is the twin's ReLU after conv5_3 (5 blocks of conv/relu pairs and pools).
        yield Case("vgg16", net, photos, "relu5_3", 29)
    else:
        from sensloc import weights
        net = weights.load(request.getfixturevalue("squeezenet_file"))
        # features[12] is the twin's fire9 (conv1, relu, pool1, fire2-4, pool4, fire5-8, pool8).
        yield Case("squeezenet1_0", net, photos, "fire9", 12)


# ---------------------------------------------------------------------- gradient-based maps

def test_twins_and_targets(case):
    """The real SqueezeNet classifies the photos right; the twins agree in both precisions."""
    for dtype, bound in ((np.float64, EXACT), (np.float32, TOL)):
        x = case.pair[dtype] if case.name == "squeezenet1_0" else case.x[dtype]
        with torch.no_grad():
            logits = numpy(case.models[dtype](tensor(x)))
        assert logits.dtype == dtype
        assert relative_error(case.nets[dtype](x), logits) <= bound
    if case.name == "squeezenet1_0":
        assert list(case.pair_targets) == [285, 967]  # Egyptian cat, espresso


def test_gradient_maps_match_captum_in_float64(case):
    net, model, x = case.nets[np.float64], case.models[np.float64], case.x[np.float64]
    t, tt = case.targets, tensor(case.targets)
    pairs = {
        "gradient": (saliency.gradient(net, x, t), case.captum_gradient(np.float64)),
        "gradient_x_input": (saliency.gradient_x_input(net, x, t),
                             InputXGradient(model).attribute(tensor(x), target=tt)),
        "guided": (saliency.guided_backprop(net, x, t), case.captum_guided(np.float64)),
        "deconvnet": (saliency.deconvnet(net, x, t),
                      Deconvolution(model).attribute(tensor(x), target=tt)),
        "grad_cam": (saliency.grad_cam(net, x, t, layer=case.cam_layer),
                     LayerGradCam(model, case.cam_module(np.float64)).attribute(
                         tensor(x), target=tt, relu_attributions=True)[:, 0]),
    }
    for method, (ours, theirs) in pairs.items():
        theirs = theirs if isinstance(theirs, np.ndarray) else numpy(theirs)
        assert ours.shape == theirs.shape
        if case.name == "squeezenet1_0" and method == "deconvnet":
            # The real SqueezeNet's deconvnet signal dies in fire8 (only 29% of its expand
            # weights are positive; every squeeze unit receives a negative sum, which the
            # deconvnet ReLU zeroes): both maps are exactly zero, for every top class tried.
            # test_deconvnet_matches_captum_on_random_squeezenet covers a live signal.
            assert not np.any(theirs) and not np.any(ours)
            continue
        assert np.abs(theirs).max() > 0
        assert report(f"{case.name} float64 {method}", relative_error(ours, theirs)) <= EXACT


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_deconvnet_matches_captum_on_random_squeezenet(backend):
    net = nets.random_parameters(nets.build("squeezenet1_0"), seed=3).astype(np.float64)
    model = torch_reference.torch_model(net)
    x = np.random.default_rng(4).normal(0, 50, (1, 3, 227, 227))
    with nets.backend(backend):
        ours = saliency.deconvnet(net, x, 17)
    theirs = numpy(Deconvolution(model).attribute(tensor(x), target=17))
    assert np.abs(theirs).max() > 0
    assert report("random squeezenet float64 deconvnet", relative_error(ours, theirs)) <= EXACT


def test_integrated_gradients_match_captum_in_float64(case):
    """Gauss-Legendre IG from the blurred photo; 4 steps (the quadrature is checked elsewhere)."""
    net, model, x = case.nets[np.float64], case.models[np.float64], case.x[np.float64]
    reference, steps = case.references["blur"], 4
    ours, delta = saliency.integrated_gradients(net, x, case.targets, reference=reference,
                                                steps=steps, method="gausslegendre",
                                                return_delta=True)
    theirs, theirs_delta = IntegratedGradients(model).attribute(
        tensor(x), baselines=tensor(reference), target=tensor(case.targets), n_steps=steps,
        method="gausslegendre", internal_batch_size=8, return_convergence_delta=True)
    # Captum multiplies by quadrature weights rounded to float32: agreement to ~1e-8, not 1e-15.
    assert report(f"{case.name} float64 integrated gradients ({steps} steps)",
                  relative_error(ours, numpy(theirs))) <= 1e-6
    gap = np.abs(case.gap(np.float64, reference))
    print(f"{case.name} IG {steps}-step completeness error / |f(x) - f(ref)|: ours {delta / gap}, "
          f"captum {numpy(theirs_delta) / gap}")
    np.testing.assert_allclose(delta, numpy(theirs_delta), rtol=0, atol=1e-6 * gap.max())


def test_smoothgrad_matches_captum_with_the_same_noise(case):
    """Captum's noisy inputs, captured by a hook, become our explicit noise.

    On SqueezeNet both photos (4 samples each) check the order of Captum's expanded batch;
    VGG16 explains one photo with 2 samples, for time.
    """
    net, model = case.nets[np.float64], case.models[np.float64]
    if case.name == "vgg16":
        x, targets, samples = case.x[np.float64], case.targets, 2
    else:
        x, targets, samples = case.pair[np.float64], case.pair_targets, 4
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(numpy(args[0]).copy()))
    try:
        torch.manual_seed(0)
        theirs = NoiseTunnel(Saliency(model)).attribute(
            tensor(x), nt_type="smoothgrad", nt_samples=samples,
            stdevs=0.15 * float(x.max() - x.min()), target=tensor(targets), abs=False)
    finally:
        hook.remove()
    assert len(seen) == 1  # one expanded batch: image i's sample j is row i * samples + j
    noisy = seen[0].reshape((len(x), samples) + x.shape[1:])
    noise = noisy - x[:, None]
    assert np.all(noise.std(axis=(2, 3, 4)) > 10)  # the noise is really there
    ours = saliency.smoothgrad(net, x, targets, noise=noise)
    assert report(f"{case.name} float64 smoothgrad ({samples} samples)",
                  relative_error(ours, numpy(theirs))) <= EXACT


def test_float32_maps_differ_from_captum_only_at_kinks(case):
    """Float32: which maps hold the criterion, and why the gradient does not.

    Guided backprop and deconvnet on VGG16 and Grad-CAM on both nets hold 1e-4 as they are.
    The gradient misses it; but our float32 backward pass through the float64 pass's kinks
    (ReLU signs and pool switches) matches Captum's float64 map to float32 rounding, so the
    only disagreement is which side of a kink a near-zero pre-activation falls on.
    """
    net32, model32, x32 = case.nets[np.float32], case.models[np.float32], case.x[np.float32]
    t, tt = case.targets, tensor(case.targets)

    cam = relative_error(saliency.grad_cam(net32, x32, t, layer=case.cam_layer),
                         numpy(LayerGradCam(model32, case.cam_module(np.float32)).attribute(
                             tensor(x32), target=tt, relu_attributions=True)[:, 0]))
    assert report(f"{case.name} float32 grad_cam", cam) <= TOL
    if case.name == "vgg16":
        deconv = relative_error(saliency.deconvnet(net32, x32, t),
                                numpy(Deconvolution(model32).attribute(tensor(x32), target=tt)))
        assert report("vgg16 float32 deconvnet", deconv) <= TOL

    gradient, trace32, _ = saliency.backpropagate(net32, x32, t)
    kinks64 = float32_trace_with_float64_kinks(case.nets[np.float64], case.x[np.float64])
    signal = saliency.score_signal(kinks64.output, t)
    for method, ours, rule, captum_map in [
            ("gradient", gradient, None, case.captum_gradient),
            ("guided", saliency.guided_backprop(net32, x32, t), saliency.Guided(),
             case.captum_guided)]:
        plain = relative_error(ours, captum_map(np.float32))
        report(f"{case.name} float32 {method} (as is; 1e-4 holds: {plain <= TOL})", plain)
        if case.name == "vgg16" and method == "guided":
            assert plain <= TOL
        print(f"{case.name} float32 {method} vs Captum float64: ours "
              f"{relative_error(ours, captum_map(np.float64)):.3e}, Captum float32 "
              f"{relative_error(captum_map(np.float32), captum_map(np.float64)):.3e}")
        fixed_kinks = net32.backward(kinks64, signal, rule=rule)
        assert fixed_kinks.dtype == np.float32
        assert report(f"{case.name} float32 {method} through float64 kinks vs captum float64",
                      relative_error(fixed_kinks, captum_map(np.float64))) <= 1e-5

    ours_eta = relu_inputs(trace32.caches)
    theirs_eta = torch_relu_inputs(model32, x32)
    assert [a.shape for a in ours_eta] == [b.shape for b in theirs_eta]
    flips = sum(int(np.sum((a > 0) != (b > 0))) for a, b in zip(ours_eta, theirs_eta))
    print(f"{case.name} float32: the frameworks disagree on the sign of {flips} of "
          f"{sum(a.size for a in ours_eta)} ReLU inputs")


# ------------------------------------------------------------------------------------ DeepLIFT

def test_deeplift_against_captum(case, monkeypatch):
    """Float64 DeepLIFT (rescale) against Captum, its hook-order defect and its unpool defect.

    VGG16: Captum as it is equals our ``max_pool="gradient"`` (the ReLU in front of each pool
    reads the gradient before the pool's rule rewrites it); with each pool given an input of its
    own, Captum's rule equals our ``max_pool="difference"`` (2x2 windows do not overlap).
    SqueezeNet (3x3 stride 2 windows overlap): Captum's summation-to-delta fails even with its
    rule intact, because its unpooling assigns; with an adding unpool it equals ours exactly.
    """
    net, model = case.nets[np.float64], case.models[np.float64]
    x, t = case.x[np.float64], case.targets
    # Not the zero reference: a constant image makes exact ties in the reference pass's pool
    # windows, and which tied input wins is decided by each framework's float64 rounding, which
    # differs between CPUs (measured 1.5e-6 on one machine, 3.1e-4 on another). A blurred or
    # random reference has no ties, so the two frameworks must agree to rounding.
    for name in ["blur", "random"]:
        reference = case.references[name]
        gap = case.gap(np.float64, reference)
        ours, delta = saliency.deeplift(net, x, t, reference=reference, return_delta=True)
        assert np.all(np.abs(delta) <= 1e-10 * np.abs(gap))
        with pools_with_own_inputs(model):
            own, own_delta = captum_deeplift(model, x, reference, t)
            if case.name == "squeezenet1_0":
                with monkeypatch.context() as patch:
                    patch.setitem(captum_deep_lift.SUPPORTED_NON_LINEAR, nn.MaxPool2d,
                                  adding_maxpool2d)
                    added, added_delta = captum_deeplift(model, x, reference, t)
        print(f"{case.name} DeepLIFT ({name} reference), f(x) - f(ref) = {gap}: "
              f"summation-to-delta error ours {delta}, Captum with pools on inputs of their own "
              f"{own_delta}")
        if case.name == "vgg16":
            assert report(f"vgg16 float64 deeplift vs captum with own pool inputs ({name})",
                          relative_error(ours, own)) <= EXACT
            assert np.all(np.abs(own_delta) <= 1e-8 * np.abs(gap))
        else:
            assert report(f"squeezenet float64 deeplift vs captum, own pool inputs and adding "
                          f"unpool ({name})", relative_error(ours, added)) <= EXACT
            assert np.all(np.abs(added_delta) <= 1e-8 * np.abs(gap))
            if CAPTUM_DEFECTIVE:
                # The assigning unpool alone breaks Captum's summation-to-delta (10-15 logits).
                assert np.all(np.abs(own_delta) > 0.1), own_delta
                assert relative_error(ours, own) > 0.1

    if not CAPTUM_DEFECTIVE:
        return
    # Captum as it is (pools reading the ReLU's output tensor).
    reference = case.references["blur"]
    gap = case.gap(np.float64, reference)
    plain, plain_delta = captum_deeplift(model, x, reference, t)
    print(f"{case.name} DeepLIFT (blur): Captum {captum.__version__} as it is: summation-to-delta "
          f"error {plain_delta}")
    assert np.all(np.abs(plain_delta) > 0.1), plain_delta
    if case.name == "vgg16":
        switched, switched_delta = saliency.deeplift(net, x, t, reference=reference,
                                                     max_pool="gradient", return_delta=True)
        assert report("vgg16 float64 deeplift max_pool='gradient' vs captum as it is",
                      relative_error(switched, plain)) <= EXACT
        np.testing.assert_allclose(switched_delta, plain_delta, rtol=1e-8)


def test_deeplift_summation_to_delta(case):
    """Float32, four references: ``sum(C) == f_t(x) - f_t(x_ref)`` to 1e-4 relative."""
    net, x, t = case.nets[np.float32], case.x[np.float32], case.targets
    references = {"zero": "zero", "blur": "blur", "black": "black",
                  "random": case.references["random"].astype(np.float32)}
    for name, reference in references.items():
        contributions, delta = saliency.deeplift(net, x, t, reference=reference,
                                                 return_delta=True)
        gap = case.gap(np.float32, saliency.make_reference(net, x, reference))
        relative = np.abs(delta) / np.abs(gap)
        print(f"{case.name} float32 DeepLIFT ({name}): f(x) - f(ref) = {gap}, "
              f"|sum(C) - (f(x) - f(ref))| / |f(x) - f(ref)| = {relative}")
        assert np.all(np.abs(gap) > 1)  # a real difference to explain
        assert np.all(relative <= 1e-4)
        np.testing.assert_allclose(contributions.sum(axis=(1, 2, 3)) - gap, delta,
                                   atol=1e-6 * np.abs(gap).max())


@pytest.mark.parametrize("case", ["squeezenet1_0"], indirect=True)
def test_integrated_gradients_completeness(case):
    """32-step Gauss-Legendre IG in float32 on the real SqueezeNet, from the zero reference.

    Measured: |sum(IG) - (f(x) - f(ref))| = 0.097 of f(x) - f(ref) = 19.4 (5.0e-3) for chelsea.
    (VGG16 with random weights: 0.124 of 364.8, 3.4e-4; left out for time.)
    """
    net, x, t = case.nets[np.float32], case.x[np.float32], case.targets
    _, delta = saliency.integrated_gradients(net, x, t, reference="zero", steps=32,
                                             return_delta=True)
    gap = case.gap(np.float32, np.zeros_like(x))
    relative = np.abs(delta) / np.abs(gap)
    print(f"{case.name} float32 IG (32 steps, zero reference): f(x) - f(ref) = {gap}, "
          f"completeness error {delta}, relative {relative}")
    assert np.all(relative <= 1e-2)


# ---------------------------------------------------------------------------------- occlusion

def torch_small_net(net):
    """The PyTorch twin of ``test_saliency_rules.small_net`` with the same parameters."""
    p = net.parameters()
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(3, 2, ceil_mode=True), torch_reference.TorchFire(6, 3, 4, 4),
                          nn.Conv2d(8, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(5, 4))
    modules = {"conv1": model[0], "fire2/squeeze1x1": model[3].squeeze,
               "fire2/expand1x1": model[3].expand1x1, "fire2/expand3x3": model[3].expand3x3,
               "conv3": model[4], "fc": model[8]}
    for name, module in modules.items():
        module.weight.data = tensor(p[name]["weight"].copy())
        module.bias.data = tensor(p[name]["bias"].copy())
    return model.to(tensor(p["conv1"]["weight"]).dtype).eval()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_small_net_maps_match_captum_on_both_backends(backend):
    """Gradient, guided backprop, deconvnet and DeepLIFT on the small float64 net (an
    overlapping ceil-mode pool and a fire module), each backend against Captum."""
    net = small_net(seed=11)
    model = torch_small_net(net)
    x = np.random.default_rng(12).normal(size=(2, 3, 12, 12))
    reference = np.random.default_rng(13).normal(size=x.shape)
    t = np.array([1, 3])
    with nets.backend(backend):
        ours = {"gradient": saliency.gradient(net, x, t),
                "guided": saliency.guided_backprop(net, x, t),
                "deconvnet": saliency.deconvnet(net, x, t)}
        if CAPTUM_DEFECTIVE:  # the pool reads the ReLU's tensor: Captum routes by switches
            ours["deeplift"] = saliency.deeplift(net, x, t, reference=reference,
                                                 max_pool="gradient")
    theirs = {"gradient": Saliency(model).attribute(tensor(x), target=tensor(t), abs=False),
              "guided": GuidedBackprop(model).attribute(tensor(x), target=tensor(t)),
              "deconvnet": Deconvolution(model).attribute(tensor(x), target=tensor(t))}
    if CAPTUM_DEFECTIVE:
        theirs["deeplift"] = captum_deeplift(model, x, reference, t)[0]
    for method, ours_map in ours.items():
        theirs_map = theirs[method] if isinstance(theirs[method], np.ndarray) else numpy(theirs[method])
        assert np.abs(theirs_map).max() > 0
        assert report(f"small net {backend} {method}", relative_error(ours_map, theirs_map)) <= EXACT


#: Captum divides by the patch counts after ``.float()``: its occlusion maps are float32 even
#: for float64 inputs, so float32 rounding is the closest agreement possible.
FLOAT32_ROUNDING = 1e-6


@pytest.mark.parametrize("dtype,bound", [(np.float64, FLOAT32_ROUNDING),
                                         (np.float32, 10 * FLOAT32_ROUNDING)])
@pytest.mark.parametrize("shape,window,stride,baseline", [
    ((2, 3, 13, 17), 5, 3, 0.0),       # overlapping patches, the last ones cut off
    ((1, 3, 16, 12), 4, 4, 0.7),       # a grid of disjoint patches
    ((3, 3, 11, 14), 6, 1, "blur"),    # every position; a reference image as the baseline
])
def test_occlusion_matches_captum_on_a_small_random_net(dtype, bound, shape, window, stride,
                                                        baseline):
    """Captum's Occlusion with a (C, window, window) patch over all channels is ours."""
    net = small_net(seed=sum(shape)).astype(dtype)
    model = torch_small_net(net)
    x = np.random.default_rng(window).normal(size=shape).astype(dtype)
    targets = np.arange(shape[0]) % 4
    fill = baseline if np.isscalar(baseline) and not isinstance(baseline, str) else \
        saliency.make_reference(net, x, baseline)
    theirs = numpy(Occlusion(model).attribute(
        tensor(x), sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=fill if np.isscalar(fill) else tensor(fill), target=tensor(targets),
        perturbations_per_eval=16))
    ours = saliency.occlusion(net, x, targets, window, stride, baseline, batch_size=9)
    assert ours.dtype == dtype and ours.shape == x.shape
    assert np.abs(theirs).max() > 0
    assert report(f"small net {np.dtype(dtype).name} occlusion {window}/{stride}",
                  relative_error(ours, theirs)) <= bound
