"""Shape manipulation, type conversion and triangles: all linear, so each JVP applies the same
operation to the tangent."""
from __future__ import annotations

from typing import Any, Sequence

import array_api_compat

from ..core import Primitive, Zero, bind, strip
from ._rules import is_inexact_dtype, linear, xp_of

reshape = linear("reshape")
_to_device = linear("to_device", lambda x, *, device, stream: array_api_compat.to_device(x, device, stream=stream))


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


expand_dims = linear("expand_dims", _expand_dims_impl)
squeeze = linear("squeeze")
permute_dims = linear("permute_dims")
broadcast_to = linear("broadcast_to")
flip = linear("flip")
roll = linear("roll")
moveaxis = linear("moveaxis")
tile = linear("tile")
_repeat = linear("repeat", lambda x, *, repeats, axis: xp_of(x).repeat(x, repeats, axis=axis))


def repeat(x: Any, repeats: Any, /, *, axis: int | None = None) -> Any:
    return _repeat(x, repeats=strip(repeats), axis=axis)

_concat = linear("concat", lambda *arrays, axis: xp_of(*arrays).concat(arrays, axis=axis))
_stack = linear("stack", lambda *arrays, axis: xp_of(*arrays).stack(arrays, axis=axis))


def concat(arrays: Sequence[Any], /, *, axis: int | None = 0) -> Any:
    return _concat(*arrays, axis=axis)


def stack(arrays: Sequence[Any], /, *, axis: int = 0) -> Any:
    return _stack(*arrays, axis=axis)


def unstack(x: Any, /, *, axis: int = 0) -> tuple[Any, ...]:
    from .indexing import getitem

    lead = (slice(None),) * (axis % x.ndim)
    return tuple(getitem(x, key=(*lead, i, ...)) for i in range(x.shape[axis]))


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
    if x.ndim < 2:
        raise ValueError(f"matrix_transpose needs at least 2 dimensions, got shape {x.shape}")
    return permute_dims(x, (*range(x.ndim - 2), x.ndim - 1, x.ndim - 2))


_MASKS: dict[tuple, Any] = {}


def _triangle_mask(x: Any, k: int, lower: bool) -> Any:
    """The (rows, cols) bool mask of a triangle, made once per backend, device, shape and k (only
    ``where`` reads it)."""
    xp = xp_of(x)
    rows, cols = x.shape[-2:]
    key = (xp.__name__, str(x.device), rows, cols, k, lower)
    mask = _MASKS.get(key)
    if mask is None:
        if len(_MASKS) >= 64:
            _MASKS.clear()
        i = xp.reshape(xp.arange(rows, device=x.device), (rows, 1))
        j = xp.reshape(xp.arange(cols, device=x.device), (1, cols))
        mask = _MASKS[key] = (j - i <= k) if lower else (j - i >= k)
    return mask


def _tril_impl(x: Any, /, *, k: int = 0) -> Any:
    xp = xp_of(x)
    return xp.where(_triangle_mask(x, k, True), x, xp.zeros((), dtype=x.dtype))


def _triu_impl(x: Any, /, *, k: int = 0) -> Any:
    xp = xp_of(x)
    return xp.where(_triangle_mask(x, k, False), x, xp.zeros((), dtype=x.dtype))


# Extensions the rules need (the standard has no tril/triu); written with standard functions.
tril = linear("tril", _tril_impl)
triu = linear("triu", _triu_impl)

_astype = Primitive("astype", lambda x, dtype, copy=True: xp_of(x).astype(x, dtype, copy=copy))


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


__all__ = ["astype", "broadcast_arrays", "broadcast_to", "meshgrid", "concat", "expand_dims", "flip", "matrix_transpose",
           "moveaxis", "permute_dims", "repeat", "reshape", "roll", "squeeze", "stack", "tile", "tril", "triu",
           "unstack"]
