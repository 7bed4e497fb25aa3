"""The compiled symmetric eigensolver and square SVD (``numpy_compiled_spectral``, Numba, optional): values as
LAPACK's to rounding, vectors up to sign (a common sign per singular pair), residual and orthogonality
at rounding level; repeated eigenvalues resolved as ``_clusters`` expects; rank-deficient matrices;
tiny and huge scales; the LAPACK fallback for matrices that do not converge and without Numba; the
thread split bit for bit; the jvps the same with and without the kernels."""
import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import numpy_compiled, numpy_compiled_spectral
from cupy_ad.backends.numpy_backend import NumpyBackend
from cupy_ad.linalg._clusters import resolution
from cupy_ad.testing import check_jvp

needs_numba = pytest.mark.skipif(not numpy_compiled.available(), reason="numba is not installed (extra 'compiled')")


def _symmetric_part(a, lower):
    t = np.tril(a) if lower else np.triu(a)
    return t + np.swapaxes(np.tril(t, -1) if lower else np.triu(t, 1), -1, -2)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (7, 7), (16, 16), (5, 16, 16), (2, 3, 6, 6)])
def test_matches_lapack_to_rounding(dtype, lower, shape):
    a = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)  # not symmetric: one triangle read
    keep = a.copy()
    w, v = numpy_compiled_spectral.eigh(a, lower)
    w0, v0 = np.linalg.eigh(a, UPLO="L" if lower else "U")
    assert (w.dtype, v.dtype, w.shape, v.shape) == (w0.dtype, v0.dtype, w0.shape, v0.shape)
    eps, n = np.finfo(dtype).eps, shape[-1]
    scale = np.abs(w0).max()
    np.testing.assert_allclose(w, w0, rtol=0, atol=8 * n * eps * scale)
    s = _symmetric_part(a.astype(np.float64), lower)
    assert np.abs(s @ v - v * w[..., None, :]).max() <= 8 * n * eps * scale
    assert np.abs(np.swapaxes(v, -1, -2) @ v - np.eye(n)).max() <= 8 * n * eps
    # each eigenvector is LAPACK's up to its sign (the eigenvalues of random matrices are well apart)
    np.testing.assert_allclose(np.abs(np.sum(v * v0, axis=-2)), 1, atol=1e-4 if dtype == np.float32 else 1e-9)
    assert np.all(np.diff(w, axis=-1) >= 0)
    np.testing.assert_array_equal(a, keep)  # input untouched


@needs_numba
@pytest.mark.parametrize("n", [4, 9, 16])
def test_repeated_eigenvalues_come_out_within_the_cluster_resolution(n):
    """Q diag(w) Q^T with w repeating: each run of equal w within resolution(n) eps max|w| of its neighbours
    (what linalg._clusters joins), as LAPACK's; the identity and the zero matrix exactly."""
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((300, n, n)))
    values = np.sort(rng.integers(-2, 3, size=(300, n)).astype(float), axis=-1)
    a = (q * values[:, None, :]) @ np.swapaxes(q, -1, -2)
    w, v = numpy_compiled_spectral.eigh(a, True)
    eps = np.finfo(np.float64).eps
    gaps = np.diff(w, axis=-1) / (eps * np.abs(w).max(axis=-1, keepdims=True))
    assert np.where(np.diff(values, axis=-1) == 0, gaps, 0).max() <= resolution(n, 1.0)
    assert np.abs(a @ v - v * w[:, None, :]).max() <= 64 * eps * 2
    for special in (np.eye(n), np.zeros((n, n)), np.diag(np.arange(n, 0, -1.0))):  # no step needed: exact
        w, v = numpy_compiled_spectral.eigh(special, True)
        np.testing.assert_array_equal(w, np.sort(np.diag(special)))
        np.testing.assert_array_equal(special @ v, v * w)
        np.testing.assert_array_equal(np.sort(np.abs(v), axis=0)[:-1], 0)  # a permutation, up to signs


