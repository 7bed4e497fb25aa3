"""Products: matmul, tensordot, vecdot and the linalg helpers that are linear (diagonal, trace).

Bilinear maps B(x, y) have d B = B(dx, y) + B(x, dy).
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, Zero, bind
from ._rules import backend_function, linear
from .elementwise import add_tangents


def _bilinear(name: str, impl: Any = None) -> Primitive:
    prim = Primitive(name, impl or backend_function(name))

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        (x, y), (dx, dy) = primals, tangents
        ans = bind(prim, x, y, **params)
        out: Any = Zero.like(ans)
        if type(dx) is not Zero:
            out = bind(prim, dx, y, **params)
        if type(dy) is not Zero:
            out = add_tangents(out, bind(prim, x, dy, **params))
        return ans, out

    return prim


matmul = _bilinear("matmul", lambda x, y: x @ y)
tensordot = _bilinear("tensordot")
vecdot = _bilinear("vecdot")
outer = _bilinear("outer", backend_function("outer", "linalg"))
diagonal = linear("diagonal", module="linalg")
trace = linear("trace", module="linalg")

__all__ = ["diagonal", "matmul", "outer", "tensordot", "trace", "vecdot"]
