"""Assignment 2: the ReLU rules of guided backpropagation, deconvnet and DeepLIFT (rescale), and
plugging them into the backward recursion.

The recursion of Eq. 1, ``s_i = g'(eta_i) * sum_k w_ki s_k``, keeps its linear part and swaps
the multiplier at the ReLUs (``tutorials/02_guided_backprop_and_deconvnet.ipynb`` and
``tutorials/03_deeplift.ipynb``). In ``nets``, ``net.backward(trace, signal, rule=RULE,
ref_trace=REF)`` accepts any object with two methods:

``rule.relu(signal, eta, eta_ref)``
    the signal at a ReLU's input, given the signal at its output, its forward input ``eta`` and
    (for reference-based rules) the reference pass's input ``eta_ref`` (else ``None``);
``rule.max_pool(layer, signal, cache, ref_cache)``
    the signal at a max pool's input; ``layer.route(signal, cache)`` routes through the switches.

The two rule classes below are written for you: they call your functions of parts 1 and 3.

Rules of the game

* Use NumPy. Do not call the library's rules or methods (``saliency``): the grader compares your
  functions with them. You may call ``net.forward`` and ``net.backward`` with the rule objects
  below (that is the point of parts 4 and 5).
* Arrays are float64 in the grader. Keep the function names and signatures.

Grade your work::

    sensloc grade 2 path/to/2_rules.py       # or: python -m sensloc.coursework.grade 2 FILE

Parts and points: guided_relu (2), deconvnet_relu (2), rescale_relu (4), guided_backprop (3),
deeplift (4).
"""
import numpy as np


def guided_relu(signal, eta):
    """Part 1. Guided backpropagation at a ReLU: ``s_in = 1[eta > 0] * 1[s > 0] * s``.

    Parameters
    ----------
    signal : array
        The signal ``s`` at the ReLU's output.
    eta : array of the same shape
        The ReLU's forward input.

    Returns
    -------
    array of the same shape
    """
    # TODO
    raise NotImplementedError("TODO part 1: guided_relu")


def deconvnet_relu(signal, eta):
    """Part 2. Deconvnet at a ReLU: ``s_in = 1[s > 0] * s`` (the forward input is ignored).

    Parameters
    ----------
    signal, eta : arrays of the same shape

    Returns
    -------
    array of the same shape
    """
    # TODO
    raise NotImplementedError("TODO part 2: deconvnet_relu")


def rescale_relu(signal, eta, eta_ref, eps=1e-10):
    """Part 3. DeepLIFT's rescale rule at a ReLU ``g(eta) = max(eta, 0)``: the secant::

        m = (g(eta) - g(eta_ref)) / (eta - eta_ref)      where |eta - eta_ref| >= eps
        m = g'(eta) = 1[eta > 0]                          otherwise
        s_in = m * s

    Parameters
    ----------
    signal : array
        The signal (multiplier) ``s`` at the ReLU's output.
    eta, eta_ref : arrays of the same shape
        The ReLU's input in the pass of the explained input and of the reference input.
    eps : float

    Returns
    -------
    array of the same shape, without NaN or infinity (careful where ``eta == eta_ref``)
    """
    # TODO
    raise NotImplementedError("TODO part 3: rescale_relu")


class GuidedRule:
    """A rule object for ``net.backward`` that uses your ``guided_relu`` (given, no TODO)."""

    def relu(self, signal, eta, eta_ref):
        return guided_relu(signal, eta)

    def max_pool(self, layer, signal, cache, ref_cache):
        return layer.route(signal, cache)


class RescaleRule:
    """A rule object for ``net.backward`` that uses your ``rescale_relu`` (given, no TODO).

    Max pools route the signal through the input's switches; the grader uses networks without
    max pools for DeepLIFT, where this choice does not matter.
    """

    def relu(self, signal, eta, eta_ref):
        return rescale_relu(signal, eta, eta_ref)

    def max_pool(self, layer, signal, cache, ref_cache):
        return layer.route(signal, cache)


def guided_backprop(net, x, target):
    """Part 4. Guided backpropagation of the logit ``f_t``, ``t = target[n]`` for image ``n``.

    Run the forward pass (``trace = net.forward(x)``; logits ``trace.output``, (N, K)), put the
    one-hot signal ``e_t`` at the logits and send it back with ``net.backward(trace, signal,
    rule=GuidedRule())``.

    Parameters
    ----------
    net : nets.Network
    x : (N, C, H, W) array
    target : (N,) int array

    Returns
    -------
    (N, C, H, W) array
    """
    # TODO
    raise NotImplementedError("TODO part 4: guided_backprop")


def deeplift(net, x, x_ref, target):
    """Part 5. DeepLIFT's contributions ``C = (x - x_ref) * m`` for the logit ``f_t``.

    The multipliers ``m`` come from the recursion with the rescale rule: run the forward pass of
    the input AND of the reference (``net.forward(x_ref)``), then ``net.backward(trace, e_t,
    rule=RescaleRule(), ref_trace=ref_trace)``. Summation-to-delta must hold:
    ``sum(C[n]) == f_t(x[n]) - f_t(x_ref[n])``.

    Parameters
    ----------
    net : nets.Network
    x, x_ref : (N, C, H, W) arrays
    target : (N,) int array

    Returns
    -------
    (N, C, H, W) array
    """
    # TODO
    raise NotImplementedError("TODO part 5: deeplift")
