"""svd_split: balanced truncated factors X = U_k S_k^1/2, Y = V_k S_k^1/2 and their gauge-covariant JVP.

References: finite differences of gauge-invariant outputs (X Y^H, X X^H, Y Y^H), the plain svd's
JVP of the same truncation at distinct spectra, the lift and balance identities, and Richardson
finite differences of the first derivative for nested jvp.
"""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.linalg._matrix import mH
from test_degenerate import DTYPES, SINGLE, is_complex
from test_degenerate import with_singular_values as _in_double


def with_singular_values(sv, m, n, dtype, seed=0, batch=()) -> np.ndarray:
    """test_degenerate's matrix with singular values ``sv``, rounded to ``dtype``."""
    return _in_double(sv, m, n, dtype, seed, batch).astype(dtype)


def direction(shape, dtype, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if is_complex(dtype) else 0)
    return t.astype(dtype)


def invariants(backend, k, **kw):
    """X Y^H, X X^H and Y Y^H: unchanged by (X Q, Y Q), Q unitary."""
    ns = backend.ns

    def f(a):
        x, y = ad.linalg.svd_split(a, k, **kw)
        return ns.matmul(x, mH(y)), ns.matmul(x, mH(x)), ns.matmul(y, mH(y))

    return f


def tol(dtype):
    return {"rtol": 5e-3, "atol": 5e-3} if dtype in SINGLE else {"rtol": 1e-7}


# --------------------------------------------------------------------------- primal and errors


