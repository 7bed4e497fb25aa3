"""Indexing (``x[key]``, functional ``x[key] = v``), take, take_along_axis, sorting."""
from __future__ import annotations

import math
import numbers
import weakref
from typing import Any, Callable

from ..core import Primitive, bind
from ..backends import backend_of
from ..values import LEVELS, Batched, Dual, JitTraced, Zero, base_array, program_of, strip
from ._rules import instantiate, linear, nondifferentiable, value_sized, xp_of
from . import manipulation
from .elementwise import fit, where
from .manipulation import all_front, broadcast_front, broadcast_to, looped, pad_rank, rank, reshape, shift, to_front


def _strip_key(key: Any) -> Any:
    if isinstance(key, tuple):
        return tuple(_strip_index(k) for k in key)
    return _strip_index(key)


def _strip_index(k: Any) -> Any:
    """An index as a raw array: duals dropped, a constant of a vmap unwrapped; a batched index refused."""
    k = strip(k)
    while type(k) is Batched:
        if k.axis is not None:
            if _is_bool(k):  # (each example's result would have its own shape)
                raise NotImplementedError("vmap: x[mask] with a mask that differs from example to example selects "
                                          "a different number of entries in each; use xp.where(mask, x, 0)")
            raise NotImplementedError("vmap: x[index] with an index array that differs from example to "
                                      "example; use xp.take or xp.take_along_axis")
        k = strip(k.value)
    return k


def _is_index_array(k: Any) -> bool:
    return hasattr(k, "shape") and not (k.ndim == 0 and not _is_bool(k))


def _is_bool(k: Any) -> bool:
    return xp_of(k).isdtype(k.dtype, "bool")


def _batched_key(key: Any) -> tuple[tuple, int]:
    """(key for the batch-first stack, axis of the batch in the result).

    A full slice goes in front. NumPy puts the dimensions of index arrays first when they are not
    adjacent to each other (the batch slice then separates them too): the batch axis follows them.
    """
    key = key if isinstance(key, tuple) else (key,)
    if not any(k is Ellipsis for k in key):  # (array_api_strict wants every axis covered)
        key = (*key, Ellipsis)
    advanced = [k for k, item in enumerate(key) if _is_index_array(item) or (
        type(item) is int and any(_is_index_array(i) for i in key))]
    if advanced and advanced[-1] - advanced[0] + 1 != len(advanced):
        arrays = [key[k] for k in advanced if hasattr(key[k], "shape")]
        ndim = max(1 if _is_bool(a) else a.ndim for a in arrays)
        return (slice(None), *key), ndim
    return (slice(None), *key), 0


def _getitem_batch(prim: Primitive):
    def rule(values: list, axes: list, *, key: Any):
        x = to_front(values[0], axes[0])
        lone = key[0] if isinstance(key, tuple) and key and key[1:] in ((), (Ellipsis,)) else key
        if _is_index_array(lone) and lone.ndim:  # x[indices], x[mask]: a take on the stack's axis 1 (the standard
            if _is_bool(lone):  # allows no slice beside an index array); a mask: the flat indices of its entries
                if tuple(x.shape[1:1 + lone.ndim]) != tuple(lone.shape):  # (else the reshape below may fit)
                    raise IndexError(f"boolean index of shape {tuple(lone.shape)} does not match the indexed "
                                     f"array's leading dimensions {tuple(x.shape[1:1 + lone.ndim])}")
                size = x.shape[0], math.prod(lone.shape)
                x, lone = reshape(x, (*size, *x.shape[1 + lone.ndim:])), nonzero(reshape(lone, (-1,)))[0]
            if lone.ndim == 1:
                return bind(_take, x, indices=lone, axis=1), 0
            out = bind(_take, x, indices=reshape(lone, (-1,)), axis=1)
            return reshape(out, (x.shape[0], *lone.shape, *x.shape[2:])), 0
        key, out_axis = _batched_key(key)
        return bind(prim, x, key=key), out_axis
    return rule


def _indexable(x: Any, key: Any) -> Any:
    """``x``, or the jit recording's constant for it where only ``key`` is traced (a raw array, e.g. a rule's
    zeros, indexed by a traced mask or index: NumPy would convert the key; the recording records it)."""
    if LEVELS.programs and type(x) is not JitTraced:  # (a recording runs: first test, eager indexing is hot)
        traced = next((k for k in (key if type(key) is tuple else (key,)) if type(k) is JitTraced), None)
        if traced is not None:
            return program_of(traced).constant(x)
    return x


