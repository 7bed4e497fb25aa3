"""cupy_ad: forward-mode automatic differentiation (JVPs) of array-API code on CuPy and NumPy."""
from __future__ import annotations

from . import linalg
from .backends import default_backend, set_backend
from .conversions import ConcretizationError, primal_value, stop_gradient
from .values import Dual, Zero
from .namespace import namespace
from .scan_loop import FixedPointError, scan
from .testing import check_jvp
from .transforms import hessian, jacfwd, jit, jvp, linearize, vmap

__version__ = "0.1.0"

__all__ = ["ConcretizationError", "Dual", "FixedPointError", "Zero", "check_jvp", "default_backend", "hessian", "jacfwd",
           "jit", "jvp", "linalg", "linearize", "namespace", "primal_value", "scan", "set_backend", "stop_gradient",
           "vmap"]
