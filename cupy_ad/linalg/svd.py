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
Repeated / zero singular values (issue 7): perturbation theory of the Hermitian dilation
H = [[0, A], [A^H, 0]] (eigenvalues +-s_i and |m - n| zeros, eigenvectors (u; +-v)/sqrt(2)).
A positive cluster sigma moves by the eigenvalues of Herm(P_kk); inside it, with x_l the other
eigenvectors of H, the second-order mixing is c_ij = T_ij / (mu_j - mu_i),
T = Herm(P) (F' o Herm(P)) - Skew(P) (E o Skew(P)) + (P2^H P2 + Q2 Q2^H) / (2 sigma),
F'_lj = 1/(s_j - s_l) off the cluster, E_lj = 1/(s_j + s_l), P2, Q2 the parts of dA against the
complements of U, V; Omega_U = E o Skew(P) + c, Omega_V = -E o Skew(P) + c inside the cluster.
The zero cluster of H gives dS = svdvals(U_0^H dA V_0) (U_0, V_0 the null spaces of A^H, A).
Inside it (long side X, dAx = dA or dA^H, Y square) the cluster vectors of H are (u_i; +-v_i)/sqrt 2
(shifts +-sigma_i, B = U_0^H dAx V_0 = sum sigma_i u_i v_i^H) and (u_c; 0) (shift 0, the rest of U_0).
Their couplings to the outside pairs (x_l; +-y_l)/sqrt 2, eigenvalues +-s_l, summed over both signs
with 1 / (0 -+ s_l), leave only M = P_0N S_N^-1 P_N0 (P_0N = U_0^H dAx Y_N, P_N0 = X_N^H dAx V_0):
T(i+-, j+) = -(+-M^H + M)_ij / 2 and T(c, j+) = -(P_cN S_N^-1 P_N0)_cj / sqrt 2, so with
c = T / (mu_j - mu_i) (mu = +-sigma, 0) and reading u, v off the dilation's vectors:
    Omega_X0 = -Herm(M) o G- - Skew(M) o G+,   Omega_Y0 = -Herm(M) o G- + Skew(M) o G+,
G-_ij = 1 / (sigma_j - sigma_i) (0 on the diagonal), G+_ij = 1 / (sigma_j + sigma_i), plus the part
along the complement of X, -(I - X X^H) dAx Y S^-1 P e_j / sigma_j (the full completion gets the
matching -X (X_c^H .)^H, keeping U^H dU skew). In a positive cluster c is 0 where mu_i, mu_j coincide
within their rounding (``_clusters.splitting_resolution``: the cluster's basis is resolved to an
angle eps s_max / gap, so mu to that times max|P|): that rotation is fixed at a higher order or, for a
symmetry-protected multiplet, never, and as U and V turn by the same c it cancels in U_k S_k V_k^H.
In the zero block, entries whose mu coincide (sigma_i = sigma_j,
sigma_i + sigma_j = 0, sigma_j = 0 for the complement part; within tol) are 0, as in eigh. A common
phase per pair moves the imaginary diagonal to the side that is not U (Im diag(U^H dU) = 0).
Nested jvp through a positive cluster: as eigh on the dilation, the outer tangent of Herm(P) is
checked against T and the mixing's gets the third-order term of the split members' vectors
(``_nested_guard``; U and W on the dilation in ``_outside_terms``). Through the zero block, whose
limit basis is computed from the tangent as a constant, the outer tangents of its dS, dU and dV
columns are NaN (``guard_zero_block``): a truncation cut at the gap above the block stays exact
(the block's new left vectors still move with U, see ``_in_span``).
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import Dual, Zero, strip
from ..namespace._batching import leading
from ..namespace import (
    abs,
    add,
    concat,
    conj,
    diagonal,
    divide,
    expand_dims,
    imag,
    less_equal,
    matmul,
    maximum,
    multiply,
    negative,
    real,
    square,
    subtract,
    sum,
    where,
)
from ..namespace._rules import is_complex_dtype, xp_of
from ._clusters import (block_rotation, find_clusters, infinite_diagonal, joined_neighbours, resolution,
                        run_degenerate_path, splitting_resolution, take_degenerate_path)
from ._nested_guard import cluster_members, guard_curve, guard_nested, guard_zero_block
from ._matrix import as_inexact, backend_of_matrix, diag_embed, mH, require_matrix
from ._results import SVDResult
from .qr import qr_p, qr_r_p


def _svd_impl(a: Any, *, full_matrices: bool) -> tuple[Any, Any, Any]:
    return tuple(backend_of_matrix(a).svd(a, full_matrices=full_matrices))


def _svdvals_impl(a: Any) -> Any:
    return backend_of_matrix(a).svdvals(a)


svd_p = Primitive("svd", _svd_impl, multiple_results=True)
svdvals_p = Primitive("svdvals", _svdvals_impl)
svd_p.def_batch(leading(svd_p))
svdvals_p.def_batch(leading(svdvals_p))


def _safe_inverse(x: Any, zero_mask: Any) -> Any:
    """1 / x, and 0 where ``zero_mask`` (a raw boolean array) holds; differentiable and NaN-free."""
    return where(zero_mask, 0.0, divide(1.0, where(zero_mask, 1.0, x)))


def _tolerance(s: Any, m: int, n: int) -> Any:
    """resolution(max(m, n)) s_max, raw (..., 1): what the SVD resolves (see ``_clusters.resolution``);
    a singular value at or below it counts as zero, two closer than it coincide."""
    raw = strip(s)
    xp = xp_of(raw)
    return xp.max(raw, axis=-1, keepdims=True) * resolution(max(m, n), float(xp.finfo(raw.dtype).eps))


def _inverse_and_gaps(s: Any, m: int, n: int, distinct: bool) -> tuple[Any, Any]:
    """(S^-1, F) with F_ij = 1 / (s_j^2 - s_i^2), both 0 where ill-defined.

    With tol = resolution(max(m, n)) s_max (what the SVD resolves, see ``_clusters.resolution``), a
    singular value counts as zero when s <= tol and two as coinciding when |s_j - s_i| <= tol (the
    gap is rounding noise); the diagonal of F is 0. ``distinct``: none coincide and none is zero (the
    host check of ``_flags``), so every gap off the diagonal is nonzero: F in two passes, not six.
    """
    raw = strip(s)  # the masks are constants: computed on the raw values
    tol = _tolerance(raw, m, n)
    s_inv = _safe_inverse(s, less_equal(raw, tol))
    s2 = square(s)
    gaps = subtract(expand_dims(s2, axis=-2), expand_dims(s2, axis=-1))  # [i, j] = s_j^2 - s_i^2
    if distinct:
        return s_inv, divide(1.0, add(gaps, infinite_diagonal(raw)))
    raw_gaps = subtract(expand_dims(raw, axis=-2), expand_dims(raw, axis=-1))
    close = less_equal(abs(raw_gaps), expand_dims(tol, axis=-1))
    return s_inv, _safe_inverse(gaps, close)


def _zero_tangents(outs: tuple) -> tuple:
    return tuple(Zero.like(o) for o in outs)


def _through_qr(a: Any, da: Any) -> tuple:
    """The thin SVD's JVP of a tall matrix whose rows are spread out (``Backend.tall_skinny``): A = Q R,
    R = U_R S V^H, so U = Q U_R and dU = dQ U_R + Q dU_R (Dask's TSQR SVD computes U the same way);
    only R (n x n) is decomposed, and the tall work is QR's rule (matmuls and n x n solves)."""
    (q, r), (dq, dr) = qr_p.jvp([a], [da], mode="reduced")
    (u_r, s, vh), (du_r, ds, dvh) = svd_p.jvp([r], [dr], full_matrices=False)
    return (matmul(q, u_r), s, vh), (add(matmul(dq, u_r), matmul(q, du_r)), ds, dvh)


@svd_p.def_jvp
def _svd_jvp(primals: list, tangents: list, *, full_matrices: bool):
    (a,), (da,) = primals, tangents
    if backend_of_matrix(a).tall_skinny(a):  # full_matrices=True is refused by such a backend's svd
        return _through_qr(a, da)
    u, s, vh = outs = bind(svd_p, a, full_matrices=full_matrices)
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    if k == 0:  # every tangent is 0 (the completed factor of an empty matrix is the identity)
        return outs, _zero_tangents(outs)
    u1 = u[..., :, :k] if (full_matrices and m > k) else u
    vh1 = vh[..., :k, :] if (full_matrices and n > k) else vh
    v1 = mH(vh1)
    flags = _flags(s, m, n)
    distinct = not take_degenerate_path(s, flags)  # (host) then the degenerate path has nothing to do
    s_inv, f = _inverse_and_gaps(s, m, n, distinct)
    s_row = expand_dims(s, axis=-2)  # s_j at [i, j]
    s_inv_row = expand_dims(s_inv, axis=-2)
    s_inv_col = expand_dims(s_inv, axis=-1)
    if m >= n:
        dav = matmul(da, v1)  # (m, k)
        p = matmul(mH(u1), dav)
        ph = mH(p)
        dahu = None
    else:
        dahu = matmul(mH(da), u1)  # (n, k)
        ph = matmul(vh1, dahu)
        p = mH(ph)
        dav = None
    diag_p = diagonal(p)
    ds = real(diag_p)
    # F is antisymmetric, so F o (P S + S P^H) = X - X^H with X = F o P S (column j scaled by s_j)
    # and F o (S P + P^H S) = Y - Y^H with Y = S (F o P): exactly skew-Hermitian, and five passes
    # over k x k arrays instead of eight. Intermediates are dropped as soon as they are used.
    fp = multiply(f, p)
    del f
    x = multiply(fp, s_row)
    omega_u = subtract(x, mH(x))
    del x
    if m > k:
        du = add(matmul(u1, subtract(omega_u, multiply(p, s_inv_row))), multiply(dav, s_inv_row))
        if full_matrices:
            u2 = u[..., :, k:]
            du2 = negative(matmul(u1, multiply(s_inv_col, mH(matmul(mH(u2), dav)))))
            du = concat([du, du2], axis=-1)
    else:
        du = matmul(u1, omega_u)
    del omega_u
    y = multiply(expand_dims(s, axis=-1), fp)
    del fp
    omega_v = subtract(y, mH(y))
    del y
    if is_complex_dtype(a):  # phase gauge Im diag(U^H dU) = 0 puts i Im P_ii / s_i on V's side
        omega_v = subtract(omega_v, diag_embed(multiply(subtract(diag_p, ds), s_inv)))
    if n > k:
        dv = add(matmul(v1, subtract(omega_v, multiply(ph, s_inv_row))), multiply(dahu, s_inv_row))
        if full_matrices:
            v2 = mH(vh[..., k:, :])
            dv2 = negative(matmul(v1, multiply(s_inv_col, matmul(mH(dahu), v2))))
            dv = concat([dv, dv2], axis=-1)
    else:
        dv = matmul(v1, omega_v)
    del omega_v
    long_side = (dav, p) if m >= n else (dahu, ph)  # dAx Y and X^H dAx Y, reused by the degenerate path
    del dav, dahu
    degenerate = None if distinct else _degenerate(a, u, s, vh, da, full_matrices, (du, ds, dv), long_side, flags)
    if degenerate is not None:
        u, vh, du, ds, dv = degenerate
        outs = (u, s, vh)
    return outs, (du, ds, mH(dv))


def _degenerate(a: Any, u: Any, s: Any, vh: Any, da: Any, full_matrices: bool, ordinary: tuple,
                long_side: tuple | None = None, flags: Any = None) -> Any:
    """(U', Vh', dU, dS, dV) at repeated or zero singular values; None if there are none (host).

    ``ordinary`` = (dU, dS, dV), kept for regular columns (dU and dV may be Zero when only dS is
    wanted); ``long_side`` = (dAx Y, X^H dAx Y) as the ordinary rule computed them (see
    :func:`_degenerate_path`), or None to compute them there. Host batches run the path on the
    matrices with such values only. ``flags``: ``_flags(s, m, n)`` if the caller has them.
    """
    flags = _flags(s, *a.shape[-2:]) if flags is None else flags

    def path(pick: Any) -> tuple:
        return _degenerate_path(pick(a), pick(u), pick(s), pick(vh), pick(da), full_matrices,
                                tuple(map(pick, ordinary)),
                                None if long_side is None else tuple(map(pick, long_side)))

    return run_degenerate_path(a, flags, path, (u, vh, *ordinary))


def _flags(s: Any, m: int, n: int) -> Any:
    """Raw bool (..., 2k - 1): values clustered with their neighbour, or zero (the degenerate path's)."""
    raw = strip(s)
    tol = _tolerance(raw, m, n)
    return xp_of(raw).concat([joined_neighbours(raw, tol), raw <= tol], axis=-1)


def _degenerate_path(a: Any, u: Any, s: Any, vh: Any, da: Any, full_matrices: bool, ordinary: tuple,
                     long_side: tuple | None) -> tuple:
    """The degenerate path of :func:`_degenerate` on every matrix given.

    Written for the long side X (U when m >= n, else V; dAx = dA or dA^H) and the square short
    side Y, so that P = X^H dAx Y is (k, k).
    """
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    vectors = type(ordinary[0]) is not Zero  # (svdvals wants none)
    name = "svd" if vectors else "svdvals"
    raw = strip(s)
    xp = xp_of(raw)
    eps = float(xp.finfo(raw.dtype).eps)
    tol = _tolerance(raw, m, n)
    cl = find_clusters(raw, tol)
    zero = xp.any(cl.same & xp.expand_dims(raw <= tol, axis=-2), axis=-1)  # a cluster holding a 0
    regular = cl.single & ~zero
    tall = m >= n
    long_full = u if tall else mH(vh)
    x = long_full[..., :, :k]
    y = mH(vh[..., :k, :]) if tall else u[..., :, :k]
    dax = da if tall else mH(da)
    big = max(m, n) > k
    row = lambda t: expand_dims(t, axis=-2)  # noqa: E731 - [i, j] = t_j
    col = lambda t: expand_dims(t, axis=-1)  # noqa: E731 - [i, j] = t_i
    # 1. rotations: positive clusters diagonalise Herm(P) (descending); the zero cluster
    #    diagonalises W^H W, W = (I - X_nz X_nz^H) dAx Y_0, and takes left vectors W y / |W y|.
    positive = ~cl.single & ~zero
    if long_side is None:
        dy = matmul(dax, y)
        p = matmul(mH(x), dy)
    else:
        dy, p = long_side  # dAx Y, X^H dAx Y
    r_pos, scale = block_rotation(multiply(add(p, mH(p)), 0.5), cl, positive, name, descending=True)
    # host backends skip the zero block's work where no matrix has one (CuPy: always, branch-free)
    with_zero = take_degenerate_path(raw, zero)
    if with_zero:
        x_nz = where(row(zero), 0.0, x)
        w_mat = strip(subtract(dy, matmul(x_nz, matmul(mH(x_nz), dy))))
        r_zero, _ = block_rotation(matmul(mH(w_mat), w_mat), cl, zero, name, descending=True)
        rot = xp.where(col(zero) & row(zero), r_zero, r_pos)
    else:
        rot = r_pos
    y2 = where(row(regular), y, matmul(y, rot))
    if with_zero:
        x_rot = strip(matmul(x, rot))
        wy = w_mat @ rot
        beta = xp.sqrt(xp.sum(xp.real(wy * xp.conj(wy)), axis=-2))  # (..., k)
        beta_tol = resolution(max(m, n), float(xp.finfo(raw.dtype).eps)) * xp.max(beta, axis=-1, keepdims=True)
        keep = zero & (beta > beta_tol)
        cand = xp.where(row(keep), wy / xp.where(row(keep), row(beta), xp.ones_like(row(beta))), x_rot)
        q, rq = backend_of_matrix(raw).qr(xp.astype(cand, x_rot.dtype), "reduced")  # orthonormal completion
        d = xp.linalg.diagonal(rq)
        phase = xp.where(xp.abs(d) > 0, d / xp.where(xp.abs(d) > 0, xp.abs(d), xp.ones_like(xp.abs(d))),
                         xp.ones_like(d))
        x2 = where(row(regular), x, where(row(zero), _in_span(x, q * row(phase)), matmul(x, rot)))
    else:
        x2 = where(row(regular), x, matmul(x, rot))
    # 2. tangents in the rotated basis: the ordinary formulas, then the in-cluster terms.
    dy = matmul(dax, y2)
    p = matmul(mH(x2), dy)
    ph = mH(p)
    s_inv = where(zero, 0.0, divide(1.0, where(zero, 1.0, s)))
    s2 = square(s)
    f = where(cl.same, 0.0, divide(1.0, where(cl.same, 1.0, subtract(row(s2), col(s2)))))
    ds = real(diagonal(p))
    ds = where(zero, maximum(ds, 0.0), ds)  # singular values of the zero block: never negative
    omega_x = multiply(f, add(multiply(p, row(s)), multiply(col(s), ph)))
    omega_y = multiply(f, add(multiply(col(s), p), multiply(ph, row(s))))
    inpos = cl.same & col(positive) & row(positive) & ~xp.eye(k, dtype=xp.bool)
    sum_s = add(row(s), col(s))
    e = where(inpos, divide(1.0, where(inpos, sum_s, 1.0)), 0.0)  # 1 / (s_j + s_l), s_j > 0
    both_tiny = less_equal(strip(sum_s), xp.expand_dims(tol, axis=-1))
    e_all = where(both_tiny, 0.0, divide(1.0, where(both_tiny, 1.0, sum_s)))  # 1 / (s_j + s_l), all l
    herm = multiply(add(p, ph), 0.5)
    skew = multiply(subtract(p, ph), 0.5)
    y_plus, y_minus = multiply(multiply(f, sum_s), herm), multiply(e_all, skew)  # couplings to +s_l, -s_l
    t = subtract(matmul(herm, y_plus), matmul(skew, y_minus))
    outside = (skew, y_plus, y_minus, s_inv)
    if big:  # the complement of X: P2^H P2 = dY^H dY - P^H P, over 2 s_j
        q = subtract(matmul(mH(dy), dy), matmul(ph, p))
        t = add(t, multiply(q, multiply(row(s_inv), 0.5)))
        outside += (q,)
    t = multiply(add(t, mH(t)), 0.5)
    mu = strip(ds)
    tol_mu = splitting_resolution(raw, cl, p, scale, max(m, n), name)
    mixing = inpos & (xp.abs(row(mu) - col(mu)) > tol_mu)
    g = where(mixing, divide(1.0, where(mixing, subtract(row(ds), col(ds)), 1.0)), 0.0)
    # svdvals (no vector tangents wanted): exact along any curve where mu differ, checked on repeats only;
    # the vectors get the third-order term of the split members (``_outside_terms``)
    checked = inpos if vectors else inpos & ~mixing
    ds, c = guard_nested(ds, multiply(g, t), herm, t, checked, mixing, name, outside=outside if vectors else (),
                         third_order=_outside_terms if vectors else None)
    omega_x = add(omega_x, add(multiply(e, skew), c))
    omega_y = add(omega_y, subtract(c, multiply(e, skew)))
    # 3. inside the zero block (second order through the nonzero s_l, via the dilation; see the
    #    module docstring): M = P S^-1 P over l with s_l > 0, sigma = dS of the block.
    tol_z = resolution(max(m, n), eps) * xp.max(xp.abs(strip(p)), axis=(-2, -1), keepdims=True)
    sig = strip(ds)
    if with_zero:
        zb = col(zero) & row(zero)
        diff_ok = zb & ~xp.eye(k, dtype=xp.bool) & (xp.abs(row(sig) - col(sig)) > tol_z)
        sum_ok = zb & ((row(sig) + col(sig)) > tol_z)
        g_minus = where(diff_ok, divide(1.0, where(diff_ok, subtract(row(ds), col(ds)), 1.0)), 0.0)  # 1/(sig_j - sig_i)
        g_plus = where(sum_ok, divide(1.0, where(sum_ok, add(row(ds), col(ds)), 1.0)), 0.0)  # 1/(sig_j + sig_i)
        mm = matmul(p, multiply(col(s_inv), p))
        mm_h = multiply(multiply(add(mm, mH(mm)), 0.5), g_minus)
        mm_k = multiply(multiply(subtract(mm, mH(mm)), 0.5), g_plus)
        zx, zy = negative(add(mm_h, mm_k)), subtract(mm_k, mm_h)
        gauge = diag_embed(diagonal(zx if tall else zy))  # common phase: Im diag(U^H dU) = 0 (0 if real)
        omega_x, omega_y = add(omega_x, subtract(zx, gauge)), add(omega_y, subtract(zy, gauge))
    if is_complex_dtype(a):  # the phase gauge of the ordinary rule: Im diag(U^H dU) = 0
        phase_term = diag_embed(multiply(multiply(imag(diagonal(p)), s_inv), 1j))
        omega_x, omega_y = (omega_x, subtract(omega_y, phase_term)) if tall else (add(omega_x, phase_term), omega_y)
    if big:
        dx = add(matmul(x2, subtract(omega_x, multiply(p, row(s_inv)))), multiply(dy, row(s_inv)))
        if with_zero:  # zero block: the part along the complement of X, -(I - X X^H) dAx Y S^-1 P e_j / sig_j
            sig_ok = zero & (sig > xp.squeeze(tol_z, axis=-1))
            g_sig = where(sig_ok, divide(1.0, where(sig_ok, ds, 1.0)), 0.0)
            dx_c = negative(multiply(matmul(subtract(dy, matmul(x2, p)), multiply(col(s_inv), p)), row(g_sig)))
            dx = add(dx, dx_c)
    else:
        dx = matmul(x2, omega_x)
    dy_out = matmul(y2, omega_y)
    if big and full_matrices:  # completion: orthonormal complement of the new X (QR), then min. rotation
        x_c = long_full[..., :, k:]
        if with_zero:
            has_zero = xp.expand_dims(xp.any(zero, axis=-1, keepdims=True), axis=-1)
            x_c = where(has_zero, backend_of_matrix(raw).qr(strip(x2), "complete")[0][..., :, k:], x_c)
        dxc = negative(matmul(x2, multiply(col(s_inv), mH(matmul(mH(x_c), dy)))))
        if with_zero:
            dxc = subtract(dxc, matmul(x2, mH(matmul(mH(x_c), dx_c))))  # keeps U^H dU skew-Hermitian
        x2, dx = concat([x2, x_c], axis=-1), concat([dx, dxc], axis=-1)
    du0, ds0, dv0 = ordinary
    if x2.shape[-1] > k:  # the completion: the ordinary one unless this matrix has a cluster
        plain = xp.all(regular, axis=-1, keepdims=True)
        reg_long = row(xp.concat([regular, xp.broadcast_to(plain, (*plain.shape[:-1], x2.shape[-1] - k))], axis=-1))
    else:
        reg_long = row(regular)
    if with_zero:  # nested jvp through the zero block is not exact: NaN there (``guard_zero_block``)
        ds = guard_zero_block(ds, zero)
        completion = xp.broadcast_to(xp.any(zero, axis=-1, keepdims=True), (*zero.shape[:-1], dx.shape[-1] - k))
        dx = guard_zero_block(dx, row(xp.concat([zero, completion], axis=-1)))
        dy_out = guard_zero_block(dy_out, row(zero))
    (u2, du), (v2, dv) = ((x2, dx), (y2, dy_out)) if tall else ((y2, dy_out), (x2, dx))
    reg_u, reg_v = (reg_long, row(regular)) if tall else (row(regular), reg_long)
    u_out = where(reg_u, u, u2)
    vh_out = mH(where(reg_v, mH(vh), v2))
    def pick(mask: Any, old: Any, new: Any) -> Any:
        return new if type(old) is Zero else where(mask, old, new)

    return u_out, vh_out, pick(reg_u, du0, du), where(regular, ds0, ds), pick(reg_v, dv0, dv)


def _outside_terms(herm: Any, skew: Any, y_plus: Any, y_minus: Any, s_inv: Any, q: Any = None) -> tuple[Any, Any]:
    """(U, W) of ``_nested_guard`` on the Hermitian dilation, for a positive cluster: its outside are the
    pairs (x_l; +-y_l) / sqrt 2 at +-s_l, coupled by Y+ = ``y_plus``, Y- = ``y_minus`` (Herm(P)_lj / (s_j - s_l),
    Skew(P)_lj / (s_j + s_l)), and for m != n the complement (x_c; 0) at 0, coupled by P2 S^-1 / sqrt 2.
    The dilation's P among them: Herm(P) (+, +), -Herm(P) (-, -), -Skew(P) (+, -), +-P2 / sqrt 2 to the
    complement, 0 within it; so with Q = P2^H P2 (``q``, None when m = n):
    U = Y+^H Herm(P) Y+ - Y-^H Herm(P) Y- + Z + Z^H, Z = Y-^H Skew(P) Y+ + S^-1 Q (Y+ - Y-) / 2,
    W = Y+^H Y+ + Y-^H Y- + S^-1 Q S^-1 / 2."""
    p_h, m_h = mH(y_plus), mH(y_minus)
    z = matmul(m_h, matmul(skew, y_plus))
    w = add(matmul(p_h, y_plus), matmul(m_h, y_minus))
    if q is not None:
        scaled = multiply(expand_dims(s_inv, axis=-1), q)  # S^-1 Q
        z = add(z, multiply(matmul(scaled, subtract(y_plus, y_minus)), 0.5))
        w = add(w, multiply(multiply(scaled, expand_dims(s_inv, axis=-2)), 0.5))
    u = add(subtract(matmul(p_h, matmul(herm, y_plus)), matmul(m_h, matmul(herm, y_minus))), add(z, mH(z)))
    return u, w


def _in_span(x: Any, z: Any) -> Any:
    """Raw columns ``z`` as X (X^H z) + (z - X X^H z): the same values, whose part in span(X) (all of them
    when X is square) moves with X under an outer jvp. The zero block's new left vectors are computed
    from the tangent, as constants; as constants they would hide X's outer tangent from the positive
    clusters' second-order terms of a square matrix (where no complement term cancels them). Without an
    outer jvp (``x`` not a dual) ``z`` itself: no extra cost at first order."""
    if type(x) is not Dual:
        return z
    raw = strip(x)
    coefficients = mH(raw) @ z
    return add(matmul(x, coefficients), z - raw @ coefficients)


@svdvals_p.def_jvp
def _svdvals_jvp(primals: list, tangents: list):
    (a,), (da,) = primals, tangents
    if backend_of_matrix(a).tall_skinny(a):  # the singular values of R in A = Q R (see _through_qr)
        r, dr = qr_r_p.jvp([a], [da])
        return svdvals_p.jvp([r], [dr])
    # Two decompositions, deliberately: the primal is the svdvals kernel's (NumPy's svd(compute_uv=False),
    # bit for bit, as outside jvp), the tangent needs the vectors of a full svd, whose values differ from
    # those by rounding (LAPACK's gesdd takes another path without vectors). eigvalsh's rule, which
    # serves the vectors' eigenvalues as the primal, saves the second call at that price.
    s = bind(svdvals_p, a)
    if a.shape[-2] == 0 or a.shape[-1] == 0:
        return s, Zero.like(s)
    u, s_uv, vh = bind(svd_p, a, full_matrices=False)
    # ds_i = Re(u_i^H dA v_i): one product dA V and a column-wise dot with U.
    cu = conj(u) if is_complex_dtype(u) else u
    ds = real(sum(multiply(cu, matmul(da, mH(vh))), axis=-2))
    degenerate = _degenerate(a, u, s_uv, vh, da, False, (Zero.like(u), ds, Zero.like(vh)))
    if degenerate is None:
        return s, ds
    flags, k = _flags(s_uv, *a.shape[-2:]), s_uv.shape[-1]  # (clustered with the next value; zero)
    return s, guard_curve(degenerate[3], a, da, cluster_members(flags[..., :k - 1]) | flags[..., k - 1:], "svdvals")


def _validate(name: str, a: Any) -> Any:
    """``a`` checked to be a matrix stack, integer input promoted to float64 (as NumPy does)."""
    require_matrix(name, a)
    return as_inexact(a)


def svd(a: Any, /, full_matrices: bool = True) -> SVDResult:
    """Singular value decomposition ``a = U @ diag(S) @ Vh``, as ``numpy.linalg.svd``.

    ``a`` is (..., m, n) real or complex floating point; leading dimensions are batch dimensions.
    Returns ``SVDResult(U, S, Vh)`` with S real and descending; U is (..., m, m) and Vh
    (..., n, n) when ``full_matrices`` (the default), else (..., m, k) and (..., k, n), k = min(m, n).

    Derivative conventions (the singular vectors are defined only up to a gauge):

    * each pair (u_i, v_i) may turn by a common sign (real) or phase (complex), fixed by the
      backend's kernel (on NumPy from min(m, n) = 128 on, gesdd on the transposed buffer, and for real
      square matrices up to 16 x 16 with Numba installed a compiled Golub-Kahan solver: signs may
      differ from numpy.linalg.svd's); the tangent is the one with ``Im diag(U^H dU) = 0`` (real:
      automatically). ``U^H dU`` and ``V^H dV`` are
      skew-Hermitian.
    * ``full_matrices`` with m != n: the completion U2 = U[..., k:] (or V2) follows the minimal
      rotation, ``U2^H dU2 = 0``: dU2 = -U1 S^-1 V^H dA^H U2 (mirror for m < n, dV2).
    * repeated and zero singular values: clusters are sorted runs with |s_i - s_j| <= tol between
      neighbours, tol = max(32, sqrt(max(m, n))) eps s_max (what the SVD resolves); a cluster
      holding a value <= tol is the zero block. There ``jvp``
      returns the one-sided directional derivative (the limit of (f(A + h dA) - f(A)) / h,
      h -> 0+; not linear in dA). dS of a positive cluster = the eigenvalues of the Hermitian
      part of U_k^H dA V_k, descending; dS of the zero block = the singular values of
      U_0^H dA V_0, where U_0, V_0 span the full null spaces of A^H and A (for rectangular input
      including the extra columns of the full U or V), never negative. The singular vectors
      returned as the primal *by jvp* are rotated within each block to the limit basis of
      A + h dA (U_k, V_k by the same unitary; for the zero block on the long side, the new
      vectors may come from the complement, and the full factor's completion is rebuilt by QR),
      and ``U' S V'^H`` still equals ``a``. Vector tangents: the ordinary off-block terms plus,
      inside a positive cluster, the first-order skew term and the second-order mixing of
      degenerate perturbation theory (0 where the cluster's dS coincide within their rounding,
      eps (max|P| s_max / gap + the block eigensolver's scale), gap = the distance to the
      nearest value outside the cluster: there, e.g. for multiplets protected by a symmetry,
      the rotation is undetermined and cancels in every output invariant under rotations within
      a multiplet, U_k S_k V_k^H at a gap and the projectors U_k U_k^H, V_k V_k^H, which are
      exact; near-degenerate values outside a cluster get the ordinary formula, whose 1 / gap
      terms cancel in those outputs to about eps s_max / gap); inside the zero block
      the same second-order mixing through the nonzero singular values (via the Hermitian
      dilation, see the module docstring) plus, on the long side, the part along the complement,
      so these vector tangents are the one-sided derivative of the limit basis too (entries are 0
      where the block's dS coincide, or are 0, which leaves the basis undetermined). Regular
      (distinct, nonzero) columns get the ordinary formula bit for bit; tangents are finite
      everywhere. Host backends run the extra work only when a block exists (the zero block's only
      when there is one); CuPy runs it always (never synchronises).
    * nested jvp at a positive cluster: as :func:`cupy_ad.linalg.eigh` (``_nested_guard``): exact for
      the singular values and rotation-invariant outputs (U_k S_k V_k^H cut at a gap, projectors) along
      a straight line with distinct first-order splittings and along curves that keep the multiplets
      whole; the individual singular vectors of a split cluster (u_i u_i^H, u_i v_i^H, a phase-fixed
      u_i) too, along the line and curves whose second and third derivatives do not couple split
      members (see :func:`cupy_ad.linalg.eigh`); NaN (and a ``DegenerateNestedWarning``) where no rule
      can be exact, naming ``svd_split``.
      At zero singular values (rank-deficient or rectangular input with a null block) the zero block's
      limit basis is a constant of the inner level, so the second derivatives of its dS, dU and dV
      columns are not exact: their outer tangents are NaN, on every backend (so also sum(s), or s^2
      terms through 0 * NaN); outputs not reading them (U_r S_r V_r^H cut at the gap above the zero
      block) stay exact. Floors of the second order for any output built from U and V: a small singular
      value s, clustered or not, ~eps s_max / s (u and v turn oppositely at rate Skew(P) / 2s; svd_split
      avoids it); near-degenerate values straddling a truncation make the truncated program itself
      ill-conditioned, ~eps s_max^2 / gap^2, for every method.
    """
    a = _validate("svd", a)
    if not isinstance(full_matrices, bool):
        raise TypeError(f"full_matrices must be a bool, got {type(full_matrices).__name__}")
    return SVDResult(*svd_p(a, full_matrices=full_matrices))


def svdvals(a: Any, /) -> Any:
    """Singular values of ``a`` (..., m, n), descending, as ``numpy.linalg.svd(a, compute_uv=False)``.

    The tangent is dS = Re diag(U^H dA V) with U, V from the thin SVD (Townsend 2016). At
    repeated or zero singular values it is the one-sided directional derivative described in
    :func:`svd` (eigenvalues of the Hermitian part of each repeated block, singular values of
    the null-space block for zeros, so never negative there), which pairs with the sorted S.
    Nested jvp there: as :func:`cupy_ad.linalg.eigvalsh` (exact along one direction where the
    first-order splittings differ; NaN for another outer direction); NaN second derivatives
    for the zero singular values (see :func:`svd`).
    """
    a = _validate("svdvals", a)
    return svdvals_p(a)


__all__ = ["svd", "svdvals"]
