"""det and slogdet (array API semantics), from one LU factorisation P A = L U.

Derivations.
slogdet (Jacobi's formula): d log det A = tr(A^-1 dA), so d logabsdet = Re tr(A^-1 dA) and, with
sign = det/|det|, d sign = sign * i Im tr(A^-1 dA) (zero for real A). tr(A^-1 dA) comes from the
LU factors (two triangular solves).
det: d det A = tr(adj(A) dA), which exists everywhere (det is a polynomial), also at singular A.
With the pivots fixed, det(A + dA) = det(P) det(U + E), E = L^-1 P dA, so
d det = det(P) tr(adj(U) E) for the upper triangular U. Let Z be the positions of exactly-zero
pivots, U' = U with those pivots set to 1, V = U'^-1 and c = prod of the nonzero pivots (= det U'). Expanding
(U^-1)_ij as a sum over increasing index paths i -> j (each path contributes the product of its
off-diagonal entries over the product of its diagonal entries) and multiplying by det U cancels
every division: adj(U)_ij = sum over paths through all of Z of (-1)^len prod(edges) prod(pivots
off the path). Splitting the paths at the (unit) zero pivots z1 < ... < zr of U' gives
  Z empty:  adj(U) = c V (the usual det(U) U^-1),
  r >= 1:   adj(U) = c g V[:, z1] V[zr, :],  g = prod_s V[z_s, z_(s+1)],
a rank-one matrix that is zero when rank(A) <= n - 2 (then g = 0). Nothing divides by a zero
pivot, so the tangent is finite at every finite A whose LU has exact zero pivots; tiny nonzero
pivots use the first formula, where c is tiny and V large, and the product stays finite.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Dual, Zero, strip
from ..namespace._batching import leading
from ..namespace import abs, astype, diagonal, imag, log, matmul, matrix_transpose, multiply, prod, real, reshape, \
    sign, sum, take_along_axis, trace, where
from ..namespace._rules import is_complex_dtype, xp_of
from ._matrix import as_inexact, require_square
from ._results import SlogdetResult
from .lu import lu_factor_p, lu_solve, permute_rows, pivots_to_permutation, with_unit_zero_pivots, zero_pivots
from .triangular import solve_triangular


def _parity(piv: Any, dtype: Any) -> Any:
    """det(P) = (-1)^(number of row interchanges), a raw array of the real dtype of ``dtype``."""
    piv = strip(piv)
    xp = xp_of(piv)
    swaps = xp.sum(xp.astype(piv != xp.arange(piv.shape[-1], dtype=piv.dtype), xp.int32), axis=-1)
    return xp.astype(1 - 2 * (swaps % 2), xp.finfo(dtype).dtype)


def _det_from_lu(packed: Any, piv: Any) -> Any:
    return multiply(prod(diagonal(packed), axis=-1), _parity(piv, packed.dtype))


def _slogdet_from_lu(packed: Any, piv: Any) -> tuple[Any, Any]:
    d = diagonal(packed)
    size = abs(d)
    xp = xp_of(packed)
    zero = strip(size) == 0
    logabs = sum(log(where(zero, 1.0, size)), axis=-1)
    logabs = where(xp.any(zero, axis=-1), -xp.inf, logabs)
    return multiply(prod(sign(d), axis=-1), _parity(piv, packed.dtype)), logabs


def _det_impl(a: Any) -> Any:
    return _det_from_lu(*lu_factor_p(a))


def _slogdet_impl(a: Any) -> tuple[Any, Any]:
    return _slogdet_from_lu(*lu_factor_p(a))


det_p = Primitive("det", _det_impl)
slogdet_p = Primitive("slogdet", _slogdet_impl, multiple_results=True)
det_p.def_batch(leading(det_p))
slogdet_p.def_batch(leading(slogdet_p))


def _batched(x: Any, shape: tuple[int, ...]) -> Any:
    """A raw index array reshaped to ``x``'s batch + ``shape`` (broadcast later)."""
    return xp_of(x).reshape(x, (*x.shape[:-1], *shape))


