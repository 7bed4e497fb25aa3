"""cholesky_tangent: the tangent of a Cholesky factor, as one primitive.

Derivation (Murray, "Differentiation of the Cholesky decomposition", 2016, sec. 3): from
dA = dL L^H + L dL^H, S = L^-1 dA L^-H = L^-1 dL + (L^-1 dL)^H, and L^-1 dL is lower triangular
with a real diagonal, so L^-1 dL = Phi(S), Phi = lower triangle with the diagonal halved:
dL = L Phi(L^-1 dA L^-H). The upper factor U = L^H has dU = Phi(S)^H U with S = U^-H dA U^-1.
dA is the perturbation of the matrix the routine actually reads: the chosen triangle mirrored to a
Hermitian matrix, with the real part of the diagonal (LAPACK's potrf ignores its imaginary part).
The composition forms S with two triangular solves, never an inverse, and dL = L Phi(S) with one
triangular product (trmm on NumPy for n >= 32): 7 n^3 / 3 flops (each solve n^3, the product
n^3 / 3). For real input the mirrored dA and Phi(S) are single elementwise passes (a selection and
a product with constant weights).

Why a primitive: dL is linear in dA, and for small matrices its whole computation fits one compiled
pass per matrix where the composition is six calls (NumPy with Numba: ``numpy_compiled``, one
matrix or a batch of them, the same ~7 n^3 / 6 multiply-adds read in order). Elsewhere (other
backends, larger matrices, no Numba) the primitive runs the composition. Many directions sharing
one factor (a Jacobian) stay the composition under ``vmap``, whose solves fold the directions
into the columns of one right-hand side. Where the factor itself varies (second derivatives) the
JVP differentiates the composition.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive
from ..namespace import add, astype, diagonal, matrix_transpose, multiply, real, tril, triu, where
from ..namespace._batching import leading
from ..namespace.manipulation import to_front
from ..namespace._rules import is_complex_dtype, xp_of
from ._matrix import backend_of_matrix, diag_embed, linear_in_last_operand, mH
from .triangular import solve_triangular
from .triangular_product import triangular_product


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


def _composition(factor: Any, da: Any, upper: bool) -> Any:
    real_input = not is_complex_dtype(factor) and not is_complex_dtype(da)
    if real_input:  # the triangle read, mirrored: one selection (no masks, sums and diagonal matrices)
        i, j = _index_grids(factor)
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
        xp = xp_of(factor)
        weights = xp.astype(i > j, factor.dtype) + xp.astype(i == j, factor.dtype) * 0.5
        phi = multiply(s, weights)
    else:
        phi = add(tril(s, k=-1), multiply(_real_diagonal(s), 0.5))
    del s
    if upper:  # dU = Phi^H U, L dL = L Phi: trmm-like products with the factor
        return triangular_product(factor, mH(phi), left=False, lower=False)
    return triangular_product(factor, phi, lower=True)


def _impl(factor: Any, da: Any, *, upper: bool) -> Any:
    kernel = getattr(backend_of_matrix(factor), "cholesky_tangent", None)
    out = None if kernel is None else kernel(factor, da, upper=upper)
    return _composition(factor, da, upper) if out is None else out


cholesky_tangent_p = Primitive("cholesky_tangent", _impl)
_leading = leading(cholesky_tangent_p, (2, 2))


@cholesky_tangent_p.def_batch
def _batch(values: list, axes: list, *, upper: bool) -> tuple[Any, int]:
    (factor, da), (factor_axis, da_axis) = values, axes
    if factor_axis is None and da_axis is not None:  # one factor, many directions: solves with folded columns
        from ..transforms.vmap import vmap  # (transforms sit above the rules)

        return vmap(lambda d: _composition(factor, d, upper))(to_front(da, da_axis)), 0
    return _leading(values, axes, upper=upper)


cholesky_tangent_p.def_jvp(linear_in_last_operand(cholesky_tangent_p, _composition))


def cholesky_tangent(factor: Any, da: Any, upper: bool) -> Any:
    """The tangent of the Cholesky factor ``factor`` (lower, or upper with ``upper``) of a Hermitian
    matrix whose lower (upper) triangle is read, for the tangent ``da`` of that matrix."""
    return cholesky_tangent_p(factor, da, upper=upper)


__all__: list[str] = []
