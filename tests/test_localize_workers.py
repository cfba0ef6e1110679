"""Worker processes and thread limits: set inside, restored after."""
import os

import numba
from threadpoolctl import threadpool_info

from sensloc.evaluation.workers import SINGLE_THREAD_ENV, environment, single_threaded, spawn_pool


def _child_environment(_):
    import numba as child_numba
    return {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}, child_numba.get_num_threads()


def test_environment_is_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with environment(SINGLE_THREAD_ENV):
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ


def test_spawned_workers_run_one_thread_and_the_parent_keeps_its_own():
    before = dict(os.environ)
    with spawn_pool(1) as pool:
        child_env, child_threads = pool.map(_child_environment, [0])[0]
    assert child_env == SINGLE_THREAD_ENV and child_threads == 1
    assert dict(os.environ) == before


def test_single_threaded_limits_blas_and_numba_then_restores():
    threads = numba.get_num_threads()
    blas_before = [pool["num_threads"] for pool in threadpool_info()]
    with single_threaded():
        assert numba.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert numba.get_num_threads() == threads
    assert [pool["num_threads"] for pool in threadpool_info()] == blas_before
