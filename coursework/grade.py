"""Grading the coursework of ``sensloc/coursework/assignments`` against the library's own implementation.

    sensloc grade ASSIGNMENT [FILE | FOLDER] [--seed S] [--no-hints] [--out PREFIX]
    python -m sensloc.coursework.grade ASSIGNMENT [FILE | FOLDER] [--seed S] [--no-hints]

``ASSIGNMENT`` is ``1`` to ``4`` (or ``backward``, ``rules``, ``boxes``, ``cam``):

1. ``1_backward_recursion.py``: Eq. 1, ``s_i = g'(eta_i) * sum_k w_ki s_k``, for fully connected,
   ReLU, convolution and max-pool layers, then through a whole network (reference: :mod:`nets`,
   :func:`saliency.gradient`);
2. ``2_rules.py``: the guided, deconvnet and DeepLIFT rescale rules, and guided backpropagation
   and DeepLIFT built from them (reference: :mod:`saliency.rules`, :mod:`saliency.methods`);
3. ``3_box_regression.py``: IoU, CorLoc, grid features, closed-form ridge regression, box
   prediction and cross-validation (reference: :mod:`sensloc.localize.boxes`, :mod:`sensloc.localize.metrics`,
   :mod:`sensloc.localize.regression`);
4. ``4_cam_and_khan.py``: Grad-CAM from activations and gradients, and Khan et al.'s recipe
   (border mask, one map's recipe, union box, two maps mixed by their geometric mean)
   (reference: :func:`saliency.grad_cam`, :mod:`saliency.postprocess`,
   :func:`sensloc.localize.protocols.khan_heat`, :func:`sensloc.localize.boxes.boxes_from_heatmap`).

``FILE`` is the student's module (by default the skeleton in ``sensloc/coursework/assignments``).
It is never imported into the grading process: every part runs in its own child process
(:mod:`sensloc.coursework.sandbox`: ``python -I``, memory, CPU and wall-clock limits) that cannot
import or read the library, start processes or write outside a temporary folder. The cases go
to the child as plain data (networks as lists of layer dicts, :func:`plain_network`) and the
results come back as plain data (``.npz``, never unpickled); the expected values are computed
and compared here, out of the submission's reach. A submission that tries to use the library
scores 0 for the parts affected, with the reason.

Every function is called on randomized cases (seeded by ``--seed``, else ``$SENSLOC_GRADE_SEED``,
else 0: a teacher's secret seed gives hidden cases). A part scores ``points * (cases passed) /
(cases)``; every failed case is reported with what was wrong (shape, values and where, an
exception and the line of the student's file that raised it) and, unless ``--no-hints``, a hint.
A ``FOLDER`` grades every ``*.py`` in it and writes a CSV and a JSON of per-part scores.

Exit status: 0 for full marks (every file), 1 otherwise, 2 when ``FILE`` cannot be found.

Why this file is long (~1,250 lines): the grading machinery (~450 lines) and the randomized
cases of the four assignments (one section each, ~650 lines). The cases build their expected
values with the comparison functions of this module, which a tampering submission targets by
name; one module keeps what the sandbox protects in one place.
"""
import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sensloc import nets
from sensloc import saliency
from sensloc.nets import reference

from sensloc.localize import boxes as box_lib
from sensloc.localize import metrics as metric_lib
from sensloc.localize import regression as regression_lib

from sensloc.coursework import sandbox

#: The assignment skeletons, shipped with the package.
SKELETONS = Path(__file__).resolve().parent / "assignments"
#: How many failed cases are described per part (the rest are counted).
SHOWN_FAILURES = 3


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


@dataclass
class PartResult:
    number: int
    function: str
    points: int
    passed: int
    total: int
    messages: list = field(default_factory=list)
    hint: str = ""

    @property
    def score(self):
        return self.points * self.passed / self.total if self.total else 0.0

    @property
    def ok(self):
        return self.total > 0 and self.passed == self.total


@dataclass
class Report:
    """The result of grading one file."""
    assignment: Assignment
    path: Path
    seed: int
    parts: list
    error: str = None

    @property
    def score(self):
        return sum(p.score for p in self.parts)

    @property
    def max_score(self):
        return sum(p.points for p in self.assignment.parts)

    @property
    def full_marks(self):
        return self.error is None and all(p.ok for p in self.parts)

    def format(self):
        """The report as text, one block per part."""
        a = self.assignment
        lines = [f"Assignment {a.number}: {a.title}", f"file: {self.path}   seed: {self.seed}", ""]
        if self.error:
            lines += [f"  ERROR {self.error}", ""]
        width = max(len(p.function) for p in a.parts)
        for result in self.parts:
            status = "PASS" if result.ok else "FAIL"
            lines.append(f"  part {result.number}  {result.function:<{width}}  {result.score:4.1f} / "
                         f"{result.points}  {status}  ({result.passed}/{result.total} cases)")
            for message in result.messages:
                lines.append(f"          - {message}")
            if not result.ok and result.hint:
                lines.append(f"          hint: {result.hint}")
        lines += ["", f"score: {self.score:.1f} / {self.max_score}"
                  + ("   full marks!" if self.full_marks else "")]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ helpers

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


