"""solve_triangular: op(A) x = b for triangular A (SciPy semantics).

Derivation: differentiating op(A) x = b gives op(dA) x + op(A) dx = db, so
dx = op(A)^-1 (db - op(dA) x), one more triangular solve with the factor already at hand.
Only the triangle that the primal reads enters: dA is masked the same way (its diagonal too
when ``unit_diagonal``).
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Zero
from ..namespace._batching import solver
from ..namespace import conj, expand_dims, matmul, matrix_transpose, negative, squeeze, subtract
from ._matrix import backend_of_matrix, require_square, triangle


def _impl(a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    return backend_of_matrix(a).solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit_diagonal)


solve_triangular_p = Primitive("solve_triangular", _impl)
solve_triangular_p.def_batch(solver(solve_triangular_p))


def _op(a: Any, trans: int) -> Any:
    if trans == 0:
        return a
    return conj(matrix_transpose(a)) if trans == 2 else matrix_transpose(a)


@solve_triangular_p.def_jvp
def _jvp(primals: list, tangents: list, *, lower: bool, trans: int, unit_diagonal: bool):
    (a, b), (da, db) = primals, tangents
    params = dict(lower=lower, trans=trans, unit_diagonal=unit_diagonal)
    if b.ndim == 1:  # a vector right-hand side: solve as one column (a may carry batch dimensions)
        b, db = expand_dims(b, axis=-1), db if type(db) is Zero else expand_dims(db, axis=-1)
        x_matrix, dx = _jvp([a, b], [da, db], **params)
        return squeeze(x_matrix, axis=-1), squeeze(dx, axis=-1)
    x = bind(solve_triangular_p, a, b, **params)
    rhs = db
    if type(da) is not Zero:
        product = matmul(_op(triangle(da, lower, -1 if unit_diagonal else 0), trans), x)
        rhs = negative(product) if type(db) is Zero else subtract(db, product)
    return x, bind(solve_triangular_p, a, rhs, **params)


def solve_triangular(a: Any, b: Any, /, lower: bool = False, trans: int | str = 0,
                     unit_diagonal: bool = False) -> Any:
    """Solve op(a) x = b for triangular ``a`` (as ``scipy.linalg.solve_triangular``).

    ``trans`` is 0/"N", 1/"T" or 2/"C"; only the ``lower`` (or upper) triangle of ``a`` is read,
    without its diagonal when ``unit_diagonal``. ``b`` is (..., m) or (..., m, k); leading
    dimensions are batch dimensions.
    """
    require_square("solve_triangular", a)
    trans = {"N": 0, "T": 1, "C": 2}.get(trans, trans) if isinstance(trans, str) else int(trans)
    if trans not in (0, 1, 2):
        raise ValueError(f"trans must be 0, 1, 2, 'N', 'T' or 'C', got {trans!r}")
    if b.shape[0 if b.ndim == 1 else -2] != a.shape[-1]:
        raise ValueError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} are incompatible")
    return solve_triangular_p(a, b, lower=bool(lower), trans=trans, unit_diagonal=bool(unit_diagonal))


__all__ = ["solve_triangular"]
