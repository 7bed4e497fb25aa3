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
        return tuple(scipy.linalg.lu_factor(a, check_finite=False))  # SciPy returns a list when batched

    def lu_pivots_to_permutation(self, piv: Any, m: int) -> Any:
        piv = np.asarray(piv)
        k = piv.shape[-1]
        if piv.size == 0:
            return np.broadcast_to(np.arange(m, dtype=np.int32), (*piv.shape[:-1], m)).copy()
        flat = piv.reshape(-1, k)
        out = np.empty((flat.shape[0], m), dtype=np.int32)
        if flat.shape[0] > k:  # many small matrices: one vectorised swap per pivot step
            out[:] = np.arange(m, dtype=np.int32)
            rows = np.arange(flat.shape[0])
            for i in range(k):
                target = flat[:, i]
                here = out[:, i].copy()
                out[:, i] = out[rows, target]
                out[rows, target] = here
        else:  # few large matrices: plain Python swaps per matrix
            for b, row in enumerate(flat.tolist()):
                perm = list(range(m))
                for i, p in enumerate(row):
                    perm[i], perm[p] = perm[p], perm[i]
                out[b] = perm
        return out.reshape(*piv.shape[:-1], m)

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
