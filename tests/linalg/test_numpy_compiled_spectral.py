"""The compiled symmetric eigensolver and square SVD (``numpy_compiled_spectral``'s kernels through
``numpy_compiled_decompositions``, Numba, optional): values as LAPACK's to rounding, vectors up to sign (a
common sign per singular pair), residual and orthogonality at rounding level; repeated eigenvalues resolved as
``_clusters`` expects; rank-deficient matrices; tiny and huge scales; the LAPACK fallback for matrices that do
not converge and without Numba; the thread split bit for bit; the jvps the same with and without the kernels."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import numpy_compiled, numpy_compiled_decompositions, numpy_compiled_spectral
from cupy_ad.backends.numpy_backend import NumpyBackend
from cupy_ad.backends.numpy_compiled_decompositions import MAX_N
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
    w, v = numpy_compiled_decompositions.eigh(a, lower)
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
    w, v = numpy_compiled_decompositions.eigh(a, True)
    eps = np.finfo(np.float64).eps
    gaps = np.diff(w, axis=-1) / (eps * np.abs(w).max(axis=-1, keepdims=True))
    assert np.where(np.diff(values, axis=-1) == 0, gaps, 0).max() <= resolution(n, 1.0)
    assert np.abs(a @ v - v * w[:, None, :]).max() <= 64 * eps * 2
    for special in (np.eye(n), np.zeros((n, n)), np.diag(np.arange(n, 0, -1.0))):  # no step needed: exact
        w, v = numpy_compiled_decompositions.eigh(special, True)
        np.testing.assert_array_equal(w, np.sort(np.diag(special)))
        np.testing.assert_array_equal(special @ v, v * w)
        np.testing.assert_array_equal(np.sort(np.abs(v), axis=0)[:-1], 0)  # a permutation, up to signs


@needs_numba
@pytest.mark.parametrize("scale", [2.0 ** -990, 2.0 ** -1070, 2.0 ** 990])
def test_tiny_and_huge_scales_neither_overflow_nor_underflow(scale):
    a = np.random.default_rng(5).standard_normal((4, 8, 8))
    a = a + np.swapaxes(a, -1, -2)
    w1, v1 = numpy_compiled_decompositions.eigh(a, True)
    w, v = numpy_compiled_decompositions.eigh(a * scale, True)
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
    w, v = numpy_compiled_decompositions.eigh(a, True, limit=0)
    w0, v0 = np.linalg.eigh(a)
    keep = np.arange(6) != 2
    np.testing.assert_array_equal(w[keep], w0[keep])
    np.testing.assert_array_equal(v[keep], v0[keep])
    np.testing.assert_array_equal(w[2], [-1.0, 0.0, 2.0, 3.0, 5.0])
    np.testing.assert_array_equal(np.abs(v[2]), np.eye(5)[:, [1, 3, 2, 0, 4]])
    a[4, 1, 0] = np.inf  # (LAPACK: NaN in its output)
    for got, want in zip(numpy_compiled_decompositions.eigh(a, True), np.linalg.eigh(a)):
        np.testing.assert_array_equal(got[4], want[4])
    a[4, 1, 0] = np.nan  # (LAPACK: no convergence)
    with pytest.raises(np.linalg.LinAlgError):
        numpy_compiled_decompositions.eigh(a, True)


@needs_numba
def test_the_thread_split_gives_the_one_thread_result_bit_for_bit(monkeypatch):
    a = np.random.default_rng(7).standard_normal((96, 16, 16))  # work 96 x 16^3 >= numpy_threads.MIN_WORK
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "1")
    one = numpy_compiled_decompositions.eigh(a, False)
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "3")
    split = numpy_compiled_decompositions.eigh(a, False)
    for x, y in zip(one, split):
        np.testing.assert_array_equal(x, y)


def test_without_numba_the_backend_runs_lapack(monkeypatch):
    a = np.random.default_rng(8).standard_normal((3, 6, 6))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled_decompositions.eigh(a, True) is None
    for got, want in zip(NumpyBackend().eigh(a, True), np.linalg.eigh(a)):
        np.testing.assert_array_equal(got, want)


def test_backend_leaves_complex_and_larger_matrices_to_lapack():
    rng = np.random.default_rng(9)
    for a in (rng.standard_normal((2, 4, 4)) + 1j * rng.standard_normal((2, 4, 4)),
              rng.standard_normal((2, MAX_N + 1, MAX_N + 1))):
        assert numpy_compiled_decompositions.eigh(a, True) is None
        for got, want in zip(NumpyBackend().eigh(a, True), np.linalg.eigh(a)):
            np.testing.assert_array_equal(got, want)


def test_eigh_takes_square_matrices_only():
    # None for (..., m, n) with m != n and for fewer than two dimensions: the kernel reads n x n matrices from
    # ``_run``'s stack of m x n ones (m x n since QR), so (2, 3, 4) and (4, 2, 8) were read past the stack's end
    for shape in ((2, 3, 4), (2, 4, 3), (4, 2, 8), (3,)):
        assert numpy_compiled_decompositions.eigh(np.ones(shape), True) is None


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
    u, s, vh = numpy_compiled_decompositions.svd(a)
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
    u, s, vh = numpy_compiled_decompositions.svd(cases)
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
    _, s, _ = numpy_compiled_decompositions.svd((q1 * values[:, None, :]) @ np.swapaxes(q2, -1, -2))
    gaps = -np.diff(s, axis=-1) / (np.finfo(np.float64).eps * s.max(axis=-1, keepdims=True))
    assert np.where(np.diff(values, axis=-1) == 0, gaps, 0).max() <= resolution(n, 1.0)


@needs_numba
def test_svd_matrices_that_do_not_converge_go_to_lapack():
    a = np.random.default_rng(12).standard_normal((5, 4, 4))
    a[1] = np.diag([2.0, -1.0, 4.0, 3.0])  # diagonal: no step needed
    u, s, vh = numpy_compiled_decompositions.svd(a, limit=0)
    keep = np.arange(5) != 1
    for got, want in zip((u, s, vh), np.linalg.svd(a)):
        np.testing.assert_array_equal(got[keep], want[keep])
    np.testing.assert_array_equal(s[1], [4.0, 3.0, 2.0, 1.0])
    np.testing.assert_array_equal((u[1] * s[1]) @ vh[1], a[1])
    a[3, 2, 1] = np.nan  # (LAPACK: no convergence, as NumPy raises; the backend replaces such matrices before)
    with pytest.raises(np.linalg.LinAlgError):
        numpy_compiled_decompositions.svd(a)


@needs_numba
@pytest.mark.parametrize("scale", [2.0 ** -990, 2.0 ** 990])
def test_svd_of_tiny_and_huge_matrices(scale):
    a = np.random.default_rng(13).standard_normal((3, 8, 8))
    one = numpy_compiled_decompositions.svd(a)
    u, s, vh = numpy_compiled_decompositions.svd(a * scale)
    np.testing.assert_array_equal(u, one[0])
    np.testing.assert_array_equal(vh, one[2])
    np.testing.assert_array_equal(s, one[1] * scale)


@needs_numba
def test_svd_thread_split_gives_the_one_thread_result_bit_for_bit(monkeypatch):
    a = np.random.default_rng(14).standard_normal((96, 16, 16))
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "1")
    one = numpy_compiled_decompositions.svd(a)
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "3")
    for x, y in zip(one, numpy_compiled_decompositions.svd(a)):
        np.testing.assert_array_equal(x, y)


def test_svd_leaves_other_shapes_complex_and_no_numba_to_lapack(monkeypatch):
    rng = np.random.default_rng(15)
    backend = NumpyBackend()
    for a in (rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 3, 5)),
              rng.standard_normal((2, 4, 4)) + 1j * rng.standard_normal((2, 4, 4)),
              rng.standard_normal((2, MAX_N + 1, MAX_N + 1))):
        assert numpy_compiled_decompositions.svd(a) is None
        for full in (False, True):
            for got, want in zip(backend.svd(a, full), np.linalg.svd(a, full_matrices=full)):
                np.testing.assert_array_equal(got, want)
    a = rng.standard_normal((3, 6, 6))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled_decompositions.svd(a) is None
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


@needs_numba
def test_rarely_split_repeated_eigenvalues_still_come_out_as_a_cluster():
    """One matrix in about 4000 of Q diag(w) Q^T (w in {-2, ..., 2}, n = 14) had a repeated eigenvalue split by
    the QL iteration beyond the cluster resolution (18 eps max|w| here with OPENBLAS_CORETYPE unset): its jvp
    took the ordinary path (eigenvector tangents ~1e14, the repeated eigenvalues' tangents the diagonal of
    V^T dA V instead of the eigenvalues of its block). Nearly repeated eigenvalues now send the matrix to
    LAPACK: the backend splits them no more than the resolution or LAPACK's syevd (which, itself, splits
    two of these by 17 eps max|w| with OPENBLAS_CORETYPE=Haswell), and the jvp where the kernel alone
    splits most is the degenerate path's."""
    rng = np.random.default_rng(1)
    n, count = 14, 10000
    q, _ = np.linalg.qr(rng.standard_normal((count, n, n)))
    values = np.sort(rng.integers(-2, 3, size=(count, n)).astype(float), axis=-1)
    a = (q * values[:, None, :]) @ np.swapaxes(q, -1, -2)
    eps = np.finfo(np.float64).eps

    def splits(w):  # per matrix, the widest split of a repeated eigenvalue, in eps max|w|
        return np.where(np.diff(values, axis=-1) == 0, np.diff(w, axis=-1), 0).max(axis=-1) / (eps * np.abs(w).max(axis=-1))
    flags = (True, numpy_compiled_decompositions.STEP_LIMIT)
    _, (kernel_w, _), _ = numpy_compiled_decompositions._run("eigh", a, ((n,), (n, n)), flags,
                                                             numpy_compiled_decompositions.MAX_N)
    alone = splits(kernel_w)
    assert alone.max() >= 15  # (the kernel alone: beyond LAPACK's usual split, where the old resolution was 16)
    got = splits(NumpyBackend().eigh(a, True)[0])
    assert np.all(got <= np.maximum(resolution(n, 1.0), splits(np.linalg.eigh(a)[0])))
    worst = np.argmax(alone)
    da = rng.standard_normal((n, n))
    da = da + da.T
    (w, v), (dw, dv) = ad.jvp(ad.linalg.eigh, (a[worst],), (da,))
    assert np.abs(dv).max() < 100
    cut = np.flatnonzero(np.diff(values[worst])) + 1  # the degenerate path: per cluster, eig(Q_c^T dA Q_c)
    expected = np.concatenate([np.linalg.eigvalsh(b.T @ da @ b) for b in np.split(q[worst], cut, axis=1)])
    np.testing.assert_allclose(dw, expected, rtol=1e-9, atol=1e-9)


