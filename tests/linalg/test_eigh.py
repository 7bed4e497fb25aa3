"""eigh / eigvalsh: primal against NumPy, JVPs against finite differences, identities, gauge, degeneracy."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.linalg._matrix import mH

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(1, 1), (4, 4), (3, 5, 5), (2, 2, 3, 3)]
SINGLE = (np.float32, np.complex64)


def tol(dtype, single=5e-3):
    return dict(rtol=single, atol=single) if dtype in SINGLE else {}


def is_complex(dtype) -> bool:
    return np.issubdtype(dtype, np.complexfloating)


def hermitian_part(a: np.ndarray, uplo: str) -> np.ndarray:
    """The Hermitian matrix the primal reads from one triangle of ``a`` (NumPy reference)."""
    t = np.tril(a) if uplo == "L" else np.triu(a)
    s = t + np.conj(np.swapaxes(t, -1, -2))
    idx = np.arange(a.shape[-1])
    s[..., idx, idx] = np.real(a[..., idx, idx])
    return s


def gauge_align(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Columns of ``v`` multiplied by the sign/phase that makes ref_k^H v_k real positive."""
    c = np.sum(np.conj(ref) * v, axis=-2, keepdims=True)
    return v * (np.conj(c) / np.abs(c))


def reconstruct(backend, v, w):
    ns = backend.ns
    return ns.matmul(ns.multiply(v, ns.expand_dims(w, axis=-2)), mH(v))


def invariants(backend, uplo="L"):
    """Gauge-invariant functions of eigh's outputs: w, V diag(w) V^H, |V|^2, top projector."""
    ns = backend.ns

    def f(a):
        w, v = ad.linalg.eigh(a, UPLO=uplo)
        top = v[..., max(a.shape[-1] - 1, 0):]  # the last column (none for 0 x 0)
        return w, reconstruct(backend, v, w), ns.real(ns.multiply(v, ns.conj(v))), ns.matmul(top, mH(top))

    return f


# --------------------------------------------------------------------------- primal


@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_primal_matches_numpy(backend, dtype, uplo):
    a = backend.random((2, 4, 4), dtype, seed=1)
    result = ad.linalg.eigh(a, UPLO=uplo)
    assert isinstance(result, ad.linalg.EighResult)
    ref_w, ref_v = np.linalg.eigh(backend.to_numpy(a), UPLO=uplo)
    w, v = backend.to_numpy(result.eigenvalues), backend.to_numpy(result.eigenvectors)
    assert w.dtype == ref_w.dtype and v.dtype == ref_v.dtype
    assert w.shape == (2, 4) and v.shape == (2, 4, 4)
    close = dict(rtol=1e-4, atol=1e-4) if dtype in SINGLE else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(w, ref_w, **close)
    np.testing.assert_allclose(np.abs(v), np.abs(ref_v), **close)
    np.testing.assert_allclose(backend.to_numpy(ad.linalg.eigvalsh(a, UPLO=uplo)),
                               np.linalg.eigvalsh(backend.to_numpy(a), UPLO=uplo), **close)


def test_errors(backend):
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        ad.linalg.eigh(backend.random((3, 4)))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ad.linalg.eigvalsh(backend.random((4,)))
    with pytest.raises(ValueError, match="UPLO"):
        ad.linalg.eigh(backend.random((3, 3)), UPLO="X")
    # integer input is promoted to float64 as NumPy does (tests/linalg/test_edge_cases.py)
    assert ad.linalg.eigvalsh(backend.asarray(np.eye(3, dtype=np.int64))).dtype == backend.xp.float64


# --------------------------------------------------------------------------- JVPs against FD


@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_check_jvp_invariants(backend, dtype, shape, uplo):
    # A random, non-Hermitian input: FD of the primal only agrees if the rule reads one triangle.
    a = backend.random(shape, dtype, seed=2)
    ad.check_jvp(invariants(backend, uplo), (a,), **tol(dtype))
    ad.check_jvp(lambda a: ad.linalg.eigvalsh(a, UPLO=uplo), (a,), **tol(dtype))


