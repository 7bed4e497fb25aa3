"""What a ``jit`` recording records (see :mod:`cupy_ad.transforms.jit`): each backend call touching a
traced value (``_record_call``: a step of the program, or a constant where no traced value takes part),
operators, indexing, in-place updates and attributes of traced values, and the NumPy functions the
namespace has no equivalent for (``_record_numpy``); the recording backend proxy that rules reach
through ``recording_backend``. Installed on ``JitTraced`` at import."""
from __future__ import annotations

import functools
import operator
import types
from typing import Any, Callable

import optree

from ..backends import backend_of, error_state, error_state_change, under_error_state
from ..values import NUMPY_WRITERS, Batched, Dual, JitTraced, Recorded, program_of
from ..namespace import namespace, numpy_protocols
from ..namespace.indexing import Relayout, _gives_view, note_view
from .jit_guards import guard, layout_guard, memory_guard, raises, shape_guard, value_guard
from .jit_program import Call, Flattening, Method, _is_array


def _leak_error() -> TypeError:
    return TypeError("jit: f uses a value of a running jvp, vmap or linearize that is not among its arguments (a "
                     "closure or a global over a dual or batched value); pass it as an argument of the jitted "
                     "function")


# ------------------------------------------------------------------------------------ recording
class _Recording:
    """The program being recorded: the concrete value of every slot, and the steps."""

    transform = "jit"

    def __init__(self) -> None:
        self.level = 0
        self.error_state = error_state()  # the caller's: a step under another (np.errstate in f) keeps the change
        self.values: list = []
        self.constant_slots: set[int] = set()
        self.steps: list[tuple] = []  # (function, input slots, output slot or slots)
        self.captures: dict[int, tuple] = {}  # id of a raw array -> (it, its copy): while the recording runs

    def captured(self, v: Any) -> Any:
        """A copy of the raw array ``v`` (anything else as it is) for the steps to keep, as it is now: the
        copy made at an earlier use while ``v`` has not been written since (one constant: one step of a
        common subexpression)."""
        if not _is_array(v) or type(v) is JitTraced:
            return v
        raw, kept = self.captures.get(id(v), (None, None))
        if raw is not v or not _unchanged(kept, v):
            kept = v.copy() if hasattr(v, "copy") else v.__array_namespace__().asarray(v, copy=True)
            self.captures[id(v)] = (v, kept)
        return kept

    def slot(self, value: Any) -> JitTraced:
        self.values.append(value)
        return JitTraced(self.level, value, len(self.values) - 1)

    def constant(self, x: Any, owned: bool = False) -> JitTraced:
        """``values.constant`` inside the recording: a constant slot (operators on it are recorded). A raw
        array from outside the recording (closed over, made by NumPy in ``f``) is copied, as ``jax.jit``
        captures it at the trace: a later write into it (in ``f`` after this use, or between calls) is not
        seen by a replay; ``owned``: ``x`` is the recording's own (computed from its constants), kept as is."""
        traced = self.slot(x if owned else self.captured(x))
        self.constant_slots.add(traced.var)
        return traced

    def guard(self, traced: JitTraced) -> bool:
        outcome = bool(traced.value)
        self.steps.append((guard(outcome), [traced.var], None))
        return outcome

    def value_guard(self, traced: JitTraced) -> int:
        value = int(traced.value)
        self.steps.append((value_guard(value), [traced.var], None))
        return value

    def memory_guard(self, x: JitTraced, out: JitTraced) -> bool:
        shared = backend_of(x.value).may_share_memory(x.value, out.value)
        self.steps.append((memory_guard(shared), [x.var, out.var], None))
        return shared

    def same_layout(self, a: Any, b: Any) -> bool:
        """Whether ``a`` and ``b`` lie alike in memory (``Backend.layout``); if so, a step checking that a replay's
        do too (where they do not, ``x op= y`` copies its result into x's layout, right for any layout)."""
        a, b = (v if type(v) is JitTraced else self.constant(v) for v in (a, b))
        layout = backend_of(a.value).layout
        same = layout(a.value) == layout(b.value)
        if same:
            self.steps.append((layout_guard(layout), [a.var, b.var], None))
        return same

    def effect(self, fn: Callable, xs: tuple) -> None:
        """``values.host_effect``: ``fn`` on the values of ``xs`` now, and a step (no output) of each replay."""
        traced = [x if type(x) is JitTraced else self.constant(x) for x in xs]
        self.steps.append((fn, [x.var for x in traced], None))
        fn(*[x.value for x in traced])


