"""triangular_product (trmm) and the NumPy backend's fast triangular kernels.

The primitive: values against a masked matmul for every option, FD checks of the JVP (both
arguments, small and BLAS-sized, batched/broadcast, every dtype), the bilinear identity on the raw
tangents, nested jvp, untouched inputs, bad input. The kernels behind it and behind the LU and
Cholesky rules: NumPy's own trmm/trsm (2-D and per-matrix loops), the batch-vectorised substitution
and the batched Crout getrf, each against SciPy; the fallbacks when NumPy's BLAS is not found; the
CuPy backend's masked product run on NumPy.
"""
import itertools
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.backends import numpy_kernels
from cupy_ad.backends.cupy_backend import CupyBackend
from cupy_ad.linalg.triangular_product import triangular_product

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
OPTIONS = list(itertools.product([True, False], [True, False], [0, 1, 2], [False, True]))  # left lower trans unit


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _reference(a, b, left, lower, trans, unit):
    """op(T) b or b op(T) in NumPy with explicit masking (the definition)."""
    n = a.shape[-1]
    t = np.tril(a, -1 if unit else 0) if lower else np.triu(a, 1 if unit else 0)
    if unit:
        t = t + np.eye(n, dtype=a.dtype)
    t = {0: t, 1: np.swapaxes(t, -1, -2), 2: np.swapaxes(t, -1, -2).conj()}[trans]
    return t @ b if left else b @ t


def _tol(dtype):
    return dict(rtol=5e-3, atol=5e-3) if dtype in (np.float32, np.complex64) else {}


def _close(dtype):
    return 2e-5 if dtype in (np.float32, np.complex64) else 1e-13


@pytest.mark.parametrize("n", [4, 40])  # 40: NumPy's trmm; 4: the masked matmul
@pytest.mark.parametrize("dtype", DTYPES)
def test_values_match_masked_matmul(backend, dtype, n):
    a_np, b_np = _random((n, n), dtype, 1), _random((n, 3), dtype, 2)
    a = backend.asarray(a_np)
    for left, lower, trans, unit in OPTIONS:
        b_np_side = b_np if left else b_np.T.copy()
        got = backend.to_numpy(triangular_product(a, backend.asarray(b_np_side), left=left, lower=lower,
                                                  trans=trans, unit_diagonal=unit))
        expected = _reference(a_np, b_np_side, left, lower, trans, unit)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=_close(dtype), atol=_close(dtype) * n,
                                   err_msg=str((left, lower, trans, unit)))


