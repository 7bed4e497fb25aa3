"""vector_norm and matrix_norm (array API), composed of differentiable primitives.

No rule of their own: each norm is written with the namespace (abs, sum, max, sqrt, pow) and the
decompositions (svdvals for the nuclear and spectral norms), whose rules give the derivative. At
x = 0 the 2-norm's derivative does not exist (the tangent is NaN), as for sqrt at 0.
"""
from __future__ import annotations

import math
from typing import Any

from ..namespace import abs as absolute
from ..namespace import astype, conj, expand_dims, max, min, multiply, pow, real, sqrt, sum  # noqa: A004
from ..namespace._rules import is_complex_dtype
from ._matrix import as_inexact, require_matrix
from .svd import svdvals


def _abs_squared(x: Any) -> Any:
    return real(multiply(conj(x), x)) if is_complex_dtype(x) else multiply(x, x)


def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: float = 2) -> Any:  # noqa: A002
    """The p-norm over ``axis`` (all axes by default) for ord = 1, 2, inf, -inf, 0 or any p."""
    x = as_inexact(x)
    if ord == 2:
        return sqrt(sum(_abs_squared(x), axis=axis, keepdims=keepdims))
    size = absolute(x)
    if ord == 1:
        return sum(size, axis=axis, keepdims=keepdims)
    if ord == math.inf:
        return max(size, axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return min(size, axis=axis, keepdims=keepdims)
    if ord == 0:  # the number of nonzero entries: piecewise constant
        return sum(astype(size != 0, size.dtype), axis=axis, keepdims=keepdims)
    return pow(sum(pow(size, ord), axis=axis, keepdims=keepdims), 1.0 / ord)


def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:  # noqa: A002
    """Frobenius, nuclear, 1, -1, 2, -2, inf or -inf norm of the last two axes."""
    require_matrix("matrix_norm", x)
    if ord == "fro":
        out = sqrt(sum(_abs_squared(x), axis=(-2, -1)))
    elif ord == "nuc":
        out = sum(svdvals(x), axis=-1)
    elif ord in (2, -2):
        s = svdvals(x)
        out = max(s, axis=-1) if ord == 2 else min(s, axis=-1)
    elif ord in (1, -1, math.inf, -math.inf):
        sums = sum(absolute(x), axis=-2 if ord in (1, -1) else -1)
        out = max(sums, axis=-1) if ord > 0 else min(sums, axis=-1)
    else:
        raise ValueError(f"matrix_norm: ord must be 'fro', 'nuc', 1, -1, 2, -2, inf or -inf, got {ord!r}")
    if keepdims:
        out = expand_dims(expand_dims(out, axis=-1), axis=-1)
    return out
