"""eigh / eigvalsh: eigen-decomposition of a Hermitian (real symmetric) matrix, with exact JVPs.

Derivation (Magnus 1985, "On differentiating eigenvalues and eigenvectors", Econometric Theory 1;
Giles 2008, "An extended collection of matrix derivative results", section 3.1). With
A V = V diag(w), V^H V = I, differentiate: dA V + A dV = dV diag(w) + V diag(dw). Write dV = V C
and multiply by V^H on the left: P + diag(w) C = C diag(w) + diag(dw), with P = V^H dA V
(Hermitian). The diagonal gives dw = diag(P) (real); off the diagonal,
C_ij (w_j - w_i) = P_ij, so C = F o P with F_ij = 1 / (w_j - w_i) for i != j. Differentiating
V^H V = I says C is skew-Hermitian, which fixes Re C_ii = 0; Im C_ii (the phase of each column) is
a free gauge, which we set to 0 ("C_ii = 0", i.e. F_ii = 0). P is Hermitian-ised after the
products so that V^H dV = F o P is skew-Hermitian to rounding even where F is large.

The primal reads only one triangle of ``a`` (LAPACK's syevd/heevd; the diagonal's imaginary part
is ignored for complex input), so the tangent that moves the decomposition is that triangle
mirrored into a Hermitian matrix, dA_s = tril(dA) + tril(dA, -1)^H (triu for "U") with a real
diagonal: dA_s = T + T^H with T = tril(dA) o (1 - I/2), so P = V^H dA_s V = Y + Y^H, Y = V^H (T V).

Repeated eigenvalues (issue 7; degenerate perturbation theory, Kato 1995 II.2, Sakurai 5.2).
Eigenvalues form clusters (sorted runs with neighbouring gaps <= tol = max(32, sqrt(n)) eps max|w|,
what syevd resolves: an exactly repeated eigenvalue comes out split by a few eps ||A||_2).
For A + h dA, h -> 0+, the eigenvalues of cluster k (value lambda, basis V_k) are
lambda + h mu + O(h^2) with mu the ascending eigenvalues of P_kk = V_k^H dA V_k, and the
eigenvectors tend to V_k Q_k, P_kk = Q_k diag(mu) Q_k^H. We return that rotated V' = V R,
R = blockdiag(Q_k), as the primal, and with P' = R^H P R: dw = diag(P') (= mu in clusters),
dV' = V' C with C_ij = P'_ij / (w_j - w_i) across clusters and, inside a cluster (second order
in h: (A - lambda) v'' = mu v' + nu v - dA v' projected on v_i),
    C_ij = sum_{l outside} P'_il P'_lj / ((lambda - w_l)(mu_j - mu_i)) = (P' (F o P'))_ij / (mu_j - mu_i),
0 on the diagonal and where mu_i, mu_j coincide within their resolution (``splitting_resolution``:
eps (max|P| max|w| / gap + the block eigensolver's scale), gap = distance to the nearest eigenvalue
outside the cluster, which bounds the rounding of the cluster's basis and so of mu). There the
rotation is fixed only at a higher order, or never (a symmetry-protected multiplet keeps
mu_i = mu_j exactly): any rotation inside the mu-degenerate sub-block is as good, and as it moves
the eigenvectors of one eigenvalue among themselves, it cancels in every output invariant under
rotations within a multiplet (spectral projectors, V f(w) V^H), which are exact whatever the mu.
Dividing by mu_j - mu_i there instead would scale rounding by 1/eps (the issue-13 blow-up).
Size-1 clusters keep the ordinary formulas bit for bit (selected with ``where``).
Nested jvp through a cluster: exact along a straight line with distinct mu and along curves that
keep multiplets whole; ``_nested_guard`` checks the outer tangent of P' and gives NaN in the other cases
(derivation and proof that no outer rule can do better there in that module). Individual vectors of a
split cluster need the outer derivative of the mixing to third order, which the chain of outer rules
misses: the guard adds it from (U, W) = (Y^H P' Y, Y^H Y), Y = F o P' across clusters (``_outside_terms``).
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..values import strip
from ..namespace._batching import leading
from ..namespace import add, diagonal, divide, expand_dims, matmul, multiply, real, subtract, where
from ..namespace._rules import is_complex_dtype, xp_of
from ._clusters import (block_rotation, find_clusters, infinite_diagonal, joined_neighbours, resolution,
                        run_degenerate_path, splitting_resolution, take_degenerate_path)
from ._nested_guard import cluster_members, guard_curve, guard_nested
from ._matrix import as_inexact, backend_of_matrix, mH, require_square
from ._results import EighResult
from .eigvalsh_tangent import eigvalsh_tangent, from_triangle_times, triangle_times


def _eigh_impl(a: Any, *, lower: bool) -> tuple[Any, Any]:
    w, v = backend_of_matrix(a).eigh(a, lower)
    return w, v


def _eigvalsh_impl(a: Any, *, lower: bool) -> Any:
    return backend_of_matrix(a).eigvalsh(a, lower)


eigh_p = Primitive("eigh", _eigh_impl, multiple_results=True)
eigvalsh_p = Primitive("eigvalsh", _eigvalsh_impl)
eigh_p.def_batch(leading(eigh_p))
eigvalsh_p.def_batch(leading(eigvalsh_p))


def _tolerance(w: Any) -> Any:
    """resolution(n) max|w|, shape (..., 1): eigenvalues closer than this coincide."""
    raw = strip(w)
    xp = xp_of(raw)
    return resolution(raw.shape[-1], float(xp.finfo(raw.dtype).eps)) * xp.max(xp.abs(raw), axis=-1, keepdims=True)


def _over_gaps(x: Any, w: Any) -> Any:
    """F o x with F_ij = 1 / (w_j - w_i): x_ij / (w_j - w_i), and 0 on the diagonal and wherever the two
    eigenvalues coincide (a division, not a product with F: one k x k array fewer at the peak)."""
    xp = xp_of(w)
    gaps = subtract(expand_dims(w, axis=-2), expand_dims(w, axis=-1))  # [i, j] = w_j - w_i
    distinct = xp.abs(strip(gaps)) > xp.expand_dims(_tolerance(w), axis=-1)  # constant: no tangent
    safe = where(distinct, gaps, xp.asarray(1.0, dtype=w.dtype))
    del gaps
    return where(distinct, divide(x, safe), xp.asarray(0.0, dtype=x.dtype))


def _over_distinct_gaps(x: Any, w: Any) -> Any:
    """``_over_gaps`` where no two eigenvalues coincide (every gap off the diagonal above the tolerance):
    x_ij / (w_j - w_i) with the diagonal divided by +inf (0 for finite x): three passes over the
    n x n stack instead of six, the same values (the off-diagonal quotients bit for bit)."""
    gaps = subtract(expand_dims(w, axis=-2), expand_dims(w, axis=-1))  # [i, j] = w_j - w_i
    return divide(x, add(gaps, infinite_diagonal(w)))


def _degenerate(w: Any, v: Any, p: Any, dw: Any, dv: Any | None, joined: Any) -> tuple[Any, Any, Any] | None:
    """(V', dw', dV') at clustered eigenvalues, or None when nothing is clustered (host check).

    ``p`` = V^H dA_s V (Hermitian), ``dw``/``dv`` the ordinary tangents, kept for size-1 clusters;
    ``joined`` = ``joined_neighbours(w, _tolerance(w))``. With ``dv`` None only the eigenvalue tangents
    are computed (eigvalsh). Host batches run the path on the matrices with clusters only.
    """
    def path(pick: Any) -> tuple:
        return _degenerate_path(pick(w), pick(v), pick(p), pick(dw), None if dv is None else pick(dv))

    return run_degenerate_path(w, joined, path, (v, dw, dv))


def _degenerate_path(w: Any, v: Any, p: Any, dw: Any, dv: Any | None) -> tuple[Any, Any, Any]:
    """The degenerate path of :func:`_degenerate` on every matrix given."""
    cl = find_clusters(w, _tolerance(w))
    xp = xp_of(w)
    n = w.shape[-1]
    name = "eigvalsh" if dv is None else "eigh"
    single_col = xp.expand_dims(cl.single, axis=-2)
    rot, scale = block_rotation(p, cl, ~cl.single, name)
    p2 = matmul(mH(rot), matmul(p, rot))
    p2 = multiply(add(p2, mH(p2)), 0.5)
    mu = real(diagonal(p2)) if is_complex_dtype(p2) else diagonal(p2)
    mu_raw = strip(mu)
    tol_mu = splitting_resolution(w, cl, p2, scale, n, name)
    mixing = cl.same & (xp.abs(xp.expand_dims(mu_raw, -2) - xp.expand_dims(mu_raw, -1)) > tol_mu)
    pairs = cl.same & ~xp.eye(n, dtype=xp.bool)
    if dv is None:  # eigvalsh: where mu repeat, the second-order block must be diagonal (p2 stands in for c)
        mu, _ = guard_nested(mu, p2, p2, None, pairs & ~mixing, mixing, name,
                             t_from=lambda block: _second_order(block, strip(w), cl.same))
        return None, where(cl.single, dw, mu), None
    v2 = where(single_col, v, matmul(v, rot))
    c_off = where(cl.same, 0.0, _over_gaps(p2, w))  # F o P' across clusters
    x = _second_order(p2, w, cl.same, c_off)
    mu_gap = subtract(expand_dims(mu, axis=-2), expand_dims(mu, axis=-1))  # [i, j] = mu_j - mu_i
    g = where(mixing, divide(1.0, where(mixing, mu_gap, 1.0)), 0.0)
    mu, c = guard_nested(mu, multiply(g, x), p2, x, pairs, mixing, name, outside=(c_off,),
                         third_order=_outside_terms)
    dv2 = matmul(v2, add(c_off, c))
    return v2, where(cl.single, dw, mu), where(single_col, dv, dv2)


def _outside_terms(p: Any, c_off: Any) -> tuple[Any, Any]:
    """(U, W) of ``_nested_guard``: U = Y^H P Y, W = Y^H Y with Y = ``c_off``, Y_lj = P_lj / (w_j - w_l)
    over l outside j's cluster (third-order perturbation theory; only under a nested jvp)."""
    y_h = mH(c_off)
    return matmul(y_h, matmul(p, c_off)), matmul(y_h, c_off)


def _second_order(p: Any, w: Any, same: Any, c_off: Any = None) -> Any:
    """T = Herm(P (F o P)), T_ij = sum_l P_il P_lj / (w_j - w_l) over l outside j's cluster (``c_off``
    = F o P across clusters, computed here if not given)."""
    if c_off is None:
        c_off = where(same, 0.0, _over_gaps(p, w))
    x = matmul(p, c_off)
    return multiply(add(x, mH(x)), 0.5)


@eigh_p.def_jvp
def _eigh_jvp(primals: list, tangents: list, *, lower: bool):
    (a,), (da,) = primals, tangents
    w, v = bind(eigh_p, a, lower=lower)
    if a.shape[-1] == 0:
        return (w, v), (multiply(w, 0.0), multiply(v, 0.0))
    y = matmul(mH(v), triangle_times(da, v, lower))
    p = add(y, mH(y))  # P = V^H dA_s V, Hermitian by construction, so F o P is skew-Hermitian
    del y
    dp = diagonal(p)
    dw = real(dp) if is_complex_dtype(p) else dp
    joined = joined_neighbours(w, _tolerance(w))
    if not take_degenerate_path(w, joined):  # (host) no cluster: every gap off the diagonal exceeds the tolerance
        return (w, v), (dw, matmul(v, _over_distinct_gaps(p, w)))
    dv = matmul(v, _over_gaps(p, w))
    degenerate = _degenerate(w, v, p, dw, dv, joined)
    if degenerate is not None:
        v, dw, dv = degenerate
    return (w, v), (dw, dv)


@eigvalsh_p.def_jvp
def _eigvalsh_jvp(primals: list, tangents: list, *, lower: bool):
    (a,), (da,) = primals, tangents
    # one eigh kernel call: the tangent needs the eigenvectors, and their eigenvalues serve as the
    # primal (they differ from the eigvalsh kernel's by rounding only: LAPACK's syevd/heevd take
    # another path without vectors)
    w, v = bind(eigh_p, a, lower=lower)
    if a.shape[-1] == 0:
        return w, multiply(w, 0.0)
    joined = joined_neighbours(w, _tolerance(w))
    if not take_degenerate_path(w, joined):
        # dw_i = (V^H dA_s V)_ii: a primitive, whose batching rule takes all directions of a Jacobian at once
        return w, eigvalsh_tangent(v, da, lower)
    x = triangle_times(da, v, lower)  # the degenerate path needs all of P = V^H dA_s V = Y + Y^H, Y = V^H x
    y = matmul(mH(v), x)
    _, dw, _ = _degenerate(w, v, add(y, mH(y)), from_triangle_times(v, x), None, joined)
    return w, guard_curve(dw, a, da, cluster_members(joined), "eigvalsh")


def _check(name: str, a: Any, UPLO: str) -> bool:
    require_square(name, a)
    if UPLO not in ("L", "U"):
        raise ValueError(f"{name}: UPLO must be 'L' or 'U', got {UPLO!r}")
    return UPLO == "L"


def eigh(a: Any, UPLO: str = "L") -> EighResult:
    """Eigenvalues and eigenvectors of Hermitian (real symmetric) matrices, as ``numpy.linalg.eigh``.

    ``a`` is (..., n, n), real or complex floating point; leading dimensions are batch dimensions.
    Only the ``UPLO`` triangle ("L" lower, "U" upper) is read, and for complex input the imaginary
    part of the diagonal is ignored; the tangent is read the same way, so the derivative is that of
    the function the primal computes, even for a non-Hermitian ``a``. Returns
    ``EighResult(eigenvalues, eigenvectors)``: eigenvalues (..., n) ascending and real,
    eigenvectors (..., n, n) as columns, orthonormal.

    Gauge: each eigenvector is defined up to a sign (real) or a phase (complex), fixed by the
    backend's kernel (on NumPy from n = 128 on, syevd/heevd called on the transposed buffer, and for
    real matrices up to 16 x 16 with Numba installed a compiled QL solver: the signs may differ from
    numpy.linalg.eigh's, the same for a matrix alone or in a batch); the
    tangent of the eigenvectors satisfies Im diag(V^H dV) = 0 (and diag(V^T dV) = 0 for real input,
    which normalisation forces), i.e. V^H dV has a zero diagonal.
    Repeated eigenvalues (clusters: sorted runs with neighbouring gaps <= max(32, sqrt(n)) eps max|w|):
    ``jvp`` returns the one-sided directional derivative, the limit of (f(A + h dA) - f(A)) / h as
    h -> 0+, which is not linear in dA there. The eigenvalue tangents of a cluster are the
    ascending eigenvalues mu of V_k^H dA_s V_k; the eigenvectors returned as the primal *by jvp*
    are rotated within each cluster to the basis diagonalising V_k^H dA_s V_k (the limit of the
    eigenvectors of A + h dA; still an eigendecomposition of A, but not the plain call's V), and
    their tangents add the in-cluster mixing of second-order perturbation theory. Where mu itself
    repeats (within its rounding, which grows as eps max|w| / the gap to the other clusters; e.g.
    multiplets protected by a symmetry), the rotation inside that sub-block is not fixed at first
    order: its basis is arbitrary and its mixing is 0. Exact in every case: eigenvalue tangents and
    every output invariant under rotations within a multiplet (spectral projectors, V f(w) V^H).
    Near-degenerate eigenvalues outside a cluster (gap above the tolerance) get the ordinary formula,
    whose 1 / gap terms cancel in those outputs only to about eps max|w| / gap. Size-1 clusters get
    the ordinary formula bit for bit.
    Tangents are finite everywhere (multiples of the identity, the zero matrix).
    Cost: NumPy/array_api_strict detect clusters on the host and run the extra work (a batched
    eigh of the block-diagonal n x n matrix) only when some exist; CuPy never synchronises and
    always runs it.
    Nested jvp at a clustered point (see ``_nested_guard``): exact for the eigenvalues and every
    output invariant under rotations within a multiplet along a straight line A + t dA whose
    first-order splittings mu are distinct, and along any curve through multiplets it keeps whole
    (mu and the second-order terms repeating, as a symmetry makes them). NaN second-order tangents,
    with a ``DegenerateNestedWarning`` naming the fix (svd_split, or a straight line), where no rule
    can be exact: an outer direction that
    splits a cluster other than the inner one, a curve whose second derivative couples split
    members (the inner tangent, a function of A and dA, cannot hold that term), or mu repeating
    without such a symmetry; CuPy and Dask return NaN tangents there instead (no synchronisation).
    Individual eigenvectors of a split cluster (v_i v_i^H, v_i with a fixed phase): exact too, along the
    line and along curves whose second and third derivatives do not couple split members (a
    reparametrised line, a quadratic curve passing the check); their second derivative depends on the
    curve's third derivative there, which a nested jvp does not see (third-order perturbation terms,
    derived in ``_nested_guard``). ``eigvalsh``: see there.
    """
    lower = _check("eigh", a, UPLO)
    a = as_inexact(a)  # integer input promoted to float64, as NumPy does
    return EighResult(*eigh_p(a, lower=lower))


def eigvalsh(a: Any, UPLO: str = "L") -> Any:
    """Eigenvalues of Hermitian (real symmetric) matrices, ascending, as ``numpy.linalg.eigvalsh``.

    Conventions as :func:`eigh` (only the ``UPLO`` triangle is read, leading batch dimensions). The
    tangent is dw = Re diag(V^H dA_s V), which needs the eigenvectors: under ``jvp`` the eigenvalues
    come from one ``eigh`` kernel call (values and vectors), not from the eigvalsh kernel, so they may
    differ from a plain call's in the last bits (LAPACK's syevd/heevd computes eigenvalues alone by
    another algorithm); one kernel call instead of two. At repeated eigenvalues the tangent is the
    one-sided directional derivative (not linear in dA): the ascending eigenvalues of V_k^H dA_s V_k for
    each cluster (see :func:`eigh`), which pair with the sorted eigenvalues of A + h dA, h -> 0+. Nested
    jvp there: exact along any curve (one direction at both levels) where mu are distinct or repeat with
    a diagonal second-order block (a symmetry); NaN (and a ``DegenerateNestedWarning``) otherwise, and
    for an outer direction other than the inner one at a positive speed (the sorted eigenvalues have no
    mixed second derivative there).
    """
    lower = _check("eigvalsh", a, UPLO)
    a = as_inexact(a)
    return eigvalsh_p(a, lower=lower)


__all__ = ["eigh", "eigvalsh"]
