"""Which implementation runs the layers' numerical operations, and how to tune a process for it.

Two backends have the same functions (:data:`OPERATIONS`) with the same signatures:

``"numpy"`` (the default) - :mod:`nets.reference`
    plain NumPy, every function the equation in its docstring. A plain ``import sensloc``
    compiles nothing, starts no thread pool and runs exactly the code a student reads.
``"numba"`` - :mod:`nets._numba`
    Numba kernels, Winograd convolutions and a packed GEMM split among Numba's threads, 2-10x
    faster on the networks here. Imported (and its CPU probe run) only when first used.

The command line, the evaluation workers, training and the benchmarks choose ``"numba"``
explicitly; library users choose with :func:`use_backend` or, for a block, :func:`backend`.
The tests hold the two equal (float64, 1e-12 relative) on every layer, rule and method.

Layers call ``ops.conv2d_forward(...)`` and so on: :data:`ops` forwards every attribute to the
current backend's module. The choice is process-wide (all threads see it), not per thread.

Nothing here changes the process on import. :func:`configure_process` does, when called: the
fast backend's thread and allocator settings, kept out of import so that importing the library
leaves a host process (a notebook, a web server, PyTorch next door) as it found it.
"""
import ctypes
import importlib
import os
from contextlib import contextmanager

#: Backend name -> the module that implements :data:`OPERATIONS`.
BACKENDS = {"numpy": "sensloc.nets.reference", "numba": "sensloc.nets._numba"}
#: The functions every backend provides, with :mod:`nets.reference`'s signatures.
OPERATIONS = ("conv_output_size", "pool_output_size",
              "conv2d_forward", "conv2d_backward_input", "conv2d_backward_weight",
              "linear_forward", "linear_backward_input", "linear_backward_weight",
              "relu", "relu_backward", "relu_rule", "max_pool_forward", "max_pool_route",
              "depthwise_conv2d_forward", "depthwise_conv2d_backward_input",
              "depthwise_conv2d_backward_weight", "relu6", "relu6_backward", "relu6_rule")
DEFAULT = "numpy"

_state = {"name": DEFAULT, "module": None}


def _check(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return name


def use_backend(name):
    """Run every layer on backend ``name`` ("numpy" or "numba") from now on, in every thread.

    The backend's module is imported at the first operation that needs it, so selecting
    "numba" in a command that computes nothing (``sensloc weights list``) loads no Numba.
    Returns the name of the backend that was current before.
    """
    previous = _state["name"]
    _state["name"], _state["module"] = _check(name), None
    return previous


def current_backend():
    """The name of the backend the layers run on now: "numpy" or "numba"."""
    return _state["name"]


@contextmanager
def backend(name):
    """``with nets.backend("numba"): ...`` runs the block on backend ``name``, then restores
    the previous one."""
    previous = use_backend(name)
    try:
        yield
    finally:
        use_backend(previous)


def backend_module(name=None):
    """The module implementing backend ``name`` (the current one by default), imported now."""
    if name is not None:
        return importlib.import_module(BACKENDS[_check(name)])
    module = _state["module"]
    if module is None:
        module = _state["module"] = importlib.import_module(BACKENDS[_state["name"]])
    return module


class _Operations:
    """``ops.f`` is the current backend's ``f`` (looked up at every call, so a switch shows)."""

    def __getattr__(self, name):
        if name not in OPERATIONS:
            raise AttributeError(f"no backend operation {name!r}; operations are {OPERATIONS}")
        return getattr(backend_module(), name)

    def __dir__(self):
        return list(OPERATIONS)


#: The current backend's operations: ``ops.conv2d_forward(x, w, b, stride, padding)``.
ops = _Operations()


# ---------------------------------------------------------------------------------- the process

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(limit=2**31 - 1):
    """Let glibc's malloc reuse freed blocks of up to ``limit`` bytes instead of unmapping them.

    By default glibc gives every block above 128 KB-32 MB its own mapping and returns it to the
    OS when freed, so each pass of a network gets its activations (12.8 MB per VGG16 layer at
    batch 1) as fresh pages that the kernel zero-fills on first touch: 36 ms of a 178 ms VGG16
    forward pass went to the ReLUs writing into new pages (``benchmarks/profile_layers.py``).
    Kept in the heap, the next pass reuses them (forward 0.136 -> 0.103 s, PyTorch's 0.107 s in
    the same run). The cost: the process keeps up to ``limit`` bytes of freed memory mapped.
    The setting is process-wide and cannot be undone.

    Returns
    -------
    bool
        Whether glibc took the setting (False on other C libraries).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, limit)) and bool(mallopt(_M_TRIM_THRESHOLD, limit))


def return_freed_memory():
    """Undo :func:`keep_freed_memory`: large blocks get their own mappings again, and freed
    memory at the top of the heap goes back to the OS (``malloc_trim``).

    For work after the network passes, such as fitting box protocols on a dataset's
    reductions: arrays sized by the number of images, freed and allocated again in other
    sizes, would otherwise leave the heap as large as the most ever allocated at once plus
    its fragments (measured with freed memory kept: an evaluation client of 20,000 images at
    710 MB and growing, against 471 MB for 1,000).

    Returns
    -------
    bool
        Whether glibc took the setting (False on other C libraries).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # glibc's initial thresholds (a fixed value turns off their dynamic adjustment, which
    # is what keep_freed_memory's callers do not want here either).
    taken = bool(libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)) and \
        bool(libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024))
    libc.malloc_trim(0)
    return taken


