"""Transforms of functions of arrays: ``jvp``, ``vmap``, ``jacfwd`` / ``hessian`` and ``linearize``."""
from __future__ import annotations

from .jacfwd import hessian, jacfwd
from .jvp import jvp
from .linearize import linearize
from .vmap import vmap

__all__ = ["hessian", "jacfwd", "jvp", "linearize", "vmap"]
