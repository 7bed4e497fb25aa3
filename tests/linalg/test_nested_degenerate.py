"""Issue 13, item 2: nested jvp of plain eigh / svd through exactly repeated values.

A(t) = A0 + t A1 + t^2 A2 / 2 through a degenerate A0. The second derivative is checked against
Richardson finite differences of the first (one-sided, t -> 0+, where the sorted values have a kink
at t = 0; central where the multiplet stays whole). Exact cases: a straight line (A2 = 0) whose
first-order splittings are distinct, for the eigenvalues / singular values and every output
invariant under rotations within a multiplet, and (third-order terms) for each split member's own
vectors, also along quadratic curves that do not couple split members; any curve through a
multiplet that a symmetry keeps whole. Refused (NaN second-order tangents, and a
DegenerateNestedWarning naming svd_split on host backends): a curve whose A2 couples the split
members, an outer direction other than the inner one. See cupy_ad/linalg/_nested_guard.py.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import cupy_ad as ad
from test_degenerate import direction, hermitian_with, with_singular_values
from test_symmetry_protected import z2_pair


def second_derivative(backend, f, a0, a1, a2, h=3e-4):
    """(nested jvp, one-sided Richardson FD of the first derivative) of f(A0 + t A1 + t^2 A2 / 2) at 0+."""
    one = backend.asarray(np.float64(1.0))

    def slope(t):
        return ad.jvp(lambda s: f(s * backend.asarray(a1) + (s * s / 2) * backend.asarray(a2) + backend.asarray(a0)),
                      (t,), (one,))[1]

    nested = backend.to_numpy(ad.jvp(slope, (backend.asarray(np.float64(0.0)),), (one,))[1])
    g = lambda t: backend.to_numpy(slope(backend.asarray(np.float64(t))))  # noqa: E731
    # fourth order, one-sided: error ~ h^4 (1e-9 here at 3e-4); below ~1e-4 the rounding of the first
    # derivative near the degeneracy (eps / (h |mu_i - mu_j|)) takes over (individual vectors: below ~1e-3)
    fd = (-25 * g(0.0) + 48 * g(h) - 36 * g(2 * h) + 16 * g(3 * h) - 3 * g(4 * h)) / (12 * h)
    return nested, fd


def close(nested, fd, rtol=1e-6):
    assert np.abs(nested - fd).max() <= rtol * np.abs(fd).max(), (np.abs(nested - fd).max(), np.abs(fd).max())


def eigh_outputs(backend, which):
    ns = backend.ns

    def f(a):
        w, v = ad.linalg.eigh(a)
        if which == "eigenvalues":
            return w
        if which == "function":  # V exp(w) V^H = expm(A)
            return (v * ns.exp(w)) @ ns.conj(v).mT
        return v[..., :, 1:4] @ ns.conj(v[..., :, 1:4]).mT  # projector on the triple

    return f


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("which", ["eigenvalues", "function", "projector"])
def test_eigh_line_through_triple(backend, dtype, which):
    a0 = hermitian_with([-1.0, 1.0, 1.0, 1.0, 2.0], dtype, seed=3)
    a1 = direction((5, 5), dtype, seed=4)
    a1 = a1 + np.conj(a1.T)
    close(*second_derivative(backend, eigh_outputs(backend, which), a0, a1, 0 * a1))


def svd_outputs(backend, which):
    ns = backend.ns

    def f(a):
        u, s, vh = ad.linalg.svd(a, full_matrices=False)
        if which == "values":
            return s
        if which == "truncation":  # the triple and the value above it
            return (u[..., :, :4] * s[..., None, :4]) @ vh[..., :4, :]
        return u[..., :, 1:4] @ ns.conj(u[..., :, 1:4]).mT

    return f


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("which, shape", [("values", (5, 5)), ("truncation", (5, 5)), ("truncation", (7, 5)),
                                          ("projector", (5, 6))])
def test_svd_line_through_triple(backend, dtype, which, shape):
    a0 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], *shape, dtype, seed=5)
    a1 = direction(shape, dtype, seed=6)
    close(*second_derivative(backend, svd_outputs(backend, which), a0, a1, 0 * a1))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_symmetry_protected_doublets_along_a_curve(backend, dtype):
    # A(t) = diag(B(t), B(t)) in a generic basis: every value a doublet for all t (mu repeat exactly);
    # truncation after two doublets and the projector on them: exact along a curve (A2 != 0)
    ns = backend.ns
    a0, a1 = z2_pair([1.0, 0.6, 0.25, 0.1], dtype, seed=7)
    a2 = a1 @ np.conj(a1.T) @ a0  # q1 diag(C, C) q2^T as a0 and a1: the curve keeps the symmetry
    a0h, a1h = z2_pair([1.0, 0.6, 0.25, 0.1], dtype, seed=8, hermitian=True)

    def truncation(a):
        u, s, vh = ad.linalg.svd(a)
        return (u[..., :, :4] * s[..., None, :4]) @ vh[..., :4, :]

    def projector(a):
        _, v = ad.linalg.eigh(a)
        return v[..., :, 4:] @ ns.conj(v[..., :, 4:]).mT

    close(*second_derivative(backend, truncation, a0, a1, a2))
    close(*second_derivative(backend, projector, a0h, a1h, a1h @ a1h))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_refused_where_no_rule_is_exact(backend, dtype):
    # the curve's A2 couples the vectors that A1 splits: the inner tangent (a function of A, A1 only)
    # misses A2's in-cluster part, so no outer rule can be exact: a clear error instead
    a0 = hermitian_with([-1.0, 1.0, 1.0, 1.0, 2.0], dtype, seed=3)
    a1, a2 = direction((5, 5), dtype, seed=4), direction((5, 5), dtype, seed=9)
    a1, a2 = a1 + np.conj(a1.T), a2 + np.conj(a2.T)
    with pytest.warns(ad.linalg.DegenerateNestedWarning, match="svd_split"):
        assert np.isnan(second_derivative(backend, eigh_outputs(backend, "function"), a0, a1, a2)[0]).any()
    m0 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], 5, 5, dtype, seed=5)
    m1, m2 = direction((5, 5), dtype, seed=6), direction((5, 5), dtype, seed=10)
    with pytest.warns(ad.linalg.DegenerateNestedWarning, match="svd_split"):
        assert np.isnan(second_derivative(backend, svd_outputs(backend, "truncation"), m0, m1, m2)[0]).any()
    # an outer direction other than the inner one (mixed second derivative)
    x0, t_in, t_out = (backend.asarray(z) for z in (a0, a1, a2))
    first = lambda x: ad.jvp(eigh_outputs(backend, "function"), (x,), (t_in,))[1]  # noqa: E731
    with pytest.warns(ad.linalg.DegenerateNestedWarning, match="nested jvp at repeated"):
        value, second = ad.jvp(first, (x0,), (t_out,))
    assert np.isfinite(backend.to_numpy(value)).all() and np.isnan(backend.to_numpy(second)).any()


def test_branch_free_backends_give_nan_without_warning(backend, monkeypatch):
    # CuPy and Dask never synchronise: the refused case gives NaN second-order tangents
    from types import SimpleNamespace

    from cupy_ad.linalg import _nested_guard
    monkeypatch.setattr(_nested_guard, "backend_of_matrix", lambda x: SimpleNamespace(host_branching=False))
    a0 = hermitian_with([-1.0, 1.0, 1.0, 1.0, 2.0], np.float64, seed=3)
    a1, a2 = direction((5, 5), np.float64, seed=4), direction((5, 5), np.float64, seed=9)
    x0, t_in, t_out = (backend.asarray(z + z.T) for z in (a0 / 2, a1, a2))
    first = lambda x: ad.jvp(eigh_outputs(backend, "function"), (x,), (t_in,))[1]  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error", ad.linalg.DegenerateNestedWarning)  # (they could not read the check)
        value, second = ad.jvp(first, (x0,), (t_out,))
    assert np.isfinite(backend.to_numpy(value)).all() and np.isnan(backend.to_numpy(second)).all()
    # and the line, where the rule is exact, stays finite
    _, second = ad.jvp(first, (x0,), (t_in,))
    assert np.isfinite(backend.to_numpy(second)).all()


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_eigvalsh_and_svdvals_along_a_curve_and_refused_across(backend, dtype):
    # values alone: exact along any curve where the first-order splittings differ (the curve's
    # A2 only enters through diag(V^H A2 V)); another outer direction has no mixed derivative
    a0 = hermitian_with([-1.0, 1.0, 1.0, 1.0, 2.0], dtype, seed=3)
    a1, a2 = direction((5, 5), dtype, seed=4), direction((5, 5), dtype, seed=9)
    a1, a2 = a1 + np.conj(a1.T), a2 + np.conj(a2.T)
    close(*second_derivative(backend, ad.linalg.eigvalsh, a0, a1, a2))
    m0 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], 5, 6, dtype, seed=5)
    m1, m2 = direction((5, 6), dtype, seed=6), direction((5, 6), dtype, seed=10)
    close(*second_derivative(backend, ad.linalg.svdvals, m0, m1, m2))
    for f, x, t_in, t_out in ((ad.linalg.eigvalsh, a0, a1, a2), (ad.linalg.svdvals, m0, m1, m2)):
        x, t_in, t_out = (backend.asarray(z) for z in (x, t_in, t_out))
        first = lambda y: ad.jvp(f, (y,), (t_in,))[1]  # noqa: E731
        with pytest.warns(ad.linalg.DegenerateNestedWarning, match="outer direction other than the inner one"):
            value, second = ad.jvp(first, (x,), (t_out,))
        assert np.isfinite(backend.to_numpy(value)).all() and np.isnan(backend.to_numpy(second)).any()


@pytest.mark.parametrize("shape, values", [((4, 4), [3.0, 2.0, 0.0, 0.0]), ((4, 4), [3.0, 2.0, 1.0, 0.0]),
                                           ((5, 3), [3.0, 2.0, 0.0]), ((3, 5), [3.0, 2.0, 0.0])])
def test_svd_zero_block_nested_is_nan_not_wrong(backend, shape, values):
    """At zero singular values the inner rule takes the zero block's limit basis as a constant, so a
    nested jvp of what reads the block (the nuclear norm: nested 3.02 vs FD 1.248 at [3, 2, 0, 0]
    before the guard) gets NaN; a truncation cut at the gap above it (U_2 S_2 V_2^H) stays exact."""
    ns = backend.ns
    m, n = shape
    a0 = with_singular_values(values, m, n, np.float64, seed=3)
    a1, weight = direction(shape, np.float64, seed=4), backend.asarray(direction(shape, np.float64, seed=9))
    zero = np.zeros(shape)
    for nuclear in (lambda a: ns.sum(ad.linalg.svdvals(a)), lambda a: ns.sum(ad.linalg.svd(a, full_matrices=False)[1])):
        nested, fd = second_derivative(backend, nuclear, a0, a1, zero)
        assert np.isnan(nested) and np.isfinite(fd)

    def kept(a):
        u, s, vh = ad.linalg.svd(a, full_matrices=True)
        return ns.sum(((u[:, :2] * s[:2]) @ vh[:2, :]) * weight)

    close(*second_derivative(backend, kept, a0, a1, zero))


def test_values_guard_spares_isolated_values_scaled_lines_and_a_moving_inner_tangent(backend):
    # another outer direction: NaN for the cluster's values only, the isolated ones stay exact; the same
    # line at twice the speed: twice the result; A fixed while dA moves: exact (distinct splittings)
    a = np.diag([1.0, 1.0, 2.0, 3.0])
    b, c, d = (z + z.T for z in (direction((4, 4), np.float64, seed=s) for s in (11, 12, 13)))
    x, tb, tc, td = (backend.asarray(z) for z in (a, b, c, d))
    first = lambda y: ad.jvp(ad.linalg.eigvalsh, (y,), (tb,))[1]  # noqa: E731
    with pytest.warns(ad.linalg.DegenerateNestedWarning):
        mixed = backend.to_numpy(ad.jvp(first, (x,), (tc,))[1])
    h = 1e-5
    fd = (backend.to_numpy(first(backend.asarray(a + h * c))) - backend.to_numpy(first(backend.asarray(a - h * c))))
    assert np.isnan(mixed[:2]).all()
    np.testing.assert_allclose(mixed[2:], fd[2:] / (2 * h), rtol=1e-6)
    along = backend.to_numpy(ad.jvp(first, (x,), (tb,))[1])
    twice = backend.to_numpy(ad.jvp(first, (x,), (2.0 * tb,))[1])
    np.testing.assert_allclose(twice, 2 * along, rtol=1e-12, atol=1e-12)
    moving = backend.to_numpy(ad.jvp(lambda t: ad.jvp(ad.linalg.eigvalsh, (x,), (t,))[1], (tb,), (td,))[1])
    inner = lambda t: backend.to_numpy(ad.jvp(ad.linalg.eigvalsh, (x,), (backend.asarray(t),))[1])  # noqa: E731
    np.testing.assert_allclose(moving, (inner(b + h * d) - inner(b - h * d)) / (2 * h), rtol=1e-6, atol=1e-8)
    m = np.zeros((5, 4))
    m[:4, :4] = np.diag([3.0, 2.0, 2.0, 1.0])
    mb, mc = (backend.asarray(direction((5, 4), np.float64, seed=s)) for s in (14, 15))
    first_s = lambda y: ad.jvp(ad.linalg.svdvals, (y,), (mb,))[1]  # noqa: E731
    with pytest.warns(ad.linalg.DegenerateNestedWarning):
        mixed = backend.to_numpy(ad.jvp(first_s, (backend.asarray(m),), (mc,))[1])
    assert np.isnan(mixed[1:3]).all() and np.isfinite(mixed[[0, 3]]).all()


# Individual vectors of a split cluster (not invariant under rotations within it): their second derivative
# along the line needs the third-order terms of degenerate perturbation theory (linalg/_nested_guard.py).

def per_member(ns, x, anchor, y=None):
    """Outputs of the columns x (..., n, k) (and y, paired with them) that depend on each column alone, not on
    its gauge: every x_i x_i^H, x_i y_i^H and y_i y_i^H, and x_i with the entry ``anchor`` (one-hot (..., n, k),
    a large one; an array of namespace ``ns``) made real positive."""
    first = ns.sum(x * anchor, axis=-2, keepdims=True)
    phase = (ns.conj(first) if ns.isdtype(x.dtype, "complex floating") else first) / ns.abs(first)
    parts = [x[..., :, None, :] * ns.conj(x[..., None, :, :]), x * phase]
    if y is not None:
        parts += [x[..., :, None, :] * ns.conj(y[..., None, :, :]), y[..., :, None, :] * ns.conj(y[..., None, :, :])]
    return ns.concat([ns.reshape(z, (*x.shape[:-2], -1)) for z in parts], axis=-1)


def eigh_members(backend, a0, a1):
    vectors = lambda a: ad.linalg.eigh(a)[1][..., :, 1:4]  # noqa: E731
    anchor = backend.asarray(largest_entries(backend, vectors, a0, a1))
    return lambda a: per_member(backend.ns, vectors(a), anchor)


def svd_members(backend, a0, a1, full_matrices):
    def pair(a):
        u, _, vh = ad.linalg.svd(a, full_matrices=full_matrices)
        return u[..., :, 1:4], backend.ns.conj(vh[..., 1:4, :]).mT

    anchor = backend.asarray(largest_entries(backend, lambda a: pair(a)[0], a0, a1))

    def f(a):
        x, y = pair(a)
        return per_member(backend.ns, x, anchor, y)

    return f


def largest_entries(backend, vectors, a0, a1):
    """One-hot (..., n, k): the largest entry of each column of the limit basis along a1 (jvp's primal)."""
    x = np.abs(backend.to_numpy(ad.jvp(vectors, (backend.asarray(a0),), (backend.asarray(a1),))[0]))
    return (x == x.max(axis=-2, keepdims=True)).astype(np.float64)


def triple_and_distinct(dtype):
    """A batch: a matrix with the triple 1, 1, 1 and one with a distinct spectrum; a Hermitian line direction."""
    a0 = np.stack([hermitian_with([-1.0, 1.0, 1.0, 1.0, 2.0], dtype, seed=3),
                   hermitian_with([-1.0, 0.5, 1.0, 1.5, 2.0], dtype, seed=13)])
    a1 = direction((2, 5, 5), dtype, seed=4)
    return a0, a1 + np.conj(np.swapaxes(a1, -1, -2))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_eigh_split_members_along_a_line(backend, dtype):
    a0, a1 = triple_and_distinct(dtype)
    # h = 1e-3: the first derivative of one member near the split rounds like eps / (h |mu_i - mu_j|)^2
    close(*second_derivative(backend, eigh_members(backend, a0, a1), a0, a1, 0 * a1, h=1e-3), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("shape, full_matrices", [((5, 5), False), ((7, 5), True), ((5, 6), False)])
def test_svd_split_members_along_a_line(backend, dtype, shape, full_matrices):
    a0 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], *shape, dtype, seed=5)
    a1 = direction(shape, dtype, seed=6)
    close(*second_derivative(backend, svd_members(backend, a0, a1, full_matrices), a0, a1, 0 * a1, h=1e-3), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_split_members_are_the_limit_of_the_distinct_rule(backend, dtype):
    # independent of the degenerate rule: for t > 0 the line's values are distinct and the ordinary rules
    # (nested) give the members' second derivative; it is analytic in t, so its limit t -> 0+ (cubic
    # extrapolation from t = h..4h) is the value at the degenerate point
    one = backend.asarray(np.float64(1.0))

    def nested_at(f, a0, a1, t):
        x0, x1 = backend.asarray(a0), backend.asarray(a1)
        slope = lambda s0: ad.jvp(lambda s: f(s * x1 + x0), (s0,), (one,))[1]  # noqa: E731
        return backend.to_numpy(ad.jvp(slope, (backend.asarray(np.float64(t)),), (one,))[1])

    a0, a1 = triple_and_distinct(dtype)
    m0, m1 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], 6, 5, dtype, seed=5), direction((6, 5), dtype, seed=6)
    h = 5e-4
    for f, x0, x1 in ((eigh_members(backend, a0, a1), a0, a1), (svd_members(backend, m0, m1, False), m0, m1)):
        g = [nested_at(f, x0, x1, k * h) for k in (1, 2, 3, 4)]
        close(nested_at(f, x0, x1, 0.0), 4 * g[0] - 6 * g[1] + 4 * g[2] - g[3], rtol=2e-5)