def _close(got, alternative, rtol=1e-6):
    """Does ``got`` match an alternative (a typical mistake)?"""
    try:
        got = np.asarray(got, dtype=np.float64)
        alternative = np.asarray(alternative, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return got.shape == alternative.shape and bool(np.all(np.isfinite(got))) and np.allclose(
        got, alternative, rtol=rtol, atol=1e-9 * max(float(np.abs(alternative).max(initial=0)), 1e-3))


def _plain(value):
    """``value`` as plain data for the sandbox: a network becomes a list of layer dicts."""
    if isinstance(value, nets.Network):
        return plain_network(value)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def plain_network(net):
    """A network as the plain data the assignments take: a list of one dict per layer.

    Every dict has ``"type"`` (the layer's class name) and ``"name"``; ``Linear`` and ``Conv2d``
    add ``"weight"`` and ``"bias"`` (arrays), ``Conv2d`` ``"stride"`` and ``"padding"``,
    ``MaxPool2d`` ``"kernel_size"`` and ``"stride"``. ``ReLU``, ``Flatten`` and
    ``GlobalAvgPool2d`` have nothing more.
    """
    layers = []
    for layer in net.layers:
        kind = type(layer).__name__
        entry = {"type": kind, "name": layer.name}
        if kind in ("Linear", "Conv2d"):
            entry.update(weight=np.array(layer.weight), bias=np.array(layer.bias))
        if kind == "Conv2d":
            entry.update(stride=int(layer.stride), padding=int(layer.padding))
        elif kind == "MaxPool2d":
            if layer.padding or layer.ceil_mode:
                raise ValueError("graded max pools have no padding and floor rounding")
            entry.update(kernel_size=int(layer.kernel_size), stride=int(layer.stride))
        elif kind not in ("Linear", "ReLU", "Flatten", "GlobalAvgPool2d"):
            raise ValueError(f"layer type {kind} cannot be sent to a submission")
        layers.append(entry)
    return layers


@dataclass
class Limits:
    """What one part of a submission may use: address space, CPU time and wall-clock time."""
    memory_bytes: int = 2 << 30
    cpu_seconds: int = 60
    wall_seconds: float = 120.0
    output_bytes: int = 64 << 20   # the largest file the child may write (results, prints)


def _library_dirs():
    """The library's folder: a submission may neither import from it nor read it.

    For an editable install this is the repository (with ``tests/answer_keys``); for a wheel,
    the installed package.
    """
    import sensloc
    return [str(Path(sensloc.__file__).resolve().parent)]


def _checked_results(results):
    """The child's results if they have the shape :func:`sandbox.child` writes, else ValueError.

    The child runs the submission, which may have replaced what the child writes: nothing in it
    is trusted beyond plain data of the expected shape.
    """
    def texts(value):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    def error(value):
        return isinstance(value, dict) and set(value) == {"type", "message", "where"} and texts(list(value.values()))

    ok = (isinstance(results, dict)
          and set(results) == {"violations", "import_violations", "import_error", "missing", "cases"}
          and texts(results["violations"]) and texts(results["import_violations"])
          and (results["import_error"] is None or error(results["import_error"]))
          and isinstance(results["missing"], bool) and isinstance(results["cases"], list))
    for case in results["cases"] if ok else ():
        ok = ok and isinstance(case, dict) and len(case) == 1 and (
            "result" in case or error(case.get("error")) or isinstance(case.get("not_implemented"), str))
    if not ok:
        raise ValueError("not the shape the grader writes")
    return results


def run_sandboxed(source, function, args_list, limits=None):
    """Call ``function`` of the submission ``source`` on every argument tuple, in a separate process.

    Returns ``(results, failure)``: ``results`` is the plain data the child wrote (see
    :func:`sensloc.coursework.sandbox.child`), or None with ``failure`` saying why there is none
    (timeout, memory or CPU limit, a crash).
    """
    limits = limits or Limits()
    with tempfile.TemporaryDirectory(prefix="sensloc-grade-") as folder:
        folder = Path(folder)
        (folder / sandbox.SUBMISSION).write_text(source, encoding="utf-8")
        rlimits = {"RLIMIT_AS": limits.memory_bytes, "RLIMIT_CPU": limits.cpu_seconds,
                   "RLIMIT_FSIZE": limits.output_bytes, "RLIMIT_CORE": 0}
        sandbox.write_bundle(folder / sandbox.CASES, {"function": function, "cases": list(args_list),
                                                      "library_dirs": _library_dirs(), "limits": rlimits})
        env = {"PATH": os.defpath, "HOME": str(folder), "TMPDIR": str(folder), "LC_ALL": "C.UTF-8",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(folder / "output.txt", "wb") as output:
            child = subprocess.Popen([sys.executable, "-I", str(Path(sandbox.__file__).resolve()), str(folder)],
                                     cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            try:
                child.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                when = "" if (folder / sandbox.IMPORTED).exists() else " while being imported"
                return None, f"took longer than {limits.wall_seconds:g} s (wall clock){when}: stopped"
        if (folder / sandbox.RESULTS).is_file():
            try:
                return _checked_results(sandbox.read_bundle(folder / sandbox.RESULTS)), None
            except Exception as error:  # a damaged or forged file: no results
                return None, f"left results that could not be read ({type(error).__name__}: {error})"
        if child.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            when = "" if (folder / sandbox.IMPORTED).exists() else " while being imported"
            return None, f"went over the limit of {limits.cpu_seconds} s of CPU time{when}: stopped"
        tail = (folder / "output.txt").read_bytes()[-600:].decode("utf-8", "replace").strip()
        if "MemoryError" in tail:
            return None, f"went over the memory limit of {limits.memory_bytes >> 20} MiB"
        return None, f"the process ended without results (exit status {child.returncode}): {tail[-300:]}"


def run_part(number, part, source, path, rng, hints=True, limits=None):
    """Grade one function: run every case in the sandbox, compare here, describe the failures."""
    cases = part.make_cases(rng)
    result = PartResult(number, part.function, part.points, 0, len(cases), hint=part.hint if hints else "")
    results, failure = run_sandboxed(source, part.function, [_plain(c.args) for c in cases], limits)
    if results is None:
        result.messages.append(f"scored 0: your file {failure}")
        return result, ("limit" if "while being imported" in failure else None)
    if results["violations"]:
        what = "; ".join(dict.fromkeys(results["violations"]))
        result.messages.append(f"scored 0: your file {what}. Submissions may use NumPy and the standard "
                               "library only; the grader runs them apart from the library.")
        result.hint = ""
        return result, ("violation" if results["import_error"] or results["import_violations"] else None)
    if results["import_error"]:
        error = results["import_error"]
        message = f"could not import {path.name}: {error['type']}: {error['message']}{error['where']}"
        result.messages.append(message)
        return result, message
    if results["missing"]:
        result.messages.append(f"{path.name} has no function `{part.function}` (keep the names of the skeleton)")
        return result, None
    failures = []
    for case, outcome in zip(cases, results["cases"]):
        if "not_implemented" in outcome:
            result.messages = [f"not implemented yet ({outcome['not_implemented']}): replace the "
                               "`raise NotImplementedError` by your code"]
            result.hint = ""
            return result, None
        if "error" in outcome:
            error = outcome["error"]
            failures.append(f"case {case.label}: raised {error['type']}: {error['message']}{error['where']}")
            continue
        got = outcome["result"]
        try:
            (case.check or _default_check)(got, case)
        except CaseFailure as failure:
            message = f"case {case.label}: {failure}"
            hint = _diagnose(case, got) if hints else None
            failures.append(f"{message}. {hint}" if hint else message)
        except Exception as error:  # a result so odd that it cannot even be compared
            failures.append(f"case {case.label}: the result ({type(got).__name__}) cannot be compared "
                            f"with the expected one ({type(error).__name__}: {error})")
        else:
            result.passed += 1
    if len(failures) > SHOWN_FAILURES:
        failures = failures[:SHOWN_FAILURES] + [f"... and {len(failures) - SHOWN_FAILURES} more failed case(s)"]
    result.messages = failures
    return result, None


def _diagnose(case, got):
    """The hint of a case's diagnosis, or None (a diagnosis never breaks the grading)."""
    if case.diagnose is None:
        return None
    try:
        with np.errstate(all="ignore"):
            return case.diagnose(got, case)
    except Exception:
        return None


def _default_check(got, case):
    compare_arrays(got, case.expected)


# ------------------------------------------------------------------------------------ networks

def _network(kind, rng):
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


def _network_cases(rng, kinds, reference, with_reference_input=False):
    cases = []
    for number, kind in enumerate(kinds, start=1):
        net, shape = _network(kind, rng)
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


# ------------------------------------------------------------------------------------ assignment 1

def _linear_cases(rng):
    cases = []
    for n, d_out, d_in in ((2, 5, 3), (3, 4, 4), (1, 7, 2)):
        signal, weight = rng.normal(size=(n, d_out)), rng.normal(size=(d_out, d_in))
        layer = nets.Linear("fc", d_in, d_out)
        layer.weight = weight
        expected = layer.backward(signal, None)

        def diagnose(got, case, signal=signal, weight=weight):
            if weight.shape[0] == weight.shape[1] and _close(got, signal @ weight.T):
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
            if _close(got, signal * (eta >= 0)):
                return "At eta == 0 take g'(0) = 0: the indicator is 1[eta > 0], not 1[eta >= 0]"
            if _close(got, np.maximum(signal, 0)):
                return "That is deconvnet's rule; the gradient looks at the sign of eta, not of the signal"
            if _close(got, signal * np.maximum(eta, 0)):
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
    return _network_cases(rng, ("flatten", "gap"), lambda net, x, t: saliency.gradient(net, x, t))


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


# ------------------------------------------------------------------------------------ assignment 2

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
            if _close(got, signal * (eta > 0)):
                return "That is the gradient's rule: guided backprop also drops negative signals, 1[s > 0]"
            if _close(got, np.maximum(signal, 0)):
                return "That is deconvnet's rule: guided backprop also needs an active unit, 1[eta > 0]"
        case.diagnose = diagnose
    return cases


def _deconvnet_cases(rng):
    cases = _sign_cases(rng, lambda s, eta: saliency.Deconvnet().relu(s, eta, None))
    for case in cases:
        signal, eta = case.args

        def diagnose(got, case, signal=signal, eta=eta):
            if _close(got, np.where((eta > 0) & (signal > 0), signal, 0)):
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
            if _close(got, signal * (eta > 0)):
                return "That is the tangent g'(eta); the rescale rule uses the secant between eta_ref and eta"
        cases.append(Case(label, (signal, eta, eta_ref), expected, diagnose=diagnose))
    return cases


def _guided_backprop_cases(rng):
    return _network_cases(rng, ("flatten", "gap"), lambda net, x, t: saliency.guided_backprop(net, x, t))


def _deeplift_cases(rng):
    # No max pools: there the rescale rule has several variants (see saliency.rules.Rescale).
    cases = _network_cases(rng, ("no_pool", "no_pool"),
                           lambda net, x, t, x_ref: saliency.deeplift(net, x, t, reference=x_ref),
                           with_reference_input=True)
    for case in cases:
        net, x, x_ref, target = case.args

        def diagnose(got, case, net=net, x=x, x_ref=x_ref, target=target):
            expected = case.expected
            difference = x - x_ref
            multipliers = np.divide(expected, difference, out=np.zeros_like(expected), where=difference != 0)
            if _close(got, multipliers):
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


# ------------------------------------------------------------------------------------ assignment 3

def _iou_plus_one(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    area = lambda q: (q[2] - q[0] + 1) * (q[3] - q[1] + 1)
    return inter / (area(a) + area(b) - inter)


def _random_box(rng, size=100.0):
    x = np.sort(rng.uniform(0, size, 2))
    y = np.sort(rng.uniform(0, size, 2))
    return np.array([x[0], y[0], x[1], y[1]])


def _iou_cases(rng):
    a = _random_box(rng)
    pairs = [("overlapping", a, a + np.array([5.0, 3.0, 5.0, 3.0])),
             ("random", _random_box(rng), _random_box(rng)),
             ("disjoint", np.array([0.0, 0, 10, 10]), np.array([20.0, 20, 30, 35])),
              ("nested", np.array([0.0, 0, 50, 40]), np.array([10.0, 5, 20, 25])),
              ("touching along an edge (IoU 0)", np.array([0.0, 0, 10, 10]), np.array([10.0, 0, 20, 10])),
              ("identical", a, a.copy()),
              ("both degenerate (zero area)", np.array([5.0, 5, 5, 9]), np.array([5.0, 5, 5, 9])),
              ("fractional coordinates", np.array([0.5, 0.25, 2.5, 3.75]), np.array([1.5, 1.25, 4.0, 2.0]))]
    cases = []
    for label, box_a, box_b in pairs:
        expected = box_lib.iou(box_a, box_b)

        def check(got, case):
            compare_scalar(got, case.expected)

        def diagnose(got, case, box_a=box_a, box_b=box_b):
            try:
                if abs(float(got) - _iou_plus_one(box_a, box_b)) < 1e-9:
                    return ("You used the '+1' pixel convention; here boxes are continuous: "
                            "area = (xmax - xmin) * (ymax - ymin)")
            except (TypeError, ValueError, ZeroDivisionError):
                return None
        cases.append(Case(f"{label}: {box_a.round(2).tolist()} and {box_b.round(2).tolist()}",
                          (box_a, box_b), expected, check, diagnose))
    return cases


def _corloc_cases(rng):
    cases = []
    for label, n, threshold in (("10 images, 1-3 boxes each", 10, 0.5), ("12 images, threshold 0.3", 12, 0.3),
                                ("8 images, threshold 0.7", 8, 0.7)):
        gt = [np.stack([_random_box(rng) for _ in range(rng.integers(1, 4))]) for _ in range(n)]
        # predictions near one of the image's boxes, so that some hit and some miss
        pred = np.stack([g[rng.integers(len(g))] + rng.normal(0, 8, 4) for g in gt])
        pred = np.column_stack([np.minimum(pred[:, 0], pred[:, 2]), np.minimum(pred[:, 1], pred[:, 3]),
                                np.maximum(pred[:, 0], pred[:, 2]), np.maximum(pred[:, 1], pred[:, 3])])
        cases.append((label, pred, gt, threshold))
    # exact IoU 0.5 with the second box only
    cases.append(("IoU exactly 0.5 with the second of two boxes", np.array([[0.0, 0, 1, 1], [0, 0, 4, 4]]),
                  [np.array([[5.0, 5, 6, 6], [0, 0, 2, 1]]), np.array([[0.0, 0, 4, 4]])], 0.5))
    result = []
    for label, pred, gt, threshold in cases:
        expected = metric_lib.corloc(pred, gt, threshold)

        def check(got, case):
            compare_scalar(got, case.expected)

        def diagnose(got, case, pred=pred, gt=gt, threshold=threshold):
            try:
                value = float(got)
            except (TypeError, ValueError):
                return None
            first_only = np.mean([box_lib.iou(p, g[0]) >= threshold for p, g in zip(pred, gt)])
            strict = np.mean([box_lib.iou(p, g).max() > threshold for p, g in zip(pred, gt)])
            if abs(value - first_only) < 1e-12:
                return "Any ground-truth box of the image may match: take the max IoU over all of them"
            if abs(value - strict) < 1e-12:
                return "A hit is IoU >= threshold (inclusive), not >"
        result.append(Case(label, (pred, gt, threshold), expected, check, diagnose))
    return result


def _grid_cases(rng):
    cases = []
    for label, shape, n in (("3 maps 16x16, 4x4 grid", (3, 16, 16), 4), ("2 maps 12x18, 3x3 grid", (2, 12, 18), 3),
                            ("2 maps 12x18, 6x6 grid", (2, 12, 18), 6), ("2 maps 8x8, 1x1 grid", (2, 8, 8), 1),
                            ("3 maps 10x10 (one all zero), 5x5 grid", (3, 10, 10), 5)):
        maps = rng.random(shape) * (rng.random(shape) < 0.6)
        if "all zero" in label:
            maps[1] = 0.0
        expected = regression_lib.grid_features(maps, n)
        h, w = shape[1] // n, shape[2] // n
        means = maps.reshape(shape[0], n, h, n, w).mean(axis=(2, 4))

        def diagnose(got, case, means=means, n=n):
            if _close(got, means.reshape(len(means), -1)):
                return "These are the cell means g; normalize each map's features to sum 1, x = g / sum(g)"
            totals = means.reshape(len(means), -1).sum(axis=1, keepdims=True)
            normalized = np.where(totals > 0, means.reshape(len(means), -1) / np.where(totals > 0, totals, 1), 0)
            if _close(got, normalized.reshape(-1, n, n).transpose(0, 2, 1).reshape(len(means), -1)):
                return "The order is row-major over the grid: cell row first, then cell column"
        cases.append(Case(label, (maps, n), expected, diagnose=diagnose))
    return cases


def _ridge_cases(rng):
    cases = []
    for label, (n, d, t), lam in (("30 images, 5 features, lam 0.1", (30, 5, 4), 0.1),
                                  ("30 images, 5 features, lam 10", (30, 5, 4), 10.0),
                                  ("8 images, 12 features (more features than images), lam 1", (8, 12, 4), 1.0),
                                  ("20 images, 3 features, 2 targets, lam 0.5", (20, 3, 2), 0.5)):
        X = rng.normal(size=(n, d))
        Y = X @ rng.normal(size=(d, t)) + rng.normal(0, 0.1, (n, t)) + 0.5
        expected = regression_lib.fit_ridge(X, Y, lam)

        def diagnose(got, case, X=X, Y=Y, lam=lam):
            X1 = np.hstack([X, np.ones((len(X), 1))])
            everything = np.linalg.solve(X1.T @ X1 + lam * np.eye(X1.shape[1]), X1.T @ Y)
            if _close(got, everything):
                return "Do not penalize the bias: I' has a 0 in the bias position"
            if _close(got, np.roll(case.expected, 1, axis=0)):
                return "Put the bias in the LAST row: X1 = [X, 1] appends the column of ones"
            shape = np.shape(got) if got is not None else None
            if shape == (X.shape[1], Y.shape[1]):
                return "The weights need one more row, the bias: fit [X, 1], not X"
        cases.append(Case(label, (X, Y, lam), expected, diagnose=diagnose))
    return cases


def _predict_cases(rng):
    cases = []
    for label, (n, d), spread in (("inside the image", (6, 4), 0.05),
                                  ("outside [0, 1] and swapped corners", (10, 3), 1.5), ("one image", (1, 5), 1.0)):
        X = rng.random((n, d))
        W = rng.normal(0, spread, (d + 1, 4))
        W[-1] += np.array([0.2, 0.2, 0.8, 0.8])
        expected = regression_lib.predict(W, X)
        raw = np.hstack([X, np.ones((n, 1))]) @ W

        def diagnose(got, case, raw=raw):
            clipped = np.clip(raw, 0, 1)
            if _close(got, clipped):
                return ("Clipped, but the corners are not put in order: xmin = min(x0, x2), "
                        "xmax = max(x0, x2) (same for y)")
            ordered = np.column_stack([np.minimum(raw[:, 0], raw[:, 2]), np.minimum(raw[:, 1], raw[:, 3]),
                                       np.maximum(raw[:, 0], raw[:, 2]), np.maximum(raw[:, 1], raw[:, 3])])
            if _close(got, ordered):
                return "Ordered, but not clipped to [0, 1]"
            if _close(got, raw):
                return "Clip to [0, 1] and order the corners"
        cases.append(Case(label, (W, X), expected, diagnose=diagnose))
    return cases


def _choose_lambda_cases(rng):
    cases = []
    lambdas = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    for label, n, d, k, seed in (("40 images, 6 features, 5 folds, seed 0", 40, 6, 5, 0),
                                 ("30 images, 10 features, 4 folds, seed 3", 30, 10, 4, 3),
                                 ("23 images, 4 features, 3 folds, seed 7", 23, 4, 3, 7)):
        X = rng.random((n, d))
        Y = np.clip(X @ rng.normal(0, 0.3, (d, 4)) + rng.normal(0, 0.1, (n, 4)) + 0.4, 0, 1)
        expected = regression_lib.choose_lambda_cv(X, Y, lambdas, k, seed, score="mse")

        def check(got, case):
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise CaseFailure(f"return a pair (best_lambda, scores), got {type(got).__name__}")
            best, scores = got
            compare_arrays(scores, case.expected[1], what="scores")
            compare_scalar(best, case.expected[0], what="best_lambda")

        def diagnose(got, case, n=n):
            try:
                scores = np.asarray(got[1], dtype=np.float64)
            except (TypeError, ValueError, IndexError):
                return None
            if _close(scores, case.expected[1] * 4):
                return "Divide the total squared error by Y.size (images x 4 corners), not by the number of images"
            return ("Check the folds: order = np.random.default_rng(seed).permutation(len(X)); folds = [order[i::k] for i in range(k)]; "
                    "fit on all other folds with your fit_ridge, predict with your predict_boxes")
        cases.append(Case(label, (X, Y, lambdas, k, seed), expected, check, diagnose))
    return cases


ASSIGNMENT_3 = Assignment(3, "boxes", "3_box_regression.py",
                          "IoU, CorLoc and least-squares box regression", [
    Part("iou", 2, _iou_cases, "I = max(0, min(xmax) - max(xmin)) * max(0, min(ymax) - max(ymin)); "
                               "IoU = I / (area A + area B - I), 0 when the union is 0"),
    Part("corloc", 2, _corloc_cases,
         "hit_n = [max_k IoU(pred_n, gt_n[k]) >= threshold]; CorLoc = mean of the hits",
         uses=("iou",)),
    Part("grid_features", 3, _grid_cases,
         "g = maps.reshape(N, n, H // n, n, W // n).mean(axis=(2, 4)); x = g / sum(g) per map "
         "(0 for an all-zero map)"),
    Part("fit_ridge", 3, _ridge_cases,
         "X1 = [X, 1]; W = solve(X1^T X1 + lam I', X1^T Y), I' = identity with 0 for the bias"),
    Part("predict_boxes", 2, _predict_cases, "raw = [X, 1] W; clip to [0, 1]; then order each corner pair"),
    Part("choose_lambda", 3, _choose_lambda_cases,
         "for each lam: for each held-out fold, fit on the others, predict it, add the squared errors; "
         "score = total / Y.size; best = argmin", uses=("fit_ridge", "predict_boxes")),
])


# ------------------------------------------------------------------------------------ assignment 4

def _khan_reference():
    """The library's Khan et al. recipe (imported here only: assignment 4's references)."""
    from sensloc.localize.protocols import khan_heat
    return khan_heat


def _grad_cam_cases(rng):
    cases = []
    for number, (kind, layer) in enumerate((("gap", "relu2"), ("no_pool", "relu2"), ("flatten", "relu2")), start=1):
        net, shape = _network(kind, rng)
        x = rng.normal(size=(3,) + shape)
        target = rng.integers(0, net.num_classes, len(x))
        trace = net.forward(x)
        signal = np.zeros_like(trace.output)
        signal[np.arange(len(x)), target] = 1.0
        activations = trace.outputs[layer]
        gradients = net.backward(trace, signal, stop=layer)
        expected = saliency.grad_cam(net, x, target, layer=layer)
        alphas = gradients.mean(axis=(2, 3), keepdims=True)

        def diagnose(got, case, activations=activations, gradients=gradients, alphas=alphas):
            if _close(got, (alphas * activations).sum(axis=1)):
                return "Apply the final ReLU: CAM = max(sum_k alpha_k A_k, 0)"
            if _close(got, np.maximum((gradients * activations).sum(axis=1), 0)):
                return "alpha_k is the MEAN of the gradients over the map's pixels, one number per channel"
        cases.append(Case(f"network {number}, layer {layer}, activations {activations.shape}",
                          (activations, gradients), expected, diagnose=diagnose))
    return cases


def _border_cases(rng):
    cases = []
    for shape, width, edge in (((10, 10), 0.1, 0.5), ((12, 20), 0.25, 0.2), ((7, 9), 0.5, 0.0),
                               ((6, 8), 0.0, 0.5), ((16, 11), 0.3, 0.75)):
        expected = saliency.postprocess.border_mask(shape, width, edge)

        def diagnose(got, case, shape=shape, width=width, edge=edge):
            rows = expected_profile(shape[0], width, edge)
            cols = expected_profile(shape[1], width, edge)
            if _close(got, rows[:, None] * cols[None, :]):
                return "Take the MINIMUM of the row and column weights, not their product"
        cases.append(Case(f"shape {shape}, width_fraction {width}, edge_weight {edge}",
                          (shape, width, edge), expected, diagnose=diagnose))
    return cases


def expected_profile(length, width, edge):
    """The weights along one axis (pixel centres at i + 0.5), for diagnoses."""
    centres = np.arange(length) + 0.5
    band = width * length
    ramp = np.ones(length) if band == 0 else np.minimum(np.minimum(centres, length - centres) / band, 1.0)
    return edge + (1 - edge) * ramp


def _random_heat(rng, shape):
    """Maps with a few blobs and noise, some values negative."""
    n, h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    heat = rng.normal(0, 0.05, shape)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            r, c, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, max(h, w) / 4)
            heat[i] += rng.uniform(0.5, 2) * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * s * s))
    return heat


def _khan_heat_cases(rng):
    khan_heat = _khan_reference()
    cases = []
    for shape, sigma, width, edge in (((2, 20, 24), 2.0, 0.1, 0.5), ((3, 16, 16), 0.0, 0.2, 0.3),
                                      ((2, 24, 18), 3.0, 0.0, 0.5), ((1, 30, 30), 4.0, 0.1, 0.5)):
        heat = _random_heat(rng, shape)
        expected = khan_heat(heat, True, sigma, width, edge)

        def diagnose(got, case, heat=heat, sigma=sigma, width=width, edge=edge):
            if _close(got, khan_heat(np.abs(heat), False, sigma, width, edge)):
                return "Take the positive part max(m, 0) first, not the absolute value"
            if width > 0 and _close(got, khan_heat(heat, True, sigma, 0.0, edge)):
                return "Multiply by the border mask at the end"
        cases.append(Case(f"maps {shape}, sigma {sigma}, border {width} at weight {edge}",
                          (heat, sigma, width, edge), expected, diagnose=diagnose))
    return cases


def _union_box_cases(rng):
    cases = []
    for label, shape, fraction in (("two blobs", (3, 20, 24), 0.5), ("low threshold", (2, 16, 16), 0.1),
                                   ("threshold 1 (the peak only)", (2, 12, 15), 1.0),
                                   ("one map all zero or negative", (3, 10, 10), 0.3)):
        heat = np.maximum(_random_heat(rng, shape), 0)
        if "zero" in label:
            heat[1] = -np.abs(heat[1])
            heat[2] = 0.0
        expected = box_lib.boxes_from_heatmap(heat, fraction, "union")

        def diagnose(got, case):
            got = np.asarray(got, dtype=np.float64)
            if got.shape == case.expected.shape and _close(got[:, 2:] + 1, case.expected[:, 2:]):
                return "The box is continuous: a hot pixel (row i, column j) covers [j, j + 1) x [i, i + 1)"
            if got.shape == case.expected.shape and _close(got[:, [1, 0, 3, 2]], case.expected):
                return "A box is (xmin, ymin, xmax, ymax): x is the column, y the row"
        cases.append(Case(f"{label}, maps {shape}, fraction {fraction}", (heat, fraction), expected,
                          diagnose=diagnose))
    return cases


def _khan_boxes_cases(rng):
    khan_heat = _khan_reference()
    cases = []
    for shape, sigma, fraction in (((2, 20, 20), 2.0, 0.3), ((3, 24, 16), 3.0, 0.5), ((2, 18, 22), 1.0, 0.2)):
        map_a, map_b = _random_heat(rng, shape), _random_heat(rng, shape)
        heat = saliency.postprocess.mix(khan_heat(map_a, True, sigma), khan_heat(map_b, True, sigma),
                                        "geometric_mean")
        expected = box_lib.boxes_from_heatmap(heat, fraction, "union")
        product = box_lib.boxes_from_heatmap(khan_heat(map_a, True, sigma) * khan_heat(map_b, True, sigma),
                                             fraction, "union")

        def diagnose(got, case, product=product):
            if not _close(product, case.expected) and _close(got, product):
                return "Mix with the geometric mean sqrt(a * b), not the product a * b"
        cases.append(Case(f"two maps {shape}, sigma {sigma}, fraction {fraction}",
                          (map_a, map_b, sigma, fraction), expected, diagnose=diagnose))
    return cases


ASSIGNMENT_4 = Assignment(4, "cam", "4_cam_and_khan.py",
                          "Grad-CAM and Khan et al.'s recipe from maps to boxes", [
    Part("grad_cam", 3, _grad_cam_cases,
         "alpha = gradients.mean(axis=(2, 3)); CAM = max(sum_k alpha[:, k] * A[:, k], 0)"),
    Part("border_mask", 3, _border_cases,
         "per axis: d = min(i + 0.5, L - i - 0.5); p = e + (1 - e) * min(d / (f L), 1) (1 if f = 0); "
         "mask = min(p_row[:, None], p_col[None, :])"),
    Part("khan_heat", 3, _khan_heat_cases,
         "max(m, 0); m / max m; Gaussian smoothing (sigma, mode 'nearest', truncate 4); m / max m; "
         "zero below the map's mean; times your border_mask", uses=("border_mask",)),
    Part("union_box", 3, _union_box_cases,
         "hot = m >= fraction * max m (nothing hot if max m <= 0: the whole image (0, 0, W, H)); "
         "box = (first hot column, first hot row, last hot column + 1, last hot row + 1)"),
    Part("khan_boxes", 3, _khan_boxes_cases,
         "a, b = khan_heat of each map; heat = sqrt(a * b); union_box(heat, fraction)",
         uses=("khan_heat", "union_box")),
])


ASSIGNMENTS = {a.number: a for a in (ASSIGNMENT_1, ASSIGNMENT_2, ASSIGNMENT_3, ASSIGNMENT_4)}


# ------------------------------------------------------------------------------------ grading

def find_assignment(name):
    """The :class:`Assignment` named by number (``"1"``), key (``"rules"``) or file name."""
    text = str(name).strip().lower()
    for assignment in ASSIGNMENTS.values():
        if text in (str(assignment.number), assignment.key, assignment.filename,
                    assignment.filename[:-3]):
            return assignment
    known = ", ".join(f"{a.number} ({a.key})" for a in ASSIGNMENTS.values())
    raise ValueError(f"unknown assignment {name!r}; known: {known}")


def default_file(assignment):
    """The student's ``<file>`` in the current folder, else the skeleton shipped with the package."""
    for candidate in (Path.cwd() / assignment.filename, SKELETONS / assignment.filename):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no FILE given and {assignment.filename} is neither in the current "
                            f"folder nor in {SKELETONS}; give the path of your solution")