@needs_numba
@pytest.mark.parametrize("scale", [2.0 ** -990, 2.0 ** -1070, 2.0 ** 990])
def test_tiny_and_huge_scales_neither_overflow_nor_underflow(scale):
    a = np.random.default_rng(5).standard_normal((4, 8, 8))
    a = a + np.swapaxes(a, -1, -2)
    w1, v1 = numpy_compiled_spectral.eigh(a, True)
    w, v = numpy_compiled_spectral.eigh(a * scale, True)
    assert np.all(np.isfinite(w)) and np.all(np.isfinite(v))
    if scale > 1e-300:  # (a power of two, not subnormal: scaled back to [1, 2) exactly, the same arithmetic)
        np.testing.assert_array_equal(v, v1)
        np.testing.assert_allclose(w, w1 * scale, rtol=1e-15, atol=0)
    else:  # (a subnormal matrix holds only a few digits: the eigenvalues of what it holds)
        np.testing.assert_allclose(w, np.linalg.eigvalsh(a * scale), rtol=0, atol=1e-3 * abs(w).max())


@needs_numba
def test_matrices_that_do_not_converge_go_to_lapack():
    """With no QL step allowed every matrix needing one is LAPACK's, bit for bit; a diagonal one needs none;
    a non-finite one goes to LAPACK too, with NumPy's outcome (the backend replaces those before)."""
    a = np.random.default_rng(6).standard_normal((6, 5, 5))
    a[2] = np.diag([3.0, -1.0, 2.0, 0.0, 5.0])
    w, v = numpy_compiled_spectral.eigh(a, True, limit=0)
    w0, v0 = np.linalg.eigh(a)
    keep = np.arange(6) != 2
    np.testing.assert_array_equal(w[keep], w0[keep])
    np.testing.assert_array_equal(v[keep], v0[keep])
    np.testing.assert_array_equal(w[2], [-1.0, 0.0, 2.0, 3.0, 5.0])
    np.testing.assert_array_equal(np.abs(v[2]), np.eye(5)[:, [1, 3, 2, 0, 4]])
    a[4, 1, 0] = np.inf  # (LAPACK: NaN in its output)
    for got, want in zip(numpy_compiled_spectral.eigh(a, True), np.linalg.eigh(a)):
        np.testing.assert_array_equal(got[4], want[4])
    a[4, 1, 0] = np.nan  # (LAPACK: no convergence)
    with pytest.raises(np.linalg.LinAlgError):
        numpy_compiled_spectral.eigh(a, True)


@needs_numba
def test_the_thread_split_gives_the_one_thread_result_bit_for_bit(monkeypatch):
    a = np.random.default_rng(7).standard_normal((96, 16, 16))  # work 96 x 16^3 >= numpy_threads.MIN_WORK
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "1")
    one = numpy_compiled_spectral.eigh(a, False)
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "3")
    split = numpy_compiled_spectral.eigh(a, False)
    for x, y in zip(one, split):
        np.testing.assert_array_equal(x, y)


def test_without_numba_the_backend_runs_lapack(monkeypatch):
    a = np.random.default_rng(8).standard_normal((3, 6, 6))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled_spectral.eigh(a, True) is None
    for got, want in zip(NumpyBackend().eigh(a, True), np.linalg.eigh(a)):
        np.testing.assert_array_equal(got, want)


