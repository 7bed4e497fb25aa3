"""LAPACK factorisations from NumPy's own library, for large matrices on the NumPy backend (batches go
matrix by matrix).

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

* eigh and SVD the same way: the Fortran view of a C-ordered matrix is its transpose, so syevd /
  heevd (with the other triangle) and gesdd run on the C buffer and their outputs, read in C order,
  are the factors of A (below), where ``numpy.linalg`` copies into and out of Fortran order.
  1024 x 1024 float64: eigh 104 vs 108-120 ms, SVD 259-299 vs 291-328 ms.

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
    return ctypes.c_void_p(numpy_kernels.address(a))


def _string(flag: str) -> ctypes.c_char_p:
    return ctypes.c_char_p(flag.encode())


def _lapack_call(function: Any, integer: Any, build: Any, work_kinds: tuple, strings: int = 0) -> int:
    """Run ``function(*build(workspaces), INFO)`` twice: a workspace query (sizes -1), then the call
    with workspaces of the queried sizes; ``work_kinds`` are their dtypes, ``strings`` the number of
    character arguments (their hidden Fortran lengths, 1 each, go last). Returns INFO."""
    info = integer(0)
    lengths = [ctypes.c_size_t(1)] * strings
    queries = [np.zeros(1, dtype=kind) for kind in work_kinds]
    function(*build([(q, -1) for q in queries]), ctypes.byref(info), *lengths)
    works = [np.zeros(max(int(q[0].real), 1), dtype=q.dtype) for q in queries]
    function(*build([(w, w.size) for w in works]), ctypes.byref(info), *lengths)
    return _checked(info.value)


def _checked(info: int) -> int:
    """INFO, after raising on a negative one (an argument LAPACK rejected: NaN input makes gesdd's
    scaling report one; the backend replaces non-finite matrices before calling)."""
    if info < 0:
        raise ValueError(f"LAPACK rejected argument {-info} (non-finite input?)")
    return info


def _sized(integer: Any, works: list) -> list:
    """Workspace arguments: each (array, size) as a pointer and a reference to its size."""
    return [x for work, size in works for x in (_pointer(work), ctypes.byref(integer(size)))]


def getrf(a: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lu, piv) of one (m, n) matrix as ``scipy.linalg.lu_factor``: lu in Fortran order, piv 0-based
    int32; SciPy's LinAlgWarning at an exactly zero pivot."""
    found = _routine(a.dtype, "getrf")
    if found is None or a.ndim != 2:
        return None
    function, integer = found
    m, n = a.shape
    lu = np.array(a, order="F", copy=True)
    piv = np.empty(min(m, n), dtype=np.int64 if integer is ctypes.c_int64 else np.int32)
    info = integer(0)
    function(ctypes.byref(integer(m)), ctypes.byref(integer(n)), _pointer(lu), ctypes.byref(integer(max(m, 1))),
             _pointer(piv), ctypes.byref(info))
    if _checked(info.value) > 0:
        from scipy.linalg import LinAlgWarning

        warnings.warn(f"Diagonal number {info.value} is exactly zero. Singular matrix.", LinAlgWarning, stacklevel=3)
    piv -= 1
    return lu, piv.astype(np.int32, copy=False)


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
    integer = factor[1]
    sizes = [ctypes.byref(integer(v)) for v in (n, m)]
    head = [_pointer(buffer), ctypes.byref(integer(n)), _pointer(tau)]
    _lapack_call(factor[0], integer, lambda works: sizes + head + _sized(integer, works), (a.dtype,))
    r = np.triu(buffer[:k, :])  # rows of L^T = R (k, n)
    if mode == "r":
        return r
    sizes = [ctypes.byref(integer(v)) for v in (k, m, k)]
    _lapack_call(generate[0], integer, lambda works: sizes + head + _sized(integer, works), (a.dtype,))  # Q' (k, m)
    q = buffer if k == n else np.ascontiguousarray(buffer[:, :k])  # Q = Q'^T (m, k)
    return q, r


