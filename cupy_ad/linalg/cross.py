"""cross: the cross product of 3-vectors along an axis (array API linalg.cross).

Derivation: the product is bilinear, so d(x1 x x2) = dx1 x x2 + x1 x dx2; the rule is written with
this primitive itself, so it nests.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Zero
from ..namespace._rules import xp_of
from ..namespace.elementwise import add_tangents
from ..namespace.products import along_axis


def _impl(x1: Any, x2: Any, *, axis: int) -> Any:
    return xp_of(x1, x2).linalg.cross(x1, x2, axis=axis)


cross_p = Primitive("cross", _impl)
cross_p.def_batch(along_axis(cross_p))


@cross_p.def_jvp
def _jvp(primals: list, tangents: list, *, axis: int):
    (x1, x2), (dx1, dx2) = primals, tangents
    out = bind(cross_p, x1, x2, axis=axis)
    dout = Zero.like(out)
    if type(dx1) is not Zero:
        dout = bind(cross_p, dx1, x2, axis=axis)
    if type(dx2) is not Zero:
        dout = add_tangents(dout, bind(cross_p, x1, dx2, axis=axis))
    return out, dout


def cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """x1 x x2 along ``axis`` (size 3 in both; other dimensions broadcast), as the array API."""
    return cross_p(x1, x2, axis=axis)


__all__ = ["cross"]
