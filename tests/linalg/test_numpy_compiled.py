"""The compiled batched kernels (Numba, optional): the triangular solve gives the same solutions as
SciPy's trsm to rounding, for both triangles, every op and unit diagonals (without Numba the
substitution runs); getf2 SciPy's factors; the LU, Cholesky and QR tangents solve their defining equations
(the real QR tangent's sums rounding as one term at a time would, bit for bit)."""
import numpy as np
import pytest
import scipy.linalg

from cupy_ad.backends import numpy_compiled, numpy_kernels
from cupy_ad.backends.numpy_backend import NumpyBackend
from cupy_ad.linalg import cholesky_tangent as cholesky_tangent_module
from cupy_ad.linalg import lu_tangent as lu_tangent_module
from cupy_ad.linalg import qr_tangent as qr_tangent_module


def _case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((20, 6, 6)) + 4 * np.eye(6)
    b = rng.standard_normal((20, 6, 3))
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(a.shape)
        b = b + 1j * rng.standard_normal(b.shape)
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [0, 1, 2])
def test_compiled_solve_matches_scipy(dtype, lower, trans):
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    a, b = _case(dtype)
    for unit in (False, True):
        got = numpy_compiled.solve_triangular_batched(a, b, lower=lower, trans=trans, unit_diagonal=unit)
        want = np.stack([scipy.linalg.solve_triangular(a[i], b[i], lower=lower, trans=trans, unit_diagonal=unit)
                         for i in range(len(a))])
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=0)
    np.testing.assert_array_equal(a, _case(dtype)[0])  # inputs untouched


