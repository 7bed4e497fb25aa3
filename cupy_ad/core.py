"""The tracing engine: primitives and ``bind``, the batching dispatch of ``vmap`` and the recorder of
``linearize``.

Eager transforms in the style of JAX's autodidax. Every running transform owns a level from one
counter (:mod:`cupy_ad.values`): a ``jvp`` call's values are ``Dual`` (a primal and a tangent), a
``vmap`` call's are ``Batched`` (every example stacked along one axis), a ``linearize`` recording's
are ``Recorded``. A value of level k may hold values of lower levels inside, which is how transforms
nest and compose without perturbation confusion. ``bind`` runs a primitive's implementation on raw
arrays, or the rule of the highest level present among the arguments: the JVP rule, the batching
rule, or the recorder.
"""
from __future__ import annotations

from typing import Any, Callable

from .profiling_ranges import NO_RANGE as _NO_RANGE, nvtx_range
from .values import (LEVELLED_TYPES, LEVELS, Batched, ConcretizationError, Dual, JitTraced, Recorded, Zero,
                     active_levels, check_alive, current_level, new_level, strip)


class Primitive:
    """An operation with an implementation on raw arrays, a JVP rule and a batching rule.

    ``impl(*args, **params)`` computes on raw arrays. ``jvp(primals, tangents, **params)`` returns
    ``(outputs, output_tangents)``; it is written with the namespace and other primitives so that
    it nests. Tangents may be ``Zero``; when every tangent is ``Zero`` the rule is not called.
    ``batch(values, axes, **params)`` returns ``(outputs, output_axes)``: the primitive applied to
    every example, where ``values[i]`` stacks argument i's examples along ``axes[i]`` (``None``: not
    mapped). ``array_params`` names keyword parameters that may hold arrays (gather indices); their
    values and axes follow the positional ones in ``values`` and ``axes``.
    """

    # __signature__: the public signature (``inspect.signature``, ``help``) where the namespace sets one
    __slots__ = ("name", "impl", "jvp", "batch", "stack_rule", "multiple_results", "array_params", "_primal_range",
                 "_jvp_range", "__signature__")

    def __init__(self, name: str, impl: Callable, jvp: Callable | None = None, *,
                 multiple_results: bool = False, batch: Callable | None = None, array_params: tuple = ()):
        self.name = name
        self.impl = impl
        self.jvp = jvp
        self.batch = batch
        # (raw args, params) -> the result for the examples stacked on axis 0 of args[0] (the only mapped
        # argument): the batching rule's common case without its machinery (reductions, transposes)
        self.stack_rule: Callable | None = None
        self.multiple_results = multiple_results
        self.array_params = array_params
        self._primal_range = nvtx_range(f"cupy_ad/{name}/primal")
        self._jvp_range = nvtx_range(f"cupy_ad/{name}/jvp")

    def def_jvp(self, rule: Callable) -> Callable:
        self.jvp = rule
        return rule

    def def_batch(self, rule: Callable) -> Callable:
        self.batch = rule
        return rule

    def __repr__(self) -> str:
        return f"Primitive({self.name})"


def bind(prim: Primitive, *args: Any, **params: Any) -> Any:
    """Apply ``prim``: its implementation on raw arrays, else the rule of the top level present."""
    level = 0
    top = None
    for a in args:
        if type(a) in LEVELLED_TYPES and a.level > level:
            level = a.level
            top = a
    if prim.array_params:
        for name in prim.array_params:
            a = params.get(name)
            if type(a) in LEVELLED_TYPES and a.level > level:
                level = a.level
                top = a
    if level == 0:
        if prim._primal_range is _NO_RANGE:
            return prim.impl(*args, **params)
        with prim._primal_range:
            return prim.impl(*args, **params)
    if level not in LEVELS.alive:
        check_alive(top)
    if type(top) is JitTraced:  # a jit recording: the implementation records the backend calls it makes
        if any(type(a) in LEVELLED_TYPES and type(a) is not JitTraced for a in args):
            raise TypeError("jit: f uses a value of a running jvp, vmap or linearize that is not among its "
                            "arguments (a closure or a global over a dual or batched value); pass it as an "
                            "argument of the jitted function")
        program = LEVELS.programs[level]  # raw arrays become its constants: operators between them record
        return prim.impl(*[a if type(a) is JitTraced or not hasattr(a, "dtype") else program.constant(a)
                           for a in args], **params)
    if type(top) is Batched:
        return _batch(prim, level, args, params)
    if type(top) is Recorded:
        return _record(prim, level, args, params)
    primals = []
    tangents = []
    nonzero = False
    for a in args:
        if type(a) is Dual and a.level == level:
            primals.append(a.primal)
            tangents.append(a.tangent)
            nonzero = nonzero or type(a.tangent) is not Zero
        else:
            primals.append(a)
            tangents.append(Zero.like(a))
    if nonzero:
        if prim.jvp is None:
            raise NotImplementedError(f"no JVP rule for {prim.name}")
        batch_level, shared = _batched_primals(primals)
        if batch_level:  # JVP rules read primals as arrays: run the rule once on all examples instead
            return _swap(prim, batch_level, args, params)
        if shared:  # a vmap's constants (shared by all examples) are plain values to a rule
            primals = [_drop_shared(p) for p in primals]
        with prim._jvp_range:
            out, out_tangent = prim.jvp(primals, tangents, **params)
    else:
        out = bind(prim, *primals, **params)
        out_tangent = tuple(map(Zero.like, out)) if prim.multiple_results else Zero.like(out)
    if prim.multiple_results:
        return tuple(Dual(level, o, t) for o, t in zip(out, out_tangent))
    return Dual(level, out, out_tangent)


