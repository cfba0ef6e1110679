"""ANSWER KEY (teachers only; not shipped with the package): assignment 2.

Written from the equations with NumPy alone; tests/test_grade.py checks it scores full marks.
The skeleton's text follows.
"""
"""Assignment 2: the ReLU rules of guided backpropagation, deconvnet and DeepLIFT (rescale), and
plugging them into the backward recursion.

The recursion of Eq. 1, ``s_i = g'(eta_i) * sum_k w_ki s_k``, keeps its linear part and swaps
the multiplier at the ReLUs (``tutorials/02_guided_backprop_and_deconvnet.ipynb`` and
``tutorials/03_deeplift.ipynb``). In ``nets``, ``net.backward(trace, signal, rule=RULE,
ref_trace=REF)`` accepts a rule object; here the networks come as plain data and the recursion is
:func:`backward` (given below, with :func:`forward`), which takes any object with a method

``rule.relu(signal, eta, eta_ref)``
    the signal at a ReLU's input, given the signal at its output, its forward input ``eta`` and
    (for reference-based rules) the reference pass's input ``eta_ref`` (else ``None``).

The two rule classes below are written for you: they call your functions of parts 1 and 3.

Rules of the game

* Use NumPy only. The grader runs your file in a separate process that cannot import the
  library (``sensloc``): a file that tries scores 0. Call :func:`forward` and :func:`backward`
  (given below) with the rule objects below: that is the point of parts 4 and 5.
* Arrays are float64 in the grader. Keep the function names and signatures.

Grade your work::

    sensloc grade 2 path/to/2_rules.py       # or: python -m sensloc.coursework.grade 2 FILE

Parts and points: guided_relu (2), deconvnet_relu (2), rescale_relu (4), guided_backprop (3),
deeplift (4).

Estimated time: 2 to 3 hours.
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
    return signal * ((eta > 0) & (signal > 0))


def deconvnet_relu(signal, eta):
    """Part 2. Deconvnet at a ReLU: ``s_in = 1[s > 0] * s`` (the forward input is ignored).

    Parameters
    ----------
    signal, eta : arrays of the same shape

    Returns
    -------
    array of the same shape
    """
    return signal * (signal > 0)


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
    difference = eta - eta_ref
    safe = np.abs(difference) >= eps
    secant = (np.maximum(eta, 0) - np.maximum(eta_ref, 0)) / np.where(safe, difference, 1.0)
    return np.where(safe, secant, (eta > 0).astype(float)) * signal


def forward(net, x):
    """The forward pass of a network given as plain data (written for you, no TODO).

    Parameters
    ----------
    net : list of dict
        One dict per layer, first to last. Every dict has ``"type"`` and ``"name"``:

        ======================  ============================================================
        ``"type"``              other keys
        ======================  ============================================================
        ``"Linear"``            ``"weight"`` (D_out, D_in), ``"bias"`` (D_out,)
        ``"Conv2d"``            ``"weight"`` (O, C, K, K), ``"bias"`` (O,), ``"stride"``,
                                ``"padding"``
        ``"ReLU"``
        ``"MaxPool2d"``         ``"kernel_size"``, ``"stride"`` (no padding, floor rounding)
        ``"Flatten"``           ``(N, C, H, W) -> (N, C*H*W)``
        ``"GlobalAvgPool2d"``   ``y[n, c] = mean over h, w of x[n, c]``
        ======================  ============================================================
    x : (N, C, H, W) array

    Returns
    -------
    logits : (N, num_classes) array
    caches : dict
        ``caches[layer["name"]]`` is the layer's forward input (``eta`` for a ReLU).
    """
    caches = {}
    for layer in net:
        caches[layer["name"]] = x
        kind = layer["type"]
        if kind == "Linear":
            x = x @ layer["weight"].T + layer["bias"]
        elif kind == "Conv2d":
            k, s, p = layer["weight"].shape[2], layer["stride"], layer["padding"]
            padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::s, ::s]
            x = np.einsum("nchwij,ocij->nohw", windows, layer["weight"]) + layer["bias"][:, None, None]
        elif kind == "ReLU":
            x = np.maximum(x, 0)
        elif kind == "MaxPool2d":
            k, s = layer["kernel_size"], layer["stride"]
            windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
            x = windows.max(axis=(4, 5))
        elif kind == "Flatten":
            x = x.reshape(len(x), -1)
        elif kind == "GlobalAvgPool2d":
            x = x.mean(axis=(2, 3))
        else:
            raise ValueError(f"unknown layer type {kind!r}")
    return x, caches


def backward(net, caches, signal, rule, ref_caches=None):
    """The backward recursion of Eq. 1 with a pluggable ReLU step (written for you, no TODO).

    The linear half of every layer is fixed (transposed weights, max-pool switches, reshapes);
    at each ReLU the signal goes through ``rule.relu(signal, eta, eta_ref)``. These are the
    answers of assignment 1, given so that this assignment stands on its own.

    Parameters
    ----------
    net : list of dict
        A network as plain data (see :func:`forward`).
    caches : dict
        The ``caches`` of ``forward(net, x)``.
    signal : (N, num_classes) array
        The signal at the logits.
    rule : object with a method ``relu(signal, eta, eta_ref)``
    ref_caches : dict, optional
        The ``caches`` of the reference input's forward pass (rules that need ``eta_ref``).

    Returns
    -------
    (N, C, H, W) array, the signal at the input
    """
    for layer in reversed(net):
        kind, x = layer["type"], caches[layer["name"]]
        if kind == "Linear":
            signal = signal @ layer["weight"]
        elif kind == "Conv2d":
            weight, s, p = layer["weight"], layer["stride"], layer["padding"]
            n, c, h, w = x.shape
            k, oh, ow = weight.shape[2], signal.shape[2], signal.shape[3]
            padded = np.zeros((n, c, h + 2 * p, w + 2 * p))
            for i in range(k):
                for j in range(k):
                    padded[:, :, i:i + s * oh:s, j:j + s * ow:s] += np.einsum(
                        "nohw,oc->nchw", signal, weight[:, :, i, j])
            signal = padded[:, :, p:p + h, p:p + w]
        elif kind == "ReLU":
            signal = rule.relu(signal, x, None if ref_caches is None else ref_caches[layer["name"]])
        elif kind == "MaxPool2d":
            k, s = layer["kernel_size"], layer["stride"]
            routed = np.zeros_like(x)
            n, c, oh, ow = signal.shape
            for r in range(oh):
                for q in range(ow):
                    window = x[:, :, s * r:s * r + k, s * q:s * q + k].reshape(n, c, -1)
                    winner = np.argmax(window, axis=2)   # the first maximum on ties
                    rows, cols = s * r + winner // k, s * q + winner % k
                    nn, cc = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
                    np.add.at(routed, (nn, cc, rows, cols), signal[:, :, r, q])
            signal = routed
        elif kind == "Flatten":
            signal = signal.reshape(x.shape)
        elif kind == "GlobalAvgPool2d":
            signal = np.broadcast_to(signal[:, :, None, None] / (x.shape[2] * x.shape[3]), x.shape).copy()
        else:
            raise ValueError(f"unknown layer type {kind!r}")
    return signal


class GuidedRule:
    """A rule object for :func:`backward` that uses your ``guided_relu`` (given, no TODO)."""

    def relu(self, signal, eta, eta_ref):
        return guided_relu(signal, eta)


class RescaleRule:
    """A rule object for :func:`backward` that uses your ``rescale_relu`` (given, no TODO).

    The grader uses networks without max pools for DeepLIFT (there the rescale rule has
    several variants; :func:`backward` routes through the input's switches).
    """

    def relu(self, signal, eta, eta_ref):
        return rescale_relu(signal, eta, eta_ref)


def guided_backprop(net, x, target):
    """Part 4. Guided backpropagation of the logit ``f_t``, ``t = target[n]`` for image ``n``.

    Run the forward pass (``logits, caches = forward(net, x)``; logits (N, K)), put the one-hot
    signal ``e_t`` at the logits and send it back with ``backward(net, caches, signal,
    GuidedRule())``.

    Parameters
    ----------
    net : list of dict
        A network as plain data (see :func:`forward`).
    x : (N, C, H, W) array
    target : (N,) int array

    Returns
    -------
    (N, C, H, W) array
    """
    logits, caches = forward(net, x)
    signal = np.zeros_like(logits)
    signal[np.arange(len(x)), target] = 1.0
    return backward(net, caches, signal, GuidedRule())


def deeplift(net, x, x_ref, target):
    """Part 5. DeepLIFT's contributions ``C = (x - x_ref) * m`` for the logit ``f_t``.

    The multipliers ``m`` come from the recursion with the rescale rule: run the forward pass of
    the input AND of the reference (``forward(net, x_ref)``), then ``backward(net, caches, e_t,
    RescaleRule(), ref_caches)``. Summation-to-delta must hold:
    ``sum(C[n]) == f_t(x[n]) - f_t(x_ref[n])``.

    Parameters
    ----------
    net : list of dict
        A network as plain data (see :func:`forward`).
    x, x_ref : (N, C, H, W) arrays
    target : (N,) int array

    Returns
    -------
    (N, C, H, W) array
    """
    logits, caches = forward(net, x)
    _, ref_caches = forward(net, x_ref)
    signal = np.zeros_like(logits)
    signal[np.arange(len(x)), target] = 1.0
    return (x - x_ref) * backward(net, caches, signal, RescaleRule(), ref_caches)