def _unchanged(kept: Any, raw: Any) -> bool:
    """Whether ``raw`` holds what its copy ``kept`` does: equal values, signs of zero included (a NaN
    counts as changed: a new copy, which is only a step that is not shared)."""
    if kept.shape != raw.shape or kept.dtype != raw.dtype:
        return False
    xp = backend_of(kept).xp
    pairs = [(kept, raw)]
    if xp.isdtype(kept.dtype, "complex floating"):
        pairs = [(xp.real(kept), xp.real(raw)), (xp.imag(kept), xp.imag(raw))]
    return all(bool(xp.all(a == b)) and (not xp.isdtype(a.dtype, "real floating")
                                          or bool(xp.all(xp.signbit(a) == xp.signbit(b)))) for a, b in pairs)


def _record_call(fn: Callable, args: tuple, kwargs: dict, shape_checked: bool = False) -> Any:
    """``fn(*args, **kwargs)``; with traced arguments, on their values, appended to their recording (with
    ``shape_checked``, or for ``_VALUE_SHAPED`` functions, a replay checks its outputs' shapes)."""
    leaves, spec = optree.tree_flatten((args, kwargs), none_is_leaf=True)
    traced = [k for k, v in enumerate(leaves) if type(v) is JitTraced]
    if not traced:
        return fn(*args, **kwargs)
    if any(type(v) in (Dual, Batched, Recorded) for v in leaves):
        raise _leak_error()
    level = leaves[traced[0]].level
    recording = program_of(leaves[traced[0]])
    if any(leaves[k].level != level for k in traced):
        raise _leak_error()
    leaves = [recording.captured(v) for v in leaves]  # raw arrays as they are now: the steps keep these copies
    args, kwargs = optree.tree_unflatten(spec, leaves)
    values = list(leaves)
    for k in traced:
        values[k] = leaves[k].value
    call_args, call_kwargs = optree.tree_unflatten(spec, values)
    change = error_state_change(recording.error_state)  # np.errstate in f: a replay sets it around the step
    try:
        result = fn(*call_args, **call_kwargs)
    except Exception as error:  # f may handle it (a fallback when cholesky fails): a replay checks it raises
        step = _unflattening(fn, spec, leaves, traced)
        recording.steps.append((raises(step if change is None else under_error_state(step, change), type(error)),
                                [leaves[k].var for k in traced], None))
        raise
    if all(leaves[k].var in recording.constant_slots for k in traced):  # constant folding: computed once, here
        return optree.tree_map(lambda v: recording.constant(v, owned=True) if _is_array(v) else v, result,
                               none_is_leaf=True)
    if not kwargs and len(traced) == sum(type(a) is JitTraced for a in args):  # traced values: positional only
        slots = [a.var if type(a) is JitTraced else recording.constant(a, owned=True).var for a in args]
        step = fn
    else:
        slots = [leaves[k].var for k in traced]
        step = Call.of(fn, args, kwargs, len(traced)) or _unflattening(fn, spec, leaves, traced)
    if change is not None:
        step = under_error_state(step, change)
    if _is_array(result):
        out = recording.slot(result)
        recording.steps.append((step, slots, out.var))
        outs = [out]
    else:
        out_leaves, out_spec = optree.tree_flatten(result, none_is_leaf=True)
        for v in out_leaves:
            if v is not None and not _is_array(v):
                raise TypeError(f"jit: {getattr(fn, '__name__', fn)!r} returned a Python {type(v).__name__} computed "
                                f"from a traced value; a replay could not reproduce it (use array results)")
        outs = [recording.slot(v) for v in out_leaves]
        if not (isinstance(result, tuple) and out_spec == optree.tree_structure(tuple(result), none_is_leaf=True)):
            step = Flattening(step)
        recording.steps.append((step, slots, tuple(o.var for o in outs)))
        out = optree.tree_unflatten(out_spec, [o if _is_array(o.value) else o.value for o in outs])
    if shape_checked or _value_shaped(fn, args):
        recording.steps.extend((shape_guard(o.value.shape), [o.var], None) for o in outs if _is_array(o.value))
    return out