Primitive.__call__ = bind  # type: ignore[method-assign]  # prim(*args) is bind(prim, *args), one frame less


_PYTHON_SCALARS = frozenset((bool, int, float, complex))


def stack_level(*args: Any) -> int:
    """The vmap level when every levelled argument is a ``Batched`` of that one live level holding raw
    examples stacked on axis 0 (a stack), else 0. The fast paths of common batched primitives start
    here, without the batching machinery."""
    level = 0
    for a in args:
        cls = type(a)
        if cls is Batched:
            if a.axis != 0 or type(a.value) in LEVELLED_TYPES or level and a.level != level:
                return 0
            level = a.level
        elif cls in LEVELLED_TYPES:
            return 0
    return level if level in LEVELS.alive else 0


def bind_batched_elementwise(prim: Primitive, args: tuple, params: dict) -> Any:
    """An elementwise ``prim`` on stacks (``stack_level``), Python scalars and raw arrays: stacks of
    lower rank get singleton axes after the batch axis, so that all broadcast alike on the stack and
    on one example. Returns None for any other case (``bind`` takes it). (This is the dispatch of most
    primitives under vmap: one stack, two stacks, a stack and a Python scalar or a shared array of at
    most one example's rank come first.)"""
    x = args[0]
    if type(x) is Batched and x.axis == 0 and type(x.value) not in LEVELLED_TYPES:
        level = x.level
        if len(args) == 1:
            values = [x.value]
        elif len(args) == 2:
            y = args[1]
            cls = type(y)
            if cls in _PYTHON_SCALARS:
                values = [x.value, y]
            elif cls is Batched and y.axis == 0 and y.level == level and type(y.value) not in LEVELLED_TYPES:
                values = [x.value, y.value]
                gap = values[0].ndim - values[1].ndim
                if gap:  # the stack of lower rank gets singleton axes after the batch axis
                    low = 1 if gap > 0 else 0
                    values[low] = _axis_ops.pad_raw_rank(values[low], abs(gap))
            elif cls not in LEVELLED_TYPES and getattr(y, "ndim", 1 << 30) < x.value.ndim:  # a shared raw array
                values = [x.value, y]
            else:
                return _bind_mixed_elementwise(prim, args, params)
        else:
            return _bind_mixed_elementwise(prim, args, params)
    elif len(args) == 2 and type(x) in _PYTHON_SCALARS:
        y = args[1]
        if type(y) is not Batched or y.axis != 0 or type(y.value) in LEVELLED_TYPES:
            return None
        level = y.level
        values = [x, y.value]
    else:
        return _bind_mixed_elementwise(prim, args, params)
    if level not in LEVELS.alive:
        return None
    if prim._primal_range is _NO_RANGE:
        return Batched(level, prim.impl(*values, **params), 0)
    with prim._primal_range:
        return Batched(level, prim.impl(*values, **params), 0)


def _bind_mixed_elementwise(prim: Primitive, args: tuple, params: dict) -> Any:
    """``bind_batched_elementwise``'s other cases: raw arrays among the operands, three or more operands."""
    level = 0
    top = 0  # the rank everything broadcasts to
    low = 1 << 30  # the lowest rank of a stack
    values = []
    for a in args:
        cls = type(a)
        if cls is Batched:
            value = a.value
            if a.axis != 0 or type(value) in LEVELLED_TYPES or level and a.level != level:
                return None
            level = a.level
            ndim = value.ndim
            if ndim < low:
                low = ndim
        elif cls in _PYTHON_SCALARS:
            values.append(a)
            continue
        elif cls in LEVELLED_TYPES or not hasattr(a, "ndim"):
            return None
        else:
            value = a
            ndim = a.ndim + 1
        if ndim > top:
            top = ndim
        values.append(value)
    if not level or level not in LEVELS.alive:
        return None
    if low < top:
        values = [_axis_ops.pad_raw_rank(v, top - v.ndim) if type(a) is Batched and v.ndim < top else v
                  for a, v in zip(args, values)]
    if prim._primal_range is _NO_RANGE:
        return Batched(level, prim.impl(*values, **params), 0)
    with prim._primal_range:
        return Batched(level, prim.impl(*values, **params), 0)


