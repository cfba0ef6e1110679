"""The feature layer of each architecture: the last spatial layer before the classifier.

Grad-CAM (:func:`sensloc.saliency.grad_cam`), neuron selection
(:func:`sensloc.saliency.neuron_selection`) and the localization presets
(:mod:`sensloc.localize.presets`) read this layer by default, so ``sensloc explain --method
grad_cam`` and ``sensloc localize --preset grad_cam`` explain the same layer.

For SqueezeNet 1.0 it is ``fire9`` (13 x 13, 512 channels), not the classifier's
``relu_conv_final`` (the class activation map itself): the presets were tuned on ``fire9``.

This table belongs with the architectures (each network declaring its ``feature_layer``); it
lives here until ``nets`` carries it.
"""

#: Architecture name -> the name of its feature layer.
FEATURE_LAYERS = {
    "vgg11": "relu5_2",
    "vgg13": "relu5_2",
    "vgg16": "relu5_3",
    "vgg19": "relu5_4",
    "squeezenet1_0": "fire9",
    "vgg_small": "relu4_2",
}


def feature_layer(net_or_name, trace=None):
    """The feature layer's name for a network or an architecture name.

    Parameters
    ----------
    net_or_name : nets.Network or str
        A network (its ``name``) or an architecture name such as ``"vgg16"``.
    trace : nets.Trace, optional
        A forward pass of the network: for an architecture missing from
        :data:`FEATURE_LAYERS`, the last top-level layer with a 4-D (N, C, h, w) output.

    Returns
    -------
    str
    """
    name = net_or_name if isinstance(net_or_name, str) else net_or_name.name
    if name in FEATURE_LAYERS:
        return FEATURE_LAYERS[name]
    if trace is not None:
        spatial = [layer for layer, out in trace.outputs.items() if out.ndim == 4]
        if spatial:
            return spatial[-1]
    raise ValueError(f"{name!r} declares no feature layer (known: {sorted(FEATURE_LAYERS)}); "
                     "name the layer explicitly")
