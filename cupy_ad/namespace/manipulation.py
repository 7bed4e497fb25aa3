"""Shape manipulation, type conversion and triangles: all linear, so each JVP applies the same
operation to the tangent."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import array_api_compat

from ..core import Primitive, bind, bind_below, install_axis_ops, stack_level, stacked
from ..values import Batched, Zero, strip
from ._rules import is_inexact_dtype, linear, xp_of


# ------------------------------------------------------------------------------------ batch axes
# Helpers of the batching rules (vmap), here because they are axis manipulations. A rule gets
# ``values`` and ``axes``: argument i stacks its examples along axis ``axes[i]`` of ``values[i]``
# (``None``: one value shared by every example), and returns the outputs with their batch axes. Most
# rules move the batch axis to the front; leading dimensions are batch dimensions throughout the
# library, so what is left is bookkeeping: negative axis parameters keep their meaning, non-negative
# ones move up by one, and operands of smaller rank get singleton axes after the batch axis so that
# they broadcast example by example (after JAX's ``batching.py``).

def batch_size(values: Sequence[Any], axes: Sequence[int | None]) -> int:
    for v, axis in zip(values, axes):
        if axis is not None:
            return v.shape[axis]
    raise ValueError("no mapped argument")


def rank(x: Any, axis: int | None) -> int:
    """The number of dimensions of one example (Python scalars and None: 0)."""
    return getattr(x, "ndim", 0) - (axis is not None)


def to_front(x: Any, axis: int | None) -> Any:
    """``x`` with its batch axis first (unmapped values unchanged)."""
    if axis is None or axis == 0:
        return x
    return moveaxis(x, axis, 0)


def broadcast_front(x: Any, size: int) -> Any:
    """A value shared by all examples as ``size`` stacked copies (a broadcast view where possible)."""
    shape = tuple(x.shape)
    return broadcast_to(expand_dims(x, axis=0), (size, *shape))


def all_front(values: Sequence[Any], axes: Sequence[int | None]) -> list[Any]:
    """Every value with its batch axis first, unmapped ones broadcast to the batch."""
    size = batch_size(values, axes)
    return [broadcast_front(v, size) if axis is None else to_front(v, axis) for v, axis in zip(values, axes)]


def pad_rank(x: Any, missing: int) -> Any:
    """A batch-first ``x`` with ``missing`` singleton axes after the batch axis."""
    if missing <= 0:
        return x
    return reshape(x, (x.shape[0], *(1,) * missing, *x.shape[1:]))


def pad_raw_rank(x: Any, missing: int) -> Any:
    """``pad_rank`` of a raw array, as a plain reshape (a view; no dispatch)."""
    return raw_reshape(x, (x.shape[0], *(1,) * missing, *x.shape[1:]))


def raw_reshape(x: Any, shape: tuple) -> Any:
    """A raw array reshaped without dispatch (a view where the layout allows)."""
    return x.reshape(shape) if hasattr(x, "reshape") else xp_of(x).reshape(x, shape)  # NumPy/CuPy: the method


def aligned(values: Sequence[Any], axes: Sequence[int | None], core: Sequence[int] | None = None) -> list[Any]:
    """Mapped values batch-first with as many (broadcasting) batch dimensions as the widest operand;
    ``core[i]`` trailing dimensions of operand i are its own (0: elementwise broadcasting)."""
    core = core or (0,) * len(values)
    widest = max(rank(v, axis) - c for v, axis, c in zip(values, axes, core))
    return [v if axis is None else pad_rank(to_front(v, axis), widest - (rank(v, axis) - c))
            for v, axis, c in zip(values, axes, core)]


def batch_first_copy(x: Any) -> Any:
    """A strided batch-first view (the examples of a folded product) copied into batch-first order, so
    that what follows reads memory in order (a flat reshape copies; the second is a view)."""
    return reshape(reshape(x, (-1,)), x.shape)


def shift(axis: Any) -> Any:
    """An axis parameter (int or tuple) of one example, for the batch-first stack."""
    if isinstance(axis, (tuple, list)):
        return tuple(a + 1 if a >= 0 else a for a in axis)
    return axis + 1 if axis >= 0 else axis


def every_axis(x_rank: int) -> tuple[int, ...]:
    """``axis=None`` (all axes of one example) for the batch-first stack."""
    return tuple(range(1, x_rank + 1))


def looped(prim: Primitive) -> Callable:
    """The batching rule of a primitive without a batched form: one call per example, stacked."""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, int]:
        size = batch_size(values, axes)
        first = [to_front(v, axis) for v, axis in zip(values, axes)]
        results = [bind(prim, *[v if axis is None else v[i, ...] for v, axis in zip(first, axes)], **params)
                   for i in range(size)]
        return stack(results, axis=0), 0
    return rule


# Batching rules: the batch axis goes first and the shape and axis parameters follow it. Parameters
# may come positionally (``reshape(x, shape)``): they are read and passed back where they came.
def _positional(values: list, params: dict, names: tuple[str, ...], default: Any = None) -> list:
    """The parameters ``names`` after x, from ``values`` or ``params`` (those are removed from it)."""
    return [values[1 + k] if 1 + k < len(values) else params.pop(name, default) for k, name in enumerate(names)]


def _passed_back(values: list, params: dict, names: tuple[str, ...], new: list) -> tuple[list, dict]:
    """The new parameters ``new`` for ``names``, positional where they came positionally."""
    count = len(values) - 1
    return new[:count], {**params, **dict(zip(names[count:], new[count:]))}


def _reshape_batch(prim: Primitive):
    def rule(values: list, axes: list, **params: Any):
        (shape,) = _positional(values, params, ("shape",))
        x = to_front(values[0], axes[0])
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return bind(prim, x, (x.shape[0], *shape), **params), 0
    return rule


reshape = linear("reshape", batch=_reshape_batch)


def _same_axis(prim: Primitive):
    def rule(values: list, axes: list, **params: Any):  # one example at a time changes nothing per axis
        return bind(prim, values[0], **params), axes[0]
    return rule


_to_device = linear("to_device", lambda x, *, device, stream: array_api_compat.to_device(x, device, stream=stream),
                    batch=_same_axis)


def to_device(x: Any, device: Any, /, *, stream: Any = None) -> Any:
    """``x`` on ``device`` (the tangent moves with it); the backend's error for a device it lacks."""
    return _to_device(x, device=device, stream=stream)


