"""solve and inv: primal equals NumPy's, JVP equals finite differences, A dX + dA X = dB."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.backends import backend_named

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
# (a shape, b shape): matrix, vector, batched, broadcast batch, vector against a batch, 1x1, empty
CASES = [((4, 4), (4, 2)), ((4, 4), (4,)), ((2, 3, 3), (2, 3, 1)), ((2, 3, 3), (4, 1, 3, 2)),
         ((2, 3, 3), (3,)), ((1, 1), (1, 3)), ((0, 0), (0,)), ((2, 0, 0), (2, 0, 3))]
SQUARE = [(4, 4), (2, 3, 3), (1, 1), (0, 0)]


def _tol(dtype):
    return dict(rtol=5e-3, atol=1e-3) if dtype in (np.float32, np.complex64) else {}


def _well_conditioned(backend, shape, dtype, seed=0):
    a = backend.to_numpy(backend.random(shape, dtype, seed))
    return backend.asarray((a + 2 * np.eye(shape[-1])).astype(dtype)) if shape[-1] else backend.asarray(a)


@pytest.mark.parametrize("a_shape,b_shape", CASES)
def test_solve_matches_numpy(backend, a_shape, b_shape):
    a, b = _well_conditioned(backend, a_shape, np.float64), backend.random(b_shape, seed=1)
    x = backend.to_numpy(ad.linalg.solve(a, b))
    ref = np.linalg.solve(backend.to_numpy(a), backend.to_numpy(b))
    assert x.shape == ref.shape
    np.testing.assert_allclose(x, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SQUARE)
def test_inv_matches_numpy(backend, shape):
    a = _well_conditioned(backend, shape, np.complex128)
    np.testing.assert_allclose(backend.to_numpy(ad.linalg.inv(a)), np.linalg.inv(backend.to_numpy(a)), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("a_shape,b_shape", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_solve_jvp(backend, a_shape, b_shape, dtype):
    a, b = _well_conditioned(backend, a_shape, dtype), backend.random(b_shape, dtype, seed=2)
    ad.check_jvp(ad.linalg.solve, (a, b), **_tol(dtype))
    ad.check_jvp(lambda x: ad.linalg.solve(x, b), (a,), **_tol(dtype))  # dB = 0
    ad.check_jvp(lambda y: ad.linalg.solve(a, y), (b,), **_tol(dtype))  # dA = 0


@pytest.mark.parametrize("shape", SQUARE)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inv_jvp(backend, shape, dtype):
    ad.check_jvp(ad.linalg.inv, (_well_conditioned(backend, shape, dtype),), **_tol(dtype))


@pytest.mark.parametrize("a_shape,b_shape", [((4, 4), (4, 2)), ((2, 3, 3), (4, 1, 3, 2)), ((3, 3), (3,))])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_solve_tangent_identity(backend, a_shape, b_shape, dtype):
    """A dX + dA X = dB (and A dX + dA X = 0 for inv) on the raw tangents."""
    a, da = _well_conditioned(backend, a_shape, dtype), backend.random(a_shape, dtype, seed=3)
    b, db = backend.random(b_shape, dtype, seed=4), backend.random(b_shape, dtype, seed=5)
    x, dx = (backend.to_numpy(v) for v in ad.jvp(ad.linalg.solve, (a, b), (da, db)))
    a_np, da_np = backend.to_numpy(a), backend.to_numpy(da)
    if len(b_shape) == 1:
        x, dx = x[..., None], dx[..., None]
    lhs = a_np @ dx + da_np @ x
    db_np = backend.to_numpy(db)
    np.testing.assert_allclose(lhs, np.broadcast_to(db_np[..., None] if len(b_shape) == 1 else db_np, lhs.shape),
                               atol=1e-11)
    inv, dinv = (backend.to_numpy(v) for v in ad.jvp(ad.linalg.inv, (a,), (da,)))
    np.testing.assert_allclose(a_np @ dinv + da_np @ inv, 0, atol=1e-11)


def test_solve_factorises_once(backend, monkeypatch):
    calls = []
    kernel_owner = ad.namespace(backend.name).backend
    original = kernel_owner.lu_factor
    monkeypatch.setattr(kernel_owner, "lu_factor", lambda a: calls.append(a.shape) or original(a))
    a, b = _well_conditioned(backend, (3, 3), np.float64), backend.random((3, 2), seed=6)
    ad.jvp(ad.linalg.solve, (a, b), (backend.random((3, 3), seed=7), backend.random((3, 2), seed=8)))
    assert len(calls) == 1


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_solve_and_inv_second_derivative(backend, dtype):
    a, b = _well_conditioned(backend, (2, 3, 3), dtype), backend.random((2, 3, 2), dtype, seed=9)
    ta, tb = backend.random((2, 3, 3), dtype, seed=10), backend.random((2, 3, 2), dtype, seed=11)
    ad.check_jvp(lambda x: ad.jvp(lambda y: ad.linalg.solve(y, b), (x,), (ta,))[1], (a,), rtol=1e-5)
    ad.check_jvp(lambda y: ad.jvp(lambda x: ad.linalg.solve(x, y), (a,), (ta,))[1], (b,), rtol=1e-5)
    ad.check_jvp(lambda x: ad.jvp(ad.linalg.solve, (x, b), (ta, tb))[1], (a,), rtol=1e-5)
    ad.check_jvp(lambda x: ad.jvp(ad.linalg.inv, (x,), (ta,))[1], (a,), rtol=1e-5)


def test_inputs_not_modified(backend):
    a, b = _well_conditioned(backend, (3, 3), np.float64), backend.random((3, 2), seed=12)
    da, db = backend.random((3, 3), seed=13), backend.random((3, 2), seed=14)
    copies = [backend.to_numpy(v).copy() for v in (a, b, da, db)]
    ad.jvp(ad.linalg.solve, (a, b), (da, db))
    ad.jvp(ad.linalg.inv, (a,), (da,))
    for v, c in zip((a, b, da, db), copies):
        np.testing.assert_array_equal(backend.to_numpy(v), c)


def test_integer_mixed_and_nan_input(backend):
    a = backend.asarray(np.array([[2, 1], [1, 3]]))
    b = backend.asarray(np.array([1, 2]))
    x = backend.to_numpy(ad.linalg.solve(a, b))
    assert x.dtype == np.float64
    np.testing.assert_allclose(x, np.linalg.solve([[2.0, 1.0], [1.0, 3.0]], [1.0, 2.0]))
    assert backend.to_numpy(ad.linalg.inv(a)).dtype == np.float64
    mixed = ad.linalg.solve(backend.random((2, 2), np.float32), backend.random((2,), np.float64))
    assert backend.to_numpy(mixed).dtype == np.float64
    nan = backend.asarray(np.full((2, 2), np.nan))
    assert np.isnan(backend.to_numpy(ad.linalg.solve(nan, backend.random((2,))))).all()
    assert np.isnan(backend.to_numpy(ad.linalg.inv(nan))).all()


def test_bad_input(backend):
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        ad.linalg.solve(backend.random((3, 4)), backend.random((3,)))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        ad.linalg.inv(backend.random((3, 4)))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ad.linalg.solve(backend.random((3, 3)), backend.random((4,)))
    with pytest.raises(ValueError, match="broadcast"):
        ad.linalg.solve(backend.random((2, 3, 3)), backend.random((4, 3, 1)))


def test_singular_raises_on_numpy(backend):
    # Exactly singular: neither the solution nor its derivative exists; NumPy-backed kernels refuse.
    a = backend.asarray(np.array([[1.0, 2.0], [2.0, 4.0]]))
    with pytest.warns(Warning), pytest.raises(np.linalg.LinAlgError):
        ad.linalg.inv(a)


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(1, 3), max_size=2), n=st.integers(1, 5), k=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_solve_jvp_property(name, batch, n, k, seed):
    rng = np.random.default_rng(seed)
    backend = backend_named(name)
    a = backend.from_numpy(rng.standard_normal((*batch, n, n)) + 3 * np.eye(n))
    b = backend.from_numpy(rng.standard_normal((n,) if k == 0 else (*batch, n, k)))
    ad.check_jvp(ad.linalg.solve, (a, b), rtol=1e-5)
    ad.check_jvp(ad.linalg.inv, (a,), rtol=1e-5)