getitem = linear("getitem", lambda x, *, key: _indexable(x, key)[key], batch=_getitem_batch)


def _setitem_impl(x: Any, value: Any, *, key: Any) -> Any:
    x = _indexable(x, key)
    out = backend_of(x).copy_in_layout(x)  # never write into the caller's array; keep x's layout, as NumPy's write
    out[key] = value
    return out


setitem = Primitive("setitem", _setitem_impl)


def _sole_index(key: Any) -> Any:
    """The index of ``x[index]`` or ``x[index, ...]`` (``key`` itself where it is no such tuple)."""
    return key[0] if type(key) is tuple and len(key) in (1, 2) and key[1:] in ((), (Ellipsis,)) else key


def _lone_mask(key: Any) -> Any:
    """The boolean mask of ``x[mask]`` or ``x[mask, ...]``, else None."""
    lone = _sole_index(key)
    return lone if _is_index_array(lone) and lone.ndim and _is_bool(lone) else None


@setitem.def_batch
def _setitem_batch(values: list, axes: list, *, key: Any):
    (x, value), (x_axis, value_axis) = values, axes
    x = to_front(x, x_axis) if x_axis is not None else broadcast_front(x, value.shape[value_axis])
    mask = _lone_mask(key)
    if mask is not None:  # the standard allows a mask only as the sole index: the batch axis goes last
        if value_axis is None:  # (its shape broadcasts against one example's x[mask]; a Python scalar's too)
            value = reshape(value, (*value.shape, 1)) if hasattr(value, "shape") else value
        else:  # one example's x[mask] has rank x.ndim - 1 - mask.ndim + 1
            value = pad_rank(to_front(value, value_axis), x.ndim - mask.ndim - rank(value, value_axis))
            value = manipulation.moveaxis(value, 0, -1)
        return bind(setitem, manipulation.moveaxis(x, 0, -1), value, key=mask), x.ndim - 1
    key, out_axis = _batched_key(key)
    if out_axis:
        raise NotImplementedError("vmap of x[key] = value with index arrays that are not adjacent")
    if value_axis is not None:  # its examples line up with the examples of x[key]
        target = bind(getitem, x, key=key)
        value = pad_rank(to_front(value, value_axis), target.ndim - 1 - rank(value, value_axis))
    return bind(setitem, x, value, key=key), 0


@setitem.def_jvp
def _setitem_jvp(primals: list, tangents: list, *, key: Any):
    (x, value), (dx, dvalue) = primals, tangents
    ans = bind(setitem, x, value, key=key)
    if type(dvalue) is Zero:
        return ans, bind(setitem, dx, 0.0, key=key)
    dvalue = fit(dvalue, bind(getitem, x, key=key))
    return ans, bind(setitem, instantiate(dx, x), dvalue, key=key)


_SLICING = (slice, type(None), type(Ellipsis))  # basic indexing besides integers


def _gives_view(key: Any, ndim: int) -> bool:
    """Whether ``x[key]`` is a view of ``x`` (of ``ndim`` dimensions) in NumPy: basic indexing (integers, slices,
    ``...``, ``None``), except an integer for every axis (``x[0, 1]``, ``x1d[0]``), which returns a scalar, a copy."""
    entries = key if type(key) is tuple else (key,)
    integers = 0
    for k in entries:
        if type(k) in _SLICING:
            continue
        if type(k) is bool or not isinstance(k, numbers.Integral):
            return False
        integers += 1
    return integers < ndim or len(entries) > integers


class Relayout:
    """The key of a view holding all the entries of its base rearranged (``x.T``, ``x.mT``, ``permute_dims``,
    ``expand_dims``, ``squeeze``, ``flip``, ``moveaxis``, ``reshape``: NumPy returns views; under jit, NumPy's
    methods that return views): ``read(base)`` is the view,
    ``write(new)`` the whole base holding the view ``new`` (the inverse rearrangement)."""

    __slots__ = ("read", "write")

    def __init__(self, read: Callable, write: Callable):
        self.read, self.write = read, write


def note_view(base: Any, view: Any, key: Any) -> None:
    """Record ``view`` as the view of ``base`` at ``key`` (an index, or ``Relayout``): writes into either
    reach the other (``assign``; jit's recording has its own). No lock: a value is only ever used in the thread
    running its transform (levels are per thread; another thread's use raises before the view exists)."""
    view._view = (base, key)
    views = getattr(base, "_views", None)
    if views is None:
        views = base._views = []
    elif len(views) >= 64 and len(views) & (len(views) - 1) == 0:  # at powers of two: amortised O(1)
        views[:] = [ref for ref in views if ref() is not None]  # forget the views that have died
    views.append(weakref.ref(view))


