"""The benchmarked calls: each method of this library beside its PyTorch/Captum equivalent.

``ours(method, net, x, cfg)`` and ``reference(method, model, net_name, x, cfg)`` return
zero-argument callables that compute one map and return it as a NumPy array (so that the
two sides can be checked against each other on the warm-up call).

Pairings (``cfg`` holds ``ig_steps``, ``sg_samples``, ``batch_size``):

==================== ========================================= ===========================================
method               sensloc                                   PyTorch / Captum
==================== ========================================= ===========================================
forward              ``net(x)`` (keeps the trace)              ``model(x)`` under ``torch.no_grad()``
gradient             ``saliency.gradient``                     ``Saliency(abs=False)``
guided               ``saliency.guided_backprop``              ``GuidedBackprop``
deconvnet            ``saliency.deconvnet``                    ``Deconvolution``
deeplift             ``saliency.deeplift`` (zero reference,    ``DeepLift`` (zero baseline)
                     Captum's max-pool choice)
gradient_x_input     ``saliency.gradient_x_input``             ``InputXGradient``
integrated_gradients ``integrated_gradients(steps, batch 8)``  ``IntegratedGradients(n_steps,
                     Gauss-Legendre, 8 path points per pass     gausslegendre, internal_batch_size=8)``:
                                                                8 images per pass, as ours
smoothgrad           ``smoothgrad(samples, sigma=0.15,         ``NoiseTunnel(Saliency)`` smoothgrad,
                     batch 8)``: 8 noisy copies per pass        ``nt_samples_batch_size=max(1, 8 // N)``
                                                                (8 images per pass, as ours),
                                                                stdev 0.15 * (max - min) of the batch
grad_cam             ``saliency.grad_cam`` at relu5_3 / fire9  ``LayerGradCam`` at the same module,
                     / head_relu6 (MobileNetV2)
                                                                ``relu_attributions=True``
preset_maps          what ``--preset best mix khan`` reads     the same seven, one ``attribute`` call
                     of a batch: DeepLIFT (blurred and zero     each (Captum shares no pass between
                     references), guided, gradient, Grad-CAM,   them), the activations by forward hooks
                     two layers' activations, from ONE
                     forward pass of the batch (``trace=``)
preset_maps_separate the same seven, each from its own          the same as for preset_maps
                     forward pass (as before the sharing)
==================== ========================================= ===========================================
"""
from benchmarks._setup import GRADCAM_LAYER, TARGET

METHODS = ("forward", "gradient", "guided", "deconvnet", "deeplift", "gradient_x_input",
           "integrated_gradients", "smoothgrad", "grad_cam", "preset_maps", "preset_maps_separate")
#: The two layers whose activations the ``best`` preset reads besides the Grad-CAM layer's
#: (:func:`sensloc.localize.presets.objectness_layers`).
BEFORE_LAYER = {"vgg16": "pool4", "squeezenet1_0": "pool8", "mobilenet_v2": "block14"}
BLUR_SIGMA = 10.0
#: Methods whose cost grows with ig-steps / sg-samples (many passes per map).
EXPENSIVE = ("integrated_gradients", "smoothgrad")
SIGMA = 0.15


def ours(method, net, x, cfg):
    from sensloc import saliency
    t, bs = TARGET, cfg["batch_size"]
    calls = {
        "forward": lambda: net(x),
        "gradient": lambda: saliency.gradient(net, x, t),
        "guided": lambda: saliency.guided_backprop(net, x, t),
        "deconvnet": lambda: saliency.deconvnet(net, x, t),
        "deeplift": lambda: saliency.deeplift(net, x, t, reference="zero", max_pool="difference"),
        "gradient_x_input": lambda: saliency.gradient_x_input(net, x, t),
        "integrated_gradients": lambda: saliency.integrated_gradients(
            net, x, t, reference="zero", steps=cfg["ig_steps"], method="gausslegendre",
            batch_size=bs),
        "smoothgrad": lambda: saliency.smoothgrad(net, x, t, samples=cfg["sg_samples"],
                                                  sigma=SIGMA, batch_size=bs),
        "grad_cam": lambda: saliency.grad_cam(net, x, t, layer=GRADCAM_LAYER[net.name]),
        "preset_maps": lambda: preset_maps(net, x, shared=True),
        "preset_maps_separate": lambda: preset_maps(net, x, shared=False),
    }
    return calls[method]


