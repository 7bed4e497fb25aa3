"""``vmap``: map a function over an axis of its inputs, as a transform of the engine.

The inputs become ``Batched`` values of a new level (every example stacked along the mapped axis);
``bind`` runs each primitive's batching rule on them, so the function runs once on the whole stack.
Levels come from the counter ``jvp`` uses: vmap nests, and composes with jvp in both orders.
"""
from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

import optree

from ..backends import backend_of, is_array
from ..values import Batched, Dual, Recorded, Zero, check_alive, new_level
from ..namespace import broadcast_to, expand_dims, moveaxis
from .jvp import call_user_function


class _NotMapped:
    """``None`` in in_axes / out_axes, as a pytree leaf."""

    def __repr__(self) -> str:
        return "None"


_NOT_MAPPED = _NotMapped()


def _path_name(root: str, path: tuple) -> str:
    return root + "".join(f"[{p!r}]" for p in path)


def _axes_for(axes: Any, tree: Any, what: str, tree_name: str, n_leaves: int) -> list:
    """The axis of every leaf of ``tree`` from the prefix ``axes`` (``None``: not mapped)."""
    if axes is None or type(axes) is int:  # the common case, without pytree work
        return [axes] * n_leaves
    prefix = optree.tree_map(lambda a: _NOT_MAPPED if a is None else a, axes, none_is_leaf=True)
    try:
        full = optree.tree_broadcast_prefix(prefix, tree, none_is_leaf=True)
    except ValueError:
        raise ValueError(
            f"vmap: {what} must be an int, None, or a pytree prefix of {tree_name}; {what} has structure "
            f"{optree.tree_structure(prefix, none_is_leaf=True)} but {tree_name} has structure "
            f"{optree.tree_structure(tree, none_is_leaf=True)}") from None
    leaves = optree.tree_leaves(full, none_is_leaf=True)
    for axis in leaves:
        if axis is not _NOT_MAPPED and (isinstance(axis, bool) or not isinstance(axis, numbers.Integral)):
            raise TypeError(f"vmap: {what} entries must be ints or None, got {axis!r}")
    return [None if axis is _NOT_MAPPED else int(axis) for axis in leaves]


def _size_of(names: Callable[[], list[str]], leaves: list, axes: list, axis_size: int | None) -> int:
    if axis_size is None and all(axis is not None and type(leaf) is not Dual and is_array(leaf)
                                 and 0 <= axis < leaf.ndim for leaf, axis in zip(leaves, axes)):
        size = leaves[0].shape[axes[0]] if leaves else None  # (every leaf a mapped array: the common case)
        if leaves and all(leaf.shape[axis] == size for leaf, axis in zip(leaves, axes)):
            return size
    sizes = {}
    for name, leaf, axis in zip(names(), leaves, axes):
        if axis is None or leaf is None:  # (None: an empty subtree, as in JAX)
            continue
        shared = ("keyword arguments are mapped over axis 0, as in JAX: pass it positionally with in_axes None"
                  if name.startswith("kwargs") else "give it in_axes None (not mapped)")
        if not (isinstance(leaf, Dual) or is_array(leaf)):
            raise TypeError(f"vmap: {name} is a {type(leaf).__name__}, which has no axis to map over; {shared} or "
                            f"pass an array")
        ndim = len(leaf.shape)
        if not -ndim <= axis < ndim:
            raise ValueError(f"vmap: in_axes {axis} for {name} is out of range: it has shape {tuple(leaf.shape)} "
                             f"({ndim} dimensions); " + (f"{shared} if it is shared" if name.startswith("kwargs") else
                                                         f"use an axis in [{-ndim}, {ndim}) or None"))
        sizes[name] = leaf.shape[axis]
    found = set(sizes.values())
    if len(found) > 1:
        listed = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise ValueError(f"vmap: the mapped axes have different sizes ({listed}); map axes of one size, or pass "
                         f"in_axes None for inputs shared by every example")
    if axis_size is not None and found and found != {axis_size}:
        raise ValueError(f"vmap: axis_size={axis_size} but the mapped axes have size {found.pop()}")
    if not found and axis_size is None:
        raise ValueError("vmap: no input is mapped (all in_axes are None or there are no array inputs); pass "
                         "axis_size to say how many examples to make")
    return found.pop() if found else int(axis_size)


