"""The fast (Numba) kernels against the NumPy reference (nets.reference), on randomized shapes,
strides and paddings, and the process settings of nets.configure_process."""
import os
import subprocess
import sys

import numpy as np
import pytest

from sensloc import nets
from sensloc.nets import reference
from sensloc.nets._numba import kernels, pooling


def random_conv_case(rng):
    k = int(rng.choice([1, 3, 5, 7]))
    stride = int(rng.integers(1, 4))
    padding = int(rng.integers(0, k // 2 + 2))
    n, c, o = int(rng.integers(1, 3)), int(rng.integers(1, 6)), int(rng.integers(1, 6))
    h, w = int(rng.integers(k, k + 12)), int(rng.integers(k, k + 12))
    x = rng.normal(size=(n, c, h, w)).astype(np.float32)
    weight = rng.normal(size=(o, c, k, k)).astype(np.float32)
    bias = rng.normal(size=o).astype(np.float32)
    return x, weight, bias, stride, padding


@pytest.mark.parametrize("seed", range(12))
def test_conv_forward_matches_reference(seed):
    x, w, b, s, p = random_conv_case(np.random.default_rng(seed))
    fast = kernels.conv2d_forward(x, w, b, s, p)
    naive = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b, s, p)
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_conv_backward_input_matches_reference(seed):
    rng = np.random.default_rng(seed)
    x, w, b, s, p = random_conv_case(rng)
    y = reference.conv2d_forward(x, w, b, s, p)
    dy = rng.normal(size=y.shape).astype(np.float32)
    fast = kernels.conv2d_backward_input(dy, w, x.shape, s, p)
    naive = reference.conv2d_backward_input(dy.astype(np.float64), w.astype(np.float64),
                                                x.shape, s, p)
    np.testing.assert_allclose(fast, naive, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(12))
def test_conv_backward_weight_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    x, w, b, s, p = random_conv_case(rng)
    y = reference.conv2d_forward(x, w, b, s, p)
    dy = rng.normal(size=y.shape).astype(np.float32)
    dw, db = kernels.conv2d_backward_weight(dy, x, w.shape[2], s, p)
    dw_naive, db_naive = reference.conv2d_backward_weight(dy.astype(np.float64),
                                                              x.astype(np.float64), w.shape[2], s, p)
    assert dw.shape == w.shape and db.shape == b.shape and dw.dtype == np.float32
    np.testing.assert_allclose(dw, dw_naive, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db, db_naive, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k,stride,padding", [(3, 1, 1), (1, 1, 0), (3, 2, 0)])
def test_chunked_unrolling_equals_reference(monkeypatch, rng, k, stride, padding):
    # A budget of two images' columns splits a batch of 5 into chunks of 2, 2 and 1.
    x = rng.normal(size=(5, 3, 9, 8))
    w, b = rng.normal(size=(4, 3, k, k)), rng.normal(size=4)
    y = reference.conv2d_forward(x, w, b, stride, padding)
    per_image = 3 * k * k * y.shape[2] * y.shape[3]
    monkeypatch.setattr(kernels, "COLUMN_BUDGET", 2 * per_image)
    assert kernels._chunks(5, per_image) == [(0, 2), (2, 4), (4, 5)]
    dy = rng.normal(size=y.shape)
    np.testing.assert_allclose(kernels.conv2d_forward(x, w, b, stride, padding), y, rtol=1e-12)
    np.testing.assert_allclose(kernels.conv2d_backward_input(dy, w, x.shape, stride, padding),
                               reference.conv2d_backward_input(dy, w, x.shape, stride, padding),
                               rtol=1e-12, atol=1e-12)
    for fast, naive in zip(kernels.conv2d_backward_weight(dy, x, k, stride, padding),
                           reference.conv2d_backward_weight(dy, x, k, stride, padding)):
        np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-12)


def test_pointwise_conv_shortcut_matches_reference(rng):
    x = rng.normal(size=(2, 7, 5, 6)).astype(np.float32)
    w = rng.normal(size=(4, 7, 1, 1)).astype(np.float32)
    b = rng.normal(size=4).astype(np.float32)
    np.testing.assert_allclose(kernels.conv2d_forward(x, w, b, 1, 0),
                               reference.conv2d_forward(x, w, b, 1, 0), rtol=1e-5, atol=1e-5)
    dy = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(kernels.conv2d_backward_input(dy, w, x.shape, 1, 0),
                               reference.conv2d_backward_input(dy, w, x.shape, 1, 0),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size,kernel,stride,padding,ceil_mode,expected", [
    (111, 3, 2, 0, True, 55),    # SqueezeNet pool1
    (55, 3, 2, 0, True, 27),     # SqueezeNet pool4
    (27, 3, 2, 0, True, 13),     # SqueezeNet pool8
    (224, 2, 2, 0, False, 112),  # VGG
    (6, 3, 2, 0, False, 2),
    (6, 3, 2, 0, True, 3),       # ceil adds a clipped last window
    (5, 2, 2, 1, True, 3),       # ... but not one that would start inside the right padding
    (4, 2, 2, 1, True, 3),
])
def test_pool_output_size(size, kernel, stride, padding, ceil_mode, expected):
    assert reference.pool_output_size(size, kernel, stride, padding, ceil_mode) == expected