def test_backend_falls_back_to_the_substitution_without_numba(monkeypatch):
    a, b = _case(np.float64, seed=1)
    with_compiled = numpy_kernels.solve_triangular(a, b, lower=True, trans=0, unit_diagonal=False)
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled.solve_triangular_batched(a, b, lower=True, trans=0, unit_diagonal=False) is None
    without = numpy_kernels.solve_triangular(a, b, lower=True, trans=0, unit_diagonal=False)
    np.testing.assert_allclose(with_compiled, without, rtol=1e-13)
    np.testing.assert_allclose(np.tril(a) @ without, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("shape", [(30, 6, 6), (30, 5, 3), (30, 3, 5), (2, 3, 4, 4)])
def test_compiled_lu_matches_scipy_and_the_numpy_elimination(dtype, shape, monkeypatch):
    """getf2 compiled: SciPy's pivots, lu to rounding, the input untouched; the NumPy elimination (no
    Numba) gives the same pivots."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(3)
    a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
    a = a.astype(dtype)
    keep = a.copy()
    lu, piv = numpy_compiled.lu_factor_batched(a)
    lu_ref, piv_ref = scipy.linalg.lu_factor(a)
    np.testing.assert_array_equal(a, keep)
    np.testing.assert_array_equal(piv, piv_ref)
    assert lu.dtype == lu_ref.dtype and piv.dtype == piv_ref.dtype and lu.shape == lu_ref.shape
    assert np.max(np.abs(lu - lu_ref)) <= 64 * np.finfo(dtype).eps * np.max(np.abs(lu_ref))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled.lu_factor_batched(a) is None
    flat = a.reshape(-1, *shape[-2:])
    elimination = numpy_kernels.lu_factor_batched(np.concatenate([flat] * 11))  # (enough matrices for it)
    np.testing.assert_array_equal(elimination[1][:len(flat)].reshape(piv.shape), piv)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [0, 1, 2])
def test_compiled_triangular_product_matches_the_masked_matmul(dtype, left, lower, trans, monkeypatch):
    """op(T) b and b op(T) over a batch: the compiled loops (when Numba is there) and the masked matmul
    (without it) agree to rounding, for both triangles, every op and unit diagonals."""
    rng = np.random.default_rng(4)
    shape = (numpy_kernels.SUBSTITUTION_MIN_BATCH, 5, 5)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a, b = a + 1j * rng.standard_normal(shape), b + 1j * rng.standard_normal(shape)
    for unit in (False, True):
        params = dict(left=left, lower=lower, trans=trans, unit_diagonal=unit)
        compiled = numpy_compiled.triangular_product_batched(a, b, lower=lower, trans=trans, unit_diagonal=unit)
        assert (compiled is not None) == numpy_compiled.available()
        got = numpy_kernels.triangular_product(a, b, **params)
        want = numpy_kernels.masked_triangular_product(np, a, b, **params)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
        monkeypatch.setattr(numpy_compiled, "_compiled", None)
        assert numpy_compiled.triangular_product_batched(a, b, lower=lower, trans=trans, unit_diagonal=unit) is None
        np.testing.assert_array_equal(numpy_kernels.triangular_product(a, b, **params), want)
        monkeypatch.undo()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("column", [0, 2])
def test_compiled_lu_keeps_a_nan_diagonal_pivot_as_lapack(dtype, column):
    """A NaN on the diagonal when its column is searched is the pivot, as the reference LAPACK's i?amax
    keeps its first entry when it is NaN (no |x| > NaN), and every column after it (all NaN) keeps its
    diagonal too; the NumPy elimination (argmax: the first NaN) agrees. SciPy's real pivots up to that
    column are the same; after it, and for complex matrices (zgetrf picked the last row here), OpenBLAS's
    own i?amax kernels decide by their NaN handling, which is not the reference's."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((20, 5, 5)) + (1j * rng.standard_normal((20, 5, 5)) if np.dtype(dtype).kind == "c" else 0)
    a = a.astype(dtype)
    a[:, :column, :column] += 10 * np.eye(column)  # earlier pivots on the diagonal: the NaN stays there
    a[:, column, column] = np.nan
    lu, piv = numpy_compiled.lu_factor_batched(a)
    with np.errstate(invalid="ignore"):
        _, piv_ref = scipy.linalg.lu_factor(a, check_finite=False)
    if np.dtype(dtype).kind == "f":
        np.testing.assert_array_equal(piv[:, :column + 1], piv_ref[:, :column + 1])
    np.testing.assert_array_equal(piv[:, :column], piv_ref[:, :column])
    np.testing.assert_array_equal(piv[:, column:], np.broadcast_to(np.arange(column, 5), (20, 5 - column)))
    assert np.isnan(lu[:, column, column]).all() and np.isfinite(lu[:, :column, :]).all()
    with np.errstate(invalid="ignore"):
        elimination = numpy_kernels.lu_factor_batched(np.concatenate([a] * 11))
    np.testing.assert_array_equal(elimination[1][:20], piv)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("shape", [(30, 16, 16), (2, 3, 5, 5), (4, 1, 1)])
def test_compiled_lu_tangent_solves_the_tangent_equation(dtype, shape, monkeypatch):
    """The batched LU tangent compiled: P dA = dL U + L dU with dL strictly lower and dU upper (an
    identity independent of how it is computed), equal to rounding to the composition of batched
    solves and products, which the primitive runs on a batch without Numba; the inputs untouched."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(6)
    a, da = (rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
             for _ in range(2))
    a, da = a.astype(dtype), da.astype(dtype)
    backend = NumpyBackend()
    f, piv = backend.lu_factor(a)
    perm = backend.lu_pivots_to_permutation(piv, shape[-1])
    keep = f.copy(), da.copy()
    got = lu_tangent_module.lu_tangent_p(f, perm, da)
    assert got.dtype == f.dtype and got.shape == shape
    np.testing.assert_array_equal(got, numpy_compiled.lu_tangent_batched(f, perm, da))
    for before, after in zip(keep, (f, da)):
        np.testing.assert_array_equal(before, after)
    eye = np.eye(shape[-1], dtype=dtype)
    lower, upper = np.tril(f, -1) + eye, np.triu(f)
    rebuilt = np.tril(got, -1) @ upper + lower @ np.triu(got)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(rebuilt, np.take_along_axis(da, perm[..., None], axis=-2), rtol=0,
                               atol=tol * np.abs(da).max() * np.abs(lower).max() * np.abs(upper).max())
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    composed = lu_tangent_module.lu_tangent_p(f, perm, da)
    np.testing.assert_allclose(got, composed, rtol=0, atol=tol * np.abs(composed).max())


def test_compiled_lu_tangent_never_reads_the_last_pivot():
    """A zero last pivot keeps a finite, exact tangent (lu.py): the kernel never reads U[n-1, n-1]."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(7)
    f, da = rng.standard_normal((8, 6, 6)), rng.standard_normal((8, 6, 6))
    perm = np.argsort(rng.random((8, 6)), axis=-1).astype(np.int32)
    want = numpy_compiled.lu_tangent_batched(f, perm, da)
    f[:, -1, -1] = np.nan
    np.testing.assert_array_equal(numpy_compiled.lu_tangent_batched(f, perm, da), want)
    assert np.isfinite(want).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("shape", [(30, 16, 16), (2, 3, 5, 5), (4, 1, 1), (7, 7)])
@pytest.mark.parametrize("upper", [False, True])
def test_compiled_cholesky_tangent_solves_the_tangent_equation(dtype, shape, upper, monkeypatch):
    """The Cholesky tangent compiled: dL L^H + L dL^H = H, the Hermitian matrix read from one triangle of
    dA, with dL lower and a real diagonal (dU = dL^H for the upper factor: an identity independent of
    how it is computed); what the primitive runs on NumPy with Numba, equal to rounding to the
    composition of solves and products that runs without it; the inputs untouched."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(8)
    b, da = (rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
             for _ in range(2))
    n = shape[-1]
    a = (b @ np.conj(np.swapaxes(b, -1, -2)) + n * np.eye(n)).astype(dtype)
    da = da.astype(dtype)
    factor = np.linalg.cholesky(a, upper=upper)
    keep = factor.copy(), da.copy()
    got = cholesky_tangent_module.cholesky_tangent_p(factor, da, upper=upper)
    assert got.dtype == factor.dtype and got.shape == shape
    np.testing.assert_array_equal(got, numpy_compiled.cholesky_tangent_batched(factor, da, upper))
    for before, after in zip(keep, (factor, da)):
        np.testing.assert_array_equal(before, after)
    read = np.triu(da, 1) if upper else np.tril(da, -1)
    h = read + np.conj(np.swapaxes(read, -1, -2)) + np.real(np.diagonal(da, 0, -2, -1))[..., None] * np.eye(n)
    lower, dl = (np.conj(np.swapaxes(x, -1, -2)) for x in (factor, got)) if upper else (factor, got)
    np.testing.assert_array_equal(np.triu(dl, 1), 0)
    np.testing.assert_array_equal(np.diagonal(dl, 0, -2, -1).imag, 0)
    rebuilt = dl @ np.conj(np.swapaxes(lower, -1, -2)) + lower @ np.conj(np.swapaxes(dl, -1, -2))
    tol = 1e-4 if np.finfo(dtype).eps > 1e-10 else 1e-12
    np.testing.assert_allclose(rebuilt, h, rtol=0, atol=tol * n * np.abs(h).max() * np.abs(lower).max() ** 2)
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    composed = cholesky_tangent_module.cholesky_tangent_p(factor, da, upper=upper)
    np.testing.assert_allclose(got, composed, rtol=0, atol=tol * np.abs(composed).max())



@pytest.mark.parametrize("shape", [(5, 5), (3, 16, 16)])
@pytest.mark.parametrize("upper", [False, True])
def test_compiled_cholesky_tangent_at_a_zero_diagonal_raises_as_the_composition(shape, upper, monkeypatch):
    """A factor with an exactly zero diagonal entry (a direct primitive call: potrf refuses such
    matrices): the same LinAlgError, with the same message, as the composition's solves (the
    compiled division raised ZeroDivisionError)."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(11)
    factor = np.tril(rng.standard_normal(shape)) + 3 * np.eye(shape[-1])
    factor[..., 2, 2] = 0
    factor = np.conj(np.swapaxes(factor, -1, -2)) if upper else factor
    da = rng.standard_normal(shape)
    with pytest.raises(np.linalg.LinAlgError) as compiled:
        cholesky_tangent_module.cholesky_tangent_p(factor, da, upper=upper)
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    with pytest.raises(np.linalg.LinAlgError) as composed:
        cholesky_tangent_module.cholesky_tangent_p(factor, da, upper=upper)
    assert str(compiled.value) == str(composed.value)