def _out_axis(axis: int, ndim: int, name: str) -> int:
    """``axis`` of an output of ``ndim`` dimensions with its examples, made non-negative (checked)."""
    if not -ndim <= axis < ndim:
        raise ValueError(f"vmap: out_axes {axis} for {name} is out of range for its {ndim - 1} dimensions per "
                         f"example; use an axis in [{-ndim}, {ndim})")
    return axis % ndim


def _output(leaf: Any, axis: int | None, level: int, size: int, path: tuple) -> Any:
    """An output leaf with its examples along ``axis`` (None: one value, which must not vary)."""
    name = _path_name("output", path)
    if type(leaf) is Zero:  # an integer output's tangent (a nested jvp's): a symbolic zero of every example, as
        if axis is None:  # JAX's float0 tangents are batched too
            return leaf
        shape = list(leaf.shape)
        shape.insert(_out_axis(axis, len(shape) + 1, name), size)
        return Zero(tuple(shape), leaf.dtype)
    if isinstance(leaf, Batched) and leaf.level == level:
        value, batch_axis = leaf.value, leaf.axis
    elif isinstance(leaf, Dual) or is_array(leaf):
        check_alive(leaf)
        value, batch_axis = leaf, None
    else:
        hint = " (a constant: return xp.asarray(...) of it)" if isinstance(leaf, numbers.Number) else ""
        raise TypeError(f"vmap: f must return arrays or pytrees of arrays; {name} is a {type(leaf).__name__}{hint}")
    if axis is None:
        if batch_axis is not None:
            raise ValueError(f"vmap: out_axes is None for {name}, but it differs from example to example; give it "
                             f"an out_axes entry (e.g. 0) to stack its examples")
        return value
    axis = _out_axis(axis, len(value.shape) + (batch_axis is None), name)
    if batch_axis is None:  # the same value for every example: broadcast
        value = expand_dims(value, axis=axis)
        shape = list(value.shape)
        shape[axis] = size
        if type(value) in (Dual, Batched, Recorded):  # (a value of an enclosing transform; not jit's: its replay
            return broadcast_to(value, tuple(shape))  # returns what the user gets)
        # a result for the user: its own memory, as a loop's stack (a broadcast view is read-only on NumPy and
        # writes through to every example on CuPy)
        return backend_of(value).xp.asarray(broadcast_to(value, tuple(shape)), copy=True)
    return value if batch_axis == axis else moveaxis(value, batch_axis, axis)


def _mapped_arrays(f: Callable, args: tuple, in_axis: int, out_axis: int) -> Any:
    """``vmap(f, in_axis, out_axis)(*args)`` where every argument is a raw array with that axis, all of one
    size, and ``f`` returns one array mapped at this level; ``_NOT_MAPPED`` when the arguments are not
    such (the general path then runs; a function that returns something else is finished by it too)."""
    size = None
    for a in args:
        if (not is_array(a) or type(a) is Dual or not -a.ndim <= in_axis < a.ndim
                or size not in (None, a.shape[in_axis])):
            return _NOT_MAPPED
        size = a.shape[in_axis]
    if size is None:
        return _NOT_MAPPED
    with new_level("vmap") as level:
        out = call_user_function(f, *[Batched(level, a, in_axis % a.ndim) for a in args])
        if type(out) is not Batched or out.level != level or out.axis is None:
            return _output_tree(out, out_axis, level, size)
        ndim = out.value.ndim
        if not -ndim <= out_axis < ndim:
            return _output_tree(out, out_axis, level, size)
        return out.value if out.axis == out_axis % ndim else moveaxis(out.value, out.axis, out_axis % ndim)


