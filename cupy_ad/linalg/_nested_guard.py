"""A guard that lets a nested jvp through a degenerate eigh/svd rule go on only where it is exact, and
gives the split members' vectors the third-order term that makes them exact there.

Setting (eigh; svd is the same on its Hermitian dilation). At a cluster of k equal eigenvalues
lambda the first-order rule rotates V to the limit basis, where P = V^H dA V has P_cc = diag(mu), and
mixes the cluster's vectors by c_ij = T_ij / (mu_j - mu_i), T_ij = sum_l P_il P_lj / (lambda - w_l)
(l outside the cluster), 0 where mu_i = mu_j. An outer jvp differentiates this along A + s B with
dA + s D, where the engine gives the outer tangent of P as P' = [P, C] + V^H D V, C = V^H V'
(the outer rule's own vector tangent). On the cluster (i != j; P_cc diagonal, C = c there and
C_lj = P_lj / (lambda - w_l) across, as the outer rule computes when B = dA):
    P'_ij = 2 T_ij + (mu_i - mu_j) c_ij + D_ij = T_ij + D_ij   (mu_i != mu_j),
    P'_ij = 2 T_ij + D_ij                                      (mu_i = mu_j).
Exact cases (derivation: expand (A + t dA + t^2 D / 2) v = lambda v order by order, the cluster
components of the order-t^2 equation fix c): along that curve, c(t) -> (T + D / 2)_ij / (mu_j - mu_i)
as t -> 0, while the inner rule's c (a function of A and dA only, as every primal value of forward
mode is) lacks D / 2. An output invariant under rotations within a multiplet, f(A) = V f(w) V^H,
meets c in its second derivative only through c (mu_j - mu_i) f'(lambda) (the other in-cluster terms
multiply f(lambda) I and cancel), so the nested result is exact iff D_ij = 0 there, i.e.
P'_ij = T_ij; no outer rule can restore D_ij / 2 in the inner tangent (a primal value). Where mu
repeats, the sub-block's second-order matrix 2 T + D must be diagonal (multiples of the identity
for a multiplet protected by a symmetry), else the limit basis and the eigenvalues' second
derivatives come from its eigenvectors, which the first-order rule did not use: P'_ij = 0.
So the guard is the identity whose JVP checks P'_ij = T_ij (distinct mu) and P'_ij = 0 (repeated
mu) on the cluster blocks, to rounding, and otherwise gives those outer tangents NaN, with a
``DegenerateNestedWarning`` on host backends (CuPy and Dask never synchronise to tell): an outer
direction B that splits a cluster other than dA does, a curve whose second derivative couples split
cluster members, or an accidental repeat of mu. NaN, not an error: forward mode computes every
tangent whether an output reads it or not, so an error would also stop programs whose outputs are
exact (a truncation cut at a gap) or that only need the primal values (array-API code run under a
nested jvp).
Individual vectors (third order). The second derivative of v_j alone (v_j v_j^H, a phase-fixed v_j)
also needs the outer derivative of c, which the chain of outer rules gets wrong: along the line
(D = 0) v_j(t) is analytic (Rellich); write v_j(t) = sum_k t^k v^(k) in the limit basis, Y = F o P
across clusters (Y_lj = P_lj / (lambda - w_l), the inner rule's own), T = Y^H P, U = Y^H P Y,
W = Y^H Y on the cluster (i != j below). Order t: v^(1) = (Y + c) e_j, nu_j = T_jj. Order t^2,
outside: v^(2)_l = ((P v^(1))_l - mu_j v^(1)_l) / (lambda - w_l). Order t^3, cluster component i:
    (mu_j - mu_i) v^(2)_i = sum_l P_il v^(2)_l - nu_j c_ij = U_ij + (T c)_ij - mu_j W_ij - T_jj c_ij.
The inner mixing C(t)_ij = v_i(t)^H v_j'(t) (diag(C) = 0, the rules' gauge) has the derivative
C'_ij = 2 v^(2)_i + (W - c^2)_ij. The chain differentiates c = Herm(P (F o P)) / (mu_j - mu_i) along
P' = [P, C], w' = diag(P): Herm(P (F o P))' = 3 U - 3 (mu_i + mu_j) W / 2 + (T c - c T) on the
cluster (the w_l' terms cancel the l = l' part of U; couplings inside other clusters cancel, C being
skew there), over mu_j - mu_i, minus c_ij (P'_jj - P'_ii) / (mu_j - mu_i), P'_jj = 2 T_jj. The
difference (the T c + c T terms cancel (mu_j - mu_i) c^2) is a function of (w, V, P) only:
    C'_ij - chain_ij = (-U_ij + (mu_i + mu_j) W_ij / 2 + c_ij (T_jj - T_ii)) / (mu_j - mu_i),
which the guard adds to the outer tangent of c on split pairs where it accepts (eigh passes Y; svd
the dilation's U, W: see svd._outside_terms). It is skew-Hermitian inside the cluster, so
rotation-invariant outputs do not change. On a curve whose D passes the check (D_ij = 0 on split
pairs), D enters the truth and the chain alike (through P' = [P, C] + V^H D V and D_jj): still exact.
A third derivative E of the curve adds E_ij / 6 to the order-t^3 equation, which a nested jvp never
sees: individual vectors are exact where E_ij = 0 on split pairs (lines, reparametrised lines,
quadratic curves), rotation-invariant outputs whatever E.
The values alone (eigvalsh, svdvals) are exact along any curve where mu differ (D enters them only
through diag(V^H D V)): there only repeated mu are checked on the block, and ``guard_curve`` checks
that the outer direction is the inner one (a mixed second derivative of sorted values at a
degenerate point does not exist, and the block alone cannot tell a curve from another direction).
"""
from __future__ import annotations

