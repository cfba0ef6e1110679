"""A GAMED submission of assignment 1: every function delegates to the library.

Run inside the grader's process (the grader of before issue 21) it scores full marks; the grader
runs submissions in a sandbox that cannot import ``sensloc``, so it must score 0 with a message
(tests/test_grade.py).
"""
import numpy as np

from sensloc import nets
from sensloc import saliency
from sensloc.nets import reference as kernels


def linear_backward(signal, weight):
    layer = nets.Linear("fc", weight.shape[1], weight.shape[0])
    layer.weight = weight
    return layer.backward(signal, None)


def relu_backward(signal, eta):
    return nets.ReLU("relu").backward(signal, eta)


def conv2d_backward(signal, weight, input_shape, stride, padding):
    return kernels.conv2d_backward_input(signal, weight, tuple(input_shape), stride, padding)


def max_pool_backward(signal, x, kernel_size, stride):
    pool = nets.MaxPool2d("pool", kernel_size, stride)
    _, cache = pool.forward(x)
    return pool.backward(signal, cache)


def input_gradient(net, x, target):
    return saliency.gradient(_network(net, x), x, target)


def _network(layers, x):
    """Rebuild a ``nets.Network`` from the grader's plain-data layers (part of the attack)."""
    built = []
    for entry in layers:
        kind, name = entry["type"], entry["name"]
        if kind == "Conv2d":
            o, c, k, _ = entry["weight"].shape
            layer = nets.Conv2d(name, c, o, k, stride=entry["stride"], padding=entry["padding"])
        elif kind == "Linear":
            layer = nets.Linear(name, entry["weight"].shape[1], entry["weight"].shape[0])
        elif kind == "MaxPool2d":
            layer = nets.MaxPool2d(name, entry["kernel_size"], entry["stride"])
        else:
            layer = getattr(nets, kind)(name)
        if kind in ("Conv2d", "Linear"):
            layer.weight, layer.bias = entry["weight"], entry["bias"]
        built.append(layer)
    net = nets.Network("rebuilt", built, x.shape[1], None, x.shape[2:], layers[-1]["weight"].shape[0])
    return net.astype(np.float64)