#: Spin iterations of an idle GNU OpenMP worker before it sleeps, set by :func:`configure_process`
#: (libgomp's own: 300,000).
SPIN_COUNT = 3_000_000


def configure_process(threads=None, wait_policy=None, keep_memory=None):
    """Tune this process for the fast backend: once, early, in programs that own their process.

    What it sets, and why (measurements on the 2-core development machine):

    1. ``OMP_WAIT_POLICY``: only if ``wait_policy`` is given and the environment has none.
       By default OpenMP's own policy stays, the one PyTorch runs with: after a parallel kernel
       the workers spin, then sleep. A pass is a chain of short kernels with Python between
       them, and a sleeping worker costs a wake-up per kernel: on an idle machine passive
       waiting made a SqueezeNet batch-1 gradient 1.7x slower (40.4 against 23.5 ms). Where
       other processes keep the cores busy the spinning costs instead (2-7x with one busy
       neighbour process): there, set ``OMP_WAIT_POLICY=PASSIVE`` in the environment (or pass
       ``wait_policy="PASSIVE"``). Unless a policy or ``GOMP_SPINCOUNT`` is in the environment,
       the spin is made ten times libgomp's 300,000 iterations, ``GOMP_SPINCOUNT`` =
       :data:`SPIN_COUNT` (GNU OpenMP, the runtime of Numba's ``omp`` layer on Linux; others
       ignore it): with the default, workers fell asleep in a batch-1 pass's serial stretches
       and MobileNetV2's batch-1 forward ran at half speed in some processes (medians
       10.6-19.8 ms, 9.4-10.0 with the longer spin). Measurements: benchmarks/RESULTS.md,
       sections "-7" and "-8". OpenMP reads these variables when its runtime starts, at the
       first parallel kernel: call this before.
    2. glibc keeps freed memory for reuse (:func:`keep_freed_memory`), unless ``keep_memory``
       is False or, when it is None, ``SENSLOC_KEEP_FREED_MEMORY=0`` is in the environment.
    3. ``threads``: if given, Numba's thread count (``numba.set_num_threads``, at most
       ``NUMBA_NUM_THREADS``); BLAS is kept to one thread inside the fast kernels anyway.

    Parameters
    ----------
    threads : int, optional
    wait_policy : str, optional
        ``"PASSIVE"`` or ``"ACTIVE"``, set unless the environment has a policy; None (default)
        leaves OpenMP's own.
    keep_memory : bool, optional

    Returns
    -------
    dict
        What was set: ``{"keep_freed_memory": bool}``, plus ``"OMP_WAIT_POLICY"`` (the policy
        in force) when ``wait_policy`` was given, else ``"GOMP_SPINCOUNT"`` (the spin count in
        force) when the environment sets no policy, and ``"threads"`` when ``threads`` was.
    """
    done = {}
    if wait_policy is not None:
        done["OMP_WAIT_POLICY"] = os.environ.setdefault("OMP_WAIT_POLICY", wait_policy)
    elif "OMP_WAIT_POLICY" not in os.environ:
        done["GOMP_SPINCOUNT"] = os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
    if keep_memory is None:
        keep_memory = os.environ.get("SENSLOC_KEEP_FREED_MEMORY", "1") != "0"
    done["keep_freed_memory"] = keep_freed_memory() if keep_memory else False
    if threads is not None:
        import numba
        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
        done["threads"] = numba.get_num_threads()
    return done
