"""NumPy's own LAPACK through ctypes (backends/numpy_lapack.py): getrf equals SciPy's lu_factor and
QR through gelqf/orglq on the transposed view, and a small one through SciPy's geqrf/orgqr, equal
numpy.linalg.qr, for every dtype and shape; the NumPy backend uses them where they are faster and
falls back without them."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

import cupy_ad as ad
from cupy_ad.backends import numpy_kernels, numpy_lapack

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(1, 1), (4, 4), (7, 3), (3, 7), (9, 1), (1, 9), (33, 20), (20, 33)]


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
    return a.astype(dtype)


def _eps(dtype):
    return np.finfo(dtype).eps


def test_routines_found():
    assert all(numpy_kernels.lapack(p + r) is not None for p in "sdcz" for r in ("getrf", "gelqf"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_getrf_equals_scipy(shape, dtype):
    a = _random(shape, dtype, seed=1)
    a0 = a.copy()
    lu, piv = numpy_lapack.getrf(a)
    lu_ref, piv_ref = scipy.linalg.lu_factor(a)
    np.testing.assert_array_equal(piv, piv_ref)
    assert lu.dtype == lu_ref.dtype and piv.dtype == np.int32
    assert np.max(np.abs(lu - lu_ref)) <= 4 * _eps(dtype) * np.max(np.abs(lu_ref))
    np.testing.assert_array_equal(a, a0)


def test_getrf_warns_at_zero_pivot_as_scipy():
    a = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.warns(scipy.linalg.LinAlgWarning, match="Diagonal number 2"):
        numpy_lapack.getrf(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qr_via_lq_equals_numpy(shape, dtype):
    """Same factors as geqrf/orgqr (LAPACK's gauge: real diag(R), numpy's signs), to rounding."""
    a = _random(shape, dtype, seed=2)
    a0 = a.copy()
    q, r = numpy_lapack.qr(a, "reduced")
    q_ref, r_ref = np.linalg.qr(a)
    assert q.shape == q_ref.shape and r.shape == r_ref.shape and q.dtype == q_ref.dtype and q.flags.c_contiguous
    scale = 50 * _eps(dtype) * max(1.0, np.max(np.abs(r_ref)))
    assert np.max(np.abs(q - q_ref)) <= scale and np.max(np.abs(r - r_ref)) <= scale
    np.testing.assert_array_equal(np.tril(r, -1), 0)
    np.testing.assert_array_equal(numpy_lapack.qr(a, "r"), r)
    np.testing.assert_array_equal(a, a0)


def test_qr_modes_and_inputs_it_leaves_to_numpy():
    assert numpy_lapack.qr(np.ones((5, 3)), "complete") is None
    assert numpy_lapack.qr(np.ones((2, 5, 3)), "reduced") is None
    assert numpy_lapack.qr(np.ones((0, 3)), "reduced") is None
    assert numpy_lapack.qr(np.ones((3, 3), dtype=np.float16), "reduced") is None


@pytest.mark.parametrize("shape, dtype", [((160, 130), np.float32), ((130, 130), np.float64),
                                          ((130, 200), np.complex128), ((300, 130), np.float64)])
def test_backend_qr_and_jvp_on_the_lq_path(shape, dtype):
    """Matrices large enough for the backend to take gelqf/orglq (or NumPy for tall float64)."""
    a = _random(shape, dtype, seed=3)
    q, r = ad.linalg.qr(a)
    q_ref, r_ref = np.linalg.qr(a)
    tol = 200 * _eps(dtype) * np.max(np.abs(r_ref))
    assert np.max(np.abs(q - q_ref)) <= tol and np.max(np.abs(r - r_ref)) <= tol
    if dtype == np.float64 or dtype == np.complex128:
        ad.check_jvp(lambda x: tuple(ad.linalg.qr(x)), (a,))


def test_backend_falls_back_without_lapack(monkeypatch):
    a = _random((140, 140), np.float64, seed=4)
    fast = ad.namespace("numpy").backend.lu_factor(a), ad.namespace("numpy").backend.qr(a, "reduced")
    functions = {k: v for k, v in numpy_kernels._library.load().items() if not k[1:].startswith(("getrf", "gelqf"))}
    monkeypatch.setattr(numpy_kernels._library, "functions", functions)
    assert numpy_lapack.getrf(a) is None and numpy_lapack.qr(a, "reduced") is None
    backend = ad.namespace("numpy").backend
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slow = backend.lu_factor(a), backend.qr(a, "reduced")
    for x, y in zip(fast, slow):
        for u, v in zip(x, y):
            np.testing.assert_allclose(u, v, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("full_matrices", [False, True])
def test_svd_on_the_view_is_an_svd(shape, dtype, full_matrices):
    """U S Vh = A, U and Vh unitary, S equal to NumPy's (the vectors' signs are LAPACK's choice)."""
    a = _random(shape, dtype, seed=5)
    a0 = a.copy()
    if full_matrices and shape[0] != shape[1]:  # NumPy's own completion is kept (see numpy_lapack.svd)
        assert numpy_lapack.svd(a, full_matrices) is None
        return
    u, s, vh = numpy_lapack.svd(a, full_matrices)
    u_ref, s_ref, vh_ref = np.linalg.svd(a, full_matrices=full_matrices)
    assert (u.shape, s.shape, vh.shape) == (u_ref.shape, s_ref.shape, vh_ref.shape)
    assert (u.dtype, s.dtype, vh.dtype) == (u_ref.dtype, s_ref.dtype, vh_ref.dtype)
    k = min(shape)
    tol = 30 * _eps(dtype) * max(1.0, s_ref[0])
    assert np.max(np.abs((u[:, :k] * s) @ vh[:k] - a)) <= tol
    assert np.max(np.abs(s - s_ref)) <= tol
    for x in (u.conj().T @ u, vh @ vh.conj().T):
        assert np.max(np.abs(x - np.eye(x.shape[0]))) <= 30 * _eps(dtype)
    np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 4, 17])
