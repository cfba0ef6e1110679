"""Worker processes that share the cores instead of fighting over them.

NumPy's OpenBLAS and Numba each keep a pool of threads that spin while they wait for work. On a
small machine two such pools, or several processes with a pool each, take turns stealing the
same cores: a training step on 2 cores ran 5x slower with both pools at 2 threads than with
one thread each, on a machine that was busy anyway. So every worker process here runs one thread
of each, and the parent can do the same for itself with :func:`single_threaded`.
"""
import os
import signal
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


def _start_worker(initializer, initargs):
    """In a new worker: leave Ctrl-C to the parent, then run the caller's initializer.

    A terminal's Ctrl-C goes to every process of the foreground group; workers that took it
    would each print a KeyboardInterrupt traceback. The parent alone stops (and its ``with``
    block terminates the pool), saying once what was kept.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def spawn_pool(processes, initializer=None, initargs=()):
    """A ``multiprocessing`` pool of fresh single-threaded processes that ignore Ctrl-C.

    Spawned, not forked: Numba's and OpenBLAS's thread pools do not survive a fork. Use it as a
    context manager, like ``multiprocessing.Pool``.
    """
    with environment(SINGLE_THREAD_ENV):
        # The children read the environment when they start, inside Pool().
        return get_context("spawn").Pool(processes, _start_worker, (initializer, initargs))


@contextmanager
def single_threaded():
    """Run the block with one BLAS thread and one Numba thread in this process."""
    import numba
    from threadpoolctl import threadpool_limits
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        numba.set_num_threads(threads)
