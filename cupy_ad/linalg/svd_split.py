"""svd_split: the truncated SVD as two balanced factors, a ~= X Y^H, with a gauge-covariant JVP.

X = U_k S_k^(1/2), Y = V_k S_k^(1/2) (the k largest singular values). The pair is defined up to
X Q, Y Q with Q unitary (k x k): every such pair has X Y^H = A_k (the rank-k truncation) and is
balanced, X^H X = Y^H Y (= Lambda, Hermitian positive definite). Tensor networks contract X and Y
into other tensors, so what a program computes is invariant under Q; the JVP is the horizontal
lift, the tangent orthogonal to the gauge directions (X Omega, Y Omega), Omega skew-Hermitian):
    X^H dX + Y^H dY   Hermitian.
Derivation (our own, from the defining equations; cf. Townsend 2016 for the plain SVD). In a
general gauge the factors solve A Y = X Lambda, A^H X = Y Lambda, X^H X = Y^H Y = Lambda.
Differentiate and split dX = U_k a + U_d b + (I - U U^H) dX, dY = V_k c + V_d d + (I - V V^H) dY
(U = [U_k U_d], V = [V_k V_d] the thin SVD, K = min(m, n) columns; P = U^H dA V, sigma = S_k^(1/2)).
- Kept block. With Z = X^H dX = sigma a, W = Y^H dY = sigma c, balance d(X^H X) = d(Y^H Y) says
  Herm Z = Herm W and the lift says Skew Z = -Skew W: Z = H + K, W = H - K. The U_k- and
  V_k-projections of the differentiated equations, multiplied by sigma, become
      H S + S H + K S + S K = R,   H S + S H - K S - S K = R^H,   R = sigma P_kk sigma = X^H dA Y,
  so Z S + S Z = R and W S + S W = R^H: Z = R o E, W = R^H o E, E_ij = 1 / (s_i + s_j). Hence
      a_ij = P_ij sigma_j / (s_i + s_j),   c_ij = conj(P_ji) sigma_j / (s_i + s_j):
  only sums of kept singular values, never their differences; smooth through any degeneracy
  inside the kept block, with no tolerance.
- Discarded values l (row l of U_d, V_d, s_l < s_k): the U_d- and V_d-projections give
      b_lj s_j - s_l d_lj = P_lj sigma_j,   d_lj s_j - s_l b_lj = conj(P_jl) sigma_j,
  so b_lj = sigma_j (s_j P_lj + s_l conj(P_jl)) / (s_j^2 - s_l^2), d_lj the same with P_lj and
  conj(P_jl) swapped: only the truncation gaps s_j^2 - s_l^2 (j kept, l discarded) appear.
- The complement of the thin U (m > n; mirror for V when m < n) is the case s_l = 0:
  (I - U U^H) dX = (I - U U^H) dA Y S_k^-1, written dA V_k / sigma - U P_{:,k} / sigma.
Check: U_k^H d(X Y^H) V_k = a sigma + sigma c^H = P_kk, and the cross blocks are those of dA_k.
Nested jvp: the rule is written with the namespace over svd's outputs, so inner levels
differentiate it; it is covariant under rotations within the multiplets of the kept block (it
depends on U_k only through E-weighted, rotation-invariant products there), so the rotation that
svd's rule picks inside a repeated kept value drops out of every gauge-invariant output, to every
order in which svd's off-multiplet tangents are exact.
Not differentiable: a multiplet straddling the cut (s_k = s_(k+1); the gap 1/(s_k^2 - s_(k+1)^2)
diverges: ``whole_multiplets=True`` drops it) and a kept singular value 0 (X ~ sqrt(s)): kept values
at or below the SVD's resolution tol = max(16, sqrt(max(m, n))) eps s_max are taken as the exact
zeros of a rank-deficient matrix, their columns are 0 with zero tangents (the derivative along
perturbations that keep the rank, as the structural rank deficiency of a tensor network does).
"""
from __future__ import annotations

import numbers
from typing import Any

