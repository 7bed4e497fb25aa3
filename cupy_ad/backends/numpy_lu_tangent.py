"""The tangent of a square packed LU factor on NumPy, in one buffer of the output's size.

With P A = L U (packed in ``f``; zero pivots already replaced by 1 where the caller wants the
solvable U'), W = L^-1 P dA and X = W U^-1, the tangent is (see ``cupy_ad/linalg/lu_tangent.py``)

    dlu = L tril(X, -1) + triu(W - tril(X, -1) U).

Row i of X's strict lower part needs only W's row i and the leading i x i block of U (the right
solve runs forward over the columns), and W - tril(X, -1) U in row i's upper part needs only
tril(X, -1)'s row i; column j of L tril(X, -1) needs only that column below the diagonal. So one
buffer holds W, then tril(X, -1) in the strict lower part and dU in the upper part (the packed
layout of the factor itself), then dL in place of tril(X, -1): 2 n^3 flops per direction (one n^3
solve for W, three n^3 / 3 steps) where the composition of whole-matrix solves and products takes
4 n^3, and no temporaries beyond a block.

Many directions sharing one factor (a Jacobian) are laid out with the directions last,
(n, n, K): the left operations (L^-1, L) act on all K n columns of the (n, n K) block at once
(one trsm for W), the right ones on each row's (n, K) block. One direction is blocked by rows and
columns instead (blocks of ``BLOCK``): a right solve per row block with the leading block of U.
The caller owns nothing here: the first step (the row permutation) makes the buffer.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from . import numpy_kernels

BLOCK = 64


def lu_tangent(f: Any, perm: Any, da: Any, axis: int | None = None) -> Any:
    """dlu of the square packed factor ``f`` (n, n) with row permutation ``perm`` for the tangent
    ``da`` (n, n), or for a stack of them with the directions along ``axis`` of ``da``: then the
    result is (n, n, K), the directions last."""
    dtype = np.result_type(f.dtype, da.dtype, np.float32)
    f = f.astype(dtype, copy=False)
    n = f.shape[-1]
    if axis is None:
        out = np.take(da, perm, axis=0).astype(dtype, copy=False)
        _one_direction(f, out)
        return out
    stack = np.moveaxis(da, axis, -1)
    directions = stack.shape[-1]
    if 4 * directions >= n:
        out = np.empty((n, n, directions), dtype)
        for i, row in enumerate(perm.tolist()):  # (np.take would copy the strided stack first)
            out[i] = stack[row]
        _directions_last(f, out)
        return out
    out = np.empty((n, n, directions), dtype)  # few directions of a large matrix: blocked, one at a time
    for d in range(directions):
        one = np.take(stack[..., d], perm, axis=0).astype(dtype, copy=False)
        _one_direction(f, one)
        out[..., d] = one
    return out


def _directions_last(f: Any, a: Any) -> None:
    """The tangent in place of a[i, j, d] = (P dA_d)[i, j]."""
    n, _, k = a.shape
    _in_place("trsm", f, a.reshape(n, n * k), left=True, lower=True, trans=0, unit_diagonal=True)  # W
    for i in range(1, n):
        row = a[i]  # (n, K): row i of every direction, transposed
        # tril(X, -1) row i: x U1 = w on the leading i columns, i.e. U1^T x^T = w^T
        _in_place("trsm", f[:i, :i], row[:i], left=True, lower=False, trans=1, unit_diagonal=False)
        row[i:] -= f[:i, i:].T @ row[:i]  # dU row i = W - tril(X, -1) U (U strictly above the diagonal)
    for j in range(n - 1):  # dL column j = L tril(X, -1) column j, rows below the diagonal
        _in_place("trmm", f[j + 1:, j + 1:], a[j + 1:, j], left=True, lower=True, trans=0, unit_diagonal=True)


def _one_direction(f: Any, a: Any) -> None:
    """The tangent in place of a = P dA (n, n), by blocks: X's strict lower part by column blocks
    (right-looking: a product with the columns already solved, then a solve with U's diagonal
    block), dU by row blocks, dL by column blocks. A diagonal block's other triangle is kept aside
    while a step writes it."""
    n = a.shape[0]
    _in_place("trsm", f, a, left=True, lower=True, trans=0, unit_diagonal=True)  # W
    for c0 in range(0, n, BLOCK):  # tril(X, -1) = tril(W U^-1, -1), rows below c0 of each column block
        c1 = min(c0 + BLOCK, n)
        block = a[c0:c1, c0:c1]
        w_block = block.copy()
        if c0:
            a[c0:, c0:c1] -= a[c0:, :c0] @ f[:c0, c0:c1]
        _in_place("trsm", f[c0:c1, c0:c1], a[c0:, c0:c1], left=False, lower=False, trans=0, unit_diagonal=False)
        np.copyto(block, w_block, where=_upper(c1 - c0))
    for r0 in range(0, n, BLOCK):  # dU = triu(W - tril(X, -1) U), row block by row block
        r1 = min(r0 + BLOCK, n)
        upper = _upper(r1 - r0)
        block = a[r0:r1, r0:r1]
        w_block = block.copy()
        np.copyto(block, 0, where=upper)
        x_lower = a[r0:r1, :r1]
        if r1 < n:
            a[r0:r1, r1:] -= x_lower @ f[:r1, r1:]
        # (the packed factor's L entries below the diagonal meet the zeros of x_lower: no contribution)
        np.copyto(block, w_block - x_lower @ f[:r1, r0:r1], where=upper)
    for c0 in range(0, n - 1, BLOCK):  # dL = L tril(X, -1), column block by column block
        c1 = min(c0 + BLOCK, n)
        upper = _upper(c1 - c0)
        block = a[c0:c1, c0:c1]
        du_block = block.copy()
        np.copyto(block, 0, where=upper)
        _in_place("trmm", f[c0:, c0:], a[c0:, c0:c1], left=True, lower=True, trans=0, unit_diagonal=True)
        np.copyto(block, du_block, where=upper)


def _upper(size: int) -> Any:
    return np.triu(np.ones((size, size), dtype=bool))


def _in_place(op: str, t: Any, b: Any, **params: Any) -> None:
    """op(tri(t)) b or its solve (b op(tri(t)) with left=False), written into ``b``: NumPy's BLAS,
    else SciPy's solve or a masked product."""
    if numpy_kernels.call_in_place(op, t, b, **params):
        return
    if op == "trsm":
        solve = scipy.linalg.solve_triangular
        lower, trans, unit = params["lower"], params["trans"], params["unit_diagonal"]
        if params["left"]:
            b[...] = solve(t, b, lower=lower, trans=trans, unit_diagonal=unit, check_finite=False)
        else:  # x op(T) = b  <=>  op(T)^T x^T = b^T
            b[...] = solve(t, b.T, lower=lower, trans=1 - trans, unit_diagonal=unit, check_finite=False).T
        return
    b[...] = numpy_kernels.masked_triangular_product(np, t, b, **params)