@pytest.mark.parametrize("left, lower, trans, unit", OPTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_jvp_matches_finite_differences(backend, left, lower, trans, unit, dtype):
    a = backend.random((4, 4), dtype, seed=3)
    b = backend.random((4, 2) if left else (2, 4), dtype, seed=4)
    f = lambda x, y: triangular_product(x, y, left=left, lower=lower, trans=trans, unit_diagonal=unit)  # noqa: E731
    ad.check_jvp(f, (a, b), **_tol(dtype))


@pytest.mark.parametrize("left", [True, False])
def test_jvp_on_the_blas_path(backend, left):
    a = backend.random((36, 36), np.float64, seed=5)
    b = backend.random((36, 3) if left else (3, 36), np.float64, seed=6)
    f = lambda x, y: triangular_product(x, y, left=left, lower=False, trans=1)  # noqa: E731
    ad.check_jvp(f, (a, b))


@pytest.mark.parametrize("a_shape, b_shape, left", [
    ((2, 3, 4, 4), (3, 4, 2), True), ((4, 4), (2, 4, 3), True), ((2, 1, 3, 3), (4, 2, 3), False),
    ((1, 1), (1, 5), True), ((3, 2, 2), (3, 1, 2), False), ((0, 3, 3), (0, 3, 2), True), ((2, 33, 33), (33, 2), True)])
def test_batched_and_broadcast(backend, a_shape, b_shape, left):
    a_np, b_np = _random(a_shape, np.float64, 7), _random(b_shape, np.float64, 8)
    f = lambda x, y: triangular_product(x, y, left=left, lower=True, unit_diagonal=True)  # noqa: E731
    got = backend.to_numpy(f(backend.asarray(a_np), backend.asarray(b_np)))
    np.testing.assert_allclose(got, _reference(a_np, b_np, left, True, 0, True), rtol=1e-13, atol=1e-12)
    if np.prod(a_shape) and np.prod(b_shape):
        ad.check_jvp(f, (backend.asarray(a_np), backend.asarray(b_np)))


def test_bilinear_identity_on_raw_tangents(backend):
    """d(op(T) B) = op(dT) B + op(T) dB with dT the triangle read (strict for a unit diagonal)."""
    a, b = _random((5, 5), np.complex128, 9), _random((5, 3), np.complex128, 10)
    da, db = _random((5, 5), np.complex128, 11), _random((5, 3), np.complex128, 12)
    for lower, trans, unit in itertools.product([True, False], [0, 1, 2], [False, True]):
        f = lambda x, y: triangular_product(x, y, lower=lower, trans=trans, unit_diagonal=unit)  # noqa: E731
        _, dout = ad.jvp(f, tuple(map(backend.asarray, (a, b))), tuple(map(backend.asarray, (da, db))))
        dt = np.tril(da, -1 if unit else 0) if lower else np.triu(da, 1 if unit else 0)
        dt = {0: dt, 1: dt.T, 2: dt.conj().T}[trans]
        expected = dt @ b + _reference(a, db, True, lower, trans, unit)
        np.testing.assert_allclose(backend.to_numpy(dout), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("n", [3, 34])
def test_nested_jvp_second_derivative(backend, n):
    """x -> T(x) T(x) b is quadratic in x: FD of its first derivative checks the rule's own jvp."""
    b = backend.random((n, 2), seed=13)
    t = backend.random((n, n), seed=14)
    f = lambda x: triangular_product(x, triangular_product(x, b, lower=True), lower=True, trans=1)  # noqa: E731
    ad.check_jvp(lambda x: ad.jvp(f, (x,), (t,))[1], (backend.random((n, n), seed=15),))


def test_inputs_not_modified(backend):
    a_np, b_np = _random((40, 40), np.float64, 16), _random((40, 40), np.float64, 17)
    a, b = backend.asarray(a_np), backend.asarray(b_np)
    for left, lower, trans, unit in OPTIONS:
        ad.jvp(lambda x, y: triangular_product(x, y, left=left, lower=lower, trans=trans, unit_diagonal=unit),
               (a, b), (b, a))
    np.testing.assert_array_equal(backend.to_numpy(a), a_np)
    np.testing.assert_array_equal(backend.to_numpy(b), b_np)


def test_bad_input(backend):
    a, b = backend.random((3, 4)), backend.random((3, 2))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        triangular_product(a, b)
    with pytest.raises(ValueError, match="incompatible"):
        triangular_product(backend.random((3, 3)), backend.random((2, 3)))
    with pytest.raises(ValueError, match="trans"):
        triangular_product(backend.random((3, 3)), b, trans=3)
    with pytest.raises(ValueError, match="dtype"):
        triangular_product(backend.random((3, 3)), backend.random((3, 2), np.float32))
    with pytest.raises(ValueError, match="matrices"):
        triangular_product(backend.random((3, 3)), backend.random((3,)))


@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 40), k=st.integers(1, 4),
       options=st.sampled_from(OPTIONS), seed=st.integers(0, 2**16))
def test_product_property(batch, n, k, options, seed):
    left, lower, trans, unit = options
    a = _random((*batch, n, n), np.complex128, seed)
    b = _random((n, k) if left else (k, n), np.complex128, seed + 1)
    got = triangular_product(a, b, left=left, lower=lower, trans=trans, unit_diagonal=unit)
    np.testing.assert_allclose(got, _reference(a, b, left, lower, trans, unit), rtol=1e-13, atol=1e-12)


# The NumPy backend's kernels.

def _scipy_solve(a, b, lower, trans, unit):
    if a.ndim == 2 and b.ndim <= 2:
        return scipy.linalg.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a, b = np.broadcast_to(a, (*batch, *a.shape[-2:])), np.broadcast_to(b, (*batch, *b.shape[-2:]))
    return np.stack([scipy.linalg.solve_triangular(a[i], b[i], lower=lower, trans=trans, unit_diagonal=unit)
                     for i in np.ndindex(*batch)]).reshape(*batch, *b.shape[-2:])


def _triangular(shape, dtype, seed):
    n = shape[-1]  # small off-diagonal entries: well conditioned also with a unit diagonal
    return (_random(shape, dtype, seed) / n + 4 * np.eye(n)).astype(dtype)