from ..core import Primitive, Zero, bind, strip
from ..namespace import add, divide, expand_dims, matmul, multiply, sqrt, square, subtract, where
from ..namespace._rules import xp_of
from ._clusters import find_clusters, resolution
from ._matrix import as_inexact, backend_of_matrix, mH, require_matrix
from ._results import SplitResult
from .svd import svd_p


def _kept(s: Any, k: int, m: int, n: int, whole_multiplets: bool) -> Any:
    """Raw bool (..., k): the kept columns, those of s_1..s_k above the rank tolerance
    tol = resolution(max(m, n)) s_max (rounding noise of a rank-deficient matrix); with
    ``whole_multiplets`` also not in the multiplet holding s_k and s_(k+1) (gaps chained <= tol)."""
    xp = xp_of(s)
    tol = xp.max(s, axis=-1, keepdims=True) * resolution(max(m, n), float(xp.finfo(s.dtype).eps)) if k else 0.0
    keep = ~(s[..., :k] <= tol)  # NaN stays (NaN in, NaN out)
    if not whole_multiplets or k == s.shape[-1] or k == 0:
        return keep
    labels = find_clusters(s, tol).labels
    return keep & (labels[..., :k] != labels[..., k:k + 1])


def _factors(u: Any, s: Any, vh: Any, k: int, keep: Any) -> tuple[Any, Any, Any]:
    """(X, Y, sigma) from the thin SVD: X = U_k sigma, Y = V_k sigma, sigma = S_k^(1/2) (0 where
    not ``keep``)."""
    sigma = where(keep, sqrt(s[..., :k]), 0.0)
    row = expand_dims(sigma, axis=-2)
    return multiply(u[..., :, :k], row), multiply(mH(vh[..., :k, :]), row), sigma


def _split_impl(a: Any, *, k: int, whole_multiplets: bool) -> tuple[Any, Any]:
    u, s, vh = backend_of_matrix(a).svd(a, full_matrices=False)
    keep = _kept(s, k, a.shape[-2], a.shape[-1], whole_multiplets)
    x, y, _ = _factors(u, s, vh, k, keep)
    return x, y


svd_split_p = Primitive("svd_split", _split_impl, multiple_results=True)


@svd_split_p.def_jvp
def _svd_split_jvp(primals: list, tangents: list, *, k: int, whole_multiplets: bool):
    (a,), (da,) = primals, tangents
    m, n = a.shape[-2], a.shape[-1]
    u, s, vh = bind(svd_p, a, full_matrices=False)
    keep = _kept(strip(s), k, m, n, whole_multiplets)
    x, y, sigma = _factors(u, s, vh, k, keep)
    if k == 0:
        return (x, y), (Zero.like(x), Zero.like(y))
    xp = xp_of(keep)
    big = s.shape[-1]
    v = mH(vh)
    if m >= n:
        dav = matmul(da, v)
        p = matmul(mH(u), dav)
    else:
        dahu = matmul(mH(da), u)
        p = mH(matmul(vh, dahu))
    # rows i (all K values), columns j (kept): kept rows weigh by 1 / (s_i + s_j), the others by
    # the truncation gap: A1 = s_j / (s_j^2 - s_i^2), A2 = s_i / (s_j^2 - s_i^2).
    kept_rows = xp.concat([keep, xp.zeros(s[..., k:].shape, dtype=xp.bool)], axis=-1)
    kept_rows = expand_dims(kept_rows, axis=-1)
    col_keep = expand_dims(keep, axis=-2)
    s_i, s_j = expand_dims(s, axis=-1), expand_dims(s[..., :k], axis=-2)
    den = where(kept_rows, add(s_i, s_j), subtract(square(s_j), square(s_i)))
    den = where(col_keep, den, 1.0)
    a1 = divide(where(kept_rows, 1.0, s_j), den)
    a2 = divide(where(kept_rows, 0.0, s_i), den)
    sig_j = expand_dims(sigma, axis=-2)
    p_k, q_k = p[..., :, :k], mH(p[..., :k, :])  # P_ij and conj(P_ji), (K, k)
    cx = multiply(add(multiply(p_k, a1), multiply(q_k, a2)), sig_j)
    cy = multiply(add(multiply(q_k, a1), multiply(p_k, a2)), sig_j)
    if m > big:  # the complement of U: (dA V_k - U P_{:,k}) / sigma
        inv = divide(1.0, where(col_keep, sig_j, 1.0))
        dx = add(matmul(u, subtract(cx, multiply(p_k, inv))), multiply(dav[..., :, :k], inv))
    else:
        dx = matmul(u, cx)
    if n > big:  # the complement of V: (dA^H U_k - V P_{k,:}^H) / sigma
        inv = divide(1.0, where(col_keep, sig_j, 1.0))
        dy = add(matmul(v, subtract(cy, multiply(q_k, inv))), multiply(dahu[..., :, :k], inv))
    else:
        dy = matmul(v, cy)
    return (x, y), (where(col_keep, dx, 0.0), where(col_keep, dy, 0.0))


