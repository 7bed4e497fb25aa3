"""Eigen-decomposition of small real symmetric matrices, compiled (Numba, the optional extra ``compiled``;
see ``numpy_compiled``): a batch of 4096 matrices of 16 x 16 in ~0.6x the time of NumPy's eigh gufunc
(LAPACK syevd, one matrix a call) on one thread, the same on each of several threads.

Why not LAPACK: at 16 x 16 syevd makes BLAS-2 calls for each Householder step and NumPy's gufunc
copies each matrix into and out of Fortran order; a compiled loop over the batch makes no calls and
keeps one matrix in the core's cache (the same arithmetic, 48-54 ms of CPU against syevd's 85-98 for
the 4096; of those, ~21 ms the tridiagonal reduction and Q, the rest mostly the latency of the QL
iteration's chain of square roots and divisions).

Algorithm (Golub and Van Loan, "Matrix Computations", 4th ed., 8.3; Bowdler, Martin, Reinsch and
Wilkinson 1968, "The QR and QL algorithms for symmetric matrices"), written here from the mathematics:

1. Scale A by a power of two (exact) so that max |a_ij| lies in [1, 2): no overflow or underflow in
   the squares below; the eigenvalues are scaled back exactly.
2. Householder tridiagonalisation: for k = 0 .. n-3, H_k = I - tau u u^T with u = x - alpha e_1, x the
   column k below the diagonal, alpha = -sign(x_0) ||x|| (no cancellation in u_0), tau = 2 / u^T u,
   maps x to alpha e_1; the trailing block becomes H A H = A - u q^T - q u^T with
   q = tau A u - (tau^2 / 2) (u^T A u) u. Then Q^T A Q = T (tridiagonal: diagonal d, subdiagonal e)
   with Q = H_0 H_1 ... H_{n-3}, accumulated backwards (Q <- H_k Q changes its rows k+1.. only).
3. Implicit QL with Wilkinson's shift on T: for each l, while the subdiagonal e_l is not negligible
   (|e_m| <= eps (|d_m| + |d_{m+1}|) splits T at the first such m >= l), one QL step on the block
   l..m: the shift is the eigenvalue of the leading 2 x 2 block nearer d_l, and a chain of plane
   rotations from the bottom chases the bulge; each rotation acts on two columns of Q. At most
   ``limit`` steps per eigenvalue (30, as EISPACK's tql2); a matrix that needs more is flagged and
   decomposed by LAPACK instead.
4. Eigenvalues ascending (a selection sort, moving their columns along): A = V diag(w) V^T, V = Q Z.

Backward stable like syevd (each step orthogonal, each neglected entry below eps times its
neighbours), so the eigenvalues agree with LAPACK's to rounding and exactly repeated eigenvalues come
out split by a few eps ||A|| (what ``linalg._clusters`` resolves); each eigenvector agrees up to its
sign, which this algorithm fixes otherwise than LAPACK (the rules do not depend on it).
float32 runs in float64 (rounded at the end); complex (Hermitian) matrices are left to LAPACK.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import numpy_compiled
from .numpy_threads import split_stacks

#: the largest matrix side decomposed here: at 32, 4096 matrices took 34 ms against NumPy's 42, but exactly
#: repeated eigenvalues of random orthogonal similarity transforms came out split by up to 21 eps ||A||
#: (LAPACK: 15; ``linalg._clusters`` resolves 16), where at n <= 16 both stay below 15
MAX_N = 16
#: QL steps allowed per eigenvalue before a matrix is left to LAPACK
STEP_LIMIT = 30


def _symmetric_eigen(a: Any, lower: bool, limit: int, w: Any, v: Any, failed: Any) -> None:
    """w[p], v[p] = the ascending eigenvalues and orthonormal eigenvectors (columns) of the symmetric
    matrix held in the ``lower`` (else upper) triangle of a[p], for every p; failed[p] where the QL
    iteration needed more than ``limit`` steps for one eigenvalue (w[p], v[p] then meaningless)."""
    count, n, _ = a.shape
    eps = np.finfo(np.float64).eps
    h = np.empty((n, n))  # the symmetric matrix being reduced (its trailing block)
    u = np.empty((n, n))  # u[k, k+1:]: the vector of H_k
    y = np.empty((n, n))  # Q
    z = np.empty((n, n))  # z[j, :] = column j of Q, then of V (rotations act on two rows: contiguous)
    d = np.empty(n)
    e = np.empty(n)
    tau = np.empty(n)
    q = np.empty(n)
    for p in range(count):
        largest = 0.0
        for i in range(n):
            for j in range(i + 1):
                x = a[p, i, j] if lower else a[p, j, i]
                h[i, j] = x
                h[j, i] = x
                if abs(x) > largest or x != x:  # (a NaN stays)
                    largest = abs(x)
        if not largest < math.inf:  # (Inf or NaN: left to LAPACK, as a failure)
            failed[p] = True
            continue
        exponent = 0 if largest == 0.0 else min(max(-math.floor(math.log2(largest)), -1000), 1000)
        scale = 2.0 ** exponent
        for i in range(n):
            for j in range(n):
                h[i, j] *= scale
        # 2. Householder tridiagonalisation (inner loops along rows: vectorised, no chained sums)
        for k in range(n - 2):
            tail = 0.0
            for i in range(k + 2, n):
                tail += h[k, i] * h[k, i]
            x0 = h[k, k + 1]
            if tail == 0.0:  # already zero below the subdiagonal: H_k = I
                tau[k] = 0.0
                e[k] = x0
                continue
            alpha = math.sqrt(x0 * x0 + tail)
            if x0 > 0.0:
                alpha = -alpha
            e[k] = alpha
            for i in range(k + 1, n):  # u = x - alpha e_1 (row k of u: H_k's vector)
                u[k, i] = h[k, i]
            u[k, k + 1] = x0 - alpha
            t = 2.0 / (u[k, k + 1] * u[k, k + 1] + tail)
            tau[k] = t
            for i in range(k + 1, n):
                q[i] = 0.0
            for j in range(k + 1, n):  # q = t A u, column by column (A symmetric: row j)
                uj = t * u[k, j]
                for i in range(k + 1, n):
                    q[i] += h[j, i] * uj
            half = 0.0
            for i in range(k + 1, n):
                half += u[k, i] * q[i]
            half *= 0.5 * t
            for i in range(k + 1, n):
                q[i] -= half * u[k, i]
            for i in range(k + 1, n):
                ui, qi = u[k, i], q[i]
                for j in range(k + 1, n):
                    h[i, j] -= ui * q[j] + qi * u[k, j]
        for k in range(n):
            d[k] = h[k, k]
        if n >= 2:
            e[n - 2] = h[n - 2, n - 1]
        e[n - 1] = 0.0
        for i in range(n):
            for j in range(n):
                y[i, j] = 1.0 if i == j else 0.0
        for k in range(n - 3, -1, -1):  # Q = H_0 (H_1 (... H_{n-3})): Q -= tau u (u^T Q), rows k+1.. of Q
            if tau[k] == 0.0:
                continue
            for j in range(k + 1, n):
                q[j] = 0.0
            for i in range(k + 1, n):
                ui = u[k, i]
                for j in range(k + 1, n):
                    q[j] += ui * y[i, j]
            for i in range(k + 1, n):
                ui = tau[k] * u[k, i]
                for j in range(k + 1, n):
                    y[i, j] -= ui * q[j]
        for i in range(n):
            for j in range(n):
                z[i, j] = y[j, i]
        # 3. implicit QL with Wilkinson's shift
        converged = True
        for l in range(n):
            steps = 0
            while converged:
                m = l
                while m < n - 1 and abs(e[m]) > eps * (abs(d[m]) + abs(d[m + 1])):
                    m += 1
                if m == l:
                    break
                steps += 1
                if steps > limit:
                    converged = False
                    break
                g = (d[l + 1] - d[l]) / (2.0 * e[l])
                r = math.sqrt(g * g + 1.0)
                g = d[m] - d[l] + e[l] / (g + (r if g >= 0.0 else -r))
                s, c, shift = 1.0, 1.0, 0.0
                split = False
                for i in range(m - 1, l - 1, -1):
                    f = s * e[i]
                    b = c * e[i]
                    r = math.sqrt(f * f + g * g)
                    e[i + 1] = r
                    if r == 0.0:  # (f = g = 0: T splits at i + 1; start the step again)
                        d[i + 1] -= shift
                        e[m] = 0.0
                        split = True
                        break
                    inverse = 1.0 / r
                    s = f * inverse
                    c = g * inverse
                    g = d[i + 1] - shift
                    r = (d[i] - g) * s + 2.0 * c * b
                    shift = s * r
                    d[i + 1] = g + shift
                    g = c * r - b
                    for k in range(n):
                        f = z[i + 1, k]
                        z[i + 1, k] = s * z[i, k] + c * f
                        z[i, k] = c * z[i, k] - s * f
                if not split:
                    d[l] -= shift
                    e[l] = g
                    e[m] = 0.0
        failed[p] = not converged
        # 4. ascending order, V[:, j] = z[j, :], eigenvalues scaled back
        for i in range(n - 1):
            smallest = i
            for j in range(i + 1, n):
                if d[j] < d[smallest]:
                    smallest = j
            if smallest != i:
                d[i], d[smallest] = d[smallest], d[i]
                for k in range(n):
                    z[i, k], z[smallest, k] = z[smallest, k], z[i, k]
        unscale = 2.0 ** -exponent
        for j in range(n):
            w[p, j] = d[j] * unscale
            for i in range(n):
                v[p, i, j] = z[j, i]


_compiled: Any = None


def _kernel() -> Any:
    global _compiled
    if not numpy_compiled.available():
        return None
    if _compiled is None:
        import numba

        _compiled = numba.njit(cache=True, nogil=True)(_symmetric_eigen)
    return _compiled


def eigh(a: Any, lower: bool, limit: int = STEP_LIMIT) -> tuple[Any, Any] | None:
    """(w, v) of every real symmetric matrix of a (..., n, n), as ``numpy.linalg.eigh`` (the ``lower`` or
    upper triangle read; eigenvectors up to sign), compiled and split over threads; matrices whose QL
    iteration needs more than ``limit`` steps per eigenvalue go to ``numpy.linalg.eigh``. None without
    Numba, for complex or other dtypes, empty batches and sides above ``MAX_N``: the caller falls back."""
    kernel = _kernel()
    *batch, n, _ = a.shape
    if kernel is None or a.dtype not in (np.float32, np.float64) or not 0 < n <= MAX_N or a.size == 0:
        return None
    stack = np.ascontiguousarray(a, dtype=np.float64).reshape(-1, n, n)
    w = np.empty((len(stack), n))
    v = np.empty((len(stack), n, n))
    failed = np.zeros(len(stack), dtype=np.bool_)
    split_stacks(lambda *blocks: kernel(blocks[0], lower, limit, *blocks[1:]), (stack, w, v, failed), n,
                 len(stack) * n ** 3)
    if failed.any():
        w[failed], v[failed] = np.linalg.eigh(stack[failed], UPLO="L" if lower else "U")
    return w.astype(a.dtype, copy=False).reshape(*batch, n), v.astype(a.dtype, copy=False).reshape(*batch, n, n)