#: The environment variable holding a teacher's secret seed (hidden cases), used when ``--seed`` is not given.
SEED_VARIABLE = "SENSLOC_GRADE_SEED"


def grade(assignment, path=None, seed=0, hints=True, limits=None):
    """Grade a student's file, every part in its own sandboxed process (:mod:`.sandbox`).

    Parameters
    ----------
    assignment : int, str or Assignment
        ``1`` to ``4`` or ``"backward"``, ``"rules"``, ``"boxes"``, ``"cam"``.
    path : path, optional
        The student's module (default :func:`default_file`). It is never imported here: its
        source runs in a child process that cannot import the library (see :mod:`.sandbox`).
    seed : int
        Seeds the random cases; the same seed gives the same cases.
    hints : bool
        Add the part's hint and the diagnosis of typical mistakes to the messages (turn off
        for exams).
    limits : Limits, optional
        Memory, CPU and wall-clock limits of each part's process.

    Returns
    -------
    Report

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    if not isinstance(assignment, Assignment):
        assignment = find_assignment(assignment)
    path = Path(path) if path is not None else default_file(assignment)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    source = path.read_bytes().decode("utf-8", "replace")
    results = []
    for number, part in enumerate(assignment.parts, start=1):
        # Each part draws from its own stream: fixing one part never changes another's cases.
        rng = np.random.default_rng([seed, assignment.number, number])
        result, import_error = run_part(number, part, source, path, rng, hints, limits)
        if import_error:  # the file does not import (or imports the library): every part fails alike
            hint = hints and import_error not in ("violation", "limit")
            parts = [PartResult(i, p.function, p.points, 0, 1, list(result.messages), p.hint if hint else "")
                     for i, p in enumerate(assignment.parts, start=1)]
            return Report(assignment, path, seed, parts, error=result.messages[0])
        broken = [r for r in results if r.function in part.uses and not r.ok]
        started = not any(m.startswith("not implemented yet") for m in result.messages)
        if broken and started and not result.ok and result.passed < result.total:
            names = ", ".join(f"{r.function} (part {r.number})" for r in broken)
            result.messages.append(f"note: this part calls your {names}, which fail(s) its own "
                                   "cases: make that pass first")
        results.append(result)
    return Report(assignment, path, seed, results)


def grade_folder(assignment, folder, seed=0, hints=True, limits=None):
    """Grade every ``*.py`` file of ``folder`` (one submission each), in name order; a list of Reports."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder}: no submissions (*.py files) in this folder")
    return [grade(assignment, path, seed, hints, limits) for path in files]


