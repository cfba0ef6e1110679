"""Assignment 1 answered by the library itself (tests/test_grade.py: it must score full marks).

Each function of ``tutorials/assignments/1_backward_recursion.py`` delegates to the layer or
method of ``nets``/``saliency`` that the grader compares with.
"""
from sensloc import nets
from sensloc import saliency
from sensloc.nets import reference


def linear_backward(signal, weight):
    layer = nets.Linear("fc", weight.shape[1], weight.shape[0])
    layer.weight = weight
    return layer.backward(signal, None)


def relu_backward(signal, eta):
    return nets.ReLU("relu").backward(signal, eta)


def conv2d_backward(signal, weight, input_shape, stride, padding):
    return reference.conv2d_backward_input(signal, weight, tuple(input_shape), stride, padding)


def max_pool_backward(signal, x, kernel_size, stride):
    pool = nets.MaxPool2d("pool", kernel_size, stride)
    _, cache = pool.forward(x)
    return pool.backward(signal, cache)


def input_gradient(net, x, target):
    return saliency.gradient(net, x, target)