@needs_numba
def test_only_nearly_repeated_eigenvalues_send_a_matrix_to_lapack(monkeypatch):
    """Matrices with eigenvalues apart (random ones, a diagonal one, the zero matrix) stay compiled; those
    with eigenvalues within ``NEAR_REPEATED`` eps max|w| of each other (the identity, a repeated pair) go to
    LAPACK, and only those."""
    rng = np.random.default_rng(17)
    a = rng.standard_normal((40, 6, 6))
    a[3] = np.diag([3.0, -1.0, 2.0, 0.0, 5.0, 4.0])
    a[5] = 0.0
    a[7] = np.eye(6)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a[9] = (q * np.array([1.0, 1.0, 2.0, 3.0, 4.0, 5.0])) @ q.T
    lapack = np.linalg.eigh
    sent = []

    def counted(x, UPLO):
        sent.append(x.copy())
        return lapack(x, UPLO=UPLO)
    monkeypatch.setattr(np.linalg, "eigh", counted)
    w, v = numpy_compiled_decompositions.eigh(a, True)
    assert len(sent) == 1
    np.testing.assert_array_equal(sent[0], a[[7, 9]])
    np.testing.assert_array_equal(w[5], 0)
    np.testing.assert_array_equal(w[3], [-1.0, 0.0, 2.0, 3.0, 4.0, 5.0])


