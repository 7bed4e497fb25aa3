"""Creation functions and dtype helpers, bound to a backend, with the standard's signatures.

Inside a ``jvp`` the arrays they make are dual values with a zero tangent (see ``values.constant``),
so ``xp.ones_like(x) * x`` works on every backend, array_api_strict included. Dtype helpers
(``finfo``, ``can_cast``, ``result_type`` ...) read the dtype of a dual value.
"""
from __future__ import annotations

from typing import Any

from ..backends import Backend, backend_of
from ..values import Batched, Dual, JitTraced, Recorded, constant, levelled, strip
from .indexing import dual_getitem
from .elementwise import floor, where
from .manipulation import astype, broadcast_to, stack, to_device


def _dtype_of(x: Any) -> Any:
    return x.dtype if type(x) in (Dual, Batched, Recorded, JitTraced) else x


def _sequence_holds_arrays(obj: Any) -> bool:
    """Whether a (nested) list or tuple holds arrays (dual values, 0-d arrays) anywhere."""
    return isinstance(obj, (list, tuple)) and any(hasattr(v, "shape") or _sequence_holds_arrays(v) for v in obj)


def _new_shell(x: Any) -> Any:
    """A traced value of the same data in a new object (writing into one does not rebind the other)."""
    if type(x) is Dual:
        return Dual(x.level, x.primal, x.tangent, x.weak)
    if type(x) is Batched:
        return Batched(x.level, x.value, x.axis)
    return type(x)(x.level, x.value, x.var)  # a recording's (linearize, jit)


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that were given (older backends may lack ``device=`` or ``copy=``)."""
    return {k: v for k, v in kwargs.items() if v is not None}


def creation_functions(backend: Backend) -> dict[str, Any]:
    xp = backend.xp

    def filled(name: str) -> Any:
        def make(shape: Any, *, dtype: Any = None, device: Any = None) -> Any:
            return constant(getattr(xp, name)(shape, **_given(dtype=dtype, device=device)))
        make.__name__ = make.__qualname__ = name
        return make

    def example(x: Any) -> Any:
        """A raw array with the shape and dtype ``x`` shows (one example of a batched value; the raw array
        itself under duals, and a jit recording's array: what is made from it is a constant of the program,
        as its shape and dtype are of the signature)."""
        raw = strip(x)
        if type(raw) is JitTraced:
            return raw.value
        return xp.empty(raw.shape, dtype=raw.dtype) if type(raw) in (Batched, Recorded) else raw

    def filled_like(name: str) -> Any:
        def make(x: Any, /, *, dtype: Any = None, device: Any = None) -> Any:
            raw = example(x)
            return constant(getattr(backend_of(raw).xp, name)(raw, **_given(dtype=dtype, device=device)))
        make.__name__ = make.__qualname__ = name
        return make

    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Any:
        if isinstance(obj, (Dual, Batched, Recorded)):
            if dtype is not None and dtype != obj.dtype:
                obj = astype(obj, dtype)
            elif copy:  # a new shell: ``x[k] = v`` on the result must not rebind ``obj``
                obj = _new_shell(obj)
            return obj if device is None else to_device(obj, device)
        if _sequence_holds_arrays(obj):  # (nested) sequences of duals or 0-d arrays: stacked, tangents too
            return stack([asarray(v, dtype=dtype, device=device) for v in obj])
        return constant(xp.asarray(obj, **_given(dtype=dtype, device=device, copy=copy)))

    def from_dlpack(x: Any, /, *, device: Any = None, copy: bool | None = None) -> Any:
        if isinstance(x, Dual):  # the same values and tangent; without a copy, a view (writes are shared)
            out = Dual(x.level, x.primal, x.tangent) if copy else dual_getitem(x, ...)
            return out if device is None else to_device(out, device)
        return constant(xp.from_dlpack(x, **_given(device=device, copy=copy)))

    def eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None, device: Any = None) -> Any:
        return constant(xp.eye(n_rows, n_cols, k=k, **_given(dtype=dtype, device=device)))

    def arange(start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None) -> Any:
        return constant(xp.arange(start, stop, step, **_given(dtype=dtype, device=device)))

    def linspace(start: Any, stop: Any, /, num: int, *, dtype: Any = None, device: Any = None,
                 endpoint: bool = True) -> Any:
        """``num`` evenly spaced values; differentiable in traced endpoints ``start`` and ``stop``."""
        if not (levelled(start) or levelled(stop)):
            return constant(xp.linspace(start, stop, num, endpoint=endpoint, **_given(dtype=dtype, device=device)))
        # NumPy's formula, start + k (stop - start) / div with div = num - 1 (endpoint) or num, the last value
        # stop when endpoint: linear in the endpoints, tangent dstart (1 - k / div) + dstop k / div.
        # Computed in the endpoints' type, then cast to dtype (NumPy's integer dtypes: floored first), as NumPy's.
        raw = [example(v) if levelled(v) else v for v in (start, stop)]
        work = xp.linspace(*raw, 1, **_given(device=device)).dtype
        out_dtype = xp.linspace(*raw, 1, **_given(dtype=dtype, device=device)).dtype  # the backend's result type
        start, stop = (astype(v, work) if levelled(v) else v for v in (start, stop))
        real = xp.finfo(work).dtype if xp.isdtype(work, "complex floating") else work
        steps = constant(xp.arange(num, dtype=real, **_given(device=device)))
        div = num - 1 if endpoint else num
        values = steps * ((stop - start) / div if div > 0 else stop - start) + start
        values = where(steps == num - 1, stop, values) if endpoint and num > 1 else values
        if out_dtype == work:
            return values
        return astype(floor(values) if xp.isdtype(out_dtype, "integral") else values, out_dtype)

    def full(shape: Any, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Any:
        if isinstance(fill_value, Dual) or hasattr(fill_value, "shape"):  # a 0-d array (a dual: its tangent too)
            value = fill_value if dtype is None else astype(fill_value, dtype)
            return broadcast_to(value, tuple(shape) if not isinstance(shape, int) else (shape,))
        return constant(xp.full(shape, fill_value, **_given(dtype=dtype, device=device)))

    def full_like(x: Any, /, fill_value: Any, *, dtype: Any = None, device: Any = None) -> Any:
        if isinstance(fill_value, Dual) or hasattr(fill_value, "shape"):
            return full(x.shape, fill_value, dtype=x.dtype if dtype is None else dtype)
        raw = example(x)
        return constant(backend_of(raw).xp.full_like(raw, fill_value, **_given(dtype=dtype, device=device)))

    def finfo(type: Any, /) -> Any:  # noqa: A002 - the standard's name
        return xp.finfo(_dtype_of(type))

    def iinfo(type: Any, /) -> Any:  # noqa: A002 - the standard's name
        return xp.iinfo(_dtype_of(type))

    def can_cast(from_: Any, to: Any, /) -> bool:
        return xp.can_cast(_dtype_of(from_), to)

    def result_type(*arrays_and_dtypes: Any) -> Any:
        return xp.result_type(*map(_dtype_of, arrays_and_dtypes))

    def isdtype(dtype: Any, kind: Any) -> bool:
        return xp.isdtype(dtype, kind)

    functions = dict(asarray=asarray, from_dlpack=from_dlpack, eye=eye, arange=arange, linspace=linspace, full=full,
                     full_like=full_like, finfo=finfo, iinfo=iinfo, can_cast=can_cast, result_type=result_type,
                     isdtype=isdtype)
    functions.update({name: filled(name) for name in ("zeros", "ones", "empty")})
    functions.update({name: filled_like(name) for name in ("zeros_like", "ones_like", "empty_like")})
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float32", "float64", "complex64", "complex128", "e", "pi", "inf", "nan", "newaxis"):
        functions[name] = getattr(xp, name)
    if hasattr(xp, "__array_namespace_info__"):
        functions["__array_namespace_info__"] = xp.__array_namespace_info__
    return functions
