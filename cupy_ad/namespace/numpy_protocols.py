"""NumPy's protocols on dual values: plain NumPy code is differentiated.

NumPy hands a ufunc call with a dual argument (``np.sin(x)``, ``ndarray + x``, ``np.add.reduce``,
SciPy's special functions such as ``scipy.special.erf(x)``) to ``Dual.__array_ufunc__`` (NEP 13)
and any other dispatched function (``np.sum``, ``np.linalg.solve``) to ``Dual.__array_function__``
(NEP 18). Both look the NumPy function up by name in the tables below and call its equivalent in
the array namespace of the dual values, ``xp``, whatever their backend (NumPy's functions take
CuPy and array_api_strict arrays too, through their own protocols or by conversion). Arguments
are matched by NumPy's own signature; each adapter takes, under NumPy's names, the arguments it
can honour. Anything else raises a TypeError naming the way out: a NumPy argument the equivalent
cannot honour (``out=``, ``where=``, ``order="F"``) or a function without equivalent.

``__array_ufunc__`` is a descriptor: NumPy looks it up on the type and gets the handler; on an
instance over another backend than NumPy it reads ``None``, so that CuPy (which reads it on the
instance) keeps deferring its operators (``cupy_array @ x``) to the dual's reflected ones.

``Dual.__getattr__`` turns NumPy-only methods (``x.sum()``, ``x.reshape(...)``) into an
AttributeError naming the namespace function.

The values of ``vmap`` (``Batched``) get the same protocols: ``np.sin(x)`` inside a mapped function
is ``xp.sin(x)`` of one example, batched like it.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from ..backends import backend_of
from ..values import NUMPY_WRITERS, Dual, base_array, writes_into

_USE_NAMESPACE = "xp = x.__array_namespace__()"

# Ufuncs: NumPy's name -> the namespace's where they differ (the namespace also has NumPy's
# spellings arcsin, power, absolute, conjugate, ...); the others share the name.
_UFUNC_RENAMES = {"invert": "bitwise_invert", "left_shift": "bitwise_left_shift",
                  "right_shift": "bitwise_right_shift", "rint": "round", "fabs": "abs"}
_REDUCE = {"add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min", "logical_and": "all",
           "logical_or": "any"}
_ACCUMULATE = {"add": "cumulative_sum", "multiply": "cumulative_prod"}


def _axis(axis: Any) -> Any:
    return tuple(axis) if isinstance(axis, list) else axis


def _flat(xp: Any, a: Any) -> Any:
    return xp.reshape(a, (-1,))


def _dot(xp: Any, a: Any, b: Any) -> Any:
    if a.ndim == 0 or b.ndim == 0:
        return xp.multiply(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        return xp.matmul(a, b)
    return xp.tensordot(a, b, axes=((a.ndim - 1,), (max(b.ndim - 2, 0),)))


def _inner(xp: Any, a: Any, b: Any) -> Any:
    if a.ndim == 0 or b.ndim == 0:
        return xp.multiply(a, b)
    return xp.tensordot(a, b, axes=((a.ndim - 1,), (b.ndim - 1,)))


def _on_last_two_axes(xp: Any, a: Any, axis1: int, axis2: int) -> Any:
    """``a`` with its axes axis1, axis2 moved last (NumPy's diagonal and trace take the first two)."""
    return xp.moveaxis(a, (axis1, axis2), (-2, -1))


def _norm(xp: Any, x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A002
    """numpy.linalg.norm: the 2-norm of the flattened array, a vector norm along one axis, or a
    matrix norm over two (a 2-D array with ``ord`` given)."""
    axis = _axis(axis)
    if axis is None and ord is not None:
        if x.ndim > 2:
            raise ValueError("Improper number of dimensions to norm.")
        axis = tuple(range(x.ndim))
    if axis is None or isinstance(axis, int) or len(axis) == 1:
        return xp.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=2 if ord is None else ord)
    axes = tuple(a % x.ndim for a in axis)
    out = xp.linalg.matrix_norm(xp.moveaxis(x, axes, (-2, -1)), ord="fro" if ord is None else ord)
    for a in sorted(axes) if keepdims else ():
        out = xp.expand_dims(out, axis=a)
    return out


def _reduction(name: str) -> Callable:
    def adapter(xp: Any, a: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return getattr(xp, name)(a, axis=_axis(axis), keepdims=keepdims)
    return adapter


def _cumulative(name: str) -> Callable:
    def adapter(xp: Any, a: Any, axis: int | None = None, dtype: Any = None) -> Any:
        if axis is None:  # NumPy flattens
            a, axis = _flat(xp, a), 0
        return getattr(xp, name)(a, axis=axis, dtype=dtype)
    return adapter


def _multi_dot(xp: Any, arrays: Any) -> Any:
    return functools.reduce(xp.matmul, arrays)


# numpy.<name> or numpy.linalg.<name> -> an adapter(xp, <NumPy's parameters it honours>).
FUNCTIONS: dict[str, Callable] = {
    # reductions
    "sum": lambda xp, a, axis=None, dtype=None, keepdims=False: xp.sum(a, axis=_axis(axis), dtype=dtype,
                                                                        keepdims=keepdims),
    "prod": lambda xp, a, axis=None, dtype=None, keepdims=False: xp.prod(a, axis=_axis(axis), dtype=dtype,
                                                                          keepdims=keepdims),
    "mean": lambda xp, a, axis=None, keepdims=False: xp.mean(a, axis=_axis(axis), keepdims=keepdims),
    "var": lambda xp, a, axis=None, ddof=0, keepdims=False: xp.var(a, axis=_axis(axis), correction=ddof,
                                                                    keepdims=keepdims),
    "std": lambda xp, a, axis=None, ddof=0, keepdims=False: xp.std(a, axis=_axis(axis), correction=ddof,
                                                                    keepdims=keepdims),
    **{name: _reduction(fn) for name, fn in [("max", "max"), ("amax", "max"), ("min", "min"), ("amin", "min"),
                                             ("all", "all"), ("any", "any"), ("argmax", "argmax"),
                                             ("argmin", "argmin"), ("count_nonzero", "count_nonzero")]},
    "cumsum": _cumulative("cumulative_sum"),
    "cumprod": _cumulative("cumulative_prod"),
    "cumulative_sum": lambda xp, x, axis=None, dtype=None, include_initial=False: xp.cumulative_sum(
        x, axis=axis, dtype=dtype, include_initial=include_initial),
    # shapes and types
    "shape": lambda xp, a: a.shape,
    "ndim": lambda xp, a: a.ndim,
    "reshape": lambda xp, a, shape: xp.reshape(a, shape),
    "ravel": lambda xp, a: _flat(xp, a),
    "transpose": lambda xp, a, axes=None: xp.permute_dims(a, tuple(reversed(range(a.ndim))) if axes is None
                                                           else tuple(axes)),
    "matrix_transpose": lambda xp, x: xp.matrix_transpose(x),
    "swapaxes": lambda xp, a, axis1, axis2: xp.moveaxis(a, (axis1, axis2), (axis2, axis1)),
    "moveaxis": lambda xp, a, source, destination: xp.moveaxis(a, source, destination),
    "squeeze": lambda xp, a, axis=None: xp.squeeze(a, axis=tuple(i for i, n in enumerate(a.shape) if n == 1)
                                                   if axis is None else _axis(axis)),
    "expand_dims": lambda xp, a, axis: xp.expand_dims(a, axis=axis),
    "broadcast_to": lambda xp, array, shape: xp.broadcast_to(array, tuple(shape)),
    "concatenate": lambda xp, arrays, axis=0: xp.concat(list(arrays), axis=axis),
    "stack": lambda xp, arrays, axis=0: xp.stack(list(arrays), axis=axis),
    "flip": lambda xp, m, axis=None: xp.flip(m, axis=_axis(axis)),
    "roll": lambda xp, a, shift, axis=None: xp.roll(a, shift, axis=_axis(axis)),
    "tile": lambda xp, A, reps: xp.tile(A, tuple(reps) if isinstance(reps, (tuple, list)) else (reps,)),
    "repeat": lambda xp, a, repeats, axis=None: xp.repeat(a if axis is not None else _flat(xp, a), repeats,
                                                          axis=0 if axis is None else axis),
    "tril": lambda xp, m, k=0: xp.tril(m, k=k),
    "triu": lambda xp, m, k=0: xp.triu(m, k=k),
    "astype": lambda xp, x, dtype, copy=True: xp.astype(x, dtype, copy=copy),
    "diagonal": lambda xp, a, offset=0, axis1=0, axis2=1: xp.linalg.diagonal(
        _on_last_two_axes(xp, a, axis1, axis2), offset=offset),
    "trace": lambda xp, a, offset=0, axis1=0, axis2=1, dtype=None: xp.linalg.trace(
        _on_last_two_axes(xp, a, axis1, axis2), offset=offset, dtype=dtype),
    "zeros_like": lambda xp, a, dtype=None: xp.zeros_like(a, dtype=dtype),
    "ones_like": lambda xp, a, dtype=None: xp.ones_like(a, dtype=dtype),
    "full_like": lambda xp, a, fill_value, dtype=None: xp.full_like(a, fill_value, dtype=dtype),
    # elementwise functions that are not ufuncs
    "where": lambda xp, condition, x=None, y=None: xp.nonzero(condition) if x is None and y is None
    else xp.where(condition, x, y),
    "clip": lambda xp, a, a_min=None, a_max=None, min=None, max=None: xp.clip(  # noqa: A002 - NumPy's names
        a, a_min if min is None else min, a_max if max is None else max),
    "real": lambda xp, val: xp.real(val),
    "imag": lambda xp, val: xp.imag(val),
    "round": lambda xp, a: xp.round(a),
    "around": lambda xp, a: xp.round(a),
    # products
    "dot": _dot,
    "inner": _inner,
    "vdot": lambda xp, a, b: xp.vecdot(_flat(xp, a), _flat(xp, b)),
    "outer": lambda xp, a, b: xp.multiply(xp.reshape(a, (-1, 1)), xp.reshape(b, (1, -1))),
    "tensordot": lambda xp, a, b, axes=2: xp.tensordot(a, b, axes=axes),
    "cross": lambda xp, a, b, axis=-1: xp.linalg.cross(a, b, axis=axis),
    # sorting, searching, indexing
    "sort": lambda xp, a, axis=-1: xp.sort(a, axis=axis),
    "argsort": lambda xp, a, axis=-1: xp.argsort(a, axis=axis),
    "searchsorted": lambda xp, a, v, side="left": xp.searchsorted(a, v, side=side),
    "nonzero": lambda xp, a: xp.nonzero(a),
    "take": lambda xp, a, indices, axis=None: xp.take(a if axis is not None else _flat(xp, a), indices,
                                                      axis=0 if axis is None else axis),
    "take_along_axis": lambda xp, arr, indices, axis=-1: xp.take_along_axis(arr, indices, axis=axis),
    # numpy.linalg
    "linalg.solve": lambda xp, a, b: xp.linalg.solve(a, b),
    "linalg.inv": lambda xp, a: xp.linalg.inv(a),
    "linalg.det": lambda xp, a: xp.linalg.det(a),
    "linalg.slogdet": lambda xp, a: xp.linalg.slogdet(a),
    "linalg.eigh": lambda xp, a, UPLO="L": xp.linalg.eigh(a, UPLO),
    "linalg.eigvalsh": lambda xp, a, UPLO="L": xp.linalg.eigvalsh(a, UPLO),
    "linalg.svd": lambda xp, a, full_matrices=True, compute_uv=True: xp.linalg.svd(a, full_matrices)
    if compute_uv else xp.linalg.svdvals(a),
    "linalg.svdvals": lambda xp, x: xp.linalg.svdvals(x),
    "linalg.qr": lambda xp, a, mode="reduced": xp.linalg.qr(a, mode),
    "linalg.cholesky": lambda xp, a, upper=False: xp.linalg.cholesky(a, upper=upper),
    "linalg.norm": _norm,
    "linalg.vector_norm": lambda xp, x, axis=None, keepdims=False, ord=2: xp.linalg.vector_norm(  # noqa: A002
        x, axis=_axis(axis), keepdims=keepdims, ord=ord),
    "linalg.matrix_norm": lambda xp, x, keepdims=False, ord="fro": xp.linalg.matrix_norm(  # noqa: A002
        x, keepdims=keepdims, ord=ord),
    "linalg.pinv": lambda xp, a, rtol=None: xp.linalg.pinv(a, rtol=rtol),
    "linalg.matrix_rank": lambda xp, A, rtol=None: xp.linalg.matrix_rank(A, rtol=rtol),
    "linalg.matrix_power": lambda xp, a, n: xp.linalg.matrix_power(a, n),
    "linalg.multi_dot": _multi_dot,
    "linalg.cross": lambda xp, x1, x2, axis=-1: xp.linalg.cross(x1, x2, axis=axis),
    "linalg.outer": lambda xp, x1, x2: xp.linalg.outer(x1, x2),
    "linalg.matmul": lambda xp, x1, x2: xp.matmul(x1, x2),
    "linalg.tensordot": lambda xp, x1, x2, axes=2: xp.tensordot(x1, x2, axes=axes),
    "linalg.vecdot": lambda xp, x1, x2, axis=-1: xp.vecdot(x1, x2, axis=axis),
    "linalg.matrix_transpose": lambda xp, x: xp.matrix_transpose(x),
    "linalg.diagonal": lambda xp, x, offset=0: xp.linalg.diagonal(x, offset=offset),
    "linalg.trace": lambda xp, x, offset=0, dtype=None: xp.linalg.trace(x, offset=offset, dtype=dtype),
}

# NumPy names (functions, array methods) whose namespace spelling differs, for the error messages.
_SPELLINGS = {
    "astype": "xp.astype(x, dtype)", "reshape": "xp.reshape(x, shape)", "transpose": "xp.permute_dims(x, axes)",
    "flatten": "xp.reshape(x, (-1,))", "ravel": "xp.reshape(x, (-1,))", "swapaxes": "xp.moveaxis(x, ...)",
    "concatenate": "xp.concat", "amax": "xp.max", "amin": "xp.min", "around": "xp.round",
    "cumsum": "xp.cumulative_sum(x, axis=...)", "cumprod": "xp.cumulative_prod(x, axis=...)",
    "dot": "x @ y or xp.tensordot(x, y, axes=...)", "vdot": "xp.vecdot", "inner": "xp.tensordot",
    "outer": "xp.linalg.outer", "copy": "xp.asarray(x, copy=True)", "diagonal": "xp.linalg.diagonal(x)",
    "trace": "xp.linalg.trace(x)", "linalg.norm": "xp.linalg.vector_norm or xp.linalg.matrix_norm",
    "linalg.multi_dot": "xp.matmul",
}


def _numpy_name(func: Any) -> str:
    module = getattr(func, "__module__", "") or ""
    prefix = module.removeprefix("numpy").lstrip(".")
    return f"{prefix}.{func.__name__}" if prefix else func.__name__


def _refuse(what: str, reason: str, equivalent: str) -> TypeError:
    return TypeError(f"{what} {reason} on the values of jvp and vmap: use {equivalent} of the array namespace, "
                     f"{_USE_NAMESPACE}")


def _ufunc_equivalent(name: str, method: str) -> str | None:
    if method in ("__call__", "outer"):
        return _UFUNC_RENAMES.get(name, name)
    return {"reduce": _REDUCE, "accumulate": _ACCUMULATE}.get(method, {}).get(name)


_UFUNC_KEYWORDS = {"__call__": {"axis"}, "reduce": {"axis", "dtype", "keepdims"}, "accumulate": {"axis", "dtype"},
                   "outer": set()}  # the keyword arguments passed on to the equivalent (axis: vecdot's)


def _ufunc_function(xp: Any, ufunc: Any, method: str) -> tuple[Any, str, str]:
    """The namespace's function for ``ufunc.method`` (None if it has none), its spelling and the call's."""
    name = ufunc.__name__
    target = _ufunc_equivalent(name, method)
    function, equivalent, call = getattr(xp, target, None) if target else None, f"xp.{target}", f"np.{name}"
    if function is None and method == "__call__" and hasattr(xp.special, name):
        # SciPy's special functions are NumPy ufuncs too
        function, equivalent, call = getattr(xp.special, name), f"xp.special.{name}", f"scipy.special.{name}"
    return function, equivalent, call


def _unhonoured_keyword(method: str, kwargs: dict) -> str | None:
    """The first keyword of a ufunc call (``ufunc.method``) that the namespace's equivalent cannot honour:
    an ``out`` array, a ``where`` mask, another keyword than those it takes; None if there is none."""
    if any(o is not None for o in kwargs.get("out", ())):
        return "out"
    if kwargs.get("where", True) is not True:
        return "where"
    return min(set(kwargs) - _UFUNC_KEYWORDS[method] - {"out", "where"}, default=None)


def _array_ufunc(self: Dual, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
    xp = self.__array_namespace__()
    function, equivalent, call = _ufunc_function(xp, ufunc, method)
    if method != "__call__":
        call += f".{method}"
    if not callable(function):
        raise _refuse(call, "has no equivalent", "the functions")
    keyword = _unhonoured_keyword(method, kwargs)
    if keyword == "out":
        raise _refuse(f"{call}(..., out=...)", "cannot write into an array (the tangent would be lost)",
                      f"the value returned by {equivalent}")
    if keyword == "where":
        raise _refuse(f"{call}(..., where=...)", "is not supported", f"xp.where(mask, {equivalent}(x), y)")
    if keyword is not None:
        raise _refuse(f"{call}(..., {keyword}=...)", "is not supported", equivalent)
    kwargs.pop("out", None)
    kwargs.pop("where", None)
    if method in ("reduce", "accumulate"):  # NumPy's default axis is 0, the namespace's all axes
        return function(inputs[0], **{**kwargs, "axis": _axis(kwargs.get("axis", 0))})
    if method == "outer":
        a, b = inputs
        return function(xp.reshape(a, (*a.shape, *(1,) * b.ndim)), b)
    return function(*inputs, **kwargs)


class _NumpyOnly:
    """``Dual.__array_ufunc__``: the handler when looked up on the type (as NumPy does) or on a dual over
    NumPy arrays; ``None`` on a dual over another backend (CuPy reads it there: it then defers its
    operators to the dual's)."""

    def __init__(self, handler: Callable) -> None:
        self.handler = handler

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self.handler
        return self.handler.__get__(instance, owner) if backend_of(base_array(instance)).name == "numpy" else None


@functools.lru_cache(maxsize=None)
def _parameters(func: Callable) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The names of ``func``'s positional parameters, in order, and the defaults of all."""
    parameters = inspect.signature(func).parameters.values()
    positional = tuple(p.name for p in parameters
                       if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
    return positional, {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _is_default(value: Any, default: Any) -> bool:
    return value is default or (type(value) in (str, bool, int) and type(value) is type(default) and value == default)


def given_arguments(func: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments of a call of ``func`` by parameter name, those equal to their defaults left out."""
    positional, defaults = _parameters(func)
    if len(args) > len(positional):
        raise TypeError(f"{func.__name__}() takes {len(positional)} positional arguments, {len(args)} given")
    given = dict(zip(positional, args))
    given.update(kwargs)
    return {k: v for k, v in given.items() if k not in defaults or not _is_default(v, defaults[k])}


def _array_function(self: Dual, func: Callable, types: Any, args: tuple, kwargs: dict) -> Any:
    name = _numpy_name(func)
    adapter = FUNCTIONS.get(name)
    equivalent = _SPELLINGS.get(name, f"xp.{name}") if adapter else "the functions"
    xp = self.__array_namespace__()
    if adapter is None:
        raise writes_into(f"np.{name}") if name in NUMPY_WRITERS else _refuse(f"np.{name}", "has no equivalent",
                                                                              equivalent)
    given = given_arguments(func, args, kwargs)
    honoured = _parameters(adapter)[0]
    unsupported = [key for key in given if key not in honoured]
    if unsupported:
        raise _refuse(f"np.{name}(..., {unsupported[0]}=...)", "is not supported", equivalent)
    return adapter(xp, **given)


class NoArrayMethodError(AttributeError):
    """A NumPy-only method or attribute asked of a dual value (``x.sum()``); the message names the
    namespace function to use. An AttributeError, so ``hasattr`` probes still answer False."""


def install(dual: type, namespace_names: set[str], unmatched: Callable | None = None) -> None:
    """NumPy's protocols on the dual class, and a ``__getattr__`` raising :class:`NoArrayMethodError`
    with the namespace function (among ``namespace_names``) to use. ``unmatched(function, args, kwargs)``
    (jit's values: the call recorded as it is) serves the NumPy functions and ufunc methods that have no
    equivalent in the namespace or are given arguments their equivalent cannot honour (``out=``,
    ``dtype=``), which are refused without it."""
    def missing_attribute(self: Dual, name: str) -> Any:
        if name.startswith("_") or name in dual.__slots__:  # protocol probes, unset slots: quietly
            raise AttributeError(name)
        hint = _SPELLINGS.get(name) or (f"xp.{name}(x)" if name in namespace_names else "the array namespace")
        raise NoArrayMethodError(f"array-API arrays have no method or attribute {name!r}: use {hint}, {_USE_NAMESPACE}")

    def array_ufunc(self: Any, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if (_ufunc_function(self.__array_namespace__(), ufunc, method)[0] is None
                or _unhonoured_keyword(method, kwargs) is not None):  # (no equivalent, or one lacking a keyword)
            return unmatched(ufunc if method == "__call__" else getattr(ufunc, method), inputs, kwargs)
        return _array_ufunc(self, ufunc, method, *inputs, **kwargs)

    def array_function(self: Any, func: Callable, types: Any, args: tuple, kwargs: dict) -> Any:
        adapter = FUNCTIONS.get(_numpy_name(func))
        if adapter is None or not set(given_arguments(func, args, kwargs)) <= set(_parameters(adapter)[0]):
            return unmatched(func, args, kwargs)  # (no equivalent, or one without all the arguments given)
        return _array_function(self, func, types, args, kwargs)

    dual.__array_ufunc__ = _NumpyOnly(_array_ufunc if unmatched is None else array_ufunc)
    dual.__array_function__ = _array_function if unmatched is None else array_function
    dual.__getattr__ = missing_attribute


__all__ = ["FUNCTIONS", "NoArrayMethodError", "install"]
