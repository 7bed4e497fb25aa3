"""svd / svdvals: primal against NumPy, JVPs against finite differences, identities, gauge, degeneracy."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.linalg._matrix import mH

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SINGLE = (np.float32, np.complex64)
# square, tall, wide, 1 x 1, batched tall/wide/square, two batch dimensions
SHAPES = [(4, 4), (5, 3), (3, 5), (1, 1), (2, 4, 3), (2, 3, 4), (2, 2, 3, 3)]
EMPTY = [(0, 3), (3, 0), (0, 0), (0, 3, 3), (2, 0, 3)]


def tol(dtype):
    return {"rtol": 5e-3, "atol": 5e-3} if dtype in SINGLE else {}


def is_complex(dtype) -> bool:
    return np.issubdtype(dtype, np.complexfloating)


def invariants(backend, full_matrices):
    """Gauge-invariant functions of svd's outputs.

    S; U1 diag(S) V1^H; |U1|^2 and |V1|^2 (sign/phase free); the rank-one terms u_i v_i^H (tie the
    phases of U and V together); the projectors U1 U1^H and V1 V1^H; U U^H and Vh^H Vh (identities,
    so their tangents must vanish: this sees the full completion too).
    """
    ns = backend.ns

    def f(a):
        u, s, vh = ad.linalg.svd(a, full_matrices=full_matrices)
        k = s.shape[-1]
        u1, vh1 = u[..., :, :k], vh[..., :k, :]
        rank_one = ns.multiply(ns.expand_dims(u1, axis=-1), ns.expand_dims(vh1, axis=-3))  # (..., m, k, n)
        us = ns.multiply(u1, ns.expand_dims(s, axis=-2))
        return (s, ns.matmul(us, vh1), ns.real(ns.multiply(u1, ns.conj(u1))),
                ns.real(ns.multiply(vh1, ns.conj(vh1))), rank_one, ns.matmul(u1, mH(u1)),
                ns.matmul(mH(vh1), vh1), ns.matmul(u, mH(u)), ns.matmul(mH(vh), vh))

    return f


# --------------------------------------------------------------------------- primal


@pytest.mark.parametrize("full_matrices", [True, False])
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (2, 3, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_primal_matches_numpy(backend, dtype, shape, full_matrices):
    a = backend.random(shape, dtype, seed=1)
    result = ad.linalg.svd(a, full_matrices=full_matrices)
    assert isinstance(result, ad.linalg.SVDResult)
    ref = np.linalg.svd(backend.to_numpy(a), full_matrices=full_matrices)
    close = {"rtol": 1e-4, "atol": 1e-4} if dtype in SINGLE else {"rtol": 1e-12, "atol": 1e-12}
    for got, want in zip(result, ref):
        got = backend.to_numpy(got)
        assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(backend.to_numpy(result.S), ref.S, **close)
    np.testing.assert_allclose(np.abs(backend.to_numpy(result.U)[..., :, :3]), np.abs(ref.U[..., :, :3]), **close)
    np.testing.assert_allclose(backend.to_numpy(ad.linalg.svdvals(a)), ref.S, **close)


@pytest.mark.parametrize("shape", EMPTY)
def test_empty(backend, shape):
    a = backend.random(shape, np.float64)
    for full_matrices in (True, False):
        ref = np.linalg.svd(backend.to_numpy(a), full_matrices=full_matrices)
        result = ad.linalg.svd(a, full_matrices=full_matrices)
        assert [tuple(x.shape) for x in result] == [x.shape for x in ref]
        ad.check_jvp(invariants(backend, full_matrices), (a,))
        _, tangents = ad.jvp(lambda x, fm=full_matrices: ad.linalg.svd(x, full_matrices=fm), (a,), (a,))
        assert [tuple(t.shape) for t in tangents] == [x.shape for x in ref]
        assert all(np.all(backend.to_numpy(t) == 0) for t in tangents)
    ad.check_jvp(ad.linalg.svdvals, (a,))


def test_errors(backend):
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ad.linalg.svd(backend.random((4,)))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ad.linalg.svdvals(backend.random((4,)))
    # integer input is promoted to float64 as NumPy does (tests/linalg/test_edge_cases.py)
    assert ad.linalg.svd(backend.asarray(np.ones((3, 3), dtype=np.int64))).S.dtype == backend.xp.float64
    with pytest.raises(TypeError, match="full_matrices"):
        ad.linalg.svd(backend.random((3, 3)), full_matrices="yes")


# --------------------------------------------------------------------------- JVP vs finite differences


@pytest.mark.parametrize("full_matrices", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_jvp_invariants(backend, dtype, shape, full_matrices):
    a = backend.random(shape, dtype, seed=2)
    ad.check_jvp(invariants(backend, full_matrices), (a,), **tol(dtype))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_jvp_svdvals(backend, dtype, shape):
    a = backend.random(shape, dtype, seed=3)
    ad.check_jvp(ad.linalg.svdvals, (a,), **tol(dtype))


def _aligned_svd(a: np.ndarray, u0: np.ndarray, vh0: np.ndarray, full_matrices: bool):
    """NumPy's SVD of ``a`` in the gauge of the rule, relative to the reference factors u0, vh0.

    Pair i is multiplied by the phase making u0_i^H u_i real positive (V gets the same phase, so
    u_i v_i^H is unchanged); a full completion U2 (V2) is multiplied by the unitary polar factor
    that makes U2_0^H U2 Hermitian positive (the minimal rotation, U2^H dU2 = 0 to first order).
    """
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices)
    k = s.shape[-1]
    c = np.sum(np.conj(u0[..., :, :k]) * u[..., :, :k], axis=-2, keepdims=True)
    phase = np.conj(c) / np.abs(c)
    u, vh = u.copy(), vh.copy()
    u[..., :, :k] *= phase
    vh[..., :k, :] *= np.swapaxes(np.conj(phase), -1, -2)

    def polar(x0, x):  # columns of x beyond k rotated onto x0's
        m = np.conj(np.swapaxes(x0, -1, -2)) @ x
        w, _, zh = np.linalg.svd(m)
        return x @ (np.conj(np.swapaxes(zh, -1, -2)) @ np.conj(np.swapaxes(w, -1, -2)))

    if full_matrices and u.shape[-1] > k:
        u[..., :, k:] = polar(u0[..., :, k:], u[..., :, k:])
    if full_matrices and vh.shape[-2] > k:
        v2 = polar(np.conj(np.swapaxes(vh0[..., k:, :], -1, -2)), np.conj(np.swapaxes(vh[..., k:, :], -1, -2)))
        vh[..., k:, :] = np.conj(np.swapaxes(v2, -1, -2))
    return u, s, vh


@pytest.mark.parametrize("full_matrices", [True, False])
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5), (1, 1), (2, 4, 3), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_raw_tangents_vs_aligned_fd(backend, dtype, shape, full_matrices):
    a = backend.random(shape, dtype, seed=4)
    da = backend.random(shape, dtype, seed=5)
    (u, _s, vh), (du, ds, dvh) = ad.jvp(lambda x: ad.linalg.svd(x, full_matrices=full_matrices), (a,), (da,))
    a_np, da_np = backend.to_numpy(a), backend.to_numpy(da)
    u0, vh0 = backend.to_numpy(u), backend.to_numpy(vh)
    eps = 1e-6
    hi = _aligned_svd(a_np + eps * da_np, u0, vh0, full_matrices)
    lo = _aligned_svd(a_np - eps * da_np, u0, vh0, full_matrices)
    for name, got, p, q in zip(["U", "S", "Vh"], (du, ds, dvh), hi, lo):
        fd = (p - q) / (2 * eps)
        np.testing.assert_allclose(backend.to_numpy(got), fd, rtol=1e-6, atol=1e-8 + 1e-6 * np.max(np.abs(fd)),
                                   err_msg=name)


# --------------------------------------------------------------------------- identities on raw tangents


@pytest.mark.parametrize("full_matrices", [True, False])
@pytest.mark.parametrize("shape", [(4, 4), (6, 3), (3, 6), (2, 5, 2)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_identities(backend, dtype, shape, full_matrices):
    a = backend.random(shape, dtype, seed=6)
    da = backend.random(shape, dtype, seed=7)
    (u, s, vh), (du, ds, dvh) = ad.jvp(lambda x: ad.linalg.svd(x, full_matrices=full_matrices), (a,), (da,))
    u, s, vh, du, ds, dvh = (backend.to_numpy(x).astype(np.complex128) for x in (u, s, vh, du, ds, dvh))
    a_np, da_np = backend.to_numpy(a), backend.to_numpy(da)
    atol = 2e-4 if dtype in SINGLE else 1e-10
    h = lambda x: np.conj(np.swapaxes(x, -1, -2))
    omega_u, omega_v = h(u) @ du, vh @ h(dvh)  # U^H dU and V^H dV
    np.testing.assert_allclose(omega_u + h(omega_u), 0, atol=atol, err_msg="U^H dU skew-Hermitian")
    np.testing.assert_allclose(omega_v + h(omega_v), 0, atol=atol, err_msg="V^H dV skew-Hermitian")
    k = s.shape[-1]
    np.testing.assert_allclose(np.imag(np.diagonal(omega_u[..., :k, :k], axis1=-2, axis2=-1)), 0, atol=atol,
                               err_msg="phase gauge Im diag(U^H dU) = 0")
    np.testing.assert_allclose(omega_u[..., k:, k:], 0, atol=atol, err_msg="minimal rotation U2^H dU2 = 0")
    np.testing.assert_allclose(omega_v[..., k:, k:], 0, atol=atol, err_msg="minimal rotation V2^H dV2 = 0")
    np.testing.assert_allclose(np.imag(ds), 0)
    u1, du1, vh1, dvh1 = u[..., :, :k], du[..., :, :k], vh[..., :k, :], dvh[..., :k, :]
    rebuilt = ((du1 * s[..., None, :]) @ vh1 + (u1 * ds[..., None, :]) @ vh1 + (u1 * s[..., None, :]) @ dvh1)
    scale = np.max(np.abs(da_np))
    np.testing.assert_allclose(rebuilt, da_np, atol=atol * 10 * scale, err_msg="dA = dU S Vh + U dS Vh + U S dVh")
    np.testing.assert_allclose(np.real(ds), np.real(np.einsum("...ik,...ij,...kj->...k", np.conj(u1), da_np,
                                                              np.conj(vh1))), atol=atol, err_msg="dS = Re diag(P)")
    assert a_np.shape == shape


# --------------------------------------------------------------------------- nested (second derivatives)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_second_derivative_svdvals(backend, dtype):
    a = backend.random((4, 3), dtype, seed=8)
    t = backend.random((4, 3), dtype, seed=9)
    ad.check_jvp(lambda x: ad.jvp(ad.linalg.svdvals, (x,), (t,))[1], (a,), rtol=1e-5)


def test_second_derivative_svd_invariants(backend):
    a = backend.random((2, 3, 4), np.complex128, seed=10)
    t = backend.random((2, 3, 4), np.complex128, seed=11)
    f = invariants(backend, True)
    ad.check_jvp(lambda x: ad.jvp(f, (x,), (t,))[1][:5], (a,), rtol=1e-5)


def test_second_derivative_mixed_direction(backend):
    # d/de d/dd S(A + e E + d D) is symmetric in (D, E): a check of the nested rule independent of FD
    a = backend.random((5, 3), np.float64, seed=12)
    d = backend.random((5, 3), np.float64, seed=13)
    e = backend.random((5, 3), np.float64, seed=14)
    first = lambda x, t: ad.jvp(ad.linalg.svdvals, (x,), (t,))[1]
    de = ad.jvp(lambda x: first(x, d), (a,), (e,))[1]
    ed = ad.jvp(lambda x: first(x, e), (a,), (d,))[1]
    np.testing.assert_allclose(backend.to_numpy(de), backend.to_numpy(ed), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- degenerate input


def _with_singular_values(backend, s, m, n, dtype, seed):
    rng = np.random.default_rng(seed)
    qu, _ = np.linalg.qr(rng.standard_normal((m, m)))
    qv, _ = np.linalg.qr(rng.standard_normal((n, n)))
    d = np.zeros((m, n))
    d[np.arange(len(s)), np.arange(len(s))] = s
    return backend.asarray((qu @ d @ qv.T).astype(dtype))


@pytest.mark.parametrize("full_matrices", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["identity", "repeated", "rank_deficient_tall", "rank_deficient_wide", "zero"])
def test_degenerate_tangents_finite(backend, case, dtype, full_matrices):
    if case == "identity":
        a = backend.asarray(np.eye(4, dtype=dtype))
    elif case == "repeated":
        a = _with_singular_values(backend, [3.0, 2.0, 2.0, 1.0], 4, 4, dtype, 15)
    elif case == "rank_deficient_tall":
        a = _with_singular_values(backend, [3.0, 1.0, 0.0], 5, 3, dtype, 16)
    elif case == "rank_deficient_wide":
        a = _with_singular_values(backend, [2.0, 0.0, 0.0], 3, 5, dtype, 17)
    else:
        a = backend.asarray(np.zeros((3, 4), dtype=dtype))
    da = backend.random(tuple(a.shape), dtype, seed=18)
    _, tangents = ad.jvp(lambda x: ad.linalg.svd(x, full_matrices=full_matrices), (a,), (da,))
    for t in tangents:  # finite, and bounded: ill-defined terms dropped, not blown up by rounding noise
        t = backend.to_numpy(t)
        assert np.all(np.isfinite(t)) and np.max(np.abs(t), initial=0.0) < 1e3
    _, ds = ad.jvp(ad.linalg.svdvals, (a,), (da,))
    ds = backend.to_numpy(ds)
    assert np.all(np.isfinite(ds))
    if case == "repeated":  # the sum over a repeated pair is a trace: exact whatever the basis
        a64 = backend.to_numpy(a).astype(np.complex128 if is_complex(dtype) else np.float64)
        da64 = backend.to_numpy(da)
        fd = (np.linalg.svd(a64 + 1e-6 * da64, compute_uv=False) - np.linalg.svd(a64 - 1e-6 * da64, compute_uv=False))
        fd = fd / 2e-6
        close = {"atol": 1e-3} if dtype in SINGLE else {"atol": 1e-7}
        np.testing.assert_allclose(ds[1] + ds[2], fd[1] + fd[2], **close)
        np.testing.assert_allclose(ds[[0, 3]], fd[[0, 3]], **close)


def test_well_separated_tangent_unaffected_by_thresholds(backend):
    # a close but resolvable pair (gap 1e-6 relative) keeps its exact, large derivative
    a = _with_singular_values(backend, [2.0, 1.0 + 1e-6, 1.0], 3, 3, np.float64, 19)
    ad.check_jvp(invariants(backend, False), (a,), eps=1e-10, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------- properties


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=st.integers(1, 5), n=st.integers(1, 5), batch=st.lists(st.integers(1, 2), max_size=2),
       complex_=st.booleans(), full_matrices=st.booleans(), seed=st.integers(0, 2**16))
def test_property_shapes(backend, m, n, batch, complex_, full_matrices, seed):
    dtype = np.complex128 if complex_ else np.float64
    shape = (*batch, m, n)
    a = backend.random(shape, dtype, seed=seed)
    before = backend.to_numpy(a).copy()
    ad.check_jvp(invariants(backend, full_matrices), (a,), rtol=1e-5)
    ad.check_jvp(ad.linalg.svdvals, (a,), rtol=1e-5)
    np.testing.assert_array_equal(backend.to_numpy(a), before)


@pytest.mark.parametrize("full_matrices", [True, False])
def test_inputs_not_modified(backend, full_matrices):
    a = backend.random((2, 5, 3), np.complex128, seed=20)
    da = backend.random((2, 5, 3), np.complex128, seed=21)
    a0, da0 = backend.to_numpy(a).copy(), backend.to_numpy(da).copy()
    ad.linalg.svd(a, full_matrices=full_matrices)
    ad.jvp(lambda x: ad.linalg.svd(x, full_matrices=full_matrices), (a,), (da,))
    ad.jvp(ad.linalg.svdvals, (a,), (da,))
    np.testing.assert_array_equal(backend.to_numpy(a), a0)
    np.testing.assert_array_equal(backend.to_numpy(da), da0)


@pytest.mark.parametrize("shape", [(5, 5), (6, 4), (4, 6)])
def test_distinct_values_path_matches_the_masked_inverse(backend, shape):
    """Where no singular values coincide or vanish the rule builds F with +inf on the diagonal
    (``_inverse_and_gaps(..., distinct=True)``): the same F as the masked inverse, bit for bit; a batch
    holding one degenerate matrix takes the general path and agrees with the regular matrices' own jvp."""
    import importlib

    module = importlib.import_module("cupy_ad.linalg.svd")
    rng = np.random.default_rng(12)
    k = min(shape)
    s = backend.asarray(np.sort(rng.uniform(0.5, 3.0, (3, k)))[..., ::-1].copy())
    fast = [backend.to_numpy(x) for x in module._inverse_and_gaps(s, *shape, True)]
    general = [backend.to_numpy(x) for x in module._inverse_and_gaps(s, *shape, False)]
    for f, g in zip(fast, general):
        np.testing.assert_array_equal(f, g)

    a = rng.standard_normal((3, *shape))
    a[0] = 0.0
    a[0, 0, 0] = a[0, 1, 1] = 1.0  # a repeated and a zero singular value: the degenerate path
    t = rng.standard_normal((3, *shape))
    f = lambda m: tuple(ad.linalg.svd(m, full_matrices=False))  # noqa: E731
    _, batch = ad.jvp(f, (backend.asarray(a),), (backend.asarray(t),))
    for j in (1, 2):
        _, one = ad.jvp(f, (backend.asarray(a[j]),), (backend.asarray(t[j]),))
        for got, expected in zip(batch, one):
            np.testing.assert_array_equal(backend.to_numpy(got)[j], backend.to_numpy(expected))
