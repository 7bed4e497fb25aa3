"""Householder QR of batches of small real matrices, compiled (Numba, the optional extra ``compiled``; see
``numpy_compiled``), with NumPy's results: Q and R as ``numpy.linalg.qr`` (modes "reduced" and "r") gives
them, to rounding, the signs included.

Why not LAPACK: for 4096 matrices of 16 x 16 NumPy's gufunc calls geqrf and orgqr once per matrix, each
making BLAS-2 calls per column, copies every matrix into and out of Fortran order and zeroes R's lower
triangle in a pass of its own: ~23 ms on one core. A compiled loop over the batch makes no calls and
keeps one matrix in the core's cache (see docs/measurements.md for the time it takes).

Algorithm (Golub and Van Loan, "Matrix Computations", 4th ed., 5.2.2 and 5.1.6; LAPACK's geqr2 and
org2r), written here from the mathematics, one matrix A (m x n, k = min(m, n)) at a time:

1. Scale A by a power of two (exact) so that max |a_ij| lies in [1, 2) (``_scale_to_unit``): the sums of
   squares below neither overflow nor, but for columns far below the largest entry, underflow; R is
   scaled back exactly at the end, Q is unchanged by the scaling.
2. For j = 0 .. k-1: the reflector H_j = I - t u u^T (``_reflector``) mapping the column x = A[j:, j] to
   alpha e_1 with alpha = -sign(x_0) ||x||: LAPACK's dlarfg convention (for x_0 = +0 as well), so that
   each R_jj has LAPACK's sign, and H_j = I where x is zero below x_0 (R_jj = x_0). R_jj = alpha; the
   trailing columns become H_j A[j:, j+1:] = A - (t u) s^T with s = u^T A[j:, j+1:], computed along A's
   rows (s accumulates u_i A[i, j+1:], a contiguous axpy the compiler vectorises; no chained sums).
   Row j of the result is row j of R.
3. Q = H_0 H_1 ... H_{k-1} [I_k; 0], accumulated backwards (org2r): Q <- H_j Q changes rows j.. and,
   while the later reflectors alone have acted, only columns j..; again s = u^T Q[j:, j:] along rows.

A matrix holding an Inf or a NaN is left to ``numpy.linalg.qr`` (where they spread depends on LAPACK's
order of operations). float32 runs in float64 and is rounded at the end (within float32's rounding of
NumPy's single-precision result); complex matrices, larger ones and mode "complete" are NumPy's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import numpy_compiled, numpy_compiled_spectral
from .numpy_compiled_spectral import _largest, _reflector, _scale_to_unit  # (compiled by ``_kernels``)
from .numpy_threads import split_stacks

#: the largest matrix side factored here (NumPy's per-matrix overhead matters less above; SciPy's LAPACK
#: calls take single matrices up to the same side: ``numpy_backend.SMALL_QR_MAX``)
MAX_SIDE = 32

_HELPERS = ("_largest", "_scale_to_unit", "_reflector")


def _householder_qr(a: Any, want_q: bool, q: Any, r: Any, failed: Any) -> None:
    """q[p] (m x k, when ``want_q``), r[p] (k x n) = the reduced QR factors of a[p] (m x n, float64) for every
    p, k = min(m, n); failed[p] where a[p] holds an Inf or a NaN (q[p], r[p] then meaningless)."""
    count, m, n = a.shape
    k = min(m, n)
    entries = np.empty(m * n)
    h = entries.reshape(m, n)  # A, becoming R in its upper rows (exact zeros below the diagonal's columns done)
    v = np.empty((k, m))  # v[j, j:]: the vector u of H_j
    t = np.empty(k)
    s = np.empty(max(n, k))
    for p in range(count):
        largest = 0.0
        for i in range(m):
            for j in range(n):
                x = a[p, i, j]
                h[i, j] = x
                if abs(x) > largest or x != x:
                    largest = abs(x)
        finite, exponent = _scale_to_unit(entries, largest)
        if not finite:
            failed[p] = True
            continue
        for j in range(k):  # 2. the reflectors, applied to the trailing columns
            for i in range(j, m):
                v[j, i] = h[i, j]
                h[i, j] = 0.0
            h[j, j], t[j] = _reflector(v[j, j:])
            if t[j] == 0.0:
                continue
            for c in range(n):  # (whole rows, 16 long at n = 16: columns < j hold zeros in rows j.., and
                s[c] = 0.0      # column j's s is reset below; half the time of loops over j+1.. only)
            for i in range(j, m):
                for c in range(n):
                    s[c] += v[j, i] * h[i, c]
            for c in range(j + 1):
                s[c] = 0.0
            for i in range(j, m):
                tu = t[j] * v[j, i]
                for c in range(n):
                    h[i, c] -= tu * s[c]
        unscale = 2.0 ** -exponent
        for i in range(k):
            for j in range(n):
                r[p, i, j] = h[i, j] * unscale
        if not want_q:
            continue
        for i in range(m):  # 3. Q = H_0 ... H_{k-1} [I; 0], backwards: rows j.. of columns < j hold zeros
            for j in range(k):
                q[p, i, j] = 1.0 if i == j else 0.0
        for j in range(k - 1, -1, -1):
            if t[j] == 0.0:
                continue
            for c in range(k):
                s[c] = 0.0
            for i in range(j, m):
                for c in range(k):
                    s[c] += v[j, i] * q[p, i, c]
            for i in range(j, m):
                tu = t[j] * v[j, i]
                for c in range(k):
                    q[p, i, c] -= tu * s[c]


_compiled: Any = None


def _kernel() -> Any:
    global _compiled
    if _compiled is None:
        spectral = numpy_compiled_spectral._kernels()  # (compiles the shared helpers into that module first)
        if spectral is None:
            return None
        import numba

        globals().update({name: getattr(numpy_compiled_spectral, name) for name in _HELPERS})
        _compiled = numba.njit(cache=True, nogil=True)(_householder_qr)
    return _compiled


def qr(a: Any, mode: str) -> Any:
    """``numpy.linalg.qr(a, mode)`` for a stack of small real matrices a (..., m, n) and modes "reduced" ((q, r))
    and "r" (r), compiled and split over threads; matrices holding an Inf or a NaN are NumPy's. None
    without Numba, for other dtypes, modes, empty stacks and sides above ``MAX_SIDE``: the caller falls back."""
    m, n = a.shape[-2:]
    if (mode not in ("reduced", "r") or a.dtype not in (np.float32, np.float64) or a.size == 0
            or max(m, n) > MAX_SIDE or not numpy_compiled.available()):
        return None
    kernel = _kernel()
    if kernel is None:
        return None
    k = min(m, n)
    stack = np.ascontiguousarray(a, dtype=np.float64).reshape(-1, m, n)
    want_q = mode == "reduced"
    q = np.empty((len(stack), m, k) if want_q else (len(stack), 0, 0))
    r = np.empty((len(stack), k, n))
    failed = np.zeros(len(stack), dtype=np.bool_)
    split_stacks(lambda block, q_block, r_block, failed_block: kernel(block, want_q, q_block, r_block, failed_block),
                 (stack, q, r, failed), max(m, n), len(stack) * m * n * k)
    if failed.any():
        redone = np.linalg.qr(stack[failed], mode=mode)
        if want_q:
            q[failed], r[failed] = redone
        else:
            r[failed] = redone
    batch = a.shape[:-2]
    r = r.astype(a.dtype, copy=False).reshape(*batch, k, n)
    return (q.astype(a.dtype, copy=False).reshape(*batch, m, k), r) if want_q else r
