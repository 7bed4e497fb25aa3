"""Issue 7: exact one-sided derivatives of eigh/eigvalsh/svd/svdvals at repeated and zero values.

References are one-sided finite differences (f(A + h dA) - f(A)) / h of the sorted primal outputs
computed in NumPy float64 on exactly degenerate matrices Q diag(w) Q^H; eigenvectors use the
second-order one-sided formula (-3 f(0) + 4 f(h) - f(2h)) / (2h) after aligning phases, because
the in-cluster rotation of eigenvectors of A + h dA is resolved only to eps / (h |mu_i - mu_j|).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cupy_ad as ad
from cupy_ad.linalg import _clusters
from test_eigh import gauge_align, hermitian_part

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SINGLE = (np.float32, np.complex64)


def is_complex(dtype) -> bool:
    return np.issubdtype(dtype, np.complexfloating)


def unitary(n: int, complex_: bool, rng) -> np.ndarray:
    z = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    return np.linalg.qr(z)[0]


def hermitian_with(spectrum, dtype, seed=0, batch=()) -> np.ndarray:
    """Exactly (in float64) repeated spectrum: Q diag(w) Q^H, stored in float64 / complex128."""
    rng = np.random.default_rng(seed)
    out = np.empty((*batch, len(spectrum), len(spectrum)), dtype=np.complex128 if is_complex(dtype) else np.float64)
    for idx in np.ndindex(*batch):
        q = unitary(len(spectrum), is_complex(dtype), rng)
        out[idx] = (q * np.asarray(spectrum, dtype=float)) @ np.conj(q.T)
    return out


def with_singular_values(sv, m, n, dtype, seed=0, batch=()) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((*batch, m, n), dtype=np.complex128 if is_complex(dtype) else np.float64)
    for idx in np.ndindex(*batch):
        d = np.zeros((m, n))
        d[np.arange(len(sv)), np.arange(len(sv))] = sv
        out[idx] = unitary(m, is_complex(dtype), rng) @ d @ np.conj(unitary(n, is_complex(dtype), rng).T)
    return out


def direction(shape, dtype, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if is_complex(dtype) else 0)
    return t if is_complex(dtype) else t.real


def herm(t: np.ndarray) -> np.ndarray:
    """The Hermitian matrix eigh reads from the lower triangle."""
    return hermitian_part(t, "L")


def tol(dtype):
    return dict(rtol=5e-3, atol=5e-3) if dtype in SINGLE else dict(rtol=1e-4, atol=1e-5)


def run(backend, f, a, t, dtype):
    outs, tans = ad.jvp(f, (backend.asarray(a.astype(dtype)),), (backend.asarray(t.astype(dtype)),))
    conv = lambda x: tuple(map(backend.to_numpy, x)) if isinstance(x, tuple) else backend.to_numpy(x)  # noqa: E731
    return conv(outs), conv(tans)


EIGH_SPECTRA = [[1.0, 1.0, 2.0], [-1.0, 2.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0, 3.0, 4.0], [0.5, 0.5, 0.5, 0.5]]


# --------------------------------------------------------------------------- eigh / eigvalsh


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spectrum", EIGH_SPECTRA)
@pytest.mark.parametrize("batch", [(), (2,)])
def test_eigh_eigenvalues_one_sided(backend, dtype, spectrum, batch):
    a = hermitian_with(spectrum, dtype, seed=len(spectrum), batch=batch)
    t = direction(a.shape, dtype, seed=3)
    h = 1e-6
    fd = (np.linalg.eigvalsh(a + h * herm(t)) - np.linalg.eigvalsh(a)) / h
    (w, v), (dw, dv) = run(backend, ad.linalg.eigh, a, t, dtype)
    _, dw2 = run(backend, ad.linalg.eigvalsh, a, t, dtype)
    np.testing.assert_allclose(dw, fd, **tol(dtype))
    np.testing.assert_allclose(dw2, fd, **tol(dtype))
    # the naive rule diag(V^H dA V) in the plain call's basis is wrong here: the test can fail
    v0 = np.linalg.eigh(a)[1]
    naive = np.real(np.einsum("...ki,...kl,...li->...i", np.conj(v0), herm(t), v0))
    assert np.abs(naive - fd).max() > 1e-2
    assert np.isfinite(dv).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spectrum", EIGH_SPECTRA[:3])
def test_eigh_eigenvectors_rotated_and_one_sided(backend, dtype, spectrum):
    a = hermitian_with(spectrum, dtype, seed=7, batch=(2,))
    t = direction(a.shape, dtype, seed=8)
    (w, v), (dw, dv) = run(backend, ad.linalg.eigh, a, t, dtype)
    a_s, t_s = a.astype(np.complex128 if is_complex(dtype) else np.float64), herm(t)
    single = dtype in SINGLE
    eps = 1e-4 if single else 1e-12
    # the rotated V is still an orthonormal eigenbasis of A
    np.testing.assert_allclose(a_s @ v, v * w[..., None, :], atol=50 * eps)
    np.testing.assert_allclose(np.conj(np.swapaxes(v, -1, -2)) @ v, np.broadcast_to(np.eye(len(spectrum)), a.shape),
                               atol=10 * eps)
    # independent identities on the raw tangents: the differentiated eigen-equation, V^H dV skew
    resid = t_s @ v + a_s @ dv - dv * w[..., None, :] - v * dw[..., None, :]
    assert np.abs(resid).max() <= (1e-3 if single else 1e-9)
    skew = np.conj(np.swapaxes(v, -1, -2)) @ dv
    assert np.abs(skew + np.conj(np.swapaxes(skew, -1, -2))).max() <= (1e-3 if single else 1e-10)
    # against one-sided FD of the eigenvectors of A + h dA (phases aligned to the rotated V)
    h = 1e-4
    v1, v2 = (gauge_align(np.linalg.eigh(a_s + s * h * t_s)[1], v.astype(a_s.dtype)) for s in (1, 2))
    fd = (-3 * v + 4 * v1 - v2) / (2 * h)
    np.testing.assert_allclose(dv, fd, **(tol(dtype) if single else dict(rtol=1e-5, atol=1e-5)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_eigh_no_nan_at_identity_multiples_and_zero(backend, dtype):
    n = 4
    t = direction((2, n, n), dtype, seed=21)
    mixed = -np.eye(n)[None] * np.array([1.0, 0.0])[:, None, None]  # -I and 0 in one batch
    for a in (np.zeros((2, n, n)), np.broadcast_to(3.0 * np.eye(n), (2, n, n)).copy(), mixed):
        (w, v), (dw, dv) = run(backend, ad.linalg.eigh, a, t, dtype)
        _, dw2 = run(backend, ad.linalg.eigvalsh, a, t, dtype)
        for x in (w, v, dw, dv, dw2):
            assert np.isfinite(x).all()
        np.testing.assert_allclose(dw, np.linalg.eigvalsh(herm(t)), **tol(dtype))  # one cluster: eig(dA)
        np.testing.assert_allclose(dw2, dw, **tol(dtype))
        assert np.abs(dv).max() == 0  # nothing outside the single cluster to mix with


def test_eigh_repeated_mu_gives_zero_mixing(backend):
    # dA = I on a degenerate A: all mu equal, the rotation is undetermined: no mixing, dV finite
    a = hermitian_with([1.0, 1.0, 2.0], np.float64, seed=4)
    (w, v), (dw, dv) = run(backend, ad.linalg.eigh, a, np.eye(3), np.float64)
    np.testing.assert_allclose(dw, [1.0, 1.0, 1.0], atol=1e-12)
    assert np.isfinite(dv).all() and np.abs(dv).max() < 1e-10


def test_eigh_nested_at_degenerate_point_is_finite(backend):
    a = backend.asarray(hermitian_with([1.0, 1.0, 2.0], np.float64, seed=5))
    t = backend.asarray(direction((3, 3), np.float64, seed=6))
    first = lambda x: ad.jvp(ad.linalg.eigvalsh, (x,), (t,))[1]  # noqa: E731
    _, second = ad.jvp(first, (a,), (t,))
    assert np.isfinite(backend.to_numpy(second)).all()


# --------------------------------------------------------------------------- svd / svdvals

SVD_CASES = [  # (singular values, m, n)
    ([3.0, 2.0, 2.0, 1.0], 4, 4), ([2.0, 2.0, 2.0], 5, 3), ([2.0, 2.0, 2.0], 3, 5), ([3.0, 1.0, 0.0], 3, 3),
    ([3.0, 1.0, 0.0], 5, 3), ([2.0, 0.0, 0.0], 3, 5), ([2.0, 2.0, 0.0, 0.0], 4, 4), ([2.0, 2.0, 0.0], 6, 3),
    ([1.0, 1.0, 1.0, 1.0], 4, 4), ([0.0, 0.0, 0.0], 3, 4),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SVD_CASES, ids=lambda c: f"{c[1]}x{c[2]}-{c[0]}")
def test_svd_singular_values_one_sided(backend, dtype, case):
    sv, m, n = case
    a = with_singular_values(sv, m, n, dtype, seed=m + n, batch=(2,))
    t = direction(a.shape, dtype, seed=9)
    h = 1e-6
    fd = (np.linalg.svd(a + h * t, compute_uv=False) - np.linalg.svd(a, compute_uv=False)) / h
    for fm in (False, True):
        (u, s, vh), (du, ds, dvh) = run(backend, lambda x: ad.linalg.svd(x, full_matrices=fm), a, t, dtype)
        np.testing.assert_allclose(ds, fd, **tol(dtype))
        for x in (u, s, vh, du, ds, dvh):
            assert np.isfinite(x).all()
        k = min(m, n)
        np.testing.assert_allclose((u[..., :, :k] * s[..., None, :]) @ vh[..., :k, :], a,
                                   atol=1e-4 if dtype in SINGLE else 1e-12)
    _, ds2 = run(backend, ad.linalg.svdvals, a, t, dtype)
    np.testing.assert_allclose(ds2, fd, **tol(dtype))
    zero = np.asarray(sv) == 0
    assert (ds2[..., zero] >= 0).all() and (ds[..., zero] >= 0).all()


@pytest.mark.parametrize("full_matrices", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("case", SVD_CASES[:-1], ids=lambda c: f"{c[1]}x{c[2]}-{c[0]}")
def test_svd_vectors_one_sided_and_identities(backend, dtype, case, full_matrices):
    sv, m, n = case
    a = with_singular_values(sv, m, n, dtype, seed=2 * m + n)
    t = direction(a.shape, dtype, seed=10)
    (u, s, vh), (du, ds, dvh) = run(backend, lambda x: ad.linalg.svd(x, full_matrices=full_matrices), a, t, dtype)
    k = min(m, n)
    # orthonormal factors, U^H dU and V^H dV skew-Hermitian
    for q, dq in ((u, du), (np.conj(vh.T), np.conj(dvh.T))):
        np.testing.assert_allclose(np.conj(q.T) @ q, np.eye(q.shape[1]), atol=1e-12)
        om = np.conj(q.T) @ dq
        assert np.abs(om + np.conj(om.T)).max() < 1e-9
    # the differentiated factorisation: dA = dU S V^H + U dS V^H + U S dV^H (thin part)
    dar = (du[:, :k] * s) @ vh[:k] + (u[:, :k] * ds) @ vh[:k] + (u[:, :k] * s) @ dvh[:k]
    np.testing.assert_allclose(dar, t, atol=1e-9)
    # vectors of the nonzero singular values against one-sided FD (phases aligned pairwise)
    h = 1e-4

    def aligned(x):
        u1, _, vh1 = np.linalg.svd(x, full_matrices=full_matrices)
        c = np.sum(np.conj(u[:, :k]) * u1[:, :k], axis=0)
        ph = np.conj(c) / np.abs(c)
        u1, vh1 = u1.copy(), vh1.copy()
        u1[:, :k] *= ph
        vh1[:k] *= np.conj(ph)[:, None]
        return u1, vh1

    (u1, vh1), (u2, vh2) = aligned(a + h * t), aligned(a + 2 * h * t)
    nz = np.asarray(sv) > 0
    np.testing.assert_allclose(du[:, :k][:, nz], ((-3 * u + 4 * u1 - u2) / (2 * h))[:, :k][:, nz], atol=1e-5)
    np.testing.assert_allclose(dvh[:k][nz], ((-3 * vh + 4 * vh1 - vh2) / (2 * h))[:k][nz], atol=1e-5)


# --------------------------------------------------------------------------- distinct: bit for bit


@pytest.mark.parametrize("dtype", DTYPES)
def test_distinct_is_bit_for_bit_the_ordinary_rule(backend, dtype, monkeypatch):
    """The branch-free path (what CuPy always runs) selects the ordinary formula for size-1 clusters."""
    a = backend.random((2, 5, 5), dtype, seed=30)
    t = backend.random((2, 5, 5), dtype, seed=31)
    cases = [ad.linalg.eigh, ad.linalg.eigvalsh, ad.linalg.svdvals]
    for shape in ((5, 5), (5, 3), (3, 5)):
        for fm in (False, True):
            cases.append(lambda x, shape=shape, fm=fm: ad.linalg.svd(x[..., :shape[0], :shape[1]], full_matrices=fm))
    for f in cases:
        plain = ad.jvp(f, (a,), (t,))
        monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", True)
        forced = ad.jvp(f, (a,), (t,))
        monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", False)
        flat = lambda r: [x for part in r for x in (part if isinstance(part, tuple) else (part,))]  # noqa: E731
        for x, y in zip(flat(plain), flat(forced)):
            assert np.array_equal(backend.to_numpy(x), backend.to_numpy(y))


def test_branch_free_path_matches_host_path_on_clusters(backend, monkeypatch):
    a = hermitian_with([1.0, 1.0, 2.0, 3.0, 3.0], np.float64, seed=12, batch=(2,))
    t = direction(a.shape, np.float64, seed=13)
    plain = run(backend, ad.linalg.eigh, a, t, np.float64)
    monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", True)
    forced = run(backend, ad.linalg.eigh, a, t, np.float64)
    for x, y in zip(plain[0] + plain[1], forced[0] + forced[1]):
        np.testing.assert_allclose(x, y, atol=1e-12)


def test_inputs_not_modified_on_degenerate_path(backend):
    a = backend.asarray(with_singular_values([2.0, 2.0, 0.0], 5, 3, np.complex128, seed=3))
    t = backend.asarray(direction((5, 3), np.complex128, seed=4))
    a0, t0 = backend.to_numpy(a).copy(), backend.to_numpy(t).copy()
    ad.jvp(lambda x: ad.linalg.svd(x, full_matrices=True), (a,), (t,))
    b = backend.asarray(hermitian_with([1.0, 1.0, 2.0], np.complex128))
    b0 = backend.to_numpy(b).copy()
    ad.jvp(ad.linalg.eigh, (b,), (t[:3, ...],))
    np.testing.assert_array_equal(backend.to_numpy(a), a0)
    np.testing.assert_array_equal(backend.to_numpy(t), t0)
    np.testing.assert_array_equal(backend.to_numpy(b), b0)


# --------------------------------------------------------------------------- properties


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 3), min_size=1, max_size=3), batch=st.sampled_from([(), (2,)]),
       complex_=st.booleans(), seed=st.integers(0, 2**16))
def test_property_random_cluster_structure(backend, sizes, batch, complex_, seed):
    spectrum = [float(2 * i) for i, size in enumerate(sizes) for _ in range(size)]
    dtype = np.complex128 if complex_ else np.float64
    a = hermitian_with(spectrum, dtype, seed=seed, batch=batch)
    t = direction(a.shape, dtype, seed=seed + 1)
    h = 1e-6
    fd = (np.linalg.eigvalsh(a + h * herm(t)) - np.linalg.eigvalsh(a)) / h
    _, (dw, dv) = run(backend, ad.linalg.eigh, a, t, dtype)
    np.testing.assert_allclose(dw, fd, rtol=1e-4, atol=2e-5)
    assert np.isfinite(dv).all()
    # singular values of the same matrices shifted to be PSD-with-zeros: |spectrum| repeats and zeros
    b = with_singular_values(spectrum, len(spectrum) + 1, len(spectrum), dtype, seed=seed, batch=batch)
    fd = (np.linalg.svd(b + h * np.concatenate([t, t[..., :1, :]], axis=-2), compute_uv=False)
          - np.linalg.svd(b, compute_uv=False)) / h
    _, ds = run(backend, ad.linalg.svdvals, b, np.concatenate([t, t[..., :1, :]], axis=-2), dtype)
    np.testing.assert_allclose(ds, fd, rtol=1e-4, atol=2e-5)


# --------------------------------------------------------------------------- the README example


def test_readme_example(backend):
    a = backend.asarray(np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]))  # eigenvalues 1, 3, 3
    da = backend.asarray(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    (w, v), (dw, dv) = ad.jvp(ad.linalg.eigh, (a,), (da,))
    a_np, da_np = backend.to_numpy(a), backend.to_numpy(da)
    fd = (np.linalg.eigvalsh(a_np + 1e-7 * da_np) - np.linalg.eigvalsh(a_np)) / 1e-7
    np.testing.assert_allclose(backend.to_numpy(dw), [0.0, -np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dw), fd, atol=1e-6)


def test_float32_neighbours_of_random_matrices_are_not_clusters(backend):
    """Distinct but close eigen/singular values of a random float32 matrix keep the ordinary
    derivative (a tolerance growing like n eps merged them once and gave one-sided answers)."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((800, 800))
    da = rng.standard_normal((800, 800))
    sym, dsym = (a + a.T) / 2, (da + da.T) / 2
    (w, v), (dw, _) = ad.jvp(ad.linalg.eigh, (backend.asarray(sym.astype(np.float32)),),
                             (backend.asarray(dsym.astype(np.float32)),))
    # no cluster was taken: jvp's eigenvectors are the plain call's (a cluster would rotate them)
    np.testing.assert_array_equal(backend.to_numpy(v), backend.to_numpy(ad.linalg.eigh(backend.asarray(
        sym.astype(np.float32))).eigenvectors))
    v64 = backend.to_numpy(v).astype(np.float64)
    ordinary = np.einsum("ij,ik,kj->j", v64, dsym, v64)  # diag(V^T dA V)
    np.testing.assert_allclose(backend.to_numpy(dw), ordinary, atol=2e-3 * np.abs(ordinary).max())
    (u, s, vh), (_, ds, _) = ad.jvp(lambda x: ad.linalg.svd(x, full_matrices=False),
                                    (backend.asarray(a.astype(np.float32)),), (backend.asarray(da.astype(np.float32)),))
    np.testing.assert_array_equal(backend.to_numpy(u), backend.to_numpy(ad.linalg.svd(backend.asarray(
        a.astype(np.float32)), full_matrices=False).U))
    u64, vh64 = backend.to_numpy(u).astype(np.float64), backend.to_numpy(vh).astype(np.float64)
    ordinary = np.einsum("ij,ik,jk->j", u64, da, vh64)  # diag(U^T dA V)
    np.testing.assert_allclose(backend.to_numpy(ds), ordinary, atol=2e-3 * np.abs(ordinary).max())


