"""Reductions and scans: sum, mean, prod, max, min, cumulative_sum, cumulative_prod, diff, var, std."""
from __future__ import annotations

import math
from typing import Any, Callable

from ..core import Primitive, bind, bind_below
from ..values import strip
from ._rules import is_complex_dtype, linear, nondifferentiable, xp_of
from .elementwise import add, conj, divide, equal, multiply, real, sqrt, subtract, where
from .manipulation import astype, concat, every_axis, flip, moveaxis, permute_dims, rank, reshape, shift, to_front

def reducing(prim: Primitive) -> Callable:
    """The batching rule of a reduction or scan over ``axis`` (None: every axis of an example)."""
    def rule(values: list, axes: list, *, axis: Any = None, **params: Any) -> tuple[Any, int]:
        (x,), (x_axis,) = values, axes
        x_rank = rank(x, x_axis)
        x = to_front(x, x_axis)
        return bind_below(prim, [x], {**params, "axis": every_axis(x_rank) if axis is None else shift(axis)}), 0
    return rule


def _cumulative_batch(prim: Primitive):
    """cumulative_sum / cumulative_prod: axis None means the only axis of a 1-D example."""
    def rule(values: list, axes: list, *, axis: Any = None, **params: Any):
        x = to_front(values[0], axes[0])
        return bind(prim, x, axis=1 if axis is None else shift(axis), **params), 0
    return rule


def _arg_batch(prim: Primitive):
    """argmax / argmin: axis None indexes each example flattened."""
    def rule(values: list, axes: list, *, axis: Any = None, keepdims: bool = False):
        x_rank = rank(values[0], axes[0])
        x = to_front(values[0], axes[0])
        if axis is not None:
            return bind(prim, x, axis=shift(axis), keepdims=keepdims), 0
        out = bind(prim, reshape(x, (x.shape[0], -1)), axis=1, keepdims=False)
        return (reshape(out, (x.shape[0], *(1,) * x_rank)) if keepdims else out), 0
    return rule


def reducing_stack(prim: Primitive) -> Callable:
    """``reducing``'s case of a raw stack on axis 0 (``Primitive.stack_rule``): the axes shifted."""
    def rule(values: list, params: dict) -> Any:
        (x,) = values
        axis = params.get("axis")
        return prim.impl(x, **{**params, "axis": every_axis(x.ndim - 1) if axis is None else shift(axis)})
    return rule


sum = linear("sum", batch=reducing)  # noqa: A001 - the standard's name
mean = linear("mean", batch=reducing)
sum.stack_rule, mean.stack_rule = reducing_stack(sum), reducing_stack(mean)
cumulative_sum = linear("cumulative_sum", batch=_cumulative_batch)

argmax = nondifferentiable("argmax", batch=_arg_batch)
argmin = nondifferentiable("argmin", batch=_arg_batch)
any = nondifferentiable("any", batch=reducing)  # noqa: A001
all = nondifferentiable("all", batch=reducing)  # noqa: A001
count_nonzero = nondifferentiable("count_nonzero", batch=reducing)


def _extremum(name: str) -> Primitive:
    prim = Primitive(name, lambda x, /, *, axis=None, keepdims=False: getattr(xp_of(x), name)(
        x, axis=axis, keepdims=keepdims))
    prim.batch = reducing(prim)
    prim.stack_rule = reducing_stack(prim)

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
_prod.batch = reducing(_prod)


@_prod.def_jvp
def _prod_jvp(primals: list, tangents: list, *, axis: Any = None, dtype: Any = None, keepdims: bool = False):
    # d prod(x) = sum_i dx_i prod_{j != i} x_j, the products of "all but one" as the product of the
    # exclusive prefix and suffix products (cumulative_prod, whose own rule nests): no division (exact
    # at zeros, to every order) and O(K) memory.
    (x,), (t,) = primals, tangents
    ans = bind(_prod, x, axis=axis, dtype=dtype, keepdims=keepdims)
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    size = math.prod(x.shape[a] for a in axes)
    lead = tuple(x.shape[a] for a in kept)
    xs = reshape(permute_dims(x, kept + axes), lead + (size,))
    ts = reshape(permute_dims(t, kept + axes), lead + (size,))
    if size == 0:  # the empty product is 1: no tangent
        return ans, reshape(sum(ts, axis=-1, dtype=dtype), ans.shape)
    if dtype is not None:
        xs = astype(xs, dtype)
    prefix = cumulative_prod(xs[..., :-1], axis=-1, include_initial=True)  # [1, x_0, x_0 x_1, ...]
    suffix = flip(cumulative_prod(flip(xs, axis=-1)[..., :-1], axis=-1, include_initial=True), axis=-1)
    tangent = sum(multiply(ts, multiply(prefix, suffix)), axis=-1, dtype=dtype)
    return ans, reshape(tangent, ans.shape)


