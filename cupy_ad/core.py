"""The tracing engine: symbolic zeros, dual, batched and recorded values with levels, primitives and ``bind``.

Eager transforms in the style of JAX's autodidax. Every running transform owns a level from one
counter: a ``jvp`` call's values are ``Dual`` (a primal and a tangent), a ``vmap`` call's are
``Batched`` (every example stacked along one axis), a ``linearize`` recording's are ``Recorded``.
A value of level k may hold values of lower levels inside, which is how transforms nest and compose
without perturbation confusion. ``bind`` runs a primitive's implementation on raw arrays, or the
rule of the highest level present among the arguments: the JVP rule, the batching rule, or the
recorder.
"""
from __future__ import annotations

import itertools
import math
import os
import threading
from typing import Any, Callable

from .profiling_ranges import NO_RANGE as _NO_RANGE, nvtx_range


class Zero:
    """A symbolic zero tangent: a shape and a dtype, no data.

    Rules short-circuit on it; it becomes an array only where a consumer needs one. The class
    itself (``ad.Zero``) or ``None`` may be passed to ``jvp`` as a tangent meaning "no perturbation".
    """

    __slots__ = ("shape", "dtype")

    def __init__(self, shape: tuple[int, ...], dtype: Any):
        self.shape = tuple(shape)
        self.dtype = dtype

    @classmethod
    def like(cls, x: Any) -> "Zero":
        return cls(getattr(x, "shape", ()), getattr(x, "dtype", None))

    def __repr__(self) -> str:
        return f"Zero(shape={self.shape}, dtype={self.dtype})"


def is_zero(t: Any) -> bool:
    return type(t) is Zero


class Dual:
    """A primal value and its tangent at one level of nested differentiation.

    Python operators, ``shape``, ``dtype`` and ``__array_namespace__`` behave as on the backend
    array; they are installed by :mod:`cupy_ad.namespace`, and so are NumPy's protocols
    (``__array_ufunc__``, ``__array_function__``: ``np.sin(x)`` differentiates) and a ``__getattr__``
    naming the namespace function for NumPy-only methods (``x.sum()``), from
    :mod:`cupy_ad.namespace.numpy_protocols`.
    """

    # weak: a Python scalar's (takes the dtype of the arrays it meets, namespace.weak). _view: (base, key)
    # when this value is a basic-indexing view of the dual ``base``; _views: weak references to this
    # value's own views (set by indexing, which keeps writes NumPy-consistent).
    __slots__ = ("primal", "tangent", "level", "weak", "_view", "_views", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, level: int, primal: Any, tangent: Any, weak: bool = False):
        self.level = level
        self.primal = primal
        self.tangent = tangent
        self.weak = weak  # a Python scalar's: takes the dtype of the arrays it meets (namespace.weak)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.primal.shape

    @property
    def dtype(self) -> Any:
        return self.primal.dtype

    @property
    def ndim(self) -> int:
        return len(self.primal.shape)

    @property
    def size(self) -> int | None:
        return self.primal.size

    @property
    def device(self) -> Any:
        return self.primal.device

    def __len__(self) -> int:
        return len(self.primal)

    def __repr__(self) -> str:
        return f"Dual(level={self.level}, primal={self.primal!r}, tangent={self.tangent!r})"

    # Conversions leave the differentiated world: allowed only where no tangent would be lost.
    def __bool__(self) -> bool:
        return bool(concrete(self, "bool()"))

    def __float__(self) -> float:
        return float(concrete(self, "float()"))

    def __int__(self) -> int:
        return int(concrete(self, "int()"))

    def __complex__(self) -> complex:
        return complex(concrete(self, "complex()"))

    def __index__(self) -> int:
        return concrete(self, "__index__").__index__()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        raw = concrete(self, "NumPy conversion (__array__)")
        return raw.__array__(dtype) if copy is None else raw.__array__(dtype, copy=copy)

    def __dlpack__(self, /, *, stream: Any = None, max_version: Any = None, dl_device: Any = None,
                   copy: bool | None = None) -> Any:
        if has_tangent(self) and not _converts_primal():
            raise BufferError(_concretization_message(self, "DLPack export (__dlpack__)"))
        given = {"stream": stream, "max_version": max_version, "dl_device": dl_device, "copy": copy}
        return strip(self).__dlpack__(**{k: v for k, v in given.items() if v is not None})

    def __dlpack_device__(self) -> tuple[int, int]:
        return strip(self).__dlpack_device__()


