"""Products: matmul, tensordot, vecdot and the linalg helpers that are linear (diagonal, trace).

Bilinear maps B(x, y) have d B = B(dx, y) + B(x, dy).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from ..core import Primitive, bind, bind_below, stack_level, stacked
from ..values import Batched, Zero, levelled
from ._rules import backend_function, linear
from .elementwise import add_tangents, multiply
from .manipulation import (aligned, batch_first_copy, batch_size, expand_dims, matrix_transpose, moveaxis,
                           pad_raw_rank, permute_dims, rank, raw_reshape, reshape, squeeze, to_front)


def _bilinear(name: str, impl: Any = None, *, batch: Any = None, cls: type = Primitive) -> Primitive:
    prim = cls(name, impl or backend_function(name))
    prim.batch = batch

    @prim.def_jvp
    def rule(primals: list, tangents: list, **params: Any):
        (x, y), (dx, dy) = primals, tangents
        ans = bind(prim, x, y, **params)
        out: Any = Zero.like(ans)
        if type(dx) is not Zero:
            out = prim(dx, y, **params)
        if type(dy) is not Zero:
            out = add_tangents(out, prim(x, dy, **params))
        return ans, out

    return prim


def along_axis(prim: Primitive) -> Callable:
    """The batching rule of a broadcasting primitive that works along ``axis`` (vecdot, cross): the axis
    counted from the end of the broadcast example."""
    def rule(values: list, axes: list, *, axis: int = -1) -> tuple[Any, int]:
        widest = max(rank(v, a) for v, a in zip(values, axes))
        return bind(prim, *aligned(values, axes), axis=axis - widest if axis >= 0 else axis), 0
    return rule


_FOLD_MIN = 1024  # matrices from about 32 x 32 on are multiplied as one folded GEMM under vmap
_TINY, _MANY = 16, 128  # and from 128 examples on, a stack by a shared matrix of at most 16 entries


def _matmul_batch(values: list, axes: list):
    """Vectors become matrices (x: a row, y: a column, squeezed out after), batch ranks are aligned.
    A matrix shared by every example multiplies the whole stack at once: its examples are folded
    into one large product (rows of x, or columns of y)."""
    (x, y), (x_axis, y_axis) = values, axes
    x_rank, y_rank = rank(x, x_axis), rank(y, y_axis)
    x, y = to_front(x, x_axis), to_front(y, y_axis)
    if x_rank == y_rank == 1 and (x_axis is None) != (y_axis is None):  # dot products with one vector
        return (matmul(x, y) if y_axis is None else matmul(y, x)), 0
    if max(math.prod(x.shape[-2:]), math.prod(y.shape[-2:])) < _FOLD_MIN:  # small: plain broadcasting
        if y_axis is None and (x_rank >= max(y_rank, 2) or x_rank == 1 and y_rank == 2):
            return matmul(x, y), 0  # (B, ..., m, k) @ (..., k, n) or (k,); a stack of rows (B, k) @ (k, n)
        if x_axis is None and y_rank >= max(x_rank, 2):
            return matmul(x, y), 0
        if x_axis is None and y_rank == 1 and x_rank == 2:  # A y_i for a stack of vectors: the rows y_i A^T
            return matmul(y, matrix_transpose(x)), 0
    x_vector, y_vector = x_rank == 1, y_rank == 1
    if x_vector:
        x = expand_dims(x, axis=-2)
    if y_vector:
        y = expand_dims(y, axis=-1)
    large = x.shape[-1] * max(x.shape[-2], y.shape[-1]) >= _FOLD_MIN  # (small ones: the broadcast is cheaper)
    if large and y_axis is None and y.ndim == 2:  # (B, ..., m, k) @ (k, n): one GEMM
        out = reshape(matmul(reshape(x, (-1, x.shape[-1])), y), (*x.shape[:-1], y.shape[-1]))
    elif large and x_axis is None and x.ndim == 2 and y.ndim == 3:  # (m, k) @ (B, k, n): one GEMM
        b, k, n = y.shape
        y = reshape(moveaxis(y, 0, -2), (k, b * n))
        out = batch_first_copy(moveaxis(reshape(matmul(x, y), (x.shape[0], b, n)), 1, 0))
    else:
        out = matmul(*aligned([x, y], [None if x_axis is None else 0, None if y_axis is None else 0], (2, 2)))
    if y_vector:
        out = squeeze(out, axis=-1)
    if x_vector:
        out = squeeze(out, axis=-2 if not y_vector else -1)
    return out, 0


def _contraction(x: Any, y: Any, x_axes: tuple, y_axes: tuple) -> Any:
    """Batch-first x and y contracted over x_axes with y_axes, example by example (a batched matmul)."""
    size = x.shape[0]
    x_free = [a for a in range(1, x.ndim) if a not in x_axes]
    y_free = [a for a in range(1, y.ndim) if a not in y_axes]
    k = 1
    for a in x_axes:
        k *= x.shape[a]
    xm = reshape(permute_dims(x, (0, *x_free, *x_axes)), (size, -1, k))
    ym = reshape(permute_dims(y, (0, *y_axes, *y_free)), (size, k, -1))
    return reshape(matmul(xm, ym), (size, *(x.shape[a] for a in x_free), *(y.shape[a] for a in y_free)))


def _tensordot_rule(values: list, dims: list, **params: Any):  # (tensordot has a parameter called axes)
    (x, y), (x_axis, y_axis) = values, dims
    contracted = params.get("axes", 2)
    x_rank, y_rank = rank(x, x_axis), rank(y, y_axis)
    if isinstance(contracted, int):
        x_axes, y_axes = tuple(range(x_rank - contracted, x_rank)), tuple(range(contracted))
    else:
        x_axes, y_axes = (tuple(a % x_rank for a in contracted[0]), tuple(a % y_rank for a in contracted[1]))
    if y_axis is None:  # the batch stays with x's free axes, in front
        return tensordot(to_front(x, x_axis), y, axes=(tuple(a + 1 for a in x_axes), y_axes)), 0
    if x_axis is None:  # the batch comes after x's free axes
        out = tensordot(x, to_front(y, y_axis), axes=(x_axes, tuple(a + 1 for a in y_axes)))
        return out, x_rank - len(x_axes)
    return _contraction(to_front(x, x_axis), to_front(y, y_axis), tuple(a + 1 for a in x_axes),
                        tuple(a + 1 for a in y_axes)), 0


def _outer_batch(values: list, axes: list):
    (x, y), (x_axis, y_axis) = values, axes
    if not (levelled(x) or levelled(y)) and x_axis in (0, None) and y_axis in (0, None):
        # raw stacks (the common case): x's entries down a new last axis times y's along it, as views
        x = bind_below(expand_dims, [x], {"axis": -1})
        return bind_below(multiply, [x, y if y_axis is None else pad_raw_rank(y, 1)], {}), 0
    size = batch_size(values, axes)
    x = expand_dims(x, axis=-1) if x_axis is None else reshape(to_front(x, x_axis), (size, -1, 1))
    y = expand_dims(y, axis=-2) if y_axis is None else reshape(to_front(y, y_axis), (size, 1, -1))
    return multiply(x, y), 0


def _matrix_batch(prim: Primitive):
    """diagonal and trace read the last two axes: the batch goes in front."""
    def rule(values: list, axes: list, **params: Any):
        return bind(prim, to_front(values[0], axes[0]), **params), 0
    return rule


def _matmul_stacks(args: tuple, params: dict) -> Any:
    """matmul of small matrices on stacks (``stack_level``) where NumPy's broadcasting of the stack is
    the product example by example: a stack of matrices (rank >= 2) against a shared operand of no
    higher rank, stacked vectors against a shared vector or matrix, or two stacks of matrices of one
    rank. None otherwise (the batching rule runs)."""
    x, y = args
    level = stack_level(x, y)
    if not level:
        return None
    x_mapped, y_mapped = type(x) is Batched, type(y) is Batched
    x, y = x.value if x_mapped else x, y.value if y_mapped else y
    x_rank, y_rank = x.ndim - x_mapped, y.ndim - y_mapped
    if x_rank == y_rank == 1 and x_mapped != y_mapped:  # dot products with one vector (matmul does not conjugate)
        return stacked(matmul, level, [x, y] if x_mapped else [y, x], params)
    if y_mapped and not x_mapped and x_rank == 2 and y_rank == 1 and hasattr(x, "mT"):  # A y_i: rows y_i A^T
        return stacked(matmul, level, [y, x.mT], params)
    if (x_mapped and x.shape[0] >= _MANY and not y_mapped and x_rank >= 2 and y_rank == 2
            and 0 < math.prod(y.shape) <= _TINY and x.shape[-1] == y.shape[0]):  # (else matmul's own error)
        # many examples times one tiny matrix: the stack's rows as ONE product (NumPy's broadcasting calls
        # BLAS once per matrix, several times the cost of these products; the BLAS kernel may differ, so
        # the results may differ from a loop's in the last bits, as JAX's vmap does)
        product = stacked(matmul, level, [raw_reshape(x, (-1, y.shape[0])), y], params).value
        return Batched(level, raw_reshape(product, (*x.shape[:-1], y.shape[1])), 0)
    if x_mapped and y_mapped:
        fits = x_rank == y_rank >= 2
    elif x_mapped:
        fits = y_rank <= x_rank and x_rank >= 2 or x_rank == 1 and y_rank <= 2
    else:
        fits = x_rank <= y_rank and y_rank >= 2
    if not fits or max(math.prod(x.shape[-2:]), math.prod(y.shape[-2:])) >= _FOLD_MIN:
        return None
    return stacked(matmul, level, [x, y], params)


class _Matmul(Primitive):
    """matmul: stacks of small matrices under vmap go straight to the backend (``_matmul_stacks``)."""

    __slots__ = ()

    def __call__(self, *args: Any, **params: Any) -> Any:
        if len(args) == 2 and (type(args[0]) is Batched or type(args[1]) is Batched):
            out = _matmul_stacks(args, params)
            if out is not None:
                return out
        return bind(self, *args, **params)


matmul = _bilinear("matmul", lambda x, y: x @ y, batch=_matmul_batch, cls=_Matmul)
tensordot = _bilinear("tensordot", batch=_tensordot_rule)
vecdot = _bilinear("vecdot")
vecdot.batch = along_axis(vecdot)
outer = _bilinear("outer", backend_function("outer", "linalg"), batch=_outer_batch)
diagonal = linear("diagonal", module="linalg", batch=_matrix_batch)
trace = linear("trace", module="linalg", batch=_matrix_batch)

__all__ = ["diagonal", "matmul", "outer", "tensordot", "trace", "vecdot"]
