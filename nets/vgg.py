"""VGG (Simonyan & Zisserman, 2015): blocks of 3x3 convolutions and ReLUs, each block closed by a
2x2 max pool, then three fully connected layers.

Layer names follow the paper and Caffe: ``conv{block}_{i}``, ``relu{block}_{i}``,
``pool{block}``, ``flatten``, ``fc6``, ``relu6``, ``fc7``, ``relu7``, ``fc8`` (dropout is the
identity at inference and is left out).
"""
from sensloc.nets.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU
from sensloc.nets.network import Network

#: Output channels of each 3x3 convolution, ``"M"`` for a 2x2 max pool (configurations A, B, D, E).
CONFIGURATIONS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}


def vgg(name, configuration=None, num_classes=1000, input_size=224, hidden=4096, in_channels=3):
    """Build a VGG network from a configuration list.

    Parameters
    ----------
    name : str
        One of :data:`CONFIGURATIONS` (which then supplies the configuration), or any name
        when ``configuration`` is given (a scaled-down VGG, say).
    configuration : list, optional
        Channel counts and ``"M"`` pools.
    num_classes, input_size, hidden, in_channels : int
        Classes, square input side (the fully connected head fixes it), width of fc6/fc7.

    Returns
    -------
    Network
        Input (N, in_channels, input_size, input_size), output logits (N, num_classes).
    """
    configuration = CONFIGURATIONS[name] if configuration is None else configuration
    layers, channels, block, index, side = [], in_channels, 1, 1, input_size
    for item in configuration:
        if item == "M":
            layers.append(MaxPool2d(f"pool{block}", 2, 2))
            block, index, side = block + 1, 1, side // 2
        else:
            layers.append(Conv2d(f"conv{block}_{index}", channels, item, 3, padding=1))
            layers.append(ReLU(f"relu{block}_{index}"))
            last_relu = layers[-1].name   # the feature layer: the last one before the head
            channels, index = item, index + 1
    layers += [
        Flatten("flatten"),
        Linear("fc6", channels * side * side, hidden), ReLU("relu6"),
        Linear("fc7", hidden, hidden), ReLU("relu7"),
        Linear("fc8", hidden, num_classes),
    ]
    return Network(name, layers, in_channels, (input_size, input_size), (input_size, input_size),
                   num_classes, feature_layer=last_relu)


#: A VGG scaled down for 64x64 scenes: 3x3 convolutions from 16 to 128 channels, two in each of
#: the last two blocks (as VGG doubles up its deeper blocks), four 2x2 pools (64 -> 4), then the
#: fully connected head at width 128. 0.56 M parameters.
SMALL = [16, "M", 32, "M", 64, 64, "M", 128, 128, "M"]


def vgg_small(num_classes=10, input_size=64, hidden=128):
    """The small VGG that ``sensloc train-demo`` trains on generated scenes (see :data:`SMALL`)."""
    return vgg("vgg_small", SMALL, num_classes=num_classes, input_size=input_size, hidden=hidden)