class ConcretizationError(TypeError):
    """A dual value with a nonzero tangent was converted to a Python number, a NumPy array or a
    DLPack capsule: the conversion would silently drop its derivative."""


def has_tangent(x: Any) -> bool:
    """Whether ``x`` carries a tangent that is not symbolically zero at any of its levels."""
    while type(x) is Dual:
        if type(x.tangent) is not Zero:
            return True
        x = x.primal
    return False


def _concretization_message(x: Dual, what: str) -> str:
    return (f"{what} of a cupy_ad dual value with a nonzero tangent (shape {tuple(x.shape)}, dtype {x.dtype}) "
            "would drop its derivative. Compute with the array namespace instead (xp = array_namespace(x); "
            "e.g. xp.log(x) rather than math.log(x)), or drop the derivative explicitly: "
            "ad.stop_gradient(x) (a value with zero tangents, converts freely) or ad.primal_value(x) (the raw array).")


def _converts_primal() -> bool:
    """``CUPY_AD_CONVERT_PRIMAL=1``: conversions return the primal and drop the tangent, for harnesses
    that read values back from dual values (a conformance suite run inside a jvp), never for
    differentiated code."""
    return os.environ.get("CUPY_AD_CONVERT_PRIMAL") == "1"


def concrete(x: Dual, what: str) -> Any:
    """The raw array of a dual value whose tangents are all symbolic zeros; else ConcretizationError
    (unless ``CUPY_AD_CONVERT_PRIMAL=1``)."""
    if has_tangent(x) and not _converts_primal():
        raise ConcretizationError(_concretization_message(x, what))
    return strip(x)


def strip(x: Any) -> Any:
    """The raw array under all levels of duals (``ad.primal_value``: the tangents are dropped; batched
    and recorded values are kept: their data is not one example's)."""
    while type(x) is Dual:
        x = x.primal
    return x


def base_array(x: Any) -> Any:
    """The backend array holding ``x``'s data, under duals, batches and recordings: for its backend,
    device and dtype only (its shape includes batch axes)."""
    while True:
        cls = type(x)
        if cls is Dual:
            x = x.primal
        elif cls is Batched or cls is Recorded:
            x = x.value
        else:  # (a jit recording's JitTraced value stands for its backend: its calls are recorded)
            return x


class _Traced:
    """What ``Batched`` and ``Recorded`` share: the array attributes of ``value`` and conversions
    that refuse (the value is not one concrete array)."""

    __slots__ = ()
    __array_ufunc__ = None  # NumPy defers to our reflected operators
    __array_priority__ = 1000
    _transform = ""

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def device(self) -> Any:
        return self.value.device

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def _refuse(self, what: str) -> Any:
        raise TypeError(
            f"{what} of a value inside {self._transform}: its data is not one concrete array here. Python "
            f"control flow (if x > 0:, while, bool(), float(), int()) cannot depend on it; use array "
            f"functions instead (e.g. xp.where(x > 0, a, b) in place of an if), or call the function "
            f"outside {self._transform}")

    def __bool__(self) -> bool:
        return self._refuse("bool()")

    def __float__(self) -> float:
        return self._refuse("float()")

    def __int__(self) -> int:
        return self._refuse("int()")

    def __complex__(self) -> complex:
        return self._refuse("complex()")

    def __index__(self) -> int:
        return self._refuse("use as an index")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("conversion to a NumPy array (in a rule of cupy_ad: eigh and svd read tangents on "
                            "the host at repeated eigen/singular values, where the one-sided derivative is not "
                            "linear in the tangent and there is no Jacobian)")


class Batched(_Traced):
    """A value of a running ``vmap`` (level ``level``): ``value`` holds every example stacked along
    ``axis`` (``None``: one value shared by all examples). ``shape`` is one example's shape; Python
    operators and ``__array_namespace__`` act per example (installed by :mod:`cupy_ad.namespace`)."""

    __slots__ = ("level", "value", "axis")
    _transform = "vmap"

    def __init__(self, level: int, value: Any, axis: int | None):
        self.level = level
        self.value = value
        self.axis = axis

    @property
    def shape(self) -> tuple[int, ...]:
        shape = tuple(self.value.shape)
        axis = self.axis
        if axis == 0:
            return shape[1:]
        return shape if axis is None else shape[:axis] + shape[axis + 1:]

    @property
    def ndim(self) -> int:
        return self.value.ndim - (self.axis is not None)

    def __repr__(self) -> str:
        return f"Batched(level={self.level}, axis={self.axis}, value={self.value!r})"


