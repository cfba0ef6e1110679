"""The presets: named box protocols with the constants tuned for them, and the kind registry.

This module sits above :mod:`sensloc.localize.protocols`: it names and configures protocols,
and maps the ``kind`` saved in a box-model file back to its class. Nothing in ``protocols``
imports it. The tuned numbers behind the presets are in docs/experiments/ (``mix.md``,
``objectness.md``) and the README's "Measured".
"""
from sensloc.saliency.layers import feature_layer, has_linear_head
from sensloc.saliency.maps import MapSpec

from sensloc.localize.protocols import (CenterBox, KhanBoxes, MixBoxes, ObjectnessBoxes,
                                        RegressionBoxes, ThresholdBoxes, WholeImage)
from sensloc.localize.protocols.objectness import LAMBDAS_WIDE

#: Fixed thresholds for `sensloc localize --preset` without a fitted box model: tuned on the
#: 692 development photos with SqueezeNet (README, "Measured").
PRESET_FRACTIONS = {"gradient": 0.18, "grad_cam": 0.10, "khan": 0.12, "dwaraknath": 0.04}

#: Preset names and what they are.
PRESETS = {
    "ebrahimpour": "vanilla sensitivity map (max |grad| over channels), 16x16 grid, ridge regression",
    "khan": "DeepLIFT (zero reference) x guided backprop: smooth, cut, border mask, geometric mean, union box",
    "dwaraknath": "top-20 neurons of the last spatial layer by activation x gradient, guided backprop, union box",
    "gradient": "vanilla sensitivity map, union box at a tuned threshold",
    "grad_cam": "Grad-CAM at the last spatial layer, largest component at a tuned threshold",
    "mix": "DeepLIFT (blur reference), |guided|, |gradient| and Grad-CAM through Khan's recipe, "
           "geometric mean, border mask, union box scaled about its centre; all parameters "
           "chosen inside the training data (localize/protocols/mix.py)",
    "best": "objectness map by cell-wise ridge regression (closed form) from the last layers' "
            "activations and the mix's four saliency maps to ground-truth box coverage, then "
            "boxed like mix; lambda and the box parameters chosen inside the training data "
            "(localize/protocols/objectness.py)",
    "best_two_nets": "best with a second network's cell features: SqueezeNet's pool8 and fire9 "
                     "and MobileNetV2's block14 and head_relu6 (7x7, resampled bilinearly onto "
                     "the 13x13 grid), both networks' class contributions (the explained "
                     "class's classifier weight times each channel at each cell; for networks "
                     "with such a linear classifier, not VGG's), plus the "
                     "mix's four maps; lambda in 10^0..10^7 by inner CV; the objectness is the "
                     "mean of the photo's and its mirror's; the box is the union of the hot "
                     "pixels or their largest connected region, chosen on the training images "
                     "(needs both networks installed)",
}

#: ``best_two_nets`` boxes the union of the hot pixels or their largest connected region,
#: whichever scores better on the training images (it helps ``best_two_nets`` on every fold
#: seed, not ``best``: docs/experiments/objectness.md).
TWO_NETS_BOX_MODES = ("union", "largest")
#: The second network of ``best_two_nets``, by the evaluation's network (default: MobileNetV2).
SECOND_NET = {"mobilenet_v2": "squeezenet1_0"}

#: Box-model ``kind`` -> protocol class.
KINDS = {cls.kind: cls for cls in (ThresholdBoxes, KhanBoxes, RegressionBoxes, CenterBox,
                                   WholeImage, MixBoxes, ObjectnessBoxes)}
#: Kinds written by earlier versions: ``MixBoxes`` was ``BestBoxes``, kind "best".
OLD_KINDS = {"best": MixBoxes.kind}


