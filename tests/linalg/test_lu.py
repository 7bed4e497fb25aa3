"""lu_factor and lu: primal equals SciPy's, JVP equals finite differences, P dA = dL U + L dU."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.backends import backend_named

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(4, 4), (5, 3), (3, 5), (2, 4, 4), (2, 3, 4, 2), (2, 2, 4), (1, 1), (0, 0)]


def _tol(dtype):
    return dict(rtol=5e-3, atol=1e-3) if dtype in (np.float32, np.complex64) else {}


def _np(x):
    return np.asarray(backend_named(_name_of(x)).to_numpy(x))


def _name_of(x):
    return "numpy" if type(x).__module__.split(".")[0] == "numpy" else "array_api_strict"


@pytest.mark.parametrize("shape", SHAPES + [(3, 0), (0, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_lu_factor_matches_scipy(backend, shape, dtype):
    a = backend.random(shape, dtype)
    packed, piv = ad.linalg.lu_factor(a)
    ref_lu, ref_piv = scipy.linalg.lu_factor(backend.to_numpy(a))
    np.testing.assert_array_equal(backend.to_numpy(packed), ref_lu)
    np.testing.assert_array_equal(backend.to_numpy(piv), ref_piv)
    assert backend.to_numpy(piv).dtype == np.int32


@pytest.mark.parametrize("shape", SHAPES + [(6, 2), (2, 6)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lu_matches_scipy(backend, shape, dtype):
    a = backend.random(shape, dtype, seed=1)
    p, l_, u = (backend.to_numpy(x) for x in ad.linalg.lu(a))
    rp, rl, ru = scipy.linalg.lu(backend.to_numpy(a))
    np.testing.assert_allclose(p, rp, atol=0)
    np.testing.assert_allclose(l_, rl, rtol=1e-13)
    np.testing.assert_allclose(u, ru, rtol=1e-13)
    np.testing.assert_allclose(p @ l_ @ u, backend.to_numpy(a), atol=1e-12)


def test_lu_empty_columns_permutation_shape(backend):
    # SciPy returns a (0, 0) p for a 3 x 0 input; ours is the (3, 3) identity, so a = p @ l @ u holds.
    p, l_, u = ad.linalg.lu(backend.asarray(np.zeros((3, 0))))
    assert (p.shape, l_.shape, u.shape) == ((3, 3), (3, 0), (0, 0))
    np.testing.assert_array_equal(backend.to_numpy(p), np.eye(3))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lu_factor_jvp(backend, shape, dtype):
    ad.check_jvp(ad.linalg.lu_factor, (backend.random(shape, dtype, seed=2),), **_tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_lu_jvp(backend, shape, dtype):
    ad.check_jvp(ad.linalg.lu, (backend.random(shape, dtype, seed=3),), **_tol(dtype))


@pytest.mark.parametrize("shape", [(4, 4), (6, 3), (3, 6), (2, 3, 5, 5)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lu_tangent_identity(backend, shape, dtype):
    """p^T dA = dL U + L dU, dL strictly lower, dU upper, dp = 0: on the raw tangents."""
    a, da = backend.random(shape, dtype, seed=4), backend.random(shape, dtype, seed=5)
    (p, l_, u), (dp, dl, du) = ad.jvp(ad.linalg.lu, (a,), (da,))
    p, l_, u, dp, dl, du = (backend.to_numpy(x) for x in (p, l_, u, dp, dl, du))
    np.testing.assert_array_equal(dp, 0)
    np.testing.assert_array_equal(np.triu(dl), 0)
    np.testing.assert_array_equal(np.tril(du, -1), 0)
    lhs = np.swapaxes(p, -1, -2) @ backend.to_numpy(da)
    np.testing.assert_allclose(dl @ u + l_ @ du, lhs, atol=1e-12 * max(1, np.abs(lhs).max()))


def test_lu_factor_packed_tangent_is_dl_plus_du(backend):
    a, da = backend.random((5, 3), seed=6), backend.random((5, 3), seed=7)
    (_, dl, du) = ad.jvp(ad.linalg.lu, (a,), (da,))[1]
    (dlu, dpiv) = ad.jvp(ad.linalg.lu_factor, (a,), (da,))[1]
    assert type(dpiv) is ad.Zero
    expected = backend.to_numpy(dl).copy()
    expected[:3] += backend.to_numpy(du)
    np.testing.assert_allclose(backend.to_numpy(dlu), expected, atol=1e-13)


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4), (2, 3, 3)])
def test_lu_second_derivative(backend, shape):
    a, t = backend.random(shape, seed=8), backend.random(shape, seed=9)
    inner = lambda x: ad.jvp(ad.linalg.lu_factor, (x,), (t,))[1][0]  # noqa: E731
    ad.check_jvp(inner, (a,), rtol=1e-5)
    inner_lu = lambda x: ad.jvp(ad.linalg.lu, (x,), (t,))[1]  # noqa: E731
    ad.check_jvp(inner_lu, (a,), rtol=1e-5)


@pytest.mark.parametrize("matrix", [
    [[1.0, 2.0], [2.0, 4.0]],  # rank 1, zero last pivot: the derivative exists
    [[1.0, 2.0, 3.0], [2.0, 4.0, 1.0]],  # wide, zero last pivot
    [[4.0, 4.0, 8.0], [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]],  # rank 2; pivots and multipliers powers of two:
    # the last pivot is exactly zero in any elimination order, with or without fused multiply-adds
])
def test_lu_zero_last_pivot_has_exact_tangent(backend, matrix):
    a = backend.asarray(np.array(matrix))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's LinAlgWarning for the zero pivot
        k = min(a.shape)
        assert backend.to_numpy(ad.linalg.lu_factor(a)[0])[k - 1, k - 1] == 0
        dlu = backend.to_numpy(ad.jvp(ad.linalg.lu_factor, (a,), (backend.random(a.shape, seed=1),))[1][0])
        assert np.isfinite(dlu).all()
        ad.check_jvp(ad.linalg.lu_factor, (a,))


def test_lu_zero_middle_pivot_nan_only_where_undefined(backend):
    # Pivot 1 is exactly zero: L below it (column >= 1) and U in rows > 1 have no derivative.
    a = backend.asarray(np.array([[4.0, 2.0, 3.0], [2.0, 1.0, 5.0], [2.0, 1.0, 1.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed, piv = ad.linalg.lu_factor(a)
        assert backend.to_numpy(packed)[1, 1] == 0
        dlu = backend.to_numpy(ad.jvp(ad.linalg.lu_factor, (a,), (backend.random((3, 3), seed=2),))[1][0])
    undefined = np.array([[False, False, False], [False, False, False], [False, True, True]])
    assert np.isnan(dlu[undefined]).all()
    assert np.isfinite(dlu[~undefined]).all()


@pytest.mark.parametrize("matrix", [
    [[4.0, 2.0, 3.0], [2.0, 1.0, 5.0], [2.0, 1.0, 1.0]],  # zero middle pivot
    [[4.0, 4.0, 8.0], [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]],  # zero last pivot (exact in any order)
    [[2.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 4.0]],  # regular
    [[1.0, 2.0], [2.0, 4.0], [3.0, 1.0]],  # tall, zero last pivot of U1
])
def test_lu_branch_free_path_matches_host_path(backend, monkeypatch, matrix):
    """CuPy never asks the host whether a pivot is zero: it always applies the zero-pivot masks.
    That path must give the host path's tangent bit for bit (NaN in the same places)."""
    from cupy_ad.linalg import _clusters

    a = backend.asarray(np.array(matrix))
    t = backend.random(a.shape, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        host = backend.to_numpy(ad.jvp(ad.linalg.lu_factor, (a,), (t,))[1][0])
        monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", True)
        forced = backend.to_numpy(ad.jvp(ad.linalg.lu_factor, (a,), (t,))[1][0])
    np.testing.assert_array_equal(host, forced)


def test_lu_input_not_modified_and_nan_input(backend):
    a = backend.random((2, 4, 3), seed=3)
    da = backend.random((2, 4, 3), seed=4)
    a_copy, da_copy = backend.to_numpy(a).copy(), backend.to_numpy(da).copy()
    ad.jvp(ad.linalg.lu, (a,), (da,))
    ad.jvp(ad.linalg.lu_factor, (a,), (da,))
    np.testing.assert_array_equal(backend.to_numpy(a), a_copy)
    np.testing.assert_array_equal(backend.to_numpy(da), da_copy)
    nan = backend.asarray(np.full((3, 3), np.nan))
    out, tangent = ad.jvp(ad.linalg.lu_factor, (nan,), (backend.random((3, 3)),))
    assert np.isnan(backend.to_numpy(out[0])).all()


def test_lu_integer_input_promoted(backend):
    a = backend.asarray(np.array([[1, 2], [3, 4]]))
    packed, piv = ad.linalg.lu_factor(a)
    np.testing.assert_allclose(backend.to_numpy(packed), scipy.linalg.lu_factor(np.array([[1, 2], [3, 4]]))[0])
    assert backend.to_numpy(packed).dtype == np.float64
    assert backend.to_numpy(ad.linalg.lu(a)[0]).dtype == np.float64


def test_lu_bad_input(backend):
    with pytest.raises(ValueError, match=r"\(3,\)"):
        ad.linalg.lu_factor(backend.random((3,)))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        ad.linalg.lu(backend.random((3,)))


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), m=st.integers(1, 5), n=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_lu_factor_jvp_property(name, batch, m, n, seed):
    rng = np.random.default_rng(seed)
    a = backend_named(name).from_numpy(rng.standard_normal((*batch, m, n)))
    ad.check_jvp(ad.linalg.lu_factor, (a,), rtol=1e-5)
    p, l_, u = (_np(x) for x in ad.linalg.lu(a))
    np.testing.assert_allclose(p @ l_ @ u, _np(a), atol=1e-12)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_batched_lu_of_non_finite_matrices_is_the_loop(compiled, dtype, monkeypatch):
    """NumPy backend, many small matrices (the batched getf2, or without Numba the elimination over the
    batch), some holding NaN or Inf: each matrix gets the factors of its own call, as a loop over the
    batch gives them: pivots and NaN/Inf pattern (bit for bit where non-finite), the finite matrices'
    to rounding. (The batched search took the first NaN of a column or passed over it, where LAPACK
    here takes the largest finite entry: other pivots, other NaN.)"""
    from cupy_ad.backends import numpy_compiled
    from cupy_ad.backends.numpy_backend import NumpyBackend

    if compiled and not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    if not compiled:
        monkeypatch.setattr(numpy_compiled, "_compiled", None)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((70, 6, 6)) + (1j * rng.standard_normal((70, 6, 6)) if dtype is np.complex128 else 0)
    bad = {3: [((3, 0), np.nan)], 10: [((0, 0), np.nan)], 17: [((2, 1), np.nan)], 24: [((2, 1), -np.inf)],
           31: [((5, 3), np.nan)], 38: [((1, 4), np.inf), ((4, 1), np.nan)], 45: [((0, 0), np.inf)]}
    for i, entries in bad.items():
        for where, value in entries:
            a[i][where] = value
    backend = NumpyBackend()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        lu, piv = backend.lu_factor(a)
        loop = [backend.lu_factor(m) for m in a]
    for i, (lu_i, piv_i) in enumerate(loop):
        np.testing.assert_array_equal(piv[i], piv_i)
        if i in bad:
            np.testing.assert_array_equal(lu[i], lu_i)
        else:
            np.testing.assert_allclose(lu[i], lu_i, rtol=1e-12, atol=1e-12)
    assert not np.isfinite(lu[list(bad)]).all(axis=(-2, -1)).any()
