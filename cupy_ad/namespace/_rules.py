"""Helpers for writing JVP rules: symbolic-zero arithmetic and rule factories (with their batching rules)."""
from __future__ import annotations

from typing import Any, Callable

from ..backends import backend_of
from ..core import Dual, JitTraced, Primitive, Zero, base_array, bind, strip


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


def fit(term: Any, ans: Any) -> Any:
    """Broadcast and cast a tangent term to the output's shape and dtype."""
    if term.shape != ans.shape:
        term = _manipulation.broadcast_to(term, ans.shape)
    if term.dtype != ans.dtype:
        term = _manipulation.astype(term, ans.dtype)
    return term


def add_tangents(a: Any, b: Any) -> Any:
    if type(a) is Zero:
        return b
    if type(b) is Zero:
        return a
    return _elementwise.add(a, b)


def elementwise(name: str, *derivatives: Callable | None, impl: Callable | None = None) -> Primitive:
    """An elementwise primitive from one derivative per argument (``None``: not differentiable).

    ``derivative(g, ans, *args)`` is the tangent contribution of that argument's tangent ``g``;
    contributions are broadcast to the output and summed, skipping symbolic zeros.
    """
    prim = Primitive(name, impl or backend_function(name))
    prim.batch = _batching.broadcasting(prim)

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        ans = bind(prim, *primals, **params)
        out: Any = Zero.like(ans)
        for derivative, g in zip(derivatives, tangents):
            if derivative is not None and type(g) is not Zero:
                out = add_tangents(out, fit(derivative(g, ans, *primals), ans))
        return ans, out

    return prim


def linear(name: str, impl: Callable | None = None, *, module: str | None = None, batch: Callable,
           array_params: tuple = ()) -> Primitive:
    """A primitive linear in its array arguments: its JVP applies it to the tangents. ``batch(prim)``
    makes its batching rule (see :mod:`._batching`)."""
    prim = Primitive(name, impl or backend_function(name, module), array_params=array_params)
    prim.batch = batch(prim)

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
    """A primitive whose outputs carry zero tangents (comparisons, rounding, indices); batched as an
    elementwise function unless ``batch(prim)`` makes its batching rule."""
    prim = Primitive(name, impl or backend_function(name, module), multiple_results=multiple_results)
    prim.batch = (batch or _batching.broadcasting)(prim)

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        ans = bind(prim, *primals, **params)
        if multiple_results:
            return ans, tuple(map(Zero.like, ans))
        return ans, Zero.like(ans)

    return prim


# Bound at the end: these modules import this one (by then it is complete), and a module-level name
# costs nothing per rule call, unlike an import inside the function.
from . import _batching  # noqa: E402
from . import elementwise as _elementwise  # noqa: E402
from . import manipulation as _manipulation  # noqa: E402

__all__ = ["Dual", "Zero", "add_tangents", "backend_function", "elementwise", "fit", "instantiate",
           "is_complex_dtype", "is_inexact_dtype", "linear", "nondifferentiable", "xp_of"]
