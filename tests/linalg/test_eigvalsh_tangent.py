"""The eigenvalue-tangent primitive: the Jacobian of p -> eigvalsh(A0 + sum_i p_i A_i) (its packed
GEMM over all directions, and its fallback of one triangular product per direction) against the loop
of jvps, real and complex, either triangle read, non-Hermitian A_i (only the read triangle counts),
at a batch of points; finite differences, JAX, and second order through the primitive's JVP rule."""
import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.linalg import eigvalsh_tangent as module


def _problem(backend, n, k, dtype, seed):
    """A0 Hermitian with distinct eigenvalues, k non-Hermitian directions A_i, and f(p) = eigvalsh(A(p))."""
    rng = np.random.default_rng(seed)
    a0 = rng.standard_normal((n, n)) + np.diag(np.arange(n) * 3.0)
    basis = rng.standard_normal((k, n, n))
    if np.issubdtype(dtype, np.complexfloating):
        a0 = a0 + 1j * rng.standard_normal((n, n))
        basis = basis + 1j * rng.standard_normal((k, n, n))
    return backend.asarray(a0.astype(dtype)), backend.asarray(basis.astype(dtype)), 0.01 * rng.standard_normal(k)


def _function(backend, a0, basis, uplo):
    ns = backend.ns
    return lambda p: ad.linalg.eigvalsh(ns.tensordot(ns.astype(p, a0.dtype), basis, axes=1) + a0, UPLO=uplo)


@pytest.fixture
def packed_calls(monkeypatch):
    calls = []
    original = module._packed

    def counted(v, da, lower):
        calls.append(tuple(da.shape))
        return original(v, da, lower)

    monkeypatch.setattr(module, "_packed", counted)
    return calls


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("uplo", ["L", "U"])
@pytest.mark.parametrize("n, k, packed", [(7, 5, True), (9, 2, True), (17, 3, False)])
@pytest.mark.parametrize("block", [module._BLOCK, 40])  # W in one block; in blocks of 5 or 4 pairs
def test_jacobian_matches_the_loop_of_jvps(backend, packed_calls, monkeypatch, dtype, uplo, n, k, packed, block):
    monkeypatch.setattr(module, "_BLOCK", block)
    a0, basis, p_np = _problem(backend, n, k, dtype, seed=n + k)
    f = _function(backend, a0, basis, uplo)
    p = backend.asarray(p_np)
    copy = backend.to_numpy(basis).copy()
    jac = backend.to_numpy(ad.jacfwd(f)(p))
    assert packed_calls == ([(k, n, n)] if packed else []), packed_calls  # which path ran (4 k >= n - 1)
    eye = np.eye(k)
    loop = np.stack([backend.to_numpy(ad.jvp(f, (p,), (backend.asarray(eye[i]),))[1]) for i in range(k)], axis=-1)
    np.testing.assert_allclose(jac, loop, rtol=0, atol=1e-13 * np.abs(loop).max())
    np.testing.assert_array_equal(backend.to_numpy(basis), copy)


def test_jacobian_matches_finite_differences_and_jax(backend):
    a0, basis, p_np = _problem(backend, 6, 4, np.float64, seed=1)
    f = _function(backend, a0, basis, "L")
    jac = backend.to_numpy(ad.jacfwd(f)(backend.asarray(p_np)))
    step = 1e-6
    fd = np.stack([(backend.to_numpy(f(backend.asarray(p_np + step * e))) -
                    backend.to_numpy(f(backend.asarray(p_np - step * e)))) / (2 * step) for e in np.eye(4)], axis=-1)
    np.testing.assert_allclose(jac, fd, rtol=1e-6, atol=1e-7)
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    # JAX symmetrises (A + A^H) / 2 where we read one triangle: the same function of Hermitian matrices
    a0_np, basis_np = backend.to_numpy(a0), backend.to_numpy(basis)
    a0_np, basis_np = a0_np + a0_np.T, basis_np + basis_np.transpose(0, 2, 1)
    ours = ad.jacfwd(_function(backend, backend.asarray(a0_np), backend.asarray(basis_np), "L"))(backend.asarray(p_np))
    theirs = jax.jacfwd(lambda q: jnp.linalg.eigvalsh(jnp.tensordot(q, basis_np, axes=1) + a0_np))(p_np)
    np.testing.assert_allclose(backend.to_numpy(ours), np.asarray(theirs), rtol=1e-10, atol=1e-12)


