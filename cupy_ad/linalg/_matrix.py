"""Small matrix helpers for the rules, written with the dual namespace so they nest."""
from __future__ import annotations

from typing import Any, Callable

from ..backends import backend_of
from ..values import Zero, strip
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


def linear_in_last_operand(prim: Any, composition: Callable) -> Callable:
    """The JVP rule of a tangent map ``prim`` (lu_tangent, cholesky_tangent, eigvalsh_tangent, qr_tangent):
    linear in its last operand, so with the others fixed its tangent is ``prim`` of the last operand's
    tangent (a tuple of them for a ``prim`` with multiple results); where the others vary too (second
    derivatives), the JVP of ``composition``, the same map written with differentiable primitives."""
    def rule(primals: list, tangents: list, **params: Any) -> tuple[Any, Any]:
        if all(type(t) is Zero for t in tangents[:-1]):
            out = prim(*primals, **params)
            if type(tangents[-1]) is not Zero:
                return out, prim(*primals[:-1], tangents[-1], **params)
            return out, (tuple(map(Zero.like, out)) if prim.multiple_results else Zero.like(out))
        from ..transforms.jvp import jvp  # (transforms sit above the rules)

        varying = [i for i, t in enumerate(tangents) if type(t) is not Zero]  # (integer operands stay put)

        def at(*values: Any) -> Any:
            operands = list(primals)
            for i, value in zip(varying, values):
                operands[i] = value
            return composition(*operands, **params)
        return jvp(at, tuple(primals[i] for i in varying), tuple(tangents[i] for i in varying))
    return rule
