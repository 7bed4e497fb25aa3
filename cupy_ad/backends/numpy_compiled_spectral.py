"""The compiled kernels of small real matrices' eigen-decomposition (symmetric), SVD (square) and QR
(Numba, the optional extra ``compiled``; see ``numpy_compiled``; their entry points, which arrays they
take and the LAPACK fallbacks: ``numpy_compiled_decompositions``): a batch of 4096 matrices of 16 x 16
in ~0.6x the time of NumPy's gufuncs (LAPACK syevd / gesdd, one matrix a call; QR ~0.5x geqrf + orgqr)
on one thread, the same on each of several threads. The three kernels share this file with the helpers
they inline: Numba's cache is keyed on a kernel's own bytecode and file (its modification time and size,
``numba.core.caching``), so a kernel elsewhere kept a cached copy of the helpers after they changed
(review14).

Why not LAPACK: at 16 x 16 syevd makes BLAS-2 calls for each Householder step and NumPy's gufunc
copies each matrix into and out of Fortran order; a compiled loop over the batch makes no calls and
keeps one matrix in the core's cache (the same arithmetic, 48-54 ms of CPU against syevd's 85-98 for
the 4096; of those, ~21 ms the tridiagonal reduction and Q, the rest mostly the latency of the QL
iteration's chain of square roots and divisions).

Algorithm (Golub and Van Loan, "Matrix Computations", 4th ed., 8.3; Bowdler, Martin, Reinsch and
Wilkinson 1968, "The QR and QL algorithms for symmetric matrices"), written here from the mathematics:

1. Scale A by a power of two (exact) so that max |a_ij| lies in [1, 2): no overflow in the squares
   below; the eigenvalues are scaled back exactly. Where squares could underflow (a vector or a rotated
   pair far below the largest entry, ~1e-144), the reflector scales its vector by a power of two first
   and the rotations take ``math.hypot`` (``_reflector``, ``_radius``).
2. Householder tridiagonalisation: for k = 0 .. n-3, H_k = I - tau u u^T with u = x - alpha e_1, x the
   column k below the diagonal, alpha = -sign(x_0) ||x|| (no cancellation in u_0), tau = 2 / u^T u,
   maps x to alpha e_1; the trailing block becomes H A H = A - u q^T - q u^T with
   q = tau A u - (tau^2 / 2) (u^T A u) u. Then Q^T A Q = T (tridiagonal: diagonal d, subdiagonal e)
   with Q = H_0 H_1 ... H_{n-3}, accumulated backwards (Q <- H_k Q changes its rows k+1.. only).
3. Implicit QL with Wilkinson's shift on T: for each l, while the subdiagonal e_l is not negligible
   (|e_m| <= eps (|d_m| + |d_{m+1}|) splits T at the first such m >= l), one QL step on the block
   l..m: the shift is the eigenvalue of the leading 2 x 2 block nearer d_l, and a chain of plane
   rotations from the bottom chases the bulge; each rotation acts on two columns of Q (one whose radius
   underflows below 2^-1022 splits T there and starts the step again, ``SMALLEST_NORMAL``). At most
   ``limit`` steps per eigenvalue (30, as EISPACK's tql2); a matrix that needs more is flagged and
   decomposed by LAPACK instead.
4. Eigenvalues ascending (a selection sort, moving their columns along): A = V diag(w) V^T, V = Q Z.

Backward stable like syevd (each step orthogonal, each neglected entry below eps times its
neighbours), so the eigenvalues agree with LAPACK's to rounding; exactly repeated eigenvalues come out
split by up to ~20 eps ||A||, more than ``linalg._clusters`` resolves, so a matrix with (nearly) repeated
eigenvalues is decomposed by LAPACK instead (``NEAR_REPEATED``); each eigenvector agrees up to its
sign, which this algorithm fixes otherwise than LAPACK (the rules do not depend on it).
float32 runs in float64 (rounded at the end); complex (Hermitian) matrices are left to LAPACK.

SVD (Golub and Van Loan 8.6; Golub and Kahan 1965, Golub and Reinsch 1970), the same way: A scaled
by a power of two; Householder bidiagonalisation B = U_1^T A V_1 (reflectors from the left on the
columns, from the right on the rows, accumulated backwards); then implicit QR steps on B^T B
without forming it: each Golub-Kahan step takes the shift mu = the eigenvalue of the trailing 2 x 2
block of B^T B nearer its last entry, a rotation from the right on columns (first, first+1) making
(d_f^2 - mu, d_f e_f) point along e_1, and chases the bulge down with alternating left and right
rotations, each applied to two columns of U or V. Superdiagonal entries below
eps (|d_i| + |d_{i+1}|) are set to zero (the blocks split); a diagonal entry below eps ||B|| in a block
still coupled (a rank-deficient block: the step would stall) or more than ``limit`` n steps send the
matrix to LAPACK. Last, negative d_i flip their column of V, and the values are sorted descending.
Backward stable like gesdd (each singular value within a few eps ||A|| of LAPACK's, U and V
orthogonal to rounding); each pair (u_i, v_i) agrees with LAPACK's up to a common sign. Square real
matrices only; the rest is LAPACK's.

QR (Golub and Van Loan 5.2.2 and 5.1.6; LAPACK's geqr2 and org2r), A (m x n, k = min(m, n)) as it is,
unscaled, as geqr2 takes it (QR is column-scaling invariant: a scaling of the whole matrix made columns
far below the largest entry subnormal, review14): for j = 0 .. k-1 the reflector of the column
x = A[j:, j] (``_reflector``: R_jj = beta = -sign(x_0) ||x||, dlarfg's sign, for x_0 = +0 or -0 too;
H_j = I only for an exactly zero tail), written as dlarfg writes it, I - tau v v^T with v_0 = 1, the tail
times 1 / u_0 and tau = (beta - x_0) / beta, and applied as dlarf applies it, A + v (-tau v^T A) over
the rows up to v's last nonzero, along A's rows (contiguous axpys, no chained sums). In that form
entries that are zero in exact arithmetic come out zero as LAPACK's do (with I - t u u^T they came out
as rounding noise, e.g. under a reflector swapping two rows, and R_jj took the sign of the noise for
about a quarter of scaled permutation matrices, review14). Then Q = H_0 ... H_{k-1} [I_k; 0]
accumulated backwards. Q and R are NumPy's to rounding, signs included, wherever LAPACK's arithmetic is
reproduced; where an entry zero in exact arithmetic comes out as noise in one of the two only (a
column in the span of the earlier ones), a later R_jj can differ in sign, as between two LAPACK
builds (Q R = A and Q^T Q = I to rounding all the same). A matrix whose R or a tau overflows is
flagged (LAPACK's Inf and NaN land elsewhere).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import numpy_compiled

#: sums of squares below this (2^-960) may hold squares rounded in the subnormal range (below 2^-1022:
#: an absolute error up to 2^-1075 each); at or above it those errors stay below 2^-100 of the sum
SMALLEST_SQUARES = 2.0 ** -960
#: sums of squares above this (2^960) are scaled down first (no overflow, ``_reflector``)
LARGEST_SQUARES = 2.0 ** 960
#: the smallest normal float64: a QL rotation whose radius r is below it (subnormal: too few digits for c^2 + s^2 = 1,
#: and 1 / r infinite) is taken as a split of T, as r = 0
SMALLEST_NORMAL = 2.0 ** -1022
#: LAPACK's safmin / eps (dlarfg, 2^-969): below it a reflector's beta keeps too few digits to derive tau from
LAPACK_SAFE_MIN = 2.0 ** -969


# Helpers of the kernels (``_HELPERS``: compiled by ``_kernels`` before them, in their place in this
# module's globals, so that importing the backend never imports Numba).


def _largest(x: Any) -> float:
    """max |x_i| of a vector; NaN where x holds one."""
    largest = 0.0
    for i in range(len(x)):
        if abs(x[i]) > largest or x[i] != x[i]:  # (a NaN stays)
            largest = abs(x[i])
    return largest


def _scale_to_unit(x: Any, largest: float) -> tuple[bool, int]:
    """(finite, k): x (a vector, largest = ``_largest(x)``) multiplied in place by 2^k (exact), the power of
    two that brings max|x| into [1, 2) (k = 0 for a zero x; k within +-1000, so that 2^k is a normal
    number); finite False, x untouched, where x holds an Inf or a NaN.

    What the scaling loses (review8): entries below 2^-1022 of the largest become subnormal and those
    below 2^-1075 of it zero, i.e. at most 2^-1075 per entry of a scaled matrix whose norm is at least 1;
    a backward error ~1e-324 ||A||, far below eps ||A||: nothing to mend (test: entries flushed by the
    scaling)."""
    if not largest < math.inf:
        return False, 0
    power = 0 if largest == 0.0 else min(max(-math.floor(math.log2(largest)), -1000), 1000)
    scale = 2.0 ** power
    for i in range(len(x)):
        x[i] *= scale
    return True, power


def _reflector(x: Any) -> tuple[float, float]:
    """(alpha, t) of the Householder reflector H = I - t u u^T with H x = alpha e_1, alpha = -sign(x_0) ||x||
    (no cancellation in u_0 = x_0 - alpha; LAPACK's dlarfg sign, -||x|| for x_0 = +0 too), t = 2 / u^T u; x (a
    row) becomes u in place, possibly times a power of two (H is the same for any multiple of u, t taken
    accordingly). t = 0 and alpha = x_0 where x is zero below x_0 (H = I).

    Where the sum of squares is below ``SMALLEST_SQUARES`` (a vector below ~1e-144 in a scaled matrix of
    norm >= 1) or above ``LARGEST_SQUARES`` (QR's unscaled matrices) x is first scaled by a power of two
    (max |x_i| in [1, 2)): squares rounded as subnormals made t = 2 / u^T u inaccurate (H not orthogonal)
    or infinite (NaN). A tail whose squares underflow to zero while x_0's square does not (entries below
    2^-537 |x_0|), or that the scaling flushes to zero, is no zero tail: H reflects, alpha = -x_0,
    u = (2 x_0, tail), t = 2 / (4 x_0^2), as dlarfg does (its norm of the tail is not zero); H = I there
    gave QR's R_jj the other sign than LAPACK's, Q's column negated (review14)."""
    x0 = x[0]
    tail = 0.0
    for i in range(1, len(x)):
        tail += x[i] * x[i]
    if tail == 0.0:  # (H = I only for a zero tail: one whose squares underflow gets dlarfg's H, H x = -x_0 e_1)
        zero = True
        for i in range(1, len(x)):
            zero = zero and x[i] == 0.0
        if zero:
            return x0, 0.0
    unscale = 1.0
    if not SMALLEST_SQUARES <= x0 * x0 + tail <= LARGEST_SQUARES:
        unscale = 2.0 ** -_scale_to_unit(x, _largest(x))[1]
        tail = 0.0
        for i in range(1, len(x)):
            tail += x[i] * x[i]
    y0 = x[0]
    alpha = -math.copysign(math.sqrt(y0 * y0 + tail), y0)
    x[0] = y0 - alpha
    return alpha * unscale, 2.0 / (x[0] * x[0] + tail)