# --------------------------------------------------------------------------- entries far below the largest


def _kernel(name, a):
    """Kernel ``name``'s own outputs and failed flags, before any matrix goes to LAPACK."""
    n = a.shape[-1]
    outputs, flags = {"eigh": (((n,), (n, n)), (True,)), "svd": (((n, n), (n,), (n, n)), ())}[name]
    flags = (*flags, numpy_compiled_decompositions.STEP_LIMIT)
    _, result, failed = numpy_compiled_decompositions._run(name, a, outputs, flags, numpy_compiled_decompositions.MAX_N)
    return result, failed


def _assert_decomposes(a, w, v, reference=np.linalg.eigvalsh):
    """Invariants against LAPACK within eps ||A|| (n^2 eps): eigenvalues ascending and as ``reference``'s,
    V orthogonal, V diag(w) V^T = A."""
    eps, n = np.finfo(np.float64).eps, a.shape[-1]
    norm = np.abs(a).max(axis=(-1, -2), keepdims=True)
    assert np.all(np.diff(w, axis=-1) >= 0)
    assert np.all(np.abs(w - reference(a)) <= n * n * eps * norm[..., 0])
    assert np.abs(np.swapaxes(v, -1, -2) @ v - np.eye(n)).max() <= n * n * eps
    assert np.all(np.abs((v * w[..., None, :]) @ np.swapaxes(v, -1, -2) - a) <= n * n * eps * norm)


