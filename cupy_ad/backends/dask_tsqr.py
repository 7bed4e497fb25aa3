"""Tall-skinny QR of a Dask array and its JVP, streamed: two passes over the row blocks, between
them only n x n pieces.

A (m x n, m >= n) in row blocks A_1 .. A_k, and its tangent dA in the same blocks.

Pass 1, per block (reads A_b and dA_b once): the local Householder QR A_b = Q1_b R1_b, and for the
JVP P_b = Q1_b^H dA_b (n x n). Q1_b is dropped at once (but for its rows among A's first n: see Signs).

Reduction (one task on n x n pieces): [R1_1; ...; R1_k] = Q2 R, so A = Q R with Q_b = Q1_b Q2_b
(TSQR: Demmel, Grigori, Hoemmen and Langou 2012, one level of the tree, as ``dask.array.linalg.qr``).
For the tangent, qr.py's derivation (Walter & Lehmann 2018) needs Q and dA only through
    Q^H dA = sum_b Q2_b^H Q1_b^H dA_b = sum_b Q2_b^H P_b,
    C = (Q^H dA) R^-1,   U = triu(C + C^H, 1) + Re diag(C),   dR = U R
(qr.py's ``projected_tangents``, run here on the chunk type's arrays: the rule is written once).

Pass 2, per block, after the reduction: Q_b = Q1_b Q2_b and dQ_b = dA_b R^-1 - Q_b U. Q1_b is
recomputed from A_b, and A_b, dA_b from their own graphs (cloned with
``dask.graph_manipulation.bind``, so that the scheduler does not keep pass 1's blocks alive until
the reduction is done): every block of Q and dQ is made from one block of the inputs and the small
pieces, and no worker ever holds the matrix. The price is reading (or generating) the inputs twice
and two local QRs per block; inputs that are expensive to compute can be persisted by the caller.

Everything per block runs on the chunk's own backend and namespace (NumPy, or CuPy on a GPU
worker), so no array of another type is mixed in. R's exactly zero diagonal entries (A rank
deficient) are made NaN before the solves, as qr.py does: NaN tangents, no error.

Signs. A QR with R's diagonal real is unique up to the signs of R's rows (Q's columns), and TSQR's
R would have those of the reduction's QR of the stacked R1_b, which depend on the chunking (they
differed from ``numpy.linalg.qr``'s in most chunkings tried). The reduction makes them LAPACK's
(geqrf's, those of the NumPy backend and of one un-chunked matrix) from Q's first n rows, n x n:
:func:`_lapack_signs`. So Q, R and their tangents are NumPy's whatever the chunks (the flip is
locally constant, so the rule is unchanged). The thin SVD's U and V^H keep their own signs (those
of the SVD of R, which NumPy's SVD of A need not share), as an SVD's vectors may.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import dask
import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array
from dask.graph_manipulation import bind
from dask.highlevelgraph import HighLevelGraph

from ..linalg.qr import projected_tangents, q_tangent


def _backend(block: Any) -> Any:
    from . import backend_of

    return backend_of(block)


def _mh(x: Any, xp: Any) -> Any:
    """The conjugate transpose of a matrix (a view for real dtypes)."""
    xt = xp.matrix_transpose(x)
    return xp.conj(xt) if xp.isdtype(x.dtype, "complex floating") else xt


def _first_pass(block: Any, tangent: Any, top: int) -> tuple[Any, Any, Any]:
    """Pass 1: (R1_b, Q1_b^H dA_b or None without a tangent, the first ``top`` rows of Q1_b or None when
    ``top`` is 0: the rows of the block among A's first n, for :func:`_lapack_signs`)."""
    backend = _backend(block)
    if tangent is None and not top:
        return backend.qr(block, "r"), None, None
    q1, r1 = backend.qr(block, "reduced")
    projection = None if tangent is None else backend.xp.matmul(_mh(q1, backend.xp), tangent)
    return r1, projection, (q1[:top, :] if top else None)


def _lapack_signs(q_top: Any, rows: int, xp: Any) -> Any:
    """The signs s (+-1 per column) for which Q diag(s) is the Q of LAPACK's Householder QR of A (geqrf,
    the NumPy backend's), from any Q of A = Q R with R's diagonal real, by its first n rows Q11.

    LAPACK's Q = I - V T V^H (V unit lower trapezoidal, T upper with diagonal tau) gives
    I - Q11 = V1 (T V1^H): an LU factorisation whose pivots are the reflectors' tau_i = 1 - alpha_i /
    beta_i with beta_i = -sign(Re alpha_i) ||x_i||, so Re tau_i >= 1; except tau = 0 for a real square
    matrix's last column (nothing below the diagonal: no reflector). In the LU of I - Q diag(s), column
    by column, the pivot is 1 - s_i w_i with w_i fixed by the earlier columns: s_i = -sign(Re w_i) (the
    sign choice of Ballard et al. 2014, "Reconstructing Householder vectors from TSQR"). Where Re w_i
    is about 0, LAPACK's own choice is one of rounding (the primal is discontinuous there)."""
    n = q_top.shape[1]
    real = xp.isdtype(q_top.dtype, "real floating")
    identity = xp.eye(n, dtype=q_top.dtype)  # I - Q diag(s) = identity - p diag(s), row operations on both
    p = xp.asarray(q_top, copy=True)
    signs = []
    for i in range(n):
        positive = xp.real(p[i, i]) >= 0
        if real and i == rows - 1:
            positive = xp.logical_not(positive)  # the pivot is 0 (tau = 0)
        sign = xp.where(positive, xp.asarray(-1.0, dtype=p.dtype), xp.asarray(1.0, dtype=p.dtype))
        column = identity[:, i] - sign * p[:, i]
        multipliers = xp.expand_dims(column[i + 1:] / column[i], axis=1)
        identity[i + 1:, :] -= multipliers * identity[i, :]
        p[i + 1:, :] -= multipliers * p[i, :]
        signs.append(sign)
    return xp.stack(signs)


def _reduce(parts: list, small: Callable | None, rows: int) -> dict:
    """The n x n pieces from pass 1's blocks: Q2's blocks and the outputs (R, or ``small``'s on R); with
    tangents, also R with NaN for zero diagonal entries, the source S of U (its upper triangle) and
    the tangents (dR, or ``small``'s on (R, dR); see :func:`tsqr_jvp`). With Q's first rows from pass 1
    (QR, not SVD), Q2 and R take LAPACK's signs (:func:`_lapack_signs`; ``rows``: A's m)."""
    with_tangent = parts[0][1] is not None
    r1s = [part[0] for part in parts]
    backend = _backend(r1s[0])
    xp = backend.xp
    q2, r = backend.qr(xp.concat(r1s, axis=0), "reduced")
    bounds = [0]
    for r1 in r1s:
        bounds.append(bounds[-1] + r1.shape[0])
    q2s = [q2[start:stop, :] for start, stop in zip(bounds, bounds[1:])]
    tops = [xp.matmul(part[2], q2_b) for part, q2_b in zip(parts, q2s) if part[2] is not None]
    if tops:
        signs = _lapack_signs(xp.concat(tops, axis=0), rows, xp)
        q2s, r = [q2_b * signs for q2_b in q2s], xp.expand_dims(signs, axis=1) * r
    pieces = {"q2": q2s, "outs": small(r) if small is not None and not with_tangent else (r,)}
    if with_tangent:
        qh_da = sum(xp.matmul(_mh(q2_b, xp), part[1]) for q2_b, part in zip(q2s, parts))
        guarded, source, dr = projected_tangents(qh_da, r)
        pieces.update(guarded=guarded, source=source, douts=(dr,))
        if small is not None:
            outs, douts = small([r], [dr])
            pieces.update(outs=outs, douts=tuple(t if hasattr(t, "__array_namespace__") else
                                                 xp.zeros(t.shape, dtype=t.dtype) for t in douts))
    return pieces


def _local_q(block: Any, pieces: dict, b: int, factor: bool = False) -> Any:
    """Pass 2 of the primal: Q_b = Q1_b Q2_b, or with ``factor`` Q_b F = Q1_b (Q2_b F) for F the first
    small output."""
    backend = _backend(block)
    matmul = backend.xp.matmul
    right = matmul(pieces["q2"][b], pieces["outs"][0]) if factor else pieces["q2"][b]
    return matmul(backend.qr(block, "reduced")[0], right)


def _local_q_and_tangent(block: Any, tangent: Any, pieces: dict, b: int, factor: bool) -> tuple[Any, Any]:
    """Pass 2 of the JVP: (Q_b, dQ_b = dA_b R^-1 - Q_b U), or with ``factor`` (Q_b F, dQ_b F + Q_b dF) for
    F the first small output."""
    q = _local_q(block, pieces, b)
    dq = q_tangent(tangent, q, pieces["guarded"], pieces["source"])
    if not factor:
        return q, dq
    matmul = _backend(block).xp.matmul
    f, df = pieces["outs"][0], pieces["douts"][0]
    return matmul(q, f), matmul(dq, f) + matmul(q, df)


def _reduction_output(pieces: dict, key: str, i: int) -> Any:
    return pieces[key][i]


def typed_meta(like: Any, ndim: int, dtype: Any) -> Any:
    """An empty array of the chunk type of the meta ``like`` with ``ndim`` axes and ``dtype`` (Dask's
    meta_from_array, given the real part of a complex ``like``: casting it to a real or integer dtype
    would raise NumPy's ComplexWarning for every real output of complex input)."""
    return meta_from_array(like.real if like.dtype.kind == "c" else like, ndim, dtype=dtype)


def _blocks(x: da.Array) -> list:
    return list(x.to_delayed().ravel())


def _small(pieces: Any, key: str, i: int, like: da.Array, example: Any) -> da.Array:
    """Output ``i`` of the reduction's ``key`` ("outs", "douts") as a Dask array (one chunk) of ``like``'s
    chunk type; ``example``, the output for an empty batch (a leading 0 axis), gives its shape and dtype."""
    value = dask.delayed(_reduction_output, pure=True)(pieces, key, i)
    shape = example.shape[1:]
    return da.from_delayed(value, shape, dtype=example.dtype,
                           meta=typed_meta(like._meta, len(shape), dtype=example.dtype))


def _stack(blocks: list, like: da.Array, n: int, dtype: Any) -> da.Array:
    """Row blocks (Delayed, ``like``'s row chunks, n columns) as one Dask array."""
    meta = typed_meta(like._meta, 2, dtype=dtype)
    return da.concatenate([da.from_delayed(block, (rows, n), dtype=dtype, meta=meta)
                           for block, rows in zip(blocks, like.chunks[0])])


def _tops(a: da.Array, signs: bool) -> list[int]:
    """Per row block of ``a``, how many of its rows are among the first n (those pass 1 returns of Q1_b
    for :func:`_lapack_signs`), or all 0 without ``signs``."""
    n, start, tops = a.shape[1], 0, []
    for rows in a.chunks[0]:
        tops.append(max(0, min(rows, n - start)) if signs else 0)
        start += rows
    return tops


def _second_pass(arrays: tuple, after: Any) -> tuple:
    """``arrays`` recomputed from their graphs once ``after`` is computed (new keys, seeded by the
    inputs so that the same call makes the same graph). Dask's clone leaves a slice's task (getitem)
    reading its source's original keys, so the original graphs are merged in: such sources are then
    computed once and held between the passes instead of missing."""
    bound = bind(arrays, after, seed=dask.base.tokenize(*arrays, after))
    return tuple(da.Array(HighLevelGraph.merge(again.dask, array.dask), again.name, again.chunks, meta=again._meta)
                 for array, again in zip(arrays, bound))


def _kernel_on_r(kernel: str, params: dict, r: Any) -> tuple:
    out = getattr(_backend(r), kernel)(r, **params)
    return out if isinstance(out, tuple) else (out,)


def tsqr(a: da.Array, *, need_q: bool, kernel: str | None = None, **params: Any) -> tuple:
    """The QR of the tall-skinny ``a`` (rows chunked, columns in one chunk): (Q, R), or (R,) without
    ``need_q``. With a chunk backend's ``kernel`` ("svd", "svdvals") run on R in the reduction, its
    outputs replace R, and with ``need_q`` its first output F multiplies Q (the thin SVD: U = Q U_R)."""
    n = a.shape[1]
    small = functools.partial(_kernel_on_r, kernel, params) if kernel else None
    parts = [dask.delayed(_first_pass, pure=True)(block, None, top)
             for block, top in zip(_blocks(a), _tops(a, kernel is None))]
    pieces = dask.delayed(_reduce, pure=True)(parts, small, a.shape[0])
    example = np.empty((0, n, n), a.dtype)  # (an empty batch: the shapes and dtypes of the outputs)
    outs = (example,) if kernel is None else _kernel_on_r(kernel, params, example)  # (on NumPy's backend)
    outs = [_small(pieces, "outs", i, a, o) for i, o in enumerate(outs)]
    if not need_q:
        return tuple(outs)
    (again,) = _second_pass((a,), pieces)
    q = [dask.delayed(_local_q, pure=True)(block, pieces, b, kernel is not None)
         for b, block in enumerate(_blocks(again))]
    return (_stack(q, a, n, outs[0].dtype), *(outs[1:] if kernel else outs))


def tsqr_jvp(a: da.Array, da_: da.Array, *, need_q: bool, small: Callable | None = None) -> tuple:
    """The JVP of the tall-skinny QR of ``a`` along ``da_`` (chunked as ``a``): ((Q, R), (dQ, dR)), or
    with ``need_q`` False ((R,), (dR,)).

    ``small``, a JVP rule (``small([R], [dR]) -> (outputs, tangents)``, svd's or svdvals'), runs on
    R in the reduction and its outputs replace R; with ``need_q`` its first output F multiplies Q in
    pass 2: (Q F, *outputs[1:]), (dQ F + Q dF, *tangents[1:]) (the thin SVD: U = Q U_R)."""
    n = a.shape[1]
    parts = [dask.delayed(_first_pass, pure=True)(x, t, top)
             for x, t, top in zip(_blocks(a), _blocks(da_), _tops(a, small is None))]
    pieces = dask.delayed(_reduce, pure=True)(parts, small, a.shape[0])
    example = np.empty((0, n, n), a.dtype)  # (an empty batch: the shapes and dtypes of small's outputs)
    outs, douts = ((example,), (example,)) if small is None else small([example], [example])
    outs = [_small(pieces, "outs", i, a, o) for i, o in enumerate(outs)]
    douts = [_small(pieces, "douts", i, a, t) for i, t in enumerate(douts)]
    if not need_q:
        return tuple(outs), tuple(douts)
    again, tangent_again = _second_pass((a, da_), pieces)
    both = [dask.delayed(_local_q_and_tangent, pure=True, nout=2)(x, t, pieces, b, small is not None)
            for b, (x, t) in enumerate(zip(_blocks(again), _blocks(tangent_again)))]
    tall = [_stack([q for q, _ in both], a, n, outs[0].dtype), _stack([dq for _, dq in both], a, n, douts[0].dtype)]
    if small is None:
        return (tall[0], *outs), (tall[1], *douts)
    return (tall[0], *outs[1:]), (tall[1], *douts[1:])
