"""Assignment 1: the backward recursion of Eq. 1 for fully connected, ReLU, convolution and max-pool
layers, and the whole recursion through a network.

Eq. 1 of Ebrahimpour & Noelle (see ``tutorials/01_sensitivity_analysis.ipynb``)::

    s_i = g'(eta_i) * sum_k w_ki s_k

Every backward step has a *linear* part, ``sum_k w_ki s_k`` (the transposed weights: parts 1 and 3;
the max-pool switches: part 4), and a *multiplier*, ``g'(eta_i)`` (part 2). Part 5 chains them.

Rules of the game

* Use NumPy only. Do not call the library's own backward passes (``nets``, ``saliency``): the
  grader compares your functions with them, on random cases, so calling them teaches you nothing.
  (Part 5 may call ``net.forward`` and your own functions from parts 1-4.)
* Arrays are float64 in the grader. Batches of images are ``(N, C, H, W)``.
* Keep the function names and signatures.

Grade your work (from the repository, after ``pip install -e .``)::

    sensloc grade 1 path/to/1_backward_recursion.py       # or: python -m sensloc.coursework.grade 1 FILE

Parts and points: linear_backward (2), relu_backward (2), conv2d_backward (4),
max_pool_backward (4), input_gradient (3).
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
    # TODO: one matrix product.
    raise NotImplementedError("TODO part 1: linear_backward")


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
    # TODO: an indicator times the signal.
    raise NotImplementedError("TODO part 2: relu_backward")


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
    # TODO: loop over the kernel taps (i, j) and accumulate into a padded array, then crop it.
    raise NotImplementedError("TODO part 3: conv2d_backward")


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
    # TODO: for every window, find the winner and add the window's signal there.
    raise NotImplementedError("TODO part 4: max_pool_backward")


def input_gradient(net, x, target):
    """Part 5. The sensitivity map ``d f_t / d x`` of a whole network, by the recursion of Eq. 1.

    ``f_t`` is the logit of class ``target[n]`` for image ``n``; the signal at the logits is
    therefore one-hot: ``s[n, k] = 1 if k == target[n] else 0``.

    Run ``trace = net.forward(x)``; the logits are ``trace.output`` (N, num_classes). Then walk
    ``net.layers`` from the last to the first, turning the signal at each layer's output into
    the signal at its input with your functions from parts 1-4. ``trace.caches[layer.name]``
    holds what each layer's backward pass needs:

    ==================  ================================  ==========================================
    layer type          attributes                        ``trace.caches[layer.name]``
    ==================  ================================  ==========================================
    ``Linear``          ``weight`` (D_out, D_in)          the input x (N, D_in)
    ``Conv2d``          ``weight``, ``stride``,           the input x (N, C, H, W)
                        ``padding``
    ``ReLU``                                              the input eta
    ``MaxPool2d``       ``kernel_size``, ``stride``       an object whose ``.x`` is the input
    ``Flatten``                                           the input's shape (N, C, H, W)
    ``GlobalAvgPool2d``                                   the input's shape (N, C, H, W);
                                                          ``y[n, c] = mean over h, w of x[n, c]``
    ==================  ================================  ==========================================

    Test the type with ``type(layer).__name__`` (e.g. ``"Conv2d"``).

    Parameters
    ----------
    net : nets.Network
        A network built from the six layer types above.
    x : (N, C, H, W) array
    target : (N,) int array

    Returns
    -------
    (N, C, H, W) array
    """
    # TODO: forward pass, one-hot signal, then the recursion layer by layer.
    raise NotImplementedError("TODO part 5: input_gradient")
