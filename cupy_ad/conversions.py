"""Leaving the differentiated world on purpose: ``stop_gradient`` and ``primal_value``.

Converting a dual value with a nonzero tangent to a Python number, a NumPy array or a DLPack
capsule raises ``ConcretizationError`` (the derivative would be lost silently). These two functions
say explicitly that the derivative is not wanted.
"""
from __future__ import annotations

from typing import Any

from .values import ConcretizationError, strip
from .namespace._rules import nondifferentiable
from .namespace.elementwise import broadcasting

_stop_gradient = nondifferentiable("stop_gradient", lambda x: x, batch=broadcasting)


def stop_gradient(x: Any, /) -> Any:
    """``x`` with every tangent (at every level of nested ``jvp``) replaced by a symbolic zero.

    The result is still a dual value of the same levels, so it mixes with other dual values on
    every backend, and it converts freely (``float``, ``np.asarray``, DLPack). Outside ``jvp`` it
    returns ``x``.
    """
    return _stop_gradient(x)


def primal_value(x: Any, /) -> Any:
    """The raw backend array under all levels of a dual value (tangents dropped); ``x`` itself if
    it is not a dual value."""
    return strip(x)


__all__ = ["ConcretizationError", "primal_value", "stop_gradient"]
