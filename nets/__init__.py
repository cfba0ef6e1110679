"""Forward passes of ImageNet CNNs and the rule-independent half of their backward passes.

>>> net = build("vgg16")          # parameters are zero until loaded (weights.load)
>>> trace = net.forward(x)         # x: (N, 3, 224, 224) float32
>>> signal = net.backward(trace, one_hot)   # the input gradient, Eq. 1

Training reads the same backward pass a second time at every layer with weights
(:mod:`nets.training`):

>>> loss, signal = training.softmax_cross_entropy(trace.output, labels)
>>> optimizer.step(net.backward_parameters(trace, signal))   # dL/dw, dL/db of every layer

Two backends do the arithmetic, with the same functions (:mod:`nets.backends`):

>>> nets.current_backend()          # "numpy": nets.reference, the equations in NumPy
>>> nets.use_backend("numba")       # the Numba kernels (Winograd, packed GEMM, threads)
>>> with nets.backend("numpy"): ... # for a block, then back

The default is "numpy", so that a plain import compiles nothing, starts no thread pool, and
runs the code a student reads when stepping into a layer (VGG16 forward and backward at 224 x
224 in seconds). Programs that own their process and want speed choose "numba" explicitly: the
``sensloc`` command, the evaluation workers, training and the benchmarks do, and call
:func:`configure_process` (thread and allocator settings, never applied on import).
"""
from functools import partial

import numpy as np

from sensloc.nets.backends import (backend, configure_process, current_backend,
                                  use_backend)
from sensloc.nets.layers import (Concat, Conv2d, DepthwiseConv2d, Fire, Flatten,
                                 GlobalAvgPool2d, InvertedResidual, Layer, Linear, MaxPool2d,
                                 PoolCache, ReLU, ReLU6, SamePad2d)
from sensloc.nets.mobilenet import mobilenet_v2
from sensloc.nets.network import Network, Trace, softmax
from sensloc.nets.squeezenet import squeezenet1_0
from sensloc.nets import training
from sensloc.nets.vgg import CONFIGURATIONS, vgg, vgg_small

#: Architecture name -> builder with no required arguments.
ARCHITECTURES = {name: partial(vgg, name) for name in CONFIGURATIONS}
ARCHITECTURES["squeezenet1_0"] = squeezenet1_0
ARCHITECTURES["vgg_small"] = vgg_small
ARCHITECTURES["mobilenet_v2"] = mobilenet_v2


def build(name, **options):
    """Build an architecture by name (parameters zero until loaded).

    Parameters
    ----------
    name : str
        One of :data:`ARCHITECTURES`: vgg11, vgg13, vgg16, vgg19, squeezenet1_0, vgg_small,
        mobilenet_v2.
    **options
        Passed to the builder (e.g. ``num_classes``).
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**options)


def random_parameters(net, seed=0):
    """Fill ``net`` with He-normal weights and small biases, for tests and benchmarks.

    ``w ~ N(0, 2 / fan_in)`` keeps activations at a stable scale through deep ReLU stacks, so
    random VGG16 logits are O(1) rather than vanishing or exploding.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, arrays in net.parameters().items():
        w = arrays["weight"]
        fan_in = int(np.prod(w.shape[1:]))
        params[name] = {
            "weight": rng.normal(0, np.sqrt(2.0 / fan_in), w.shape).astype(w.dtype),
            "bias": rng.normal(0, 0.01, arrays["bias"].shape).astype(w.dtype),
        }
    return net.load_parameters(params)


__all__ = ["ARCHITECTURES", "CONFIGURATIONS", "Concat", "Conv2d", "DepthwiseConv2d", "Fire",
           "Flatten", "GlobalAvgPool2d", "InvertedResidual", "Layer", "Linear", "MaxPool2d",
           "Network", "PoolCache", "ReLU", "ReLU6", "SamePad2d", "mobilenet_v2",
           "Trace", "build", "random_parameters", "softmax", "squeezenet1_0", "training", "vgg",
           "vgg_small", "backend", "configure_process", "current_backend", "use_backend"]
