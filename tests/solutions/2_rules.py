"""Assignment 2 answered by the library itself (tests/test_grade.py: it must score full marks)."""
from sensloc import saliency


def guided_relu(signal, eta):
    return saliency.Guided().relu(signal, eta, None)


def deconvnet_relu(signal, eta):
    return saliency.Deconvnet().relu(signal, eta, None)


def rescale_relu(signal, eta, eta_ref, eps=1e-10):
    return saliency.Rescale(eps=eps).relu(signal, eta, eta_ref)


def guided_backprop(net, x, target):
    return saliency.guided_backprop(net, x, target)


def deeplift(net, x, x_ref, target):
    return saliency.deeplift(net, x, target, reference=x_ref)