import functools
import sys
import warnings
from typing import Any

from ..core import Primitive, bind
from ..values import Zero, host_effect, strip
from ..namespace import add, diagonal, divide, expand_dims, multiply, real, subtract, where
from ..namespace._rules import xp_of
from ._clusters import concrete_tangent
from ._matrix import backend_of_matrix, mH

class DegenerateNestedWarning(RuntimeWarning):
    """A nested jvp met a degenerate eigen/singular value where its second derivative is not
    determined: those tangents are NaN (as on CuPy and Dask, which never synchronise to warn)."""


MESSAGE = ("{name}: nested jvp at repeated eigen/singular values whose second derivative is not determined "
           "by this call: the outer direction splits a repeated value differently from the inner one, or the "
           "curve's second derivative couples the vectors of a split multiplet, or the first-order splittings "
           "repeat without a symmetry (max mismatch {bad:.2e}, tolerance {tol:.2e}): those tangents are NaN. "
           "Rotation-invariant outputs (truncations, projectors, f(A)) have a second derivative there: compute "
           "them with cupy_ad.linalg.svd_split (nested jvp exact at any degeneracy) or from eigenvalues/singular values "
           "and whole multiplets; or nest jvp along one direction of a straight line A + t dA")


def _identity(values: Any, mixing: Any, block: Any, t: Any, *outside: Any, pairs: Any, distinct: Any, name: str,
              t_from: Any, third_order: Any) -> tuple[Any, Any]:
    return values, mixing


nested_guard_p = Primitive("degenerate_nested_guard", _identity, multiple_results=True)
nested_guard_p.def_batch(lambda values, axes, **params: (tuple(values[:2]), tuple(axes[:2])))


def mismatch_resolution(n: int, eps: float) -> float:
    """The relative mismatch, max(1024, 64 sqrt(n)) eps, above which the guards' checks (P' = T on a
    cluster block, one outer direction) fail: it separates the rounding of the two computed sides from
    a real mismatch, an O(1) part of another direction or of the curve's second derivative. Measured
    on lines through clusters split by 0-30 eps (n = 5-200, float32 and float64): rounding up to 48 eps
    times the check's size (the curve check: 1 eps); another direction: ~1e14 eps (float64). 1024 eps
    leaves 20x over the rounding, growing like sqrt(n) beyond n = 256 as rounded sums of n terms do.
    Its own constant, not the cluster resolution's (64 x, as written with that floor at 16 eps): that
    one answers to how far LAPACK splits a repeated value, this one to the guards' arithmetic."""
    return max(1024.0, 64 * n ** 0.5) * eps


def _largest(z: Any) -> Any:
    xp = xp_of(z)
    return xp.max(xp.abs(z), axis=(-2, -1), keepdims=True)


