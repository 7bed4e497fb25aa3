"""Helpers for writing JVP rules: backends and dtypes of arguments, symbolic zeros, and the factories
of linear and non-differentiable primitives.

This module sits below every module of primitives; the elementwise factory, which sums tangents with
the ``add`` primitive, lives with ``add`` in :mod:`.elementwise`.
"""
from __future__ import annotations

from typing import Any, Callable

from ..backends import backend_of
from ..core import Primitive, bind
from ..values import Dual, JitTraced, Zero, base_array, strip


def backend_of_args(args: Any) -> Any:
    """The backend of the first array among ``args`` (duals, batches and recordings looked through), or
    the recording backend of a ``jit`` recording's value among them (its calls are recorded)."""
    first = None
    for a in args:
        if type(a) is JitTraced:
            return backend_of(a)
        if first is None and hasattr(a, "dtype"):  # arrays, traced values and NumPy scalars, not Python scalars
            first = a
    if first is None:
        raise TypeError("expected at least one array argument")
    return backend_of(base_array(first))


def xp_of(*args: Any) -> Any:
    return backend_of_args(args).xp


def backend_function(name: str, module: str | None = None) -> Callable:
    """An implementation calling the backend namespace's ``name`` (in ``module``, e.g. linalg)."""
    if module is None:
        def impl(*args: Any, **params: Any) -> Any:
            return getattr(backend_of_args(args).xp, name)(*args, **params)
    else:
        def impl(*args: Any, **params: Any) -> Any:
            return getattr(getattr(backend_of_args(args).xp, module), name)(*args, **params)
    impl.__name__ = name
    return impl


_DTYPE_KINDS: dict = {}  # (dtype type, dtype, kind) -> bool: xp.isdtype costs microseconds, rules ask often


def _has_kind(x: Any, kind: Any) -> bool:
    # The dtype's type comes first: libraries' dtypes may hash alike, and the tuple comparison then
    # stops at the types instead of comparing dtypes across libraries (array_api_strict warns).
    key = (type(x.dtype), x.dtype, kind)
    try:
        return _DTYPE_KINDS[key]
    except KeyError:
        answer = _DTYPE_KINDS[key] = bool(backend_of_args((x,)).xp.isdtype(x.dtype, kind))
        return answer


def is_complex_dtype(x: Any) -> bool:
    return _has_kind(x, "complex floating")


def is_inexact_dtype(x: Any) -> bool:
    return _has_kind(x, ("real floating", "complex floating"))


def instantiate(t: Any, like: Any) -> Any:
    """``t`` as an array: symbolic zeros become zeros shaped like the primal ``like``."""
    if type(t) is not Zero:
        return t
    raw = strip(like)
    xp = backend_of(base_array(raw)).xp
    return xp.zeros(raw.shape, dtype=raw.dtype, device=raw.device) if hasattr(raw, "device") \
        else xp.zeros(raw.shape, dtype=raw.dtype)


def linear(name: str, impl: Callable | None = None, *, module: str | None = None, batch: Callable | None = None,
           array_params: tuple = ()) -> Primitive:
    """A primitive linear in its array arguments: its JVP applies it to the tangents. ``batch(prim)``
    makes its batching rule (without one, vmap refuses the primitive)."""
    prim = Primitive(name, impl or backend_function(name, module), array_params=array_params)
    prim.batch = batch(prim) if batch else None

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        # Array arguments are replaced by their tangents (zeros for constants and integer arrays);
        # non-array arguments (shapes, axes) are passed on unchanged.
        ans = bind(prim, *primals, **params)
        args = [instantiate(t, p) if type(p) is Dual or hasattr(p, "dtype") else p
                for p, t in zip(primals, tangents)]
        return ans, bind(prim, *args, **params)

    return prim


def nondifferentiable(name: str, impl: Callable | None = None, *, module: str | None = None,
                      multiple_results: bool = False, batch: Callable | None = None) -> Primitive:
    """A primitive whose outputs carry zero tangents (comparisons, rounding, indices); ``batch(prim)``
    makes its batching rule (without one, vmap refuses the primitive)."""
    prim = Primitive(name, impl or backend_function(name, module), multiple_results=multiple_results)
    prim.batch = batch(prim) if batch else None

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        ans = bind(prim, *primals, **params)
        if multiple_results:
            return ans, tuple(map(Zero.like, ans))
        return ans, Zero.like(ans)

    return prim


def value_sized(what: str, instead: str) -> Callable[[Primitive], Callable]:
    """``batch`` of :func:`nondifferentiable` for a function (``what``) whose output size follows its
    input's values: each example would get an output of its own size, which cannot be stacked into one
    array (no batching rule can exist); vmap refuses it saying what to write ``instead``."""
    def refusal(prim: Primitive) -> Callable:
        def rule(values: list, axes: list, **params: Any):
            raise NotImplementedError(
                f"vmap: {what} gives each example an output whose size follows that example's values, and "
                f"outputs of different sizes cannot be stacked into one array. {instead}; or call f outside "
                f"vmap (a Python loop over the examples)")
        return rule
    return refusal


_MOVED = ("add_tangents", "elementwise", "fit")  # to .elementwise, next to ``add``, which they use


def __getattr__(name: str) -> Any:
    """``from ._rules import elementwise`` (and fit, add_tangents) as before they moved; imported on
    first use, so that this module still imports nothing above it."""
    if name in _MOVED:
        from . import elementwise

        return getattr(elementwise, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Dual", "Zero", "backend_function", "backend_of_args", "instantiate", "is_complex_dtype", "is_inexact_dtype",
           "linear", "nondifferentiable", "xp_of"]
