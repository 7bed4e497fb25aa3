"""Small matrix helpers for the rules, written with the dual namespace so they nest."""
from __future__ import annotations

from typing import Any

from ..backends import backend_of
from ..values import strip
from ..namespace import astype, conj, expand_dims, matrix_transpose, multiply, tril, triu
from ..namespace._rules import is_complex_dtype, is_inexact_dtype, xp_of


def mH(x: Any) -> Any:
    """Conjugate transpose of the last two axes."""
    return conj(matrix_transpose(x)) if is_complex_dtype(x) else matrix_transpose(x)


def diag_embed(v: Any) -> Any:
    """A (..., n) vector as a (..., n, n) diagonal matrix."""
    n = v.shape[-1]
    return multiply(expand_dims(v, axis=-1), xp_of(v).eye(n, dtype=v.dtype))


def triangle(x: Any, lower: bool, k: int = 0) -> Any:
    """tril(x, k) or triu(x, -k): the triangle a routine reads, strictly inside it for k = -1."""
    return tril(x, k=k) if lower else triu(x, k=-k)


def backend_of_matrix(a: Any) -> Any:
    return backend_of(strip(a))


def route_rules_through_backend(*prims: Any) -> None:
    """Send each primitive's JVP rule (one matrix argument) through its backend's ``matrix_rule``, which
    runs it as it is, or (Dask) per block of a batch on the workers."""
    for prim in prims:
        def routed(primals: list, tangents: list, name: str = prim.name, rule: Any = prim.jvp, **params: Any) -> tuple:
            return backend_of(strip(primals[0])).matrix_rule(name, rule, primals, tangents, params)

        prim.jvp = routed


def as_inexact(a: Any) -> Any:
    """``a`` itself when floating point, else promoted to float64 (as NumPy's linalg does)."""
    return a if is_inexact_dtype(a) else astype(a, xp_of(a).float64)


def require_square(name: str, a: Any) -> None:
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name} needs square matrices (..., n, n), got shape {tuple(a.shape)}")


def require_matrix(name: str, a: Any) -> None:
    if a.ndim < 2:
        raise ValueError(f"{name} needs matrices (..., m, n), got shape {tuple(a.shape)}")
