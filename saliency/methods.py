"""Attribution methods of one backward pass: thin wrappers around one recursion with a pluggable rule.

Every method takes a ``nets.Network``, a preprocessed batch ``x`` of shape ``(N, C, H, W)``
and a target (class index per image, or ``None`` for each image's top-1 class), and returns
an attribution of the same shape as ``x`` (float, the network's dtype), except Grad-CAM, which
returns ``(N, h, w)`` at the chosen layer's resolution. The methods that average many backward
passes (integrated gradients, SmoothGrad) are in :mod:`~sensloc.saliency.averaged`, occlusion,
which needs none, in :mod:`~sensloc.saliency.occlusion`; all of them by name in
:mod:`~sensloc.saliency.registry`.

The explained score ``f_t`` is the pre-softmax logit of class ``t`` by default;
``output="softmax"`` explains the probability ``p_t`` and ``output="log_softmax"`` its log.
"""
import numpy as np

from sensloc.nets import softmax
from sensloc.saliency.layers import feature_layer, linear_head
from sensloc.saliency.postprocess import reduce_channels
from sensloc.saliency.rules import Deconvnet, Gradient, Guided, Rescale

OUTPUTS = ("logit", "softmax", "log_softmax")


# ------------------------------------------------------------------------------------ helpers

def targets_for(logits, target):
    """Resolve ``target`` to one class index per image.

    Parameters
    ----------
    logits : (N, K) array
    target : None, "top1", int, or (N,) ints

    Returns
    -------
    (N,) int64 array
    """
    n, k = logits.shape
    if target is None or (isinstance(target, str) and target == "top1"):
        return logits.argmax(axis=1)
    t = np.broadcast_to(np.asarray(target), (n,)).astype(np.int64)
    if np.any((t < 0) | (t >= k)):
        raise ValueError(f"target class indices must lie in [0, {k}), got {np.unique(t)}")
    return t


def explained_classes(net, x, target):
    """:func:`targets_for` a batch, running the network only when the class must be predicted.

    Methods that explain many perturbed copies of ``x`` (integrated gradients, SmoothGrad)
    need the clean image's forward pass only to find its class.
    """
    if target is None or (isinstance(target, str) and target == "top1"):
        return targets_for(net(x), target)
    return targets_for(np.empty((len(x), net.num_classes), x.dtype), target)


