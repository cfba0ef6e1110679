"""Shared plumbing for the benchmark scripts: thread counts, import paths, the PyTorch twins.

Nothing here imports NumPy at module level, so that :func:`configure_threads` can still set
the BLAS / OpenMP / Numba thread counts (they are read once, when those libraries load).
"""
import importlib
import os
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

#: Input side of each network (VGG16's fully connected head fixes 224; SqueezeNet 1.0 was
#: trained at 227, nets' ``default_input_size``).
INPUT_SIDE = {"vgg16": 224, "squeezenet1_0": 227, "mobilenet_v2": 224}
#: The class every map explains (fixed, so both sides do the same work).
TARGET = 1
#: Grad-CAM layer per network (nets' layer names).
GRADCAM_LAYER = {"vgg16": "relu5_3", "squeezenet1_0": "fire9", "mobilenet_v2": "head_relu6"}

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "NUMBA_NUM_THREADS")


def call_times(call, repeats, warmup=1):
    """Seconds taken by each of ``repeats`` calls of ``call()``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def add_paths(tests=False):
    """Put the repository root (and optionally tests/, for the PyTorch twins) on sys.path."""
    for path in ([ROOT] + ([TESTS] if tests else [])):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def configure_threads(threads):
    """Fix every thread pool to ``threads``: env variables first, then the live setters.

    Must run before NumPy / Numba / PyTorch are imported for the BLAS and Numba pools to
    honour it; a warning is printed when NumPy was already imported.
    """
    if "numpy" in sys.modules and os.environ.get("OPENBLAS_NUM_THREADS") != str(threads):
        print(f"warning: NumPy was imported before the thread count was set; BLAS may not use "
              f"{threads} threads", file=sys.stderr)
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)


def choose_backend(name="numba"):
    """Put this process on sensloc's backend ``name`` (the benchmarks measure "numba", the fast
    one, unless told otherwise), with :func:`nets.configure_process`'s settings for it.

    The library sets nothing on import: what a program that owns its process does (the
    ``sensloc`` command, the evaluation workers) is done here explicitly.
    """
    from sensloc import nets
    if name == "numba":
        nets.configure_process()
    nets.use_backend(name)
    nets.backends.backend_module()   # import it now (the first map would otherwise)
    return name


def apply_thread_setters(threads, torch_module=None):
    """After import: numba.set_num_threads (if Numba is loaded: the fast backend) and
    torch.set_num_threads (when given)."""
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if torch_module is not None:
        torch_module.set_num_threads(threads)


def reference_available():
    """(available, reason): whether torch and captum import."""
    try:
        import torch  # noqa: F401
        import captum  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


def import_twins():
    """tests/torch_reference.py, the PyTorch twins of VGG16 and SqueezeNet 1.0.

    That module imports pytest only for ``importorskip("torch")``; when pytest is absent a
    stand-in that simply imports the module is provided, so benchmarks do not need pytest.
    """
    add_paths(tests=True)
    if "pytest" not in sys.modules:
        try:
            import pytest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("pytest")
            stub.importorskip = lambda name, **_: importlib.import_module(name)
            sys.modules["pytest"] = stub
    return importlib.import_module("torch_reference")


def versions():
    """Library versions for the report header (torch / captum only when importable)."""
    import numba
    import numpy
    out = {"python": sys.version.split()[0], "numpy": numpy.__version__,
           "numba": numba.__version__}
    try:
        import scipy
        out["scipy"] = scipy.__version__
    except ImportError:
        pass
    ok, _ = reference_available()
    if ok:
        import captum
        import torch
        out["torch"] = torch.__version__
        out["captum"] = captum.__version__
    return out


def machine():
    """CPU model, core count and the current load average, for the report header."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = "n/a"
    return {"cpu": model, "cores": os.cpu_count(), "loadavg": load}


def fill_random_inplace(net, seed=0):
    """He-normal weights drawn in place in float32, like ``nets.random_parameters`` but lean.

    ``nets.random_parameters`` draws float64 arrays and converts them (VGG16: ~4 s against ~1 s,
    and a transient ~1 GB for fc6), which would dominate a first-call time and a peak-memory figure
    that are meant to show the library's own costs. Same distribution, no temporaries.
    """
    import numpy as np
    rng = np.random.default_rng(seed)
    for arrays in net.parameters().values():
        w, b = arrays["weight"], arrays["bias"]
        rng.standard_normal(out=w, dtype=np.float32)
        w *= np.float32(np.sqrt(2.0 / np.prod(w.shape[1:])))
        rng.standard_normal(out=b, dtype=np.float32)
        b *= np.float32(0.01)
    return net
