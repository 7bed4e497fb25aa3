"""qr: A = Q R as ``numpy.linalg.qr`` (modes "reduced", "complete", "r"), with exact JVP rules.

Derivation (Walter & Lehmann 2018, "On the algorithmic differentiation of matrix
factorizations"; Roberts & Roberts 2020, "QR and LQ decomposition matrix backpropagation
algorithms for square, wide, and deep matrices"; the completion as in Papanicolopulos,
arXiv:2409.13374, written here from LAPACK's Householder construction).

Tall or square, m >= n (Q is m x n, R is n x n): from dA = dQ R + Q dR,
    C := Q^H dA R^-1 = Omega + dR R^-1,   Omega := Q^H dQ skew-Hermitian.
dR R^-1 is upper triangular and, because LAPACK keeps the phase of each R_ii locally constant
(real R_ii; complex: zlarfg makes diag(R) real), its diagonal dR_ii / R_ii is real. Hence
    Omega = tril(C, -1) - tril(C, -1)^H + i Im diag(C),
    U := C - Omega = triu(C + C^H, 1) + Re diag(C),   dR = U R,
    dQ = dA R^-1 - Q U        (= (I - Q Q^H) dA R^-1 + Q Omega).
Wide, m < n: A = [X Y] with X m x m; LAPACK's reflectors come from X only, so Q, R1 = qr(X)
and R2 = Q^H Y: dR2 = dQ^H Y + Q^H dY = Q^H dY - Omega R2.
Complete, m > n: Q = [Q1 Q2] = H_1 ... H_n = I - V T V^H (compact WY form, V unit lower
trapezoidal). With M := I - Q11 = V1 (T V1^H) (leading n x n block) one finds
    P := M^-H Q21^H,   Q2 = [M P; I - Q21 P]
(the columns [P; I] span the null space of V^H, so Q fixes them). Writing Omega = Q^H dQ in
blocks, Omega11 and Omega21 = Q2^H dA R1^-1 follow from dA as above, Omega12 = -Omega21^H, and
differentiating the identity Q^H [P; I] = [P; I] gives the completion's own rotation
    Omega22 = -(Omega21 P + P^H Omega12 + P^H Omega11 P),   dQ2 = Q1 Omega12 + Q2 Omega22.
P is computed with a QR of M^H (this module's own differentiable primitive) and a triangular solve.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Zero, strip
from ..namespace._batching import leading
from ..namespace import add, concat, matmul, negative, subtract, triu
from ..namespace._rules import xp_of
from ._matrix import backend_of_matrix, mH, require_matrix
from ._results import QRResult
from .qr_tangent import guarded, minus_q_upper, qr_tangent, right_solve, square_factor_tangents, times_upper, \
    upper_source
from .triangular import solve_triangular_p

_MODES = ("reduced", "complete", "r")


def _qr_impl(a: Any, *, mode: str) -> tuple[Any, Any]:
    return tuple(backend_of_matrix(a).qr(a, mode))


def _qr_r_impl(a: Any) -> Any:
    return backend_of_matrix(a).qr(a, "r")


qr_p = Primitive("qr", _qr_impl, multiple_results=True)  # modes "reduced" and "complete": (Q, R)
qr_r_p = Primitive("qr_r", _qr_r_impl)  # mode "r": R alone
qr_p.def_batch(leading(qr_p))
qr_r_p.def_batch(leading(qr_r_p))


def projected_tangents(qh_da: Any, r: Any) -> tuple[Any, Any, Any]:
    """The n x n step of the rule for m >= n, from Q^H dA (n x n) and R: (R', S, dR) with R' = R guarded
    (:func:`qr_tangent.guarded`, for the solves dA R'^-1 of dQ), S = upper_source(C) for C = (Q^H dA) R^-1, and
    dR = U R. Duals or raw arrays of any backend: also the reduction of the streamed tall-skinny QR
    (backends/dask_tsqr.py), which has Q^H dA and not Q."""
    guarded_r = guarded(r)
    source = upper_source(right_solve(qh_da, guarded_r))
    return guarded_r, source, times_upper(source, r)


def q_tangent(da: Any, q: Any, guarded_r: Any, source: Any) -> Any:
    """dQ = dA R^-1 - Q U for U = triu(S) (:func:`projected_tangents`' R' and S; one row block of Q and
    dA will do, as in the streamed tall-skinny QR)."""
    return minus_q_upper(right_solve(da, guarded_r), q, source)


def _completion_tangent(q: Any, x: Any, omega11: Any, n: int) -> Any:
    """dQ2 for complete mode, m > n (see the derivation)."""
    q1, q2 = q[..., :, :n], q[..., :, n:]
    q11, q21 = q1[..., :n, :], q1[..., n:, :]
    xp = xp_of(strip(q))
    m_h = mH(subtract(xp.eye(n, dtype=q.dtype), q11))  # M^H = (I - Q11)^H, nonsingular for LAPACK's Q
    qm, rm = bind(qr_p, m_h, mode="reduced")
    p = bind(solve_triangular_p, guarded(rm), matmul(mH(qm), mH(q21)), lower=False, trans=0,
             unit_diagonal=False)  # P = M^-H Q21^H, (n, m - n)
    omega21 = matmul(mH(q2), x)
    omega12 = negative(mH(omega21))
    p_h = mH(p)
    omega22 = negative(add(add(matmul(omega21, p), matmul(p_h, omega12)), matmul(matmul(p_h, omega11), p)))
    return add(matmul(q1, omega12), matmul(q2, omega22))


def _tangents(q: Any, r: Any, da: Any, *, mode: str, need_q: bool) -> tuple[Any, Any]:
    """(dQ, dR) of the factorisation (Q, R) of A along dA; dQ is None when not ``need_q``."""
    m, n = da.shape[-2], da.shape[-1]
    k = min(m, n)
    if k == 0:  # empty factors, or complete Q = I for n == 0: constant
        return Zero.like(q), Zero.like(r)
    if m < n:  # wide: Q, R1 from X = A[:, :m]; R2 = Q^H Y
        r1, r2 = r[..., :, :m], r[..., :, m:]
        _, u_source, c = square_factor_tangents(q, r1, da[..., :, :m])
        omega = subtract(c, triu(u_source))
        dr2 = subtract(matmul(mH(q), da[..., :, m:]), matmul(omega, r2))
        dr = concat([times_upper(u_source, r1), dr2], axis=-1)
        return (matmul(q, omega) if need_q else None), dr
    q1, r1 = (q[..., :, :n], r[..., :n, :]) if mode == "complete" else (q, r)
    if not need_q:  # C = (Q^H dA) R^-1: an n x n solve instead of an m x n one
        _, _, dr1 = projected_tangents(matmul(mH(q1), da), r1)
        return None, (concat([dr1, _zero_rows(r, dr1)], axis=-2) if r.shape[-2] > n else dr1)
    if mode != "complete" or m == n:  # one primitive (qr_tangent.py): one compiled pass per small matrix
        return qr_tangent(q1, r1, da)
    x, u_source, c = square_factor_tangents(q1, r1, da)
    dq1 = minus_q_upper(x, q1, u_source)
    dr1 = times_upper(u_source, r1)
    dq2 = _completion_tangent(q, x, subtract(c, triu(u_source)), n)
    return concat([dq1, dq2], axis=-1), concat([dr1, _zero_rows(r, dr1)], axis=-2)


def _zero_rows(r: Any, dr1: Any) -> Any:
    """The zero block under R1 in complete mode's R (m - n rows), as a raw constant."""
    xp = xp_of(strip(r))
    shape = (*dr1.shape[:-2], r.shape[-2] - r.shape[-1], r.shape[-1])
    return xp.zeros(shape, dtype=strip(r).dtype)


@qr_p.def_jvp
def _qr_jvp(primals: list, tangents: list, *, mode: str):
    (a,), (da,) = primals, tangents
    q, r = bind(qr_p, a, mode=mode)
    dq, dr = _tangents(q, r, da, mode=mode, need_q=True)
    return (q, r), (dq, dr)


@qr_r_p.def_jvp
def _qr_r_jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    q, r = bind(qr_p, a, mode="reduced")
    _, dr = _tangents(q, r, da, mode="reduced", need_q=False)
    return r, dr


def qr(a: Any, /, mode: str = "reduced") -> Any:
    """QR factorisation of ``a`` (..., m, n), as ``numpy.linalg.qr``.

    ``mode`` "reduced" gives ``QRResult(Q, R)`` with Q (..., m, k), R (..., k, n), k = min(m, n);
    "complete" gives Q (..., m, m), R (..., m, n); "r" gives R (..., k, n) alone. Leading
    dimensions are batch dimensions; empty matrices are accepted as NumPy accepts them.

    Gauge: Q and R are LAPACK's Householder factors (geqrf + orgqr/ungqr), so R's diagonal is
    real (for complex input too) with LAPACK's signs, which are locally constant; the tangents
    keep that invariant (Im dR_ii = 0) and Q^H dQ is skew-Hermitian. In complete mode with
    m > n the last m - n columns of Q are LAPACK's Householder completion, a smooth function of
    A, and their tangent is its true derivative (it matches finite differences of the primal).

    Degenerate input: the JVP needs R1 (the leading min(m, n) columns' factor) nonsingular.
    Where A's leading min(m, n) columns are rank deficient (R1 has an exactly zero diagonal
    entry) the tangents are NaN (no error); near such points they grow like 1 / sigma_min.
    The primal is discontinuous where LAPACK meets an exactly zero subcolumn (it then skips a
    reflector, e.g. for an already upper triangular real A): there the tangents are those of the
    locally smooth branch that numpy did not pick and finite differences do not apply.
    """
    require_matrix("qr", a)
    if mode not in _MODES:
        raise ValueError(f"qr mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if mode == "r":
        return qr_r_p(a)
    q, r = qr_p(a, mode=mode)
    return QRResult(q, r)


__all__ = ["qr"]
