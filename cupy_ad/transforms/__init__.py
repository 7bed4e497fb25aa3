"""Transforms of functions of arrays: ``jvp``, ``vmap``, ``jacfwd`` / ``hessian``, ``linearize`` and ``jit``."""
from __future__ import annotations

from .jacfwd import hessian, jacfwd
from .jit import jit
from .jvp import jvp
from .linearize import linearize
from .vmap import vmap

__all__ = ["hessian", "jacfwd", "jit", "jvp", "linearize", "vmap"]
