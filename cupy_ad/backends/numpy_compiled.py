"""Compiled kernels for batches of small matrices on NumPy, from Numba when it is installed (the
optional extra ``compiled``); every function returns None without it, and callers fall back.

Why Numba: a triangular solve of 4096 matrices of 16 x 16 is 4096 tiny trsm calls (a Python or
ctypes loop: ~5 us each) or a substitution vectorised over the batch (16 NumPy steps, each a batched
matmul of a row against the solved part); a compiled loop does the same arithmetic in one call with
no temporaries. The same holds for the LU factorisation (getf2's elimination, 16 vectorised NumPy
steps otherwise) and its tangent (otherwise four batched solves and products, each a pass over the
whole batch; one matrix at a time it stays in the core's cache and takes half the flops). Numba is
well kept, installs from PyPI with NumPy 2.4, and its compiled functions are cached on disk after
the first call. The kernels release the GIL (``nogil``): a large batch is split over threads in
contiguous blocks (``numpy_threads.split_stacks``), each matrix computed as in one call.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .numpy_threads import split_stacks

_DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
_KERNEL_DTYPES = frozenset(map(np.dtype, _DTYPES))


def _substitute(a: Any, b: Any, x: Any, lower: bool, transposed: bool, conjugate: bool,
                unit_diagonal: bool) -> None:
    """x[p] = op(tri(a[p]))^-1 b[p] for every p, op(T) = T, T^T (transposed) or T^H (and conjugate):
    forward substitution where op(T) is lower, back substitution where it is upper, a row of x at a
    time (its entries in turn minus op(T)[i, m] x[m, :] for the solved rows m, in order; the inner
    loop runs along the row)."""
    count, n, k = b.shape
    for p in range(count):
        for step in range(n):
            i = step if lower else n - 1 - step
            for j in range(k):
                x[p, i, j] = b[p, i, j]
            start, stop = (0, i) if lower else (i + 1, n)
            for m in range(start, stop):
                t = a[p, m, i] if transposed else a[p, i, m]
                if conjugate:
                    t = np.conj(t)
                for j in range(k):
                    x[p, i, j] -= t * x[p, m, j]
            if not unit_diagonal:
                d = np.conj(a[p, i, i]) if conjugate else a[p, i, i]
                for j in range(k):
                    x[p, i, j] = x[p, i, j] / d


def _triangle_times(a: Any, b: Any, out: Any, lower: bool, transposed: bool, conjugate: bool,
                    unit_diagonal: bool) -> None:
    """out[p] = op(tri(a[p])) b[p] for every p (op as in ``_substitute``; ``lower``: op(T) is lower), a
    row of out at a time, the solved-for order of ``_substitute`` read forwards."""
    count, n, k = b.shape
    for p in range(count):
        for i in range(n):
            for j in range(k):
                out[p, i, j] = b[p, i, j] if unit_diagonal else 0
            start, stop = (0, i if unit_diagonal else i + 1) if lower else (i + 1 if unit_diagonal else i, n)
            for m in range(start, stop):
                t = a[p, m, i] if transposed else a[p, i, m]
                if conjugate:
                    t = np.conj(t)
                for j in range(k):
                    out[p, i, j] += t * b[p, m, j]


def _getf2(lu: Any, piv: Any) -> None:
    """LU with partial pivoting of every lu[p] in place (LAPACK's getf2: pivot = the first entry of
    largest |re| + |im| in the column, row interchange, the column below divided by the pivot (not
    at a zero pivot), rank-one update of the rest); piv[p, j] the row swapped with row j."""
    count, m, n = lu.shape
    for p in range(count):
        for j in range(min(m, n)):
            best, size = j, abs(lu[p, j, j].real) + abs(lu[p, j, j].imag)  # (a NaN there stays: idamax)
            for i in range(j + 1, m):
                v = lu[p, i, j]
                s = abs(v.real) + abs(v.imag)
                if s > size:
                    best, size = i, s
            piv[p, j] = best
            if best != j:
                for c in range(n):
                    lu[p, j, c], lu[p, best, c] = lu[p, best, c], lu[p, j, c]
            pivot = lu[p, j, j]
            if pivot != 0:
                for i in range(j + 1, m):
                    lu[p, i, j] = lu[p, i, j] / pivot
            for i in range(j + 1, m):
                factor = lu[p, i, j]
                for c in range(j + 1, n):
                    lu[p, i, c] -= factor * lu[p, j, c]


def _lu_tangent(f: Any, perm: Any, da: Any, out: Any) -> None:
    """out[p] = dL + dU of the square packed factor f[p] (P A = L U, zero pivots set to 1 by the caller)
    for the tangent da[p] (derivation: cupy_ad/linalg/lu_tangent.py), in place in out[p] = P dA[p]:
    W = L^-1 P dA forward over the rows; then row by row the strict lower part of X = W U^-1 (x[i, m]
    = w[i, m] / U[m, m] once the columns left of m are subtracted) while the same subtractions
    x[i, m] U[m, j] leave dU = W - tril(X, -1) U on and above the diagonal (only pivots left of the
    diagonal are divided by: never the last); then dL = L tril(X, -1) from the last row up, each row
    reading the rows above it, still X. One matrix at a time: 2 n^3 flops in the core's cache."""
    count, n, _ = da.shape
    for p in range(count):
        for i in range(n):
            for j in range(n):
                out[p, i, j] = da[p, perm[p, i], j]
        for i in range(1, n):
            for m in range(i):
                lim = f[p, i, m]
                for j in range(n):
                    out[p, i, j] -= lim * out[p, m, j]
        for i in range(1, n):
            for m in range(i):
                x = out[p, i, m] / f[p, m, m]
                out[p, i, m] = x
                for j in range(m + 1, n):
                    out[p, i, j] -= x * f[p, m, j]
        for i in range(n - 1, 1, -1):
            for m in range(i - 1, 0, -1):
                lim = f[p, i, m]
                for j in range(m):
                    out[p, i, j] += lim * out[p, m, j]