def preset_maps(net, x, shared):
    """The seven maps of ``best mix khan`` for the batch, flattened per image and joined:
    (N, total). ``shared``: one forward pass of ``x`` starts all of them."""
    import numpy as np
    from sensloc import saliency
    t = TARGET
    trace = net.forward(x) if shared else None
    layer = GRADCAM_LAYER[net.name]
    outputs = (trace if shared else net.forward(x)).outputs
    maps = [saliency.deeplift(net, x, t, reference="blur", trace=trace),
            saliency.deeplift(net, x, t, reference="zero", trace=trace),
            saliency.guided_backprop(net, x, t, trace=trace),
            saliency.gradient(net, x, t, trace=trace),
            saliency.grad_cam(net, x, t, layer=layer, trace=trace),
            outputs[BEFORE_LAYER[net.name]],
            (outputs if shared else net.forward(x).outputs)[layer]]
    return np.concatenate([np.reshape(m, (len(x), -1)) for m in maps], axis=1)


def gradcam_module(model, net_name):
    """The twin's module whose output is nets' Grad-CAM layer (relu5_3 / fire9)."""
    import torch.nn as nn
    if net_name == "vgg16":
        return [m for m in model.features if isinstance(m, nn.ReLU)][-1]   # relu5_3
    if net_name == "squeezenet1_0":
        return model.features[-1]                                         # fire9
    if net_name == "mobilenet_v2":
        return model.head_relu                                           # head_relu6
    raise ValueError(net_name)


def before_module(model, net_name):
    """The twin's module whose output is :data:`BEFORE_LAYER` (pool4 / pool8 / block14)."""
    import torch.nn as nn
    if net_name == "vgg16":
        return [m for m in model.features if isinstance(m, nn.MaxPool2d)][3]  # pool4
    if net_name == "squeezenet1_0":
        return model.features[-2]                                          # pool8
    if net_name == "mobilenet_v2":
        return model.blocks[13]                                            # block14
    raise ValueError(net_name)


def teach_captum_relu6():
    """Make Captum 0.9 treat ``nn.ReLU6`` as it treats ``nn.ReLU`` (process-wide).

    Its guided backprop and deconvolution hook ``nn.ReLU`` modules only, and its DeepLIFT
    applies the rescale rule only to the module types of its table: without this, its maps of
    MobileNetV2 are the plain gradient at every ReLU6 (tests/test_nets_mobilenet.py does the
    same, scoped to each test).
    """
    import torch.nn as nn
    from captum._utils.common import _register_backward_hook
    from captum.attr._core import deep_lift
    from captum.attr._core.guided_backprop_deconvnet import ModifiedReluGradientAttribution

    def register_hooks(self, module):
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))

    ModifiedReluGradientAttribution._register_hooks = register_hooks
    deep_lift.SUPPORTED_NON_LINEAR[nn.ReLU6] = deep_lift.nonlinear