# Functions whose result's shape can follow the values of their arguments (and ``x[mask]``): a replay checks
# that shape (what follows may have read it: ``x[mask].shape[0]``, a rule's zeros of that shape).
_VALUE_SHAPED = frozenset(("nonzero", "argwhere", "flatnonzero", "extract", "compress", "repeat", "trim_zeros",
                           "unique", "unique_all", "unique_counts", "unique_inverse", "unique_values", "union1d",
                           "intersect1d", "setdiff1d", "setxor1d"))


def _value_shaped(fn: Callable, args: tuple) -> bool:
    if fn is operator.getitem:  # x[mask]: a traced boolean mask among the key's entries
        return any(type(k) is JitTraced and backend_of(k.value).xp.isdtype(k.dtype, "bool")
                   for k in optree.tree_leaves(args[1], none_is_leaf=True))
    return getattr(fn, "__name__", None) in _VALUE_SHAPED


def _unflattening(fn: Callable, spec: Any, leaves: list, traced: list[int]) -> Callable:
    template = [None if k in traced else v for k, v in enumerate(leaves)]

    def step(*values: Any) -> Any:
        filled = list(template)
        for k, v in zip(traced, values):
            filled[k] = v
        args, kwargs = optree.tree_unflatten(spec, filled)
        return fn(*args, **kwargs)
    return step


# Backend methods that are not kernels: ``matrix_rule`` runs the JVP rule it is given (Dask: per block) and
# ``tall_skinny`` answers about an array's layout. A recording calls them as they are; the rule's own calls
# are recorded.
_NOT_KERNELS = frozenset(("matrix_rule", "tall_skinny"))