def _cholesky_tangent(f: Any, da: Any, out: Any, upper: bool) -> None:
    """out[p] = dL for the Cholesky factor L = f[p] (with ``upper``: f[p] = U = L^H and out[p] = dU = dL^H)
    and the Hermitian matrix H read from one triangle of da[p] (the lower; with ``upper`` the upper),
    derivation in cupy_ad/linalg/cholesky_tangent.py: W = L^-1 H, then S = L^-1 W^H (both forward
    substitutions by rows), Phi(S) (its lower triangle, the diagonal's real part halved), then
    dL = L Phi(S) from the last row up, each row reading the rows above it, still Phi. Every inner
    loop runs along a row (contiguous, vectorised); one matrix at a time in two n x n scratches."""
    count, n, _ = da.shape
    w = np.empty((n, n), dtype=out.dtype)
    s = np.empty((n, n), dtype=out.dtype)
    zero, half = out.dtype.type(0), out.dtype.type(0.5)  # (typed: Python numbers would widen to 64 bits)
    for p in range(count):
        for i in range(n):
            for j in range(n):
                if i == j:
                    w[i, j] = da[p, i, i].real
                elif (i > j) != upper:  # in the triangle read
                    w[i, j] = da[p, i, j]
                else:
                    w[i, j] = np.conj(da[p, j, i])
        for i in range(n):  # W = L^-1 H in place
            for m in range(i):
                lim = np.conj(f[p, m, i]) if upper else f[p, i, m]
                for j in range(n):
                    w[i, j] -= lim * w[m, j]
            d = f[p, i, i].real
            for j in range(n):
                w[i, j] = w[i, j] / d
        for i in range(n):  # S = L^-1 W^H
            for j in range(n):
                s[i, j] = np.conj(w[j, i])
            for m in range(i):
                lim = np.conj(f[p, m, i]) if upper else f[p, i, m]
                for j in range(n):
                    s[i, j] -= lim * s[m, j]
            d = f[p, i, i].real
            for j in range(n):
                s[i, j] = s[i, j] / d
        for i in range(n):  # Phi(S) on and below the diagonal
            s[i, i] = half * s[i, i].real
        for i in range(n - 1, -1, -1):  # dL = L Phi(S)
            d = f[p, i, i].real
            for j in range(i + 1):
                s[i, j] = d * s[i, j]
            for m in range(i):
                lim = np.conj(f[p, m, i]) if upper else f[p, i, m]
                for j in range(m + 1):
                    s[i, j] += lim * s[m, j]
        for i in range(n):
            for j in range(n):
                v = s[i, j] if j <= i else zero * s[i, j]
                if upper:
                    out[p, j, i] = np.conj(v)
                else:
                    out[p, i, j] = v


