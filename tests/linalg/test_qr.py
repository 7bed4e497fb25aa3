"""qr: primal against NumPy, JVPs of the raw outputs against finite differences for every mode,
shape class and dtype, identities on the raw tangents, nested jvp, degenerate input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cupy_ad as ad

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SINGLE = (np.float32, np.complex64)
MODES = ["reduced", "complete", "r"]
# square, tall, wide, 1 x 1, column, row, batched tall / wide / square
SHAPES = [(4, 4), (6, 3), (3, 6), (1, 1), (4, 1), (1, 4), (2, 5, 3), (2, 3, 5), (2, 1, 3, 3)]
EMPTY = [(0, 3), (3, 0), (0, 0), (2, 0, 3), (2, 3, 0)]


def tol(dtype):
    return dict(rtol=5e-3, atol=5e-3) if dtype in SINGLE else {}


def close(dtype):
    return dict(rtol=2e-4, atol=2e-4) if dtype in SINGLE else dict(rtol=1e-9, atol=1e-9)


def mh(x: np.ndarray) -> np.ndarray:
    return np.conj(np.swapaxes(x, -1, -2))


def qr_fn(mode):
    return lambda a: ad.linalg.qr(a, mode=mode)


def tangent_of(backend, a, seed=7):
    return backend.random(tuple(a.shape), np.dtype(backend.to_numpy(a).dtype).type, seed=seed)


# --------------------------------------------------------------------------- primal


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (2, 4, 3)])
def test_primal_matches_numpy(backend, dtype, mode, shape):
    a = backend.random(shape, dtype, seed=1)
    out = ad.linalg.qr(a, mode=mode)
    ref = np.linalg.qr(backend.to_numpy(a), mode=mode)
    if mode == "r":
        assert not isinstance(out, tuple)
        got, want = [backend.to_numpy(out)], [ref]
    else:
        assert isinstance(out, ad.linalg.QRResult)
        got, want = [backend.to_numpy(out.Q), backend.to_numpy(out.R)], [ref.Q, ref.R]
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, **close(dtype))


@pytest.mark.parametrize("shape", EMPTY)
@pytest.mark.parametrize("mode", MODES)
def test_empty(backend, shape, mode):
    a = backend.asarray(np.zeros(shape))
    ref = np.linalg.qr(np.zeros(shape), mode=mode)
    out = ad.linalg.qr(a, mode=mode)
    for g, w in zip(out if mode != "r" else [out], ref if mode != "r" else [ref]):
        np.testing.assert_array_equal(backend.to_numpy(g), w)
    ad.check_jvp(qr_fn(mode), (a,))


def test_complex_diagonal_is_real(backend):
    """The invariant the rule keeps: LAPACK's R has a real diagonal, for complex input too."""
    for shape in [(4, 4), (5, 3), (3, 5)]:
        r = backend.to_numpy(ad.linalg.qr(backend.random(shape, np.complex128, seed=3), mode="r"))
        assert np.all(np.diagonal(r, axis1=-2, axis2=-1).imag == 0)


def test_errors(backend):
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ad.linalg.qr(backend.random((4,)))
    with pytest.raises(ValueError, match="mode"):
        ad.linalg.qr(backend.random((3, 3)), mode="economic")


# --------------------------------------------------------------------------- JVPs against finite differences


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_jvp_raw_outputs(backend, mode, dtype, shape):
    """Q and R (complete Q's Householder completion included) are smooth functions of A: FD on them."""
    a = backend.random(shape, dtype, seed=2)
    ad.check_jvp(qr_fn(mode), (a,), **tol(dtype))


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 6), batch=st.lists(st.integers(1, 2), max_size=2),
       mode=st.sampled_from(MODES), complex_=st.booleans(), seed=st.integers(0, 2**16))
def test_jvp_hypothesis(m, n, batch, mode, complex_, seed):
    backend_ns = ad.namespace("numpy").backend
    rng = np.random.default_rng(seed)
    shape = (*batch, m, n)
    a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex_ else 0)
    ad.check_jvp(qr_fn(mode), (backend_ns.from_numpy(a),), rtol=1e-5)


# --------------------------------------------------------------------------- identities on raw tangents


