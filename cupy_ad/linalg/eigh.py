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
diagonal: dA_s = (T + T^H) o (1 - I/2) with T = tril(dA).

Coinciding eigenvalues: F_ij is set to 0 where |w_i - w_j| <= max(n, 16) * eps * max|w|
(rounding makes an exactly repeated eigenvalue come out split by a few eps * ||A||_2), so
tangents stay finite. Within such a cluster the eigenvectors are not unique and dw = diag(P)
is taken in the basis the kernel returned: the cluster's projector and the sum of its
eigenvalues have exact derivatives, individual eigenvalues and vectors inside it do not.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind, strip
from ..namespace import (add, conj, diagonal, divide, expand_dims, matmul, multiply, real, subtract, sum,
                         tril, triu, where)
from ..namespace._rules import is_complex_dtype, is_inexact_dtype, xp_of
from ._matrix import backend_of_matrix, mH, require_square
from ._results import EighResult


def _eigh_impl(a: Any, *, lower: bool) -> tuple[Any, Any]:
    w, v = backend_of_matrix(a).eigh(a, lower)
    return w, v


def _eigvalsh_impl(a: Any, *, lower: bool) -> Any:
    return backend_of_matrix(a).eigvalsh(a, lower)


eigh_p = Primitive("eigh", _eigh_impl, multiple_results=True)
eigvalsh_p = Primitive("eigvalsh", _eigvalsh_impl)


def _hermitian_tangent(da: Any, lower: bool) -> Any:
    """The tangent the primal sees: the read triangle mirrored, its diagonal made real."""
    n = da.shape[-1]
    xp = xp_of(da)
    t = tril(da) if lower else triu(da)
    weights = xp.asarray(1.0, dtype=da.dtype) - xp.asarray(0.5, dtype=da.dtype) * xp.eye(n, dtype=da.dtype)
    return multiply(add(t, mH(t)), weights)


def _gap_inverse(w: Any) -> Any:
    """F_ij = 1 / (w_j - w_i), 0 on the diagonal and wherever the two eigenvalues coincide."""
    n = w.shape[-1]
    xp = xp_of(w)
    diff = subtract(expand_dims(w, axis=-2), expand_dims(w, axis=-1))  # diff[..., i, j] = w_j - w_i
    raw = strip(diff)
    scale = xp.expand_dims(xp.max(xp.abs(strip(w)), axis=-1, keepdims=True), axis=-1)
    tol = max(n, 16) * float(xp.finfo(w.dtype).eps) * scale
    distinct = xp.abs(raw) > tol  # a constant mask: no tangent flows through it
    safe = where(distinct, diff, xp.asarray(1.0, dtype=w.dtype))
    return where(distinct, divide(xp.asarray(1.0, dtype=w.dtype), safe), xp.asarray(0.0, dtype=w.dtype))


@eigh_p.def_jvp
def _eigh_jvp(primals: list, tangents: list, *, lower: bool):
    (a,), (da,) = primals, tangents
    w, v = bind(eigh_p, a, lower=lower)
    if a.shape[-1] == 0:
        return (w, v), (multiply(w, 0.0), multiply(v, 0.0))
    p = matmul(mH(v), matmul(_hermitian_tangent(da, lower), v))
    p = multiply(add(p, mH(p)), 0.5)  # Hermitian in exact arithmetic: make it so, then F o P is skew
    dp = diagonal(p)
    dw = real(dp) if is_complex_dtype(p) else dp
    dv = matmul(v, multiply(_gap_inverse(w), p))
    return (w, v), (dw, dv)


@eigvalsh_p.def_jvp
def _eigvalsh_jvp(primals: list, tangents: list, *, lower: bool):
    (a,), (da,) = primals, tangents
    w = bind(eigvalsh_p, a, lower=lower)
    if a.shape[-1] == 0:
        return w, multiply(w, 0.0)
    _, v = bind(eigh_p, a, lower=lower)  # the eigenvectors are needed for the tangent
    # dw_i = (V^H dA_s V)_ii = sum_k conj(V_ki) (dA_s V)_ki: one matrix product, not two.
    x = matmul(_hermitian_tangent(da, lower), v)
    if is_complex_dtype(v):
        return w, real(sum(multiply(conj(v), x), axis=-2))
    return w, sum(multiply(v, x), axis=-2)


def _check(name: str, a: Any, UPLO: str) -> bool:
    require_square(name, a)
    if not is_inexact_dtype(a):
        raise TypeError(f"{name} needs a real or complex floating-point matrix, got dtype {a.dtype}")
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
    backend's kernel; the tangent of the eigenvectors satisfies Im diag(V^H dV) = 0 (and
    diag(V^T dV) = 0 for real input, which normalisation forces), i.e. V^H dV has a zero diagonal.
    Repeated eigenvalues (closer than max(n, 16) * eps * max|w|): tangents stay finite, with no
    mixing between the coinciding eigenvectors; there only gauge-invariant quantities (the
    eigenspace's projector, the sum of its eigenvalues) have meaningful derivatives.
    """
    lower = _check("eigh", a, UPLO)
    return EighResult(*eigh_p(a, lower=lower))


def eigvalsh(a: Any, UPLO: str = "L") -> Any:
    """Eigenvalues of Hermitian (real symmetric) matrices, ascending, as ``numpy.linalg.eigvalsh``.

    Conventions as :func:`eigh` (only the ``UPLO`` triangle is read, leading batch dimensions).
    The tangent is dw = Re diag(V^H dA_s V), which needs the eigenvectors: the JVP computes a full
    ``eigh`` besides the primal eigenvalues. At a repeated eigenvalue the eigenvalues are not
    differentiable; the tangent is finite, and the sum over the repeated eigenvalues is exact.
    """
    lower = _check("eigvalsh", a, UPLO)
    return eigvalsh_p(a, lower=lower)


__all__ = ["eigh", "eigvalsh"]