def prod(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
    return _prod(x, axis=axis, dtype=dtype, keepdims=keepdims)


_cumulative_prod = Primitive("cumulative_prod", lambda x, /, *, axis=None, dtype=None, include_initial=False:
                             xp_of(x).cumulative_prod(x, axis=axis, dtype=dtype, include_initial=include_initial))
_cumulative_prod.batch = _cumulative_batch(_cumulative_prod)


@_cumulative_prod.def_jvp
def _cumulative_prod_jvp(primals: list, tangents: list, *, axis: Any = None, dtype: Any = None,
                         include_initial: bool = False):
    # The product rule is an associative operation on (value, tangent) pairs,
    # (c1, d1) o (c2, d2) = (c1 c2, d1 c2 + c1 d2), so the running pairs come from a Hillis-Steele scan
    # of namespace operations: no division (exact at zeros), nests, O(K) memory, log2(K) steps.
    (x,), (t,) = primals, tangents
    ans = bind(_cumulative_prod, x, axis=axis, dtype=dtype, include_initial=include_initial)
    if x.ndim == 0:  # (NumPy takes a scalar as one entry)
        x, t = reshape(x, (1,)), reshape(t, (1,))
    axis = 0 if axis is None else axis % x.ndim
    c, d = moveaxis(x, axis, -1), moveaxis(t, axis, -1)
    if dtype is not None:
        c, d = astype(c, dtype), astype(d, dtype)
    size, shift = c.shape[-1], 1
    while shift < size:
        left_c, left_d, right_c, right_d = c[..., :-shift], d[..., :-shift], c[..., shift:], d[..., shift:]
        d = concat([d[..., :shift], add(multiply(left_d, right_c), multiply(left_c, right_d))], axis=-1)
        c = concat([c[..., :shift], multiply(left_c, right_c)], axis=-1)
        shift *= 2
    if include_initial:  # the initial 1 is a constant
        raw = strip(d)
        d = concat([xp_of(raw).zeros((*raw.shape[:-1], 1), dtype=raw.dtype), d], axis=-1)
    return ans, reshape(moveaxis(d, -1, axis), ans.shape)


def cumulative_prod(x: Any, /, *, axis: int | None = None, dtype: Any = None, include_initial: bool = False) -> Any:
    return _cumulative_prod(x, axis=axis, dtype=dtype, include_initial=include_initial)


def diff(x: Any, /, *, axis: int = -1, n: int = 1, prepend: Any = None, append: Any = None) -> Any:
    """n-th forward differences along ``axis`` (after joining ``prepend`` and ``append``): linear,
    composed of slices and subtractions."""
    if n < 0:
        raise ValueError(f"diff: n must be non-negative, got {n}")
    if x.ndim == 0:
        raise ValueError("diff needs an array of at least one dimension")
    if not -x.ndim <= axis < x.ndim:
        raise IndexError(f"diff: axis {axis} is out of bounds for an array of dimension {x.ndim}")
    if n == 0:  # as NumPy: the input itself, prepend and append ignored
        return x
    parts = [p for p in (prepend, x, append) if p is not None]
    y = concat(parts, axis=axis) if len(parts) > 1 else x
    before = (slice(None),) * (axis % y.ndim)
    for _ in range(n):
        if y.shape[axis] == 0:  # nothing left to difference (more steps than entries)
            break
        y = subtract(y[before + (slice(1, None), ...)], y[before + (slice(None, -1), ...)])
    return y


def var(x: Any, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Any:
    centred = subtract(x, mean(x, axis=axis, keepdims=True))
    n = math.prod(x.shape[a] for a in _axes(axis, x.ndim))
    squares = real(multiply(conj(centred), centred)) if is_complex_dtype(x) else multiply(centred, centred)
    return divide(sum(squares, axis=axis, keepdims=keepdims), n - correction)


def std(x: Any, /, *, axis: Any = None, correction: float = 0.0, keepdims: bool = False) -> Any:
    return sqrt(var(x, axis=axis, correction=correction, keepdims=keepdims))


__all__ = ["all", "any", "argmax", "argmin", "count_nonzero", "cumulative_prod", "cumulative_sum", "diff", "max",
           "mean", "min", "prod", "std", "sum", "var"]