@pytest.mark.parametrize("shape", [(4, 4), (6, 3), (3, 6), (2, 5, 2), (2, 2, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("mode", ["reduced", "complete"])
def test_identities(backend, mode, dtype, shape):
    a = backend.random(shape, dtype, seed=4)
    da = tangent_of(backend, a)
    (q, r), (dq, dr) = ad.jvp(qr_fn(mode), (a,), (da,))
    q, r, dq, dr, da_np = map(backend.to_numpy, (q, r, dq, dr, da))
    omega = mh(q) @ dq
    np.testing.assert_allclose(omega + mh(omega), 0, atol=1e-10)  # Q^H dQ skew-Hermitian (full Q if complete)
    np.testing.assert_allclose(dq @ r + q @ dr, da_np, atol=1e-10)  # dQ R + Q dR = dA
    np.testing.assert_allclose(np.tril(dr, -1), 0, atol=0)  # dR upper triangular (trapezoidal)
    np.testing.assert_allclose(np.diagonal(dr, axis1=-2, axis2=-1).imag, 0, atol=0)  # diag(R) stays real
    if mode == "complete" and shape[-2] > shape[-1]:
        assert omega.shape[-1] == shape[-2]


@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (3, 5), (2, 4, 2)])
def test_mode_r_tangent_equals_reduced(backend, shape):
    a = backend.random(shape, np.complex128, seed=5)
    da = tangent_of(backend, a)
    _, dr = ad.jvp(qr_fn("r"), (a,), (da,))
    _, (_, dr_reduced) = ad.jvp(qr_fn("reduced"), (a,), (da,))
    np.testing.assert_allclose(backend.to_numpy(dr), backend.to_numpy(dr_reduced), atol=1e-11)


def test_inputs_not_modified(backend):
    for mode in MODES:
        a = backend.random((2, 5, 3), np.complex128, seed=6)
        da = tangent_of(backend, a)
        a0, da0 = backend.to_numpy(a).copy(), backend.to_numpy(da).copy()
        ad.jvp(qr_fn(mode), (a,), (da,))
        np.testing.assert_array_equal(backend.to_numpy(a), a0)
        np.testing.assert_array_equal(backend.to_numpy(da), da0)


# --------------------------------------------------------------------------- nested jvp


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_second_derivative_of_scalar_function_of_r(backend, dtype):
    ns = backend.ns
    a = backend.random((5, 3), dtype, seed=8)
    t = tangent_of(backend, a, seed=9)

    def scalar(x):  # log |det R| + |R|_F^2 / 2, real
        r = ad.linalg.qr(x, mode="r")
        d = ns.abs(ns.linalg.diagonal(r))
        return ns.sum(ns.log(d)) + 0.5 * ns.sum(ns.real(ns.multiply(r, ns.conj(r))))

    def first(x):
        return ad.jvp(scalar, (x,), (t,))[1]

    ad.check_jvp(first, (a,), rtol=1e-5)


@pytest.mark.parametrize("mode", ["complete", "reduced"])
def test_second_derivative_of_raw_outputs(backend, mode):
    a = backend.random((2, 4, 2), np.complex128, seed=10)
    t = tangent_of(backend, a, seed=11)
    ad.check_jvp(lambda x: ad.jvp(qr_fn(mode), (x,), (t,))[1], (a,), rtol=1e-5)


# --------------------------------------------------------------------------- degenerate input


@pytest.mark.parametrize("mode", MODES)
def test_singular_r_gives_nan_not_error(backend, mode):
    a = backend.asarray(np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]]))
    out, tangent = ad.jvp(qr_fn(mode), (a,), (tangent_of(backend, a),))
    r = backend.to_numpy(out if mode == "r" else out[1])
    assert r[1, 1] == 0  # exactly rank deficient leading block
    dr = backend.to_numpy(tangent if mode == "r" else tangent[1])
    assert np.isnan(dr).any()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("singular", [True, False])
def test_branch_free_guard_matches_host_path(backend, monkeypatch, mode, singular):
    """CuPy always applies the zero-pivot guard; host backends only when R has a zero on its diagonal.
    Both give the same tangents, NaN in the same places."""
    from cupy_ad.linalg import _clusters

    a = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]])
    a = backend.asarray(a if singular else a + np.eye(4, 3))
    t = tangent_of(backend, a)
    host = ad.jvp(qr_fn(mode), (a,), (t,))[1]
    monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", True)
    forced = ad.jvp(qr_fn(mode), (a,), (t,))[1]
    for x, y in zip(host if isinstance(host, tuple) else (host,), forced if isinstance(forced, tuple) else (forced,)):
        np.testing.assert_array_equal(backend.to_numpy(x), backend.to_numpy(y))
