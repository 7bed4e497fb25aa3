"""eigvalsh_tangent: the eigenvalue tangents dw = Re diag(V^H dA_s V) of a Hermitian matrix, as one
primitive.

Derivation (see eigh.py; Magnus 1985): dw_k = v_k^H dA_s v_k, with dA_s the Hermitian matrix the
primal reads (one triangle of dA mirrored, the diagonal's real part). Written with the read
triangle T of dA (diagonal halved), dA_s = T + T^H and dw = 2 Re diag(V^H T V): one triangular
product T V (n^3 flops; for small real matrices the GEMM of T = (dA masked to the read triangle)
o W, W the constant weights of the read triangle) and a column sum of conj(V) o (T V). Term by term, with (i, j) the
off-diagonal entries read (i > j for the lower triangle),

    dw_k = sum_i Re(dA_ii) |V_ik|^2 + sum_(i,j) 2 Re(dA_ij conj(V_ik) V_jk),

linear in the n (n - 1) / 2 entries read: for K directions sharing V (a Jacobian) that is one GEMM
(K x n(n-1)/2) @ (n(n-1)/2 x n) of the packed entries with W_(i,j),k = conj(V_ik) V_jk (n^3 / 2
entries, built once per point), K n^3 flops in all where K triangular products take K n^3 in K
calls, and a product with the masked triangles 2 K n^3. Complex: Re(P W) = Re P Re W - Im P Im W.

Why a primitive: its batching rule sees every direction at once (``jacfwd`` of a function of one
Hermitian matrix) and takes the packed GEMM from (n - 1) / 4 directions on (W is built block by
block, its n^3 / 2 products then cost little next to the GEMM's K n^3 flops); elsewhere, and on one
direction, the triangular product.
"""
from __future__ import annotations

from typing import Any

from ..core import Primitive
from ..namespace import (add, conj, diagonal, expand_dims, imag, matmul, multiply, real, reshape, subtract, sum,
                         take, where)
from ..namespace._batching import leading
from ..namespace.manipulation import to_front
from ..namespace._rules import is_complex_dtype, xp_of
from ._matrix import linear_in_last_operand
from .triangular_product import triangular_product


def _half_triangle(da: Any) -> Any:
    """H = dA with its diagonal replaced by Re(dA_ii) / 2: the read triangle T of H gives
    dA_s = T + T^H exactly (an imaginary diagonal moves nothing)."""
    xp = xp_of(da)
    d = diagonal(da)
    half = multiply(real(d) if is_complex_dtype(da) else d, 0.5)
    return where(xp.eye(da.shape[-1], dtype=xp.bool), expand_dims(half, axis=-1), da)


#: Real matrices up to this side: T V as one GEMM of (dA masked to the read triangle) o W (W = 1 strictly
#: inside the read triangle, 1/2 on the diagonal: two elementwise passes, where the masked triangle and
#: its halved diagonal take two and the triangular product a third); above it, the triangular product
#: (trmm: half the flops of the GEMM).
WEIGHTED_GEMM_MAX = 32


def _weighted_triangle(da: Any, lower: bool) -> Any:
    """T = where(read, dA, 0) o W, W (n, n) real: 1 strictly inside the read triangle, 1/2 on the diagonal
    (constants). The mask comes first: dA o W alone would turn an inf or NaN of the unread triangle,
    which the primal never reads, into NaN (inf x 0)."""
    xp = xp_of(da)
    index = xp.arange(da.shape[-1])
    rows, columns = xp.expand_dims(index, axis=-1), xp.expand_dims(index, axis=0)
    inside, on_diagonal = (rows > columns if lower else rows < columns), rows == columns
    weights = xp.astype(inside, da.dtype) + xp.astype(on_diagonal, da.dtype) * 0.5
    return multiply(where(inside | on_diagonal, da, xp.asarray(0.0, dtype=da.dtype)), weights)


def triangle_times(da: Any, v: Any, lower: bool) -> Any:
    """T V, T the read triangle of dA with its diagonal halved: (dA_s V) = T V + T^H V."""
    if da.shape[-1] <= WEIGHTED_GEMM_MAX and not is_complex_dtype(da):
        return matmul(_weighted_triangle(da, lower), v)
    return triangular_product(_half_triangle(da), v, left=True, lower=lower)


def from_triangle_times(v: Any, x: Any) -> Any:
    """dw = 2 Re sum_i conj(V_ik) X_ik from X = T V (``triangle_times``)."""
    if is_complex_dtype(v):
        return multiply(real(sum(multiply(conj(v), x), axis=-2)), 2.0)
    return multiply(sum(multiply(v, x), axis=-2), 2.0)


def _composition(v: Any, da: Any, lower: bool) -> Any:
    return from_triangle_times(v, triangle_times(da, v, lower))


def _packed(v: Any, da: Any, lower: bool) -> Any:
    """dw for a stack of directions ``da`` (K, n, n) sharing one ``v`` (n, n): the GEMM of the
    derivation, in blocks of about ``_BLOCK`` entries of W (a few hundred kB, reused block after block,
    where a whole W, n^3 / 2 entries, would be as large as the stack) with the matching K-row block of
    the stack's packed entries."""
    xp = xp_of(v)
    n = v.shape[-1]
    flat = xp.arange(n * n)
    row, column = flat // n, flat % n
    read = flat[row > column] if lower else flat[row < column]  # dA_ij, i > j (i < j), row by row
    entries = reshape(da, (da.shape[0], n * n))
    step = max(1, _BLOCK // n)
    off = None
    total = read.shape[0]
    for start in range(0, total, step):
        part = read[start:min(start + step, total)]
        rows = take(v, part // n, axis=0)
        pairs = multiply(conj(rows) if is_complex_dtype(v) else rows, take(v, part % n, axis=0))  # W's block
        block = take(entries, part, axis=1)  # P's block: (K, pairs)
        if is_complex_dtype(pairs):
            term = subtract(matmul(real(block), real(pairs)), matmul(imag(block), imag(pairs)))
        else:
            term = matmul(block, pairs)
        off = term if off is None else add(off, term)
    diagonal_part = matmul(real(diagonal(da)), real(multiply(conj(v), v)) if is_complex_dtype(v) else multiply(v, v))
    return diagonal_part if off is None else add(multiply(off, 2.0), diagonal_part)


_BLOCK = 1 << 16  # entries of W per block (512 kB in float64)


def _impl(v: Any, da: Any, *, lower: bool) -> Any:
    return _composition(v, da, lower)


eigvalsh_tangent_p = Primitive("eigvalsh_tangent", _impl)
_leading = leading(eigvalsh_tangent_p, (2, 2))


@eigvalsh_tangent_p.def_batch
def _batch(values: list, axes: list, *, lower: bool) -> tuple[Any, int]:
    (v, da), (v_axis, da_axis) = values, axes
    if (v_axis is None and v.ndim == 2 and da_axis is not None and da.ndim == 3
            and 4 * da.shape[da_axis] >= v.shape[-1] - 1):  # enough directions to pay for W
        return _packed(v, to_front(da, da_axis), lower), 0
    return _leading(values, axes, lower=lower)


eigvalsh_tangent_p.def_jvp(linear_in_last_operand(eigvalsh_tangent_p, _composition))


def eigvalsh_tangent(v: Any, da: Any, lower: bool) -> Any:
    """Re diag(V^H dA_s V) for the eigenvectors ``v`` of a Hermitian matrix whose ``lower`` (else upper)
    triangle is read, and the tangent ``da`` of that matrix."""
    return eigvalsh_tangent_p(v, da, lower=lower)


__all__: list[str] = []