@pytest.mark.parametrize("seed", range(12))
def test_max_pool_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(2, 5))
    s = int(rng.integers(1, k + 1))
    p = int(rng.integers(0, k // 2 + 1))
    ceil = bool(rng.integers(0, 2))
    x = rng.normal(size=(2, 3, int(rng.integers(k, 14)), int(rng.integers(k, 14)))).astype(np.float32)
    y, arg = pooling.max_pool_forward(x, k, s, p, ceil)
    y_ref, arg_ref = reference.max_pool_forward(x, k, s, p, ceil)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)
    dy = rng.normal(size=y.shape).astype(np.float32)
    # Overlapping windows add up to k*k float32 signals at a pixel: the kernel adds in float32,
    # the reference in float64 rounded once, so they differ by the rounding of that sum.
    np.testing.assert_allclose(pooling.max_pool_route(dy, arg, x.shape),
                               reference.max_pool_route(dy, arg_ref, x.shape), rtol=1e-6,
                               atol=k * k * np.finfo(np.float32).eps * np.abs(dy).max())
    # In float64 the two add the same numbers in the same order: equal.
    np.testing.assert_array_equal(pooling.max_pool_route(dy.astype(float), arg, x.shape),
                                  reference.max_pool_route(dy.astype(float), arg_ref, x.shape))


@pytest.mark.parametrize("k, s, p, ceil", [(3, 2, 0, True), (3, 2, 1, False), (3, 1, 1, False),
                                           (2, 2, 0, False), (2, 1, 0, True), (4, 3, 1, True)])
def test_max_pool_written_out_windows_match_reference_with_ties(k, s, p, ceil):
    # The fast kernel writes SqueezeNet's 3x3 and VGG's 2x2 windows out tap by tap; values
    # drawn from {0, 1, 2, 3} tie in almost every window, so each tap's order is checked.
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    x = rng.integers(0, 4, size=(2, 3, 13, 17)).astype(np.float32)
    y, arg = pooling.max_pool_forward(x, k, s, p, ceil)
    y_ref, arg_ref = reference.max_pool_forward(x, k, s, p, ceil)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(arg, arg_ref)


@pytest.mark.parametrize("ops", [reference, pooling], ids=["numpy", "numba"])
def test_max_pool_ties_pick_first_and_overlaps_add(ops):
    # A constant plane: every window ties, the first (top-left) element wins. With 3x3 stride 2
    # the windows overlap, so pixel (2, 2) wins for several windows and its signals must ADD.
    x = np.zeros((1, 1, 5, 5), np.float32)
    x[0, 0, 2, 2] = 1.0
    y, arg = ops.max_pool_forward(x, 3, 2, 0, False)
    assert np.all(arg == 12)
    dx = ops.max_pool_route(np.ones_like(y), arg, x.shape)
    assert dx[0, 0, 2, 2] == 4.0 and dx.sum() == 4.0
    tie = np.zeros((1, 1, 2, 2), np.float32)
    assert ops.max_pool_forward(tie, 2, 2, 0, False)[1].item() == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_multipliers_match_numpy(rng, dtype):
    s, eta, ref = (rng.normal(size=(2, 5, 7, 3)).astype(dtype) for _ in range(3))
    eta[0, 0, 0, :2] = 0.0                   # the kink: the gradient is 0 there
    ref[0, 1, 0, :2] = eta[0, 1, 0, :2]      # no difference from the reference: gradient
    ref[0, 1, 1, 0] = eta[0, 1, 1, 0] + 1e-12
    np.testing.assert_array_equal(kernels.relu_gate(s, eta), s * (eta > 0))
    np.testing.assert_array_equal(kernels.relu_gate(s, eta, guided=True), s * ((eta > 0) & (s > 0)))
    delta_in = eta - ref
    usable = np.abs(delta_in) >= dtype(1e-10)
    numerator = s * (np.maximum(eta, 0) - np.maximum(ref, 0))
    expected = np.where(usable, numerator / np.where(usable, delta_in, 1), s * (eta > 0))
    out = kernels.relu_secant(s, eta, ref, 1e-10)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)
    # The forward ReLU, NaN kept as np.maximum keeps it.
    eta_nan = eta.copy()
    eta_nan.flat[::7] = np.nan
    np.testing.assert_array_equal(kernels.relu(eta_nan), np.maximum(eta_nan, 0))
    assert kernels.relu(eta).dtype == dtype
    # Views (a concatenation's split) are accepted.
    np.testing.assert_array_equal(kernels.relu_gate(s[:, 1:3], eta[:, 1:3]), (s * (eta > 0))[:, 1:3])