def _radius(f: float, g: float) -> float:
    """sqrt(f^2 + g^2), the radius of a plane rotation: the plain formula where the sum of squares is at
    least ``SMALLEST_SQUARES``, else ``math.hypot`` (review8: with f and g below ~1e-154 the squares were
    subnormal or zero, so (c, s) = (g, f) / r was no rotation). No overflow: the kernels' matrices are scaled
    to max|a_ij| in [1, 2), so every rotated pair is bounded by a small multiple of n."""
    squares = f * f + g * g
    return math.sqrt(squares) if squares >= SMALLEST_SQUARES else math.hypot(f, g)


def _reflect_rows(a: Any, v: Any, tau: float, first: int, rows: int, kept: int, s: Any) -> None:
    """Rows first..rows-1 of ``a`` times H = I - tau v v^T (v's entries first..rows-1; zero below), as LAPACK's
    dlarf: a + v (-tau v^T a), along a's rows (s, a scratch of a's width, accumulates v_i a[i, :]: contiguous
    axpys, no chained sums); the columns below ``kept`` are left as they are."""
    width = a.shape[1]
    for c in range(width):
        s[c] = 0.0
    for i in range(first, rows):
        vi = v[i]
        for c in range(width):
            s[c] += vi * a[i, c]
    minus_tau = -tau
    for c in range(width):
        s[c] *= minus_tau
    for c in range(kept):
        s[c] = 0.0
    for i in range(first, rows):
        vi = v[i]
        for c in range(width):
            a[i, c] += s[c] * vi


