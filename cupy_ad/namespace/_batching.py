"""Batching rules (``vmap``): the generic ones and helpers for each primitive's own.

A rule gets ``values`` and ``axes``: argument i stacks its examples along axis ``axes[i]`` of
``values[i]`` (``None``: one value shared by every example). It returns the outputs with their
batch axes. Most rules move the batch axis to the front; leading dimensions are batch dimensions
throughout the library, so what is left is bookkeeping: negative axis parameters keep their
meaning, non-negative ones move up by one, and operands of smaller rank get singleton axes after
the batch axis so that they broadcast example by example (after JAX's ``batching.py``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..core import Primitive, bind, install_axis_ops


def batch_size(values: Sequence[Any], axes: Sequence[int | None]) -> int:
    for v, axis in zip(values, axes):
        if axis is not None:
            return v.shape[axis]
    raise ValueError("no mapped argument")


def rank(x: Any, axis: int | None) -> int:
    """The number of dimensions of one example (Python scalars and None: 0)."""
    return getattr(x, "ndim", 0) - (axis is not None)


def to_front(x: Any, axis: int | None) -> Any:
    """``x`` with its batch axis first (unmapped values unchanged)."""
    if axis is None or axis == 0:
        return x
    return _manipulation.moveaxis(x, axis, 0)


def broadcast_front(x: Any, size: int) -> Any:
    """A value shared by all examples as ``size`` stacked copies (a broadcast view where possible)."""
    shape = tuple(x.shape)
    return _manipulation.broadcast_to(_manipulation.expand_dims(x, axis=0), (size, *shape))


def all_front(values: Sequence[Any], axes: Sequence[int | None]) -> list[Any]:
    """Every value with its batch axis first, unmapped ones broadcast to the batch."""
    size = batch_size(values, axes)
    return [broadcast_front(v, size) if axis is None else to_front(v, axis) for v, axis in zip(values, axes)]


def pad_rank(x: Any, missing: int) -> Any:
    """A batch-first ``x`` with ``missing`` singleton axes after the batch axis."""
    if missing <= 0:
        return x
    return _manipulation.reshape(x, (x.shape[0], *(1,) * missing, *x.shape[1:]))


def aligned(values: Sequence[Any], axes: Sequence[int | None], core: Sequence[int] | None = None) -> list[Any]:
    """Mapped values batch-first with as many (broadcasting) batch dimensions as the widest operand;
    ``core[i]`` trailing dimensions of operand i are its own (0: elementwise broadcasting)."""
    core = core or (0,) * len(values)
    widest = max(rank(v, axis) - c for v, axis, c in zip(values, axes, core))
    return [v if axis is None else pad_rank(to_front(v, axis), widest - (rank(v, axis) - c))
            for v, axis, c in zip(values, axes, core)]


def batch_first_copy(x: Any) -> Any:
    """A strided batch-first view (the examples of a folded product) copied into batch-first order, so
    that what follows reads memory in order (a flat reshape copies; the second is a view)."""
    return _manipulation.reshape(_manipulation.reshape(x, (-1,)), x.shape)


def shift(axis: Any) -> Any:
    """An axis parameter (int or tuple) of one example, for the batch-first stack."""
    if isinstance(axis, (tuple, list)):
        return tuple(a + 1 if a >= 0 else a for a in axis)
    return axis + 1 if axis >= 0 else axis


def every_axis(x_rank: int) -> tuple[int, ...]:
    """``axis=None`` (all axes of one example) for the batch-first stack."""
    return tuple(range(1, x_rank + 1))


def broadcasting(prim: Primitive) -> Callable:
    """The batching rule of an elementwise primitive (any number of broadcasting operands)."""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, int]:
        if len(values) == 1:  # unary: the batch axis stays where it is
            return bind(prim, *values, **params), axes[0]
        if len(values) == 2:  # binary, batch-first operands that broadcast as they are (the common case)
            (x, y), (x_axis, y_axis) = values, axes
            x_ndim, y_ndim = getattr(x, "ndim", 0), getattr(y, "ndim", 0)
            if (x_axis == 0 and (y_axis is None and y_ndim < x_ndim or y_axis == 0 and y_ndim == x_ndim)
                    or y_axis == 0 and x_axis is None and x_ndim < y_ndim):
                return bind(prim, x, y, **params), 0
        ranks = [getattr(v, "ndim", 0) - (axis is not None) for v, axis in zip(values, axes)]
        widest = max(ranks)
        if all(axis is None or axis == 0 and r == widest for axis, r in zip(axes, ranks)):
            return bind(prim, *values, **params), 0  # batch-first and of full rank: broadcasts as it is
        return bind(prim, *aligned(values, axes), **params), 0
    return rule


def reducing(prim: Primitive) -> Callable:
    """The batching rule of a reduction or scan over ``axis`` (None: every axis of an example)."""
    def rule(values: list, axes: list, *, axis: Any = None, **params: Any) -> tuple[Any, int]:
        (x,), (x_axis,) = values, axes
        x_rank = rank(x, x_axis)
        x = to_front(x, x_axis)
        return bind(prim, x, axis=every_axis(x_rank) if axis is None else shift(axis), **params), 0
    return rule


def leading(prim: Primitive, core: Sequence[int] = (2,)) -> Callable:
    """The batching rule of a primitive that takes leading batch dimensions: operand i ends in
    ``core[i]`` dimensions of its own (2: matrices), all others broadcast."""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, Any]:
        out = bind(prim, *aligned(values, axes, core), **params)
        return out, ((0,) * len(out) if prim.multiple_results else 0)
    return rule


def along_axis(prim: Primitive) -> Callable:
    """The batching rule of a broadcasting primitive that works along ``axis`` (vecdot, cross): the axis
    counted from the end of the broadcast example."""
    def rule(values: list, axes: list, *, axis: int = -1) -> tuple[Any, int]:
        widest = max(rank(v, a) for v, a in zip(values, axes))
        return bind(prim, *aligned(values, axes), axis=axis - widest if axis >= 0 else axis), 0
    return rule


def solver(prim: Primitive) -> Callable:
    """The batching rule of op(A) applied to (or solved with) B's columns, for A (..., n, n) and B
    (..., n, k) or a vector (n,) (``left=False``: B op(A), B's rows). With A shared by every example
    the examples of B become columns (rows) of one large right-hand side: one large call in place of
    many small ones."""
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
            out = batch_first_copy(_manipulation.moveaxis(out, 1, 0))
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


def looped(prim: Primitive) -> Callable:
    """The batching rule of a primitive without a batched form: one call per example, stacked."""
    def rule(values: list, axes: list, **params: Any) -> tuple[Any, int]:
        size = batch_size(values, axes)
        first = [to_front(v, axis) for v, axis in zip(values, axes)]
        results = [bind(prim, *[v if axis is None else v[i, ...] for v, axis in zip(first, axes)], **params)
                   for i in range(size)]
        return _manipulation.stack(results, axis=0), 0
    return rule


install_axis_ops(to_front, broadcast_front)

from . import elementwise as _elementwise  # noqa: E402  (they import this module's users)
from . import manipulation as _manipulation  # noqa: E402
from . import products as _products  # noqa: E402
