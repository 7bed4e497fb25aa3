"""LAPACK factorisations from NumPy's own library, for large single matrices on the NumPy backend.

Two reasons to call NumPy's bundled LAPACK through ctypes (symbols found by ``numpy_kernels``):

* getrf: SciPy's ``lu_factor`` runs on SciPy's own OpenBLAS, whose pool has to stay at one thread
  (see ``numpy_backend._ScipyBlasOneThread``); NumPy's library runs OpenBLAS's parallel getrf on
  the pool the rules' matmuls already use. 1024 x 1024 float64 on the 2-core CI machine: 13 ms
  instead of 19 ms, bit for bit the same factors.
* QR without transposing copies: a C-ordered (m, n) array is, read in Fortran order, A^T (n, m).
  Householder LQ of A^T, A^T = L Q', is the transpose of Householder QR of A: the reflectors act
  on the same vectors with the same sign rule (R_ii = -sign(Re a_ii) ||a||, real), so
  A = Q'^T L^T with R = L^T and Q = Q'^T as geqrf/orgqr give them, to rounding. ``numpy.linalg.qr``
  copies A into Fortran order and Q back; gelqf/orglq on the C buffer skip both copies
  (1024 x 1024 float64 there: 91 ms instead of 115 ms).

Each function returns None where the routine is unavailable, so the caller falls back.
"""
from __future__ import annotations

import ctypes
import warnings
from typing import Any

import numpy as np

from . import numpy_kernels

_PREFIX = {np.dtype(np.float32): "s", np.dtype(np.float64): "d", np.dtype(np.complex64): "c",
           np.dtype(np.complex128): "z"}


def _routine(dtype: Any, name: str) -> tuple[Any, Any] | None:
    prefix = _PREFIX.get(np.dtype(dtype))
    if prefix is None:
        return None
    if name == "orglq" and prefix in "cz":
        name = "unglq"
    return numpy_kernels.lapack(prefix + name)


def _pointer(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def getrf(a: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lu, piv) of one (m, n) matrix as ``scipy.linalg.lu_factor``: lu in Fortran order, piv 0-based
    int32; SciPy's LinAlgWarning at an exactly zero pivot."""
    found = _routine(a.dtype, "getrf")
    if found is None or a.ndim != 2:
        return None
    function, integer = found
    m, n = a.shape
    lu = np.array(a, order="F", copy=True)
    piv = np.zeros(min(m, n), dtype=np.int64 if integer is ctypes.c_int64 else np.int32)
    info = integer(0)
    function(ctypes.byref(integer(m)), ctypes.byref(integer(n)), _pointer(lu), ctypes.byref(integer(max(m, 1))),
             _pointer(piv), ctypes.byref(info))
    if info.value > 0:
        from scipy.linalg import LinAlgWarning

        warnings.warn(f"Diagonal number {info.value} is exactly zero. Singular matrix.", LinAlgWarning, stacklevel=3)
    return lu, (piv - 1).astype(np.int32)


def _lq_call(function: Any, integer: Any, sizes: tuple[int, ...], buffer: np.ndarray, lda: int,
             tau: np.ndarray, dtype: Any) -> None:
    """Call gelqf / orglq with a workspace query first (``sizes`` = (M, N) or (M, N, K))."""
    info = integer(0)
    query = np.zeros(1, dtype=dtype)
    args = [ctypes.byref(integer(v)) for v in sizes]
    function(*args, _pointer(buffer), ctypes.byref(integer(lda)), _pointer(tau), _pointer(query),
             ctypes.byref(integer(-1)), ctypes.byref(info))
    work = np.zeros(max(int(query[0].real), 1), dtype=dtype)
    function(*args, _pointer(buffer), ctypes.byref(integer(lda)), _pointer(tau), _pointer(work),
             ctypes.byref(integer(work.size)), ctypes.byref(info))


def qr(a: np.ndarray, mode: str) -> Any:
    """``numpy.linalg.qr(a, mode)`` for one (m, n) matrix, modes "reduced" and "r", through gelqf/orglq
    on the transposed view; None where not available (other modes, batches, dtypes)."""
    factor, generate = _routine(a.dtype, "gelqf"), _routine(a.dtype, "orglq")
    if factor is None or generate is None or a.ndim != 2 or mode not in ("reduced", "r") or a.size == 0:
        return None
    m, n = a.shape
    k = min(m, n)
    buffer = np.array(a, order="C", copy=True)  # Fortran view: A^T, n x m, leading dimension n
    tau = np.zeros(k, dtype=a.dtype)
    _lq_call(factor[0], factor[1], (n, m), buffer, n, tau, a.dtype)
    r = np.triu(buffer[:k, :])  # rows of L^T = R (k, n)
    if mode == "r":
        return r
    _lq_call(generate[0], generate[1], (k, m, k), buffer, n, tau, a.dtype)  # Q' (k, m) in place
    q = buffer if k == n else np.ascontiguousarray(buffer[:, :k])  # Q = Q'^T (m, k)
    return q, r


__all__ = ["getrf", "qr"]