def _qr_pair(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    a, da = (rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
             for _ in range(2))
    return a.astype(dtype), da.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("shape", [(30, 16, 16), (2, 3, 9, 5), (4, 1, 1), (7, 7), (32, 3)])
def test_compiled_qr_tangent_solves_the_tangent_equation(dtype, shape, monkeypatch):
    """The QR tangent compiled: dA = dQ R + Q dR, Q^H dQ skew-Hermitian, dR upper triangular with a real
    diagonal (identities independent of how (dQ, dR) are computed); what the primitive runs on NumPy
    with Numba, equal to rounding to the composition of a solve and products that runs without it;
    the inputs untouched."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    a, da = _qr_pair(shape, dtype, 9)
    q, r = np.linalg.qr(a)
    keep = q.copy(), r.copy(), da.copy()
    dq, dr = qr_tangent_module.qr_tangent_p(q, r, da)
    assert dq.dtype == dr.dtype == q.dtype and dq.shape == q.shape and dr.shape == r.shape
    for got, want in zip((dq, dr), numpy_compiled.qr_tangent_batched(q, r, da)):
        np.testing.assert_array_equal(got, want)
    for before, after in zip(keep, (q, r, da)):
        np.testing.assert_array_equal(before, after)
    h = lambda x: np.conj(np.swapaxes(x, -1, -2))  # noqa: E731
    tol = 1e-4 if np.finfo(dtype).eps > 1e-10 else 1e-12
    scale = np.abs(da).max() * np.linalg.cond(r).max()
    np.testing.assert_allclose(dq @ r + q @ dr, da, rtol=0, atol=tol * shape[-1] * scale)
    omega = h(q) @ dq
    np.testing.assert_allclose(omega + h(omega), 0, rtol=0, atol=tol * shape[-1] * scale)
    np.testing.assert_array_equal(np.tril(dr, -1), 0)
    np.testing.assert_array_equal(np.diagonal(dr, 0, -2, -1).imag, 0)
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    composed = qr_tangent_module.qr_tangent_p(q, r, da)
    for got, want in zip((dq, dr), composed):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * shape[-1] * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("shape, column", [((16, 16), 5), ((3, 9, 4), 0), ((24, 4), 2), ((5, 5), 4)])
def test_compiled_qr_tangent_is_nan_where_the_composition_is(dtype, shape, column, monkeypatch):
    """An exactly zero column of A (an exact zero on R's diagonal): the compiled tangents are NaN exactly
    where the composition's guarded solve and products make them NaN, and finite elsewhere as it is."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    a, da = _qr_pair(shape, dtype, 10)
    a[..., column] = 0
    q, r = np.linalg.qr(a)
    assert (np.diagonal(r, 0, -2, -1)[..., column] == 0).all()
    got = qr_tangent_module.qr_tangent_p(q, r, da)
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    want = qr_tangent_module.qr_tangent_p(q, r, da)
    for g, w in zip(got, want):
        assert np.isnan(w).any()
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], rtol=1e-10, atol=1e-12)


