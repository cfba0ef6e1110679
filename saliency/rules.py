"""Backward rules: what a nonlinearity does to the signal on its way back.

Eq. 1 of Ebrahimpour & Noelle, ``s_i = g'(eta_i) * sum_k w_ki s_k``, has a linear half
``sum_k w_ki s_k`` that belongs to the network (:mod:`nets.layers`) and a nonlinear half, the
multiplier ``g'(eta_i)``. Every method in this package is the same recursion with a different
multiplier at the ReLUs (and, for DeepLIFT, at the max pools). A rule is therefore a small
object with two methods; a new rule touches no layer code:

``relu(signal, eta, eta_ref)``
    signal at the ReLU's input, given the signal at its output, the forward input ``eta`` and,
    for reference-based rules, the reference pass's input ``eta_ref``. Arrays share one shape.
``relu6(signal, eta, eta_ref)``
    the same at a ReLU6, ``g(eta) = min(max(eta, 0), 6)`` (MobileNetV2), whose derivative
    ``1[0 < eta < 6]`` has a second kink at 6. Each rule below treats it as it treats the ReLU:
    its gate is the derivative, its secant that of ReLU6.
``max_pool(layer, signal, cache, ref_cache)``
    signal at a max pool's input. The default routes the signal through the switches of the
    forward pass (``layer.route``), which is the gradient of max pooling.

Notation: ``s`` is the signal at the ReLU's output, ``eta`` its input, ``1[.]`` an indicator.
Each ``relu`` below is its equation as a NumPy expression; that is the code that runs on the
default (NumPy) backend. The fast backend (:mod:`nets.backends`) runs a fused one-pass kernel of
the same expression instead, for a method that declares one with ``relu.fused = "kind"`` (or
``relu6.fused``); a subclass that overrides ``relu`` (its method has no mark) and any rule of
your own run their NumPy method on every backend.
"""
import numpy as np


class Rule:
    """Base rule: the nonlinearity of ReLU is left to subclasses; max pools route by switches."""

    name = "rule"

    def relu(self, signal, eta, eta_ref):
        raise NotImplementedError

    def max_pool(self, layer, signal, cache, ref_cache):
        return layer.route(signal, cache)

    def __repr__(self):
        return f"{type(self).__name__}()"


class Gradient(Rule):
    """The chain rule (Eq. 1): ``s_in = g'(eta) * s = 1[eta > 0] * s``.

    This is exactly what ``nets`` does with ``rule=None``; it exists so that the gradient is a
    rule among rules.
    """

    name = "gradient"

    def relu(self, signal, eta, eta_ref):
        return (eta > 0) * signal

    relu.fused = "gradient"

    def relu6(self, signal, eta, eta_ref):
        """``s_in = 1[0 < eta < 6] * s``."""
        return ((eta > 0) & (eta < 6)) * signal

    relu6.fused = "gradient"


class Guided(Rule):
    """Guided backpropagation (Springenberg et al., 2015): ``s_in = 1[eta > 0] * 1[s > 0] * s``.

    A signal passes only where the forward input AND the backward signal are positive, so the
    map keeps what *increases* the score through active units.
    """

    name = "guided"

    def relu(self, signal, eta, eta_ref):
        return (eta > 0) * (signal > 0) * signal

    relu.fused = "guided"

    def relu6(self, signal, eta, eta_ref):
        """``s_in = 1[0 < eta < 6] * 1[s > 0] * s``: the ReLU6's derivative as the forward gate
        (Captum's guided backprop rectifies the gradient at the module's input, which for a
        ReLU6 is this)."""
        return ((eta > 0) & (eta < 6)) * (signal > 0) * signal

    relu6.fused = "guided"


class Deconvnet(Rule):
    """Deconvnet (Zeiler & Fergus, 2014): ``s_in = 1[s > 0] * s``, ignoring the forward input.

    The ReLU is applied to the backward signal as if it were a forward signal; only the max-pool
    switches still tie the map to the image.
    """

    name = "deconvnet"

    def relu(self, signal, eta, eta_ref):
        return (signal > 0) * signal

    relu.fused = "deconvnet"

    def relu6(self, signal, eta, eta_ref):
        """``s_in = 1[s > 0] * s``, as at a ReLU: deconvnet rectifies the backward signal and
        ignores the forward input, so the cap at 6 (a property of ``eta``) plays no part.
        Captum's deconvolution does the same (it rectifies the module's output gradient)."""
        return (signal > 0) * signal

    relu6.fused = "deconvnet"