def test_split_members_against_jax_off_the_point(backend):
    # an independent implementation: JAX's nested jvp of the svd members at t = h..4h (distinct values:
    # JAX's ordinary rules), extrapolated to t -> 0+ (at t = 0 JAX divides by 0); complex (phases), svd
    # (eigh's rule on the dilation) only, computed once: JAX's compile time
    pytest.importorskip("jax")
    m0 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], 5, 6, np.complex128, seed=5)
    m1 = direction((5, 6), np.complex128, seed=6)
    anchor = largest_entries(backend, lambda a: ad.linalg.svd(a, full_matrices=False)[0][..., :, 1:4], m0, m1)
    ours = second_derivative(backend, svd_members(backend, m0, m1, False), m0, m1, 0 * m1, h=1e-3)[0]
    close(ours, jax_svd_members_limit(m0, m1, anchor), rtol=2e-5)


def jax_svd_members_limit(m0, m1, anchor):
    if "limit" not in JAX_REFERENCE:
        import jax
        jax.config.update("jax_enable_x64", True)
        jnp = jax.numpy

        def members(a):
            u, _, vh = jnp.linalg.svd(a, full_matrices=False)
            return per_member(jnp, u[:, 1:4], anchor, jnp.conj(vh[1:4, :]).T)

        slope = lambda s: jax.jvp(lambda r: members(m0 + r * m1), (s,), (1.0,))[1]  # noqa: E731
        second = jax.jit(lambda t: jax.jvp(slope, (t,), (1.0,))[1])
        g = [np.asarray(second(k * 1e-3)) for k in (1, 2, 3, 4)]
        JAX_REFERENCE["limit"] = 4 * g[0] - 6 * g[1] + 4 * g[2] - g[3]
    return JAX_REFERENCE["limit"]


