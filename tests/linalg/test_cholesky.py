"""cholesky: primal equals NumPy's, JVP equals finite differences, dL L^H + L dL^H = dA."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.backends import backend_named

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(4, 4), (2, 3, 3), (2, 1, 2, 2), (1, 1), (0, 0)]


def _tol(dtype):
    return dict(rtol=5e-3, atol=1e-3) if dtype in (np.float32, np.complex64) else {}


def _spd(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        b = b + 1j * rng.standard_normal(shape)
    n = shape[-1]
    return (b @ np.conj(np.swapaxes(b, -1, -2)) + n * np.eye(n)).astype(dtype)


def _mh(x):
    return np.conj(np.swapaxes(x, -1, -2))


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_cholesky_matches_numpy_and_reads_one_triangle(backend, upper, dtype):
    a = _spd((2, 4, 4), dtype)
    ref = np.linalg.cholesky(a, upper=upper)
    # garbage in the triangle the routine does not read, and in the diagonal's imaginary part
    garbage = a.copy()
    mask = np.tril(np.ones((4, 4), bool), -1) if upper else np.triu(np.ones((4, 4), bool), 1)
    garbage[..., mask] = 99.0
    if np.iscomplexobj(garbage):
        garbage = garbage + 1j * np.eye(4)
    out = ad.linalg.cholesky(backend.asarray(garbage), upper=upper)
    np.testing.assert_allclose(backend.to_numpy(out), ref, rtol=1e-12, atol=1e-12)
    # the tangent ignores the unread triangle of dA too
    da = backend.random((2, 4, 4), dtype, seed=1)
    da_np = backend.to_numpy(da).copy()
    da_garbage = da_np.copy()
    da_garbage[..., mask] = 7.0
    t1 = ad.jvp(lambda x: ad.linalg.cholesky(x, upper=upper), (backend.asarray(a),), (da,))[1]
    t2 = ad.jvp(lambda x: ad.linalg.cholesky(x, upper=upper), (backend.asarray(a),),
                (backend.asarray(da_garbage),))[1]
    np.testing.assert_allclose(backend.to_numpy(t1), backend.to_numpy(t2), atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cholesky_jvp(backend, upper, shape, dtype):
    a = backend.asarray(_spd(shape, dtype, seed=2))
    ad.check_jvp(lambda x: ad.linalg.cholesky(x, upper=upper), (a,), **_tol(dtype))


@pytest.mark.parametrize("shape", [(4, 4), (3, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_cholesky_tangent_identity(backend, shape, dtype):
    """dL L^H + L dL^H = dA for Hermitian dA; dL lower with a real diagonal; same for upper."""
    a = backend.asarray(_spd(shape, dtype, seed=3))
    h = backend.to_numpy(backend.random(shape, dtype, seed=4))
    h = h + _mh(h)
    l_, dl = (backend.to_numpy(x) for x in ad.jvp(ad.linalg.cholesky, (a,), (backend.asarray(h),)))
    np.testing.assert_allclose(dl @ _mh(l_) + l_ @ _mh(dl), h, atol=1e-12 * np.abs(h).max())
    np.testing.assert_array_equal(np.triu(dl, 1), 0)
    np.testing.assert_array_equal(np.diagonal(dl, axis1=-2, axis2=-1).imag, 0)
    u, du = (backend.to_numpy(x) for x in ad.jvp(lambda x: ad.linalg.cholesky(x, upper=True), (a,),
                                                     (backend.asarray(h),)))
    np.testing.assert_allclose(_mh(du) @ u + _mh(u) @ du, h, atol=1e-12 * np.abs(h).max())
    np.testing.assert_allclose(du, _mh(dl), atol=1e-12)


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_cholesky_second_derivative(backend, upper, dtype):
    a = backend.asarray(_spd((2, 3, 3), dtype, seed=5))
    t = backend.random((2, 3, 3), dtype, seed=6)
    inner = lambda x: ad.jvp(lambda y: ad.linalg.cholesky(y, upper=upper), (x,), (t,))[1]  # noqa: E731
    ad.check_jvp(inner, (a,), rtol=1e-5)


def test_cholesky_input_not_modified(backend):
    a, da = backend.asarray(_spd((3, 3), np.float64)), backend.random((3, 3), seed=7)
    copies = backend.to_numpy(a).copy(), backend.to_numpy(da).copy()
    ad.jvp(ad.linalg.cholesky, (a,), (da,))
    ad.jvp(lambda x: ad.linalg.cholesky(x, upper=True), (a,), (da,))
    np.testing.assert_array_equal(backend.to_numpy(a), copies[0])
    np.testing.assert_array_equal(backend.to_numpy(da), copies[1])


def test_cholesky_integer_and_nan_input(backend):
    out = ad.linalg.cholesky(backend.asarray(np.array([[4, 2], [2, 3]])))
    np.testing.assert_allclose(backend.to_numpy(out), np.linalg.cholesky(np.array([[4.0, 2.0], [2.0, 3.0]])))
    assert backend.to_numpy(out).dtype == np.float64
    nan = ad.linalg.cholesky(backend.asarray(np.full((2, 2), np.nan)))
    assert np.isnan(backend.to_numpy(nan)[np.tril_indices(2)]).all()


def test_cholesky_bad_input(backend):
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        ad.linalg.cholesky(backend.random((3, 4)))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        ad.linalg.cholesky(backend.random((3,)))


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 5), upper=st.booleans(),
       seed=st.integers(0, 2**16))
def test_cholesky_jvp_property(name, batch, n, upper, seed):
    a = backend_named(name).from_numpy(_spd((*batch, n, n), np.float64, seed))
    ad.check_jvp(lambda x: ad.linalg.cholesky(x, upper=upper), (a,), rtol=1e-5)