def eigh(a: np.ndarray, lower: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``numpy.linalg.eigh`` of one (n, n) matrix (the ``lower`` or upper triangle read).

    Read in Fortran order the C buffer is B = A^T; its opposite triangle holds A's chosen one, and
    the Hermitian B built from it is conj(A_h) (A_h = A's Hermitian matrix). syevd/heevd give
    B = Z diag(w) Z^H, so A_h = conj(Z) diag(w) Z^T: the eigenvalues are w, and the buffer read
    in C order is Z^T, so V = conj(Z) is its conjugate transpose (a view for real input).
    """
    complex_ = np.dtype(a.dtype).kind == "c"
    found = _routine(a.dtype, "heevd" if complex_ else "syevd")
    if found is None or a.ndim != 2 or a.shape[0] == 0 or a.shape[0] != a.shape[1]:
        return None
    function, integer = found
    n = a.shape[0]
    real = np.finfo(a.dtype).dtype
    buffer = np.array(a, order="C", copy=True)
    w = np.zeros(n, dtype=real)
    head = [_string("V"), _string("U" if lower else "L"), ctypes.byref(integer(n)), _pointer(buffer),
            ctypes.byref(integer(n)), _pointer(w)]

    index = np.int64 if integer is ctypes.c_int64 else np.int32
    kinds = (a.dtype, real, index) if complex_ else (a.dtype, index)
    if _lapack_call(function, integer, lambda works: head + _sized(integer, works), kinds, strings=2) > 0:
        raise np.linalg.LinAlgError("Eigenvalues did not converge")
    return w, (np.conj(buffer.T) if complex_ else buffer.T)


def svd(a: np.ndarray, full_matrices: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``numpy.linalg.svd`` of one (m, n) matrix: (U, S, Vh), through gesdd on the transposed view.

    With B = A^T (the buffer read in Fortran order) = U' S V'^H, A = conj(V') S U'^T: gesdd's VT
    output (V'^H) read in C order is conj(V') = U, and its U output read in C order is U'^T = Vh.
    Singular values as NumPy's; the vectors may differ from NumPy's by a sign (phase) per pair.
    None for ``full_matrices`` with m != n: gesdd would complete the basis of the other side (that
    of B), a completion unlike NumPy's; NumPy's is kept there.
    """
    found = _routine(a.dtype, "gesdd")
    if found is None or a.ndim != 2 or a.size == 0 or (full_matrices and a.shape[0] != a.shape[1]):
        return None
    function, integer = found
    m, n = a.shape
    k = min(m, n)
    real = np.finfo(a.dtype).dtype
    buffer = np.array(a, order="C", copy=True)  # B = A^T, n x m, leading dimension n
    s = np.zeros(k, dtype=real)
    cols_u, rows_vt = (n, m) if full_matrices else (k, k)
    left = np.zeros((cols_u, n), dtype=a.dtype)  # U' (n x cols_u, Fortran) = Vh in C order
    right = np.zeros((m, rows_vt), dtype=a.dtype)  # V'^H (rows_vt x m, Fortran) = U in C order
    iwork = np.zeros(8 * k, dtype=np.int64 if integer is ctypes.c_int64 else np.int32)
    head = [_string("A" if full_matrices else "S"), ctypes.byref(integer(n)), ctypes.byref(integer(m)),
            _pointer(buffer), ctypes.byref(integer(n)), _pointer(s), _pointer(left), ctypes.byref(integer(n)),
            _pointer(right), ctypes.byref(integer(rows_vt))]
    complex_ = np.dtype(a.dtype).kind == "c"
    rwork = np.zeros(max(1, k * max(5 * k + 7, 2 * max(m, n) + 2 * k + 1)), dtype=real) if complex_ else None

    tail = ([_pointer(rwork)] if complex_ else []) + [_pointer(iwork)]
    if _lapack_call(function, integer, lambda works: head + _sized(integer, works) + tail, (a.dtype,), strings=1) > 0:
        raise np.linalg.LinAlgError("SVD did not converge")
    return right, s, left


__all__ = ["eigh", "getrf", "qr", "svd"]