def test_backend_leaves_complex_and_larger_matrices_to_lapack():
    rng = np.random.default_rng(9)
    for a in (rng.standard_normal((2, 4, 4)) + 1j * rng.standard_normal((2, 4, 4)),
              rng.standard_normal((2, numpy_compiled_spectral.MAX_N + 1, numpy_compiled_spectral.MAX_N + 1))):
        assert numpy_compiled_spectral.eigh(a, True) is None
        for got, want in zip(NumpyBackend().eigh(a, True), np.linalg.eigh(a)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eigh_jvp_agrees_with_and_without_the_compiled_kernel(dtype, monkeypatch):
    """The jvp through the kernel (Numba present) against finite differences, and against the jvp through
    LAPACK (Numba absent): eigenvalues and their tangents to rounding, eigenvectors and theirs up to each
    column's sign; the same at a repeated eigenvalue (the degenerate path), where V is rotated by the rule."""
    rng = np.random.default_rng(10)
    a = rng.standard_normal((3, 6, 6))
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a[1] = (q * np.array([1.0, 1.0, 1.0, 2.0, -3.0, 4.0])) @ q.T
    a, da = a.astype(dtype), rng.standard_normal(a.shape).astype(dtype)

    def invariant(x):  # sign-free outputs for the finite differences
        w, v = ad.linalg.eigh(x)
        return w, v * v
    check_jvp(invariant, (a[[0, 2]],), (da[[0, 2]],))
    (w, v), (dw, dv) = ad.jvp(ad.linalg.eigh, (a,), (da,))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    (w0, v0), (dw0, dv0) = ad.jvp(ad.linalg.eigh, (a,), (da,))
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == np.float32 else dict(rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(w, w0, **tol)
    np.testing.assert_allclose(dw, dw0, **tol)
    sign = np.sign(np.sum(v * v0, axis=-2, keepdims=True))
    np.testing.assert_allclose(v * sign, v0, **tol)
    np.testing.assert_allclose(dv * sign, dv0, **tol)


# --------------------------------------------------------------------------- SVD of square matrices


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (3, 3), (7, 7), (16, 16), (5, 16, 16), (2, 3, 6, 6)])
def test_svd_matches_lapack_to_rounding(dtype, shape):
    a = np.random.default_rng(sum(shape) + 1).standard_normal(shape).astype(dtype)
    keep = a.copy()
    u, s, vh = numpy_compiled_spectral.svd(a)
    u0, s0, vh0 = np.linalg.svd(a)
    assert [(x.dtype, x.shape) for x in (u, s, vh)] == [(x.dtype, x.shape) for x in (u0, s0, vh0)]
    eps, n = np.finfo(dtype).eps, shape[-1]
    scale = s0.max()
    np.testing.assert_allclose(s, s0, rtol=0, atol=8 * n * eps * scale)
    assert np.abs((u * s[..., None, :]) @ vh - a).max() <= 8 * n * eps * scale
    assert np.abs(np.swapaxes(u, -1, -2) @ u - np.eye(n)).max() <= 8 * n * eps
    assert np.abs(vh @ np.swapaxes(vh, -1, -2) - np.eye(n)).max() <= 8 * n * eps
    su, sv = np.sum(u * u0, axis=-2), np.sum(vh * vh0, axis=-1)  # (random matrices: distinct singular values)
    np.testing.assert_allclose(np.abs(su), 1, atol=1e-3 if dtype == np.float32 else 1e-9)
    np.testing.assert_array_equal(np.sign(su), np.sign(sv))  # a common sign per pair
    np.testing.assert_array_equal(a, keep)


@needs_numba
def test_svd_of_rank_deficient_and_special_matrices():
    """Zero, identity, rank-one and rank-deficient matrices: a valid SVD (through the kernel or, where the
    iteration stalls on a zero diagonal entry, LAPACK's), singular values as LAPACK's to rounding."""
    rng = np.random.default_rng(11)
    n = 6
    low_rank = rng.standard_normal((4, n, 3)) @ rng.standard_normal((4, 3, n))
    cases = np.concatenate([np.zeros((1, n, n)), np.eye(n)[None], np.outer(np.arange(n), np.ones(n))[None], low_rank,
                            np.diag([3.0, 0.0, -2.0, 0.0, 1.0, 5.0])[None]])
    u, s, vh = numpy_compiled_spectral.svd(cases)
    s0 = np.linalg.svd(cases, compute_uv=False)
    eps = np.finfo(np.float64).eps
    np.testing.assert_allclose(s, s0, rtol=0, atol=64 * eps * max(s0.max(), 1))
    assert np.all(np.diff(s, axis=-1) <= 0) and np.all(s >= 0)
    np.testing.assert_allclose((u * s[..., None, :]) @ vh, cases, rtol=0, atol=64 * eps * s0.max())
    np.testing.assert_allclose(np.swapaxes(u, -1, -2) @ u, np.broadcast_to(np.eye(n), u.shape), atol=64 * eps)
    np.testing.assert_allclose(vh @ np.swapaxes(vh, -1, -2), np.broadcast_to(np.eye(n), u.shape), atol=64 * eps)


@needs_numba
@pytest.mark.parametrize("n", [4, 16])
def test_repeated_singular_values_come_out_within_the_cluster_resolution(n):
    rng = np.random.default_rng(n + 100)
    q1, _ = np.linalg.qr(rng.standard_normal((300, n, n)))
    q2, _ = np.linalg.qr(rng.standard_normal((300, n, n)))
    values = -np.sort(-rng.integers(1, 4, size=(300, n)).astype(float), axis=-1)
    _, s, _ = numpy_compiled_spectral.svd((q1 * values[:, None, :]) @ np.swapaxes(q2, -1, -2))
    gaps = -np.diff(s, axis=-1) / (np.finfo(np.float64).eps * s.max(axis=-1, keepdims=True))
    assert np.where(np.diff(values, axis=-1) == 0, gaps, 0).max() <= resolution(n, 1.0)


