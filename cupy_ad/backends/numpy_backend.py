"""NumPy backend: array_api_compat's NumPy namespace; kernels from SciPy's LAPACK wrappers."""
from __future__ import annotations

from typing import Any

import array_api_compat.numpy as compat_numpy
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = compat_numpy

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def from_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)
