"""lu_factor and lu: LU factorisation with partial pivoting, P A = L U (SciPy semantics).

Derivation (de Hoog, Anderssen & Lukas, "Differentiation of matrix functionals using triangular
factorization", Math. Comp. 80, 2011). The pivots are piecewise constant, so P is fixed and
P dA = dL U + L dU. Square A: with X = L^-1 P dA U^-1 = L^-1 dL + dU U^-1, the first term is strictly
lower (L unit lower) and the second upper, hence dL = L tril(X, -1), dU = triu(X) U.
Since triu(X) U = W - tril(X, -1) U with W = L^-1 P dA, dU = triu(W - tril(X, -1) U): the last
pivot is never divided by, so a zero last pivot (e.g. a square matrix of rank n-1 whose leading
minors are nonzero) keeps a finite, exact tangent.
Rectangular, k = min(m, n), L1 and U1 the leading k x k blocks, W = L1^-1 (P dA)_(first k rows):
Wide m < n: L m x m, U = [U1 U2]; dA = dL U + L dU column block by block gives, with
X = W_1 U1^-1, dL = L tril(X, -1) and dU = triu(W - tril(X, -1) U) (dU2 = W_2 - tril(X, -1) U2).
Tall m > n: L = [L1; L2], U n x n; the top block is the square case, and the bottom block
(P dA)_2 = dL2 U + L2 dU gives dL2 = ((P dA)_2 - L2 dU) U^-1.
Only triangular solves and triangular products are used (unit-diagonal ones read the strict lower
triangle of the packed factor); the packed output lu = L - I + U has tangent dL + dU.
Cost (square n): two triangular solves (W, X) and two triangular products (tril(X, -1) U and
L tril(X, -1), :func:`triangular_product`, trmm on NumPy for n >= 32), n^3 flops each: 2 GEMMs.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Zero, strip
from ..namespace._batching import leading
from ..namespace import add, astype, broadcast_to, concat, diagonal, equal, matmul, matrix_transpose, subtract, \
    reshape, take, take_along_axis, tril, triu, where
from ..namespace._rules import nondifferentiable, xp_of
from ._clusters import take_degenerate_path
from ._matrix import as_inexact, backend_of_matrix, require_matrix
from .triangular import solve_triangular
from .lu_tangent import lu_tangent
from .triangular_product import triangular_product


def _impl(a: Any) -> tuple[Any, Any]:
    return tuple(backend_of_matrix(a).lu_factor(a))


lu_factor_p = Primitive("lu_factor", _impl, multiple_results=True)
lu_factor_p.def_batch(leading(lu_factor_p))


_pivots_p = nondifferentiable("lu_pivots_to_permutation",
                              lambda piv, *, m: backend_of_matrix(piv).lu_pivots_to_permutation(piv, m),
                              batch=lambda prim: leading(prim, (1,)))


def pivots_to_permutation(piv: Any, m: int) -> Any:
    """The (int32) row permutation perm with P A = A[..., perm, :] from getrf's pivots (raw for a
    raw or dual ``piv``)."""
    return _pivots_p(strip(piv), m=m)


def permute_rows(x: Any, perm: Any) -> Any:
    """x[..., perm, :] (differentiable in x; ``perm``'s batch dimensions broadcast against x's)."""
    xp = xp_of(perm)
    if perm.ndim == 1:  # one permutation for the whole batch: a plain gather of rows
        return take(x, perm, axis=-2)
    rows, cols = x.shape[-2:]
    if tuple(x.shape[:-2]) == tuple(perm.shape[:-1]) and x.size:  # one gather of rows of the stacked matrices
        count = x.size // (rows * cols)
        offsets = xp.reshape(xp.arange(count, dtype=perm.dtype) * rows, (*perm.shape[:-1], 1))
        flat = take(reshape(x, (count * rows, cols)), xp.reshape(perm + offsets, (count * rows,)), axis=0)
        return reshape(flat, x.shape)
    batch = broadcast_shapes(tuple(x.shape[:-2]), tuple(perm.shape[:-1]))
    index = xp.broadcast_to(xp.reshape(perm, (*perm.shape, 1)), (*batch, rows, cols))
    if tuple(x.shape[:-2]) != batch:
        x = broadcast_to(x, (*batch, rows, cols))
    return take_along_axis(x, index, axis=-2)


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes; ValueError when they do not broadcast."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        sizes = {s[axis - ndim + len(s)] for s in shapes if axis - ndim + len(s) >= 0} - {1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def right_solve_upper(u: Any, b: Any) -> Any:
    """b U^-1 for the upper triangle U of ``u`` (a transposed triangular solve, no inverse)."""
    return matrix_transpose(solve_triangular(u, matrix_transpose(b), lower=False, trans=1))


def lu_solve(lu: Any, perm: Any, b: Any) -> Any:
    """A^-1 b for square A with P A = L U packed in ``lu``; b is (..., n, k); batches broadcast."""
    y = solve_triangular(lu, permute_rows(b, perm), lower=True, unit_diagonal=True)
    return solve_triangular(lu, y, lower=False)


def zero_pivots(packed: Any) -> Any:
    """Raw bool (..., k): where the pivots (diagonal of U) in the packed factor are exactly zero."""
    return strip(diagonal(strip(packed))) == 0


def with_unit_zero_pivots(packed: Any, zero: Any) -> Any:
    """The square packed factor with its exactly-zero pivots replaced by 1 (U' for upper solves)."""
    xp = xp_of(zero)
    k = zero.shape[-1]
    return where(xp.reshape(zero, (*zero.shape[:-1], 1, k)) & xp.eye(k, dtype=xp.bool), 1.0, packed)


@lu_factor_p.def_jvp
def _jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    lu, piv = bind(lu_factor_p, a)
    m, n = a.shape[-2:]
    k = min(m, n)
    if k == 0:  # an empty factor has an empty tangent
        return (lu, piv), (Zero.like(lu), Zero.like(piv))
    perm = pivots_to_permutation(piv, m)
    top, u = lu[..., :k, :k], lu[..., :k, :]
    # Upper solves use U1' (zero pivots set to 1): exact before the first zero pivot z. Entries whose
    # derivative does not exist (L below z in columns >= z, U in rows > z) are set to NaN at the end.
    # Intermediates are dropped as soon as they are used (peak memory: the bench's tracemalloc row).
    zero = zero_pivots(top)
    singular = take_degenerate_path(top, zero)  # host backends skip the masks for nonsingular U1
    top_solvable = with_unit_zero_pivots(top, zero) if singular else top
    if m == n:
        return (lu, piv), (_undefined_as_nan(lu_tangent(top_solvable, perm, da), zero, singular), Zero.like(piv))
    pda = permute_rows(da, perm)
    w = solve_triangular(top, pda[..., :k, :], lower=True, unit_diagonal=True)  # L1^-1 (P dA)_1, k x n
    pda_rest = pda[..., k:, :] if m > n else None
    del pda
    x_lower = tril(right_solve_upper(top_solvable, w[..., :, :k]), k=-1)  # strict lower part of W U1^-1
    # dU = triu(W - tril(X, -1) U) = triu(X) U, without dividing by the last pivot; the products with
    # the triangular factors are trmm-like (n^3 flops, not a 2 n^3 matmul of a masked triangle).
    xu = triangular_product(top, x_lower, left=False, lower=False)  # tril(X, -1) U1
    if n > m:
        xu = concat([xu, matmul(x_lower, u[..., :, k:])], axis=-1)
    du = subtract(w, xu)
    del w, xu
    du = triu(du)
    dlu = triangular_product(top, x_lower, lower=True, unit_diagonal=True)  # L1 tril(X, -1)
    del x_lower
    dlu = add(dlu, du[..., :, :k])
    if n > m:
        dlu = concat([dlu, du[..., :, k:]], axis=-1)
    if m > n:  # dL2 = ((P dA)_2 - L2 dU) U^-1
        l2du = triangular_product(du, lu[..., k:, :], left=False, lower=False)
        dl2 = right_solve_upper(top_solvable, subtract(pda_rest, l2du))
        del l2du, pda_rest
        dlu = concat([dlu, dl2], axis=-2)
    del du
    return (lu, piv), (_undefined_as_nan(dlu, zero, singular), Zero.like(piv))


def _undefined_as_nan(dlu: Any, zero: Any, singular: bool) -> Any:
    """``dlu`` with NaN where the derivative does not exist, after the first zero pivot."""
    if not singular:
        return dlu
    m, n = dlu.shape[-2:]
    k = zero.shape[-1]
    xp = xp_of(zero)
    z = xp.min(xp.where(zero, xp.arange(k), k), axis=-1)  # first zero pivot; k where there is none
    z = xp.reshape(z, (*z.shape, 1, 1))
    i = xp.reshape(xp.arange(m), (m, 1))
    j = xp.reshape(xp.arange(n), (1, n))
    # Undefined: below the diagonal in columns j >= z, on/above it in rows i > z (boolean arrays only).
    return where(xp.where(i > j, j >= z, i > z), xp.nan, dlu)



def lu_factor(a: Any, /) -> tuple[Any, Any]:
    """LU factorisation with partial pivoting, as ``scipy.linalg.lu_factor``: ``(lu, piv)``.

    ``a`` is (..., m, n), any m and n; leading dimensions are batch dimensions. ``lu`` (..., m, n)
    packs the unit lower factor L (strictly below the diagonal) and the upper factor U; ``piv``
    (..., min(m, n)) holds 0-based int32 pivots (row i was interchanged with row piv[i]); its tangent
    is ``Zero``. Integer input is promoted to float64, as SciPy does.

    Derivative: the pivots are held fixed (they are piecewise constant). At a singular matrix the
    factorisation still succeeds (SciPy warns; U has a zero pivot) but the derivative of L and U
    does not exist there in general: the tangent contains Inf/NaN where it divides by the zero pivot
    (columns of dL from it on, rows of dU after it). The one exception is handled exactly: a zero
    *last* pivot of a square or wide matrix (rank min(m, n) - 1 with nonzero leading pivots), where
    the derivative exists and the tangent is finite. NaN/Inf input gives NaN output, no error.
    """
    require_matrix("lu_factor", a)
    lu_, piv = lu_factor_p(as_inexact(a))
    return lu_, piv


def lu(a: Any, /) -> tuple[Any, Any, Any]:
    """LU factorisation ``(p, l, u)`` with a = p @ l @ u, as ``scipy.linalg.lu`` (permute_l=False).

    For (..., m, n) input with k = min(m, n): p is the (..., m, m) permutation matrix (a constant,
    dtype of the factors), l is (..., m, k) unit lower trapezoidal and u is (..., k, n) upper
    trapezoidal. Built from :func:`lu_factor`, so the same derivative conventions hold (fixed pivots;
    Inf/NaN tangents only where a zero pivot makes the derivative not exist).
    """
    require_matrix("lu", a)
    packed, piv = lu_factor(a)
    m, n = a.shape[-2:]
    k = min(m, n)
    xp = xp_of(packed)
    perm = pivots_to_permutation(piv, m)
    # p[j, i] = 1 where j == perm[i]: (p^T A)[i] = A[perm[i]] = (L U)[i].
    rows = xp.reshape(xp.arange(m, dtype=perm.dtype), (m, 1))
    real_dtype = xp.real(xp.zeros((), dtype=packed.dtype)).dtype  # SciPy's p is real, also for complex input
    p = astype(equal(rows, reshape(perm, (*perm.shape[:-1], 1, m))), real_dtype)
    l_ = add(tril(packed[..., :, :k], k=-1), xp.eye(m, k, dtype=packed.dtype))
    u = triu(packed[..., :k, :])
    return p, l_, u


__all__ = ["lu", "lu_factor"]
