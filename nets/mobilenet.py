"""MobileNetV2 1.0 (Sandler et al., 2018) as TensorFlow Lite runs it.

stem (SAME pad, 3x3/2 -> 32, ReLU6) -> 17 inverted residual blocks -> head (1x1 -> 1280,
ReLU6) -> global average pool -> classifier (1280 -> 1001; class 0 is "background").

An inverted residual block (:class:`nets.layers.InvertedResidual`) widens its input ``t`` times
with a 1x1 convolution, filters each channel on its own with a 3x3 depthwise convolution and
narrows back with a linear 1x1 projection; where the stride is 1 and the width is unchanged,
the block's input is added to its output.

Every step fits Eq. 1. The residual addition is linear: the signal at its output goes back
unchanged down both paths and the two add at the block's input. The depthwise convolution's
backward pass is a transposed convolution per channel. ReLU6, ``min(max(eta, 0), 6)``, has two
kinks; its derivative is ``1[0 < eta < 6]``, and each rule has a ``relu6`` step
(:mod:`sensloc.saliency.rules`).

Convolutions pad as TensorFlow's ``SAME`` (:func:`nets.layers.same_padding`): at stride 2 on an
even size, nothing before and one pixel after. The stem has a :class:`nets.layers.SamePad2d`
step; the blocks' depthwise convolutions pad themselves (``padding="same"``). Batch normalization is folded into the weights
(the TFLite files store it so; :mod:`sensloc.weights.tflite`). Any input size works; the
network was trained at 224 x 224.
"""
from sensloc.nets.layers import (Conv2d, GlobalAvgPool2d, InvertedResidual, Linear, ReLU6,
                                 SamePad2d)
from sensloc.nets.network import Network

#: Inverted residual stages: (expansion t, output channels c, repeats n, first stride s),
#: Table 2 of Sandler et al.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))

#: The first block at the feature layer's resolution (1/32 of the input): with the feature
#: layer it describes the cells of the ``best`` localization preset.
LAST_STAGE_START = "block14"


def mobilenet_v2(num_classes=1001):
    """Build MobileNetV2 1.0 (parameters zero until loaded); any input size, trained at 224x224.

    Layer names: ``stem_pad``, ``stem``, ``stem_relu6``, ``block1`` .. ``block17`` (sub-layers
    ``block<i>.expand``, ``block<i>.depthwise``, ``block<i>.project`` and their ReLU6s),
    ``head``, ``head_relu6``, ``pool``, ``classifier``. The feature layer is ``head_relu6``
    (7 x 7 for 224 x 224 inputs).

    Returns
    -------
    Network
        Input (N, 3, H, W), output logits (N, num_classes).
    """
    layers = [SamePad2d("stem_pad", 3, 2), Conv2d("stem", 3, 32, 3, stride=2),
              ReLU6("stem_relu6")]
    channels, number = 32, 1
    for expansion, out_channels, repeats, stride in STAGES:
        for index in range(repeats):
            layers.append(InvertedResidual(f"block{number}", channels, expansion, out_channels,
                                           stride if index == 0 else 1))
            channels, number = out_channels, number + 1
    layers += [Conv2d("head", channels, 1280, 1), ReLU6("head_relu6"),
               GlobalAvgPool2d("pool"), Linear("classifier", 1280, num_classes)]
    # TensorFlow's 1001 outputs put "background" before ImageNet's 1000 classes.
    return Network("mobilenet_v2", layers, 3, None, (224, 224), num_classes,
                   feature_layer="head_relu6", class_offset=1 if num_classes == 1001 else 0)