def _output_tree(out: Any, out_axes: Any, level: int, size: int) -> Any:
    """The outputs of the mapped function with their examples along ``out_axes``."""
    out_leaves, out_spec = optree.tree_flatten(out)
    out_axes_leaves = _axes_for(out_axes, out, "out_axes", "the outputs", len(out_leaves))
    paths = optree.tree_paths(out) if len(out_leaves) > 1 else [()] * len(out_leaves)
    results = [_output(leaf, axis, level, size, path) for path, leaf, axis in zip(paths, out_leaves, out_axes_leaves)]
    return optree.tree_unflatten(out_spec, results)


def vmap(f: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0, axis_size: int | None = None) -> Callable:
    """``f`` mapped over an axis of its inputs (``jax.vmap`` semantics).

    ``in_axes``: an int (the axis of every input to map over), ``None`` (not mapped: shared by all
    examples), or a tuple with one entry per positional argument, each a pytree prefix of that argument
    (ints and ``None`` at its leaves). ``out_axes`` likewise for the outputs: where the examples are
    stacked in each output (``None``: the output must be the same for every example). ``axis_size``
    gives the number of examples when no input is mapped. Keyword arguments are mapped over their axis
    0 (as in JAX; pass shared values positionally with in_axes None); ``None`` among the arguments is an
    empty subtree. Returns a function of the same arguments.

    Inside, the function sees one example: shapes exclude the mapped axis, and every primitive runs
    once on the whole stack through its batching rule (the linalg ones on their leading batch
    dimensions), so a factorisation of an input shared by all examples is computed once. Composes
    with ``jvp`` in both orders and with itself. Python control flow on a mapped value (``if x > 0:``)
    raises a ``TypeError``: use ``xp.where``.
    """
    if not callable(f):
        raise TypeError(f"vmap: f must be callable, got {type(f).__name__}")
    if axis_size is not None and (isinstance(axis_size, bool) or not isinstance(axis_size, numbers.Integral)
                                  or axis_size < 0):
        raise ValueError(f"vmap: axis_size must be a non-negative int (the number of examples), got {axis_size!r}")
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)

    @functools.wraps(f)
    def mapped(*args: Any, **kwargs: Any) -> Any:
        if isinstance(in_axes, tuple) and len(in_axes) != len(args):
            raise ValueError(f"vmap: in_axes has {len(in_axes)} entries but the function got {len(args)} positional "
                             f"arguments; give one entry per argument (or one int for all)")
        if type(in_axes) is int and type(out_axes) is int and axis_size is None and not kwargs:
            out = _mapped_arrays(f, args, in_axes, out_axes)  # the common case, without pytree work
            if out is not _NOT_MAPPED:
                return out
        leaves, spec = optree.tree_flatten(args, none_is_leaf=True)
        axes = _axes_for(in_axes, args, "in_axes", "the arguments", len(leaves))
        keyword_leaves, keyword_spec = optree.tree_flatten(kwargs, none_is_leaf=True)
        leaves, axes = leaves + keyword_leaves, axes + [0] * len(keyword_leaves)  # keywords: axis 0, as in JAX
        names = lambda: ([_path_name("args", p) for p in optree.tree_paths(args, none_is_leaf=True)]  # noqa: E731
                         + [_path_name("kwargs", p) for p in optree.tree_paths(kwargs, none_is_leaf=True)])
        size = _size_of(names, leaves, axes, axis_size)
        with new_level("vmap") as level:
            # Unmapped arrays join the level too (shared by all examples), as jvp's inputs get zero tangents:
            # operators between them and mapped values then dispatch on every backend.
            inputs = [Batched(level, leaf, None if axis is None else axis % len(leaf.shape))
                      if leaf is not None and (axis is not None or isinstance(leaf, Dual) or is_array(leaf)) else leaf
                      for leaf, axis in zip(leaves, axes)]
            n = len(inputs) - len(keyword_leaves)
            out = call_user_function(f, *optree.tree_unflatten(spec, inputs[:n]),
                                     **optree.tree_unflatten(keyword_spec, inputs[n:]))
            return _output_tree(out, out_axes, level, size)

    return mapped