_VIEWED = (Dual, Batched, JitTraced)  # the values that keep their views (a linearize tangent is never written)


def dual_getitem(x: Any, key: Any) -> Any:
    """``x[key]``; where NumPy returns a view (``_gives_view``), writes into the result reach ``x``."""
    key = _strip_key(key)
    out = getitem(x, key=key)
    if type(out) is type(x) and type(x) in _VIEWED and _gives_view(key, x.ndim):
        note_view(x, out, key)
    return out


def _as_view(x: Any, out: Any, read: Callable, write: Callable) -> Any:
    if type(out) is type(x) and type(x) in _VIEWED:
        note_view(x, out, Relayout(read, write))
    return out


# The namespace's functions that return views in NumPy: writes into the result reach x, which it sees change.
def permute_dims(x: Any, /, axes: tuple[int, ...]) -> Any:
    def write(new: Any) -> Any:  # the inverse permutation
        return manipulation.permute_dims(new, tuple(sorted(range(len(axes)), key=lambda k: axes[k] % len(axes))))
    return _as_view(x, manipulation.permute_dims(x, axes), lambda base: manipulation.permute_dims(base, axes), write)


def matrix_transpose(x: Any, /) -> Any:
    transpose = manipulation.matrix_transpose
    return _as_view(x, transpose(x), transpose, transpose)


def expand_dims(x: Any, /, axis: int = 0) -> Any:
    shape = tuple(x.shape)
    return _as_view(x, manipulation.expand_dims(x, axis=axis), lambda base: manipulation.expand_dims(base, axis=axis),
                    lambda new: reshape(new, shape))


def squeeze(x: Any, /, axis: int | tuple[int, ...]) -> Any:
    shape = tuple(x.shape)
    return _as_view(x, manipulation.squeeze(x, axis=axis), lambda base: manipulation.squeeze(base, axis=axis),
                    lambda new: reshape(new, shape))


def flip(x: Any, /, *, axis: int | tuple[int, ...] | None = None) -> Any:
    flipped = lambda value: manipulation.flip(value, axis=axis)  # noqa: E731 (its own inverse)
    return _as_view(x, flipped(x), flipped, flipped)


def moveaxis(x: Any, source: int | tuple[int, ...], destination: int | tuple[int, ...], /) -> Any:
    return _as_view(x, manipulation.moveaxis(x, source, destination),
                    lambda base: manipulation.moveaxis(base, source, destination),
                    lambda new: manipulation.moveaxis(new, destination, source))


def _shares_memory(x: Any, out: Any) -> bool:
    """Whether the backend arrays holding ``x`` and ``out`` may share memory (whether a reshape returned a view):
    in a jit recording also a guard that a replay sees the same (the layout is not in jit's signature)."""
    raw_x, raw_out = base_array(x), base_array(out)
    if type(raw_x) is JitTraced:
        return program_of(raw_x).memory_guard(raw_x, raw_out)
    return backend_of(raw_x).may_share_memory(raw_x, raw_out)


def _batch_axes(x: Any) -> list:
    """The axis of each batch of ``x`` in the array below it, outermost first (which axes of its backend array
    are the examples')."""
    axes = []
    while type(x) in (Dual, Batched):
        if type(x) is Batched:
            axes.append(x.axis)
            x = x.value
        else:
            x = x.primal
    return axes


def _same_layout(x: Any, new: Any) -> bool:
    """Whether ``x`` and ``new`` lie alike in memory: the same batch axes (an example's layout is its stack's
    strides without them) and the same strides of their backend arrays (in a jit recording: a replay checks that
    its arrays there lie alike too, or not)."""
    if _batch_axes(x) != _batch_axes(new):
        return False
    raw_x, raw_new = base_array(x), base_array(new)
    traced = next((v for v in (raw_x, raw_new) if type(v) is JitTraced), None)
    if traced is not None:
        return program_of(traced).same_layout(raw_x, raw_new)
    return backend_of(raw_x).layout(raw_x) == backend_of(raw_new).layout(raw_new)