def protocol_from_params(kind, params):
    """The protocol a box-model file describes: its ``kind`` and its JSON ``params``."""
    kind = OLD_KINDS.get(kind, kind)
    if kind not in KINDS:
        raise ValueError(f"unknown box protocol {kind!r}; known: {sorted(KINDS)}")
    return KINDS[kind].from_params(params)


def mix_specs(architecture):
    """The maps of the ``mix`` preset (and the evidence of ``best``): DeepLIFT (blurred
    reference, channel sum), guided backprop and the vanilla gradient (max |.| over
    channels), Grad-CAM at the feature layer (``fire9`` for SqueezeNet, ``relu5_3`` for
    VGG16; :func:`sensloc.saliency.layers.feature_layer`)."""
    return (MapSpec.make("deeplift", "sum", reference="blur"),
            MapSpec.make("guided", "max_abs"),
            MapSpec.make("gradient", "max_abs"),
            MapSpec.make("grad_cam", layer=feature_layer(architecture)))


def objectness_layers(architecture, net=None):
    """The layers whose activations describe the cells of ``best``: the feature layer and the
    pooling layer that opens its block, on the same grid (SqueezeNet: ``pool8`` and ``fire9``,
    13 x 13; VGG16: ``pool4`` and ``relu5_3``, 14 x 14; the small VGG: ``pool3`` and
    ``relu4_2``; MobileNetV2: ``block14``, the first block at 1/32 of the input, and
    ``head_relu6``, 7 x 7). ``net``: the ``MapSpec.net`` to name (None: the evaluation's
    network is ``architecture``)."""
    last = feature_layer(architecture)
    if last == "fire9":
        before = "pool8"
    elif last == "head_relu6":
        before = "block14"
    else:
        before = f"pool{int(last[4]) - 1}"  # relu5_3 -> pool4
    return tuple(MapSpec.make("activations", layer=name, net=net) for name in (before, last))


def contribution_specs(architecture, net=None):
    """The class contributions of ``best_two_nets`` (:func:`sensloc.saliency.class_contributions`):
    one map kind for a network whose classifier is linear over one layer's cells (SqueezeNet,
    MobileNetV2), none for a fully connected head (VGG). ``net`` as in
    :func:`objectness_layers`."""
    if not has_linear_head(architecture):
        return ()
    return (MapSpec.make("class_contributions", net=net),)


def preset(name, architecture):
    """A fresh, unfitted protocol by preset name (see :data:`PRESETS`) for an architecture
    name such as ``"vgg16"``."""
    gradient = MapSpec.make("gradient", "max_abs")
    if name == "ebrahimpour":
        return RegressionBoxes([gradient], grid_sizes=16)
    if name == "khan":
        return KhanBoxes(MapSpec.make("deeplift", "sum", reference="zero"),
                         MapSpec.make("guided", "max_abs"))
    if name == "dwaraknath":
        # k = 20: the top 5 neurons cluster on the most discriminative part and box only it
        # (35.5% CV CorLoc on the development photos, against 55.3% with 20).
        return ThresholdBoxes(MapSpec.make("neuron_selection", "max_abs",
                                           layer=feature_layer(architecture), k=20), mode="union")
    if name == "gradient":
        return ThresholdBoxes(gradient, mode="union")
    if name == "grad_cam":
        return ThresholdBoxes(MapSpec.make("grad_cam", layer=feature_layer(architecture)),
                              mode="largest")
    if name == "mix":
        return MixBoxes(mix_specs(architecture))
    if name == "best":
        return ObjectnessBoxes(objectness_layers(architecture), mix_specs(architecture))
    if name == "best_two_nets":
        second = SECOND_NET.get(architecture, "mobilenet_v2")
        return ObjectnessBoxes(objectness_layers(architecture) + objectness_layers(second, second),
                               mix_specs(architecture), lambdas=LAMBDAS_WIDE,
                               modes=TWO_NETS_BOX_MODES, mirror=True,
                               contributions=contribution_specs(architecture)
                               + contribution_specs(second, second))
    raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