def _sorted_order(d: Any, descending: bool, order: Any) -> None:
    """order = the permutation that sorts d ascending (or descending): a selection sort of indices."""
    n = len(d)
    for i in range(n):
        order[i] = i
    for i in range(n - 1):
        best = i
        for j in range(i + 1, n):
            if (d[order[j]] > d[order[best]]) if descending else (d[order[j]] < d[order[best]]):
                best = j
        order[i], order[best] = order[best], order[i]


def _symmetric_eigen(a: Any, lower: bool, limit: int, w: Any, v: Any, failed: Any) -> None:
    """w[p], v[p] = the ascending eigenvalues and orthonormal eigenvectors (columns) of the symmetric
    matrix held in the ``lower`` (else upper) triangle of a[p], for every p; failed[p] where the QL
    iteration needed more than ``limit`` steps for one eigenvalue (w[p], v[p] then meaningless)."""
    count, n, _ = a.shape
    eps = np.finfo(np.float64).eps
    entries = np.empty(n * n)
    h = entries.reshape(n, n)  # the symmetric matrix being reduced (its trailing block)
    u = np.empty((n, n))  # u[k, k+1:]: the vector of H_k
    y = np.empty((n, n))  # Q
    z = np.empty((n, n))  # z[j, :] = column j of Q, then of V (rotations act on two rows: contiguous)
    d = np.empty(n)
    e = np.empty(n)
    tau = np.empty(n)
    q = np.empty(n)
    order = np.empty(n, dtype=np.int64)
    for p in range(count):
        largest = 0.0
        for i in range(n):
            for j in range(i + 1):
                x = a[p, i, j] if lower else a[p, j, i]
                h[i, j] = x
                h[j, i] = x
                if abs(x) > largest or x != x:  # (``_largest`` while copying: a second pass cost 2-5%)
                    largest = abs(x)
        finite, exponent = _scale_to_unit(entries, largest)
        if not finite:  # (Inf or NaN: left to LAPACK, as a failure)
            failed[p] = True
            continue
        # 2. Householder tridiagonalisation (inner loops along rows: vectorised, no chained sums)
        for k in range(n - 2):
            u[k, k + 1:] = h[k, k + 1:]
            e[k], t = _reflector(u[k, k + 1:])
            tau[k] = t
            if t == 0.0:  # already zero below the subdiagonal: H_k = I
                continue
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
                r = math.sqrt(g * g + 1.0)  # (|g| < 1 / (2 eps): e_l is not negligible)
                g = d[m] - d[l] + e[l] / (g + (r if g >= 0.0 else -r))
                s, c, shift = 1.0, 1.0, 0.0
                split = False
                for i in range(m - 1, l - 1, -1):
                    f = s * e[i]
                    b = c * e[i]
                    r = _radius(f, g)
                    e[i + 1] = r
                    if r < SMALLEST_NORMAL:  # (T splits at i + 1, start the step again: f = g = 0, or a radius
                        # so small (subnormal) that it holds too few digits for a rotation; dropped, the bulge
                        # moves A by less than 2^-1022, below eps ||A|| of the scaled matrix)
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
        _sorted_order(d, False, order)
        unscale = 2.0 ** -exponent
        for j in range(n):
            w[p, j] = d[order[j]] * unscale
            for i in range(n):
                v[p, i, j] = z[order[j], i]


