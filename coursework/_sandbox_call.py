"""The grader's side of the sandbox: one part's cases out to a child process, its results back.

:mod:`sensloc.coursework.sandbox` is the child (it runs without the library); this module is
what the grading process does around it: turn the cases into plain data (a network becomes a
list of layer dicts), write them with the submission into a fresh temporary folder, start the
child with its limits and an empty environment, stop it at the wall-clock limit, and read back
only results of the shape the child writes. Why a part fails to return (timeout, CPU or memory
limit, a crash) comes back as one line for the report.
"""
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensloc import nets
from sensloc.coursework import sandbox


def as_plain_data(value):
    """``value`` as plain data for the sandbox: a network becomes a list of layer dicts."""
    if isinstance(value, nets.Network):
        return plain_network(value)
    if isinstance(value, tuple):
        return tuple(as_plain_data(v) for v in value)
    if isinstance(value, list):
        return [as_plain_data(v) for v in value]
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