def _expand_dims_impl(x: Any, /, axis: int = 0) -> Any:
    """A reshape inserting the axis: a view, like the backend's expand_dims, at a fraction of
    NumPy's cost (its axis normalisation takes microseconds; rules call this often)."""
    xp = xp_of(x)
    ndim = x.ndim + 1
    if type(axis) is not int or not -ndim <= axis < ndim:
        return xp.expand_dims(x, axis=axis)  # the backend's own error (or a tuple of axes)
    axis %= ndim
    shape = (*x.shape[:axis], 1, *x.shape[axis:])
    return x.reshape(shape) if hasattr(x, "reshape") else xp.reshape(x, shape)  # NumPy/CuPy: the method


def _axis_batch(names: tuple[str, ...], default_all: bool = False, default: Any = None):
    """Rules for primitives whose parameters ``names`` are axes of x (None: every axis with
    ``default_all``; ``default``: the value of an absent parameter)."""
    def make(prim: Primitive):
        def rule(values: list, axes: list, **params: Any):
            found = _positional(values, params, names, default)
            x_rank = rank(values[0], axes[0])
            x = to_front(values[0], axes[0])
            moved = [every_axis(x_rank) if a is None and default_all else None if a is None else shift(a)
                     for a in found]
            positional, params = _passed_back(values, params, names, moved)
            return bind(prim, x, *positional, **params), 0
        return rule
    return make


def _flattening_batch(prim: Primitive):
    """Rule for primitives that flatten x when ``axis`` is None (roll, repeat): flatten each example."""
    def rule(values: list, axes: list, *, axis: Any = None, **params: Any):
        x = to_front(values[0], axes[0])
        if axis is None:
            shape = x.shape
            out = bind(prim, reshape(x, (shape[0], -1)), *values[1:], axis=1, **params)
            return (reshape(out, shape) if prim is roll else out), 0
        return bind(prim, x, *values[1:], axis=shift(axis), **params), 0
    return rule


