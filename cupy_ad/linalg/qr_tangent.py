"""qr_tangent: the tangents (dQ, dR) of a QR factor pair with m >= n (Q m x n, R n x n), as one primitive.

Derivation (in qr.py's docstring; Walter & Lehmann 2018): from dA = dQ R + Q dR with Q^H dQ
skew-Hermitian and dR R^-1 upper triangular with a real diagonal,
    X = dA R^-1,   C = Q^H X,   U = triu(C + C^H, 1) + Re diag(C),   dR = U R,   dQ = X - Q U.
The composition forms X with one triangular solve (R guarded: an exactly zero R_ii becomes NaN, so
the tangents are NaN there instead of an error), C with a matmul and both products with U through
triangular products that read U's upper triangle only.

Why a primitive: (dQ, dR) is linear in dA, and for small matrices the whole map fits one compiled pass
per matrix where the composition is six calls, each a pass over the whole batch (NumPy with Numba:
``numpy_compiled._qr_tangent``, about 2 m n^2 + n^3 / 2 multiply-adds read in order). Elsewhere
(other backends, larger or tall matrices, no Numba) the primitive runs the composition. Many directions sharing one
factor pair (a Jacobian) stay the composition under ``vmap``, whose solves fold the directions into
one right-hand side. Where Q and R vary too (second derivatives) the JVP differentiates the
composition. Wide matrices and complete mode with m > n compose the same helpers in qr.py.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..namespace import add, diagonal, matmul, matrix_transpose, multiply, subtract, where
from ..namespace._batching import leading
from ..namespace.manipulation import to_front
from ..namespace._rules import xp_of
from ..values import strip
from ._clusters import take_degenerate_path
from ._matrix import backend_of_matrix, linear_in_last_operand, mH
from .triangular import solve_triangular_p
from .triangular_product import triangular_product


def guarded(r: Any) -> Any:
    """``r`` with exact zeros on its diagonal replaced by NaN, so that the triangular solves of the
    rule give NaN tangents where R is singular instead of raising (CuPy: always, branch-free, no host
    synchronisation; host backends skip the pass when no diagonal entry is zero)."""
    raw = strip(r)
    xp = xp_of(raw)
    zero = diagonal(raw) == 0
    if not take_degenerate_path(raw, zero):
        return r
    bad = xp.logical_and(xp.expand_dims(zero, axis=-1), xp.eye(raw.shape[-1], dtype=xp.bool))
    return where(bad, xp.asarray(float("nan"), dtype=raw.dtype), r)


def right_solve(b: Any, r: Any) -> Any:
    """b R^-1 for upper triangular R (one triangular solve, no inverse): R^T X^T = b^T."""
    xt = bind(solve_triangular_p, r, matrix_transpose(b), lower=False, trans=1, unit_diagonal=False)
    return matrix_transpose(xt)


def upper_source(c: Any) -> Any:
    """S = (C + C^H) o (1 - I/2), whose upper triangle is U = C - Omega = triu(C + C^H, 1) + Re diag(C)
    (see the derivation); U multiplies through :func:`triangular_product`, which reads only that
    triangle (trmm: n^3 flops where a matmul of the masked U does 2 n^3)."""
    xp = xp_of(strip(c))
    n = c.shape[-1]
    half_diagonal = xp.ones((n, n), dtype=c.dtype) - 0.5 * xp.eye(n, dtype=c.dtype)
    return multiply(add(c, mH(c)), half_diagonal)


def times_upper(s: Any, b: Any) -> Any:
    """U b for U = triu(s)."""
    return triangular_product(s, b, left=True, lower=False)


def minus_q_upper(x: Any, q: Any, source: Any) -> Any:
    """X - Q U for U = triu(S)."""
    return subtract(x, triangular_product(source, q, left=False, lower=False))


def square_factor_tangents(q: Any, r: Any, dx: Any) -> tuple[Any, Any, Any]:
    """(X, S, C) for the m >= n factor: X = dx R^-1, C = Q^H X, S = upper_source(C)."""
    x = right_solve(dx, guarded(r))
    c = matmul(mH(q), x)
    return x, upper_source(c), c


def _composition(q: Any, r: Any, da: Any) -> tuple[Any, Any]:
    x, source, _ = square_factor_tangents(q, r, da)
    return minus_q_upper(x, q, source), times_upper(source, r)


def _impl(q: Any, r: Any, da: Any) -> tuple[Any, Any]:
    kernel = getattr(backend_of_matrix(q), "qr_tangent", None)
    out = None if kernel is None else kernel(q, r, da)
    return _composition(q, r, da) if out is None else tuple(out)


qr_tangent_p = Primitive("qr_tangent", _impl, multiple_results=True)
_leading = leading(qr_tangent_p, (2, 2, 2))


@qr_tangent_p.def_batch
def _batch(values: list, axes: list) -> tuple[Any, tuple]:
    (q, r, da), (q_axis, r_axis, da_axis) = values, axes
    if q_axis is None and r_axis is None and da_axis is not None:  # one factor pair, many directions: folded solves
        from ..transforms.vmap import vmap  # (transforms sit above the rules)

        return vmap(lambda d: _composition(q, r, d))(to_front(da, da_axis)), (0, 0)
    return _leading(values, axes)


qr_tangent_p.def_jvp(linear_in_last_operand(qr_tangent_p, _composition))


def qr_tangent(q: Any, r: Any, da: Any) -> tuple[Any, Any]:
    """(dQ, dR) of the QR factors Q (..., m, n), R (..., n, n) of a matrix with m >= n along its tangent
    ``da`` (..., m, n)."""
    return qr_tangent_p(q, r, da)


__all__: list[str] = []
