"""triangular_product: op(T) @ B or B @ op(T) for the triangle T of a square A (BLAS trmm).

Derivation: the product is bilinear in (T, B) and T is a linear (masking) function of A, so
d(op(T) B) = op(dT) B + op(T) dB with dT the same triangle of dA; with a unit diagonal
T = strict(A) + I and dT = strict(dA) (the diagonal of dA is not read). The rule is written with
this primitive itself (on the masked dA with a non-unit diagonal), so nested jvp works.
Used by the LU and Cholesky rules, whose tangents are products with triangular factors: trmm does
n^3 flops where a general matmul of the masked triangle does 2 n^3.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Zero
from ..namespace._batching import solver
from ..namespace.elementwise import add_tangents
from ._matrix import backend_of_matrix, require_square, triangle


def _impl(a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    return backend_of_matrix(a).triangular_product(a, b, left=left, lower=lower, trans=trans,
                                                   unit_diagonal=unit_diagonal)


triangular_product_p = Primitive("triangular_product", _impl)
triangular_product_p.def_batch(solver(triangular_product_p))


@triangular_product_p.def_jvp
def _jvp(primals: list, tangents: list, *, left: bool, lower: bool, trans: int, unit_diagonal: bool):
    (a, b), (da, db) = primals, tangents
    params = dict(left=left, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
    out = bind(triangular_product_p, a, b, **params)
    dout = Zero.like(out)
    if type(da) is not Zero:
        masked = triangle(da, lower, -1) if unit_diagonal else da  # the non-unit product masks dA itself
        dout = bind(triangular_product_p, masked, b, **dict(params, unit_diagonal=False))
    if type(db) is not Zero:
        dout = add_tangents(dout, bind(triangular_product_p, a, db, **params))
    return out, dout


def triangular_product(a: Any, b: Any, /, *, left: bool = True, lower: bool = False, trans: int | str = 0,
                       unit_diagonal: bool = False) -> Any:
    """op(T) @ b (``left=True``) or b @ op(T), T the lower (``lower``) or upper triangle of ``a``.

    ``a`` is (..., n, n); only its triangle is read (not even its diagonal when ``unit_diagonal``,
    which takes the diagonal as ones). ``trans`` is 0/"N", 1/"T" or 2/"C" (op = identity, transpose,
    conjugate transpose), as in :func:`solve_triangular`. ``b`` is (..., n, k) for ``left`` and
    (..., k, n) otherwise; leading dimensions broadcast. Differentiable in both arguments (the
    tangent in ``a`` is restricted to the triangle read). NumPy: BLAS trmm for n >= 32, else one
    matmul of the masked triangle; CuPy: the masked matmul on the device.
    """
    require_square("triangular_product", a)
    trans = {"N": 0, "T": 1, "C": 2}.get(trans, trans) if isinstance(trans, str) else int(trans)
    if trans not in (0, 1, 2):
        raise ValueError(f"trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")
    if b.ndim < 2:
        raise ValueError(f"triangular_product needs matrices b (..., n, k), got shape {tuple(b.shape)}")
    n = a.shape[-1]
    if b.shape[-2 if left else -1] != n:
        raise ValueError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} are incompatible "
                         f"({'left' if left else 'right'} product)")
    if a.dtype != b.dtype:
        raise ValueError(f"triangular_product needs one dtype, got {a.dtype} and {b.dtype}")
    return triangular_product_p(a, b, left=bool(left), lower=bool(lower), trans=trans,
                                unit_diagonal=bool(unit_diagonal))


__all__ = ["triangular_product"]