def _qr_tangent(q: Any, r: Any, da: Any, dq: Any, dr: Any) -> None:
    """(dq[p], dr[p]) = (dQ, dR) of the QR factors Q = q[p] (m x n, m >= n), R = r[p] for the tangent
    da[p], derivation in cupy_ad/linalg/qr_tangent.py, with X and dQ held transposed (n x m scratches):
    X^T = R^-T dA^T by forward substitution (row j of X^T: dA's column j minus R_kj times row k for
    k < j in turn, then divided by R_jj; an exactly zero R_jj divides as NaN, as the composition's
    guarded solve), C^T = X^T conj(Q) (row j: X^T_ji times Q's conjugated row i, summed over i in turn),
    U = triu(C + C^H, 1) + Re diag(C), dR = U R row by row (U_ik times R's whole row k for k >= i:
    R's zero triangle read too, so a NaN in U spreads as in the composition's product), dQ^T = X^T -
    U^T Q^T (row j: minus U_kj times row k of Q^T for k <= j: U's upper triangle only), dq = (dQ^T)^T.
    Every product loop runs along a whole row of m or n entries, contiguous and vectorised (X's rows
    would give the triangular steps rows k+1..n, mostly too short to vectorise), four terms per pass
    over the row (one load and store of it per four multiply-adds) entering in the order of one-term
    loops, so that every sum rounds as one term at a time would; one matrix at a time in four small
    scratches."""
    count, m, n = da.shape
    xt = np.empty((n, m), dtype=dq.dtype)  # X^T, then dQ^T
    qt = np.empty((n, m), dtype=dq.dtype)  # Q^T
    ct = np.empty((n, n), dtype=dq.dtype)  # C^T
    u = np.empty((n, n), dtype=dq.dtype)  # U (its upper triangle)
    nan = dq.dtype.type(np.nan)  # (typed: a Python float would widen the solve to float64)
    for p in range(count):
        i = 0
        while i < m:  # X^T = dA^T and Q^T, four of their columns at a time
            if i + 4 <= m:
                for j in range(n):
                    xt[j, i], xt[j, i + 1], xt[j, i + 2], xt[j, i + 3] = (
                        da[p, i, j], da[p, i + 1, j], da[p, i + 2, j], da[p, i + 3, j])
                for j in range(n):
                    qt[j, i], qt[j, i + 1], qt[j, i + 2], qt[j, i + 3] = (
                        q[p, i, j], q[p, i + 1, j], q[p, i + 2, j], q[p, i + 3, j])
                i += 4
            else:
                for j in range(n):
                    xt[j, i] = da[p, i, j]
                    qt[j, i] = q[p, i, j]
                i += 1
        for j in range(n):  # X^T = R^-T dA^T
            k = 0
            while k + 4 <= j:
                t0, t1, t2, t3 = r[p, k, j], r[p, k + 1, j], r[p, k + 2, j], r[p, k + 3, j]
                for i in range(m):
                    xt[j, i] = xt[j, i] - t0 * xt[k, i] - t1 * xt[k + 1, i] - t2 * xt[k + 2, i] - t3 * xt[k + 3, i]
                k += 4
            for k in range(k, j):
                t = r[p, k, j]
                for i in range(m):
                    xt[j, i] -= t * xt[k, i]
            d = r[p, j, j]
            d = d if d != 0 else nan
            for i in range(m):
                xt[j, i] = xt[j, i] / d
        for j in range(n):  # C^T = X^T conj(Q)
            for k in range(n):
                ct[j, k] = 0
            i = 0
            while i + 4 <= m:
                t0, t1, t2, t3 = xt[j, i], xt[j, i + 1], xt[j, i + 2], xt[j, i + 3]
                for k in range(n):
                    ct[j, k] = (ct[j, k] + np.conj(q[p, i, k]) * t0 + np.conj(q[p, i + 1, k]) * t1
                                + np.conj(q[p, i + 2, k]) * t2 + np.conj(q[p, i + 3, k]) * t3)
                i += 4
            for i in range(i, m):
                t = xt[j, i]
                for k in range(n):
                    ct[j, k] += np.conj(q[p, i, k]) * t
        for i in range(n):  # U, upper triangle (the rest unread)
            u[i, i] = ct[i, i].real
            for j in range(i + 1, n):
                u[i, j] = ct[j, i] + np.conj(ct[i, j])
        for i in range(n):  # dR = U R
            for j in range(n):
                dr[p, i, j] = 0
            k = i
            while k + 4 <= n:
                t0, t1, t2, t3 = u[i, k], u[i, k + 1], u[i, k + 2], u[i, k + 3]
                for j in range(n):
                    dr[p, i, j] = (dr[p, i, j] + t0 * r[p, k, j] + t1 * r[p, k + 1, j] + t2 * r[p, k + 2, j]
                                   + t3 * r[p, k + 3, j])
                k += 4
            for k in range(k, n):
                t = u[i, k]
                for j in range(n):
                    dr[p, i, j] += t * r[p, k, j]
        for j in range(n):  # dQ^T = X^T - U^T Q^T
            k = 0
            while k + 4 <= j + 1:
                t0, t1, t2, t3 = u[k, j], u[k + 1, j], u[k + 2, j], u[k + 3, j]
                for i in range(m):
                    xt[j, i] = xt[j, i] - t0 * qt[k, i] - t1 * qt[k + 1, i] - t2 * qt[k + 2, i] - t3 * qt[k + 3, i]
                k += 4
            for k in range(k, j + 1):
                t = u[k, j]
                for i in range(m):
                    xt[j, i] -= t * qt[k, i]
        for i in range(m):  # dQ = (dQ^T)^T
            for j in range(n):
                dq[p, i, j] = xt[j, i]