@pytest.mark.parametrize("preset, asked, expected", [(None, None, "None"),
                                                     (None, "PASSIVE", "PASSIVE"),
                                                     ("ACTIVE", "PASSIVE", "ACTIVE")])
def test_configure_process_leaves_openmp_its_wait_policy_unless_asked(preset, asked, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    script = f"""if True:
        import os
        from sensloc import nets
        nets.use_backend("numba")   # importing the fast backend sets nothing either
        print(os.environ.get("OMP_WAIT_POLICY"))
        done = nets.configure_process(wait_policy={asked!r})
        print(done.get("OMP_WAIT_POLICY"), os.environ.get("OMP_WAIT_POLICY"))
    """
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[0] == str(preset)
    assert out[1].split() == [expected if asked else "None", expected]


@pytest.mark.parametrize("environment, expected", [({}, "3000000"),
                                                   ({"GOMP_SPINCOUNT": "1000"}, "1000"),
                                                   ({"OMP_WAIT_POLICY": "PASSIVE"}, None)])
def test_configure_process_lengthens_the_spin_unless_the_environment_chose(environment, expected):
    # Set before libgomp reads it: importing the fast backend has not started OpenMP yet.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(environment)
    script = """if True:
        import os
        from sensloc import nets
        nets.use_backend("numba")
        done = nets.configure_process()
        maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
        print(done.get("GOMP_SPINCOUNT"), os.environ.get("GOMP_SPINCOUNT"), "libgomp" in maps)
    """
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[:2] == [str(expected), str(expected if expected else None)]
    assert out[2] == "False"   # OpenMP's runtime not loaded yet: it reads the variable later


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
@pytest.mark.parametrize("configure, setting, kept", [(True, None, True), (True, "0", False),
                                                      (False, None, False)])
def test_freed_memory_is_kept_only_when_configured_and_the_user_allows(configure, setting, kept):
    # 200 MB allocated, touched and freed: with glibc keeping freed blocks the resident size
    # stays up (the next pass reuses those pages); left alone, glibc unmaps it at once.
    script = f"""if True:
        import numpy as np
        from sensloc import nets
        nets.use_backend("numba")
        if {configure}:
            nets.configure_process()
        def resident_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        before = resident_mb()
        a = np.ones(50_000_000, np.float32)
        del a
        print(resident_mb() - before)
    """
    env = {k: v for k, v in os.environ.items() if k != "SENSLOC_KEEP_FREED_MEMORY"}
    if setting is not None:
        env["SENSLOC_KEEP_FREED_MEMORY"] = setting
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert (float(out) > 150) == kept, f"resident size after the free grew by {out.strip()} MB"


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_freed_memory_goes_back_to_the_os_after_return_freed_memory():
    # Kept (configure_process), then returned: 200 MB allocated and freed afterwards leave
    # the resident size where it was; memory kept before the call is trimmed by it.
    script = """if True:
        import numpy as np
        from sensloc import nets
        from sensloc.nets.backends import return_freed_memory
        nets.configure_process(wait_policy=None, keep_memory=True)
        def resident_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        before = resident_mb()
        a = np.ones(50_000_000, np.float32)
        del a
        kept = resident_mb() - before
        assert return_freed_memory()
        trimmed = resident_mb() - before
        b = np.ones(50_000_000, np.float32)
        del b
        print(kept, trimmed, resident_mb() - before)
    """
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    kept, trimmed, after = map(float, out)
    assert kept > 150 and trimmed < 50 and after < 50, out


def test_configure_process_sets_numba_threads(monkeypatch):
    import numba
    threads = numba.get_num_threads()
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")   # a spin count already chosen is kept
    try:
        assert nets.configure_process(threads=1, wait_policy=None, keep_memory=False) == {
            "GOMP_SPINCOUNT": "300000", "keep_freed_memory": False, "threads": 1}
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(threads)


# Winograd F(2x2, 3x3), written out with the matrices of Lavin & Gray (2016) as the reference.
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


def test_winograd_tile_identity_and_weight_transforms(rng):
    # One tile: A^T [(G g G^T) * (B^T d B)] A is the 3x3 correlation of d with g.
    d, g = rng.normal(size=(4, 4)), rng.normal(size=(3, 3))
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T, direct, rtol=1e-12)
    # The kernel's transform, and the one its transpose (flipped, channels swapped) reads.
    w = rng.normal(size=(5, 4, 3, 3))
    u = kernels.winograd_weights(w)
    expected = np.einsum("ki,ocij,lj->kloc", G, w, G).reshape(16, 5, 4)
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-15)
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    np.testing.assert_allclose(u[kernels.FLIPPED_POSITIONS].transpose(0, 2, 1),
                               kernels.winograd_weights(np.ascontiguousarray(flipped)), rtol=1e-12)


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("seed", range(6))
def test_winograd_convolution_matches_reference(seed, dtype, tolerance):
    # Random channel counts (the kernel itself, whichever direction uses_winograd picks it
    # for), odd and even sizes, paddings 0-2; the transposed correlation is the input signal.
    rng = np.random.default_rng(300 + seed)
    n, c, o = int(rng.integers(1, 4)), int(rng.integers(8, 20)), int(rng.integers(8, 20))
    h, w_, p = int(rng.integers(3, 14)), int(rng.integers(3, 14)), int(rng.integers(0, 3))
    x = rng.normal(size=(n, c, h, w_)).astype(dtype)
    w, b = rng.normal(size=(o, c, 3, 3)).astype(dtype), rng.normal(size=o).astype(dtype)
    u = kernels.winograd_weights(w)
    y = kernels.winograd_conv2d(x, u, b, p)
    naive = reference.conv2d_forward(x.astype(float), w.astype(float), b.astype(float), 1, p)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, naive, rtol=tolerance, atol=tolerance)
    dy = rng.normal(size=y.shape).astype(dtype)
    dx = kernels.winograd_conv2d(dy, u, np.zeros(c, dtype), 2 - p, transposed=True)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(
        dx, reference.conv2d_backward_input(dy.astype(float), w.astype(float), x.shape, 1, p),
        rtol=tolerance, atol=tolerance)