def stacked(prim: Primitive, level: int, values: list, params: dict) -> Batched:
    """``prim``'s implementation on raw ``values`` whose result stacks the examples of vmap level
    ``level`` on axis 0 (a fast path has checked that it does)."""
    with prim._primal_range:
        return Batched(level, prim.impl(*values, **params), 0)


def bind_below(prim: Primitive, args: list, params: dict) -> Any:
    """``prim(*args)`` in a batching rule: its implementation at once when every argument is a raw array
    or a Python scalar (no level below to dispatch to)."""
    for a in args:
        if type(a) in LEVELLED_TYPES:
            return prim(*args, **params)
    if prim._primal_range is _NO_RANGE and not prim.array_params:
        return prim.impl(*args, **params)
    return bind(prim, *args, **params)


# ------------------------------------------------------------------------------------- batching
def _batch(prim: Primitive, level: int, args: tuple, params: dict) -> Any:
    """The batching rule of ``prim`` at vmap level ``level``."""
    if prim.stack_rule is not None:
        first = args[0]
        if (type(first) is Batched and first.axis == 0 and first.level == level
                and type(first.value) not in LEVELLED_TYPES
                and (len(args) == 1 or not any(type(a) in LEVELLED_TYPES for a in args[1:]))):
            if prim._primal_range is _NO_RANGE:
                return Batched(level, prim.stack_rule([first.value, *args[1:]], params), 0)
            with prim._primal_range:
                return Batched(level, prim.stack_rule([first.value, *args[1:]], params), 0)
    values = []
    axes = []
    mapped = False
    for a in args:
        if type(a) is Batched and a.level == level:
            values.append(a.value)
            axes.append(a.axis)
            if a.axis is not None:
                mapped = True
        else:
            values.append(a)
            axes.append(None)
    if mapped and not prim.array_params and prim.batch is not None:  # the common case
        out, out_axes = prim.batch(values, axes, **params)
        if prim.multiple_results:
            return tuple(o if axis is None else Batched(level, o, axis) for o, axis in zip(out, out_axes))
        return out if out_axes is None else Batched(level, out, out_axes)
    for name in prim.array_params:
        a = params.get(name)
        if type(a) is Batched and a.level == level:
            params = {**params, name: a.value}
            values.append(a.value)
            axes.append(a.axis)
            mapped = mapped or a.axis is not None
        else:
            values.append(a)
            axes.append(None)
    if not mapped:  # nothing mapped (constants of this level): the plain call (prim's own: it may type weak values)
        out = prim(*values[:len(args)], **params)
        if prim.multiple_results:
            return tuple(Batched(level, o, None) for o in out)
        return Batched(level, out, None)
    if prim.batch is None:
        raise NotImplementedError(
            f"vmap: the primitive {prim.name} has no batching rule; call it outside vmap (a Python loop "
            f"over the examples) or give it one with {prim.name}_p.def_batch")
    out, out_axes = prim.batch(values, axes, **params)
    if prim.multiple_results:
        return tuple(o if axis is None else Batched(level, o, axis) for o, axis in zip(out, out_axes))
    return out if out_axes is None else Batched(level, out, out_axes)


def _top_level(x: Any) -> int:
    return x.level if type(x) in LEVELLED_TYPES else 0


def _batched_primals(primals: list) -> tuple[int, bool]:
    """The highest vmap level mapping a value under the duals of ``primals`` (0: none), and whether a
    vmap's shared constant (``Batched`` with axis None) is there."""
    found = 0
    shared = False
    for p in primals:
        while type(p) is Dual:
            p = p.primal
        if type(p) is Batched:
            if p.axis is None:
                shared = True
            elif p.level > found:
                found = p.level
    return found, shared


def _drop_shared(x: Any) -> Any:
    """``x`` without the wrappers of vmap constants under its duals."""
    if type(x) is Dual:
        p = _drop_shared(x.primal)
        return x if p is x.primal else Dual(x.level, p, x.tangent, x.weak)
    if type(x) is Batched and x.axis is None:
        return _drop_shared(x.value)
    return x


