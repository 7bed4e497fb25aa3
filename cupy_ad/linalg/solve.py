"""solve and inv (array API semantics), from one LU factorisation.

Derivation (standard; e.g. Giles, "An extended collection of matrix derivative results for
forward and reverse mode AD", 2008): differentiating A X = B gives dA X + A dX = dB, so
dX = A^-1 (dB - dA X), and for X = A^-1 (B = I): dX = -X dA X.
solve's rule factorises A once (P A = L U) and uses the factors for the primal X and for dX
(two triangular solves each); inv's rule needs only two products with the primal X.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Dual, Zero
from ..namespace._batching import leading
from ..namespace import astype, broadcast_to, matmul, negative, squeeze, subtract
from ..namespace._rules import xp_of
from ._matrix import as_inexact, require_square
from .lu import broadcast_shapes, lu_factor_p, lu_solve, pivots_to_permutation


def factor(a: Any) -> tuple[Any, Any]:
    """(lu, perm) of square ``a`` with P A = A[..., perm, :] = L U; lu is a dual when ``a`` is one."""
    packed, piv = lu_factor_p(a)
    return packed, pivots_to_permutation(piv, a.shape[-1])


def _solve_impl(a: Any, b: Any) -> Any:
    packed, perm = factor(a)
    return lu_solve(packed, perm, b)


solve_p = Primitive("solve", _solve_impl)
solve_p.def_batch(leading(solve_p, (2, 2)))


@solve_p.def_jvp
def _solve_jvp(primals: list, tangents: list):
    (a, b), (da, db) = primals, tangents
    if type(a) is Dual or type(b) is Dual:  # nested: each level's own rule, via bind
        x = bind(solve_p, a, b)
        solve_rhs = lambda rhs: bind(solve_p, a, rhs)  # noqa: E731
    else:  # one factorisation for the primal and the tangent
        packed, perm = factor(a)
        x = lu_solve(packed, perm, b)
        solve_rhs = lambda rhs: lu_solve(packed, perm, rhs)  # noqa: E731
    if type(da) is Zero:
        rhs = db
    else:
        product = matmul(da, x)
        rhs = negative(product) if type(db) is Zero else subtract(db, product)
    dx = solve_rhs(rhs)
    if tuple(dx.shape) != tuple(x.shape):
        dx = broadcast_to(dx, x.shape)
    return x, dx


def _inv_impl(a: Any) -> Any:
    xp = xp_of(a)
    n = a.shape[-1]
    return _solve_impl(a, xp.eye(n, dtype=a.dtype))


inv_p = Primitive("inv", _inv_impl)
inv_p.def_batch(leading(inv_p))


@inv_p.def_jvp
def _inv_jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    x = bind(inv_p, a)
    return x, negative(matmul(x, matmul(da, x)))



def solve(x1: Any, x2: Any, /) -> Any:
    """Solve A X = B for square A (``x1``, (..., M, M)), as the array API's ``linalg.solve``.

    ``x2`` is a vector (M,) when it is 1-D (the result is (..., M)), else a stack of matrices
    (..., M, K) whose batch dimensions broadcast against ``x1``'s. Integer input is promoted to
    float64 (as NumPy does), mixed precisions to their common type. The primal uses one LU
    factorisation with partial pivoting (getrf + two triangular solves, what LAPACK's gesv does);
    the JVP reuses it: dX = A^-1 (dB - dA X). An exactly singular A (zero pivot), where neither the
    solution nor its derivative exists, raises the backend triangular solver's error on NumPy and on
    the DLPack path (LinAlgError, as ``numpy.linalg.solve`` does); a backend that avoids host
    synchronisation returns Inf/NaN instead. NaN/Inf input gives NaN output.
    """
    require_square("solve", x1)
    a, b = as_inexact(x1), as_inexact(x2)
    xp = xp_of(a)
    dtype = xp.result_type(a.dtype, b.dtype)
    a = a if a.dtype == dtype else astype(a, dtype)
    b = b if b.dtype == dtype else astype(b, dtype)
    n = a.shape[-1]
    vector = b.ndim == 1
    if b.ndim == 0 or b.shape[0 if vector else -2] != n:
        raise ValueError(f"solve: x2 of shape {tuple(b.shape)} does not match x1 of shape {tuple(a.shape)}")
    if vector:
        b = b[:, None]
    try:
        broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    except ValueError:
        raise ValueError(f"solve: batch dimensions of x1 {tuple(a.shape)} and x2 {tuple(x2.shape)} "
                         "do not broadcast") from None
    x = solve_p(a, b)
    return squeeze(x, axis=-1) if vector else x


def inv(x: Any, /) -> Any:
    """The inverse of square matrices (..., n, n), as the array API's ``linalg.inv``.

    Computed as solve(A, I) from one LU factorisation; dX = -X dA X. Integer input is promoted to
    float64. An exactly singular matrix behaves as in :func:`solve` (LinAlgError on NumPy, Inf/NaN
    on a backend that avoids host synchronisation). NaN/Inf input gives NaN output.
    """
    require_square("inv", x)
    return inv_p(as_inexact(x))


__all__ = ["inv", "solve"]