def test_winograd_chunks_of_images_equal_reference(monkeypatch, rng):
    x, w, b = rng.normal(size=(5, 8, 7, 6)), rng.normal(size=(9, 8, 3, 3)), rng.normal(size=9)
    per_image = kernels.WINOGRAD_POSITIONS * 9 * 4 * 3  # 4 x 3 tiles of the 7 x 6 output
    monkeypatch.setattr(kernels, "COLUMN_BUDGET", 2 * per_image)
    assert kernels._chunks(5, per_image) == [(0, 2), (2, 4), (4, 5)]
    np.testing.assert_allclose(kernels.winograd_conv2d(x, kernels.winograd_weights(w), b, 1),
                               reference.conv2d_forward(x, w, b, 1, 1), rtol=1e-12)


@pytest.mark.parametrize("c, o, forward, backward", [
    (3, 64, False, False),     # VGG's RGB input
    (16, 64, False, False),    # SqueezeNet's expand3x3 after a 16-channel squeeze
    (32, 128, False, False),   # ... after 32 channels (im2col by bands of rows is faster)
    (48, 192, True, False),    # ... after 48 channels: forward only (the signal reads 192)
    (64, 128, True, True),     # VGG's doubling layers
    (512, 512, True, True),
])
def test_winograd_is_chosen_per_direction(c, o, forward, backward):
    assert kernels.uses_winograd(3, 1, 1, c, o) == forward
    assert kernels.uses_winograd(3, 1, 1, c, o, transposed=True) == backward
    assert not kernels.uses_winograd(3, 2, 1, c, o) and not kernels.uses_winograd(1, 1, 0, c, o)


# GEMMs in Numba's threads, BLAS single-threaded inside.