@nested_guard_p.def_jvp
def _guard_jvp(primals: list, tangents: list, *, pairs: Any, distinct: Any, name: str, t_from: Any,
               third_order: Any):
    values, mixing, block, t, *outside = primals
    if t is None:
        t = t_from(strip(block))
    tangent = tangents[2]
    raw = strip(block) * 0 if type(tangent) is Zero else concrete_tangent(tangent, name)
    xp = xp_of(raw)
    eps = float(xp.finfo(raw.dtype).eps)
    # T, or 0 where mu repeat (B = dA exactly: the block alone cannot tell a line traversed at another
    # speed from another direction, as one pair fits any scale; those get NaN)
    expected = xp.where(distinct, strip(t), xp.zeros((), dtype=raw.dtype))
    # rounding of P' = [P, C] + D and of T: eps (|P| |c| + |T| + |P'|)
    size = _largest(raw) + _largest(strip(block)) * _largest(strip(mixing)) + _largest(expected)
    tol = mismatch_resolution(raw.shape[-1], eps) * size
    mismatch = xp.where(pairs, xp.abs(raw - expected), xp.zeros((), dtype=tol.dtype))
    bad = xp.any(mismatch > tol, axis=(-2, -1), keepdims=True)
    outs, out_tangents = (values, mixing), tuple(tangents[:2])
    if third_order is not None:
        missed = _third_order_mixing(mixing, block, t, distinct, *third_order(block, *outside))
        out_tangents = (out_tangents[0], add(_dense(out_tangents[1], mixing), missed))
    if backend_of_matrix(raw).host_branching:
        if not bool(xp.any(bad)):
            return outs, out_tangents
        host_effect(functools.partial(_warn, name), mismatch, tol)  # (under jit: each replay warns too)
    nan = float("nan")  # (values real, mixing of the matrix's dtype)
    return outs, (where(bad[..., 0], xp.asarray(nan, dtype=values.dtype), _dense(out_tangents[0], values)),
                  where(bad, xp.asarray(nan, dtype=mixing.dtype), _dense(out_tangents[1], mixing)))


def _third_order_mixing(c: Any, block: Any, t: Any, distinct: Any, u: Any, w: Any) -> Any:
    """What the chain of outer rules misses in the outer tangent of the mixing c along the line (module
    docstring): [i, j] = (-U + (mu_i + mu_j) W / 2 + c (T_jj - T_ii)) / (mu_j - mu_i) on ``distinct``."""
    mu = real(diagonal(block))
    nu = real(diagonal(t))
    row = lambda z: expand_dims(z, axis=-2)  # noqa: E731 - [i, j] = z_j
    col = lambda z: expand_dims(z, axis=-1)  # noqa: E731 - [i, j] = z_i
    g = where(distinct, divide(1.0, where(distinct, subtract(row(mu), col(mu)), 1.0)), 0.0)
    average = multiply(add(row(mu), col(mu)), 0.5)
    numerator = add(subtract(multiply(average, w), u), multiply(c, subtract(row(nu), col(nu))))
    # Hermitian-ised, so that the term is skew-Hermitian to the last bit and leaves invariant outputs alone
    return multiply(g, multiply(add(numerator, mH(numerator)), 0.5))


def _warn(name: str, mismatch: Any, tol: Any) -> None:
    """The warning at the worst mismatch of the check (concrete arrays)."""
    xp = xp_of(mismatch)
    worst = int(xp.argmax(xp.reshape(mismatch - tol, (-1,))))
    warnings.warn(MESSAGE.format(name=name, bad=float(xp.reshape(mismatch, (-1,))[worst]),
                                 tol=float(xp.reshape(xp.broadcast_to(tol, mismatch.shape), (-1,))[worst])),
                  DegenerateNestedWarning, stacklevel=_outside_the_package())


def _warn_off_the_line(name: str, bad: Any) -> None:
    """The warning of the curve check (``bad``: where it failed, for jit's replays of it)."""
    warnings.warn(CURVE_MESSAGE.format(name=name), DegenerateNestedWarning, stacklevel=_outside_the_package())


