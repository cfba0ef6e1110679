"""Assignment 1's cases: the backward recursion of Eq. 1, ``s_i = g'(eta_i) * sum_k w_ki s_k``, for
fully connected, ReLU, convolution and max-pool layers and a whole network (references:
:mod:`sensloc.nets`, :func:`sensloc.saliency.gradient`).
"""
import numpy as np

from sensloc import nets
from sensloc import saliency
from sensloc.nets import reference

from sensloc.coursework._checks import Assignment, Case, Part, close_to, network_cases


def _linear_cases(rng):
    cases = []
    for n, d_out, d_in in ((2, 5, 3), (3, 4, 4), (1, 7, 2)):
        signal, weight = rng.normal(size=(n, d_out)), rng.normal(size=(d_out, d_in))
        layer = nets.Linear("fc", d_in, d_out)
        layer.weight = weight
        expected = layer.backward(signal, None)

        def diagnose(got, case, signal=signal, weight=weight):
            if weight.shape[0] == weight.shape[1] and close_to(got, signal @ weight.T):
                return "You multiplied by W^T: the sum runs over the OUTPUTS k of w_ki = weight[k, i]"
        cases.append(Case(f"N={n}, D_out={d_out}, D_in={d_in}", (signal, weight), expected,
                          diagnose=diagnose))
    return cases


def _relu_cases(rng):
    cases = []
    for label, shape in (("2-D (4, 6), some eta exactly 0", (4, 6)), ("4-D (2, 3, 5, 4)", (2, 3, 5, 4)),
                         ("4-D (1, 2, 3, 3), some eta exactly 0", (1, 2, 3, 3))):
        signal = rng.normal(size=shape)
        eta = rng.normal(size=shape)
        if "exactly 0" in label:
            eta.flat[rng.choice(eta.size, eta.size // 3, replace=False)] = 0.0
        expected = nets.ReLU("relu").backward(signal, eta)

        def diagnose(got, case, signal=signal, eta=eta):
            if close_to(got, signal * (eta >= 0)):
                return "At eta == 0 take g'(0) = 0: the indicator is 1[eta > 0], not 1[eta >= 0]"
            if close_to(got, np.maximum(signal, 0)):
                return "That is deconvnet's rule; the gradient looks at the sign of eta, not of the signal"
            if close_to(got, signal * np.maximum(eta, 0)):
                return "Multiply by g'(eta) = 1[eta > 0], not by g(eta) = max(eta, 0)"
        cases.append(Case(label, (signal, eta), expected, diagnose=diagnose))
    return cases


def _conv_cases(rng):
    cases = []
    for n, c, h, w, o, k, s, p in ((1, 1, 5, 5, 1, 3, 1, 0), (2, 3, 7, 6, 4, 3, 1, 1), (2, 2, 9, 7, 3, 3, 2, 1),
                                   (1, 3, 6, 6, 2, 1, 1, 0), (1, 2, 11, 10, 3, 5, 2, 2), (1, 2, 8, 9, 2, 3, 2, 0)):
        oh, ow = reference.conv_output_size(h, k, s, p), reference.conv_output_size(w, k, s, p)
        signal, weight = rng.normal(size=(n, o, oh, ow)), rng.normal(size=(o, c, k, k))
        expected = reference.conv2d_backward_input(signal, weight, (n, c, h, w), s, p)
        label = f"input {(n, c, h, w)}, kernel {k}x{k}, {o} outputs, stride {s}, padding {p}"
        cases.append(Case(label, (signal, weight, (n, c, h, w), s, p), expected))
    return cases


def _max_pool_cases(rng):
    cases = []
    for label, shape, k, s, ties in (("2x2 stride 2 (no overlap)", (2, 3, 6, 6), 2, 2, False),
                                     ("3x3 stride 2 (overlapping windows)", (1, 2, 9, 7), 3, 2, False),
                                     ("3x3 stride 1 (overlapping windows)", (1, 2, 6, 5), 3, 1, False),
                                     ("2x2 stride 2 on an odd size", (2, 1, 7, 5), 2, 2, False),
                                     ("3x3 stride 2, ties: windows with several equal maxima", (1, 2, 9, 9),
                                      3, 2, True)):
        x = rng.normal(size=shape)
        if ties:
            x = np.round(np.maximum(x, 0), 1)
        pool = nets.MaxPool2d("pool", k, s)
        y, cache = pool.forward(x)
        signal = rng.normal(size=y.shape)
        expected = pool.backward(signal, cache)
        wins = pool.backward(np.ones_like(y), cache)

        def diagnose(got, case, expected=expected, wins=wins, ties=ties):
            try:
                wrong = np.abs(np.asarray(got, dtype=np.float64) - expected) > 1e-9
            except (TypeError, ValueError):
                return None
            if wrong.shape != expected.shape or not wrong.any():
                return None
            if np.all(wins[wrong] >= 2):
                return ("The wrong pixels all win several overlapping windows: they must receive the SUM "
                        "of those windows' signals (+=, not =)")
            if ties:
                return "On ties the FIRST maximum in row-major order wins (numpy.argmax of the flattened window)"
        cases.append(Case(f"{label}, input {shape}", (signal, x, k, s), expected, diagnose=diagnose))
    return cases


def _input_gradient_cases(rng):
    return network_cases(rng, ("flatten", "gap"), lambda net, x, t: saliency.gradient(net, x, t))


ASSIGNMENT_1 = Assignment(1, "backward", "1_backward_recursion.py",
                          "the backward recursion of Eq. 1 (fully connected, ReLU, convolution, max pool)", [
    Part("linear_backward", 2, _linear_cases,
         "dx_i = sum_k w_ki dy_k for every image: dy @ W with W of shape (D_out, D_in)"),
    Part("relu_backward", 2, _relu_cases, "s_in = 1[eta > 0] * s"),
    Part("conv2d_backward", 4, _conv_cases,
         "dx_pad[n, c, s*oh + i, s*ow + j] += w[o, c, i, j] * dy[n, o, oh, ow] for every tap (i, j), "
         "summed over o (np.einsum('nohw,oc->nchw', ...) does one tap for all n, c, oh, ow), then drop "
         "the padding: dx = dx_pad[:, :, p:p + H, p:p + W]"),
    Part("max_pool_backward", 4, _max_pool_cases,
         "for each window (oh, ow) find the argmax of x[n, c, s*oh:s*oh+k, s*ow:s*ow+k] and ADD "
         "signal[n, c, oh, ow] at that pixel"),
    Part("input_gradient", 3, _input_gradient_cases,
         "logits, caches = forward(net, x); signal = one-hot rows of the targets; for layer in reversed(net): "
         "signal = <backward of that layer>(signal, caches[layer['name']]); Flatten reshapes the "
         "signal to the cached shape; GlobalAvgPool2d spreads signal[n, c] / (H * W) over every pixel",
         uses=("linear_backward", "relu_backward", "conv2d_backward", "max_pool_backward")),
])