def reshape_view(x: Any, /, shape: tuple[int, ...], *, copy: bool | None = None) -> Any:
    """``x`` in the shape ``shape``: a view of ``x`` where the backend's reshape returned one (NumPy: where
    the layout allows it, always for a C-contiguous x), else a copy; ``copy`` True or False decides."""
    out = manipulation.reshape(x, shape) if copy is None else manipulation.reshape(x, shape, copy=copy)
    if copy is None:
        copy = not _shares_memory(x, out)
    if copy:
        return out
    x_shape = tuple(x.shape)
    return _as_view(x, out, lambda base: manipulation.reshape(base, shape), lambda new: reshape(new, x_shape))


def read_view(base: Any, key: Any) -> Any:
    """The view of ``base`` at ``key`` (an index or ``Relayout``)."""
    if type(key) is Relayout:
        return key.read(base)
    return getitem(base, key=key)


def assign(x: Any, new: Any) -> None:
    """Make ``x`` (a dual or batched value) hold ``new`` (same shape and dtype), as a write into its memory
    would in NumPy: the base of a view is updated too, and the views of ``x`` see the new values. No array
    is written in place; the values are rebound."""
    view = getattr(x, "_view", None)
    if view is not None:
        base, key = view
        if type(key) is Relayout:  # the whole base, rearranged back
            assign(base, key.write(new))
        else:
            assign(base, setitem(base, new, key=key))  # refreshes x among the base's views
        return
    _rebind(x, new)


def assign_whole(x: Any, new: Any) -> None:
    """``x[...] = new`` (``x op= y``): the base of a view takes ``new`` at the view's key, or all of it rearranged
    back (``Relayout``: as ``x[...] = new`` of the base); a base takes it in its own layout (a later reshape is a
    view or a copy as NumPy's, which writes into x's memory), copied where ``new`` lies otherwise (every reshape
    of a 1-D layout is a view)."""
    view = getattr(x, "_view", None)
    if view is not None and type(view[1]) is Relayout:
        assign_whole(view[0], view[1].write(new))
        return
    keeps_layout = view is not None or x.ndim < 2 or _same_layout(x, new)
    assign(x, new if keeps_layout else setitem(x, new, key=...))


def _rebind(x: Any, new: Any) -> None:
    """Rebind ``x`` to ``new``, then each live view of ``x`` to its fresh region of it."""
    if type(x) is Dual and type(new) is Dual:
        x.level, x.primal, x.tangent, x.weak = new.level, new.primal, new.tangent, new.weak
    elif type(x) is Batched and type(new) is Batched:
        x.level, x.value, x.axis = new.level, new.value, new.axis
    else:  # (a value of a higher level of another kind cannot be stored in x)
        raise TypeError(f"x[key] = value on a value of {'vmap' if type(x) is Batched else 'jvp'}: value "
                        f"belongs to a transform nested inside it (a jvp inside a vmap, a vmap inside a jvp), which x "
                        f"cannot hold; build the result with xp.where or concat instead")
    for ref in getattr(x, "_views", ()):
        view = ref()
        if view is not None:
            _rebind(view, read_view(x, view._view[1]))


def dual_setitem(x: Any, key: Any, value: Any) -> None:
    """``x[key] = value`` on a dual or batched value: rebinds ``x`` (and its base, if it is a view) to the
    updated value; no array is written in place."""
    mask = _mapped_mask(key)
    if mask is not None:  # (the where's result, laid out afresh: x keeps its layout, as x[...] = result)
        assign_whole(x, _masked_where(x, mask, value))
        return
    assign(x, setitem(x, value, key=_strip_key(key)))


def _mapped_mask(key: Any) -> Any:
    """The boolean mask of ``x[mask] = v`` (the sole index) where it differs from example to example of a vmap
    (a value of it mapped at some level), else None."""
    lone = strip(_sole_index(key))
    layer = lone
    while type(layer) is Batched:
        if layer.axis is not None:
            return lone if _is_bool(lone) else None
        layer = strip(layer.value)
    return None


