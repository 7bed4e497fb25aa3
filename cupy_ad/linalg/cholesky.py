"""cholesky: A = L L^H (or U^H U with upper=True), read from one triangle (array API / NumPy).

The JVP (Murray, "Differentiation of the Cholesky decomposition", 2016, sec. 3) is one primitive,
derived in cholesky_tangent.py: dL = L Phi(L^-1 dA L^-H) for the Hermitian matrix dA the routine
reads (one triangle mirrored, the real part of the diagonal).
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive, bind
from ..namespace._batching import leading
from ..namespace import astype
from ..namespace._rules import is_inexact_dtype, xp_of
from ._matrix import backend_of_matrix, require_square
from .cholesky_tangent import cholesky_tangent


def _impl(a: Any, *, upper: bool) -> Any:
    return backend_of_matrix(a).cholesky(a, upper=upper)


cholesky_p = Primitive("cholesky", _impl)
cholesky_p.def_batch(leading(cholesky_p))


@cholesky_p.def_jvp
def _jvp(primals: list, tangents: list, *, upper: bool):
    (a,), (da,) = primals, tangents
    factor = bind(cholesky_p, a, upper=upper)
    return factor, cholesky_tangent(factor, da, upper)


def cholesky(x: Any, /, *, upper: bool = False) -> Any:
    """The Cholesky factor of Hermitian positive-definite matrices (..., n, n), as the array API.

    Returns L (lower, x = L L^H) or, with ``upper=True``, U (x = U^H U). Only the lower triangle
    (upper for ``upper=True``) of ``x`` is read, as NumPy does, and the imaginary part of the
    diagonal is ignored; the tangent is the derivative along the Hermitian matrix actually read
    (that triangle of dA, mirrored). Integer input is promoted to float64. A matrix that is not
    positive definite raises the backend's error (NumPy: LinAlgError); NaN input gives NaN output.
    The diagonal of the factor is real and positive; its tangent is real.
    """
    require_square("cholesky", x)
    if not is_inexact_dtype(x):
        x = astype(x, xp_of(x).float64)
    return cholesky_p(x, upper=bool(upper))


__all__ = ["cholesky"]