def _assert_svd_decomposes(a, u, s, vh):
    """The same for the SVD: singular values descending and as LAPACK's, U and V orthogonal, U S V^T = A."""
    eps, n = np.finfo(np.float64).eps, a.shape[-1]
    norm = np.abs(a).max(axis=(-1, -2), keepdims=True)
    assert np.all(np.diff(s, axis=-1) <= 0)
    assert np.all(np.abs(s - np.linalg.svd(a, compute_uv=False)) <= n * n * eps * norm[..., 0])
    assert np.abs(np.swapaxes(u, -1, -2) @ u - np.eye(n)).max() <= n * n * eps
    assert np.abs(vh @ np.swapaxes(vh, -1, -2) - np.eye(n)).max() <= n * n * eps
    assert np.all(np.abs((u * s[..., None, :]) @ vh - a) <= n * n * eps * norm)


def _with_tiny_block(rng, count, tiny, tridiagonal):
    """count symmetric 8 x 8 matrices diag(C, tiny B): C 3 x 3 of order one, B 5 x 5 (full or tridiagonal)."""
    a = np.zeros((count, 8, 8))
    c = rng.standard_normal((count, 3, 3))
    a[:, :3, :3] = c + np.swapaxes(c, -1, -2)
    b = rng.standard_normal((count, 5, 5))
    b = b + np.swapaxes(b, -1, -2)
    a[:, 3:, 3:] = tiny * (np.triu(np.tril(b, 1), -1) if tridiagonal else b)
    return a


@needs_numba
@pytest.mark.parametrize("tiny", [1e-150, 1e-155, 1e-160, 1e-170])
@pytest.mark.parametrize("tridiagonal", [False, True])
def test_eigh_of_a_block_far_below_the_largest(tiny, tridiagonal):
    """A block ~1e-155 beside one of order one: its squares are subnormal. The Householder vectors of the full
    block (sum of squares subnormal: t = 2 / u^T u was inf, V NaN) are now computed from the vector scaled by
    a power of two; the QL rotations of the tridiagonal one (r = sqrt(f^2 + g^2) subnormal: c, s not a rotation,
    V far from orthogonal) from hypot. Through the backend (where the tiny eigenvalues, all within
    ``NEAR_REPEATED`` of each other, go to LAPACK) and the kernel's own output both."""
    a = _with_tiny_block(np.random.default_rng(18), 40, tiny, tridiagonal)
    _assert_decomposes(a, *numpy_compiled_decompositions.eigh(a, True))
    (w, v), failed = _kernel("eigh", a)
    assert not failed.any()
    _assert_decomposes(a, w, v)


@needs_numba
def test_eigh_rotations_of_a_subnormal_radius():
    """A QL rotation whose radius r = hypot(f, g) is subnormal (d = 0, e = (1e-160, 1, 1): a later bulge of
    ~1e-320): 1 / r overflowed, so (c, s) = (g, f) / r became infinite and V NaN, silently (not failed) through
    the backend too, once the radius came from hypot (the plain formula gave r = 0 there: the split branch).
    Those (and every 4 x 4 tridiagonal matrix with entries in {0, 1, 1e-160, 2^-540}) decompose. Against
    numpy.linalg.eigh's values: eigvalsh's (LAPACK dsterf) are off by 5e-5 for that first matrix."""
    values = [0.0, 1.0, 1e-160, 2.0 ** -540]
    cases = [(d, e) for d in itertools.product(values, repeat=4) for e in itertools.product(values, repeat=3)]
    a = np.array([np.diag(d) + np.diag(e, -1) + np.diag(e, 1) for d, e in cases])
    (w, v), failed = _kernel("eigh", a)
    assert failed.mean() < 0.01
    with_vectors = lambda x: np.linalg.eigh(x)[0]  # noqa: E731
    _assert_decomposes(a[~failed], w[~failed], v[~failed], with_vectors)
    _assert_decomposes(a, *numpy_compiled_decompositions.eigh(a, True), with_vectors)


@needs_numba
@pytest.mark.parametrize("tiny", [1e-155, 1e-160, 1e-170])
def test_svd_of_a_block_far_below_the_largest(tiny):
    """diag(G, tiny Q), Q orthogonal: the Householder vectors of the tiny block have subnormal sums of squares:
    they were NaN and the kernel failed every such matrix (all went to LAPACK). Now it keeps those whose
    bidiagonal block needs no QR step (the others stall on diagonal entries below eps ||B|| and go to LAPACK,
    as rank-deficient ones do), and they decompose by the invariants; so do the backend's results."""
    rng = np.random.default_rng(19)
    a = np.zeros((40, 8, 8))
    a[:, :3, :3] = rng.standard_normal((40, 3, 3))
    a[:, 3:, 3:] = tiny * np.linalg.qr(rng.standard_normal((40, 5, 5)))[0]
    kernel, failed = _kernel("svd", a)
    assert not failed.all()
    _assert_svd_decomposes(a[~failed], *(x[~failed] for x in kernel))
    _assert_svd_decomposes(a, *numpy_compiled_decompositions.svd(a))