class Rescale(Rule):
    """DeepLIFT's rescale rule (Shrikumar et al., 2017): the secant instead of the tangent.

    ReLU::

        m = (g(eta) - g(eta_ref)) / (eta - eta_ref)      where |eta - eta_ref| >= eps
        m = g'(eta) = 1[eta > 0]                          otherwise
        s_in = m * s

    With ``eps = 1e-10`` (Captum's threshold), the gradient is used only where the difference
    from the reference vanishes, where the secant is undefined.

    Max pooling, two choices (``max_pool=``):

    ``"gradient"``
        The DeepLIFT paper's choice, the default of its reference implementation
        (``MaxPoolDeepLiftMode.gradient``): route the multiplier through the input pass's
        switches, as the gradient does. Summation-to-delta then holds only where the input and
        the reference pass pick the same winner in every window.
    ``"difference"`` (default)
        The rule Captum's code sets out to apply, which keeps summation-to-delta exact: each
        window's output difference ``y - y_ref`` is sent to the winner of whichever pass has
        the larger maximum (``max(y, y_ref) - y_ref`` to the input pass's winner,
        ``y - max(y, y_ref)`` to the reference pass's winner), and divided by ``x - x_ref``
        there to give the multiplier (the gradient where ``|x - x_ref| < eps``). Where windows
        overlap (3x3 stride 2), a pixel that wins several windows receives the SUM of their
        differences.

    What Captum 0.9 actually computes differs in two ways (``tests/test_saliency_captum.py``
    shows both): its unpooling ASSIGNS instead of adding where windows overlap, and when a
    pool reads the output of an ``nn.ReLU`` module, the order of its backward hooks leaves the
    pool with the plain switch routing, i.e. ``"gradient"`` here. With both repaired in the
    test, Captum equals ``"difference"`` to 1e-14 (float64).

    Both need the reference pass: ``eta_ref`` and ``ref_cache`` must be given.
    """

    name = "deeplift"
    MAX_POOL_MODES = ("difference", "gradient")

    def __init__(self, max_pool="difference", eps=1e-10):
        if max_pool not in self.MAX_POOL_MODES:
            raise ValueError(f"max_pool must be one of {self.MAX_POOL_MODES}, got {max_pool!r}")
        self.max_pool_mode, self.eps = max_pool, eps

    def __repr__(self):
        return f"Rescale(max_pool={self.max_pool_mode!r}, eps={self.eps:g})"

    def _secant(self, numerator, delta_in, fallback):
        usable = np.abs(delta_in) >= self.eps
        return np.where(usable, np.divide(numerator, delta_in, out=np.zeros_like(numerator),
                                          where=usable), fallback)

    def relu(self, signal, eta, eta_ref):
        if eta_ref is None:
            raise ValueError("the rescale rule needs the reference pass (ref_trace)")
        delta_in = eta - eta_ref
        usable = np.abs(delta_in) >= self.eps
        # s * (g(eta) - g(eta_ref)) / (eta - eta_ref), the division only where it is defined
        secant = (signal * (np.maximum(eta, 0) - np.maximum(eta_ref, 0))
                  / np.where(usable, delta_in, 1))
        return np.where(usable, secant, (eta > 0) * signal)

    relu.fused = "rescale"

    def relu6(self, signal, eta, eta_ref):
        """The secant of ReLU6, ``(relu6(eta) - relu6(eta_ref)) / (eta - eta_ref)``, where
        ``|eta - eta_ref| >= eps``; the derivative ``1[0 < eta < 6]`` elsewhere."""
        if eta_ref is None:
            raise ValueError("the rescale rule needs the reference pass (ref_trace)")
        delta_in = eta - eta_ref
        usable = np.abs(delta_in) >= self.eps
        six = eta.dtype.type(6)
        delta_out = (np.minimum(np.maximum(eta, 0), six)
                     - np.minimum(np.maximum(eta_ref, 0), six))
        secant = signal * delta_out / np.where(usable, delta_in, 1)
        return np.where(usable, secant, ((eta > 0) & (eta < 6)) * signal)

    relu6.fused = "rescale"

    def max_pool(self, layer, signal, cache, ref_cache):
        if self.max_pool_mode == "gradient":
            return layer.route(signal, cache)
        if ref_cache is None:
            raise ValueError("the rescale rule needs the reference pass (ref_trace)")
        larger = np.maximum(cache.y, ref_cache.y)
        routed = (layer.route(signal * (larger - ref_cache.y), cache)
                  + layer.route(signal * (cache.y - larger), ref_cache))
        return self._secant(routed, cache.x - ref_cache.x, layer.route(signal, cache))


#: The rules by name, as the command line and the methods accept them.
RULES = {"gradient": Gradient, "guided": Guided, "deconvnet": Deconvnet, "deeplift": Rescale}
