"""Householder QR of batches of small real matrices, compiled (Numba, the optional extra ``compiled``; see
``numpy_compiled``), with NumPy's results: Q and R as ``numpy.linalg.qr`` (modes "reduced" and "r") gives
them, to rounding, the signs included.

Why not LAPACK: for 4096 matrices of 16 x 16 NumPy's gufunc calls geqrf and orgqr once per matrix, each
making BLAS-2 calls per column, copies every matrix into and out of Fortran order and zeroes R's lower
triangle in a pass of its own: ~23 ms on one core. A compiled loop over the batch makes no calls and
keeps one matrix in the core's cache (see docs/measurements.md for the time it takes).

Algorithm (Golub and Van Loan, "Matrix Computations", 4th ed., 5.2.2 and 5.1.6; LAPACK's geqr2 and
org2r), written from the mathematics, one matrix A (m x n, k = min(m, n)) at a time; the kernel,
``numpy_compiled_spectral._householder_qr``, lives beside the helpers it inlines (``_reflector`` and
the scaling): Numba's cache is keyed on the text of the kernel's own file, so a kernel here kept a
cached copy of those helpers after they changed (review14: the sign fix of ``_reflector`` did not reach
it in a checkout that had run it before):

1. A as it is, as LAPACK's geqr2 takes it: only the reflector scales its own vector by a power of two,
   where its sum of squares would underflow or overflow (``_reflector``; dlarfg's dnrm2 is safe). (QR is
   column-scaling invariant, and so is geqr2, each column reflected in its own scale: one scaling of the
   whole matrix to max |a_ij| in [1, 2) made a column below 2^-1022 of the largest entry subnormal or
   zero, and Q's columns from there on O(1) off NumPy's; scaling each column so flushed its entries far
   below its largest, e.g. 2^-600 under 2^600, and R_jj took the other sign, review14.)
2. For j = 0 .. k-1: the reflector H_j = I - t u u^T (``_reflector``) mapping the column x = A[j:, j] to
   alpha e_1 with alpha = -sign(x_0) ||x||: LAPACK's dlarfg convention (for x_0 = +0 as well), so that
   each R_jj has LAPACK's sign, and H_j = I where x is zero below x_0 (R_jj = x_0). R_jj = alpha. H_j
   is then written as dlarfg writes it, I - tau v v^T with v = u / u_0 (v_0 = 1, the tail times the
   reciprocal of u_0) and tau = (alpha - x_0) / alpha, and applied as dlarf applies it: the trailing
   columns become A + v (-tau s)^T with s = v^T A[j:, j+1:], over the rows up to v's last nonzero,
   computed along A's rows (s accumulates v_i A[i, j+1:], a contiguous axpy the compiler vectorises; no
   chained sums). Row j of the result is row j of R. (With H = I - t u u^T applied as A - (t u) s^T,
   entries that are zero in exact arithmetic came out as rounding noise where LAPACK's come out zero,
   e.g. under a reflector that swaps two rows (tau = 1, v = (1, +-1)), and signed zeros otherwise:
   R_jj then took the sign of that noise or zero, Q's column O(1) off NumPy's, for about a quarter of
   scaled permutation matrices and of matrices with a zero first row, review14.)
3. Q = H_0 H_1 ... H_{k-1} [I_k; 0], accumulated backwards (org2r): Q <- H_j Q changes rows j.. and,
   while the later reflectors alone have acted, only columns j..; again s = v^T Q[j:, j:] along rows.

Where x holds exact zeros, NumPy's signs are reproduced in so far as LAPACK's arithmetic is (the same
formulas; its norms and OpenBLAS's fused multiply-adds round otherwise): where an entry that is zero in
exact arithmetic comes out as rounding noise in one of the two and not in the other (a column in the
span of the earlier ones, a rank-deficient block), the later R_jj can differ in sign, as they can
between two LAPACK builds; Q R = A and Q^T Q = I to rounding all the same.

A matrix holding an Inf or a NaN, or whose R overflows (a column's norm above the largest float64) or a
reflector's tau (beta - x_0, both near the largest float64), is left to ``numpy.linalg.qr`` (where Inf
and NaN spread depends on LAPACK's order of operations). float32 runs in float64 and is rounded at the
end (within float32's rounding of NumPy's single-precision result); complex matrices, larger ones and
mode "complete" are NumPy's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import numpy_compiled, numpy_compiled_spectral
from .numpy_threads import split_stacks

#: the largest matrix side factored here (NumPy's per-matrix overhead matters less above; SciPy's LAPACK
#: calls take single matrices up to the same side: ``numpy_backend.SMALL_QR_MAX``)
MAX_SIDE = 32


def qr(a: Any, mode: str) -> Any:
    """``numpy.linalg.qr(a, mode)`` for a stack of small real matrices a (..., m, n) and modes "reduced" ((q, r))
    and "r" (r), compiled and split over threads; matrices holding an Inf or a NaN, or whose R overflows, are
    NumPy's. None without Numba, for other dtypes, modes, empty stacks and sides above ``MAX_SIDE``: the caller
    falls back."""
    m, n = a.shape[-2:]
    if (mode not in ("reduced", "r") or a.dtype not in (np.float32, np.float64) or a.size == 0
            or max(m, n) > MAX_SIDE or not numpy_compiled.available()):
        return None
    kernels = numpy_compiled_spectral._kernels()
    if kernels is None:
        return None
    kernel = kernels["qr"]
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
