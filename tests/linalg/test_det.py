"""det and slogdet: primal equals NumPy's, JVP equals finite differences and Jacobi's formula,
exact adjugate at singular matrices, second derivatives of slogdet."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.backends import backend_named

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(4, 4), (2, 3, 3), (2, 1, 2, 2), (1, 1), (0, 0), (3, 0, 0)]


def _tol(dtype):
    return dict(rtol=5e-3, atol=1e-3) if dtype in (np.float32, np.complex64) else {}


def _adjugate(a: np.ndarray) -> np.ndarray:
    """Reference adjugate from cofactors (transposed cofactor matrix), one matrix."""
    n = a.shape[-1]
    out = np.zeros_like(a)
    for i, j in itertools.product(range(n), range(n)):
        minor = np.delete(np.delete(a, j, axis=0), i, axis=1)
        out[i, j] = (-1) ** (i + j) * (np.linalg.det(minor) if n > 1 else 1.0)
    return out


# Pivots and multipliers are powers of two and every entry a small integer, so each elimination step
# is exact whatever order or fused multiply-adds a BLAS kernel uses: the zero pivots are exactly zero.
SINGULAR = {
    "zero_first_column": [[0.0, 1.0, 2.0], [0.0, 3.0, 4.0], [0.0, 5.0, 7.0]],  # zero pivot first
    "zero_middle_pivot": [[2.0, 1.0, 1.0], [4.0, 2.0, 3.0], [2.0, 1.0, 5.0]],  # zero pivot in the middle
    "zero_last_pivot": [[4.0, 4.0, 8.0], [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]],  # rank 2
    "two_zero_pivots_rank_n_minus_1": [[0.0, 1.0], [0.0, 0.0]],  # two zero pivots, adj != 0
    "rank_n_minus_2": [[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [4.0, 8.0, 12.0]],  # adj = 0
    "zero": [[0.0, 0.0], [0.0, 0.0]],
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_det_slogdet_match_numpy(backend, shape, dtype):
    a = backend.random(shape, dtype)
    a_np = backend.to_numpy(a)
    rtol = 1e-5 if dtype == np.complex64 else 1e-12
    np.testing.assert_allclose(backend.to_numpy(ad.linalg.det(a)), np.linalg.det(a_np), rtol=rtol)
    result = ad.linalg.slogdet(a)
    assert type(result).__name__ == "SlogdetResult"
    ref = np.linalg.slogdet(a_np)
    np.testing.assert_allclose(backend.to_numpy(result.sign), ref.sign, rtol=rtol)
    np.testing.assert_allclose(backend.to_numpy(result.logabsdet), ref.logabsdet, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_det_jvp(backend, shape, dtype):
    ad.check_jvp(ad.linalg.det, (backend.random(shape, dtype, seed=1),), **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_slogdet_jvp(backend, shape, dtype):
    ad.check_jvp(ad.linalg.slogdet, (backend.random(shape, dtype, seed=2),), **_tol(dtype))


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_jacobi_identities(backend, shape, dtype):
    """d logabsdet = Re tr(A^-1 dA), d sign = sign i Im tr(A^-1 dA), d det = det tr(A^-1 dA)."""
    a, da = backend.random(shape, dtype, seed=3), backend.random(shape, dtype, seed=4)
    a_np, da_np = backend.to_numpy(a), backend.to_numpy(da)
    trace = np.trace(np.linalg.solve(a_np, da_np), axis1=-2, axis2=-1)
    (sign, _), (dsign, dlogabs) = ad.jvp(ad.linalg.slogdet, (a,), (da,))
    np.testing.assert_allclose(backend.to_numpy(dlogabs), trace.real, rtol=1e-10, atol=1e-12)
    expected_dsign = backend.to_numpy(sign) * 1j * trace.imag if np.iscomplexobj(a_np) else 0.0
    np.testing.assert_allclose(backend.to_numpy(dsign), expected_dsign, rtol=1e-10, atol=1e-12)
    det, ddet = ad.jvp(ad.linalg.det, (a,), (da,))
    np.testing.assert_allclose(backend.to_numpy(ddet), backend.to_numpy(det) * trace, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(SINGULAR))
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_det_tangent_at_singular_matrix(backend, name, dtype):
    """d det = tr(adj(A) dA) is finite and exact at singular A (exact zero pivots in the LU)."""
    a_np = np.array(SINGULAR[name], dtype=dtype)
    a = backend.asarray(a_np)
    da = backend.random(a_np.shape, dtype, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's LinAlgWarning for the zero pivot
        assert (np.diagonal(backend.to_numpy(ad.linalg.lu_factor(a)[0])) == 0).any()
        det, ddet = ad.jvp(ad.linalg.det, (a,), (da,))
        ad.check_jvp(ad.linalg.det, (a,), (da,))
    assert backend.to_numpy(det) == 0
    expected = np.sum(_adjugate(a_np).T * backend.to_numpy(da))
    np.testing.assert_allclose(backend.to_numpy(ddet), expected, atol=1e-12)
    assert np.isfinite(backend.to_numpy(ddet)).all()


def test_det_tangent_batch_mixing_singular_and_regular(backend):
    rng = np.random.default_rng(6)
    a_np = np.stack([np.array(SINGULAR["zero_first_column"]), rng.standard_normal((3, 3)),
                     np.array(SINGULAR["rank_n_minus_2"]), np.array(SINGULAR["zero_middle_pivot"])])
    da_np = rng.standard_normal(a_np.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, ddet = ad.jvp(ad.linalg.det, (backend.asarray(a_np),), (backend.asarray(da_np),))
    expected = [np.sum(_adjugate(a).T * d) for a, d in zip(a_np, da_np)]
    np.testing.assert_allclose(backend.to_numpy(ddet), expected, rtol=1e-10, atol=1e-12)


def test_slogdet_at_singular_matrix(backend):
    a = backend.asarray(np.array(SINGULAR["zero_last_pivot"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (sign, logabs), (dsign, dlogabs) = ad.jvp(ad.linalg.slogdet, (a,), (backend.random((3, 3)),))
        complex_tangents = ad.jvp(ad.linalg.slogdet, (backend.asarray(np.array(SINGULAR["zero"], complex)),),
                                  (backend.random((2, 2), np.complex128),))[1]
    assert backend.to_numpy(sign) == 0 and backend.to_numpy(logabs) == -np.inf
    assert np.isnan(backend.to_numpy(dlogabs)) and backend.to_numpy(dsign) == 0
    assert np.isnan(backend.to_numpy(complex_tangents.sign)) and np.isnan(backend.to_numpy(complex_tangents.logabsdet))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_slogdet_second_derivative(backend, dtype):
    """jvp of (x -> jvp(slogdet, x, t)) matches finite differences of the first derivative."""
    a, t = backend.random((2, 3, 3), dtype, seed=7), backend.random((2, 3, 3), dtype, seed=8)
    first = lambda x: ad.jvp(ad.linalg.slogdet, (x,), (t,))[1]  # noqa: E731
    ad.check_jvp(first, (a,), rtol=1e-5)
    # analytic: d2 logabsdet[t, s] = -Re tr(A^-1 s A^-1 t)
    s = backend.random((2, 3, 3), dtype, seed=9)
    second = backend.to_numpy(ad.jvp(first, (a,), (s,))[1].logabsdet)
    a_np, t_np, s_np = (backend.to_numpy(v) for v in (a, t, s))
    inv = np.linalg.inv(a_np)
    np.testing.assert_allclose(second, -np.trace(inv @ s_np @ inv @ t_np, axis1=-2, axis2=-1).real, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_det_second_derivative(backend, dtype):
    a, t = backend.random((2, 3, 3), dtype, seed=10), backend.random((2, 3, 3), dtype, seed=11)
    ad.check_jvp(lambda x: ad.jvp(ad.linalg.det, (x,), (t,))[1], (a,), rtol=1e-5)


def test_inputs_not_modified(backend):
    a, da = backend.random((2, 3, 3), seed=12), backend.random((2, 3, 3), seed=13)
    copies = backend.to_numpy(a).copy(), backend.to_numpy(da).copy()
    ad.jvp(ad.linalg.det, (a,), (da,))
    ad.jvp(ad.linalg.slogdet, (a,), (da,))
    np.testing.assert_array_equal(backend.to_numpy(a), copies[0])
    np.testing.assert_array_equal(backend.to_numpy(da), copies[1])


def test_integer_and_nan_input(backend):
    a = backend.asarray(np.array([[2, 1], [1, 3]]))
    det = backend.to_numpy(ad.linalg.det(a))
    assert det.dtype == np.float64
    np.testing.assert_allclose(det, 5.0)
    np.testing.assert_allclose(backend.to_numpy(ad.linalg.slogdet(a).logabsdet), np.log(5.0))
    nan = backend.asarray(np.full((2, 2), np.nan))
    assert np.isnan(backend.to_numpy(ad.linalg.det(nan)))
    assert np.isnan(backend.to_numpy(ad.linalg.slogdet(nan).logabsdet))
    assert np.isnan(backend.to_numpy(ad.jvp(ad.linalg.det, (nan,), (backend.random((2, 2)),))[1]))


def test_bad_input(backend):
    for f in (ad.linalg.det, ad.linalg.slogdet):
        with pytest.raises(ValueError, match=r"\(2, 3\)"):
            f(backend.random((2, 3)))
        with pytest.raises(ValueError, match=r"\(3,\)"):
            f(backend.random((3,)))


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 5), complex_=st.booleans(),
       seed=st.integers(0, 2**16))
def test_det_slogdet_jvp_property(name, batch, n, complex_, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((*batch, n, n)) + (1j * rng.standard_normal((*batch, n, n)) if complex_ else 0)
    a = backend_named(name).from_numpy(a + 2 * np.eye(n))
    ad.check_jvp(ad.linalg.det, (a,), rtol=1e-5)
    ad.check_jvp(ad.linalg.slogdet, (a,), rtol=1e-5)