def _masked_where(x: Any, mask: Any, value: Any) -> Any:
    """``x[mask] = value`` with a mask of each example's own, as ``where``: the entries it selects take ``value``,
    which broadcasts against one entry (``x.shape[mask.ndim:]``), as in NumPy (a value for each selected entry
    cannot be batched: their number differs from example to example)."""
    if tuple(x.shape[:mask.ndim]) != tuple(mask.shape):
        raise IndexError(f"boolean index of shape {tuple(mask.shape)} does not match the indexed array's leading "
                         f"dimensions {tuple(x.shape[:mask.ndim])}")
    entry = x.ndim - mask.ndim
    if hasattr(value, "shape") and value.ndim > entry:  # (x[mask] has the shape (count, *entry))
        if value.ndim > entry + 1 or value.shape[0] != 1:
            raise NotImplementedError(f"vmap: x[mask] = v with a mask that differs from example to example and v "
                                      f"of shape {tuple(value.shape)}, a value for each selected entry (their number "
                                      f"differs from example to example); give v the shape of one entry, "
                                      f"{tuple(x.shape[mask.ndim:])}, or use xp.where")
        value = reshape(value, tuple(value.shape[1:]))
    # v takes x's dtype as the backend's write gives it (not x promoted with v and cast back: int64 through
    # float64 loses digits): a Python number written into a 0-d array (NumPy: NaN into integers raises;
    # array_api_strict: a float into integers raises), an array cast where the two promote (result_type raises
    # where the backend's write would, e.g. array_api_strict's float array into integers)
    if not hasattr(value, "shape"):
        cell = backend_of(base_array(x)).xp.zeros((), dtype=x.dtype)
        cell[...] = value
        value = cell
    elif value.dtype != x.dtype:
        backend_of(base_array(x)).xp.result_type(x.dtype, value.dtype)
        value = manipulation.astype(value, x.dtype)
    return where(reshape(mask, (*mask.shape, *(1,) * entry)), value, x)


def _gather_batch(prim: Primitive):
    """take / take_along_axis: indices (a parameter) may be batched too; then each example gathers
    with its own indices, a take_along_axis of the batch-first stacks."""
    def rule(values: list, axes: list, *, indices: Any, axis: Any):
        (x, _), (x_axis, index_axis) = values, axes
        x_rank = rank(x, x_axis)
        if index_axis is None:
            x = to_front(x, x_axis)
        else:
            x, indices = all_front([x, indices], [x_axis, index_axis])
        if axis is None:  # take from each example flattened
            x, axis, x_rank = reshape(x, (x.shape[0], -1)), 0, 1
        axis = axis % x_rank + 1
        if index_axis is None and prim is _take:
            return bind(prim, x, indices=indices, axis=axis), 0
        if index_axis is None:  # the same indices for every example (take_along_axis wants equal ranks)
            indices = broadcast_front(indices, x.shape[0])
        elif prim is _take:  # one example's indices are 1-D: laid along axis, broadcast elsewhere
            shape = [1] * x.ndim
            shape[0], shape[axis] = indices.shape[0], indices.shape[1]
            full = list(x.shape)
            full[axis] = indices.shape[1]
            indices = broadcast_to(reshape(indices, tuple(shape)), tuple(full))
        return bind(_take_along_axis, x, indices=indices, axis=axis), 0
    return rule


_take = linear("take", lambda x, *, indices, axis: xp_of(x).take(x, indices, axis=axis), batch=_gather_batch,
               array_params=("indices",))
_take_along_axis = linear("take_along_axis", lambda x, *, indices, axis: xp_of(x).take_along_axis(
    x, indices, axis=axis), batch=_gather_batch, array_params=("indices",))


def take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
    return _take(x, indices=strip(indices), axis=axis)


def take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
    return _take_along_axis(x, indices=strip(indices), axis=axis)


def _argsort_batch(prim: Primitive):
    def rule(values: list, axes: list, *, axis: int = -1, **params: Any):
        return bind(prim, to_front(values[0], axes[0]), axis=shift(axis), **params), 0
    return rule


argsort = nondifferentiable("argsort", batch=_argsort_batch)
nonzero = nondifferentiable("nonzero", multiple_results=True, batch=value_sized(
    "nonzero", "Keep the size fixed: compute with the mask itself (x != 0 in xp.where, xp.sum, ...) instead of "
    "its indices"))
_searchsorted = nondifferentiable("searchsorted", lambda x1, x2, *, side, sorter: xp_of(x1, x2).searchsorted(
    x1, x2, side=side, sorter=sorter), batch=looped)


def searchsorted(x1: Any, x2: Any, /, *, side: str = "left", sorter: Any = None) -> Any:
    """Insertion indices of ``x2`` into sorted ``x1`` (integers: no tangent)."""
    return _searchsorted(x1, x2, side=side, sorter=None if sorter is None else strip(sorter))


def sort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Any:
    """Sorted values; the tangent moves with its element."""
    order = strip(argsort(x, axis=axis, descending=descending, stable=stable))
    return take_along_axis(x, order, axis=axis)


__all__ = ["argsort", "nonzero", "searchsorted", "sort", "take", "take_along_axis"]
