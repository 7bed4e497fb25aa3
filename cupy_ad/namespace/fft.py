"""The array API ``fft`` extension (2024.12) over dual values.

Every transform here is linear over the reals, so its JVP is the same transform applied to the
tangent: d fft(x) = fft(dx). For the complex transforms this is plain linearity. ``rfft``/``ihfft``
take real input, and ``irfft``/``hfft`` read only half a Hermitian spectrum and ignore the imaginary
parts of the bins a real output cannot hold (DC, and Nyquist for even n): they are real-linear but
not complex-linear maps, x -> F(x) with F(x + y) = F(x) + F(y) and F(c x) = c F(x) for real c only.
The JVP of a real-linear map is that map applied to the tangent, so the same rule is exact for them
too (a tangent's ignored imaginary parts are ignored exactly as the primal's are). ``fftshift`` and
``ifftshift`` are rolls (linear); ``fftfreq``/``rfftfreq`` make constants.
"""
from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any, Literal

from ..backends import Backend
from ..core import Primitive, bind
from ..values import constant
from .manipulation import every_axis, rank, shift, to_front
from ._rules import linear

Norm = Literal["backward", "ortho", "forward"]


def _transform_batch(prim: Primitive):
    """Batching: the examples first, ``axis`` / ``axes`` shifted with them (axes None: the last len(s)
    axes of an example, or all of them)."""
    def rule(values: list, dims: list, **params: Any):
        x_rank = rank(values[0], dims[0])
        x = to_front(values[0], dims[0])
        if "axis" in params:
            params["axis"] = shift(params["axis"])
        elif params.get("axes") is None:
            s = params.get("s")
            params["axes"] = every_axis(x_rank)[x_rank - len(s):] if s is not None else every_axis(x_rank)
        else:
            params["axes"] = shift(params["axes"])
        return bind(prim, x, **params), 0
    return rule


def _transform(name: str) -> Primitive:
    return linear(name, module="fft", batch=_transform_batch)


_fft = _transform("fft")
_ifft = _transform("ifft")
_fftn = _transform("fftn")
_ifftn = _transform("ifftn")
_rfft = _transform("rfft")
_irfft = _transform("irfft")
_rfftn = _transform("rfftn")
_irfftn = _transform("irfftn")
_hfft = _transform("hfft")
_ihfft = _transform("ihfft")
_fftshift = _transform("fftshift")
_ifftshift = _transform("ifftshift")


def fft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: Norm = "backward") -> Any:
    """One-dimensional discrete Fourier transform along ``axis``."""
    return _fft(x, n=n, axis=axis, norm=norm)


def ifft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: Norm = "backward") -> Any:
    """One-dimensional inverse discrete Fourier transform along ``axis``."""
    return _ifft(x, n=n, axis=axis, norm=norm)


def fftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
         norm: Norm = "backward") -> Any:
    """n-dimensional discrete Fourier transform over ``axes``."""
    return _fftn(x, s=s, axes=axes, norm=norm)


def ifftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          norm: Norm = "backward") -> Any:
    """n-dimensional inverse discrete Fourier transform over ``axes``."""
    return _ifftn(x, s=s, axes=axes, norm=norm)


def rfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: Norm = "backward") -> Any:
    """Discrete Fourier transform of real input: the n // 2 + 1 non-negative frequencies."""
    return _rfft(x, n=n, axis=axis, norm=norm)


def irfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: Norm = "backward") -> Any:
    """Inverse of ``rfft``: a real signal of length ``n`` (default 2 (m - 1)) from a half spectrum."""
    return _irfft(x, n=n, axis=axis, norm=norm)


def rfftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
          norm: Norm = "backward") -> Any:
    """n-dimensional transform of real input (half spectrum along the last axis)."""
    return _rfftn(x, s=s, axes=axes, norm=norm)


def irfftn(x: Any, /, *, s: Sequence[int] | None = None, axes: Sequence[int] | None = None,
           norm: Norm = "backward") -> Any:
    """Inverse of ``rfftn``."""
    return _irfftn(x, s=s, axes=axes, norm=norm)


def hfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: Norm = "backward") -> Any:
    """Transform of a signal with Hermitian symmetry given by its half spectrum: real output."""
    return _hfft(x, n=n, axis=axis, norm=norm)


def ihfft(x: Any, /, *, n: int | None = None, axis: int = -1, norm: Norm = "backward") -> Any:
    """Inverse of ``hfft``: the half spectrum of real input."""
    return _ihfft(x, n=n, axis=axis, norm=norm)


def fftshift(x: Any, /, *, axes: int | Sequence[int] | None = None) -> Any:
    """Move the zero-frequency term to the centre of ``axes`` (all by default)."""
    return _fftshift(x, axes=axes)


def ifftshift(x: Any, /, *, axes: int | Sequence[int] | None = None) -> Any:
    """Inverse of ``fftshift``."""
    return _ifftshift(x, axes=axes)


_TRANSFORMS = (fft, ifft, fftn, ifftn, rfft, irfft, rfftn, irfftn, hfft, ihfft, fftshift, ifftshift)


def fft_namespace(backend: Backend, name: str) -> types.ModuleType:
    """The ``fft`` sub-namespace for ``backend``: the transforms, and frequency grids as constants."""
    backend_fft = backend.xp.fft

    def fftfreq(n: int, /, *, d: float = 1.0, dtype: Any = None, device: Any = None) -> Any:
        """Sample frequencies of ``fft``: [0, 1, ..., -1] / (d n), a constant."""
        return constant(backend_fft.fftfreq(n, d=d, dtype=dtype, device=device))

    def rfftfreq(n: int, /, *, d: float = 1.0, dtype: Any = None, device: Any = None) -> Any:
        """Sample frequencies of ``rfft``: [0, 1, ..., n // 2] / (d n), a constant."""
        return constant(backend_fft.rfftfreq(n, d=d, dtype=dtype, device=device))

    module = types.ModuleType(name)
    module.__dict__.update({f.__name__: f for f in (*_TRANSFORMS, fftfreq, rfftfreq)})
    return module