@pytest.mark.parametrize("shape", [(0, 0), (2, 0, 0), (0, 3, 3)])
def test_empty(backend, shape):
    for dtype in (np.float64, np.complex128):
        a = backend.asarray(np.zeros(shape, dtype=dtype))
        (w, v), (dw, dv) = ad.jvp(ad.linalg.eigh, (a,), (a,))
        assert tuple(dw.shape) == shape[:-1] and tuple(dv.shape) == shape
        ad.check_jvp(invariants(backend), (a,))
        ad.check_jvp(ad.linalg.eigvalsh, (a,))


@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_raw_tangents_match_fd_with_gauge_aligned(backend, dtype, uplo):
    a = backend.random((2, 5, 5), dtype, seed=3)
    t = backend.random((2, 5, 5), dtype, seed=4)
    (w, v), (dw, dv) = ad.jvp(lambda a: ad.linalg.eigh(a, UPLO=uplo), (a,), (t,))
    a_np = backend.to_numpy(a).astype(np.complex128 if is_complex(dtype) else np.float64)
    t_np = backend.to_numpy(t)
    v_ref = backend.to_numpy(v).astype(a_np.dtype)
    eps = 1e-6
    wp, vp = np.linalg.eigh(a_np + eps * t_np, UPLO=uplo)
    wm, vm = np.linalg.eigh(a_np - eps * t_np, UPLO=uplo)
    fd_w = (wp - wm) / (2 * eps)
    fd_v = (gauge_align(vp, v_ref) - gauge_align(vm, v_ref)) / (2 * eps)
    close = dict(rtol=2e-2, atol=2e-2) if dtype in SINGLE else dict(rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(backend.to_numpy(dw), fd_w, **close)
    np.testing.assert_allclose(backend.to_numpy(dv), fd_v, **close)
    # eigvalsh's tangent is eigh's eigenvalue tangent.
    _, dw2 = ad.jvp(lambda a: ad.linalg.eigvalsh(a, UPLO=uplo), (a,), (t,))
    np.testing.assert_allclose(backend.to_numpy(dw2), backend.to_numpy(dw), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("uplo", ["L", "U"])
def test_only_the_triangle_is_read(backend, uplo):
    a = backend.random((3, 4, 4), np.complex128, seed=5)
    # The primal equals that of the Hermitian matrix built from the read triangle...
    s = backend.asarray(hermitian_part(backend.to_numpy(a), uplo))
    np.testing.assert_allclose(backend.to_numpy(ad.linalg.eigvalsh(a, UPLO=uplo)),
                               backend.to_numpy(ad.linalg.eigvalsh(s, UPLO=uplo)), atol=1e-12)
    # ...and a tangent in the unread strict triangle (or the imaginary diagonal) moves nothing.
    rng = np.random.default_rng(6)
    g = rng.standard_normal((3, 4, 4)) + 1j * rng.standard_normal((3, 4, 4))
    unread = np.triu(g, 1) if uplo == "L" else np.tril(g, -1)
    unread = unread + 1j * np.eye(4) * rng.standard_normal((3, 4, 1))
    _, (dw, dv) = ad.jvp(lambda a: ad.linalg.eigh(a, UPLO=uplo), (a,), (backend.asarray(unread),))
    assert np.abs(backend.to_numpy(dw)).max() == 0 and np.abs(backend.to_numpy(dv)).max() == 0


# --------------------------------------------------------------------------- identities on raw tangents


@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_differentiated_eigen_equation_and_skew(backend, dtype, uplo):
    a = backend.random((3, 6, 6), dtype, seed=7)
    t = backend.random((3, 6, 6), dtype, seed=8)
    (w, v), (dw, dv) = ad.jvp(lambda a: ad.linalg.eigh(a, UPLO=uplo), (a,), (t,))
    w, v, dw, dv = map(backend.to_numpy, (w, v, dw, dv))
    a_s, da_s = hermitian_part(backend.to_numpy(a), uplo), hermitian_part(backend.to_numpy(t), uplo)
    assert dw.dtype == w.dtype and dv.dtype == v.dtype
    lhs = da_s @ v + a_s @ dv
    rhs = dv * w[..., None, :] + v * dw[..., None, :]
    scale = np.abs(lhs).max()
    close = 1e-3 if dtype in SINGLE else 1e-11
    assert np.abs(lhs - rhs).max() <= close * scale
    c = np.conj(np.swapaxes(v, -1, -2)) @ dv
    assert np.abs(c + np.conj(np.swapaxes(c, -1, -2))).max() <= close * np.abs(c).max()
    # Gauge: V^H dV has a zero diagonal (Im diag = 0 is the phase convention for complex).
    assert np.abs(np.diagonal(c, axis1=-2, axis2=-1)).max() <= close * np.abs(c).max()


# --------------------------------------------------------------------------- second derivatives


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_nested_jvp_second_derivative(backend, dtype):
    a = backend.random((2, 4, 4), dtype, seed=9)
    t = backend.random((2, 4, 4), dtype, seed=10)

    def first(x):
        return ad.jvp(lambda y: ad.linalg.eigvalsh(y)[..., -1], (x,), (t,))[1]

    ad.check_jvp(first, (a,), (t,), rtol=1e-5, atol=1e-7)

    def first_projector(x):  # a second derivative through the eigenvectors too
        def top(y):
            v = ad.linalg.eigh(y, UPLO="U").eigenvectors[..., -1:]
            return backend.ns.matmul(v, mH(v))
        return ad.jvp(top, (x,), (t,))[1]

    ad.check_jvp(first_projector, (a,), rtol=1e-5, atol=1e-7)

    # FD of the first derivative along t, computed independently in NumPy with the known rule.
    _, second = ad.jvp(first, (a,), (t,))
    a_np, t_np = backend.to_numpy(a), backend.to_numpy(t)

    def first_np(x):
        w, v = np.linalg.eigh(x)
        p = np.conj(np.swapaxes(v, -1, -2)) @ hermitian_part(t_np, "L") @ v
        return np.real(p[..., -1, -1])

    fd = (first_np(a_np + 1e-5 * t_np) - first_np(a_np - 1e-5 * t_np)) / 2e-5
    np.testing.assert_allclose(backend.to_numpy(second), fd, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- repeated eigenvalues


def _degenerate(dtype, seed=11):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((3, 3)) + (1j * rng.standard_normal((3, 3)) if is_complex(dtype) else 0)
    q, _ = np.linalg.qr(z)
    return ((q * np.array([1.0, 1.0, 2.0])) @ np.conj(q.T)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_repeated_eigenvalues_finite(backend, dtype):
    ns = backend.ns
    for a_np in (np.eye(3, dtype=dtype), _degenerate(dtype), np.zeros((3, 3), dtype=dtype)):
        a = backend.asarray(a_np)
        t = backend.random((3, 3), dtype, seed=12)
        (w, v), (dw, dv) = ad.jvp(ad.linalg.eigh, (a,), (t,))
        _, dw2 = ad.jvp(ad.linalg.eigvalsh, (a,), (t,))
        for x in (dw, dv, dw2):
            assert np.isfinite(backend.to_numpy(x)).all()
        # Exact even at the degenerate point: the top (simple) eigenvalue and its projector,
        # the sum over the repeated pair, and the pair's projector.
        def smooth(a):
            w, v = ad.linalg.eigh(a)
            pair = v[..., :2]
            return w[..., 2], ns.sum(w[..., :2], axis=-1), ns.matmul(v[..., 2:], mH(v[..., 2:])), \
                ns.matmul(pair, mH(pair))

        if not np.array_equal(a_np, np.zeros((3, 3))) and not np.array_equal(a_np, np.eye(3)):
            ad.check_jvp(smooth, (a,), (t,), **tol(dtype))
    # Exactly repeated (the identity): one cluster, nothing outside it to mix with, so dV = 0, and
    # dw = the ascending eigenvalues of dA_s (issue 7: the one-sided derivative, not diag(dA_s)).
    t = backend.random((3, 3), seed=13)
    (w, v), (dw, dv) = ad.jvp(ad.linalg.eigh, (backend.asarray(np.eye(3)),), (t,))
    assert np.abs(backend.to_numpy(dv)).max() == 0
    np.testing.assert_allclose(backend.to_numpy(dw), np.linalg.eigvalsh(hermitian_part(backend.to_numpy(t), "L")),
                               rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- inputs untouched, properties


def test_inputs_not_modified(backend):
    a = backend.random((2, 4, 4), np.complex128, seed=14)
    t = backend.random((2, 4, 4), np.complex128, seed=15)
    a0, t0 = backend.to_numpy(a).copy(), backend.to_numpy(t).copy()
    ad.linalg.eigh(a)
    ad.jvp(lambda x: ad.linalg.eigh(x, UPLO="U"), (a,), (t,))
    ad.jvp(ad.linalg.eigvalsh, (a,), (t,))
    np.testing.assert_array_equal(backend.to_numpy(a), a0)
    np.testing.assert_array_equal(backend.to_numpy(t), t0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 6), batch=st.sampled_from([(), (1,), (3,), (2, 2)]),
       dtype=st.sampled_from([np.float64, np.complex128]), uplo=st.sampled_from(["L", "U"]),
       seed=st.integers(0, 2**16))
def test_property_sizes_and_batches(backend, n, batch, dtype, uplo, seed):
    a = backend.random((*batch, n, n), dtype, seed=seed)
    t = backend.random((*batch, n, n), dtype, seed=seed + 1)

    def f(a):  # smooth in a whatever the eigenvalue gaps: the trace and V diag(w) V^H
        w, v = ad.linalg.eigh(a, UPLO=uplo)
        return backend.ns.sum(w, axis=-1), reconstruct(backend, v, w)

    ad.check_jvp(f, (a,), (t,), rtol=1e-5, atol=1e-7)
    (w, v), (dw, dv) = ad.jvp(lambda a: ad.linalg.eigh(a, UPLO=uplo), (a,), (t,))
    w, v, dw, dv = map(backend.to_numpy, (w, v, dw, dv))
    a_s, da_s = hermitian_part(backend.to_numpy(a), uplo), hermitian_part(backend.to_numpy(t), uplo)
    residual = da_s @ v + a_s @ dv - dv * w[..., None, :] - v * dw[..., None, :]
    assert np.isfinite(dv).all()
    assert np.abs(residual).max(initial=0) <= 1e-8 * max(1.0, np.abs(dv).max(initial=0))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_distinct_gaps_path_matches_the_masked_division(backend, dtype):
    """Where no eigenvalues coincide the rule divides by the gaps with +inf on the diagonal
    (``_over_distinct_gaps``); the general masked division (``_over_gaps``) gives the same values, the
    off-diagonal quotients bit for bit and zeros on the diagonal; a batch holding one clustered matrix
    takes the general path and agrees with the distinct matrices' own jvp."""
    import importlib

    module = importlib.import_module("cupy_ad.linalg.eigh")

    rng = np.random.default_rng(11)
    n = 6
    w = backend.asarray(np.sort(rng.standard_normal((3, n))).astype(np.float32 if dtype == np.float32 else np.float64))
    x = rng.standard_normal((3, n, n)) + (1j * rng.standard_normal((3, n, n)) if dtype == np.complex128 else 0)
    x = backend.asarray(x.astype(dtype))
    fast = backend.to_numpy(module._over_distinct_gaps(x, w))
    general = backend.to_numpy(module._over_gaps(x, w))
    np.testing.assert_array_equal(fast, general)
    assert not np.any(np.diagonal(fast, axis1=-2, axis2=-1))

    a = rng.standard_normal((3, n, n))
    a = a + np.swapaxes(a, -1, -2)
    a[0] = np.eye(n)  # one clustered matrix: the batch takes the general path
    t = rng.standard_normal((3, n, n)).astype(dtype if dtype != np.complex128 else np.float64)
    f = lambda m: tuple(ad.linalg.eigh(m))  # noqa: E731
    (_, v_batch), (dw_batch, dv_batch) = ad.jvp(f, (backend.asarray(a.astype(t.dtype)),), (backend.asarray(t),))
    for k in (1, 2):
        (_, v_one), (dw_one, dv_one) = ad.jvp(f, (backend.asarray(a[k].astype(t.dtype)),), (backend.asarray(t[k]),))
        np.testing.assert_array_equal(backend.to_numpy(dw_batch)[k], backend.to_numpy(dw_one))
        np.testing.assert_array_equal(backend.to_numpy(dv_batch)[k], backend.to_numpy(dv_one))
