"""Indexing (``x[key]``, functional ``x[key] = v``), take, take_along_axis, sorting."""
from __future__ import annotations

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


def dual_getitem(x: Dual, key: Any) -> Any:
    return getitem(x, key=_strip_key(key))


def dual_setitem(x: Dual, key: Any, value: Any) -> None:
    """``x[key] = value`` on a dual: rebinds ``x`` to the updated value; no array is written in place."""
    new = setitem(x, value, key=_strip_key(key))
    x.level, x.primal, x.tangent = new.level, new.primal, new.tangent


_take = linear("take", lambda x, *, indices, axis: xp_of(x).take(x, indices, axis=axis))
_take_along_axis = linear("take_along_axis", lambda x, *, indices, axis: xp_of(x).take_along_axis(
    x, indices, axis=axis))


def take(x: Any, indices: Any, /, *, axis: int | None = None) -> Any:
    return _take(x, indices=strip(indices), axis=axis)


def take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
    return _take_along_axis(x, indices=strip(indices), axis=axis)


argsort = nondifferentiable("argsort")
nonzero = nondifferentiable("nonzero", multiple_results=True)
searchsorted = nondifferentiable("searchsorted")


def sort(x: Any, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Any:
    """Sorted values; the tangent moves with its element."""
    order = strip(argsort(x, axis=axis, descending=descending, stable=stable))
    return take_along_axis(x, order, axis=axis)


__all__ = ["argsort", "nonzero", "searchsorted", "sort", "take", "take_along_axis"]