def _qr_tangent_one_term_at_a_time(q, r, da):
    """(dQ, dR) of one factor pair with every sum taken one term at a time, in the order of the
    derivation's row-by-row loops (X = dA R^-1 along X's rows, C = Q^H X over Q's rows, dR = U R over
    R's rows, dQ = X - Q U over Q's columns), each step elementwise in NumPy: a real entry rounds as
    in a scalar loop (NumPy's complex products and quotients round otherwise)."""
    m, n = q.shape
    x = da.copy()
    for k in range(n):
        x[:, k] = x[:, k] / r[k, k]
        x[:, k + 1:] -= x[:, k, None] * r[k, k + 1:]
    c = np.zeros((n, n), q.dtype)
    for i in range(m):
        c += q[i, :, None] * x[i]
    u = np.zeros((n, n), q.dtype)
    for i in range(n):
        u[i, i] = c[i, i]
        u[i, i + 1:] = c[i, i + 1:] + c[i + 1:, i]
    dr = np.zeros((n, n), q.dtype)
    for i in range(n):
        for k in range(i, n):
            dr[i] += u[i, k] * r[k]
    for k in range(n):
        x[:, k:] -= q[:, k, None] * u[k, k:]
    return x, dr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_qr_tangent_rounds_as_one_term_at_a_time(dtype):
    """The compiled QR tangent (X and dQ held transposed, four terms per pass) rounds every sum as
    the row-by-row loops of one term at a time do: bit for bit (signed zeros included) on shapes
    with every remainder of m and n modulo the four terms, n < 4 and m < 4 among them."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    bits = np.uint32 if dtype == np.float32 else np.uint64
    shapes = [(1, 1), (2, 2), (3, 1), (4, 3), (5, 5), (6, 2), (7, 6), (9, 9), (11, 4), (16, 13), (30, 17), (32, 32)]
    for shape in shapes:
        a, da = _qr_pair((2, *shape), dtype, 11)
        da[:, ::3] = -0.0
        q, r = np.linalg.qr(a)
        dq, dr = numpy_compiled.qr_tangent_batched(q, r, da)
        for p in range(2):
            for got, want in zip((dq[p], dr[p]), _qr_tangent_one_term_at_a_time(q[p], r[p], da[p])):
                np.testing.assert_array_equal(got.view(bits), want.view(bits), err_msg=str(shape))


@pytest.mark.parametrize("kernel, operands", [("_qr_tangent", 5), ("_cholesky_tangent", 3)])
def test_compiled_tangents_compute_complex64_in_single_precision(kernel, operands):
    """No float -> double conversion (LLVM's fpext) in the QR and Cholesky tangent kernels compiled for
    complex64 (and so their float32 parts): every constant typed as the data (an untyped NaN or 0.5
    made Numba compute the solve, or Phi's halving, in complex128 and round on the store). Compiled
    afresh (the cached kernels cannot be inspected); the accuracy against the composition: the tests above."""
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    import numba

    array = numba.types.Array(numba.types.complex64, 3, "C")
    signature = (array,) * operands + ((numba.types.boolean,) if kernel == "_cholesky_tangent" else ())
    compiled = numba.njit(nogil=True)(getattr(numpy_compiled, kernel))
    compiled.compile(signature)
    assert "fpext" not in compiled.inspect_llvm(signature)


def test_tangent_kernels_dtype_is_numpy_promotion():
    """The tangent wrappers' dtype (a shortcut where the operands share a kernel's dtype) is NumPy's promotion of
    the operands' dtypes and float32, or None where no kernel has it."""
    dtypes = [np.float16, np.float32, np.float64, np.complex64, np.complex128, np.int64, np.bool_, np.longdouble, ">f8"]
    for first in dtypes:
        for second in dtypes:
            for operands in ((first, second), (first, first, second)):
                promoted = np.result_type(*operands, np.float32)
                want = promoted if promoted.type in (np.float32, np.float64, np.complex64, np.complex128) else None
                assert numpy_compiled._tangent_dtype(*(np.zeros(1, dtype) for dtype in operands)) == want
