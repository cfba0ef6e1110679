"""Which backend each command computes on (cli.main.command_backend), and that it holds."""
import pytest

from sensloc.cli.main import build_parser, command_backend, running_on


@pytest.mark.parametrize("argv,expected", [
    (["explain", "x.jpg"], "numpy"),                                   # gradient, one photo
    (["explain", "--method", "deeplift", "x.jpg"], "numpy"),
    (["explain", "--method", "integrated_gradients", "x.jpg"], "numba"),  # many passes
    (["explain", "--method", "occlusion", "x.jpg"], "numba"),
    (["classify"] + [f"{i}.jpg" for i in range(8)], "numpy"),
    (["classify"] + [f"{i}.jpg" for i in range(9)], "numba"),
    (["demo"], "numpy"),
    (["demo", "--count", "9"], "numba"),
    (["localize", "x.jpg"], "numba"),
    (["--backend", "numba", "explain", "x.jpg"], "numba"),             # the override wins
    (["--backend", "numpy", "demo", "--count", "50"], "numpy"),
])
def test_command_backend_depends_on_the_command_only(argv, expected):
    assert command_backend(build_parser().parse_args(argv)) == expected


def test_evaluate_always_runs_on_numba():
    # evaluate's map cache must not depend on which backend ran: it is always Numba's.
    args = build_parser().parse_args(["evaluate", "data.csv", "--preset", "gradient"])
    assert command_backend(args) == "numba"


def test_running_on_numpy_limits_blas_to_one_thread_and_restores_it():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from sensloc import nets
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()
              if p["user_api"] == "blas"]
    with running_on("numpy"):
        assert nets.current_backend() == "numpy"
        inside = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p["user_api"] == "blas"]
        assert inside and all(n == 1 for n in inside)
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()
            if p["user_api"] == "blas"] == before