def _square_svd(a: Any, limit: int, u: Any, sv: Any, vh: Any, failed: Any) -> None:
    """u[p] diag(sv[p]) vh[p] = a[p] for every square a[p]: singular values descending, U and V orthogonal;
    failed[p] where the QR iteration stalls on a negligible diagonal entry or needs more than ``limit`` n
    steps (u[p], sv[p], vh[p] then meaningless)."""
    count, n, _ = a.shape
    eps = np.finfo(np.float64).eps
    entries = np.empty(n * n)
    b = entries.reshape(n, n)  # reduced to the bidiagonal B
    left = np.zeros((n, n))  # left[k, k:]: the vector of the left reflector k
    right = np.zeros((n, n))  # right[k, k+1:]: the vector of the right reflector k
    tau_left = np.zeros(n)
    tau_right = np.zeros(n)
    ut = np.empty((n, n))  # ut[j, :] = column j of U
    vt = np.empty((n, n))  # vt[j, :] = column j of V
    q = np.empty(n)
    d = np.empty(n)
    e = np.empty(n)
    order = np.empty(n, dtype=np.int64)
    for p in range(count):
        for i in range(n):
            for j in range(n):
                b[i, j] = a[p, i, j]
        finite, exponent = _scale_to_unit(entries, _largest(entries))
        if not finite:  # (Inf or NaN: left to LAPACK, as a failure)
            failed[p] = True
            continue
        # Householder bidiagonalisation: column k from the left, then row k from the right
        for k in range(n):
            for i in range(k, n):
                left[k, i] = b[i, k]
            _, t = _reflector(left[k, k:])
            tau_left[k] = t
            if t != 0.0:
                for j in range(k, n):  # B -= t u (u^T B) on rows and columns k..
                    q[j] = 0.0
                for i in range(k, n):
                    ui = left[k, i]
                    for j in range(k, n):
                        q[j] += ui * b[i, j]
                for i in range(k, n):
                    ui = t * left[k, i]
                    for j in range(k, n):
                        b[i, j] -= ui * q[j]
            tau_right[k] = 0.0
            if k < n - 2:
                right[k, k + 1:] = b[k, k + 1:]
                _, t = _reflector(right[k, k + 1:])
                tau_right[k] = t
                if t != 0.0:
                    for i in range(k, n):  # B -= t (B v) v^T on rows k.., columns k+1..
                        acc = 0.0
                        for j in range(k + 1, n):
                            acc += b[i, j] * right[k, j]
                        acc *= t
                        for j in range(k + 1, n):
                            b[i, j] -= acc * right[k, j]
        for i in range(n):
            d[i] = b[i, i]
            e[i] = b[i, i + 1] if i < n - 1 else 0.0
            for j in range(n):
                ut[i, j] = 1.0 if i == j else 0.0
                vt[i, j] = 1.0 if i == j else 0.0
        for k in range(n - 1, -1, -1):  # U = H_0 (... H_{n-1}), V = G_0 (... G_{n-3}): columns j of each
            for j in range(k, n):
                if tau_left[k] != 0.0:
                    acc = 0.0
                    for i in range(k, n):
                        acc += left[k, i] * ut[j, i]
                    acc *= tau_left[k]
                    for i in range(k, n):
                        ut[j, i] -= acc * left[k, i]
                if tau_right[k] != 0.0 and j > k:
                    acc = 0.0
                    for i in range(k + 1, n):
                        acc += right[k, i] * vt[j, i]
                    acc *= tau_right[k]
                    for i in range(k + 1, n):
                        vt[j, i] -= acc * right[k, i]
        # Golub-Kahan steps on the unreduced block [first, last] nearest the bottom
        norm = 0.0
        for i in range(n):
            norm = max(norm, abs(d[i]) + abs(e[i]))
        steps = 0
        converged = True
        while True:
            for i in range(n - 1):
                if abs(e[i]) <= eps * (abs(d[i]) + abs(d[i + 1])):
                    e[i] = 0.0
            last = n - 1
            while last > 0 and e[last - 1] == 0.0:
                last -= 1
            if last == 0:
                break
            first = last - 1
            while first > 0 and e[first - 1] != 0.0:
                first -= 1
            steps += 1
            stalled = False
            for i in range(first, last + 1):
                stalled = stalled or abs(d[i]) <= eps * norm
            if stalled or steps > limit * n:
                converged = False
                break
            t11 = d[last - 1] * d[last - 1] + (e[last - 2] * e[last - 2] if last - 1 > first else 0.0)
            t12 = d[last - 1] * e[last - 1]
            t22 = d[last] * d[last] + e[last - 1] * e[last - 1]
            half = 0.5 * (t11 - t22)
            root = math.sqrt(half * half + t12 * t12)  # (for the shift only: not ``_radius``, no rotation)
            shift = t22 - t12 * t12 / (half + (root if half >= 0.0 else -root)) if root != 0.0 else t22
            y = d[first] * d[first] - shift
            z = d[first] * e[first]
            for k in range(first, last):
                r = _radius(y, z)  # right rotation on columns k, k+1: (y, z) -> (r, 0)
                c, s = (1.0, 0.0) if r == 0.0 else (y / r, z / r)
                if k > first:
                    e[k - 1] = r
                y = c * d[k] + s * e[k]
                e[k] = c * e[k] - s * d[k]
                z = s * d[k + 1]  # the bulge below the diagonal
                d[k + 1] *= c
                for i in range(n):
                    x1, x2 = vt[k, i], vt[k + 1, i]
                    vt[k, i] = c * x1 + s * x2
                    vt[k + 1, i] = c * x2 - s * x1
                r = _radius(y, z)  # left rotation on rows k, k+1: the bulge -> 0
                c, s = (1.0, 0.0) if r == 0.0 else (y / r, z / r)
                d[k] = r
                y = c * e[k] + s * d[k + 1]
                d[k + 1] = c * d[k + 1] - s * e[k]
                e[k] = y
                if k < last - 1:
                    z = s * e[k + 1]  # the bulge right of the superdiagonal
                    e[k + 1] *= c
                for i in range(n):
                    x1, x2 = ut[k, i], ut[k + 1, i]
                    ut[k, i] = c * x1 + s * x2
                    ut[k + 1, i] = c * x2 - s * x1
        failed[p] = not converged
        for i in range(n):  # non-negative values (the column of V flips), descending
            if d[i] < 0.0:
                d[i] = -d[i]
                for j in range(n):
                    vt[i, j] = -vt[i, j]
        _sorted_order(d, True, order)
        unscale = 2.0 ** -exponent
        for i in range(n):
            sv[p, i] = d[order[i]] * unscale
            for j in range(n):
                u[p, j, i] = ut[order[i], j]
                vh[p, i, j] = vt[order[i], j]