def _outside_the_package() -> int:
    """The ``stacklevel`` of the innermost frame outside cupy_ad (and its generated jit replays), for a
    warning raised in a rule."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_globals.get("__name__", "").startswith("cupy_ad")
                                 or frame.f_code.co_filename.startswith("<cupy_ad")):
        frame, level = frame.f_back, level + 1
    return level


def _dense(tangent: Any, like: Any) -> Any:
    return like * 0 if type(tangent) is Zero else tangent


def guard_nested(values: Any, mixing: Any, block: Any, t: Any, pairs: Any, distinct: Any, name: str,
                 t_from: Any = None, outside: tuple = (), third_order: Any = None) -> tuple[Any, Any]:
    """``(values, mixing)`` unchanged: the cluster tangents (..., n) and in-cluster mixing c (..., n, n).
    Under an outer jvp, checks that the outer tangent of the Hermitian cluster ``block`` (the
    limit-basis P) equals ``t`` (T) where the first-order splittings differ (``distinct``) and 0
    where they repeat, on ``pairs`` (raw bool, the in-cluster off-diagonal entries), to rounding; otherwise
    gives both outputs NaN tangents (and warns on host backends); see the module docstring. Costs nothing
    without an outer jvp (the primal is the identity); ``t`` may be None, computed then as
    ``t_from(raw block)`` only under an outer jvp. ``third_order(block, *outside)`` (for the vector tangents of
    eigh and svd; None for the values alone) gives (U, W) of the module docstring, from which the outer
    tangent of ``mixing`` gets the third-order term the chain of outer rules misses on ``distinct`` pairs."""
    return bind(nested_guard_p, values, mixing, block, t, *outside, pairs=pairs, distinct=distinct, name=name,
                t_from=t_from, third_order=third_order)


def _pass(values: Any, a: Any, da: Any, *, members: Any, name: str) -> Any:
    return values


curve_guard_p = Primitive("degenerate_curve_guard", _pass)
curve_guard_p.def_batch(lambda values, axes, **params: (values[0], axes[0]))


@curve_guard_p.def_jvp
def _curve_jvp(primals: list, tangents: list, *, members: Any, name: str):
    values, a, da = primals
    if type(tangents[1]) is Zero:  # A fixed, only dA moves: mu' = diag(R^H P'_cc R) is exact where mu differ
        return values, tangents[0]  # (and where they repeat the cluster block's own check gives NaN)
    b, raw = concrete_tangent(tangents[1], name), strip(da)
    xp = xp_of(raw)
    # one direction: b = alpha da, alpha > 0 (the same line at another speed); alpha by least squares
    dd = xp.sum(xp.abs(raw) ** 2, axis=(-2, -1), keepdims=True)
    alpha = xp.real(xp.sum(xp.conj(raw) * b, axis=(-2, -1), keepdims=True)) / xp.where(dd > 0, dd, 1.0)
    tol = mismatch_resolution(raw.shape[-1], float(xp.finfo(raw.dtype).eps)) * _largest(b)
    off_line = xp.any(xp.abs(b - alpha * raw) > tol, axis=(-2, -1)) | ((alpha[..., 0, 0] <= 0) & (tol[..., 0, 0] > 0))
    bad = off_line[..., None] & members
    if backend_of_matrix(raw).host_branching:
        if not bool(xp.any(bad)):
            return values, tangents[0]
        host_effect(functools.partial(_warn_off_the_line, name), bad)  # (under jit: each replay warns too)
    return values, where(bad, xp.asarray(float("nan"), dtype=values.dtype), _dense(tangents[0], values))


CURVE_MESSAGE = ("{name}: nested jvp at repeated eigen/singular values along an outer direction other than the "
                 "inner one: the sorted values have no mixed second derivative there (those tangents are NaN). Nest "
                 "jvp along one direction (the same tangent at both levels), or differentiate a symmetric function "
                 "of each multiplet")


def guard_curve(values: Any, a: Any, da: Any, members: Any, name: str) -> Any:
    """``values`` unchanged; under an outer jvp, checks that the outer tangent of ``a`` is the inner
    tangent ``da`` times a positive speed (one direction: a line or curve) and otherwise gives NaN
    tangents to the ``members`` (raw bool (..., n): the repeated or zero values; warning on host
    backends). For eigvalsh and svdvals, whose second derivatives are exact along any curve with
    distinct first-order splittings: the check on the cluster block alone cannot tell a curve from
    another direction. An outer jvp that moves dA only (A fixed) passes: the values' derivative
    there is exact where the first-order splittings differ."""
    return bind(curve_guard_p, values, a, da, members=members, name=name)


def cluster_members(joined: Any) -> Any:
    """Raw bool (..., n): the values in a cluster, from ``joined`` (..., n - 1), whether each value is
    clustered with the next."""
    xp = xp_of(joined)
    alone = xp.zeros((*joined.shape[:-1], 1), dtype=xp.bool)
    return xp.concat([joined, alone], axis=-1) | xp.concat([alone, joined], axis=-1)


def _unchanged(tangent: Any, *, flagged: Any) -> Any:
    return tangent


zero_block_guard_p = Primitive("degenerate_zero_block_guard", _unchanged)
zero_block_guard_p.def_batch(lambda values, axes, **params: (values[0], axes[0]))


@zero_block_guard_p.def_jvp
def _zero_block_jvp(primals: list, tangents: list, *, flagged: Any):
    (tangent,), (outer,) = primals, tangents
    if type(outer) is Zero:
        return tangent, outer
    nan = xp_of(flagged).asarray(float("nan"), dtype=strip(tangent).dtype)
    return tangent, where(flagged, nan, outer)


def guard_zero_block(tangent: Any, flagged: Any) -> Any:
    """``tangent`` (an inner tangent of svd: dS, dU or dV) unchanged; under an outer jvp, its entries
    ``flagged`` (raw bool, broadcasting: those of the zero block) get NaN outer tangents, on every
    backend. The zero block's limit basis is computed from the tangent as a constant (the rotation
    and the QR of W y / |W y|), so the second derivatives of the zero singular values and of their
    vectors would be silently inexact: e.g. the nuclear norm's second derivative at a rank-deficient
    matrix came out 3.02 for 1.248 (Richardson FD). NaN, not an error, so that outputs which do not
    read those entries (a truncation cut at the gap above the zero block, U_r S_r V_r^H) keep their
    exact second derivative."""
    return bind(zero_block_guard_p, tangent, flagged=flagged)
