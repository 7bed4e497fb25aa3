"""The tangent of a square packed LU factor on NumPy, in one buffer of the output's size.

With P A = L U (packed in ``f``; zero pivots already replaced by 1 where the caller wants the
solvable U'), W = L^-1 P dA and X = W U^-1, the tangent is (de Hoog, Anderssen & Lukas, Math.
Comp. 80, 2011; see ``cupy_ad/linalg/lu_tangent.py``)

    dlu = L tril(X, -1) + triu(W - tril(X, -1) U) = L tril(X, -1) + triu(X) U.

One direction of a small factor (n <= 32, Numba installed): the batches' compiled kernel
(``numpy_compiled``: the closed form above, one matrix; n = 16: 8-15 us, where the blocked form's
BLAS calls cost 27-35 us of call overhead). Otherwise the blocked forward-mode LU. Differentiating
B = P A = L U gives dB = dL U + L dU
(dL strictly lower, dU upper: the unique such split, for the factor as given). Split off the first
b rows and columns, B = [[B11, B12], [B21, B22]] = [[L11, 0], [L21, L22]] [[U11, U12], [0, U22]]:

    dB11 = dL11 U11 + L11 dU11              the closed form on the b x b block: X11 = L11^-1 dB11 U11^-1,
                                            M11 = tril(X11, -1) = L11^-1 dL11, N11 = triu(X11) = dU11 U11^-1;
    dB12 = dL11 U12 + L11 dU12              dU12 = L11^-1 (dB12 - dL11 U12) = L11^-1 dB12 - M11 U12;
    dB21 = dL21 U11 + L21 dU11              dL21 = (dB21 - L21 dU11) U11^-1 = dB21 U11^-1 - L21 N11;
    dB22 = dL21 U12 + L21 dU12 + dL22 U22 + L22 dU22,

so dS = dB22 - dL21 U12 - L21 dU12 = dL22 U22 + L22 dU22 is the same problem for the trailing block
(the Schur complement S = B22 - L21 U12 = L22 U22, whose factors are f's trailing block): repeat on
it, block column by block column (right-looking, blocks of ``BLOCK``). A step is one left solve
with L11 on the block row [dB11, dB12], one right solve with U11 on the block column [W11; dB21]
(b^2 (b + q) flops each for q trailing rows; the latter on the column's transposed copy, where
OpenBLAS solves faster), two panel products (gemm, 2 b^2 q each), the trailing
update (two gemms, 4 b q^2) and two b x b trmm: 4 n^3 / 3 flops in all, nearly all in gemms, where
the closed form on the whole matrix takes 2 n^3, half of it in an n x n triangular solve (OpenBLAS
runs trsm at half its gemm speed or less, with a 64 x 64 triangle at a third to a sixth). Only solves, as the
closed form: multiplying by inverses of the diagonal blocks instead (trmm, faster than trsm) lost
most digits on a graded U. The BLAS calls address blocks of the buffers directly
(``numpy_kernels.PointerBlas``), the factor in its own layout (LAPACK's is Fortran-ordered: read
transposed by BLAS, never copied).

Many directions sharing one factor (a Jacobian) are laid out with the directions last,
(n, n, K): the closed form, whose left operations (L^-1, L) act on all K n columns of the (n, n K)
block at once (one trsm for W), the right ones on each row's (n, K) block: row i of X's strict
lower part needs only W's row i and the leading i x i block of U, and W - tril(X, -1) U in row i's
upper part only tril(X, -1)'s row i; column j of L tril(X, -1) needs only that column below the
diagonal. So one buffer holds W, then tril(X, -1) and dU (the packed layout), then dL.
The caller owns nothing here: the first step (the row permutation) makes the buffer.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import scipy.linalg

from . import numpy_compiled, numpy_kernels

BLOCK = 64


def lu_tangent(f: Any, perm: Any, da: Any, axis: int | None = None) -> Any:
    """dlu of the square packed factor ``f`` (n, n) with row permutation ``perm`` for the tangent
    ``da`` (n, n), or for a stack of them with the directions along ``axis`` of ``da``: then the
    result is (n, n, K), the directions last."""
    dtype = np.result_type(f.dtype, da.dtype, np.float32)
    f = f.astype(dtype, copy=False)
    n = f.shape[-1]
    if axis is None:
        if 0 < n <= numpy_kernels.SUBSTITUTION_MAX:  # one small factor: the batches' compiled kernel (Numba)
            compiled = numpy_compiled.lu_tangent_batched(f[None], perm[None], da[None])
            if compiled is not None:
                return compiled[0]
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
    """The tangent in place of a = P dA (n, n, C-ordered), block column by block column (module docstring)."""
    blas = numpy_kernels.pointer_blas(a.dtype)
    if blas is None:  # (no NumPy BLAS for this build or dtype: the directions-last path, one direction)
        _directions_last(f, a[..., None])
        return
    _Blocked(blas, f, a).tangent()


class _Blocked:
    """The blocked tangent on the buffers ``f`` (the factor, C- or Fortran-ordered) and ``a`` (P dA,
    C-ordered, overwritten), both (n, n): BLAS calls on their blocks by address."""

    def __init__(self, blas: numpy_kernels.PointerBlas, f: Any, a: Any) -> None:
        n = a.shape[0]
        self.f_transposed = f.flags.f_contiguous and not f.flags.c_contiguous  # (LAPACK's factor often is)
        self.stored_f = np.ascontiguousarray(f.T if self.f_transposed else f)  # (no copy for either layout)
        self.blas, self.a, self.n = blas, a, n
        self._f, self._a = numpy_kernels.address(self.stored_f), numpy_kernels.address(a)
        self.block_size = b = min(BLOCK, n)
        # one scratch buffer: a block column, transposed (the panel, see ``step``), then M11 and N11 (b x b)
        self.scratch = np.empty(b * n + 2 * b * b, a.dtype)
        self.panel = self.scratch[:b * n]
        self.m11, self.n11 = self.scratch[b * n:].reshape(2, b, b)
        self._panel = numpy_kernels.address(self.scratch)
        self._m11, self._n11 = self._panel + b * n * blas.itemsize, self._panel + (b * n + b * b) * blas.itemsize
        self.strictly_lower = _strictly_lower(a.dtype)

    def a_at(self, i: int, j: int) -> int:
        return self._a + (i * self.n + j) * self.blas.itemsize

    def f_at(self, i: int, j: int) -> int:
        """The address of the block of F starting at (i, j), as stored (transposed when F is Fortran-ordered)."""
        return self._f + ((j * self.n + i) if self.f_transposed else (i * self.n + j)) * self.blas.itemsize

    def with_f(self, op: str, i: int, *, left: bool, lower: bool, unit_diagonal: bool, m: int, n: int, b: int,
               ldb: int, transposed: bool = False) -> None:
        """op with the lower or upper triangle of F's diagonal block at (i, i), or with its transpose,
        on B (m, n) at ``b``."""
        f_t = self.f_transposed
        self.blas.triangular(op, left=left, lower=lower != f_t, transposed=transposed != f_t,
                             unit_diagonal=unit_diagonal, m=m, n=n, t=self.f_at(i, i), ldt=self.n, b=b, ldb=ldb)

    def tangent(self) -> None:
        """dL + dU in place of ``a``, block column by block column (right-looking)."""
        for i0 in range(0, self.n, BLOCK):
            self.step(i0, min(i0 + BLOCK, self.n))

    def step(self, i0: int, i1: int) -> None:
        """The block column [i0, i1) of ``a`` (the trailing updates of the steps before done): dB11,
        dB12, dB21 become dL11 + dU11, dU12, dL21, and the trailing block dB22 becomes dS. The right
        solve with U11 runs on the block column transposed (U11^T on the left of [W11; dB21]^T, the
        panel): OpenBLAS solves that 1.5x faster than the row-major right solve, more than paying for
        the two transposing copies; the products read the panel through their transpose flags."""
        n, b, blas, f_t = self.n, self.block_size, self.blas, self.f_transposed
        p, q, rows = i1 - i0, n - i1, n - i0
        a11, a12, a21, a22 = (self.a_at(i, j) for i, j in ((i0, i0), (i0, i1), (i1, i0), (i1, i1)))
        u12, l21 = self.f_at(i0, i1), self.f_at(i1, i0)
        panel, panel_21 = self._panel, self._panel + p * blas.itemsize
        m11, n11 = self.m11[:p, :p], self.n11[:p, :p]
        # L11^-1 on the block row (W11 = L11^-1 dB11, L11^-1 dB12), U11^-1 on the block column (X11, dB21 U11^-1)
        self.with_f("trsm", i0, left=True, lower=True, unit_diagonal=True, m=p, n=rows, b=a11, ldb=n)
        blas.transpose_copy(rows, p, a11, n, panel, rows)
        self.with_f("trsm", i0, left=True, lower=False, transposed=True, unit_diagonal=False, m=p, n=rows, b=panel,
                    ldb=rows)
        x11 = self.panel[:p * rows].reshape(p, rows)[:, :p].T
        np.multiply(x11, self.strictly_lower[:p, :p], out=m11)  # L11^-1 dL11
        np.subtract(x11, m11, out=n11)  # dU11 U11^-1
        if q:
            blas.subtract_product(p, q, p, self._m11, b, False, u12, n, f_t, a12, n)  # dU12 -= M11 U12
            blas.subtract_product(p, q, p, self._n11, b, True, l21, n, not f_t, panel_21, rows)  # dL21^T -= N11^T L21^T
            blas.subtract_product(q, q, p, panel_21, rows, True, u12, n, f_t, a22, n)  # dS = dB22 - dL21 U12
            blas.subtract_product(q, q, p, l21, n, f_t, a12, n, False, a22, n)  # - L21 dU12
            blas.transpose_copy(p, q, panel_21, rows, a21, n)  # dL21 into its place
        # dL11 = L11 M11, dU11 = N11 U11
        self.with_f("trmm", i0, left=True, lower=True, unit_diagonal=True, m=p, n=p, b=self._m11, ldb=b)
        self.with_f("trmm", i0, left=False, lower=False, unit_diagonal=False, m=p, n=p, b=self._n11, ldb=b)
        np.add(m11, n11, out=self.a[i0:i1, i0:i1])


@functools.lru_cache(maxsize=None)
def _strictly_lower(dtype: Any) -> Any:
    """The BLOCK x BLOCK mask of the strictly lower triangle in ``dtype`` (read-only, made once)."""
    mask = np.tri(BLOCK, BLOCK, -1, dtype)
    mask.flags.writeable = False
    return mask


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