def score_signal(logits, targets, output="logit"):
    """The signal at the logits: the gradient of the explained score ``f_t`` w.r.t. them.

    ``logit``: ``e_t`` (one-hot); ``softmax``: ``p_t (e_t - p)``; ``log_softmax``: ``e_t - p``.

    Parameters
    ----------
    logits : (N, K) array
    targets : (N,) ints

    Returns
    -------
    (N, K) array, the logits' dtype
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    one_hot = np.zeros_like(logits)
    one_hot[np.arange(len(targets)), targets] = 1
    if output == "logit":
        return one_hot
    p = softmax(logits)
    if output == "log_softmax":
        return one_hot - p
    return p[np.arange(len(targets)), targets][:, None] * (one_hot - p)


def scores(logits, targets, output="logit"):
    """The explained score ``f_t`` per image, (N,)."""
    rows = np.arange(len(targets))
    if output == "logit":
        return logits[rows, targets]
    if output == "softmax":
        return softmax(logits)[rows, targets]
    z = logits - logits.max(axis=1, keepdims=True)  # log p_t without underflow to log(0)
    return (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[rows, targets]


def forward_of(net, x, trace=None):
    """``net.forward(x)``, or ``trace`` if it is that pass already.

    Several maps of one batch (gradient, guided, deconvnet, Grad-CAM, DeepLIFT's input side,
    the activations) start from the same forward pass; the evaluation runs it once and hands
    it to each (``trace=``). A backward pass only reads a trace, so the maps are the floats
    of separate passes.
    """
    if trace is None:
        return net.forward(x)
    if trace.input is not x:
        raise ValueError("the trace given is the forward pass of another input")
    return trace


def backpropagate(net, x, target=None, rule=None, output="logit", trace=None):
    """Forward ``x`` (or take its ``trace``, :func:`forward_of`), then send the score's signal
    back to the input under ``rule``.

    Returns
    -------
    signal : (N, C, H, W) array
        ``ds/dx`` under the rule (the input gradient for ``rule=None``).
    trace : nets.Trace
    targets : (N,) ints
    """
    trace = forward_of(net, x, trace)
    targets = targets_for(trace.output, target)
    signal = net.backward(trace, score_signal(trace.output, targets, output), rule=rule)
    return signal, trace, targets


def _chunks(length, size):
    """Consecutive slices of ``range(length)``, each at most ``size`` long."""
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


def _add_per_image(total, image, maps):
    """``total[image[k]] += maps[k]`` for every row ``k``; ``image`` is sorted."""
    for i in np.unique(image):
        total[i] += maps[image == i].sum(axis=0)


# ------------------------------------------------------------------------------------ methods

def gradient(net, x, target=None, output="logit", trace=None):
    """Vanilla gradient, the sensitivity of Eq. 1: ``df_t / dx`` (Simonyan et al., 2014).

    Returns (N, C, H, W); reduce channels with :func:`saliency.postprocess.reduce_channels`
    (``"max_abs"`` gives Simonyan et al.'s map) or call :func:`sensitivity_map`.
    """
    return backpropagate(net, x, target, Gradient(), output, trace)[0]


def gradient_x_input(net, x, target=None, output="logit", trace=None):
    """Gradient times input: ``x * df_t / dx`` (elementwise), (N, C, H, W)."""
    return x * gradient(net, x, target, output, trace)


def guided_backprop(net, x, target=None, output="logit", trace=None):
    """Guided backpropagation: the recursion with :class:`~saliency.rules.Guided` ReLUs."""
    return backpropagate(net, x, target, Guided(), output, trace)[0]


def deconvnet(net, x, target=None, output="logit", trace=None):
    """Deconvnet: the recursion with :class:`~saliency.rules.Deconvnet` ReLUs."""
    return backpropagate(net, x, target, Deconvnet(), output, trace)[0]


def make_reference(net, x, reference="zero", blur_sigma=10.0):
    """A reference input for DeepLIFT and integrated gradients, shaped like ``x``.

    Parameters
    ----------
    reference : "zero", "black", "blur" or array
        ``"zero"``: zero in preprocessed space, i.e. the dataset's mean image;
        ``"black"``: the preprocessed all-black photo (needs ``net.preprocessing``);
        ``"blur"``: ``x`` blurred by a Gaussian of ``blur_sigma`` pixels per channel;
        an array of shape (C, H, W) or (N, C, H, W) in preprocessed space.
    """
    if isinstance(reference, str):
        if reference == "zero":
            return np.zeros_like(x)
        if reference == "black":
            if net.preprocessing is None:
                raise ValueError("a 'black' reference needs the network's preprocessing "
                                 "(load it with weights.load)")
            h, w = x.shape[2:]
            black = net.preprocessing.apply(np.zeros((h, w, 3), np.uint8))
            return np.broadcast_to(black.astype(x.dtype), x.shape).copy()
        if reference == "blur":
            from scipy.ndimage import gaussian_filter  # here: a fresh process pays ~0.5 s to import it
            return gaussian_filter(x, sigma=(0, 0, blur_sigma, blur_sigma)).astype(x.dtype)
        raise ValueError(f"reference must be 'zero', 'black', 'blur' or an array, got {reference!r}")
    ref = np.asarray(reference, dtype=x.dtype)
    if ref.shape not in (x.shape, x.shape[1:]):
        raise ValueError(f"reference shape {ref.shape} fits neither {x.shape} nor {x.shape[1:]}")
    if not np.isfinite(ref).all():
        raise ValueError("the reference contains NaN or infinity")
    return np.broadcast_to(ref, x.shape).copy()


def deeplift(net, x, target=None, reference="zero", max_pool="difference", return_delta=False,
             trace=None):
    """DeepLIFT with the rescale rule: contributions ``C = (x - x_ref) * m``.

    The multipliers ``m`` come from the same recursion with the secant of
    :class:`~saliency.rules.Rescale` in place of the tangent. Summation-to-delta:
    ``sum(C) == f_t(x) - f_t(x_ref)`` exactly (up to rounding) with ``max_pool="difference"``.

    Parameters
    ----------
    reference : see :func:`make_reference`
    max_pool : "difference" or "gradient", see :class:`~saliency.rules.Rescale`
    return_delta : bool
        Also return ``sum(C) - (f_t(x) - f_t(x_ref))`` per image, (N,).
    trace : nets.Trace, optional
        The forward pass of ``x``, if it was run already (:func:`forward_of`).

    Returns
    -------
    contributions : (N, C, H, W) array
    delta : (N,) array, if ``return_delta``
    """
    ref = make_reference(net, x, reference)
    trace, ref_trace = forward_of(net, x, trace), net.forward(ref)
    targets = targets_for(trace.output, target)
    signal = score_signal(trace.output, targets)
    multipliers = net.backward(trace, signal, rule=Rescale(max_pool), ref_trace=ref_trace)
    contributions = (x - ref) * multipliers
    if not return_delta:
        return contributions
    expected = scores(trace.output, targets) - scores(ref_trace.output, targets)
    return contributions, contributions.sum(axis=(1, 2, 3)) - expected


def grad_cam(net, x, target=None, layer=None, relu=True, output="logit", trace=None):
    """Grad-CAM (Selvaraju et al., 2017) at a named layer.

    ``alpha_k = mean_{h,w} df_t/dA_k``, ``CAM = relu(sum_k alpha_k A_k)`` with ``A`` the
    layer's output activations (N, K, h, w).

    Parameters
    ----------
    layer : str
        A top-level layer name with a spatial output (e.g. ``"fire9"``, ``"relu5_3"``);
        by default the architecture's feature layer
        (:func:`sensloc.saliency.layers.feature_layer`).
    relu : bool
        Apply the final ReLU (Selvaraju et al.); ``False`` keeps negative evidence.
    trace : nets.Trace, optional
        The forward pass of ``x``, if it was run already (:func:`forward_of`).

    Returns
    -------
    (N, h, w) array at the layer's resolution; upsample with
    :func:`saliency.postprocess.upsample`.
    """
    trace = forward_of(net, x, trace)
    layer = feature_layer(net, trace) if layer is None else layer
    net.layer(layer)
    activations = trace.outputs[layer]
    if activations.ndim != 4:
        raise ValueError(f"Grad-CAM needs a layer with a spatial output; {layer!r} gives "
                         f"{activations.shape}")
    targets = targets_for(trace.output, target)
    grads = net.backward(trace, score_signal(trace.output, targets, output), stop=layer)
    alphas = grads.mean(axis=(2, 3), keepdims=True)
    cam = (alphas * activations).sum(axis=1)
    return np.maximum(cam, 0) if relu else cam


def class_contributions(net, x, target=None, trace=None):
    """Each channel's contribution to the class score at each cell: a class activation map
    (Zhou et al., 2016) before its sum over channels.

    ``c[n, j, h, w] = W[t_n, j] a[n, j, h, w]``, with ``a`` the output of the layer that the
    network's linear classifier reads and ``W`` that classifier's weights
    (:func:`sensloc.saliency.layers.linear_head`). Summed over channels, plus the bias, it is
    the class map: MobileNetV2's logit is its mean over the cells, SqueezeNet's the mean of its
    ReLU (``conv_final`` before the ReLU, at the cells that see ``fire9``).

    Parameters
    ----------
    trace : nets.Trace, optional
        The forward pass of ``x``, if it was run already (:func:`forward_of`).

    Returns
    -------
    (N, C, h, w) array at that layer's resolution, the network's dtype
    """
    layer, weight = linear_head(net)
    trace = forward_of(net, x, trace)
    targets = targets_for(trace.output, target)
    activations = trace.outputs[layer]
    return activations * weight[targets][:, :, None, None].astype(activations.dtype)


def neuron_selection(net, x, target=None, layer=None, k=5, rule=None, trace=None):
    """Top-k neurons of a layer, each mapped to the image (Dwaraknath et al.).

    A neuron ``j`` of layer ``l`` (one element of its (K, h, w) output) is scored by its
    activation times its effect on the class score, ``a_j * df_t/da_j``; for the ``k`` best
    neurons of each image, a guided backpropagation starts at that neuron alone
    (signal ``e_j`` at layer ``l``), and the ``k`` maps are averaged after each is divided by
    its largest absolute value (so that every selected neuron counts equally).

    Parameters
    ----------
    layer : str
        Top-level layer name (default: the architecture's feature layer,
        :func:`sensloc.saliency.layers.feature_layer`).
    k : int
    rule : Rule, optional
        The rule below layer ``l`` (guided backpropagation by default).
    trace : nets.Trace, optional
        The forward pass of ``x``, if it was run already (:func:`forward_of`).

    Returns
    -------
    (N, C, H, W) array
    """
    rule = Guided() if rule is None else rule
    trace = forward_of(net, x, trace)
    layer = feature_layer(net, trace) if layer is None else layer
    targets = targets_for(trace.output, target)
    activations = trace.outputs[layer]
    effect = net.backward(trace, score_signal(trace.output, targets), stop=layer)
    relevance = (activations * effect).reshape(len(x), -1)
    if not 1 <= k <= relevance.shape[1]:
        raise ValueError(f"k must lie in [1, {relevance.shape[1]}], got {k}")
    top = np.argsort(-relevance, axis=1, kind="stable")[:, :k]
    total = np.zeros_like(x)
    for j in range(k):
        signal = np.zeros_like(activations).reshape(len(x), -1)
        signal[np.arange(len(x)), top[:, j]] = 1
        maps = net.backward(trace, signal.reshape(activations.shape), rule=rule, start=layer)
        peak = np.abs(maps).max(axis=(1, 2, 3), keepdims=True)
        total += np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return total / k


def sensitivity_map(net, x, target=None, reduce="max_abs", output="logit"):
    """The sensitivity map of Eq. 1 reduced over colour channels, (N, H, W).

    ``reduce="max_abs"`` is Simonyan et al.'s ``max_c |df_t/dx_c|``; ``"l2"`` and ``"sum"``
    are the other common choices (:func:`saliency.postprocess.reduce_channels`).
    """
    return reduce_channels(gradient(net, x, target, output), reduce)
