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


def _built(architecture):
    # Parameters of a freshly built network are np.zeros, never written: no memory is touched.
    return nets.build(architecture)


@lru_cache(maxsize=None)
def _declared(architecture):
    return _built(architecture).feature_layer


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


def linear_head(net):
    """The layer the classifier reads, and the classifier's weights, for a network whose class
    scores are a linear map of one spatial layer's cells.

    Two heads qualify: a linear layer after global average pooling (MobileNetV2: ``head_relu6``
    -> pool -> ``classifier``), where ``f_t = b_t + (1 / hw) sum_{cells} sum_j W[t, j] a_j``;
    and a 1 x 1 convolution followed only by ReLUs and global average pooling (SqueezeNet 1.0:
    ``fire9`` -> ``conv_final`` -> ReLU -> pool), where ``W[t, j] a_j`` are the terms of the
    class map before its ReLU. A head of fully connected layers on flattened cells (VGG16's
    fc6-fc8) has no per-cell linear map and is refused.

    Parameters
    ----------
    net : nets.Network

    Returns
    -------
    layer : str
        The top-level layer with the (N, C, h, w) output that the classifier reads.
    weight : (K, C) array
        The classifier's weights, ``W[t, j]`` (the network's own array, not a copy).
    """
    layers = list(net.layers)
    end = len(layers)  # layers[end:] are ReLUs and pooling after the classifier
    while end > 0 and isinstance(layers[end - 1], (nets.ReLU, nets.ReLU6, nets.GlobalAvgPool2d)):
        end -= 1
    head, before = layers[end - 1] if end >= 2 else None, layers[:end - 1]
    pooled_after = any(isinstance(layer, nets.GlobalAvgPool2d) for layer in layers[end:])
    if isinstance(head, nets.Linear) and len(before) >= 2 \
            and isinstance(before[-1], nets.GlobalAvgPool2d):
        return before[-2].name, head.weight
    if isinstance(head, nets.Conv2d) and head.kernel_size == 1 and head.stride == 1 \
            and pooled_after:
        return before[-1].name, head.weight[:, :, 0, 0]
    raise ValueError(f"{net.name}'s class scores are not a linear map of one layer's cells "
                     "(a 1x1 convolution, or global average pooling then a linear layer): "
                     "class contributions need such a head")


@lru_cache(maxsize=None)
def has_linear_head(architecture):
    """Whether an architecture of :data:`sensloc.nets.ARCHITECTURES` has a :func:`linear_head`
    (SqueezeNet 1.0 and MobileNetV2 do; the VGGs, with fully connected heads, do not)."""
    try:
        linear_head(_built(architecture))
    except ValueError:
        return False
    return True