def write_tables(reports, prefix):
    """Write ``PREFIX.csv`` (one row per submission, one column per part) and ``PREFIX.json``.

    The JSON holds, per submission, the file, the score, the error if any, and every part's points,
    score, cases passed and messages. Returns the two paths.
    """
    prefix = Path(prefix)
    parts = reports[0].assignment.parts
    header = ["file"] + [f"part{i}_{p.function}" for i, p in enumerate(parts, start=1)] + ["total", "max", "error"]
    rows, records = [], []
    for report in reports:
        rows.append([report.path.name] + [f"{r.score:.2f}" for r in report.parts]
                    + [f"{report.score:.2f}", report.max_score, report.error or ""])
        records.append({"file": report.path.name, "score": round(report.score, 4), "max": report.max_score,
                        "error": report.error,
                        "parts": [{"part": r.number, "function": r.function, "points": r.points,
                                   "score": round(r.score, 4), "passed": r.passed, "cases": r.total,
                                   "messages": r.messages} for r in report.parts]})
    csv_path, json_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".json")
    with open(csv_path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    a = reports[0].assignment
    json_path.write_text(json.dumps({"assignment": a.number, "title": a.title, "seed": reports[0].seed,
                                     "submissions": records}, indent=1), encoding="utf-8")
    return csv_path, json_path


def build_parser(parser=None):
    """The arguments of ``sensloc grade`` (on ``parser`` if given, e.g. a sub-command's parser)."""
    parser = parser or argparse.ArgumentParser(prog="sensloc grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("assignment", metavar="ASSIGNMENT",
                        help="1 (backward), 2 (rules), 3 (boxes) or 4 (cam)")
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="your solution (default: FILE in the current folder, else the shipped skeleton), "
                             "or a FOLDER of submissions: grade them all and write a CSV and a JSON of scores")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"seed of the random cases (default: ${SEED_VARIABLE} if set, else 0); "
                             "a teacher's secret seed gives cases the students have not seen")
    parser.add_argument("--no-hints", dest="hints", action="store_false",
                        help="report what is wrong but no hint nor diagnosis (exams)")
    parser.add_argument("--out", metavar="PREFIX",
                        help="for a FOLDER: write PREFIX.csv and PREFIX.json (default FOLDER/grades_ASSIGNMENT)")
    return parser