@pytest.mark.parametrize("m,k,n", [(1, 5, 7), (2, 3, 1), (3, 8, 9), (64, 27, 50), (17, 33, 4),
                                   (64, 27, 500), (20, 300, 777)])  # the last two by columns
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_splits_rows_or_columns_and_equals_matmul(rng, m, k, n, dtype):
    a, b = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(n, k)).astype(dtype).T
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    atol = tolerance * np.sqrt(k)  # rounding of a k-term sum (np.dot's own error is as large)
    np.testing.assert_allclose(kernels.gemm(a, b), expected, rtol=tolerance, atol=atol)
    out = np.full((m, n), np.nan, dtype)
    assert kernels.gemm(a.T.copy().T, b, out) is out  # F-ordered a is copied, out written
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=atol)
    bias = rng.normal(size=m).astype(dtype)
    np.testing.assert_allclose(kernels.gemm(a, b, bias=bias), expected + bias[:, None],
                               rtol=tolerance, atol=atol)


@pytest.mark.parametrize("m,k,n", [(1, 5, 7), (8, 1, 3), (3, 40, 9), (2, 4097, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_split_inner_sums_partial_products_to_matmul(rng, m, k, n, dtype):
    a, b = rng.normal(size=(m, k)).astype(dtype), rng.normal(size=(k, n)).astype(dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    result = kernels.gemm_split_inner(a, b)
    assert result.shape == (m, n) and result.dtype == dtype
    np.testing.assert_allclose(result, a.astype(np.float64) @ b.astype(np.float64),
                               rtol=tolerance, atol=tolerance * np.sqrt(k))


def test_winograd_products_read_flipped_transposed_kernels(rng):
    u = rng.normal(size=(16, 5, 3)).astype(np.float32)
    v_forward, v_transposed = (rng.normal(size=(16, r, 6)).astype(np.float32) for r in (3, 5))
    np.testing.assert_allclose(kernels.winograd_products(u, v_forward), u @ v_forward, rtol=1e-5)
    flipped = u[kernels.FLIPPED_POSITIONS].transpose(0, 2, 1)
    np.testing.assert_allclose(kernels.winograd_products(u, v_transposed, transposed=True),
                               flipped @ v_transposed, rtol=1e-5, atol=1e-6)


def blas_threads():
    from threadpoolctl import threadpool_info
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas"}


def test_serial_blas_nests_across_threads_and_restores_the_limits():
    import threading
    with kernels.serial_blas():  # loads the BLAS that Numba calls, so both libraries are seen
        pass
    before = blas_threads()
    entered, release = threading.Barrier(3), threading.Event()

    def worker():
        with kernels.serial_blas():
            entered.wait()
            release.wait()

    workers = [threading.Thread(target=worker) for _ in range(2)]
    for t in workers:
        t.start()
    entered.wait()  # both workers are inside
    assert set(blas_threads().values()) == {1}
    with kernels.serial_blas():
        assert set(blas_threads().values()) == {1}
    release.set()
    for t in workers:
        t.join()
    assert blas_threads() == before


def test_same_values_agrees_with_array_equal(rng):
    a = rng.normal(size=(7, 5, 3, 3)).astype(np.float32)
    b = a.copy()
    assert kernels.same_values(a, b) == np.array_equal(a, b) == True  # noqa: E712
    b[3, 1, 2, 0] = np.nextafter(b[3, 1, 2, 0], np.float32(np.inf))   # one ulp apart
    assert not kernels.same_values(a, b)
    nan = a.copy()
    nan[0, 0, 0, 0] = np.nan
    assert not kernels.same_values(nan, nan.copy())                    # NaN != NaN
    assert not kernels.same_values(a, a.astype(np.float64))
    assert not kernels.same_values(a, a[:6])
    assert kernels.same_values(a[:, ::2], np.ascontiguousarray(a[:, ::2]))


def test_winograd_memo_is_kept_per_weight_array_and_follows_its_values(rng):
    w = rng.normal(size=(9, 8, 3, 3))
    u = kernels.winograd_memo(w)
    np.testing.assert_array_equal(u, kernels.winograd_weights(w))
    assert kernels.winograd_memo(w) is u                          # kept between passes
    w *= -0.5                                                     # changed in place: redone
    np.testing.assert_array_equal(kernels.winograd_memo(w), kernels.winograd_weights(w))
    other = w.copy()                                              # another array: its own memo
    assert kernels.winograd_memo(other) is not kernels.winograd_memo(w)
    key = id(other)
    del other                                                     # freed: its memo goes too
    assert key not in kernels._winograd_memos