def test_jacobians_at_a_batch_of_points(backend, packed_calls):
    """vmap over A0 (eigenvectors batched too: the per-point products) against one Jacobian per point."""
    ns = backend.ns
    rng = np.random.default_rng(4)
    points = rng.standard_normal((3, 6, 6)) + np.diag(np.arange(6) * 2.0)
    basis = backend.asarray(rng.standard_normal((4, 6, 6)))
    jac = lambda a0: ad.jacfwd(lambda p: ad.linalg.eigvalsh(ns.tensordot(p, basis, axes=1) + a0))(  # noqa: E731
        backend.asarray(np.zeros(4)))
    batched = backend.to_numpy(ad.vmap(jac)(backend.asarray(points)))
    assert packed_calls == []
    for i in range(3):
        one = backend.to_numpy(jac(backend.asarray(points[i])))
        np.testing.assert_allclose(batched[i], one, rtol=0, atol=1e-13 * np.abs(one).max())


def test_hessian_through_the_primitive_matches_finite_differences(backend):
    """Second order: the eigenvectors move with p (the primitive's JVP in v), all directions at once."""
    a0, basis, p_np = _problem(backend, 5, 3, np.float64, seed=2)
    ns = backend.ns
    weights = backend.asarray(np.linspace(1.0, 2.0, 5))
    f = lambda p: ns.sum(_function(backend, a0, basis, "L")(p) * weights)  # noqa: E731
    hess = backend.to_numpy(ad.hessian(f)(backend.asarray(p_np)))
    grad = lambda q: backend.to_numpy(ad.jacfwd(f)(backend.asarray(q)))  # noqa: E731
    step = 1e-5
    fd = np.stack([(grad(p_np + step * e) - grad(p_np - step * e)) / (2 * step) for e in np.eye(3)], axis=-1)
    np.testing.assert_allclose(hess, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(hess, hess.T, rtol=1e-12, atol=1e-12)
    t, s = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.1, -1.0])  # nested jvp: the primitive's own JVP rule
    inner = lambda q: ad.jvp(f, (q,), (backend.asarray(t),))[1]  # noqa: E731
    second = ad.jvp(inner, (backend.asarray(p_np),), (backend.asarray(s),))[1]
    np.testing.assert_allclose(float(backend.to_numpy(second)), s @ hess @ t, rtol=1e-10)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_gemm_equals_the_triangular_product(backend, monkeypatch, lower, dtype):
    """T V for small real matrices (dA o W, one GEMM) against the triangular product of the masked
    triangle with its halved diagonal (the path above WEIGHTED_GEMM_MAX), and against T built in NumPy."""
    rng = np.random.default_rng(7)
    da, v = rng.standard_normal((2, 3, 6, 6)).astype(dtype), rng.standard_normal((3, 6, 6)).astype(dtype)
    weighted = backend.to_numpy(module.triangle_times(backend.asarray(da), backend.asarray(v), lower))
    monkeypatch.setattr(module, "WEIGHTED_GEMM_MAX", 0)
    masked = backend.to_numpy(module.triangle_times(backend.asarray(da), backend.asarray(v), lower))
    t = (np.tril(da) if lower else np.triu(da)) - 0.5 * da * np.eye(6)
    tolerance = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(weighted, t @ v, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(masked, t @ v, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("uplo", ["L", "U"])
def test_a_non_finite_entry_of_the_unread_triangle_moves_nothing(backend, uplo):
    """The weighted GEMM (small real matrices) multiplied the unread triangle by 0: inf there gave NaN
    eigenvalue tangents, where the primal never reads it."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((2, 5, 5))
    a = backend.asarray(a + np.swapaxes(a, -1, -2))
    read = rng.standard_normal((2, 5, 5))
    read = np.tril(read) if uplo == "L" else np.triu(read)
    garbage = read.copy()
    garbage[(slice(None), 0, 4) if uplo == "L" else (slice(None), 4, 0)] = [np.inf, np.nan]
    for f in (lambda m: ad.linalg.eigvalsh(m, UPLO=uplo), lambda m: ad.linalg.eigh(m, UPLO=uplo)[0]):
        want = backend.to_numpy(ad.jvp(f, (a,), (backend.asarray(read),))[1])
        got = backend.to_numpy(ad.jvp(f, (a,), (backend.asarray(garbage),))[1])
        assert np.isfinite(want).all()
        np.testing.assert_array_equal(got, want)