def _seed(args):
    if args.seed is not None:
        return args.seed
    text = os.environ.get(SEED_VARIABLE, "").strip()
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${SEED_VARIABLE} must be an integer; got {text!r}") from None


def run(args):
    """Grade from parsed arguments, print the report(s); the exit status (0 full marks, 1 otherwise)."""
    seed = _seed(args)
    if args.file is not None and Path(args.file).is_dir():
        assignment = find_assignment(args.assignment)
        reports = grade_folder(assignment, args.file, seed, args.hints)
        prefix = Path(args.out) if args.out else Path(args.file) / f"grades_{assignment.number}"
        for report in reports:
            print(f"{report.path.name}: {report.score:.1f} / {report.max_score}"
                  + (f"   ({report.error})" if report.error else ""))
        csv_path, json_path = write_tables(reports, prefix)
        print(f"wrote {csv_path} and {json_path}")
        return 0 if all(r.full_marks for r in reports) else 1
    report = grade(args.assignment, args.file, seed, args.hints)
    print(report.format())
    return 0 if report.full_marks else 1


def add_parser(commands):
    """Register ``grade`` on the sub-command parsers of ``sensloc`` (see :mod:`sensloc.cli.main`)."""
    parser = commands.add_parser("grade", help="grade a coursework assignment (coursework/assignments)",
                                 description=__doc__.split("\n\n")[0])
    build_parser(parser)
    parser.set_defaults(run=run)
    return parser


def main(argv=None):
    """``python -m sensloc.coursework.grade ASSIGNMENT [FILE | FOLDER] [--seed S] [--no-hints]``; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as error:
        print(f"sensloc grade: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