@pytest.mark.parametrize("shape,k", [((5, 3), 2), ((3, 5), 3), ((4, 4), 0), ((2, 6, 4), 3)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_primal(backend, dtype, shape, k):
    a = direction(shape, dtype, 1)
    x, y = ad.linalg.svd_split(backend.asarray(a), k)
    x, y = backend.to_numpy(x), backend.to_numpy(y)
    assert x.shape == (*shape[:-1], k) and y.shape == (*shape[:-2], shape[-1], k) and x.dtype == dtype
    u, s, vh = np.linalg.svd(a.astype(np.complex128 if is_complex(dtype) else np.float64), full_matrices=False)
    truncated = (u[..., :k] * s[..., None, :k]) @ vh[..., :k, :]
    rtol = 1e-5 if dtype in SINGLE else 1e-12
    np.testing.assert_allclose(x @ np.conj(np.swapaxes(y, -1, -2)), truncated, atol=rtol * np.abs(a).max())
    for g in (x, y):  # balanced: X^H X = Y^H Y = S_k
        np.testing.assert_allclose(np.conj(np.swapaxes(g, -1, -2)) @ g, np.eye(k) * s[..., None, :k],
                                   atol=rtol * s.max())


def test_errors(backend):
    a = backend.random((4, 3))
    with pytest.raises(TypeError, match="k must be an int"):
        ad.linalg.svd_split(a, 1.0)
    with pytest.raises(TypeError, match="k must be an int"):
        ad.linalg.svd_split(a, True)
    for k in (-1, 4):
        with pytest.raises(ValueError, match=r"0\.\.min\(m, n\) = 3"):
            ad.linalg.svd_split(a, k)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        ad.linalg.svd_split(backend.random((4,)), 1)
    with pytest.raises(TypeError, match="whole_multiplets"):
        ad.linalg.svd_split(a, 1, whole_multiplets=1)
    x, _ = ad.linalg.svd_split(backend.asarray(np.ones((3, 3), dtype=np.int64)), 1)
    assert x.dtype == backend.xp.float64


def test_nan_input_and_inputs_not_modified(backend):
    a = direction((2, 4, 3), np.complex128, 2)
    a[1, 0, 0] = np.nan
    da = direction((2, 4, 3), np.complex128, 3)
    a_dev, da_dev = backend.asarray(a), backend.asarray(da)
    (x, y), (dx, dy) = ad.jvp(lambda m: tuple(ad.linalg.svd_split(m, 2)), (a_dev,), (da_dev,))
    assert np.isnan(backend.to_numpy(x)[1]).all() and np.isfinite(backend.to_numpy(x)[0]).all()
    assert np.isnan(backend.to_numpy(dx)[1]).all() and np.isfinite(backend.to_numpy(dy)[0]).all()
    np.testing.assert_array_equal(backend.to_numpy(a_dev), a)
    np.testing.assert_array_equal(backend.to_numpy(da_dev), da)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_rank_deficient_keeps_the_rank(backend, dtype):
    """k above the rank: the noise columns are 0 with zero tangents, and along rank-keeping
    perturbations (A = B C, dA = dB C + B dC) the invariants are exact."""
    b, c = direction((2, 6, 2), dtype, 20), direction((2, 2, 5), dtype, 21)
    db, dc = direction((2, 6, 2), dtype, 22), direction((2, 2, 5), dtype, 23)
    a, da = backend.asarray(b @ c), backend.asarray(db @ c + b @ dc)
    (x, y), (dx, dy) = ad.jvp(lambda m: tuple(ad.linalg.svd_split(m, 4)), (a,), (da,))
    for z in (x, y, dx, dy):
        assert np.all(backend.to_numpy(z)[..., 2:] == 0)
    ad.check_jvp(invariants(backend, 4), (a,), (da,), rtol=1e-7)
    exact_zero = backend.asarray(np.diag([2.0, 1.0, 0.0, 0.0])[:, :3].astype(dtype))
    (x, _), (dx, _) = ad.jvp(lambda m: tuple(ad.linalg.svd_split(m, 3)), (exact_zero,), (da[0, :4, :3],))
    assert np.isfinite(backend.to_numpy(dx)).all() and np.all(backend.to_numpy(x)[:, 2] == 0)
    (x, _), (dx, dy) = ad.jvp(lambda m: tuple(ad.linalg.svd_split(m, 0)), (a,), (da,))
    assert x.shape == (2, 6, 0) and backend.to_numpy(dx).shape == (2, 6, 0) and backend.to_numpy(dy).shape == (2, 5, 0)


# --------------------------------------------------------------------------- first order


@pytest.mark.parametrize("shape,k", [((5, 3), 2), ((3, 5), 2), ((4, 4), 4), ((2, 6, 4), 3), ((2, 4, 6), 4)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_jvp_invariants_random(backend, dtype, shape, k):
    a = backend.asarray(direction(shape, dtype, 6))
    ad.check_jvp(invariants(backend, k), (a,), (backend.asarray(direction(shape, dtype, 7)),), **tol(dtype))


# kept spectra with exact, near (relative gaps 1e-15..1e-1) and wide repeats; the cut has a gap
SPECTRA = [
    ([3.0, 2.0, 2.0, 2.0, 0.5, 0.2], 4),
    ([1.0, 1.0, 1.0, 1.0, 0.3, 0.3], 4),
    ([1.0, 1.0 + 1e-15, 1.0 + 1e-12, 0.6, 0.6 + 1e-9, 0.1], 5),
    ([1.0, 1.0 - 1e-7, 0.9, 0.9 - 1e-4, 0.2, 0.1], 4),
    ([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 6),
]


@pytest.mark.parametrize("shape", [(7, 6), (6, 8)])
@pytest.mark.parametrize("spectrum,k", SPECTRA)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_jvp_invariants_at_repeated_kept_values(backend, dtype, spectrum, k, shape):
    a = with_singular_values(spectrum, *shape, dtype, seed=8)
    ad.check_jvp(invariants(backend, k), (backend.asarray(a),), (backend.asarray(direction(shape, dtype, 9)),),
                 rtol=1e-7)


def z2_symmetric(dtype, seed):
    """A = diag(B, B) and dA = diag(dB, dB): every singular value is an exact doublet, and stays one
    along dA (first-order splittings coincide too: the symmetry-protected case)."""
    b = with_singular_values([3.0, 1.5, 1.0, 0.25], 4, 4, dtype, seed=seed)
    db = direction((4, 4), dtype, seed + 1)
    z = np.zeros_like(b)
    return np.block([[b, z], [z, b]]), np.block([[db, z], [z, db]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_jvp_symmetry_protected_doublets(backend, dtype):
    a, da = z2_symmetric(dtype, 10)
    ad.check_jvp(invariants(backend, 6), (backend.asarray(a),), (backend.asarray(da),), **tol(dtype))


@pytest.mark.parametrize("spectrum,k", SPECTRA[:3])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lift_and_balance_and_product(backend, dtype, spectrum, k):
    a = with_singular_values(spectrum, 7, 6, dtype, seed=11)
    da = direction((7, 6), dtype, 12)
    (x, y), (dx, dy) = ad.jvp(lambda m: tuple(ad.linalg.svd_split(m, k)), (backend.asarray(a),),
                              (backend.asarray(da),))
    x, y, dx, dy = map(backend.to_numpy, (x, y, dx, dy))
    h = lambda z: np.conj(z.T)  # noqa: E731
    lift = h(x) @ dx + h(y) @ dy
    np.testing.assert_allclose(lift, h(lift), atol=1e-12)  # horizontal: Hermitian
    np.testing.assert_allclose(h(x) @ dx + h(dx) @ x, h(y) @ dy + h(dy) @ y, atol=1e-12)  # stays balanced
    # product rule against the truncation's tangent from its defining projections
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    p = h(u) @ da @ h(vh)
    d_trunc = dx @ h(y) + x @ h(dy)
    np.testing.assert_allclose(h(u[:, :k]) @ d_trunc @ h(vh[:k]), p[:k, :k], atol=1e-10)
    np.testing.assert_allclose(h(u[:, k:]) @ d_trunc @ h(vh[k:]), 0 * p[k:, k:], atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_agrees_with_svd_at_distinct_values(backend, dtype):
    """At distinct kept values, d(X Y^H) is what the plain svd's JVP gives for U_k S_k V_k^H."""
    ns = backend.ns
    a = backend.asarray(direction((2, 6, 5), dtype, 13))
    da = backend.asarray(direction((2, 6, 5), dtype, 14))

    def via_svd(m):
        u, s, vh = ad.linalg.svd(m, full_matrices=False)
        return ns.matmul(ns.multiply(u[..., :3], ns.expand_dims(s[..., :3], axis=-2)), vh[..., :3, :])

    def via_split(m):
        x, y = ad.linalg.svd_split(m, 3)
        return ns.matmul(x, mH(y))

    ref, got = ad.jvp(via_svd, (a,), (da,))[1], ad.jvp(via_split, (a,), (da,))[1]
    rtol = 2e-4 if dtype in SINGLE else 1e-11
    np.testing.assert_allclose(backend.to_numpy(got), backend.to_numpy(ref), rtol=rtol, atol=rtol)


def test_whole_multiplets_drops_the_multiplet_at_the_cut(backend):
    ns = backend.ns
    a, da = z2_symmetric(np.float64, 15)  # doublets 3, 1.5, 1, 0.25: k = 3 cuts the doublet of 1.5
    a_dev, da_dev = backend.asarray(a), backend.asarray(da)
    x, y = map(backend.to_numpy, ad.linalg.svd_split(a_dev, 3, whole_multiplets=True))
    assert np.all(x[:, 2] == 0) and np.all(y[:, 2] == 0)
    x2, y2 = map(backend.to_numpy, ad.linalg.svd_split(a_dev, 2))
    np.testing.assert_allclose(x @ y.T, x2 @ y2.T, atol=1e-12)
    # along the symmetric direction the doublet never splits: the dropped truncation is smooth
    ad.check_jvp(invariants(backend, 3, whole_multiplets=True), (a_dev,), (da_dev,), rtol=1e-7)
    # without the option, the tangent carries 1 / (s_k - s_(k+1)) at an exact tie: not finite or huge
    with np.errstate(divide="ignore", invalid="ignore"):
        d = ad.jvp(lambda m: ns.matmul(*(lambda r: (r.X, mH(r.Y)))(ad.linalg.svd_split(m, 3))),
                   (a_dev,), (backend.asarray(direction((8, 8), np.float64, 16)),))[1]
    assert not np.all(np.abs(backend.to_numpy(d)) < 1e6)


# --------------------------------------------------------------------------- nested jvp


def richardson(first, a, da, h=1e-3):
    fd = lambda step: (first(a + step * da) - first(a - step * da)) / (2 * step)  # noqa: E731
    return (4 * fd(h / 2) - fd(h)) / 3


@pytest.mark.parametrize("case", ["random", "repeated", "symmetric", "batched"])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_second_derivative(backend, dtype, case):
    if case == "symmetric":
        a, da = z2_symmetric(dtype, 17)
        k = 4
    elif case == "batched":  # one wide matrix with a repeated kept value, one random
        a = with_singular_values([1.0, 1.0, 0.5, 0.2], 4, 6, dtype, seed=18, batch=(2,))
        a[1] = direction((4, 6), dtype, 24)
        da, k = direction((2, 4, 6), dtype, 25), 2
    else:
        spectrum = [1.0, 0.8, 0.7, 0.5, 0.3, 0.2] if case == "random" else [1.0, 1.0, 1.0, 0.5, 0.5, 0.2]
        a, da = with_singular_values(spectrum, 7, 6, dtype, seed=18), direction((7, 6), dtype, 19)
        k = 5 if case == "repeated" else 3
    f = invariants(backend, k)
    a_dev, da_dev = backend.asarray(a), backend.asarray(da)

    def first(m):
        return np.concatenate([backend.to_numpy(t).ravel() for t in ad.jvp(f, (backend.asarray(m),), (da_dev,))[1]])

    second = ad.jvp(lambda m: ad.jvp(f, (m,), (da_dev,))[1], (a_dev,), (da_dev,))[1]
    got = np.concatenate([backend.to_numpy(t).ravel() for t in second])
    ref = richardson(first, a, da)
    assert np.abs(got - ref).max() <= 1e-7 * np.abs(ref).max()


def test_exported_in_the_namespace(backend):
    assert backend.ns.linalg.svd_split is ad.linalg.svd_split
    assert ad.linalg.SplitResult._fields == ("X", "Y")


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_many_directions_at_one_point(backend, dtype):
    """jacfwd, vmap over tangents and vmap of linearize's f_jvp (the solve had no batching rule: all three
    raised), against one jvp per direction, at repeated kept values and with a batch of matrices; the
    Hessian of a gauge-invariant scalar is symmetric (nested: the solve's JVP under the batching rule)."""
    a = with_singular_values([1.0, 1.0, 0.5, 0.2], 4, 6, dtype, seed=18, batch=(2,))
    a[1] = direction((4, 6), dtype, 24)
    f = invariants(backend, 2)
    a_dev = backend.asarray(a)
    stack = direction((3, 2, 4, 6), dtype, 26)
    loop = [ad.jvp(f, (a_dev,), (backend.asarray(t),))[1] for t in stack]
    mapped = ad.vmap(lambda t: ad.jvp(f, (a_dev,), (t,))[1])(backend.asarray(stack))
    replayed = ad.vmap(ad.linearize(f, a_dev)[1])(backend.asarray(stack))
    for got in (mapped, replayed):
        for k, want in enumerate(loop):
            for g, w in zip(got, want):
                np.testing.assert_allclose(backend.to_numpy(g)[k], backend.to_numpy(w), rtol=1e-12, atol=1e-13)
    if not is_complex(dtype):  # (jacfwd takes real inputs; complex ones need a holomorphic f)
        one = backend.asarray(a[0])
        jac = backend.to_numpy(ad.jacfwd(lambda m: f(m)[0])(one))
        for i, j in ((0, 0), (1, 4), (3, 5)):
            e = np.zeros((4, 6))
            e[i, j] = 1.0
            want = backend.to_numpy(ad.jvp(lambda m: f(m)[0], (one,), (backend.asarray(e),))[1])
            np.testing.assert_allclose(jac[..., i, j], want, rtol=1e-12, atol=1e-13)
        hess = backend.to_numpy(ad.hessian(lambda m: backend.ns.sum(f(m)[0] ** 2))(backend.asarray(a[1])))
        np.testing.assert_allclose(hess, np.transpose(hess, (2, 3, 0, 1)), rtol=1e-9, atol=1e-10)