JAX_REFERENCE: dict = {}


def test_split_members_branch_free(backend, monkeypatch):
    # CuPy's path (the degenerate rule on every matrix, no host branch) gives the same
    from cupy_ad.linalg import _clusters
    monkeypatch.setattr(_clusters, "FORCE_BRANCH_FREE", True)
    a0, a1 = triple_and_distinct(np.float64)
    close(*second_derivative(backend, eigh_members(backend, a0, a1), a0, a1, 0 * a1, h=1e-3), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("values", [[3.0, 2.0, 2.0, 2.0, 1.0, 0.0], [3.0, 2.0, 2.0, 2.0, 0.0, 0.0]])
def test_svd_cluster_beside_a_zero_block_of_a_square_matrix(backend, dtype, values):
    # the zero block's new left vectors move with U under the outer jvp: as constants they left out terms
    # of the positive cluster's second order that no complement cancels in a square matrix (before: a
    # truncation after the triple off by 1e-1, its members by 4e-1)
    a0 = with_singular_values(values, 6, 6, dtype, seed=5)
    a1 = direction((6, 6), dtype, seed=6)
    close(*second_derivative(backend, svd_outputs(backend, "truncation"), a0, a1, 0 * a1))
    close(*second_derivative(backend, svd_members(backend, a0, a1, True), a0, a1, 0 * a1, h=1e-3), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_split_members_along_curves_that_keep_them_apart(backend, dtype):
    # quadratic curves whose second derivative does not couple the split members (what the guard checks):
    # the line reparametrised (A2 = A1) and an A2 with no cluster block; the curve's D enters the truth and
    # the chain of outer rules alike
    a0, a1 = (z[0] for z in triple_and_distinct(dtype))
    x = direction((5, 5), dtype, seed=9)
    cluster = np.linalg.eigh(a0)[1][:, 1:4]
    x, pi = x + np.conj(x.T), cluster @ np.conj(cluster.T)
    m0, m1 = with_singular_values([3.0, 2.0, 2.0, 2.0, 0.5], 6, 5, dtype, seed=5), direction((6, 5), dtype, seed=6)
    u, _, vh = np.linalg.svd(m0)
    y = direction((6, 5), dtype, seed=10)
    off_u, off_v = u[:, 1:4] @ np.conj(u[:, 1:4].T), np.conj(vh[1:4].T) @ vh[1:4]
    for f, x0, x1, curves in ((eigh_members(backend, a0, a1), a0, a1, (a1, x - pi @ x @ pi)),
                              (svd_members(backend, m0, m1, False), m0, m1, (m1, y - off_u @ y @ off_v))):
        for x2 in curves:
            close(*second_derivative(backend, f, x0, x1, x2, h=1e-3), rtol=1e-5)


@pytest.mark.parametrize("n", [2, 400])
def test_guards_catch_a_mismatch_just_above_their_tolerance(backend, n):
    # the block check (outer tangent of P against T) and the curve check (one outer direction) at the
    # edge of mismatch_resolution: 1.25 x it is caught (NaN, warning), 0.75 x passes (was 64 x the
    # cluster resolution, which the latter's floor 16 -> 32 eps doubled)
    from cupy_ad.linalg._nested_guard import guard_curve, guard_nested, mismatch_resolution
    eps = np.finfo(np.float64).eps
    # its value (else this test follows any change of it): 64 x 16 eps, the guards' tolerance before the cluster
    # resolution's floor moved to 32 eps, growing as 64 sqrt(n) eps beyond n = 256 (review10)
    assert mismatch_resolution(n, eps) == max(1024, 64 * n ** 0.5) * eps and mismatch_resolution(4, eps) == 1024 * eps
    offdiag = ~np.eye(n, dtype=bool)
    t = np.where(offdiag, 1.0, 0.0)  # expected outer tangent of the block: size 1 + 0 + 1 (P' ~ T, c = 0)
    block, mixing, values = np.diag(np.arange(1.0, n + 1) / n), np.zeros((n, n)), np.zeros(n)
    pairs = backend.asarray(offdiag)
    for factor, caught in ((1.25, True), (0.75, False)):
        delta = factor * mismatch_resolution(n, eps) * 2.0
        outer = t.copy()
        outer[0, 1] += delta
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            guarded = ad.jvp(lambda p: guard_nested(backend.asarray(values), backend.asarray(mixing), p,
                                                    backend.asarray(t), pairs, pairs, "test")[1],
                             (backend.asarray(block),), (backend.asarray(outer),))[1]
        assert np.isnan(backend.to_numpy(guarded)).all() == caught
        assert any(w.category is ad.linalg.DegenerateNestedWarning for w in seen) == caught
        b = np.eye(n)  # the inner tangent; the outer one b + delta e_01 (orthogonal: speed exactly 1)
        b[0, 1] = delta / 2.0
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            curved = ad.jvp(lambda a: guard_curve(backend.asarray(values), a, backend.asarray(np.eye(n)),
                                                  backend.asarray(np.ones(n, dtype=bool)), "test"),
                            (backend.asarray(np.zeros((n, n))),), (backend.asarray(b),))[1]
        assert np.isnan(backend.to_numpy(curved)).all() == caught
        assert any(w.category is ad.linalg.DegenerateNestedWarning for w in seen) == caught
