"""Backends: the only layer that knows NumPy, SciPy or CuPy by name.

A backend is chosen from the type of a primal array. It offers the array-API namespace of that
array library (``xp``), conversions to and from NumPy (for tests and the generic path) and the
kernels the array API lacks (added by the linear-algebra layer).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from .base import Backend

_BY_TYPE: dict[type, Backend] = {}
_BY_NAME: dict[str, Backend] = {}


def _load(name: str) -> Backend:
    if name not in _BY_NAME:
        if name == "numpy":
            from .numpy_backend import NumpyBackend as cls
        elif name == "cupy":
            from .cupy_backend import CupyBackend as cls
        elif name == "dask":  # Dask arrays of NumPy chunks (backend_of gives other chunk types theirs)
            from .dask_backend import for_chunks

            _BY_NAME[name] = for_chunks(_load("numpy"))
            return _BY_NAME[name]
        else:
            from .generic import GenericBackend

            _BY_NAME[name] = GenericBackend.from_module_name(name)
            return _BY_NAME[name]
        _BY_NAME[name] = cls()
    return _BY_NAME[name]


KNOWN_BACKENDS = ("numpy", "cupy", "array_api_strict", "dask")


def backend_named(name: str) -> Backend:
    """The backend called ``name`` ("numpy", "cupy", "dask", "array_api_strict", or any importable
    array-API module name).

    ValueError for an unknown or uninstalled library (naming the valid names, or the install
    command for CuPy); RuntimeError for "cupy" when CuPy is installed but no CUDA device is usable.
    """
    try:
        return _load(name)
    except ImportError as exc:
        if name in KNOWN_BACKENDS:
            raise ValueError(f"backend {name!r} is not available: {exc}") from None
        raise ValueError(f"unknown backend {name!r} ({exc}): the backends are "
                         f"{', '.join(map(repr, KNOWN_BACKENDS))}, or the name of an installed "
                         "module with an array-API namespace") from None


def backend_of(x: Any) -> Backend:
    """The backend of a raw (non-dual) array; cached per array type (Dask arrays: their chunk type is
    checked each time)."""
    cls = type(x)
    try:
        return _BY_TYPE[cls]
    except KeyError:
        pass
    recording = getattr(x, "recording_backend", None)  # a jit recording's value: its backend, recorded
    if recording is not None:
        return recording()
    module = cls.__module__.split(".")[0]
    if module == "numpy":
        backend = _load("numpy")
    elif module in ("cupy", "cupy_backends"):
        backend = _load("cupy")
    elif module == "dask":  # not cached: the backend of each Dask array's chunk type
        from .dask_backend import chunk_backend, for_chunks

        return for_chunks(chunk_backend(x))
    elif hasattr(x, "__array_namespace__"):
        backend = _load(x.__array_namespace__().__name__.split(".")[0])
    else:
        raise TypeError(f"expected an array, got {cls.__name__}")
    _BY_TYPE[cls] = backend
    return backend


def is_array(x: Any) -> bool:
    """True for raw arrays of any supported library (NumPy scalars and Dask arrays included)."""
    return hasattr(x, "__array_namespace__") or type(x).__module__.split(".")[0] in ("numpy", "dask") \
        and hasattr(x, "dtype")


_default: list[str] = [os.environ.get("CUPY_AD_BACKEND", "")]


def _gpu_works() -> bool:
    try:
        _load("cupy")
    except (ImportError, RuntimeError):  # no CuPy, or no usable CUDA device
        return False
    return True


def set_backend(name: str) -> None:
    """Set the default backend used by ``namespace()`` without arguments and by the demo.

    Checks at once that the backend works (see :func:`backend_named` for the errors).
    """
    backend_named(name)
    _default[0] = name


def default_backend() -> Backend:
    """The default backend: ``set_backend``'s, else $CUPY_AD_BACKEND, else cupy with a GPU, else numpy."""
    if not _default[0]:
        _default[0] = "cupy" if _gpu_works() else "numpy"
    return backend_named(_default[0])


def error_state() -> dict:
    """NumPy's handling of floating-point errors now (``np.geterr()``, which ``np.errstate`` sets): the
    host kernels of every backend compute with NumPy (CuPy's kernels do not read it)."""
    return np.geterr()


def error_state_change(since: dict) -> dict | None:
    """The entries of ``error_state()`` that differ from ``since`` (an earlier ``error_state()``), or None."""
    changed = {k: v for k, v in np.geterr().items() if since.get(k) != v}
    return changed or None


def under_error_state(fn: Callable, change: dict) -> Callable:
    """``fn`` run with ``change`` (an ``error_state_change``) applied to the caller's error state."""
    def step(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(**change):
            return fn(*args, **kwargs)
    step.__name__ = getattr(fn, "__name__", "step")
    return step


__all__ = ["Backend", "backend_named", "backend_of", "default_backend", "error_state", "error_state_change",
           "is_array", "set_backend", "under_error_state"]