@pytest.mark.parametrize("a_shape, b_shape", [((50, 50), (50, 7)), ((300, 6, 6), (300, 6, 6)), ((5, 16, 16), (16, 3)),
                                              ((3, 40, 40), (3, 40, 2)), ((64, 12, 12), (12,)), ((2, 3, 3), (3,))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_solve_kernel_matches_scipy(a_shape, b_shape, dtype):
    """The trsm, per-matrix trsm and substitution paths all agree with SciPy to rounding."""
    a, b = _triangular(a_shape, dtype, 18), _random(b_shape, dtype, 19)
    for lower, trans, unit in itertools.product([True, False], [0, 1, 2], [False, True]):
        bm = b[:, None] if b.ndim == 1 else b
        expected = _scipy_solve(a, bm, lower, trans, unit)
        expected = expected[..., 0] if b.ndim == 1 else expected
        layouts = [b] if b.ndim == 1 else [b, np.swapaxes(np.swapaxes(b, -1, -2).copy(), -1, -2)]  # C and F
        for b_in in layouts:
            got = numpy_kernels.solve_triangular(a, b_in, lower=lower, trans=trans, unit_diagonal=unit)
            assert got is not None and got.shape == expected.shape and got.dtype == expected.dtype
            scale = np.max(np.abs(expected))
            assert np.max(np.abs(got - expected)) <= 20 * np.finfo(dtype).eps * scale, (lower, trans, unit)
            np.testing.assert_array_equal(b_in, b)  # untouched


def test_solve_kernel_zero_diagonal_raises_as_scipy():
    a = np.triu(_triangular((40, 40), np.float64, 20))
    a[7, 7] = 0.0
    with pytest.raises(np.linalg.LinAlgError, match="diagonal 7"):
        numpy_kernels.solve_triangular(a, np.ones((40, 2)), lower=False, trans=0, unit_diagonal=False)
    with pytest.raises(np.linalg.LinAlgError):
        numpy_kernels.solve_triangular(np.stack([a[4:10, 4:10]] * 100), np.ones((6, 2)), lower=False, trans=0,
                                       unit_diagonal=False)
    got = numpy_kernels.solve_triangular(a, np.ones((40, 2)), lower=False, trans=0, unit_diagonal=True)
    np.testing.assert_allclose(got, scipy.linalg.solve_triangular(a, np.ones((40, 2)), unit_diagonal=True))


def test_blas_found_and_fallbacks(monkeypatch):
    """On the PyPI NumPy wheel the BLAS is found; without it every kernel still answers (SciPy / matmul)."""
    assert numpy_kernels.available(), "NumPy's bundled OpenBLAS trmm/trsm were not found"
    a, b = _triangular((40, 40), np.float64, 21), _random((40, 3), np.float64, 22)
    backend = ad.namespace("numpy").backend
    fast = (backend.triangular_product(a, b, left=True, lower=True, trans=1, unit_diagonal=False),
            backend.solve_triangular(a, b, lower=True, trans=1, unit_diagonal=False))
    monkeypatch.setattr(numpy_kernels._library, "functions", {})
    assert not numpy_kernels.available()
    assert numpy_kernels.solve_triangular(a, b, lower=True, trans=1, unit_diagonal=False) is None
    slow = (backend.triangular_product(a, b, left=True, lower=True, trans=1, unit_diagonal=False),
            backend.solve_triangular(a, b, lower=True, trans=1, unit_diagonal=False))
    for x, y in zip(fast, slow):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape", [(4096, 16, 16), (100, 5, 3), (100, 3, 5), (8, 9, 7, 7), (64, 1, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batched_lu_matches_scipy(shape, dtype):
    """Pivots exactly SciPy's; lu to rounding: the summation order differs from OpenBLAS's getf2, so
    entries differ by up to ~100 eps of max|lu| (measured over 4096 random 16 x 16), not ~1 ulp."""
    if shape[0] == 4096 and dtype != np.float64:
        shape = (200, 16, 16)
    a = _random(shape, dtype, 23)
    lu, piv = numpy_kernels.lu_factor_batched(a)
    lu_ref, piv_ref = scipy.linalg.lu_factor(a)
    np.testing.assert_array_equal(piv, piv_ref)
    assert lu.dtype == lu_ref.dtype and piv.dtype == piv_ref.dtype
    assert np.max(np.abs(lu - lu_ref)) <= 256 * np.finfo(dtype).eps * np.max(np.abs(lu_ref))
    assert numpy_kernels.lu_factor_batched(a.reshape(-1, *shape[-2:])[:10]) is None  # too few: SciPy's loop
    assert numpy_kernels.lu_factor_batched(_random((100, 17, 17), dtype, 0)) is None  # too large


def test_batched_lu_singular_warns_like_scipy():
    a = _random((64, 4, 4), np.float64, 24)
    a[5] = [[1, 2, 0, 0], [2, 4, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    with pytest.warns(scipy.linalg.LinAlgWarning, match="exactly zero"):
        lu, piv = numpy_kernels.lu_factor_batched(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lu_ref, piv_ref = scipy.linalg.lu_factor(a)
    np.testing.assert_array_equal(piv, piv_ref)
    np.testing.assert_allclose(lu, lu_ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_cupy_masked_product_on_numpy(dtype):
    """The CuPy backend's product (masked triangle, one batched matmul) run on NumPy."""
    fake = CupyBackend(cp=np, kernels=None, xp=None)
    a, b = _random((3, 5, 5), dtype, 25), _random((5, 2), dtype, 26)
    for left, lower, trans, unit in OPTIONS:
        b_side = b if left else b.T.copy()
        got = fake.triangular_product(a, b_side, left=left, lower=lower, trans=trans, unit_diagonal=unit)
        np.testing.assert_allclose(got, _reference(a, b_side, left, lower, trans, unit), rtol=_close(dtype))


# The LU and Cholesky rules on the fast paths (their own test files use small single matrices).

def _spd(shape, dtype, seed):
    a = _random(shape, dtype, seed)
    n = shape[-1]
    return (a @ np.swapaxes(a, -1, -2).conj() / n + np.eye(n)).astype(dtype)


@pytest.mark.parametrize("shape", [(40, 40), (45, 36), (36, 45), (100, 5, 5), (70, 6, 4), (70, 4, 6)])
def test_lu_jvp_on_fast_paths(backend, shape):
    """n >= 32: NumPy's trmm/trsm; >= 64 small matrices: batched Crout getrf and substitution."""
    a = backend.asarray(_random(shape, np.float64, 27))
    f = lambda x: ad.linalg.lu_factor(x)[0]  # noqa: E731
    ad.check_jvp(f, (a,))
    packed = backend.to_numpy(f(a))
    lu_ref, _ = scipy.linalg.lu_factor(backend.to_numpy(a))
    np.testing.assert_allclose(packed, lu_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("shape, dtype", [((40, 40), np.float64), ((36, 36), np.complex128), ((100, 5, 5), np.float64),
                                          ((80, 4, 4), np.complex64)])
def test_cholesky_jvp_on_fast_paths(backend, shape, dtype, upper):
    a = backend.asarray(_spd(shape, dtype, 28))
    t = backend.asarray(_random(shape, dtype, 29))  # not Hermitian: only the triangle read counts
    ad.check_jvp(lambda x: ad.linalg.cholesky(x, upper=upper), (a,), (t,), **_tol(dtype))


def test_fast_paths_agree_with_fallbacks(monkeypatch):
    """The same tangents with NumPy's BLAS and without it (SciPy / masked matmul), LU and Cholesky."""
    a, t = _random((40, 40), np.float64, 30), _random((40, 40), np.float64, 31)
    s = _spd((40, 40), np.float64, 32)
    fns = [(lambda x: ad.linalg.lu_factor(x)[0], a), (ad.linalg.cholesky, s),
           (lambda x: ad.linalg.cholesky(x, upper=True), s)]
    fast = [ad.jvp(f, (x,), (t,))[1] for f, x in fns]
    monkeypatch.setattr(numpy_kernels._library, "functions", {})
    slow = [ad.jvp(f, (x,), (t,))[1] for f, x in fns]
    for x, y in zip(fast, slow):
        np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("name", ["lu", "cholesky"])
def test_nested_jvp_on_fast_paths(backend, name):
    """Second derivatives through the trmm-based rules (n = 34 takes the BLAS path)."""
    n = 34
    if name == "lu":
        x0 = backend.asarray(_random((n, n), np.float64, 33))
        f = lambda x: ad.linalg.lu_factor(x)[0]  # noqa: E731
    else:
        x0 = backend.asarray(_spd((n, n), np.float64, 33))
        f = ad.linalg.cholesky
    t = backend.asarray(_random((n, n), np.float64, 34))
    ad.check_jvp(lambda x: ad.jvp(f, (x,), (t,))[1], (x0,), rtol=1e-5)
