"""lu_tangent: the tangent of the packed LU factor of a square matrix, as one primitive.

Derivation (see lu.py; de Hoog, Anderssen & Lukas, Math. Comp. 80, 2011): with P A = L U packed in
F, W = L^-1 P dA and X = W U^-1, the tangent of the packed factor is
dL + dU = L tril(X, -1) + triu(W - tril(X, -1) U). It is linear in dA: the primitive's JVP applies
it to the tangent of dA; where F itself varies (second derivatives) it differentiates the
composition of solves and products below. Only U's diagonal is divided by (in X), so the caller
passes F with its zero pivots replaced by 1 (exact before the first zero pivot); the products never
read U's diagonal on the entries kept.

Why a primitive: its implementation is the backend's ``lu_tangent`` kernel where there is one
(NumPy: one buffer; one direction by blocks, 4 n^3 / 3 flops mostly in gemms; many directions
2 n^3 each; see ``backends/numpy_lu_tangent.py``; for a batch of small factors ``lu_tangent_batch``,
2 n^3 flops compiled one matrix at a time), and its batching rule
hands many directions sharing one factor (a Jacobian: every direction of ``jacfwd``) to that
kernel at once, laid out with the directions last. Elsewhere (other backends, a batch of larger
factors, no Numba) it is the composition of triangular solves and products.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive
from ..values import Batched, Dual, Recorded
from ..namespace import add, subtract, tril, triu
from ..namespace._batching import leading
from ._matrix import backend_of_matrix, linear_in_last_operand
from .triangular import solve_triangular
from .triangular_product import triangular_product


def _composition(f: Any, perm: Any, da: Any) -> Any:
    from .lu import permute_rows, right_solve_upper  # (lu.py uses this primitive)

    w = solve_triangular(f, permute_rows(da, perm), lower=True, unit_diagonal=True)  # L^-1 P dA
    x_lower = tril(right_solve_upper(f, w), k=-1)
    # triu(X) U = W - tril(X, -1) U on the upper part, without dividing by the last pivot; the products
    # with the triangular factors are trmm-like (n^3 flops, not a 2 n^3 matmul of a masked triangle).
    du = triu(subtract(w, triangular_product(f, x_lower, left=False, lower=False)))
    return add(triangular_product(f, x_lower, lower=True, unit_diagonal=True), du)


def _kernel(f: Any) -> Any:
    """The backend's kernel for one shared factor, or None (then the composition runs)."""
    return getattr(backend_of_matrix(f), "lu_tangent", None) if f.ndim == 2 else None


def _impl(f: Any, perm: Any, da: Any) -> Any:
    if f.ndim > 2:  # a batch of factors: the backend's batched kernel where it has one for them
        batched = getattr(backend_of_matrix(f), "lu_tangent_batch", None)
        out = None if batched is None else batched(f, perm, da)
        return _composition(f, perm, da) if out is None else out
    kernel = _kernel(f)
    return _composition(f, perm, da) if kernel is None or da.ndim != 2 else kernel(f, perm, da)


lu_tangent_p = Primitive("lu_tangent", _impl)
_leading = leading(lu_tangent_p, (2, 1, 2))


@lu_tangent_p.def_batch
def _batch(values: list, axes: list) -> tuple[Any, int]:
    (f, perm, da), (f_axis, perm_axis, da_axis) = values, axes
    kernel = _kernel(f)
    if (f_axis is None and perm_axis is None and da_axis is not None and da.ndim == 3 and kernel is not None
            and not any(type(v) in (Dual, Batched, Recorded) for v in values)):  # (inside a nested transform: not)
        return kernel(f, perm, da, axis=da_axis), 2  # every direction at once, the directions last
    return _leading(values, axes)


lu_tangent_p.def_jvp(linear_in_last_operand(lu_tangent_p, _composition))


def lu_tangent(f: Any, perm: Any, da: Any) -> Any:
    """dL + dU for the square packed factor ``f`` (zero pivots set to 1), the row permutation ``perm``
    (P A = A[..., perm, :]) and the tangent ``da`` of A."""
    return lu_tangent_p(f, perm, da)


__all__: list[str] = []