class Recorded(_Traced):
    """A tangent of a running ``linearize`` recording (level ``level``): ``value`` is a stand-in
    (the tangent computed from zeros) and ``var`` its variable in the recorded program."""

    __slots__ = ("level", "value", "var")
    _transform = "linearize"

    def __init__(self, level: int, value: Any, var: "Var"):
        self.level = level
        self.value = value
        self.var = var

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    def __repr__(self) -> str:
        return f"Recorded(level={self.level}, var={self.var.index})"


class JitTraced(Recorded):
    """A value of a running ``jit`` recording (level ``level``): ``value`` is the concrete array of the
    recording call and ``var`` its slot in the recorded program. Primitives run their implementation on
    it, and every backend call it reaches is recorded (see :mod:`cupy_ad.transforms.jit`). ``_view``,
    ``_views``: as on ``Dual`` (basic-indexing views, so that ``x[key] = v`` reaches them)."""

    __slots__ = ("_view", "_views", "__weakref__")
    _transform = "jit"

    def __bool__(self) -> bool:  # a guard: the program is valid for this outcome only
        return _levels.programs[self.level].guard(self)

    def _refuse(self, what: str) -> Any:
        raise TypeError(
            f"{what} of a traced value inside jit: a number read from an array cannot be replayed (bool() "
            f"can: it records a guard). Keep it an array (xp.where in place of Python arithmetic on it), pass "
            f"it through static_argnums, or call the function without jit")

    def __repr__(self) -> str:
        return f"JitTraced(level={self.level}, slot={self.var}, value={self.value!r})"


