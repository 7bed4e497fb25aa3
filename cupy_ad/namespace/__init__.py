"""The array API standard over dual values.

``namespace(xp)`` returns a module-like object for the backend ``xp``; ``array_namespace(dual)``
returns it, so array-API-generic code runs on dual values unchanged. The differentiable functions
are backend-free (``bind`` dispatches on the arguments); creation functions and dtypes come from
the backend.
"""
from __future__ import annotations

import types
from typing import Any

from ..backends import Backend, backend_named, backend_of, default_backend
from ..values import Batched, Dual, Recorded, base_array
from . import elementwise, indexing, manipulation, numpy_protocols, products, reductions, sets
from .creation import creation_functions
from .fft import fft_namespace
from .signatures import sign_primitives
from .special import special_namespace
from .elementwise import *  # noqa: F403
from .indexing import *  # noqa: F403
from .manipulation import *  # noqa: F403
from .products import *  # noqa: F403
from .reductions import *  # noqa: F403
from .sets import *  # noqa: F403

_GENERIC = {name: getattr(module, name)
            for module in (elementwise, indexing, manipulation, products, reductions, sets) for name in module.__all__}
_LINALG_GENERIC = ("matmul", "matrix_transpose", "diagonal", "outer", "tensordot", "trace", "vecdot")
_NAMESPACES: dict[str, types.ModuleType] = {}
sign_primitives(_GENERIC)
_GENERIC.update({name: getattr(indexing, name) for name in (  # views of x, as in NumPy
    "permute_dims", "matrix_transpose", "expand_dims", "squeeze", "flip", "moveaxis")}, reshape=indexing.reshape_view)


def _backend_for(xp: Any) -> Backend:
    if xp is None:
        return default_backend()
    if isinstance(xp, Backend):
        return xp
    if hasattr(xp, "recorded_backend"):  # a jit recording's proxy of a backend
        return xp.recorded_backend
    if isinstance(xp, str):
        return backend_named(xp)
    name = getattr(xp, "__name__", "")
    for known, module in (("numpy", "numpy"), ("cupy", "cupy"), ("dask", "dask.array")):
        if name in (module, f"array_api_compat.{module}"):
            return backend_named(known)
    return backend_named(name)


def namespace(xp: Any = None) -> types.ModuleType:
    """The dual-aware array-API namespace for backend ``xp`` (a module, a name, or the default)."""
    backend = _backend_for(xp)
    if backend.name not in _NAMESPACES:
        ns = types.ModuleType(f"cupy_ad.namespace[{backend.name}]")
        ns.__dict__.update(_GENERIC)
        ns.__dict__.update(creation_functions(backend))
        ns.__array_api_version__ = "2024.12"
        ns.backend = backend
        linalg = types.ModuleType(f"cupy_ad.namespace[{backend.name}].linalg")
        linalg.__dict__.update({name: _GENERIC[name] for name in _LINALG_GENERIC})
        from .. import linalg as decompositions

        linalg.__dict__.update({name: getattr(decompositions, name) for name in decompositions.__all__})
        ns.linalg = linalg
        ns.fft = fft_namespace(backend, f"{ns.__name__}.fft")
        ns.special = special_namespace(f"{ns.__name__}.special")
        _NAMESPACES[backend.name] = ns
    return _NAMESPACES[backend.name]


_API_VERSIONS = ("2021.12", "2022.12", "2023.12", "2024.12")


def _array_namespace(self: Dual, /, *, api_version: str | None = None) -> types.ModuleType:
    if api_version is not None and api_version not in _API_VERSIONS:
        raise ValueError(f"unsupported array API version {api_version!r}; cupy_ad implements {_API_VERSIONS[-1]}")
    return namespace(backend_of(base_array(self)))


def _in_place(fn: Any) -> Any:
    """``x op= y``: the result keeps x's shape and dtype (else an error, as the standard requires) and
    is written into x as NumPy would (a view's base sees it; x keeps its layout)."""
    def operator(self: Dual, other: Any, /) -> Dual:
        result = fn(self, other)
        if tuple(result.shape) != tuple(self.shape):
            raise ValueError(f"in-place operation would change the shape {tuple(self.shape)} to {tuple(result.shape)}")
        if result.dtype != self.dtype:
            raise TypeError(f"in-place operation would change the dtype {self.dtype} to {result.dtype}")
        indexing.assign_whole(self, result)
        return self
    return operator


def _install_dual_methods() -> None:
    """Python operators and array attributes of ``Dual`` (and of batched and recorded values), as on
    the backend array."""
    binary = {"add": elementwise.add, "sub": elementwise.subtract, "mul": elementwise.multiply,
              "truediv": elementwise.divide, "pow": elementwise.pow, "matmul": products.matmul,
              "mod": elementwise.remainder, "floordiv": elementwise.floor_divide,
              "and": elementwise.bitwise_and, "or": elementwise.bitwise_or, "xor": elementwise.bitwise_xor,
              "lshift": elementwise.bitwise_left_shift, "rshift": elementwise.bitwise_right_shift}
    compare = {"lt": elementwise.less, "le": elementwise.less_equal, "gt": elementwise.greater,
               "ge": elementwise.greater_equal, "eq": elementwise.equal, "ne": elementwise.not_equal}
    for cls in (Dual, Batched, Recorded):
        for name, fn in binary.items():
            setattr(cls, f"__{name}__", (lambda fn: lambda self, other, /: fn(self, other))(fn))
            setattr(cls, f"__r{name}__", (lambda fn: lambda self, other, /: fn(other, self))(fn))
        for name, fn in compare.items():
            setattr(cls, f"__{name}__", (lambda fn: lambda self, other, /: fn(self, other))(fn))
        cls.__hash__ = None  # type: ignore[assignment]
        cls.__neg__ = lambda self, /: elementwise.negative(self)
        cls.__pos__ = lambda self, /: elementwise.positive(self)
        cls.__abs__ = lambda self, /: elementwise.abs(self)
        cls.__invert__ = lambda self, /: elementwise.bitwise_invert(self)
        cls.__getitem__ = indexing.dual_getitem
        cls.T = property(lambda self: indexing.permute_dims(self, tuple(reversed(range(self.ndim)))))  # views, as
        cls.mT = property(lambda self: indexing.matrix_transpose(self))  # in NumPy: writes reach self
        cls.__array_namespace__ = _array_namespace
        cls.to_device = lambda self, device, /, *, stream=None: manipulation.to_device(self, device, stream=stream)
    for cls in (Dual, Batched):  # the values user code sees (a recording's are tangents, under duals)
        for name, fn in binary.items():  # in place: NumPy's semantics through the value's views
            setattr(cls, f"__i{name}__", _in_place(getattr(cls, f"__{name}__")))
        cls.__setitem__ = indexing.dual_setitem
        numpy_protocols.install(cls, {*_GENERIC, *_LINALG_GENERIC})  # np.sin(x), and errors for x.sum()


_install_dual_methods()

__all__ = ["namespace", *_GENERIC]