_compiled: Any = False  # not looked for yet (importing Numba costs ~0.5 s: only when a batch needs it)


def _kernels() -> Any:
    global _compiled
    if _compiled is False:
        try:
            import numba
        except ImportError:  # the extra is not installed
            _compiled = None
        else:
            jit = numba.njit(cache=True, nogil=True)
            _compiled = {"substitute": jit(_substitute), "triangle_times": jit(_triangle_times), "getf2": jit(_getf2),
                         "lu_tangent": jit(_lu_tangent), "cholesky_tangent": jit(_cholesky_tangent),
                         "qr_tangent": jit(_qr_tangent)}
    return _compiled


def available() -> bool:
    return _kernels() is not None


def solve_triangular_batched(a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(tri(a))^-1 b for a (..., n, n) and b (..., n, k) of one batch shape (no broadcasting), compiled;
    None without Numba or for other shapes and dtypes."""
    return _triangular("substitute", a, b, lower, trans, unit_diagonal)


def triangular_product_batched(a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(tri(a)) b for a (..., n, n) and b (..., n, k) of one batch shape, compiled; None without Numba or
    for other shapes and dtypes."""
    return _triangular("triangle_times", a, b, lower, trans, unit_diagonal)


def _triangular(kernel: str, a: Any, b: Any, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """The kernel ``kernel`` (``_substitute`` or ``_triangle_times``) on the batch, into a new array."""
    dtype = np.result_type(a.dtype, b.dtype)
    kernels = _kernels()
    if kernels is None or dtype.type not in _DTYPES or a.shape[:-2] != b.shape[:-2] or b.ndim < 3:
        return None
    n, k = b.shape[-2:]
    out = np.empty(b.shape, dtype=dtype)
    transposed = bool(trans)
    flags = (bool(lower) != transposed, transposed, trans == 2 and dtype.kind == "c", bool(unit_diagonal))
    stacks = (a.astype(dtype, copy=False).reshape(-1, n, n), b.astype(dtype, copy=False).reshape(-1, n, k),
              out.reshape(-1, n, k))
    split_stacks(lambda *blocks: kernels[kernel](*blocks, *flags), stacks, n, out.size * n)
    return out


def lu_factor_batched(a: Any) -> tuple[Any, Any] | None:
    """(lu, piv) of every matrix of a (..., m, n), as LAPACK's getf2 computes them, compiled; None without
    Numba or for other dtypes."""
    kernels = _kernels()
    if kernels is None or a.dtype.type not in _DTYPES:
        return None
    *batch, m, n = a.shape
    lu = np.array(a, order="C", copy=True)
    piv = np.empty((*batch, min(m, n)), dtype=np.int32)
    split_stacks(kernels["getf2"], (lu.reshape(-1, m, n), piv.reshape(-1, min(m, n))), max(m, n),
                 lu.size * min(m, n))
    return lu, piv


def _tangent_dtype(*operands: Any) -> Any:
    """The dtype a tangent kernel computes ``operands`` in: their common one, at least float32 (without
    NumPy's type promotion, 1 us, where they share a kernel's dtype); None where no kernel has it."""
    dtype = operands[0].dtype
    for x in operands:
        if x.dtype != dtype:
            break
    else:
        if dtype in _KERNEL_DTYPES:
            return dtype
    dtype = np.result_type(*(x.dtype for x in operands), np.float32)
    return dtype if dtype in _KERNEL_DTYPES else None


def lu_tangent_batched(f: Any, perm: Any, da: Any) -> Any:
    """dL + dU of every square packed factor f (..., n, n) with row permutation perm (..., n) for the
    tangent da of f's shape, compiled (see ``_lu_tangent``); None without Numba or for other dtypes."""
    kernels = _kernels()
    dtype = _tangent_dtype(f, da)
    if kernels is None or dtype is None:
        return None
    n = f.shape[-1]
    out = np.empty(da.shape, dtype=dtype)
    stacks = (np.ascontiguousarray(f, dtype=dtype).reshape(-1, n, n), perm.reshape(-1, n),
              da.astype(dtype, copy=False).reshape(-1, n, n), out.reshape(-1, n, n))
    split_stacks(kernels["lu_tangent"], stacks, n, out.size * n)
    return out


def cholesky_tangent_batched(factor: Any, da: Any, upper: bool) -> Any:
    """The tangent of every Cholesky factor (..., n, n) (lower, or upper with ``upper``) for the tangent
    ``da`` of the matrix, of the same shape, compiled (see ``_cholesky_tangent``); None without Numba,
    for other dtypes, or where a factor has an exactly zero diagonal entry (the kernel's division
    raises ZeroDivisionError there; the composition's solves raise LinAlgError, as LAPACK's trtrs)."""
    kernels = _kernels()
    dtype = _tangent_dtype(factor, da)
    if kernels is None or dtype is None:
        return None
    n = factor.shape[-1]
    out = np.empty(da.shape, dtype=dtype)
    stacks = (np.ascontiguousarray(factor, dtype=dtype).reshape(-1, n, n),
              np.ascontiguousarray(da, dtype=dtype).reshape(-1, n, n), out.reshape(-1, n, n))
    try:
        split_stacks(lambda *blocks: kernels["cholesky_tangent"](*blocks, bool(upper)), stacks, n, out.size * n)
    except ZeroDivisionError:
        return None
    return out


def qr_tangent_batched(q: Any, r: Any, da: Any) -> tuple[Any, Any] | None:
    """(dQ, dR) of every QR factor pair Q (..., m, n), R (..., n, n) with m >= n for the tangent ``da`` of
    Q's shape, compiled (see ``_qr_tangent``); None without Numba or for other dtypes."""
    kernels = _kernels()
    dtype = _tangent_dtype(q, r, da)
    if kernels is None or dtype is None:
        return None
    m, n = q.shape[-2:]
    dq = np.empty(da.shape, dtype=dtype)
    dr = np.empty(r.shape, dtype=dtype)
    stacks = (np.ascontiguousarray(q, dtype=dtype).reshape(-1, m, n),
              np.ascontiguousarray(r, dtype=dtype).reshape(-1, n, n),
              np.ascontiguousarray(da, dtype=dtype).reshape(-1, m, n), dq.reshape(-1, m, n), dr.reshape(-1, n, n))
    split_stacks(kernels["qr_tangent"], stacks, m, dq.size * n)
    return dq, dr
