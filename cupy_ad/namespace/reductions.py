"""Reductions and scans: sum, mean, prod, max, min, cumulative_sum, var, std."""
from __future__ import annotations

import math
from typing import Any

from ..core import Primitive, bind
from ._rules import is_complex_dtype, linear, nondifferentiable, xp_of
from .elementwise import conj, divide, equal, multiply, real, sqrt, subtract, where
from .manipulation import astype, expand_dims, permute_dims, reshape

sum = linear("sum")  # noqa: A001 - the standard's name
mean = linear("mean")
cumulative_sum = linear("cumulative_sum")

argmax = nondifferentiable("argmax")
argmin = nondifferentiable("argmin")
any = nondifferentiable("any")  # noqa: A001
all = nondifferentiable("all")  # noqa: A001
count_nonzero = nondifferentiable("count_nonzero")


def _extremum(name: str) -> Primitive:
    prim = Primitive(name, lambda x, /, *, axis=None, keepdims=False: getattr(xp_of(x), name)(
        x, axis=axis, keepdims=keepdims))

    @prim.def_jvp
    def rule(primals: list, tangents: list, *, axis: Any = None, keepdims: bool = False):
        # The tangent at the extremum, averaged over ties (as JAX does).
        (x,), (t,) = primals, tangents
        ans = bind(prim, x, axis=axis, keepdims=keepdims)
        hit = equal(x, bind(prim, x, axis=axis, keepdims=True))
        count = sum(astype(hit, x.dtype), axis=axis, keepdims=keepdims)
        return ans, divide(sum(where(hit, t, 0.0), axis=axis, keepdims=keepdims), count)

    return prim


max = _extremum("max")  # noqa: A001
min = _extremum("min")  # noqa: A001


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


_prod = Primitive("prod", lambda x, /, *, axis=None, dtype=None, keepdims=False: xp_of(x).prod(
    x, axis=axis, dtype=dtype, keepdims=keepdims))


@_prod.def_jvp
def _prod_jvp(primals: list, tangents: list, *, axis: Any = None, dtype: Any = None, keepdims: bool = False):
    # d prod(x) = sum_i dx_i prod_{j != i} x_j. The products of "all but one" come from a K x K
    # table with ones on the diagonal, so zeros in x are handled exactly (no division by x).
    (x,), (t,) = primals, tangents
    ans = bind(_prod, x, axis=axis, dtype=dtype, keepdims=keepdims)
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    size = math.prod(x.shape[a] for a in axes)
    lead = tuple(x.shape[a] for a in kept)
    xs = reshape(permute_dims(x, kept + axes), lead + (size,))
    ts = reshape(permute_dims(t, kept + axes), lead + (size,))
    xp = xp_of(x)
    table = where(xp.eye(size, dtype=xp.bool), 1.0, expand_dims(xs, axis=-2))
    others = bind(_prod, table, axis=-1, dtype=dtype)
    tangent = sum(multiply(ts, others), axis=-1)
    return ans, reshape(tangent, ans.shape)


def prod(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
    return _prod(x, axis=axis, dtype=dtype, keepdims=keepdims)


def var(x: Any, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Any:
    centred = subtract(x, mean(x, axis=axis, keepdims=True))
    n = math.prod(x.shape[a] for a in _axes(axis, x.ndim))
    squares = real(multiply(conj(centred), centred)) if is_complex_dtype(x) else multiply(centred, centred)
    return divide(sum(squares, axis=axis, keepdims=keepdims), n - correction)


def std(x: Any, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Any:
    return sqrt(var(x, axis=axis, correction=correction, keepdims=keepdims))


__all__ = ["all", "any", "argmax", "argmin", "count_nonzero", "cumulative_sum", "max", "mean", "min",
           "prod", "std", "sum", "var"]
