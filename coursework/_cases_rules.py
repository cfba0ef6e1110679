"""Assignment 2's cases: the guided, deconvnet and DeepLIFT rescale rules, and guided backprop and
DeepLIFT built from them (references: :mod:`sensloc.saliency.rules`,
:mod:`sensloc.saliency.methods`).
"""
import numpy as np

from sensloc import saliency

from sensloc.coursework._checks import Assignment, Case, Part, close_to, network_cases


def _sign_cases(rng, reference):
    cases = []
    for label, shape in (("2-D (5, 6)", (5, 6)), ("4-D (2, 3, 4, 4)", (2, 3, 4, 4)),
                         ("4-D (1, 4, 3, 5), some zeros", (1, 4, 3, 5))):
        signal, eta = rng.normal(size=shape), rng.normal(size=shape)
        if "zeros" in label:
            signal.flat[rng.choice(signal.size, signal.size // 4, replace=False)] = 0.0
            eta.flat[rng.choice(eta.size, eta.size // 4, replace=False)] = 0.0
        cases.append(Case(label, (signal, eta), reference(signal, eta)))
    return cases


def _guided_cases(rng):
    cases = _sign_cases(rng, lambda s, eta: saliency.Guided().relu(s, eta, None))
    for case in cases:
        signal, eta = case.args

        def diagnose(got, case, signal=signal, eta=eta):
            if close_to(got, signal * (eta > 0)):
                return "That is the gradient's rule: guided backprop also drops negative signals, 1[s > 0]"
            if close_to(got, np.maximum(signal, 0)):
                return "That is deconvnet's rule: guided backprop also needs an active unit, 1[eta > 0]"
        case.diagnose = diagnose
    return cases


def _deconvnet_cases(rng):
    cases = _sign_cases(rng, lambda s, eta: saliency.Deconvnet().relu(s, eta, None))
    for case in cases:
        signal, eta = case.args

        def diagnose(got, case, signal=signal, eta=eta):
            if close_to(got, np.where((eta > 0) & (signal > 0), signal, 0)):
                return "That is guided backprop: deconvnet ignores the forward input eta"
        case.diagnose = diagnose
    return cases


def _rescale_cases(rng):
    cases = []
    shapes = (("random (4, 5)", (4, 5)), ("4-D (2, 2, 3, 3)", (2, 2, 3, 3)),
              ("eta == eta_ref at some entries", (3, 6)), ("|eta - eta_ref| < eps at some entries", (3, 6)),
              ("input and reference both active everywhere", (2, 4)))
    for label, shape in shapes:
        signal, eta, eta_ref = (rng.normal(size=shape) for _ in range(3))
        if label.startswith("eta =="):
            same = rng.choice(eta.size, eta.size // 2, replace=False)
            eta_ref.flat[same] = eta.flat[same]
        elif label.startswith("|eta"):
            close = rng.choice(eta.size, eta.size // 2, replace=False)
            eta_ref.flat[close] = eta.flat[close] + 1e-12
        elif "active" in label:
            eta, eta_ref = np.abs(eta) + 0.1, np.abs(eta_ref) + 0.1
        expected = saliency.Rescale().relu(signal, eta, eta_ref)

        def diagnose(got, case, signal=signal, eta=eta, eta_ref=eta_ref):
            got_array = np.asarray(got, dtype=np.float64) if got is not None else None
            if got_array is not None and got_array.shape == eta.shape and not np.all(np.isfinite(got_array)):
                return ("Where |eta - eta_ref| < eps the secant 0/0 is undefined: use the gradient "
                        "1[eta > 0] there (np.where, and divide only where it is safe)")
            if close_to(got, signal * (eta > 0)):
                return "That is the tangent g'(eta); the rescale rule uses the secant between eta_ref and eta"
        cases.append(Case(label, (signal, eta, eta_ref), expected, diagnose=diagnose))
    return cases


def _guided_backprop_cases(rng):
    return network_cases(rng, ("flatten", "gap"), lambda net, x, t: saliency.guided_backprop(net, x, t))


def _deeplift_cases(rng):
    # No max pools: there the rescale rule has several variants (see saliency.rules.Rescale).
    cases = network_cases(rng, ("no_pool", "no_pool"),
                           lambda net, x, t, x_ref: saliency.deeplift(net, x, t, reference=x_ref),
                           with_reference_input=True)
    for case in cases:
        net, x, x_ref, target = case.args

        def diagnose(got, case, net=net, x=x, x_ref=x_ref, target=target):
            expected = case.expected
            difference = x - x_ref
            multipliers = np.divide(expected, difference, out=np.zeros_like(expected), where=difference != 0)
            if close_to(got, multipliers):
                return "These look like the multipliers m: the contributions are C = (x - x_ref) * m"
            try:
                total = np.asarray(got, dtype=np.float64).reshape(len(x), -1).sum(axis=1)
            except (TypeError, ValueError):
                return None
            rows = np.arange(len(x))
            delta = net(x)[rows, target] - net(x_ref)[rows, target]
            return (f"Summation-to-delta: your contributions sum to {np.round(total, 4).tolist()}, "
                    f"f_t(x) - f_t(x_ref) = {np.round(delta, 4).tolist()}")
        case.diagnose = diagnose
    return cases


ASSIGNMENT_2 = Assignment(2, "rules", "2_rules.py",
                          "the guided, deconvnet and DeepLIFT rescale rules in the recursion", [
    Part("guided_relu", 2, _guided_cases, "s_in = 1[eta > 0] * 1[s > 0] * s"),
    Part("deconvnet_relu", 2, _deconvnet_cases, "s_in = 1[s > 0] * s, whatever eta"),
    Part("rescale_relu", 4, _rescale_cases,
         "m = (max(eta, 0) - max(eta_ref, 0)) / (eta - eta_ref) where |eta - eta_ref| >= eps, "
         "else 1[eta > 0]; return m * signal"),
    Part("guided_backprop", 3, _guided_backprop_cases,
         "logits, caches = forward(net, x); signal = one-hot rows (N, K) of the targets; "
         "return backward(net, caches, signal, GuidedRule())", uses=("guided_relu",)),
    Part("deeplift", 4, _deeplift_cases,
         "caches, ref_caches = forward(net, x)[1], forward(net, x_ref)[1]; m = backward(net, caches, "
         "one_hot, RescaleRule(), ref_caches); return (x - x_ref) * m", uses=("rescale_relu",)),
])