def _swap(prim: Primitive, batch_level: int, args: tuple, params: dict) -> Any:
    """``prim`` on arguments whose primals are batched at ``batch_level`` below the dual level on top.

    JVP rules compute masks and kernels on primals as plain arrays; a primal batched at a lower level is
    not one. vmap and jvp commute, so the batch is pulled out instead: every argument above
    ``batch_level`` becomes that level's batched value of the same tree with the batch axis first
    (``_lift``), the batching rule runs the JVP rule once on all examples, and the batch is pushed back
    under the duals of the result (``_unlift``).
    """
    size = _batch_size(args, batch_level)
    lifted = [Batched(batch_level, _lift(a, batch_level, size), 0) if _top_level(a) > batch_level else a
              for a in args]
    out = bind(prim, *lifted, **params)
    if prim.multiple_results:
        return tuple(_push_down(o, batch_level) for o in out)
    return _push_down(out, batch_level)


def _batch_size(x: Any, level: int) -> int:
    """The number of examples of vmap level ``level`` in the value tree ``x`` (a tuple of them too)."""
    if type(x) is tuple:
        for a in x:
            size = _batch_size(a, level)
            if size:
                return size
        return 0
    if type(x) is Dual:
        return _batch_size(x.primal, level) or (0 if type(x.tangent) is Zero else _batch_size(x.tangent, level))
    if type(x) is Batched:
        if x.level == level:
            return 0 if x.axis is None else x.value.shape[x.axis]
        return _batch_size(x.value, level)
    return 0


def _lift(x: Any, level: int, size: int) -> Any:
    """The tree ``x`` with vmap level ``level`` taken out: its examples along a new leading axis of every
    array, values not batched at that level broadcast to ``size`` examples."""
    cls = type(x)
    if cls is Dual and x.level > level:
        t = x.tangent
        t = Zero((size, *t.shape), t.dtype) if type(t) is Zero else _lift(t, level, size)
        return Dual(x.level, _lift(x.primal, level, size), t, x.weak)
    if cls is Batched and x.level > level:
        return Batched(x.level, _lift(x.value, level, size), None if x.axis is None else x.axis + 1)
    if cls is Batched and x.level == level and x.axis is not None:
        return _axis_ops.to_front(x.value, x.axis)
    if cls is Batched and x.level == level:
        x = x.value
    return _axis_ops.broadcast_front(x, size)


def _push_down(x: Any, level: int) -> Any:
    """Undo ``_lift`` on a result: vmap level ``level``'s batch (a ``Batched`` on top) pushed under the
    duals and batches of higher levels."""
    if type(x) is not Batched or x.level != level:
        return x
    return x.value if x.axis is None else _unlift(x.value, level, x.axis)


def _unlift(x: Any, level: int, axis: int) -> Any:
    cls = type(x)
    if cls is Dual and x.level > level:
        t = x.tangent
        t = Zero(t.shape[:axis] + t.shape[axis + 1:], t.dtype) if type(t) is Zero else _unlift(t, level, axis)
        return Dual(x.level, _unlift(x.primal, level, axis), t, x.weak)
    if cls is Batched and x.level > level and x.axis is not None:
        inner = axis if axis < x.axis else axis + 1
        return Batched(x.level, _unlift(x.value, level, inner), x.axis if x.axis < inner else x.axis - 1)
    if cls is Batched and x.level > level:
        return Batched(x.level, _unlift(x.value, level, axis), None)
    return Batched(level, x, axis)


class _AxisOps:
    """The axis operations the swap and the elementwise fast path need, installed by the namespace (a
    layer above)."""

    to_front: Callable[[Any, int], Any]
    broadcast_front: Callable[[Any, int], Any]
    pad_raw_rank: Callable[[Any, int], Any]


_axis_ops = _AxisOps()


def install_axis_ops(to_front: Callable[[Any, int], Any], broadcast_front: Callable[[Any, int], Any],
                     pad_raw_rank: Callable[[Any, int], Any]) -> None:
    _axis_ops.to_front = to_front
    _axis_ops.broadcast_front = broadcast_front
    _axis_ops.pad_raw_rank = pad_raw_rank


# ------------------------------------------------------------------------------------ recording
def _record(prim: Primitive, level: int, args: tuple, params: dict) -> Any:
    """Apply ``prim`` to the stand-ins of a ``linearize`` recording and append the equation."""
    program = LEVELS.programs[level]
    values = []
    inputs = []
    for a in args:
        if type(a) is Recorded and a.level == level:
            values.append(a.value)
            inputs.append(a.var)
        else:
            values.append(a)
            inputs.append(a)
    out = bind(prim, *values, **params)
    if prim.multiple_results:
        outs = tuple(program.new_var() for _ in out)
        program.equations.append((prim, inputs, params, outs))
        return tuple(Recorded(level, o, v) for o, v in zip(out, outs))
    var = program.new_var()
    program.equations.append((prim, inputs, params, (var,)))
    return Recorded(level, out, var)


# the engine's names, with the values it runs on (cupy_ad.core has always offered both)
__all__ = ["Batched", "ConcretizationError", "Dual", "JitTraced", "Primitive", "Recorded", "Zero", "active_levels",
           "bind", "current_level", "new_level", "strip"]