@needs_numba
def test_entries_flushed_by_the_scaling_stay_within_eps_norm():
    """The power-of-two scaling brings max|a_ij| into [1, 2): entries below 2^-1022 of the largest become
    subnormal, below 2^-1075 zero. Cannot be seen beyond eps ||A||: what is lost is at most 2^-1075 per entry
    of the scaled matrix, whose norm is at least 1 (a backward error ~1e-324 ||A||, and the eigenvalues and
    singular values move by at most that; eigenvectors by that over a gap of at least ``NEAR_REPEATED`` eps
    max|w|, as nearer ones go to LAPACK). A Householder step whose tail's squares underflow to zero while its
    first entry is of order ||A|| reflects (H x = -x_0 e_1, as dlarfg: review14; it was skipped before). At the
    edge: entries 2^-1060 and 2^-1080 times the largest, and a tail of 2^-600 below a first entry of one."""
    rng = np.random.default_rng(20)
    a = rng.standard_normal((30, 8, 8))
    a = 2.0 ** 1000 * (a + np.swapaxes(a, -1, -2))
    a[:10, 5, 2] = a[:10, 2, 5] = 2.0 ** -60 * rng.choice([-1, 1], 10)
    a[10:20, 7, 1] = a[10:20, 1, 7] = 2.0 ** -80
    a[20:, 1:, 0] = a[20:, 0, 1:] = 2.0 ** 400  # (the scaled first column below the diagonal: 2^-600 ...)
    a[20:, 1, 0] = a[20:, 0, 1] = 2.0 ** 1000  # (... after an entry of one)
    (w, v), failed = _kernel("eigh", a)
    assert not failed.any()
    _assert_decomposes(a, w, v)
    _assert_decomposes(a, *numpy_compiled_decompositions.eigh(a, True))
    kernel, failed = _kernel("svd", a)
    assert not failed.any()
    _assert_svd_decomposes(a, *kernel)
    _assert_svd_decomposes(a, *numpy_compiled_decompositions.svd(a))


@needs_numba
def test_helpers_are_compiled_lazily_and_again_after_a_reset(monkeypatch):
    """Importing the backend does not import Numba (the kernels and their helpers are compiled at the first
    small matrix); compiling again (``_compiled`` reset) takes the Python helpers, not the compiled ones."""
    code = ("import sys, numpy, cupy_ad; cupy_ad.jvp(cupy_ad.linalg.eigh, (numpy.eye(20),), (numpy.eye(20),)); "
            "print('numba' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False"]
    a = np.random.default_rng(21).standard_normal((3, 5, 5))
    first = numpy_compiled_decompositions.svd(a)
    monkeypatch.setattr(numpy_compiled_spectral, "_compiled", None)
    for x, y in zip(first, numpy_compiled_decompositions.svd(a)):
        np.testing.assert_array_equal(x, y)


@needs_numba
@pytest.mark.parametrize("name", ["eigh", "svd"])
def test_a_kernel_result_that_is_not_finite_goes_to_lapack(name, monkeypatch):
    """A defence for a case no input is known to reach (review11 found one, since fixed: a rotation of a
    subnormal radius gave NaN eigenvalues, which the nearly-repeated check let through as NaN compares
    false): a matrix whose values come out NaN or infinite from a finite input is LAPACK's, not NaN."""
    kernels = numpy_compiled_spectral._kernels()
    kernel = kernels[name]

    def poisoned(block, *args):  # (args: the flags, then the outputs; w or s third from the end)
        kernel(block, *args)
        args[-3][0, -1] = np.nan

    monkeypatch.setitem(kernels, name, poisoned)
    a = np.random.default_rng(5).standard_normal((6, 5, 5))
    a = a + np.swapaxes(a, -1, -2)
    decompose = numpy_compiled_decompositions.eigh if name == "eigh" else numpy_compiled_decompositions.svd
    values = decompose(a, True)[0] if name == "eigh" else decompose(a)[1]
    expected = np.linalg.eigvalsh(a) if name == "eigh" else np.linalg.svd(a, compute_uv=False)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-13 * np.abs(expected).max())
