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
Nested jvp: the tangent is the solution of a linear system E(X, Y, A) [dX, dY] = (dA Y, dA^H X)
(``_balanced_solve``), a primitive whose own JVP is implicit differentiation: the same system with
a new right-hand side. So every level works in the one SVD basis of the undifferentiated A and no
level differentiates singular vectors: second and higher derivatives of gauge-invariant outputs
are exact through repeated kept values too.
Not differentiable: a multiplet straddling the cut (s_k = s_(k+1); the gap 1/(s_k^2 - s_(k+1)^2)
diverges: ``whole_multiplets=True`` drops it) and a kept singular value 0 (X ~ sqrt(s)): kept values
at or below the SVD's resolution tol = max(32, sqrt(max(m, n))) eps s_max are taken as the exact
zeros of a rank-deficient matrix, their columns are 0 with zero tangents (the derivative along
perturbations that keep the rank, as the structural rank deficiency of a tensor network does).
"""
from __future__ import annotations

import numbers
from typing import Any

from ..core import Primitive, bind
from ..values import Zero, strip
from ..namespace._batching import leading
from ..namespace import matmul
from ..namespace._rules import xp_of
from ._balanced_solve import solve
from ._clusters import find_clusters, resolution
from ._matrix import as_inexact, backend_of_matrix, mH, require_matrix
from ._results import SplitResult


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


def _basis(a: Any, k: int, whole_multiplets: bool) -> tuple:
    """The raw thin SVD (U, s, Vh) of ``a`` and the kept mask: what every level's rule shares."""
    raw = strip(a)
    u, s, vh = backend_of_matrix(raw).svd(raw, full_matrices=False)
    return u, s, vh, _kept(s, k, raw.shape[-2], raw.shape[-1], whole_multiplets)


def _split_impl(a: Any, *, k: int, whole_multiplets: bool, basis: tuple | None = None) -> tuple[Any, Any]:
    u, s, vh, keep = _basis(a, k, whole_multiplets) if basis is None else basis
    xp = xp_of(s)
    sigma = xp.where(keep, xp.sqrt(s[..., :k]), xp.zeros((), dtype=s.dtype))[..., None, :]
    return u[..., :, :k] * sigma, mH(vh[..., :k, :]) * sigma


svd_split_p = Primitive("svd_split", _split_impl, multiple_results=True)
svd_split_p.def_batch(leading(svd_split_p))


@svd_split_p.def_jvp
def _svd_split_jvp(primals: list, tangents: list, *, k: int, whole_multiplets: bool, basis: tuple | None = None):
    (a,), (da,) = primals, tangents
    basis = _basis(a, k, whole_multiplets) if basis is None else basis
    x, y = outs = bind(svd_split_p, a, k=k, whole_multiplets=whole_multiplets, basis=basis)
    if k == 0:
        return outs, (Zero.like(x), Zero.like(y))
    xp = xp_of(basis[1])
    zero = xp.zeros((*x.shape[:-2], k, k), dtype=x.dtype)
    return outs, solve(x, y, a, matmul(da, y), matmul(mH(da), x), zero, zero, basis)


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
    are the lift's, not d(U_k S_k^(1/2)) of the SVD's gauge (which divides by s_i - s_j and keeps
    X^H X diagonal): compare gauge-invariant outputs. Nested jvp is
    exact too (the rule is a linear solve whose JVP is the same solve, in the SVD basis of the
    undifferentiated ``a``): higher derivatives never differentiate singular vectors.

    Not differentiable: a multiplet across the cut (s_k = s_(k+1)), where the truncation itself
    jumps; the tangent grows as 1 / (s_k - s_(k+1)) as that gap closes. With
    ``whole_multiplets=True`` such a multiplet (values chained by gaps <= max(32, sqrt(max(m, n)))
    eps s_max) is dropped whole: its columns of X and Y are 0 (shapes stay (.., k)), X Y^H is
    the truncation below it and the gap that appears is the one under the last kept multiplet.
    Rank: kept singular values <= tol = max(32, sqrt(max(m, n))) eps s_max are the rounding noise
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
    return SplitResult(*svd_split_p(as_inexact(a), k=int(k), whole_multiplets=whole_multiplets, basis=None))


__all__ = ["svd_split"]