class Var:
    """A variable of a recorded program (see :class:`Program`)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class Program:
    """A recorded linear computation: equations ``(prim, args, params, outs)`` in order, where ``args``
    are ``Var`` (a recorded value) or constants and ``outs`` the ``Var`` of the results."""

    __slots__ = ("equations", "n_vars")

    def __init__(self) -> None:
        self.equations: list[tuple] = []
        self.n_vars = 0

    def new_var(self) -> Var:
        self.n_vars += 1
        return Var(self.n_vars - 1)


_LEVELLED = frozenset((Dual, Batched, Recorded, JitTraced))


def levelled(x: Any) -> bool:
    """Whether ``x`` is a value of a running transform (not a raw array or a Python scalar)."""
    return type(x) in _LEVELLED


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
        if type(a) in _LEVELLED and a.level > level:
            level = a.level
            top = a
    if prim.array_params:
        for name in prim.array_params:
            a = params.get(name)
            if type(a) in _LEVELLED and a.level > level:
                level = a.level
                top = a
    if level == 0:
        if prim._primal_range is _NO_RANGE:
            return prim.impl(*args, **params)
        with prim._primal_range:
            return prim.impl(*args, **params)
    if level not in _levels.alive:
        check_alive(top)
    if type(top) is JitTraced:  # a jit recording: the implementation records the backend calls it makes
        if any(type(a) in _LEVELLED and type(a) is not JitTraced for a in args):
            raise TypeError("jit: f uses a value of a running jvp, vmap or linearize that is not among its "
                            "arguments (a closure or a global over a dual or batched value); pass it as an "
                            "argument of the jitted function")
        program = _levels.programs[level]  # raw arrays become its constants: operators between them record
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
            if a.axis != 0 or type(a.value) in _LEVELLED or level and a.level != level:
                return 0
            level = a.level
        elif cls in _LEVELLED:
            return 0
    return level if level in _levels.alive else 0


def bind_batched_elementwise(prim: Primitive, args: tuple, params: dict) -> Any:
    """An elementwise ``prim`` on stacks (``stack_level``), Python scalars and raw arrays: stacks of
    lower rank get singleton axes after the batch axis, so that all broadcast alike on the stack and
    on one example. Returns None for any other case (``bind`` takes it). (One loop: this is the
    dispatch of most primitives under vmap.)"""
    level = 0
    top = 0  # the rank everything broadcasts to
    low = 1 << 30  # the lowest rank of a stack
    values = []
    for a in args:
        cls = type(a)
        if cls is Batched:
            value = a.value
            if a.axis != 0 or type(value) in _LEVELLED or level and a.level != level:
                return None
            level = a.level
            ndim = value.ndim
            if ndim < low:
                low = ndim
        elif cls in _PYTHON_SCALARS:
            values.append(a)
            continue
        elif cls in _LEVELLED or not hasattr(a, "ndim"):
            return None
        else:
            value = a
            ndim = a.ndim + 1
        if ndim > top:
            top = ndim
        values.append(value)
    if not level or level not in _levels.alive:
        return None
    if low < top:
        values = [_axis_ops.pad_raw_rank(v, top - v.ndim) if type(a) is Batched and v.ndim < top else v
                  for a, v in zip(args, values)]
    with prim._primal_range:  # (stacked's body: one call less on the most frequent path)
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
        if type(a) in _LEVELLED:
            return prim(*args, **params)
    if prim._primal_range is _NO_RANGE and not prim.array_params:
        return prim.impl(*args, **params)
    return bind(prim, *args, **params)


# ------------------------------------------------------------------------------------- batching
def _batch(prim: Primitive, level: int, args: tuple, params: dict) -> Any:
    """The batching rule of ``prim`` at vmap level ``level``."""
    if prim.stack_rule is not None:
        first = args[0]
        if (type(first) is Batched and first.axis == 0 and first.level == level and type(first.value) not in _LEVELLED
                and not any(type(a) in _LEVELLED for a in args[1:])):
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
    return x.level if type(x) in _LEVELLED else 0


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
    program = _levels.programs[level]
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


# --------------------------------------------------------------------------------------- levels
class _Levels(threading.local):
    def __init__(self) -> None:
        self.active: list[int] = []  # the levels of the running jvp calls, innermost last
        self.stack: list[tuple[int, str]] = []  # (level, kind) of every running transform, innermost last
        self.alive: set[int] = set()
        self.programs: dict[int, Program] = {}  # the recordings of running linearize calls


_levels = _Levels()
_next_level = itertools.count(1)


def current_level() -> int:
    """The level of the innermost running ``jvp`` (0 outside any)."""
    active = _levels.active
    return active[-1] if active else 0


def active_levels() -> list[int]:
    """The levels of the running ``jvp`` calls, outermost first."""
    return list(_levels.active)


def constant(x: Any) -> Any:
    """A new constant array as a value of the innermost transform's level (a zero tangent, or shared by
    all examples), so that operators between it and traced values dispatch through them, whatever the
    backend."""
    if not _levels.stack:
        return x
    level, kind = _levels.stack[-1]
    if kind == "jvp":
        return Dual(level, x, Zero.like(x))
    if kind == "jit":
        return _levels.programs[level].constant(x)
    return Batched(level, x, None) if kind == "vmap" else x


class new_level:
    """Context manager giving each transform call (``jvp``, ``vmap``, a ``linearize`` or ``jit`` recording) a
    level of its own.

    Levels are never reused: a nested call's level is above its caller's, and a value that escaped
    from a finished call (kept in a closure, say) is recognised as dead instead of being confused
    with the values of a later call.
    """

    def __init__(self, kind: str = "jvp", program: Any = None):
        self.kind = kind
        self.program = program  # kind "jit": the recording (see cupy_ad.transforms.jit)

    def __enter__(self) -> int:
        level = self.level = next(_next_level)
        if self.kind == "jvp":
            _levels.active.append(level)
        elif self.kind == "record":
            _levels.programs[level] = Program()
        elif self.kind == "jit":
            _levels.programs[level] = self.program
        _levels.stack.append((level, self.kind))
        _levels.alive.add(level)
        return level

    def __exit__(self, *exc: Any) -> None:
        if self.kind == "jvp":
            _levels.active.pop()
        _levels.programs.pop(self.level, None)
        _levels.stack.pop()
        _levels.alive.discard(self.level)


def program_of(level: int) -> Program:
    """The program recorded so far at the running recording level ``level``."""
    return _levels.programs[level]


def check_alive(x: Any) -> None:
    """Raise if ``x`` holds a value of a transform call (``jvp``, ``vmap``, ``linearize``) that has finished."""
    while type(x) in _LEVELLED:
        if x.level not in _levels.alive:
            kind = {Dual: "jvp", Batched: "vmap", Recorded: "linearize", JitTraced: "jit"}[type(x)]
            raise ValueError(
                f"a value from a finished {kind} call was used (it escaped, e.g. through a closure or a "
                f"global); pass it as an input of the {kind} instead")
        x = x.primal if type(x) is Dual else x.value
