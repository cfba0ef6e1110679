"""A GAMED submission of assignment 2: every function delegates to the library.

Run inside the grader's process (the grader of before issue 21) it scores full marks; the grader
runs submissions in a sandbox that cannot import ``sensloc``, so it must score 0 with a message
(tests/test_grade.py).
"""
import numpy as np

from sensloc import nets
from sensloc import saliency


def guided_relu(signal, eta):
    return saliency.Guided().relu(signal, eta, None)


def deconvnet_relu(signal, eta):
    return saliency.Deconvnet().relu(signal, eta, None)


def rescale_relu(signal, eta, eta_ref, eps=1e-10):
    return saliency.Rescale(eps=eps).relu(signal, eta, eta_ref)


def guided_backprop(net, x, target):
    return saliency.guided_backprop(_network(net, x), x, target)


def deeplift(net, x, x_ref, target):
    return saliency.deeplift(_network(net, x), x, target, reference=x_ref)


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
