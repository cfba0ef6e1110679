"""What a graded part is made of: randomized cases, the comparisons that judge a result, and the
small random networks of assignments 1, 2 and 4.

Every assignment's module (``_cases_backward``, ``_cases_rules``, ``_cases_boxes``,
``_cases_cam``) builds its :class:`Assignment` from these; :mod:`sensloc.coursework.grade` runs
the parts in the sandbox and compares the results here, in the grader's process.
"""
from dataclasses import dataclass

import numpy as np

from sensloc import nets

from sensloc.coursework import sandbox


class CaseFailure(Exception):
    """A student's result that is wrong, with the reason."""


@dataclass
class Case:
    """One randomized call: ``function(*args)`` should equal ``expected``.

    ``check(got, case)`` returns None when ``got`` is right, else a message; ``diagnose(got,
    case)`` may add a hint about a common mistake.
    """
    label: str
    args: tuple
    expected: object
    check: object = None
    diagnose: object = None


@dataclass
class Part:
    """One graded function of an assignment."""
    function: str
    points: int
    make_cases: object   # rng -> list of Case
    hint: str
    uses: tuple = ()     # the student's functions of earlier parts that this one calls


@dataclass
class Assignment:
    number: int
    key: str
    filename: str
    title: str
    parts: list


# ------------------------------------------------------------------------------------ comparisons

def _fmt(value):
    return f"{value + 0.0:.6g}" if np.isfinite(value) else str(value)


def _as_array(got, what="the result"):
    if got is None:
        raise CaseFailure(f"{what} is None (is a `return` missing?)")
    if isinstance(got, sandbox.Unsupported):
        raise CaseFailure(f"{what} is of type {got.type_name}, not an array of numbers")
    try:
        array = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise CaseFailure(f"{what} is of type {type(got).__name__}, not an array of numbers") from None
    return array


def compare_arrays(got, expected, rtol=1e-6, what="the result"):
    """None if ``got`` matches ``expected``; else raise CaseFailure saying where and how it differs."""
    expected = np.asarray(expected, dtype=np.float64)
    got = _as_array(got, what)
    if got.shape != expected.shape:
        raise CaseFailure(f"{what} has shape {got.shape}, expected {expected.shape}")
    finite = np.isfinite(got)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise CaseFailure(f"{what} contains NaN or infinity ({np.count_nonzero(~finite)} entries, "
                          f"the first at index {index})")
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    tolerance = rtol * np.abs(expected) + 1e-9 * max(scale, 1e-3)
    error = np.abs(got - expected)
    wrong = error > tolerance
    if wrong.any():
        index = np.unravel_index(np.argmax(np.where(wrong, error, -1)), expected.shape)
        where = tuple(int(i) for i in index)
        raise CaseFailure(f"{what} is wrong at {np.count_nonzero(wrong)} of {expected.size} entries; "
                          f"the largest error is at index {where}: yours {_fmt(got[index])}, "
                          f"expected {_fmt(expected[index])}")


def compare_scalar(got, expected, rtol=1e-9, what="the result"):
    if got is None:
        raise CaseFailure(f"{what} is None (is a `return` missing?)")
    try:
        value = float(np.asarray(got, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        shape = f" of shape {np.shape(got)}" if hasattr(got, "shape") else ""
        raise CaseFailure(f"{what} should be one number, got type {type(got).__name__}{shape}") from None
    if not np.isfinite(value):
        raise CaseFailure(f"{what} is {value}")
    if abs(value - expected) > rtol * abs(expected) + 1e-12:
        raise CaseFailure(f"{what} is {_fmt(value)}, expected {_fmt(expected)}")


def close_to(got, alternative, rtol=1e-6):
    """Does ``got`` match an alternative (a typical mistake)?"""
    try:
        got = np.asarray(got, dtype=np.float64)
        alternative = np.asarray(alternative, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return got.shape == alternative.shape and bool(np.all(np.isfinite(got))) and np.allclose(
        got, alternative, rtol=rtol, atol=1e-9 * max(float(np.abs(alternative).max(initial=0)), 1e-3))


def default_check(got, case):
    compare_arrays(got, case.expected)


# ------------------------------------------------------------------------------------ networks

def random_network(kind, rng):
    """A small random float64 network (conv, ReLU, max pool, ...) and its input size."""
    if kind == "flatten":
        layers = [nets.Conv2d("conv1", 3, 4, 3, padding=1), nets.ReLU("relu1"), nets.MaxPool2d("pool1", 2, 2),
                  nets.Conv2d("conv2", 4, 6, 3, stride=2, padding=1), nets.ReLU("relu2"),
                  nets.Flatten("flatten"), nets.Linear("fc", 6 * 2 * 2, 5)]
        net = nets.Network("graded_flatten", layers, 3, (8, 8), (8, 8), 5)
        shape = (3, 8, 8)
    elif kind == "gap":
        layers = [nets.Conv2d("conv1", 2, 5, 3), nets.ReLU("relu1"), nets.MaxPool2d("pool1", 3, 2),
                  nets.Conv2d("conv2", 5, 4, 1), nets.ReLU("relu2"), nets.GlobalAvgPool2d("gap"),
                  nets.Linear("fc", 4, 3)]
        net = nets.Network("graded_gap", layers, 2, None, (11, 11), 3)
        shape = (2, 11, 11)
    elif kind == "no_pool":
        layers = [nets.Conv2d("conv1", 3, 4, 3, padding=1), nets.ReLU("relu1"),
                  nets.Conv2d("conv2", 4, 5, 3, stride=2), nets.ReLU("relu2"), nets.GlobalAvgPool2d("gap"),
                  nets.Linear("fc1", 5, 6), nets.ReLU("relu3"), nets.Linear("fc2", 6, 3)]
        net = nets.Network("graded_no_pool", layers, 3, None, (9, 9), 3)
        shape = (3, 9, 9)
    else:
        raise ValueError(kind)
    net.astype(np.float64)
    params = {}
    for name, arrays in net.parameters().items():
        w = arrays["weight"]
        fan_in = int(np.prod(w.shape[1:]))
        params[name] = {"weight": rng.normal(0, np.sqrt(2.0 / fan_in), w.shape),
                        "bias": rng.normal(0, 0.1, arrays["bias"].shape)}
    return net.load_parameters(params), shape


def network_cases(rng, kinds, reference, with_reference_input=False):
    cases = []
    for number, kind in enumerate(kinds, start=1):
        net, shape = random_network(kind, rng)
        n = 2
        x = rng.normal(size=(n,) + shape)
        target = rng.integers(0, net.num_classes, n)
        label = (f"network {number} ({' -> '.join(type(layer).__name__ for layer in net.layers)}), "
                 f"input {(n,) + shape}")
        if with_reference_input:
            for ref_label, x_ref in (("random reference", rng.normal(size=x.shape)),
                                     ("zero reference", np.zeros_like(x))):
                expected = reference(net, x, target, x_ref)
                cases.append(Case(f"{label}, {ref_label}", (net, x, x_ref, target), expected))
        else:
            cases.append(Case(label, (net, x, target), reference(net, x, target)))
    return cases
