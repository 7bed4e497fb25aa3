"""matrix_power, pinv and matrix_rank (array API linalg), composed of differentiable primitives.

No rules of their own: matrix_power is repeated squaring with matmul (and inv for negative powers);
pinv is V diag(1/s) U^H from the thin SVD with the singular values <= rtol * s_max dropped, rtol by
default max(m, n) eps as the array API standard says (numpy.linalg.pinv's own default, rcond=1e-15,
keeps more of them in float32), whose derivative comes from the SVD's rule and holds where the
rank is locally constant (pinv is discontinuous where it changes); matrix_rank is an integer.
"""
from __future__ import annotations

import operator
from typing import Any

from ..values import strip
from ..namespace import astype, divide, expand_dims, greater, matmul, multiply, where
from ..namespace import max as array_max
from ..namespace import sum as array_sum
from ..namespace._rules import xp_of
from ._matrix import as_inexact, mH, require_matrix, require_square
from .solve import inv
from .svd import svd, svdvals


def matrix_power(x: Any, n: int, /) -> Any:
    """x^n for square matrices (..., m, m) and an integer n (n < 0: powers of the inverse)."""
    require_square("matrix_power", x)
    n = operator.index(n)
    if n == 0:  # the identity, a constant
        raw = strip(x)
        xp = xp_of(raw)
        return xp.broadcast_to(xp.eye(raw.shape[-1], dtype=raw.dtype), raw.shape) * 1
    base = inv(x) if n < 0 else x
    result = None
    n = abs(n)
    while n:
        if n & 1:
            result = base if result is None else matmul(result, base)
        n >>= 1
        if n:
            base = matmul(base, base)
    return result


def _cutoff(s: Any, rtol: Any, m: int, n: int) -> Any:
    """rtol * s_max per matrix, (..., 1), without tangent; rtol defaults to max(m, n) eps (the
    standard's default). Namespace functions: ``s`` may be batched (vmap)."""
    raw = strip(s)
    if rtol is None:
        rtol = max(m, n) * float(xp_of(raw).finfo(raw.dtype).eps)
    elif not isinstance(rtol, (int, float)):
        rtol = expand_dims(strip(rtol), axis=-1)
    return multiply(rtol, array_max(raw, axis=-1, keepdims=True)) if raw.shape[-1] else raw


def pinv(x: Any, /, *, rtol: Any = None) -> Any:
    """The Moore-Penrose pseudo-inverse of (..., m, n) matrices, singular values <= rtol * s_max dropped."""
    require_matrix("pinv", x)
    x = as_inexact(x)
    m, n = x.shape[-2:]
    u, s, vh = svd(x, full_matrices=False)
    keep = greater(strip(s), _cutoff(s, rtol, m, n))  # a constant mask
    s_inv = where(keep, divide(1.0, where(keep, s, 1.0)), 0.0)
    return matmul(multiply(mH(vh), expand_dims(s_inv, axis=-2)), mH(u))


def matrix_rank(x: Any, /, *, rtol: Any = None) -> Any:
    """The number of singular values > rtol * s_max per matrix (an integer array, no tangent)."""
    require_matrix("matrix_rank", x)
    raw = strip(as_inexact(x))
    s = svdvals(raw)
    return array_sum(astype(greater(s, _cutoff(s, rtol, *raw.shape[-2:])), xp_of(raw).int64), axis=-1)


__all__ = ["matrix_power", "matrix_rank", "pinv"]