def _householder_qr(a: Any, want_q: bool, q: Any, r: Any, failed: Any) -> None:
    """q[p] (m x k, when ``want_q``), r[p] (k x n) = the reduced QR factors of a[p] (m x n, float64) for every
    p, k = min(m, n); failed[p] where a[p] holds an Inf or a NaN or R or a tau overflows (q[p], r[p] then
    meaningless); the algorithm in the module's docstring."""
    count, m, n = a.shape
    k = min(m, n)
    h = np.empty((m, n))  # A, becoming R in its upper rows (exact zeros below the diagonal's columns done)
    v = np.empty((k, m))  # v[j, j:]: the vector v of H_j = I - t[j] v v^T (v_j = 1)
    t = np.empty(k)  # tau of H_j
    last = np.empty(k, dtype=np.int64)  # v[j, last[j] + 1:] holds zeros
    s = np.empty(n)  # (k <= n)
    for p in range(count):
        finite = True
        for i in range(m):  # 1. A as it is (no scaling: LAPACK's geqr2 scales nothing either)
            for j in range(n):
                x = a[p, i, j]
                h[i, j] = x
                if not abs(x) < math.inf:
                    finite = False
        if not finite:
            failed[p] = True
            continue
        for j in range(k):  # 2. the reflectors, applied to the trailing columns
            x0 = h[j, j]
            for i in range(j, m):
                v[j, i] = h[i, j]
                h[i, j] = 0.0
            beta, t[j] = _reflector(v[j, j:])
            h[j, j] = beta
            if t[j] == 0.0:
                continue
            # LAPACK's form of the same H (dlarfg, dlarf): I - tau v v^T with v = u / u_0 (v_0 = 1, the tail
            # times the reciprocal of u_0) and tau = (beta - x_0) / beta (for beta below 2^-969, too few digits:
            # t u_0^2 of the reflector's scaled u, as LAPACK scales x up there); applied as A + v (-tau w)^T,
            # w = v^T A, over the rows up to v's last nonzero
            u0 = v[j, j]
            t[j] = (beta - x0) / beta if abs(beta) >= LAPACK_SAFE_MIN else t[j] * u0 * u0
            if not abs(t[j]) < math.inf:  # (beta - x_0 overflows: LAPACK's too, its Q's Inf and NaN are NumPy's)
                finite = False
            scale = 1.0 / u0
            v[j, j] = 1.0
            last[j] = j
            for i in range(j + 1, m):
                v[j, i] *= scale
                if v[j, i] != 0.0:
                    last[j] = i
            # (whole rows, 16 long at n = 16: columns < j hold zeros in rows j.., column j is R_jj and kept;
            # half the time of loops over j+1.. only)
            _reflect_rows(h, v[j], t[j], j, last[j] + 1, j + 1, s)
        for i in range(k):
            for j in range(n):
                x = h[i, j]
                r[p, i, j] = x
                finite = finite and abs(x) < math.inf
        if not finite:  # (a column whose norm overflows: LAPACK's Inf and NaN, where they land, are NumPy's)
            failed[p] = True
            continue
        if not want_q:
            continue
        for i in range(m):  # 3. Q = H_0 ... H_{k-1} [I; 0], backwards: rows j.. of columns < j hold zeros
            for j in range(k):
                q[p, i, j] = 1.0 if i == j else 0.0
        for j in range(k - 1, -1, -1):
            if t[j] != 0.0:
                _reflect_rows(q[p], v[j], t[j], j, last[j] + 1, 0, s)


_compiled: Any = None
#: the kernels' helpers, inlined into them by Numba (``inline="always"``; as calls the kernels took 0-5% more,
#: most at n = 4). The kernels with helpers and the precision fixes take 2-6% (eigh) and 6-10% (svd) more
#: than session 8's written-out ones (one thread, n = 4..16, docs/measurements.md, session 9)
_HELPERS = {helper.__name__: helper for helper in (_largest, _scale_to_unit, _reflector, _reflect_rows, _radius,
                                                         _sorted_order)}


def _kernels() -> Any:
    global _compiled
    if not numpy_compiled.available():
        return None
    if _compiled is None:
        import numba

        jit = numba.njit(cache=True, nogil=True)
        helpers = numba.njit(cache=True, nogil=True, inline="always")
        globals().update({name: helpers(helper) for name, helper in _HELPERS.items()})  # (before the kernels)
        _compiled = {"eigh": jit(_symmetric_eigen), "svd": jit(_square_svd), "qr": jit(_householder_qr)}
    return _compiled
