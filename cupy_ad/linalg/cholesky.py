"""cholesky: A = L L^H (or U^H U with upper=True), read from one triangle (array API / NumPy).

Derivation (Murray, "Differentiation of the Cholesky decomposition", 2016, sec. 3): from
dA = dL L^H + L dL^H, S = L^-1 dA L^-H = L^-1 dL + (L^-1 dL)^H, and L^-1 dL is lower triangular
with a real diagonal, so L^-1 dL = Phi(S), Phi = lower triangle with the diagonal halved:
dL = L Phi(L^-1 dA L^-H). The upper factor U = L^H has dU = Phi(S)^H U with S = U^-H dA U^-1.
dA is the perturbation of the matrix the routine actually reads: the chosen triangle mirrored to a
Hermitian matrix, with the real part of the diagonal (LAPACK's potrf ignores its imaginary part).
S is formed with two triangular solves, never an inverse, and dL = L Phi(S) with one triangular
product (trmm on NumPy for n >= 32): 3 n^3 flops. For real input the mirrored dA and Phi(S) are
single elementwise passes (a selection and a product with constant weights).
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..namespace._batching import leading
from ..namespace import add, astype, diagonal, matrix_transpose, multiply, real, tril, triu, where
from ..namespace._rules import is_complex_dtype, is_inexact_dtype, xp_of
from ._matrix import backend_of_matrix, diag_embed, mH, require_square
from .triangular import solve_triangular
from .triangular_product import triangular_product


def _impl(a: Any, *, upper: bool) -> Any:
    return backend_of_matrix(a).cholesky(a, upper=upper)


cholesky_p = Primitive("cholesky", _impl)
cholesky_p.def_batch(leading(cholesky_p))


def _real_diagonal(x: Any) -> Any:
    """diag(Re diag(x)) as a matrix of x's dtype."""
    d = diagonal(x)
    if is_complex_dtype(x):
        d = astype(real(d), x.dtype)
    return diag_embed(d)


def _hermitian_from_triangle(da: Any, upper: bool) -> Any:
    """The Hermitian matrix the routine reads from one triangle of ``da``."""
    off = triu(da, k=1) if upper else tril(da, k=-1)
    return add(add(off, mH(off)), _real_diagonal(da))


def _index_grids(x: Any) -> tuple[Any, Any]:
    xp = xp_of(x)
    n = x.shape[-1]
    return xp.reshape(xp.arange(n), (n, 1)), xp.reshape(xp.arange(n), (1, n))


@cholesky_p.def_jvp
def _jvp(primals: list, tangents: list, *, upper: bool):
    (a,), (da,) = primals, tangents
    factor = bind(cholesky_p, a, upper=upper)
    real_input = not is_complex_dtype(a)
    if real_input:  # the triangle read, mirrored: one selection (no masks, sums and diagonal matrices)
        i, j = _index_grids(a)
        sym = where((i <= j) if upper else (i >= j), da, matrix_transpose(da))
    else:
        sym = _hermitian_from_triangle(da, upper)
    # Intermediates are dropped as soon as they are used (peak memory: the bench's tracemalloc row).
    if upper:  # S = U^-H dA U^-1: two solves with U^H (trans=2)
        w = solve_triangular(factor, sym, lower=False, trans=2)
        del sym
        s = solve_triangular(factor, mH(w), lower=False, trans=2)
    else:  # S = L^-1 dA L^-H
        w = solve_triangular(factor, sym, lower=True)
        del sym
        s = solve_triangular(factor, mH(w), lower=True)
    del w
    if real_input:  # Phi(S): strict lower triangle, half the diagonal, as one product with constant weights
        xp = xp_of(a)
        weights = xp.astype(i > j, a.dtype) + xp.astype(i == j, a.dtype) * 0.5
        phi = multiply(s, weights)
    else:
        phi = add(tril(s, k=-1), multiply(_real_diagonal(s), 0.5))
    del s
    if upper:  # dU = Phi^H U, L dL = L Phi: trmm-like products with the factor
        return factor, triangular_product(factor, mH(phi), left=False, lower=False)
    return factor, triangular_product(factor, phi, lower=True)


def cholesky(x: Any, /, *, upper: bool = False) -> Any:
    """The Cholesky factor of Hermitian positive-definite matrices (..., n, n), as the array API.

    Returns L (lower, x = L L^H) or, with ``upper=True``, U (x = U^H U). Only the lower triangle
    (upper for ``upper=True``) of ``x`` is read, as NumPy does, and the imaginary part of the
    diagonal is ignored; the tangent is the derivative along the Hermitian matrix actually read
    (that triangle of dA, mirrored). Integer input is promoted to float64. A matrix that is not
    positive definite raises the backend's error (NumPy: LinAlgError); NaN input gives NaN output.
    The diagonal of the factor is real and positive; its tangent is real.
    """
    require_square("cholesky", x)
    if not is_inexact_dtype(x):
        x = astype(x, xp_of(x).float64)
    return cholesky_p(x, upper=bool(upper))


__all__ = ["cholesky"]