@needs_numba
def test_svd_matrices_that_do_not_converge_go_to_lapack():
    a = np.random.default_rng(12).standard_normal((5, 4, 4))
    a[1] = np.diag([2.0, -1.0, 4.0, 3.0])  # diagonal: no step needed
    u, s, vh = numpy_compiled_spectral.svd(a, limit=0)
    keep = np.arange(5) != 1
    for got, want in zip((u, s, vh), np.linalg.svd(a)):
        np.testing.assert_array_equal(got[keep], want[keep])
    np.testing.assert_array_equal(s[1], [4.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal((u[1] * s[1]) @ vh[1], a[1])
    a[3, 2, 1] = np.nan  # (LAPACK: no convergence, as NumPy raises; the backend replaces such matrices before)
    with pytest.raises(np.linalg.LinAlgError):
        numpy_compiled_spectral.svd(a)


@needs_numba
@pytest.mark.parametrize("scale", [2.0 ** -990, 2.0 ** 990])
def test_svd_of_tiny_and_huge_matrices(scale):
    a = np.random.default_rng(13).standard_normal((3, 8, 8))
    one = numpy_compiled_spectral.svd(a)
    u, s, vh = numpy_compiled_spectral.svd(a * scale)
    np.testing.assert_array_equal(u, one[0])
    np.testing.assert_array_equal(vh, one[2])
    np.testing.assert_array_equal(s, one[1] * scale)


@needs_numba
def test_svd_thread_split_gives_the_one_thread_result_bit_for_bit(monkeypatch):
    a = np.random.default_rng(14).standard_normal((96, 16, 16))
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "1")
    one = numpy_compiled_spectral.svd(a)
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "3")
    for x, y in zip(one, numpy_compiled_spectral.svd(a)):
        np.testing.assert_array_equal(x, y)


def test_svd_leaves_other_shapes_complex_and_no_numba_to_lapack(monkeypatch):
    rng = np.random.default_rng(15)
    backend = NumpyBackend()
    for a in (rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3, 5)),
              rng.standard_normal((2, 4, 4)) + 1j * rng.standard_normal((2, 4, 4)),
              rng.standard_normal((2, numpy_compiled_spectral.MAX_N + 1, numpy_compiled_spectral.MAX_N + 1))):
        assert numpy_compiled_spectral.svd(a) is None
        for full in (False, True):
            for got, want in zip(backend.svd(a, full), np.linalg.svd(a, full_matrices=full)):
                np.testing.assert_array_equal(got, want)
    a = rng.standard_normal((3, 6, 6))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled_spectral.svd(a) is None
    for got, want in zip(backend.svd(a, False), np.linalg.svd(a)):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_svd_jvp_agrees_with_and_without_the_compiled_kernel(dtype, monkeypatch):
    """The svd jvp through the kernel against finite differences (sign-free outputs) and against the jvp
    through LAPACK: values and tangents to rounding, each pair and its tangents up to the pair's sign."""
    rng = np.random.default_rng(16)
    a, da = rng.standard_normal((3, 5, 5)).astype(dtype), rng.standard_normal((3, 5, 5)).astype(dtype)

    def invariant(x):
        u, s, vh = ad.linalg.svd(x)
        return s, u * u, vh * vh, u @ vh
    check_jvp(invariant, (a,), (da,))
    (u, s, vh), (du, ds, dvh) = ad.jvp(ad.linalg.svd, (a,), (da,))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    (u0, s0, vh0), (du0, ds0, dvh0) = ad.jvp(ad.linalg.svd, (a,), (da,))
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == np.float32 else dict(rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(s, s0, **tol)
    np.testing.assert_allclose(ds, ds0, **tol)
    columns = np.sign(np.sum(u * u0, axis=-2, keepdims=True))  # each pair's sign: U's columns, Vh's rows
    rows = np.swapaxes(columns, -1, -2)
    for x, x0, sign in ((u, u0, columns), (du, du0, columns), (vh, vh0, rows), (dvh, dvh0, rows)):
        np.testing.assert_allclose(x * sign, x0, **tol)
