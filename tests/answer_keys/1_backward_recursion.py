"""ANSWER KEY (teachers only; not shipped with the package): assignment 1.

Written from the equations with NumPy alone; tests/test_grade.py checks it scores full marks.
The skeleton's text follows.
"""
"""Assignment 1: the backward recursion of Eq. 1 for fully connected, ReLU, convolution and max-pool
layers, and the whole recursion through a network.

Eq. 1 of Ebrahimpour & Noelle (see ``tutorials/01_sensitivity_analysis.ipynb``)::

    s_i = g'(eta_i) * sum_k w_ki s_k

Every backward step has a *linear* part, ``sum_k w_ki s_k`` (the transposed weights: parts 1 and 3;
the max-pool switches: part 4), and a *multiplier*, ``g'(eta_i)`` (part 2). Part 5 chains them.

Rules of the game

* Use NumPy only. The grader runs your file in a separate process that cannot import the
  library (``sensloc``): a file that tries scores 0. Networks come as plain data (a list of
  layer dicts, see :func:`forward`). Part 5 calls :func:`forward` and your parts 1-4.
* Arrays are float64 in the grader. Batches of images are ``(N, C, H, W)``.
* Keep the function names and signatures.

Grade your work (from the repository, after ``pip install -e .``)::

    sensloc grade 1 path/to/1_backward_recursion.py       # or: python -m sensloc.coursework.grade 1 FILE

Parts and points: linear_backward (2), relu_backward (2), conv2d_backward (4),
max_pool_backward (4), input_gradient (3).

Estimated time: 3 to 4 hours (most of it on parts 3 and 4).
"""
import numpy as np


def linear_backward(signal, weight):
    """Part 1. The signal at the input of a fully connected layer ``y = x W^T + b``.

    ``dx_i = sum_k w_ki dy_k`` for every image of the batch: the linear part of Eq. 1 with
    ``w_ki = weight[k, i]``, the weight from input ``i`` to output ``k``.

    Parameters
    ----------
    signal : (N, D_out) array
        The signal ``dy`` at the layer's output.
    weight : (D_out, D_in) array
        PyTorch's layout: row ``k`` holds the weights of output ``k``.

    Returns
    -------
    (N, D_in) array
    """
    return signal @ weight


def relu_backward(signal, eta):
    """Part 2. The signal at the input of a ReLU, ``g(eta) = max(eta, 0)``: Eq. 1's multiplier.

    ``s_in = g'(eta) * s = 1[eta > 0] * s``, with ``g'(0) = 0`` at the kink (as every autodiff
    framework does).

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
    return signal * (eta > 0)


def conv2d_backward(signal, weight, input_shape, stride, padding):
    """Part 3. The signal at the input of a convolution: a transposed convolution.

    The forward pass (cross-correlation with stride ``s`` and zero padding ``p``) is::

        y[n, o, oh, ow] = b[o] + sum_{c,i,j} w[o, c, i, j] * x_pad[n, c, s*oh + i, s*ow + j]

    so every weight sends its output's signal back to the input pixel it read::

        dx_pad[n, c, s*oh + i, s*ow + j] += w[o, c, i, j] * dy[n, o, oh, ow]

    and the padding is cut away at the end. Input pixels that no window reads (when
    ``(H + 2p - K)`` is not a multiple of ``s``) receive zero.

    Parameters
    ----------
    signal : (N, O, OH, OW) array
        ``dy``, the signal at the convolution's output.
    weight : (O, C, K, K) array
    input_shape : tuple (N, C, H, W)
        Shape of the forward input.
    stride, padding : int

    Returns
    -------
    (N, C, H, W) array
    """
    n, c, h, w = input_shape
    k, oh, ow = weight.shape[2], signal.shape[2], signal.shape[3]
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
    for i in range(k):
        for j in range(k):
            # tap (i, j) of every window reads x_pad[:, :, s*oh + i, s*ow + j]
            padded[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += np.einsum(
                "nohw,oc->nchw", signal, weight[:, :, i, j])
    return padded[:, :, padding:padding + h, padding:padding + w]


def max_pool_backward(signal, x, kernel_size, stride):
    """Part 4. The signal at the input of a max pool (no padding, floor rounding).

    The forward pass is ``y[n, c, oh, ow] = max of x[n, c, s*oh : s*oh + k, s*ow : s*ow + k]`` with
    ``OH = (H - k) // s + 1`` (likewise ``OW``). Its derivative routes each window's signal to the
    input that won the window (the *switch*) and nothing to the others.

    * Ties: the FIRST maximum in row-major order within the window wins (as ``numpy.argmax`` of
      the flattened window).
    * Overlapping windows (``stride < kernel_size``): a pixel that wins several windows receives
      the SUM of their signals.

    Parameters
    ----------
    signal : (N, C, OH, OW) array
        The signal at the pool's output.
    x : (N, C, H, W) array
        The pool's forward input (find the switches from it).
    kernel_size, stride : int

    Returns
    -------
    (N, C, H, W) array
    """
    k, s = kernel_size, stride
    dx = np.zeros(x.shape)
    n, c, oh, ow = signal.shape
    for a in range(n):
        for b in range(c):
            for r in range(oh):
                for q in range(ow):
                    window = x[a, b, s * r:s * r + k, s * q:s * q + k]
                    winner = np.argmax(window)   # the first maximum in row-major order
                    dx[a, b, s * r + winner // k, s * q + winner % k] += signal[a, b, r, q]
    return dx


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


def input_gradient(net, x, target):
    """Part 5. The sensitivity map ``d f_t / d x`` of a whole network, by the recursion of Eq. 1.

    ``f_t`` is the logit of class ``target[n]`` for image ``n``; the signal at the logits is
    therefore one-hot: ``s[n, k] = 1 if k == target[n] else 0``.

    Run ``logits, caches = forward(net, x)`` (the function above). Then walk ``net`` from the
    last layer to the first, turning the signal at each layer's output into the signal at its
    input with your functions from parts 1-4. ``caches[layer["name"]]`` is each layer's forward
    input: what its backward step needs (``eta`` for a ReLU, ``x`` for a max pool, the shape to
    restore for ``Flatten``). ``GlobalAvgPool2d`` spreads ``signal[n, c] / (H * W)`` over every
    pixel of channel ``c``.

    Parameters
    ----------
    net : list of dict
        A network as plain data (see :func:`forward`), built from the six layer types.
    x : (N, C, H, W) array
    target : (N,) int array

    Returns
    -------
    (N, C, H, W) array
    """
    logits, caches = forward(net, x)
    signal = np.zeros_like(logits)
    signal[np.arange(len(x)), target] = 1.0
    for layer in reversed(net):
        kind, eta = layer["type"], caches[layer["name"]]
        if kind == "Linear":
            signal = linear_backward(signal, layer["weight"])
        elif kind == "Conv2d":
            signal = conv2d_backward(signal, layer["weight"], eta.shape, layer["stride"], layer["padding"])
        elif kind == "ReLU":
            signal = relu_backward(signal, eta)
        elif kind == "MaxPool2d":
            signal = max_pool_backward(signal, eta, layer["kernel_size"], layer["stride"])
        elif kind == "Flatten":
            signal = signal.reshape(eta.shape)
        elif kind == "GlobalAvgPool2d":
            signal = np.broadcast_to(signal[:, :, None, None] / (eta.shape[2] * eta.shape[3]), eta.shape)
        else:
            raise ValueError(kind)
    return signal
