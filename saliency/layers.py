"""The feature layer of a network: the last spatial layer before the classifier.

Grad-CAM (:func:`sensloc.saliency.grad_cam`), neuron selection
(:func:`sensloc.saliency.neuron_selection`) and the localization presets
(:mod:`sensloc.localize.presets`) read this layer by default, so ``sensloc explain --method
grad_cam`` and ``sensloc localize --preset grad_cam`` explain the same layer. Each architecture
declares it (``Network.feature_layer``): ``relu5_3`` for VGG16, ``fire9`` for SqueezeNet 1.0,
``head_relu6`` for MobileNetV2.
"""
from functools import lru_cache

from sensloc import nets


@lru_cache(maxsize=None)
def _declared(architecture):
    # Parameters of a freshly built network are np.zeros, never written: no memory is touched.
    return nets.build(architecture).feature_layer


def feature_layer(net_or_name, trace=None):
    """The feature layer's name for a network or an architecture name.

    Parameters
    ----------
    net_or_name : nets.Network or str
        A network, or an architecture name of :data:`sensloc.nets.ARCHITECTURES` (``"vgg16"``).
    trace : nets.Trace, optional
        A forward pass of the network: for a network that declares no feature layer, the last
        top-level layer with a 4-D (N, C, h, w) output.

    Returns
    -------
    str
    """
    if isinstance(net_or_name, str):
        declared = _declared(net_or_name) if net_or_name in nets.ARCHITECTURES else None
        name = net_or_name
    else:
        declared, name = net_or_name.feature_layer, net_or_name.name
    if declared is not None:
        return declared
    if trace is not None:
        spatial = [layer for layer, out in trace.outputs.items() if out.ndim == 4]
        if spatial:
            return spatial[-1]
    raise ValueError(f"{name!r} declares no feature layer (architectures that do: "
                     f"{sorted(nets.ARCHITECTURES)}); name the layer explicitly")