# --------------------------------------------------------------------------- zero block: vector tangents

ZERO_BLOCK_CASES = [  # (nonzero singular values, m, n): the rest of min(m, n) are 0
    ([2.0, 1.0], 4, 3), ([1.0], 5, 3), ([2.0, 1.0], 4, 4), ([3.0, 1.0], 3, 3), ([1.0], 3, 5), ([2.0, 1.0], 3, 4),
    ([2.0, 2.0], 6, 3), ([2.0, 2.0], 4, 4),
]


@pytest.mark.parametrize("full_matrices", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("case", ZERO_BLOCK_CASES, ids=lambda c: f"{c[1]}x{c[2]}-{c[0]}")
def test_svd_zero_block_vectors_one_sided(backend, dtype, case, full_matrices):
    """Inside the zero block the vectors follow the limit basis (B's SVD) at the second-order rate."""
    sv, m, n = case
    k = min(m, n)
    sv = list(sv) + [0.0] * (k - len(sv))
    a = with_singular_values(sv, m, n, dtype, seed=m + 3 * n, batch=(2,))
    t = direction(a.shape, dtype, seed=11)
    (u, _, vh), (du, _, dvh) = run(backend, lambda x: ad.linalg.svd(x, full_matrices=full_matrices), a, t, dtype)
    h = 1e-4

    def aligned(x):  # pairwise phases of the first k columns aligned to jvp's (rotated) U
        u1, _, vh1 = np.linalg.svd(x, full_matrices=full_matrices)
        c = np.sum(np.conj(u[..., :, :k]) * u1[..., :, :k], axis=-2)
        ph = np.conj(c) / np.abs(c)
        u1, vh1 = u1.copy(), vh1.copy()
        u1[..., :, :k] *= ph[..., None, :]
        vh1[..., :k, :] *= np.conj(ph)[..., :, None]
        return u1, vh1

    (u1, vh1), (u2, vh2) = aligned(a + h * t), aligned(a + 2 * h * t)
    fd_u, fd_vh = (-3 * u + 4 * u1 - u2) / (2 * h), (-3 * vh + 4 * vh1 - vh2) / (2 * h)
    np.testing.assert_allclose(du[..., :, :k], fd_u[..., :, :k], atol=2e-5)
    np.testing.assert_allclose(dvh[..., :k, :], fd_vh[..., :k, :], atol=2e-5)
    if m == n or not full_matrices:
        np.testing.assert_allclose(du, fd_u, atol=2e-5)
        np.testing.assert_allclose(dvh, fd_vh, atol=2e-5)
    # the full factors stay orthonormal with skew-Hermitian U^H dU, V^H dV (completion included)
    for q, dq in ((u, du), (np.conj(np.swapaxes(vh, -1, -2)), np.conj(np.swapaxes(dvh, -1, -2)))):
        om = np.conj(np.swapaxes(q, -1, -2)) @ dq
        assert np.abs(om + np.conj(np.swapaxes(om, -1, -2))).max() < 1e-9
        if is_complex(dtype) and q is u:
            assert np.abs(np.imag(np.diagonal(om, axis1=-2, axis2=-1))).max() < 1e-12  # the phase gauge


def test_svd_zero_block_issue_reproducer(backend):
    rng = np.random.default_rng(7)
    u0, v0 = np.linalg.qr(rng.standard_normal((4, 4)))[0], np.linalg.qr(rng.standard_normal((3, 3)))[0]
    s0 = np.zeros((4, 3))
    s0[[0, 1], [0, 1]] = [2, 1]
    a, da = u0 @ s0 @ v0.T, rng.standard_normal((4, 3))
    (u, _, _), (du, _, _) = run(backend, lambda x: ad.linalg.svd(x, full_matrices=False), a, da, np.float64)
    h = 1e-4
    ref = [np.linalg.svd(a + i * h * da, full_matrices=False)[0] for i in (1, 2)]
    u1, u2 = (r * np.sign(np.sum(u * r, axis=0)) for r in ref)
    np.testing.assert_allclose(du, (-3 * u + 4 * u1 - u2) / (2 * h), atol=1e-6)


# --------------------------------------------------------------------------- batches mixing regular and degenerate


def _mixed_batch(kind: str, dtype, shape=(4, 4)):
    """A batch of 4: regular, degenerate, regular, degenerate (exact in float64)."""
    m, n = shape
    regular = lambda seed: direction((m, n), dtype, seed)  # noqa: E731 - random: distinct values
    if kind == "eigh":
        degenerate = [hermitian_with([1.0, 1.0, 2.0, 3.0], dtype, seed=41), hermitian_with([0.0, 0.0, 0.0, 5.0], dtype, seed=42)]
        regular = lambda seed: herm(direction((n, n), dtype, seed))  # noqa: E731
    else:
        k = min(m, n)
        degenerate = [with_singular_values([2.0] * 2 + [1.0] * (k - 2), m, n, dtype, seed=41),
                      with_singular_values([3.0] + [0.0] * (k - 1), m, n, dtype, seed=42)]
    return np.stack([regular(43), degenerate[0], regular(44), degenerate[1]])


BATCH_CASES = [
    ("eigh", (4, 4), lambda x: tuple(ad.linalg.eigh(x))),
    ("eigh", (4, 4), ad.linalg.eigvalsh),
    ("svd", (4, 4), lambda x: tuple(ad.linalg.svd(x, full_matrices=False))),
    ("svd", (5, 3), lambda x: tuple(ad.linalg.svd(x, full_matrices=True))),
    ("svd", (3, 5), lambda x: tuple(ad.linalg.svd(x, full_matrices=True))),
    ("svd", (5, 3), ad.linalg.svdvals),
]


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("kind, shape, f", BATCH_CASES)
def test_batch_runs_degenerate_path_per_matrix(backend, monkeypatch, kind, shape, f, dtype):
    """Host backends run the degenerate path on the degenerate matrices of a batch only: the
    batch's results equal each matrix's own jvp, and those of the path run on the whole batch."""
    a = _mixed_batch(kind, dtype, shape)
    t = direction(a.shape, dtype, seed=45)
    calls = []  # the number of matrices the path ran on, per run
    path = _clusters.run_degenerate_path

    def counting(a_, flags, path_, ordinary):
        return path(a_, flags, lambda pick: (calls.append(pick(a_).shape[0]), path_(pick))[1], ordinary)

    for module in ("eigh", "svd"):
        monkeypatch.setattr(sys.modules[f"cupy_ad.linalg.{module}"], "run_degenerate_path", counting)
    outs, tans = run(backend, f, a, t, dtype)
    assert calls == [2]  # the path ran once, on the two degenerate matrices alone
    monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", True)
    whole = run(backend, f, a, t, dtype)
    monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", False)
    flat = lambda r: list(r) if isinstance(r, tuple) else [r]  # noqa: E731
    for i in range(a.shape[0]):
        alone = run(backend, f, a[i], t[i], dtype)
        for x, y in zip(flat(outs) + flat(tans), flat(alone[0]) + flat(alone[1])):
            np.testing.assert_allclose(x[i], y, rtol=1e-10, atol=1e-12)
    for x, y in zip(flat(outs) + flat(tans), flat(whole[0]) + flat(whole[1])):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


def _invariant(ns, f, kind):
    """f's output as a rotation-invariant matrix: V exp(w) V^H (eigh), U diag(s^2) V^H (svd)."""
    def g(x):
        out = f(x)
        if kind == "eigh":
            w, v = out
            return ns.matmul(v * ns.exp(w)[..., None, :], ns.conj(ns.matrix_transpose(v)))
        u, s, vh = out
        k = s.shape[-1]
        return ns.matmul(u[..., :, :k] * (s * s)[..., None, :], vh[..., :k, :])
    return g


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("kind, shape, f", [case for case in BATCH_CASES if case[2] not in (ad.linalg.eigvalsh, ad.linalg.svdvals)])
def test_blockwise_rotation_equals_the_dense_one(backend, monkeypatch, kind, shape, f, dtype):
    """Host backends diagonalise cluster blocks size by size from BLOCKWISE_FROM on, instead of one
    dense eigh of the shifted block-diagonal matrix: the same tangents of the values and of every
    rotation-invariant output (the vectors themselves may differ by a sign or phase per column)."""
    a = _mixed_batch(kind, dtype, shape)
    t = direction(a.shape, dtype, seed=46)
    g = _invariant(backend.ns, f, kind)
    results = []
    for start in (0, 10**9):  # blockwise at every size, never
        monkeypatch.setattr(_clusters, "BLOCKWISE_FROM", start)
        results.append(run(backend, lambda x: (f(x)[1], g(x)), a, t, dtype))
    for x, y in zip(results[0][0] + results[0][1], results[1][0] + results[1][1]):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("split", [20, 30])
def test_values_split_as_far_as_lapack_splits_repeated_ones_are_one_cluster(backend, split):
    """syevd split a repeated eigenvalue by 17 eps max|w| and gesdd a singular value by 24.5 eps s_max
    (_clusters.resolution): values that far apart are taken as one repeated value, whose tangents are
    the eigenvalues of dA's block (a diagonal matrix: the decompositions are exact, no rounding decides)."""
    eps = np.finfo(np.float64).eps
    a = np.diag([0.5, 0.5 + split * eps, 1.0])  # (relative to the largest value, 1)
    da = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    dw = backend.to_numpy(ad.jvp(ad.linalg.eigvalsh, (backend.asarray(a),), (backend.asarray(da),))[1])
    np.testing.assert_allclose(dw, [-1.0, 1.0, 3.0], atol=1e-12)  # the ordinary rule: [0, 0, 3]
    ds = backend.to_numpy(ad.jvp(ad.linalg.svdvals, (backend.asarray(a),), (backend.asarray(da),))[1])
    np.testing.assert_allclose(ds, [3.0, 1.0, -1.0], atol=1e-12)