@pytest.mark.parametrize("lower", [True, False])
def test_eigh_on_the_view_reads_the_right_triangle(n, dtype, lower):
    a = _random((n, n), dtype, seed=6)  # not Hermitian: only the chosen triangle (real diagonal) counts
    a0 = a.copy()
    w, v = numpy_lapack.eigh(a, lower)
    w_ref, v_ref = np.linalg.eigh(a, UPLO="L" if lower else "U")
    assert w.dtype == w_ref.dtype and v.dtype == v_ref.dtype
    t = np.tril(a, -1) if lower else np.triu(a, 1)
    h = t + t.conj().T + np.diag(np.diag(a).real)
    tol = 30 * _eps(dtype) * max(1.0, np.max(np.abs(w_ref)))
    assert np.max(np.abs(w - w_ref)) <= tol
    assert np.max(np.abs(h @ v - v * w)) <= tol
    assert np.max(np.abs(v.conj().T @ v - np.eye(n))) <= 30 * _eps(dtype)
    np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_backend_eigh_and_svd_on_the_view_path(dtype):
    """n >= LAPACK_ON_VIEW_MIN: the backend takes syevd/gesdd on the view; JVPs and NaN handling hold.
    Complex vectors carry a free phase that finite differences of the primal do not follow (on either
    path): their check uses phase-free functions (|v|^2, the rank-one terms)."""
    from cupy_ad.backends.numpy_backend import LAPACK_ON_VIEW_MIN

    n = LAPACK_ON_VIEW_MIN + 3
    a = _random((n, n), dtype, seed=7)
    if dtype == np.float64:
        ad.check_jvp(lambda x: tuple(ad.linalg.eigh(x)), (a,))
        for full_matrices in (False, True):
            ad.check_jvp(lambda x, fm=full_matrices: tuple(ad.linalg.svd(x, full_matrices=fm)), (a,))
    else:
        xp = ad.namespace("numpy")

        def eigh_phase_free(x):
            w, v = ad.linalg.eigh(x)
            return w, xp.real(v * xp.conj(v)), xp.matmul(v[:, :3] * w[:3], xp.conj(xp.matrix_transpose(v[:, :3])))

        def svd_phase_free(x):
            u, s, vh = ad.linalg.svd(x, full_matrices=False)
            return s, xp.real(u * xp.conj(u)), xp.matmul(u[:, :3] * s[:3], vh[:3])

        ad.check_jvp(eigh_phase_free, (a,))
        ad.check_jvp(svd_phase_free, (a,))
    bad = a.copy()
    bad[3, 4] = np.nan
    assert np.isnan(ad.linalg.svd(bad)[1]).all() and np.isnan(ad.linalg.eigh(bad)[0]).all()


