"""svd and svdvals: A = U diag(S) V^H with exact JVP rules.

Derivation (Townsend 2016, "Differentiating the singular value decomposition"; Wan & Zhang
2019, "Automatic differentiation for complex valued SVD", for the complex phase term). With
k = min(m, n), thin factors U (m, k), V (n, k), P = U^H dA V and
Omega_U = U^H dU, Omega_V = V^H dV (both skew-Hermitian), differentiating A = U S V^H gives
    P = Omega_U S + dS - S Omega_V.
Adding P S + S P^H (resp. S P + P^H S) cancels Omega_V (resp. Omega_U):
    P S + S P^H = Omega_U S^2 - S^2 Omega_U + 2 S dS,   S P + P^H S = Omega_V S^2 - S^2 Omega_V + 2 S dS,
so off the diagonal Omega_U = F o (P S + S P^H), Omega_V = F o (S P + P^H S) with
F_ij = 1 / (s_j^2 - s_i^2), and on it dS = Re diag(P), Im P_ii = s_i Im(Omega_U - Omega_V)_ii.
Gauge: Im diag(Omega_U) = 0, hence diag(Omega_V) = -i Im diag(P) / S. The parts outside the
spans: (I - U U^H) dU = (I - U U^H) dA V S^-1 and (I - V V^H) dV = (I - V V^H) dA^H U S^-1,
written as dU = U (Omega_U - P S^-1) + dA V S^-1 so no projector is formed (dropped when U or V
is square, where it vanishes).
Full matrices, m > n, U = [U1 U2]: U^H dU skew-Hermitian fixes U1^H dU2 = -(U2^H dU1)^H =
-S^-1 V^H dA^H U2; the minimal-rotation gauge U2^H dU2 = 0 then gives
    dU2 = -U1 S^-1 V^H dA^H U2 = -U1 S^-1 (U2^H dA V)^H,
and for m < n, V = [V1 V2], dV2 = -V1 S^-1 U^H dA V2.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, Zero, bind, strip
from ..namespace import (
    abs,
    add,
    concat,
    conj,
    diagonal,
    divide,
    expand_dims,
    less_equal,
    matmul,
    multiply,
    negative,
    real,
    square,
    subtract,
    sum,
    where,
)
from ..namespace import max as amax
from ..namespace._rules import is_complex_dtype, is_inexact_dtype, xp_of
from ._matrix import backend_of_matrix, diag_embed, mH, require_matrix
from ._results import SVDResult


def _svd_impl(a: Any, *, full_matrices: bool) -> tuple[Any, Any, Any]:
    return tuple(backend_of_matrix(a).svd(a, full_matrices=full_matrices))


def _svdvals_impl(a: Any) -> Any:
    return backend_of_matrix(a).svdvals(a)


svd_p = Primitive("svd", _svd_impl, multiple_results=True)
svdvals_p = Primitive("svdvals", _svdvals_impl)


def _safe_inverse(x: Any, zero_mask: Any) -> Any:
    """1 / x, and 0 where ``zero_mask`` (a raw boolean array) holds; differentiable and NaN-free."""
    return where(zero_mask, 0.0, divide(1.0, where(zero_mask, 1.0, x)))


def _inverse_and_gaps(s: Any, m: int, n: int) -> tuple[Any, Any]:
    """(S^-1, F) with F_ij = 1 / (s_j^2 - s_i^2), both 0 where ill-defined.

    A singular value counts as zero when s <= max(m, n) eps s_max (NumPy's matrix_rank tolerance)
    and two as coinciding when |s_j^2 - s_i^2| <= max(m, n) eps s_max^2 (below the accuracy of the
    computed S, the gap is rounding noise); the diagonal of F is 0.
    """
    raw = strip(s)  # the masks are constants: computed on the raw values
    s_max = amax(raw, axis=-1, keepdims=True)
    tol = multiply(s_max, float(max(m, n) * xp_of(raw).finfo(raw.dtype).eps))
    s_inv = _safe_inverse(s, less_equal(raw, tol))
    s2 = square(s)
    gaps = subtract(expand_dims(s2, axis=-2), expand_dims(s2, axis=-1))  # [i, j] = s_j^2 - s_i^2
    raw2 = square(raw)
    raw_gaps = subtract(expand_dims(raw2, axis=-2), expand_dims(raw2, axis=-1))
    close = less_equal(abs(raw_gaps), expand_dims(multiply(tol, s_max), axis=-1))
    return s_inv, _safe_inverse(gaps, close)


def _zero_tangents(outs: tuple) -> tuple:
    return tuple(Zero.like(o) for o in outs)


@svd_p.def_jvp
def _svd_jvp(primals: list, tangents: list, *, full_matrices: bool):
    (a,), (da,) = primals, tangents
    u, s, vh = outs = bind(svd_p, a, full_matrices=full_matrices)
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    if k == 0:  # every tangent is 0 (the completed factor of an empty matrix is the identity)
        return outs, _zero_tangents(outs)
    u1 = u[..., :, :k] if (full_matrices and m > k) else u
    vh1 = vh[..., :k, :] if (full_matrices and n > k) else vh
    v1 = mH(vh1)
    s_inv, f = _inverse_and_gaps(s, m, n)
    s_row = expand_dims(s, axis=-2)  # s_j at [i, j]
    s_col = expand_dims(s, axis=-1)  # s_i at [i, j]
    s_inv_row = expand_dims(s_inv, axis=-2)
    s_inv_col = expand_dims(s_inv, axis=-1)
    if m >= n:
        dav = matmul(da, v1)  # (m, k)
        p = matmul(mH(u1), dav)
        ph = mH(p)
    else:
        dahu = matmul(mH(da), u1)  # (n, k)
        ph = matmul(vh1, dahu)
        p = mH(ph)

    diag_p = diagonal(p)
    ds = real(diag_p)
    omega_u = multiply(f, add(multiply(p, s_row), multiply(s_col, ph)))
    omega_v = multiply(f, add(multiply(s_col, p), multiply(ph, s_row)))
    if is_complex_dtype(a):  # phase gauge Im diag(U^H dU) = 0 puts i Im P_ii / s_i on V's side
        omega_v = subtract(omega_v, diag_embed(multiply(subtract(diag_p, ds), s_inv)))

    if m > k:
        du = add(matmul(u1, subtract(omega_u, multiply(p, s_inv_row))), multiply(dav, s_inv_row))
        if full_matrices:
            u2 = u[..., :, k:]
            du2 = negative(matmul(u1, multiply(s_inv_col, mH(matmul(mH(u2), dav)))))
            du = concat([du, du2], axis=-1)
    else:
        du = matmul(u1, omega_u)
    if n > k:
        dv = add(matmul(v1, subtract(omega_v, multiply(ph, s_inv_row))), multiply(dahu, s_inv_row))
        if full_matrices:
            v2 = mH(vh[..., k:, :])
            dv2 = negative(matmul(v1, multiply(s_inv_col, matmul(mH(dahu), v2))))
            dv = concat([dv, dv2], axis=-1)
    else:
        dv = matmul(v1, omega_v)
    return outs, (du, ds, mH(dv))


@svdvals_p.def_jvp
def _svdvals_jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    s = bind(svdvals_p, a)
    if a.shape[-2] == 0 or a.shape[-1] == 0:
        return s, Zero.like(s)
    u, _, vh = bind(svd_p, a, full_matrices=False)
    # ds_i = Re(u_i^H dA v_i): one product dA V and a column-wise dot with U.
    cu = conj(u) if is_complex_dtype(u) else u
    return s, real(sum(multiply(cu, matmul(da, mH(vh))), axis=-2))


def _validate(name: str, a: Any) -> None:
    require_matrix(name, a)
    if not is_inexact_dtype(a):
        raise TypeError(f"{name} needs a real or complex floating-point array, got dtype {a.dtype}")


def svd(a: Any, /, full_matrices: bool = True) -> SVDResult:
    """Singular value decomposition ``a = U @ diag(S) @ Vh``, as ``numpy.linalg.svd``.

    ``a`` is (..., m, n) real or complex floating point; leading dimensions are batch dimensions.
    Returns ``SVDResult(U, S, Vh)`` with S real and descending; U is (..., m, m) and Vh
    (..., n, n) when ``full_matrices`` (the default), else (..., m, k) and (..., k, n), k = min(m, n).

    Derivative conventions (the singular vectors are defined only up to a gauge):

    * each pair (u_i, v_i) may turn by a common sign (real) or phase (complex); the tangent is the
      one with ``Im diag(U^H dU) = 0`` (real: automatically). ``U^H dU`` and ``V^H dV`` are
      skew-Hermitian.
    * ``full_matrices`` with m != n: the completion U2 = U[..., k:] (or V2) follows the minimal
      rotation, ``U2^H dU2 = 0``: dU2 = -U1 S^-1 V^H dA^H U2 (mirror for m < n, dV2).
    * degenerate input: where two singular values coincide (|s_i^2 - s_j^2| <= max(m, n) eps
      s_max^2, i.e. within rounding) the term 1/(s_j^2 - s_i^2) is set to 0, and where one is zero
      (s_i <= max(m, n) eps s_max, NumPy's matrix_rank tolerance) 1/s_i is set to 0. Tangents stay
      finite (never NaN/Inf) although the singular vectors' derivative is not defined there;
      dS = Re diag(U^H dA V) is unaffected (a repeated group's sum of dS_i is exact).
    """
    _validate("svd", a)
    if not isinstance(full_matrices, bool):
        raise TypeError(f"full_matrices must be a bool, got {type(full_matrices).__name__}")
    return SVDResult(*svd_p(a, full_matrices=full_matrices))


def svdvals(a: Any, /) -> Any:
    """Singular values of ``a`` (..., m, n), descending, as ``numpy.linalg.svd(a, compute_uv=False)``.

    The tangent is dS = Re diag(U^H dA V) with U, V from the thin SVD (Townsend 2016). Where
    singular values coincide, S is not differentiable; the tangent is still finite and the sum of
    the coinciding dS_i is exact (it is a trace, independent of the basis chosen).
    """
    _validate("svdvals", a)
    return svdvals_p(a)


__all__ = ["svd", "svdvals"]
