"""NumPy backend: array_api_compat's NumPy namespace; kernels from NumPy's and SciPy's LAPACK calls."""
from __future__ import annotations

from typing import Any

import array_api_compat.numpy as compat_numpy
import numpy as np
import scipy.linalg

from .base import Backend


class NumpyBackend(Backend):
    name = "numpy"
    xp = compat_numpy

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def from_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def lu_factor(self, a: Any) -> tuple[Any, Any]:
        return scipy.linalg.lu_factor(a, check_finite=False)

    def qr(self, a: Any, mode: str) -> Any:
        return np.linalg.qr(a, mode=mode)

    def svd(self, a: Any, full_matrices: bool) -> tuple[Any, Any, Any]:
        return tuple(np.linalg.svd(a, full_matrices=full_matrices))

    def svdvals(self, a: Any) -> Any:
        return np.linalg.svd(a, compute_uv=False)

    def eigh(self, a: Any, lower: bool) -> tuple[Any, Any]:
        return tuple(np.linalg.eigh(a, UPLO="L" if lower else "U"))

    def eigvalsh(self, a: Any, lower: bool) -> Any:
        return np.linalg.eigvalsh(a, UPLO="L" if lower else "U")

    def cholesky(self, a: Any, upper: bool) -> Any:
        return np.linalg.cholesky(a, upper=upper)

    def solve_triangular(self, a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        return scipy.linalg.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit_diagonal,
                                             check_finite=False)
