"""The linear system behind svd_split's tangents, as a primitive so that nested jvp is exact.

Balanced factors X (m, k), Y (n, k) of A (A Y = X L, A^H X = Y L, L = X^H X = Y^H Y, the k
largest singular values) move, for a tangent dA, by the (dX, dY) solving
    E1: dX L + X dL - A dY = b1,     E2: dY L + Y dL - A^H dX = b2,     dL = X^H dX + dX^H X,
    E4: Herm(X^H dX) - Herm(Y^H dY) = c4,     E5: Skew(X^H dX + Y^H dY) = c5,
with b1 = dA Y, b2 = dA^H X, c4 = c5 = 0 (E4 keeps the pair balanced, E5 is the horizontal lift).
``solve`` returns that solution for any right-hand side. Derivation in the SVD basis of A
(U, V thin, K = min(m, n) columns, s; X = U_k sigma, Y = V_k sigma, sigma = S_k^(1/2), L = S_k):
write dX = U alpha + dX_c, dY = V gamma + dY_c (dX_c, dY_c in the complements of U, V) and
B1 = U^H b1, B2 = V^H b2 (K, k).
- Complements: (I - U U^H) A = 0, so dX_c = (b1 - U B1) S_k^-1, dY_c = (b2 - V B2) S_k^-1.
- Rows l of the discarded values: alpha_l S_k - s_l gamma_l = B1_l, gamma_l S_k - s_l alpha_l = B2_l,
  so alpha_lj = (s_j B1_lj + s_l B2_lj) / (s_j^2 - s_l^2), gamma_lj = (s_j B2_lj + s_l B1_lj) / (...).
- Kept rows: with Z = sigma alpha_k, W = sigma gamma_k (Z = H + K, Herm/Skew parts), sigma E1 and
  sigma E2 read Z S + 2 S Herm(Z) - S W = sigma B1_k, W S + 2 S Herm(Z) - S Z = sigma B2_k, and E4, E5
  give W = H - K - D, D = c4 - c5. Their sum and difference give H and K by 1 / (s_i + s_j), and
  together Z = (sigma B1_k - S D) o E, W = (sigma B2_k - S D) o E, E_ij = 1 / (s_i + s_j), i.e.
      alpha_k = (B1_k - sigma D) o E,   gamma_k = (B2_k - sigma D) o E.
Only the sums s_i + s_j (kept) and the truncation gaps s_j^2 - s_l^2 appear: no tolerance.
JVP (implicit differentiation of E1..E5 along the inner tangents X', Y', A', b1', ...): the
derivative of the solution solves the same system with
    b1'' = b1' - dX L' - X' dL - X (X'^H dX + dX^H X') + A' dY,    L' = X'^H X + X^H X',
    b2'' = b2' - dY L' - Y' dL - Y (X'^H dX + dX^H X') + A'^H dX,
    c4'' = c4' - Herm(X'^H dX) + Herm(Y'^H dY),    c5'' = c5' - Skew(X'^H dX + Y'^H dY),
so the JVP is this primitive again: nested jvp of svd_split never differentiates singular vectors.
The basis (raw U, s, Vh and the kept mask) is that of the undifferentiated A, a parameter shared by
every level.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Zero, strip
from ..namespace import add, matmul, multiply, subtract
from ..namespace._batching import leading
from ..namespace._rules import xp_of
from ._matrix import mH


def _solve_impl(x: Any, y: Any, a: Any, b1: Any, b2: Any, c4: Any, c5: Any, *, basis: tuple) -> tuple[Any, Any]:
    u, s, vh, keep = basis
    xp = xp_of(u)
    m, n, k, big = u.shape[-2], vh.shape[-1], keep.shape[-1], s.shape[-1]
    ct = (lambda z: xp.conj(z.mT)) if xp.isdtype(u.dtype, "complex floating") else (lambda z: z.mT)  # noqa: E731
    v = ct(vh)
    kept_rows = xp.concat([keep, xp.zeros(s[..., k:].shape, dtype=xp.bool)], axis=-1)[..., :, None]
    col_keep = keep[..., None, :]
    s_i, s_j = s[..., :, None], s[..., None, :k]
    one = xp.ones((), dtype=s.dtype)
    den = xp.where(col_keep, xp.where(kept_rows, s_i + s_j, s_j * s_j - s_i * s_i), one)
    w1 = xp.where(kept_rows, one, s_j) / den  # kept rows: 1 / (s_i + s_j); others s_j / (s_j^2 - s_i^2)
    w2 = xp.where(kept_rows, 0 * one, s_i) / den  # others s_i / (s_j^2 - s_i^2)
    big1, big2 = ct(u) @ b1, ct(v) @ b2
    sigma = xp.where(keep, xp.sqrt(s[..., :k]), 0 * one)
    d_sig = sigma[..., :, None] * (c4 - c5)  # sigma D on the kept rows
    d_sig = xp.concat([d_sig, xp.zeros((*d_sig.shape[:-2], big - k, k), dtype=d_sig.dtype)], axis=-2)
    e = xp.where(kept_rows, 1 / den, 0 * one)
    alpha = big1 * w1 + big2 * w2 - d_sig * e
    gamma = big2 * w1 + big1 * w2 - d_sig * e
    inv = 1 / xp.where(col_keep, s_j, one)
    dx, dy = u @ alpha, v @ gamma
    if m > big:  # the complements of U and V
        dx = dx + (b1 - u @ big1) * inv
    if n > big:
        dy = dy + (b2 - v @ big2) * inv
    zero = xp.zeros((), dtype=dx.dtype)
    return xp.where(col_keep, dx, zero), xp.where(col_keep, dy, zero)


balanced_solve_p = Primitive("svd_split_solve", _solve_impl, multiple_results=True)
# Every operand is a matrix with leading batch dimensions and the basis broadcasts against them: many
# directions at one point (jacfwd, vmap of linearize's f_jvp) are one call on the stacked right-hand sides.
balanced_solve_p.def_batch(leading(balanced_solve_p, core=(2,) * 7))


def _zeros(like: Any) -> Any:
    raw = strip(like)
    return xp_of(raw).zeros(raw.shape, dtype=raw.dtype)


def _herm(z: Any) -> Any:
    return multiply(add(z, mH(z)), 0.5)


def _skew(z: Any) -> Any:
    return multiply(subtract(z, mH(z)), 0.5)


@balanced_solve_p.def_jvp
def _solve_jvp(primals: list, tangents: list, *, basis: tuple):
    x, y, a, b1, b2, c4, c5 = primals
    tx, ty, ta, tb1, tb2, tc4, tc5 = (_zeros(p) if type(t) is Zero else t for p, t in zip(primals, tangents))
    dx, dy = outs = bind(balanced_solve_p, x, y, a, b1, b2, c4, c5, basis=basis)
    lam_dot = add(matmul(mH(tx), x), matmul(mH(x), tx))
    d_lam = add(matmul(mH(x), dx), matmul(mH(dx), x))
    cross = matmul(mH(tx), dx)
    cross = add(cross, mH(cross))
    nb1 = add(subtract(subtract(subtract(tb1, matmul(dx, lam_dot)), matmul(tx, d_lam)), matmul(x, cross)),
              matmul(ta, dy))
    nb2 = add(subtract(subtract(subtract(tb2, matmul(dy, lam_dot)), matmul(ty, d_lam)), matmul(y, cross)),
              matmul(mH(ta), dx))
    xdx, ydy = matmul(mH(tx), dx), matmul(mH(ty), dy)
    nc4 = add(subtract(tc4, _herm(xdx)), _herm(ydy))
    nc5 = subtract(tc5, _skew(add(xdx, ydy)))
    return outs, bind(balanced_solve_p, x, y, a, nb1, nb2, nc4, nc5, basis=basis)


def solve(x: Any, y: Any, a: Any, b1: Any, b2: Any, c4: Any, c5: Any, basis: tuple) -> tuple[Any, Any]:
    """(dX, dY) solving E1..E5 of the module docstring at the factors X, Y of A (``basis`` = the raw
    thin SVD (U, s, Vh) of A and the kept mask); every argument may be a dual value."""
    return bind(balanced_solve_p, x, y, a, b1, b2, c4, c5, basis=basis)
