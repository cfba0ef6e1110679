"""Worker processes that share the cores instead of fighting over them.

NumPy's OpenBLAS and Numba each keep a pool of threads that spin while they wait for work. On a
small machine two such pools, or several processes with a pool each, take turns stealing the
same cores: a training step on 2 cores ran 5x slower with both pools at 2 threads than with
one thread each, on a machine that was busy anyway. So every worker process here runs one thread
of each, and the parent can do the same for itself with :func:`single_threaded`.

A worker computes on the backend its parent ran when it started it (:mod:`nets.backends`): the
``sensloc`` command runs "numba", so its workers do too, with the process settings of
:func:`nets.configure_process`; a library user on the default "numpy" gets NumPy workers that
give the very maps the parent would.
"""
import os
import signal
import sys
from contextlib import contextmanager
from multiprocessing import get_context

#: Environment of a single-threaded worker; read by OpenBLAS and Numba when they load.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}


@contextmanager
def environment(values):
    """Set environment variables for the duration (child processes inherit them), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_worker(backend, initializer=None, initargs=()):
    """Set up a worker process: leave Ctrl-C to the parent, take the parent's ``backend``
    (configured, if "numba"), then run ``initializer(*initargs)``.

    A terminal's Ctrl-C goes to every process of the foreground group; workers that took it
    would each print a KeyboardInterrupt traceback. The parent alone stops (and its ``with``
    block terminates the pool), saying once what was kept.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from sensloc import nets
    if backend == "numba":
        nets.configure_process()
    nets.use_backend(backend)
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(processes, initializer=None, initargs=()):
    """A ``multiprocessing`` pool of fresh single-threaded processes on this process's backend
    that leave Ctrl-C to the parent.

    Spawned, not forked: Numba's and OpenBLAS's thread pools do not survive a fork. Use it as a
    context manager, like ``multiprocessing.Pool``. Each worker runs :func:`start_worker`
    (the current :func:`nets.current_backend`), then ``initializer(*initargs)``.
    """
    from sensloc import nets
    with environment(SINGLE_THREAD_ENV):
        # The children read the environment when they start, inside Pool().
        return get_context("spawn").Pool(processes, start_worker,
                                         (nets.current_backend(), initializer, initargs))


@contextmanager
def single_threaded():
    """Run the block with one BLAS thread and, on the fast backend (or wherever Numba is
    loaded), one Numba thread in this process."""
    from threadpoolctl import threadpool_limits

    from sensloc import nets
    if nets.current_backend() == "numba":
        nets.backends.backend_module()   # load it now (it loads at its first use), to limit it
    numba = sys.modules.get("numba")     # not loaded: the NumPy backend, nothing to limit
    threads = None if numba is None else numba.get_num_threads()
    if numba is not None:
        numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if numba is not None:
            numba.set_num_threads(threads)
