"""Compiled kernels for batches of small matrices on NumPy, from Numba when it is installed (the
optional extra ``compiled``); every function returns None without it, and callers fall back.

Why Numba: a triangular solve of 4096 matrices of 16 x 16 is 4096 tiny trsm calls (a Python or
ctypes loop: ~5 us each) or a substitution vectorised over the batch (16 NumPy steps, each a batched
matmul of a row against the solved part); a compiled loop does the same arithmetic in one call with
no temporaries. Numba is well kept, installs from PyPI with NumPy 2.4, and its compiled functions
are cached on disk after the first call.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


def _substitute(a: Any, b: Any, x: Any, lower: bool, unit_diagonal: bool) -> None:
    """x[p] = tri(a[p])^-1 b[p] for every p: forward (lower) or back substitution, column by column."""
    count, n, k = b.shape
    for p in range(count):
        for j in range(k):
            for step in range(n):
                i = step if lower else n - 1 - step
                s = b[p, i, j]
                if lower:
                    for m in range(i):
                        s -= a[p, i, m] * x[p, m, j]
                else:
                    for m in range(i + 1, n):
                        s -= a[p, i, m] * x[p, m, j]
                x[p, i, j] = s if unit_diagonal else s / a[p, i, i]


_compiled: Any = False  # not looked for yet (importing Numba costs ~0.5 s: only when a batch needs it)


def _kernel() -> Any:
    global _compiled
    if _compiled is False:
        try:
            import numba
        except ImportError:  # the extra is not installed
            _compiled = None
        else:
            _compiled = numba.njit(cache=True, nogil=True)(_substitute)
    return _compiled


def available() -> bool:
    return _kernel() is not None


def solve_triangular_batched(a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(tri(a))^-1 b for a (..., n, n) and b (..., n, k) of one batch shape (no broadcasting), compiled;
    None without Numba or for other shapes and dtypes."""
    dtype = np.result_type(a.dtype, b.dtype)
    kernel = _kernel()
    if kernel is None or dtype.type not in _DTYPES or a.shape[:-2] != b.shape[:-2] or b.ndim < 3:
        return None
    n, k = b.shape[-2:]
    m = a.astype(dtype, copy=False).reshape(-1, n, n)
    if trans:
        m = np.swapaxes(m, -1, -2)
        if trans == 2 and dtype.kind == "c":
            m = m.conj()
        lower = not lower
    x = np.empty(b.shape, dtype=dtype)
    # C-contiguous operands: one compiled specialisation per dtype
    kernel(np.ascontiguousarray(m), np.ascontiguousarray(b.astype(dtype, copy=False).reshape(-1, n, k)),
           x.reshape(-1, n, k), bool(lower), bool(unit_diagonal))
    return x