def svd_split(a: Any, k: int, /, *, whole_multiplets: bool = False) -> SplitResult:
    """The rank-``k`` truncated SVD as balanced factors: ``SplitResult(X, Y)`` with a ~= X @ Y^H.

    ``a`` is (..., m, n), real or complex floating point (leading dimensions are batches; integer
    input is promoted to float64); ``k`` an int in 0..min(m, n). X = U_k S_k^(1/2) (..., m, k),
    Y = V_k S_k^(1/2) (..., n, k), from the k largest singular values: X @ mH(Y) is the best
    rank-k approximation and X^H X = Y^H Y = S_k. This is the split a tensor-network
    coarse-graining step (TRG, HOTRG, CTMRG, MPS canonicalisation) performs.

    Derivative: (X, Y) is defined up to (X Q, Y Q), Q unitary, and the tangent is the horizontal
    lift: X^H dX + Y^H dY is Hermitian (and X^H dX + dX^H X = Y^H dY + dY^H Y keeps the pair
    balanced). It involves only 1 / (s_i + s_j) inside the kept block and the truncation gaps
    s_j^2 - s_l^2 (j kept, l discarded), no tolerance: every output invariant under Q (X Y^H,
    X X^H, Y Y^H, any contraction of X's and Y's over the kept index) has an exact tangent whether
    or not the kept singular values repeat (exactly, nearly or by a symmetry). The raw tangents
    are those of the SVD gauge at distinct kept values and of the lift in general. Nested jvp
    differentiates the rule through :func:`svd`; invariant outputs are exact at second order
    wherever the kept block is separated from the discarded one.

    Not differentiable: a multiplet across the cut (s_k = s_(k+1)), where the truncation itself
    jumps; the tangent grows as 1 / (s_k - s_(k+1)) as that gap closes. With
    ``whole_multiplets=True`` such a multiplet (values chained by gaps <= max(16, sqrt(max(m, n)))
    eps s_max) is dropped whole: its columns of X and Y are 0 (shapes stay (.., k)), X Y^H is
    the truncation below it and the gap that appears is the one under the last kept multiplet.
    Rank: kept singular values <= tol = max(16, sqrt(max(m, n))) eps s_max are the rounding noise
    of zeros (k above the numerical rank, as in the first steps of a tensor-network
    coarse-graining): their columns of X and Y are 0, with zero tangents. That is the derivative
    along perturbations that keep the rank; along others the split has none (X ~ sqrt(s)).
    NaN input gives NaN output.
    """
    require_matrix("svd_split", a)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"svd_split: k must be an int, got {type(k).__name__}")
    if not 0 <= k <= min(a.shape[-2], a.shape[-1]):
        raise ValueError(f"svd_split: k must be in 0..min(m, n) = {min(a.shape[-2], a.shape[-1])}, got {k}")
    if not isinstance(whole_multiplets, bool):
        raise TypeError(f"svd_split: whole_multiplets must be a bool, got {type(whole_multiplets).__name__}")
    return SplitResult(*svd_split_p(as_inexact(a), k=int(k), whole_multiplets=whole_multiplets))


__all__ = ["svd_split"]
