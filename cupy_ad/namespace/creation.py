"""Creation functions and dtype helpers, bound to a backend.

Inside a ``jvp`` the arrays they make are dual values with a zero tangent (see ``core.constant``),
so ``xp.ones_like(x) * x`` works on every backend, array_api_strict included.
"""
from __future__ import annotations

from typing import Any

from ..backends import Backend, backend_of
from ..core import Batched, Dual, Recorded, constant, strip
from .manipulation import astype, broadcast_to, stack


def creation_functions(backend: Backend) -> dict[str, Any]:
    xp = backend.xp

    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Any:
        if isinstance(obj, (Dual, Batched, Recorded)):
            if dtype is not None and dtype != obj.dtype:
                return astype(obj, dtype)
            # a new shell: ``x[k] = v`` on the result must not rebind ``obj`` (arrays are never written)
            if not copy:
                return obj
            if type(obj) is Dual:
                return Dual(obj.level, obj.primal, obj.tangent)
            if type(obj) is Batched:
                return Batched(obj.level, obj.value, obj.axis)
            return type(obj)(obj.level, obj.value, obj.var)
        if isinstance(obj, (list, tuple)) and any(hasattr(v, "shape") for v in obj):  # duals, 0-d arrays
            return stack([asarray(v, dtype=dtype) for v in obj])
        return constant(xp.asarray(obj, dtype=dtype, device=device, copy=copy))

    def full(shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Any:
        if isinstance(fill_value, Dual) or hasattr(fill_value, "shape"):  # a 0-d array (a dual: its tangent too)
            value = fill_value if dtype is None else astype(fill_value, dtype)
            return broadcast_to(value, tuple(shape) if not isinstance(shape, int) else (shape,))
        return constant(xp.full(shape, fill_value, dtype=dtype, device=device))

    def example(x: Any) -> Any:
        """A raw array with the shape and dtype ``x`` shows (one example of a batched value; the raw array
        itself under duals)."""
        raw = strip(x)
        return xp.empty(raw.shape, dtype=raw.dtype) if type(raw) in (Batched, Recorded) else raw

    def like(name: str) -> Any:
        def make(x: Any, /, *args: Any, **kwargs: Any) -> Any:
            raw = example(x)
            return constant(getattr(backend_of(raw).xp, name)(raw, *args, **kwargs))
        make.__name__ = name
        return make

    def stripped(fn: Any) -> Any:
        return lambda *args, **kwargs: fn(*(a.dtype if type(strip(a)) in (Batched, Recorded) else strip(a)
                                            for a in args), **kwargs)

    def constants_from(fn: Any) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            return constant(fn(*args, **kwargs))
        make.__name__ = fn.__name__
        return make

    functions = {name: constants_from(getattr(xp, name))  # Dask has no from_dlpack
                 for name in ("zeros", "ones", "empty", "eye", "arange", "linspace", "from_dlpack") if hasattr(xp, name)}
    functions.update({name: getattr(xp, name) for name in ("can_cast", "finfo", "iinfo")})
    def full_like(x: Any, /, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Any:
        if isinstance(fill_value, Dual) or hasattr(fill_value, "shape"):
            return full(x.shape, fill_value, dtype=x.dtype if dtype is None else dtype)
        raw = example(x)
        return constant(backend_of(raw).xp.full_like(raw, fill_value, dtype=dtype, device=device))

    functions.update({name: like(name) for name in ("zeros_like", "ones_like", "empty_like")})
    functions["full_like"] = full_like
    functions.update(asarray=asarray, full=full, isdtype=xp.isdtype, result_type=stripped(xp.result_type))
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float32", "float64", "complex64", "complex128", "e", "pi", "inf", "nan", "newaxis"):
        functions[name] = getattr(xp, name)
    if hasattr(xp, "__array_namespace_info__"):
        functions["__array_namespace_info__"] = xp.__array_namespace_info__
    return functions