class _RecordingProxy:
    """A backend (or its namespace) whose functions record their calls on traced values."""

    def __init__(self, target: Any):
        self._target = target

    @property
    def recorded_backend(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name in _NOT_KERNELS:
            return attr
        if isinstance(attr, types.ModuleType):
            wrapped = _RecordingProxy(attr)
        elif callable(attr) and not isinstance(attr, type):
            def wrapped(*args: Any, _fn: Callable = attr, **kwargs: Any) -> Any:
                return _record_call(_fn, args, kwargs)
            wrapped.__name__ = name
        else:
            return attr
        self.__dict__[name] = wrapped
        return wrapped


_PROXIES: dict[int, _RecordingProxy] = {}


def _recording_backend(self: JitTraced) -> Any:
    backend = backend_of(self.value)
    proxy = _PROXIES.get(id(backend))
    if proxy is None:
        proxy = _PROXIES[id(backend)] = _RecordingProxy(backend)
    return proxy


_IN_PLACE_METHODS = frozenset(("fill", "sort", "partition", "put", "resize", "itemset", "setfield", "setflags",
                               "__setitem__", "__iadd__"))


@functools.lru_cache(maxsize=None)
def _getter(name: str) -> Callable:
    """One getter per attribute name: ``x.mT`` read twice is one step of the program (common subexpressions
    compare functions by identity)."""
    return operator.attrgetter(name)


def _traced_getattr(self: JitTraced, name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    attr = getattr(self.value, name)
    if name in _IN_PLACE_METHODS:
        raise TypeError(f"jit: x.{name}() writes into an array in place, which a replay cannot repeat safely")
    if callable(attr):
        def method(*args: Any, **kwargs: Any) -> Any:
            read = lambda base: _record_call(Method(name), (base, *args), kwargs)  # noqa: E731
            return _backend_view(self, read(self), read, name, called=True)
        return method
    if _is_array(attr):
        read = lambda base: _record_call(_getter(name), (base,), {})  # noqa: E731
        return _backend_view(self, read(self), read, name, called=False)
    return attr


# NumPy's methods whose result is a view or a copy by the layout of x (the others' are, whatever the strides)
_LAYOUT_VIEWS = frozenset(("reshape", "ravel"))


def _backend_view(self: JitTraced, out: Any, read: Callable, name: str, called: bool) -> Any:
    """``out`` of a NumPy method or attribute of ``self`` (``read(self)``); where it is a view of ``self``
    (``x.reshape(...)``, ``x.real``), it sees the writes into ``self`` (read again from its new value), and a
    write into it is refused: it could not reach ``self`` (the method has no inverse here)."""
    if type(out) is not JitTraced or not _is_array(out.value):
        return out
    call = f"x.{name}(...)" if called else f"x.{name}"
    if (program_of(self).memory_guard(self, out) if called and name in _LAYOUT_VIEWS  # (a replay checks it:
            else backend_of(self.value).may_share_memory(self.value, out.value)):  # strides are not in the signature)
        def write(new: Any) -> Any:
            raise TypeError(f"jit: a write into the result of {call}, a view of x in NumPy, cannot reach x here; use "
                            f"the namespace's function (xp.reshape, xp.permute_dims, ...), whose views pass writes on, "
                            f"or write into a copy (xp.asarray(y, copy=True))")
        note_view(self, out, Relayout(read, write))
    return out


def _set(value: Any, key: Any, item: Any) -> Any:
    out = backend_of(value).copy_in_layout(value)  # never written: a copy, in value's layout (as NumPy's write)
    out[key] = item
    return out


def _traced_getitem(self: JitTraced, key: Any) -> Any:
    """``self[key]``; where NumPy returns a view (``_gives_view``), writes into the result reach ``self``."""
    out = _record_call(operator.getitem, (self, key), {})
    if type(out) is JitTraced and _gives_view(key, self.ndim):
        note_view(self, out, key)
    return out


def _transposed(self: JitTraced, name: str) -> Any:
    """``self.T``, ``self.mT``: a view of ``self``, as in NumPy (writes into it reach ``self``)."""
    out = _record_call(_getter(name), (self,), {})
    if type(out) is JitTraced:
        read = lambda base: _record_call(_getter(name), (base,), {})  # noqa: E731 (its own inverse)
        note_view(self, out, Relayout(read, read))
    return out


def _traced_setitem(self: JitTraced, key: Any, item: Any) -> None:
    _assign(self, _record_call(_set, (self, key, item), {}))


def _assign(x: JitTraced, new: JitTraced) -> None:
    """Make ``x`` hold ``new`` as a write into its memory would eagerly (as on duals,
    ``namespace.indexing.assign``): the base of a view and the live views of ``x`` are rebound too."""
    view = getattr(x, "_view", None)
    if view is None:
        _rebind(x, new)
    else:
        base, key = view
        if type(key) is Relayout:  # (x.T, permute_dims, ...: the whole base, rearranged back)
            _assign(base, key.write(new))
        else:
            _assign(base, _record_call(_set, (base, key, new), {}))  # refreshes x among the base's views


def _assign_whole(x: JitTraced, new: JitTraced) -> None:
    """``x[...] = new`` (``x op= y``) as on duals (``namespace.indexing.assign_whole``): the base of a view that
    rearranges it takes ``new`` rearranged back, as its own ``x[...] = new``; a base keeps its layout."""
    view = getattr(x, "_view", None)
    if view is not None and type(view[1]) is Relayout:
        _assign_whole(view[0], view[1].write(new))
    elif view is None and x.ndim > 1 and not program_of(x).same_layout(x, new):
        _assign(x, _record_call(_set, (x, ..., new), {}))
    else:
        _assign(x, new)


def _rebind(x: JitTraced, new: JitTraced) -> None:
    x.value, x.var = new.value, new.var
    for ref in getattr(x, "_views", None) or ():
        view = ref()
        if view is not None:
            key = view._view[1]
            _rebind(view, key.read(x) if type(key) is Relayout else _record_call(operator.getitem, (x, key), {}))


# NumPy functions that write into an argument (no ``out=`` to see it by); ``at``: the ufunc method (np.add.at)
_WRITING = NUMPY_WRITERS | {"at"}


def _writes(function: Callable, name: str, args: tuple, kwargs: dict) -> bool:
    """Whether a NumPy call writes into an array it is given (an ``out`` passed by keyword or position,
    ``nan_to_num(copy=False)``, the functions of ``_WRITING``)."""
    try:
        given = numpy_protocols.given_arguments(function, args, kwargs)
    except (TypeError, ValueError):  # (no signature to read: a ufunc method, whose out NumPy passes by keyword)
        given = kwargs
    out = given.get("out")
    return (name in _WRITING or (name == "nan_to_num" and not given.get("copy", True))
            or (out is not None and any(o is not None for o in (out if isinstance(out, tuple) else (out,)))))


def _record_numpy(function: Callable, args: tuple, kwargs: dict) -> Any:
    """A NumPy function (or ufunc method) without an equivalent in the namespace (or given arguments that
    the equivalent lacks: ``np.round(x, 2)``), on a plain jit's traced values: recorded as it is (no JVP
    rule is needed; the replay calls the same function), its outputs' shapes checked at replay (they may
    follow values: np.bincount). Refused where it writes into an argument or returns nothing (a write, a
    file: an effect the replay, which keeps the steps whose results are used, would drop); left to the
    duals' refusal where a jvp or vmap value takes part."""
    name = getattr(function, "__name__", repr(function))
    owner = getattr(function, "__self__", None)  # (a ufunc's method: np.add.at)
    label = f"{owner.__name__}.{name}" if isinstance(getattr(owner, "__name__", None), str) else name
    if _writes(function, name, args, kwargs):
        raise TypeError(f"jit: np.{label} writes into an array in place, which a replay cannot repeat safely; use "
                        f"the array the functions of the namespace return")
    if any(type(v) in (Dual, Batched, Recorded) for v in optree.tree_leaves((args, kwargs), none_is_leaf=True)):
        return NotImplemented
    out = _record_call(function, args, kwargs, shape_checked=True)
    if out is None:
        raise TypeError(f"jit: np.{label} returns nothing: it was called for an effect (a write, a file), which a "
                        f"replay would not repeat; call it outside the jitted function")
    return out


def _install_operators() -> None:
    """Operators of traced values run the backend's own operators, recorded (a dual or batched operand of a
    nested transform takes over through its reflected operator)."""
    def binary(op: Callable, reflected: bool) -> Callable:
        def method(self: JitTraced, other: Any) -> Any:
            if type(other) in (Dual, Batched, Recorded):
                return NotImplemented
            return _record_call(op, (other, self) if reflected else (self, other), {})
        return method

    def in_place(op: Callable) -> Callable:
        def method(self: JitTraced, other: Any) -> Any:
            if type(other) in (Dual, Batched, Recorded):
                return NotImplemented
            result = _record_call(op, (self, other), {})
            if tuple(result.shape) != tuple(self.shape) or result.dtype != self.dtype:
                raise TypeError(f"in-place operation would change the shape {tuple(self.shape)} or dtype {self.dtype}"
                                f" to {tuple(result.shape)}, {result.dtype}")
            _assign_whole(self, result)
            return self
        return method

    for name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
                 "lshift", "rshift"):
        op = getattr(operator, name if name not in ("and", "or") else name + "_")
        setattr(JitTraced, f"__{name}__", binary(op, False))
        setattr(JitTraced, f"__r{name}__", binary(op, True))
        setattr(JitTraced, f"__i{name}__", in_place(op))  # NumPy's semantics through the views, as on duals
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(JitTraced, f"__{name}__", binary(getattr(operator, name), False))
    for name in ("neg", "pos", "abs", "invert"):
        setattr(JitTraced, f"__{name}__", lambda self, op=getattr(operator, name): _record_call(op, (self,), {}))
    JitTraced.__getitem__ = _traced_getitem
    JitTraced.__setitem__ = _traced_setitem
    numpy_protocols.install(JitTraced, set(), _record_numpy)  # np.sin(x), np.sum(x): the namespace's, as on duals
    JitTraced.__getattr__ = _traced_getattr  # (in place of the protocols' refusal: x.sum() is recorded)
    JitTraced.T = property(lambda self: _transposed(self, "T"))
    JitTraced.mT = property(lambda self: _transposed(self, "mT"))
    JitTraced.to_device = lambda self, device, /, *, stream=None: _record_call(Method("to_device"), (self, device),
                                                                               {"stream": stream})
    JitTraced.__array_namespace__ = lambda self, /, *, api_version=None: namespace(backend_of(self.value))
    JitTraced.recording_backend = _recording_backend


_install_operators()
