"""Indexing (``x[key]``, functional ``x[key] = v``), take, take_along_axis, sorting."""
from __future__ import annotations

import numbers
import weakref
from typing import Any

from ..core import Dual, Primitive, Zero, bind, strip
from ._rules import instantiate, linear, nondifferentiable, xp_of
from .elementwise import fit


def _strip_key(key: Any) -> Any:
    if isinstance(key, tuple):
        return tuple(strip(k) for k in key)
    return strip(key)


getitem = linear("getitem", lambda x, *, key: x[key])


def _setitem_impl(x: Any, value: Any, *, key: Any) -> Any:
    out = xp_of(x).asarray(x, copy=True)  # never write into the caller's array
    out[key] = value
    return out


setitem = Primitive("setitem", _setitem_impl)


@setitem.def_jvp
def _setitem_jvp(primals: list, tangents: list, *, key: Any):
    (x, value), (dx, dvalue) = primals, tangents
    ans = bind(setitem, x, value, key=key)
    if type(dvalue) is Zero:
        return ans, bind(setitem, dx, 0.0, key=key)
    dvalue = fit(dvalue, bind(getitem, x, key=key))
    return ans, bind(setitem, instantiate(dx, x), dvalue, key=key)


_BASIC = (int, slice, type(None), type(Ellipsis))


def _is_basic(key: Any) -> bool:
    """Whether ``key`` is basic indexing (integers, slices, ``...``, ``None``): NumPy returns a view."""
    for k in key if type(key) is tuple else (key,):
        if type(k) not in _BASIC and (type(k) is bool or not isinstance(k, numbers.Integral)):
            return False
    return True


def dual_getitem(x: Dual, key: Any) -> Any:
    """``x[key]``; with basic indexing the result is a view of ``x``: writes into it reach ``x``."""
    key = _strip_key(key)
    out = getitem(x, key=key)
    if _is_basic(key):
        out._view = (x, key)
        views = getattr(x, "_views", None)
        if views is None:
            views = x._views = []
        elif len(views) >= 64 and len(views) & (len(views) - 1) == 0:  # at powers of two: amortised O(1)
            views[:] = [ref for ref in views if ref() is not None]  # forget the views that have died
        views.append(weakref.ref(out))
    return out


def assign(x: Dual, new: Any) -> None:
    """Make ``x`` hold ``new`` (same shape and dtype), as a write into its memory would in NumPy: the
    base of a view is updated too, and the views of ``x`` see the new values. No array is written in
    place; the duals are rebound."""
    view = getattr(x, "_view", None)
    if view is not None:
        base, key = view
        assign(base, setitem(base, new, key=key))  # refreshes x among the base's views
        return
    _rebind(x, new)


def _rebind(x: Dual, new: Dual) -> None:
    """Rebind ``x`` to ``new``, then each live view of ``x`` to its fresh region of it."""
    x.level, x.primal, x.tangent, x.weak = new.level, new.primal, new.tangent, new.weak
    for ref in getattr(x, "_views", ()):
        view = ref()
        if view is not None:
            _rebind(view, getitem(x, key=view._view[1]))


def dual_setitem(x: Dual, key: Any, value: Any) -> None:
    """``x[key] = value`` on a dual: rebinds ``x`` (and its base, if it is a view) to the updated
    value; no array is written in place."""
    assign(x, setitem(x, value, key=_strip_key(key)))


_take = linear("take", lambda x, *, indices, axis: xp_of(x).take(x, indices, axis=axis))
_take_along_axis = linear("take_along_axis", lambda x, *, indices, axis: xp_of(x).take_along_axis(
    x, indices, axis=axis))


def take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
    return _take(x, indices=strip(indices), axis=axis)


def take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
    return _take_along_axis(x, indices=strip(indices), axis=axis)


argsort = nondifferentiable("argsort")
nonzero = nondifferentiable("nonzero", multiple_results=True)
_searchsorted = nondifferentiable("searchsorted", lambda x1, x2, *, side, sorter: xp_of(x1, x2).searchsorted(
    x1, x2, side=side, sorter=sorter))


def searchsorted(x1: Any, x2: Any, /, *, side: str = "left", sorter: Any = None) -> Any:
    """Insertion indices of ``x2`` into sorted ``x1`` (integers: no tangent)."""
    return _searchsorted(x1, x2, side=side, sorter=None if sorter is None else strip(sorter))


def sort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Any:
    """Sorted values; the tangent moves with its element."""
    order = strip(argsort(x, axis=axis, descending=descending, stable=stable))
    return take_along_axis(x, order, axis=axis)


__all__ = ["argsort", "nonzero", "searchsorted", "sort", "take", "take_along_axis"]