def _broadcast_to_batch(prim: Primitive):
    def rule(values: list, axes: list, **params: Any):
        (shape,) = _positional(values, params, ("shape",))
        shape = tuple(shape)
        x = pad_rank(to_front(values[0], axes[0]), len(shape) - rank(values[0], axes[0]))
        return bind(prim, x, (x.shape[0], *shape), **params), 0
    return rule


def _permute_dims_batch(prim: Primitive):
    def rule(values: list, axes: list, **params: Any):
        (order,) = _positional(values, params, ("axes",))
        x_rank = rank(values[0], axes[0])
        x = to_front(values[0], axes[0])
        return bind_below(prim, [x, (0, *(a % x_rank + 1 for a in order))], params), 0
    return rule


def _tile_batch(prim: Primitive):
    def rule(values: list, axes: list, **params: Any):
        (reps,) = _positional(values, params, ("repetitions",))
        reps = tuple(reps)
        x_rank = rank(values[0], axes[0])
        x = pad_rank(to_front(values[0], axes[0]), len(reps) - x_rank)
        return bind(prim, x, (1,) * (x.ndim - len(reps)) + reps, **params), 0
    return rule


expand_dims = linear("expand_dims", _expand_dims_impl, batch=_axis_batch(("axis",), default=0))
squeeze = linear("squeeze", batch=_axis_batch(("axis",)))
permute_dims = linear("permute_dims", batch=_permute_dims_batch)


def _permute_stack(values: list, params: dict) -> Any:
    x, *order = values
    (order,) = order or [params["axes"]]
    rank = x.ndim - 1
    return permute_dims.impl(x, (0, *(a % rank + 1 for a in order)), **{k: v for k, v in params.items() if k != "axes"})


permute_dims.stack_rule = _permute_stack
broadcast_to = linear("broadcast_to", batch=_broadcast_to_batch)
flip = linear("flip", batch=_axis_batch(("axis",), default_all=True))
roll = linear("roll", batch=_flattening_batch)
moveaxis = linear("moveaxis", batch=_axis_batch(("source", "destination")))
tile = linear("tile", batch=_tile_batch)
_repeat = linear("repeat", lambda x, *, repeats, axis: xp_of(x).repeat(x, repeats, axis=axis), batch=_flattening_batch)


def repeat(x: Any, repeats: Any, /, *, axis: int | None = None) -> Any:
    return _repeat(x, repeats=strip(repeats), axis=axis)

def _concat_batch(prim: Primitive):
    def rule(values: list, axes: list, *, axis: Any = 0):
        arrays = all_front(values, axes)
        if axis is None:  # each example flattened
            arrays = [reshape(a, (a.shape[0], -1)) for a in arrays]
        return bind(prim, *arrays, axis=1 if axis is None else shift(axis)), 0
    return rule


_concat = linear("concat", lambda *arrays, axis: xp_of(*arrays).concat(arrays, axis=axis), batch=_concat_batch)
_stack = linear("stack", lambda *arrays, axis: xp_of(*arrays).stack(arrays, axis=axis), batch=_concat_batch)


def concat(arrays: Sequence[Any], /, *, axis: int | None = 0) -> Any:
    return _concat(*arrays, axis=axis)


def stack(arrays: Sequence[Any], /, *, axis: int = 0) -> Any:
    return _stack(*arrays, axis=axis)


def unstack(x: Any, /, *, axis: int = 0) -> tuple[Any, ...]:
    from .indexing import dual_getitem

    lead = (slice(None),) * (axis % x.ndim)
    rest = (...,) if x.ndim > 1 else ()  # (NumPy's parts of a 1-D x are scalars, copies: x[i] is not a view)
    return tuple(dual_getitem(x, (*lead, i, *rest)) for i in range(x.shape[axis]))  # views of x, as in NumPy