def reference(method, model, net_name, x, cfg):
    import numpy as np
    import torch
    from captum import attr

    if net_name == "mobilenet_v2":
        teach_captum_relu6()
    xt = torch.from_numpy(np.ascontiguousarray(x).copy())
    t, bs, n = TARGET, cfg["batch_size"], len(x)

    def forward():
        with torch.no_grad():
            return model(xt).numpy()

    def run(explainer, **kwargs):
        return lambda: explainer.attribute(xt, target=t, **kwargs).detach().numpy()

    if method == "forward":
        return forward
    if method == "gradient":
        return run(attr.Saliency(model), abs=False)
    if method == "guided":
        return run(attr.GuidedBackprop(model))
    if method == "deconvnet":
        return run(attr.Deconvolution(model))
    if method == "deeplift":
        return run(attr.DeepLift(model), baselines=torch.zeros_like(xt))
    if method == "gradient_x_input":
        return run(attr.InputXGradient(model))
    if method == "integrated_gradients":
        return run(attr.IntegratedGradients(model), baselines=torch.zeros_like(xt),
                   n_steps=cfg["ig_steps"], method="gausslegendre", internal_batch_size=bs)
    if method == "smoothgrad":
        stdev = float(SIGMA * (x.max() - x.min()))
        return run(attr.NoiseTunnel(attr.Saliency(model)), nt_type="smoothgrad",
                   nt_samples=cfg["sg_samples"], nt_samples_batch_size=max(1, bs // n),
                   stdevs=stdev, abs=False)
    if method == "grad_cam":
        cam = attr.LayerGradCam(model, gradcam_module(model, net_name))
        return lambda: cam.attribute(xt, target=t, relu_attributions=True).detach().numpy()[:, 0]
    if method in ("preset_maps", "preset_maps_separate"):
        return lambda: captum_preset_maps(model, net_name, x, t)
    raise ValueError(f"unknown method {method!r}")


def captum_preset_maps(model, net_name, x, targets):
    """The seven maps of ``best mix khan`` with PyTorch + Captum, flattened per image and
    joined: (N, total), as :func:`preset_maps` gives ours. ``x`` (N, 3, H, W) float32 NumPy,
    ``targets`` an int or N ints. Each map is its own ``attribute`` call (Captum shares no
    pass between them); the two layers' activations come from forward hooks on one more
    forward pass."""
    import numpy as np
    import torch
    from captum import attr
    from scipy.ndimage import gaussian_filter
    xt = torch.from_numpy(np.ascontiguousarray(x).copy())
    t = targets if np.isscalar(targets) else [int(v) for v in targets]
    kept = {}
    hooks = [module.register_forward_hook(lambda m, i, out, name=name: kept.__setitem__(name, out))
             for name, module in (("before", before_module(model, net_name)),
                                  ("last", gradcam_module(model, net_name)))]
    try:
        blurred = torch.from_numpy(gaussian_filter(
            x, sigma=(0, 0, BLUR_SIGMA, BLUR_SIGMA)).astype(x.dtype))
        maps = [attr.DeepLift(model).attribute(xt, target=t, baselines=blurred),
                attr.DeepLift(model).attribute(xt, target=t, baselines=torch.zeros_like(xt)),
                attr.GuidedBackprop(model).attribute(xt, target=t),
                attr.Saliency(model).attribute(xt, target=t, abs=False),
                attr.LayerGradCam(model, gradcam_module(model, net_name)).attribute(
                    xt, target=t, relu_attributions=True)[:, 0]]
        with torch.no_grad():
            model(xt)
        maps += [kept["before"], kept["last"]]
    finally:
        for hook in hooks:
            hook.remove()
    return np.concatenate([m.detach().numpy().reshape(len(x), -1) for m in maps], axis=1)


def agreement(method, ours_out, ref_out):
    """``||a - b|| / ||b||`` (Frobenius) between the two sides' maps, or why it is not comparable.

    A relative L2 error rather than a max-norm one: rounding differences between the two GEMMs
    flip a few max-pool switches and ReLUs at near-ties (millions of windows), which moves a
    little signal by one pixel; that shows as ~1e-2 in the max norm but ~1e-4 in L2.
    """
    import numpy as np
    if method == "smoothgrad":
        return "n/a (noise)"
    a, b = np.asarray(ours_out, np.float64), np.asarray(ref_out, np.float64)
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    scale = np.linalg.norm(b)
    if scale == 0:
        return "0" if np.linalg.norm(a) == 0 else "ref is 0"
    return f"{np.linalg.norm(a - b) / scale:.1e}"