def test_view_path_is_the_same_alone_and_in_a_batch():
    """A matrix gets the same eigen/singular vectors (signs included) alone and inside a batch."""
    from cupy_ad.backends.numpy_backend import LAPACK_ON_VIEW_MIN

    n = LAPACK_ON_VIEW_MIN
    a = _random((3, n, n), np.float64, seed=8)
    backend = ad.namespace("numpy").backend
    batched_eigh, batched_svd = backend.eigh(a, True), backend.svd(a, False)
    for i in range(3):
        for alone, batched in ((backend.eigh(a[i], True), batched_eigh), (backend.svd(a[i], False), batched_svd)):
            for x, y in zip(alone, batched):
                np.testing.assert_array_equal(x, y[i])


def test_guards():
    assert numpy_lapack.eigh(np.ones((5, 4)), True) is None  # not square: left to NumPy's error
    bad = _random((6, 5), np.float64, seed=9)
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="LAPACK rejected argument"):
        numpy_lapack.svd(bad, False)  # the backend replaces non-finite matrices before calling
    # Rank 2 with pivots 4, 2 and multipliers 1/2, 1/4: every elimination step is exact, so the last
    # pivot is exactly 0 whatever order (or fused multiply-adds) the BLAS kernel uses.
    a = np.array([[4.0, 4.0, 8.0], [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]])
    with pytest.warns(scipy.linalg.LinAlgWarning, match="Diagonal number 3 is exactly zero"):
        numpy_lapack.getrf(a)
    with pytest.warns(scipy.linalg.LinAlgWarning, match="Diagonal number 3 is exactly zero"):
        scipy.linalg.lu_factor(a)  # (the message is SciPy's)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("shape", [(16, 16), (20, 7), (5, 12), (1, 1), (32, 32)])
@pytest.mark.parametrize("mode", ["reduced", "r"])
def test_small_qr_is_numpys(dtype, shape, mode):
    """One small matrix's QR from two LAPACK calls (numpy_backend._small_qr, taken from the backend's qr):
    numpy.linalg.qr's factors, dtypes and shapes, to rounding (another library's BLAS may round
    otherwise); Q orthonormal, Q R = A."""
    from cupy_ad.backends import numpy_backend

    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
    a = a.astype(dtype)
    keep = a.copy()
    got = numpy_backend.NumpyBackend().qr(a, mode)
    assert max(shape) <= numpy_backend.SMALL_QR_MAX
    want = np.linalg.qr(a, mode=mode)
    got, want = (got, want) if mode != "r" else ((got,), (want,))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-13 * max(1.0, np.abs(a).max()))
    np.testing.assert_array_equal(a, keep)
    if mode != "r":
        q, r = got
        np.testing.assert_allclose(q.conj().T @ q, np.eye(q.shape[1]), atol=1e-14)
        np.testing.assert_allclose(q @ r, a, atol=1e-13)
        np.testing.assert_array_equal(np.tril(r, -1), 0)
