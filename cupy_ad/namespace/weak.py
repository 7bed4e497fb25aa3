"""Weak typing of Python scalars (as JAX's weak types, and as NumPy and the array API promote a
Python scalar operand): a Python-scalar primal must not change the dtype the code computes in.

``jvp`` turns a Python-scalar primal into a 0-d dual (float64, complex128, int64 or bool) marked
``weak``; so do Python scalars in ``scan``'s init, until one call of the body tells the dtype (and the
backend) it returns for them (``type_weak_init``). An elementwise function given weak and other
("strong") operands first casts each weak operand to the dtype a Python scalar of its kind takes next
to the strong ones (``2.0 * x32`` is float32, ``2.0 * x_int`` float64, ``2j * x32`` complex64); the
cast is differentiable, so the tangent follows. An elementwise function of weak operands only
(``xp.sin(s)``, ``s * 2.0``) returns a weak value. Everything else (reductions, products, shapes)
returns strong values.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import optree

from ..backends import backend_of
from ..core import Primitive, bind
from ..values import Dual, Zero, base_array, new_level
from ._rules import backend_of_args, xp_of
from .manipulation import astype


def weakly_typed(x: Any) -> bool:
    """A Python scalar (not a NumPy scalar), or a weak dual."""
    if type(x) is Dual:
        return x.weak
    return not hasattr(x, "dtype") and isinstance(x, numbers.Number)  # (arrays: no ABC check)


def _is_strong(a: Any) -> bool:
    return (not a.weak) if type(a) is Dual else hasattr(a, "dtype")


_KINDS = ("bool", "integral", "real floating", "complex floating")


def dtype_kind(xp: Any, dtype: Any) -> str:
    """"bool", "integral", "real floating" or "complex floating"."""
    return next(k for k in _KINDS if xp.isdtype(dtype, k))


def _cast_next_to(weak: Any, target: Any, xp: Any) -> Any:
    """``weak`` cast to the dtype a Python scalar of its kind takes next to arrays of dtype ``target``."""
    mine, theirs = dtype_kind(xp, weak.dtype), dtype_kind(xp, target)
    if _KINDS.index(mine) > _KINDS.index(theirs) and theirs in ("bool", "integral"):
        return weak  # a float next to integers: the default float (NumPy's promotion)
    if mine == "complex floating" and theirs == "real floating":
        target = xp.complex64 if target == xp.float32 else xp.complex128
    return weak if weak.dtype == target else astype(weak, target)


_DTYPE_NAMES = ("bool", "int64", "float64", "complex128")


def _remade_in(weak: Any, xp: Any, source_xp: Any) -> Any:
    """A weak scalar made on another backend (jvp's default, when its only primals are Python
    scalars and the arrays come from a closure) remade in ``xp``: a 0-d value and its tangents."""
    if type(weak) is Dual:
        return Dual(weak.level, _remade_in(weak.primal, xp, source_xp), _remade_in(weak.tangent, xp, source_xp),
                    weak.weak)
    # (a weak scalar is bool, int64, float64 or complex128: every namespace has these)
    dtype = next(getattr(xp, name) for name in _DTYPE_NAMES if getattr(source_xp, name) == weak.dtype)
    return Zero((), dtype) if type(weak) is Zero else xp.asarray(weak.item(), dtype=dtype)


def on_backend_of(weak: Any, strong: list) -> Any:
    """``weak`` remade on the backend of the arrays ``strong`` where it is on another one."""
    mine, theirs = backend_of_args((weak,)), backend_of_args(strong)
    return weak if mine.name == theirs.name else _remade_in(weak, theirs.xp, mine.xp)


def bind_elementwise(prim: Primitive, args: tuple, params: dict) -> Any:
    """``bind(prim, *args, **params)`` for an elementwise ``prim`` with at least one weak argument."""
    strong = [a for a in args if _is_strong(a)]
    if not strong:
        out = bind(prim, *args, **params)
        if type(out) is Dual:
            out.weak = True
        return out
    xp = xp_of(*strong)
    dtypes = [a.dtype for a in strong]  # a boolean condition (where's) does not type the values
    target = xp.result_type(*([d for d in dtypes if not xp.isdtype(d, "bool")] or dtypes))
    args = [on_backend_of(a, strong) if type(a) is Dual and a.weak else a for a in args]
    return bind(prim, *(_cast_next_to(a, target, xp) if type(a) is Dual and a.weak else a for a in args), **params)


def type_weak_init(f: Callable, init_leaves: list, weak: list, carry_spec: Any, x0: Any) -> list:
    """``scan``'s init leaves given as Python scalars (``weak``; made arrays of the default backend where no
    other leaf tells one, as jvp's Python-scalar primals) take the backend and the dtype of their kind of the
    arrays the body returns for them (``0.0`` next to float32 work: float32), as in JAX: one call of ``f`` at a
    level of its own, with those leaves handed to it as weak duals. A body that refuses duals there
    (array_api_strict arrays refuse a dual right operand: ``W * c``) keeps NumPy's default dtypes. A jit body
    whose recording refuses the probe (a weak scalar remade on the backend of the arrays it closes over: its
    value read, which a replay cannot repeat) is probed as its Python function, what the eager body returns."""
    with new_level() as level:
        probe = optree.tree_unflatten(carry_spec, [Dual(level, v, Zero.like(v), weak=True) if w else v
                                                   for v, w in zip(init_leaves, weak)])
        try:
            try:
                carry, _ = f(probe, x0)
            except TypeError:
                if not hasattr(f, "program_for"):
                    raise
                carry, _ = f.__wrapped__(probe, x0)  # (jit's functools.wraps)
        except TypeError:  # a genuine error is raised again by the first step
            return init_leaves
    returned = optree.tree_leaves(carry)
    if len(returned) != len(init_leaves):  # the first step reports the mismatch
        return init_leaves

    def typed(v: Any, r: Any) -> Any:
        v = on_backend_of(v, [r])
        xp = backend_of(base_array(v)).xp
        return astype(v, r.dtype) if r.dtype != v.dtype and dtype_kind(xp, r.dtype) == dtype_kind(xp, v.dtype) else v

    # (a Python scalar returned for a leaf: the first step makes it an array of the leaf's dtype)
    return [typed(v, r) if w and hasattr(r, "dtype") else v for v, r, w in zip(init_leaves, returned, weak)]


__all__ = ["bind_elementwise", "dtype_kind", "on_backend_of", "type_weak_init", "weakly_typed"]
