"""SqueezeNet 1.0 (Iandola et al., 2016) in its original Caffe form.

conv1 (96, 7x7, stride 2, no padding) -> ReLU -> pool1 (3x3/2, ceil) -> fire2, fire3, fire4 ->
pool4 -> fire5 .. fire8 -> pool8 -> fire9 -> conv_final (1x1, padding 1) -> ReLU -> global
average pool. Note Caffe's ``pad: 1`` on the 1x1 conv_final: the border of its 15x15 output
(for 227x227 inputs) sees only zeros, i.e. ``relu(bias)``, and still enters the average.
Dropout before conv_final is the identity at inference and is left out.
"""
from sensloc.nets.layers import Conv2d, Fire, GlobalAvgPool2d, MaxPool2d, ReLU
from sensloc.nets.network import Network

#: (name, squeeze, expand1x1, expand3x3) of each fire module, and where the pools sit.
FIRE_MODULES = [
    ("fire2", 16, 64, 64), ("fire3", 16, 64, 64), ("fire4", 32, 128, 128), "pool4",
    ("fire5", 32, 128, 128), ("fire6", 48, 192, 192), ("fire7", 48, 192, 192),
    ("fire8", 64, 256, 256), "pool8", ("fire9", 64, 256, 256),
]


def squeezenet1_0(num_classes=1000):
    """Build SqueezeNet 1.0 (Caffe layout); any input size, trained at 227x227.

    Returns
    -------
    Network
        Input (N, 3, H, W), output logits (N, num_classes).
    """
    layers = [Conv2d("conv1", 3, 96, 7, stride=2), ReLU("relu_conv1"),
              MaxPool2d("pool1", 3, 2, ceil_mode=True)]
    channels = 96
    for item in FIRE_MODULES:
        if isinstance(item, str):
            layers.append(MaxPool2d(item, 3, 2, ceil_mode=True))
        else:
            name, squeeze, e1, e3 = item
            layers.append(Fire(name, channels, squeeze, e1, e3))
            channels = e1 + e3
    layers += [Conv2d("conv_final", channels, num_classes, 1, padding=1),
               ReLU("relu_conv_final"), GlobalAvgPool2d("pool_final")]
    # fire9 (13 x 13 for 227 x 227 inputs), not relu_conv_final (the class map itself): the
    # localization presets were tuned on it.
    return Network("squeezenet1_0", layers, 3, None, (227, 227), num_classes, feature_layer="fire9")
