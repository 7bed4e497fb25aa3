"""cupy_ad: forward-mode automatic differentiation (JVPs) of array-API code on CuPy and NumPy."""
from __future__ import annotations

from . import linalg
from .backends import default_backend, set_backend
from .core import Dual, Zero
from .namespace import namespace
from .scan_loop import FixedPointError, scan
from .testing import check_jvp
from .transforms import hessian, jacfwd, jvp, linearize, vmap

__version__ = "0.1.0"

__all__ = ["Dual", "FixedPointError", "Zero", "check_jvp", "default_backend", "hessian", "jacfwd", "jvp", "linalg",
           "linearize", "namespace", "scan", "set_backend", "vmap"]