def meshgrid(*arrays: Any, indexing: str = "xy") -> list[Any]:
    """Coordinate grids from 1-D arrays (differentiable: each grid broadcasts one input)."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"indexing must be 'xy' or 'ij', got {indexing!r}")
    sizes = [a.shape[0] for a in arrays]
    if indexing == "xy" and len(arrays) > 1:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for k, a in enumerate(arrays):
        axis = 1 - k if indexing == "xy" and len(arrays) > 1 and k < 2 else k
        shape = [1] * len(arrays)
        shape[axis] = a.shape[0]
        grids.append(broadcast_to(reshape(a, tuple(shape)), tuple(sizes)))
    return grids


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the standard's broadcasting rules give ``shapes`` (ValueError if they do not match)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for sizes in zip(*((1,) * (ndim - len(s)) + tuple(s) for s in shapes)):
        distinct = {n for n in sizes if n != 1}
        if len(distinct) > 1:
            raise ValueError(f"shapes {', '.join(map(str, shapes))} cannot be broadcast together")
        out.append(distinct.pop() if distinct else 1)
    return tuple(out)


def broadcast_arrays(*arrays: Any) -> list[Any]:
    shape = broadcast_shapes(*(tuple(a.shape) for a in arrays))
    return [broadcast_to(a, shape) for a in arrays]


def matrix_transpose(x: Any, /) -> Any:
    ndim = x.ndim
    if ndim < 2:
        raise ValueError(f"matrix_transpose needs at least 2 dimensions, got shape {x.shape}")
    level = stack_level(x) if type(x) is Batched else 0
    if level:  # a raw stack of matrices (the batch axis first): the backend's transpose at once
        return stacked(permute_dims, level, [x.value, (*range(ndim - 1), ndim, ndim - 1)], {})
    return permute_dims(x, (*range(ndim - 2), ndim - 1, ndim - 2))


_MASKS: dict[tuple, Any] = {}


def _triangle_mask(x: Any, k: int, lower: bool) -> Any:
    """The (rows, cols) bool mask of a triangle, made once per namespace (Dask's: one per chunk type),
    device, shape and k (only ``where`` reads it)."""
    xp = xp_of(x)
    rows, cols = x.shape[-2:]
    device = getattr(x, "device", None)  # Dask arrays have none
    key = (xp, str(device), rows, cols, k, lower)
    mask = _MASKS.get(key)
    if mask is None:
        if len(_MASKS) >= 64:
            _MASKS.clear()
        i = xp.reshape(xp.arange(rows, device=device), (rows, 1))
        j = xp.reshape(xp.arange(cols, device=device), (1, cols))
        mask = _MASKS[key] = (j - i <= k) if lower else (j - i >= k)
    return mask


def _tril_impl(x: Any, /, *, k: int = 0) -> Any:
    xp = xp_of(x)
    return xp.where(_triangle_mask(x, k, True), x, xp.zeros((), dtype=x.dtype))


def _triu_impl(x: Any, /, *, k: int = 0) -> Any:
    xp = xp_of(x)
    return xp.where(_triangle_mask(x, k, False), x, xp.zeros((), dtype=x.dtype))


# Extensions the rules need (the standard has no tril/triu); written with standard functions.
tril = linear("tril", _tril_impl, batch=_axis_batch(()))
triu = linear("triu", _triu_impl, batch=_axis_batch(()))

_astype = Primitive("astype", lambda x, dtype, copy=True: xp_of(x).astype(x, dtype, copy=copy))
_astype.batch = lambda values, axes, **params: (bind(_astype, *values, **params), axes[0])  # elementwise


@_astype.def_jvp
def _astype_jvp(primals: list, tangents: list, *, dtype: Any, copy: bool = True):
    ans = bind(_astype, *primals, dtype=dtype, copy=copy)
    if not is_inexact_dtype(ans):
        return ans, Zero.like(ans)
    (t,) = tangents
    if not xp_of(ans).isdtype(dtype, "complex floating"):
        from .elementwise import real

        t = real(t) if xp_of(ans).isdtype(t.dtype, "complex floating") else t
    return ans, bind(_astype, t, dtype=dtype, copy=copy)


def astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    """Cast ``x``; a complex-to-real cast keeps the real part of the tangent too."""
    return _astype(x, dtype=dtype, copy=copy)


install_axis_ops(to_front, broadcast_front, pad_raw_rank)

__all__ = ["astype", "broadcast_arrays", "broadcast_to", "meshgrid", "concat", "expand_dims", "flip", "matrix_transpose",
           "moveaxis", "permute_dims", "repeat", "reshape", "roll", "squeeze", "stack", "tile", "tril", "triu",
           "unstack"]