def _adjugate_trace(packed: Any, piv: Any, da: Any) -> Any:
    """tr(adj(A) dA) from P A = L U, finite at exactly-zero pivots (derivation in the module doc)."""
    xp = xp_of(packed)
    n = packed.shape[-1]
    batch = tuple(packed.shape[:-2])
    e = solve_triangular(packed, permute_rows(da, pivots_to_permutation(piv, n)), lower=True, unit_diagonal=True)
    zero = zero_pivots(packed)
    c = prod(where(zero, 1.0, diagonal(packed)), axis=-1)
    v = solve_triangular(with_unit_zero_pivots(packed, zero), xp.eye(n, dtype=packed.dtype), lower=False)  # U'^-1
    regular = sum(multiply(v, matrix_transpose(e)), axis=(-2, -1))  # tr(U^-1 E) when Z is empty
    # Rank-one branch: c g V[:, z1] V[zr, :].
    index = xp.arange(n)
    zpos = xp.sort(xp.where(zero, index, n), axis=-1)  # zero positions ascending, then n
    first = xp.minimum(zpos[..., :1], n - 1)
    last = xp.maximum(xp.max(xp.where(zero, index, -1), axis=-1, keepdims=True), 0)
    column = take_along_axis(v, xp.broadcast_to(_batched(first, (1, 1)), (*batch, n, 1)), axis=-1)
    row = take_along_axis(v, xp.broadcast_to(_batched(last, (1, 1)), (*batch, 1, n)), axis=-2)
    rank_one = matmul(matmul(row, e), column)[..., 0, 0]
    start, stop = zpos[..., :-1], zpos[..., 1:]
    flat = xp.minimum(start, n - 1) * n + xp.minimum(stop, n - 1)
    links = take_along_axis(reshape(v, (*batch, n * n)), flat, axis=-1)
    g = prod(where(stop < n, links, 1.0), axis=-1)
    return multiply(c, where(xp.any(zero, axis=-1), multiply(g, rank_one), regular))


@det_p.def_jvp
def _det_jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    packed, piv = lu_factor_p(a)
    out = bind(det_p, a) if type(a) is Dual else _det_from_lu(packed, piv)
    if a.shape[-1] == 0:
        return out, Zero.like(out)
    return out, multiply(_adjugate_trace(packed, piv, da), _parity(piv, a.dtype))


@slogdet_p.def_jvp
def _slogdet_jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    packed, piv = lu_factor_p(a)  # one factorisation for the outputs and tr(A^-1 dA)
    # Nested: the outputs' lower-level tangents come from this rule one level down, via bind.
    sgn, logabs = bind(slogdet_p, a) if type(a) is Dual else _slogdet_from_lu(packed, piv)
    zero = zero_pivots(packed)
    solvable = with_unit_zero_pivots(packed, zero)  # finite solves; singular A gets NaN below
    t = trace(lu_solve(solvable, pivots_to_permutation(piv, a.shape[-1]), da))
    singular = xp_of(zero).any(zero, axis=-1)
    if not is_complex_dtype(a):
        return (sgn, logabs), (Zero.like(sgn), where(singular, xp_of(zero).nan, t))
    dsign = multiply(sgn, multiply(astype(imag(t), a.dtype), 1j))
    return (sgn, logabs), (where(singular, xp_of(zero).nan, dsign), where(singular, xp_of(zero).nan, real(t)))



def det(x: Any, /) -> Any:
    """The determinant of square matrices (..., n, n), as the array API's ``linalg.det``.

    Computed from one LU factorisation: det = det(P) prod(diag U) (1 for 0 x 0). Integer input is
    promoted to float64. The tangent tr(adj(A) dA) is exact and finite also at singular A: the
    adjugate is formed from the LU factors without dividing by a zero pivot (rank n-1: a rank-one
    adjugate; rank <= n-2: zero), see the module docstring. NaN/Inf input gives NaN output.
    """
    require_square("det", x)
    return det_p(as_inexact(x))


def slogdet(x: Any, /) -> SlogdetResult:
    """``SlogdetResult(sign, logabsdet)`` of square matrices, as the array API's ``linalg.slogdet``.

    det = sign * exp(logabsdet); sign is real (+-1) for real input and on the unit circle for complex
    input; at a singular matrix sign = 0 and logabsdet = -inf. Tangents: d logabsdet =
    Re tr(A^-1 dA), d sign = sign * i Im tr(A^-1 dA) (zero for real input). At a singular matrix the
    derivative does not exist (exactly-zero pivot in the LU): the logabsdet tangent is NaN, and so is
    the sign tangent for complex input (for real input the sign is piecewise constant: tangent 0).
    Integer input is promoted to float64; NaN/Inf input gives NaN output.
    """
    require_square("slogdet", x)
    return SlogdetResult(*slogdet_p(as_inexact(x)))


__all__ = ["det", "slogdet"]
