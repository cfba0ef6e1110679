"""The fast backend: :mod:`nets.reference`'s operations as Numba kernels (see :mod:`nets.backends`).

Same names, signatures, shapes and dtypes as :mod:`nets.reference`; the tests hold the two
equal. Importing this package compiles or loads the kernels and probes the CPU's vector width
(:mod:`nets._numba.gemm`), which is why :mod:`nets.backends` imports it only when selected.
Operations that have no faster form here are the reference's own.
"""
from sensloc.nets.reference import conv_output_size, linear_backward_weight, pool_output_size
from sensloc.nets._numba.kernels import (conv2d_backward_input, conv2d_backward_weight,
                                         conv2d_forward, linear_backward_input, linear_forward,
                                         relu, relu_backward, relu_rule)
from sensloc.nets._numba.pooling import max_pool_forward, max_pool_route
from sensloc.nets._numba.depthwise import (depthwise_conv2d_backward_input,
                                           depthwise_conv2d_backward_weight,
                                           depthwise_conv2d_forward, relu6, relu6_backward,
                                           relu6_rule)

__all__ = ["conv2d_backward_input", "conv2d_backward_weight", "conv2d_forward",
           "conv_output_size", "linear_backward_input", "linear_backward_weight",
           "linear_forward", "max_pool_forward", "max_pool_route", "pool_output_size", "relu",
           "relu_backward", "relu_rule", "depthwise_conv2d_forward",
           "depthwise_conv2d_backward_input", "depthwise_conv2d_backward_weight", "relu6",
           "relu6_backward", "relu6_rule"]
