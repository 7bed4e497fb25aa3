"""Batching rules (``vmap``) shared by the linear-algebra primitives: leading batch dimensions and
products with a shared operand folded into one large call. (The axis helpers live in
:mod:`.manipulation`; the elementwise, reduction and product rules beside their factories.)
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..core import Primitive, bind
from . import elementwise as _elementwise
from . import manipulation as _manipulation
from . import products as _products
from .manipulation import aligned, rank, to_front


def leading(prim: Primitive, core: Sequence[int] = (2,)) -> Callable:
    """The batching rule of a primitive that takes leading batch dimensions: operand i ends in
    ``core[i]`` dimensions of its own (2: matrices), all others broadcast."""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, Any]:
        out = bind(prim, *aligned(values, axes, core), **params)
        return out, ((0,) * len(out) if prim.multiple_results else 0)
    return rule


def solver(prim: Primitive) -> Callable:
    """The batching rule of op(A) applied to (or solved with) B's columns, for A (..., n, n) and B
    (..., n, k) or a vector (n,) (``left=False``: B op(A), B's rows). With A shared by every example
    the examples of B become columns (rows) of one large right-hand side: one large call in place of
    many small ones. (A solve is never replaced by a product with an explicit inverse: faster for a
    small triangle against many columns, but less accurate when the triangle is ill-conditioned.)"""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, int]:
        (a, b), (a_axis, b_axis) = values, axes
        vector = rank(b, b_axis) == 1
        if b_axis is not None:
            b = to_front(b, b_axis)
            if vector:
                b = _manipulation.expand_dims(b, axis=-1)
        if a_axis is not None and b_axis is None and b.ndim == 2 and "left" in params and b.shape[-1] >= _FOLD_COLUMNS:
            out = _triangles_times_shared(to_front(a, a_axis), b, **params)  # each example's triangle times B
        elif a_axis is None and a.ndim == 2 and b_axis is not None and b.ndim == 3 and not params.get("left", True):
            size, m, n = b.shape  # B op(T): the examples' rows stack
            out = bind(prim, a, _manipulation.reshape(b, (size * m, n)), **params)
            out = _manipulation.reshape(out, (size, m, out.shape[-1]))
        elif a_axis is None and a.ndim == 2 and b_axis is not None and b.ndim == 3:
            size, n, k = b.shape
            columns = _manipulation.reshape(_manipulation.moveaxis(b, 0, -2), (n, size * k))
            out = _manipulation.reshape(bind(prim, a, columns, **params), (n, size, k))
            # The examples stay along axis 1 (no copy): a following product or solve with a shared
            # matrix folds them into columns again as a view.
            return (_manipulation.squeeze(out, axis=-1) if vector else out), 1
        else:
            a = a if a_axis is None else to_front(a, a_axis)
            core = (2, 1 if vector and b_axis is None else 2)
            out = bind(prim, *aligned([a, b], [None if a_axis is None else 0, None if b_axis is None else 0], core),
                       **params)
        return (_manipulation.squeeze(out, axis=-1) if vector and b_axis is not None else out), 0
    return rule


_FOLD_COLUMNS = 32  # from about this many columns on, one GEMM beats a triangular product per example


def _triangles_times_shared(a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(T_i) B (or B op(T_i)) for every example's triangle T_i of ``a`` (batch-first) and one B: the
    masked triangles stacked into one GEMM (2 n^3 flops each where trmm does n^3, but one call)."""
    m = _manipulation
    t = m.tril(a, k=-1 if unit_diagonal else 0) if lower else m.triu(a, k=1 if unit_diagonal else 0)
    if unit_diagonal:
        t = _elementwise.add(t, _creation_eye(a))
    if trans:
        t = m.matrix_transpose(_elementwise.conj(t) if trans == 2 else t)
    if not left:
        return _products.matmul(b, t)
    size, n = t.shape[0], t.shape[-1]
    return m.reshape(_products.matmul(m.reshape(t, (size * n, n)), b), (size, n, b.shape[-1]))


def _creation_eye(a: Any) -> Any:
    from ._rules import xp_of

    return xp_of(a).eye(a.shape[-1], dtype=a.dtype)
