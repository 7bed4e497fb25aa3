"""``jit``: a call's program recorded once per signature, replayed without dispatch.

Recording. The first call with a new signature runs ``f`` on ``JitTraced`` values of a recording
level below every other: each holds the concrete array of this call and a slot of the program.
``bind`` runs a primitive's implementation directly on them (no rule), and the implementation's
backend calls go through a recording proxy of the backend (``backend_of`` of a traced value): every
call with a traced argument runs on the concrete arrays and appends a step ``(function, input slots,
output slots)``; a call without one runs once, here, and its result is a constant of the program
(constant folding). Operators, indexing and methods on traced values are recorded the same way
(``x[key] = v`` and ``x += v`` record an updated copy and rebind ``x``, its base if it is a
basic-indexing view, and its live views, as writes into shared memory behave eagerly), and so are the
NumPy functions the namespace has no equivalent for (``_record_numpy``; the others run the
namespace's, as on duals). So
the steps are the backend's own functions (``numpy.add``, a LAPACK wrapper) on raw arrays: JVP
rules, symbolic zeros, ``Dual`` objects and ``bind`` leave no trace in them.

Transforms of the inputs. Duals (``jvp``) and batched values (``vmap``) among the inputs are taken
apart into raw slots: the recording opens a fresh level of the same kind for each of them, above its
own, and rebuilds the inputs there, so the whole jvp-expanded (or batched) computation is recorded
on raw arrays; the outputs are rebuilt with the caller's levels. ``jit(jvp(f))``, ``jvp(jit(f))``,
``vmap(jit(f))``, ``jacfwd(jit(f))`` and ``scan(jit(body), ...)`` all work (``scan`` looks the body's program up
once and replays it per step with no signature check: ``jit_step``); ``jit``
of a function that calls ``scan`` records the loop unrolled. Inside a running recording, and on
``linearize``'s recorded values, ``jit(f)`` simply calls ``f``.

Replay. Steps whose outputs no output needs are dropped (dead code); calls that depend on no input
ran once at recording (constant folding); a negation is folded into the sum or difference using it
(``a + (-b)``: ``a - b``, the same IEEE result) and a call repeating an earlier one (``b * a`` after
``a * b`` included) runs once. The program is then written out as the Python source of
one function: a line per step (``v7 = g3(v5, v6)``, calls with lists and keywords written as they
were made, methods as methods), every slot a local variable dropped after its last use (as eager
code frees its temporaries), functions and constants its globals; the backend may swap a function
for one computing the same result with less Python around the kernel (``replay_form``: NumPy drops
array_api_compat's one-call wrappers). Where the backend fuses (CuPy: ``cupy.fuse``), each run of
consecutive elementwise steps on arrays becomes one step, one kernel (a Python scalar operand ends a
run: how a fused kernel types it is not pinned to the eager ufunc's rule), agreeing with the eager
kernels within rounding (the compiler may contract a product and a sum). A replay is that
function's call: the backend's calls and nothing else (about 0.05 us of Python per step). Large
elementwise steps write into a dead temporary the program owns and only elementwise steps read, so
no view of it exists whatever the inputs' memory order (``out=``, where the backend has that form:
NumPy's ufuncs); nothing else is ever written, inputs and constants least of all. Compiling the
source costs about 40 us a step, once per signature (the recording itself costs more).

Signature: the pytree structure of the arguments, every array's type, shape and dtype, the dual /
batched structure of every input (levels by rank, batch axes, symbolic-zero tangents), the values of
``static_argnums`` arguments and of Python scalars, floats bit for bit (0.0 and -0.0 differ, a NaN
matches a NaN): they are constants of the program, so a changed one means a new recording. As with
``jax.jit``, a global or closed-over value that changes between calls is not seen: the program keeps
the value of the recording call (a closed-over array written in place is partly seen: its constant-folded
uses are not, the steps combining it with an argument read it again; pass such an array as an argument).

Value-dependent Python control flow: ``bool()`` of a traced value (``if``, ``while``, the host checks
of the linear-algebra rules; the integers they read, ``values.host_int``: ``value_guard``) records a
guard: a replay whose outcome differs stops and the call is recorded again for the new outcome (up to
``MAX_VARIANTS`` programs per signature, then an error). So
does an array whose shape follows values (``x[mask]``, ``nonzero``, ``unique_*``: ``_VALUE_SHAPED``): Python
may have read its shape (``.shape[0]``, a rule's zeros), so a replay checks it (``shape_guard``).
``float()``, ``int()``, ``.item()`` and conversion to NumPy raise a ``TypeError``: a number read from
a traced value cannot be replayed. Errors are control flow too (``try: cholesky(a)`` ``except
LinAlgError:`` a fallback): a backend call that raised at recording is replayed as a check that it
still raises (``raises``), and an error in a replay is taken as a divergence: the call is recorded
again, so ``f`` itself meets the error, handles it or raises it, as eagerly.

Threads: replays run concurrently (a replay holds its temporaries in its own frame); the recordings of
one signature of a jitted function run one at a time, and a thread that waited for one first replays
what was recorded.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import operator
import struct
import threading
import types
import weakref
from typing import Any, Callable

import optree

from ..backends import backend_of
from ..values import Batched, Dual, JitTraced, Recorded, Zero, new_level, program_of
from ..namespace import namespace, numpy_protocols
from ..namespace.indexing import _is_basic
from .jit_program import (Call, Diverged, Flattening, Method, Program, _is_array, build, guard, raises, rebuild,
                          shape_guard, value_guard)

MAX_VARIANTS = 8


class _Inline(Exception):
    """The call cannot be compiled on its own (inside a recording, or on linearize's values)."""


_running = threading.local()


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
        self.values: list = []
        self.constant_slots: set[int] = set()
        self.steps: list[tuple] = []  # (function, input slots, output slot or slots)

    def slot(self, value: Any) -> JitTraced:
        self.values.append(value)
        return JitTraced(self.level, value, len(self.values) - 1)

    def constant(self, x: Any) -> JitTraced:
        """``values.constant`` inside the recording: a constant slot (operators on it are recorded)."""
        traced = self.slot(x)
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


def _record_call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """``fn(*args, **kwargs)``; with traced arguments, on their values, appended to their recording."""
    leaves, spec = optree.tree_flatten((args, kwargs), none_is_leaf=True)
    traced = [k for k, v in enumerate(leaves) if type(v) is JitTraced]
    if not traced:
        return fn(*args, **kwargs)
    if any(type(v) in (Dual, Batched, Recorded) for v in leaves):
        raise _leak_error()
    level = leaves[traced[0]].level
    recording = program_of(level)
    if any(leaves[k].level != level for k in traced):
        raise _leak_error()
    values = list(leaves)
    for k in traced:
        values[k] = leaves[k].value
    call_args, call_kwargs = optree.tree_unflatten(spec, values)
    try:
        result = fn(*call_args, **call_kwargs)
    except Exception as error:  # f may handle it (a fallback when cholesky fails): a replay checks it raises
        recording.steps.append((raises(_unflattening(fn, spec, leaves, traced), type(error)),
                                [leaves[k].var for k in traced], None))
        raise
    if all(leaves[k].var in recording.constant_slots for k in traced):  # constant folding: computed once, here
        return optree.tree_map(lambda v: recording.constant(v) if _is_array(v) else v, result, none_is_leaf=True)
    if not kwargs and len(traced) == sum(type(a) is JitTraced for a in args):  # traced values: positional only
        slots = [a.var if type(a) is JitTraced else recording.constant(a).var for a in args]
        step = fn
    else:
        slots = [leaves[k].var for k in traced]
        step = Call.of(fn, args, kwargs, len(traced)) or _unflattening(fn, spec, leaves, traced)
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
    if _value_shaped(fn, args):
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
        return functools.partial(lambda *args, **kwargs: _record_call(Method(name), args, kwargs), self)
    if _is_array(attr):
        return _record_call(_getter(name), (self,), {})
    return attr


def _set(value: Any, key: Any, item: Any) -> Any:
    out = value.__array_namespace__().asarray(value, copy=True)  # never written: a copy
    out[key] = item
    return out


def _traced_getitem(self: JitTraced, key: Any) -> Any:
    """``self[key]``; with basic indexing the result is a view of ``self``: writes into it reach ``self``."""
    out = _record_call(operator.getitem, (self, key), {})
    if type(out) is JitTraced and _is_basic(key):
        out._view = (self, key)
        if getattr(self, "_views", None) is None:
            self._views = []
        self._views.append(weakref.ref(out))
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
        _assign(base, _record_call(_set, (base, key, new), {}))  # refreshes x among the base's views


def _rebind(x: JitTraced, new: JitTraced) -> None:
    x.value, x.var = new.value, new.var
    for ref in getattr(x, "_views", None) or ():
        view = ref()
        if view is not None:
            _rebind(view, _record_call(operator.getitem, (x, view._view[1]), {}))


# NumPy functions that write into an argument (no ``out=`` to see it by)
_WRITING = frozenset(("copyto", "fill_diagonal", "put", "put_along_axis", "place", "putmask"))


def _record_numpy(function: Callable, args: tuple, kwargs: dict) -> Any:
    """A NumPy function (or ufunc method) without an equivalent in the namespace (or given arguments that
    the equivalent lacks: ``np.round(x, 2)``), on a plain jit's traced values: recorded as it is (no JVP rule is needed; the replay calls the same function). Refused where it
    writes into an argument; left to the duals' refusal where a jvp or vmap value takes part."""
    name = getattr(function, "__name__", repr(function))
    out = kwargs.get("out")
    if name in _WRITING or (out is not None and any(o is not None for o in (out if isinstance(out, tuple) else (out,)))):
        raise TypeError(f"jit: np.{name} writes into an array in place, which a replay cannot repeat safely; use "
                        f"the array the functions of the namespace return")
    if any(type(v) in (Dual, Batched, Recorded) for v in optree.tree_leaves((args, kwargs), none_is_leaf=True)):
        return NotImplemented
    return _record_call(function, args, kwargs)


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
            _assign(self, result)
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
    JitTraced.T = property(lambda self: _record_call(_getter("T"), (self,), {}))
    JitTraced.mT = property(lambda self: _record_call(_getter("mT"), (self,), {}))
    JitTraced.to_device = lambda self, device, /, *, stream=None: _record_call(Method("to_device"), (self, device),
                                                                               {"stream": stream})
    JitTraced.__array_namespace__ = lambda self, /, *, api_version=None: namespace(backend_of(self.value))
    JitTraced.recording_backend = _recording_backend


_install_operators()


# ------------------------------------------------------------------------------------ signatures
_RAW_TYPES: set = set()  # the types of the plain arrays met among the arguments


def _bits(v: Any) -> Any:
    """``v`` as a key equal for equal bits: 0.0 and -0.0 differ (1 / x differs), a NaN equals itself."""
    kind = type(v)
    if isinstance(v, (float, complex)):
        return kind, struct.pack("<2d", v.real, v.imag)
    if kind is tuple:
        return kind, tuple(map(_bits, v))
    if kind is slice:  # (unhashable before Python 3.12)
        return kind, _bits((v.start, v.stop, v.step))
    return kind, v


class _Exact:
    """A Python value of a signature (argument or static argument), compared and hashed by ``_bits``."""

    __slots__ = ("value", "key")

    def __init__(self, value: Any):
        self.value, self.key = value, _bits(value)

    def __eq__(self, other: Any) -> bool:
        return type(other) is _Exact and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def _describe(v: Any, levels: dict, raws: list) -> Any:
    """The signature of one input leaf; its raw arrays appended to ``raws`` (primal before tangent)."""
    cls = type(v)
    if cls is Dual:
        levels[v.level] = "jvp"
        t = v.tangent
        primal = _describe(v.primal, levels, raws)
        return ("D", v.level, primal, ("Z", tuple(t.shape), t.dtype) if type(t) is Zero else _describe(t, levels, raws),
                v.weak)  # (a Python scalar's weak type: namespace.weak)
    if cls is Batched:
        levels[v.level] = "vmap"
        return ("B", v.level, v.axis, _describe(v.value, levels, raws))
    if cls is Recorded or cls is JitTraced:
        raise _Inline
    if _is_array(v):
        if cls is not Zero:
            _RAW_TYPES.add(cls)
        raws.append(v)
        return (cls, v.shape, v.dtype)
    return ("S", cls, _Exact(v))  # a Python value: part of the signature (1, 1.0 and True differ)


def _ranked(d: Any, rank: dict) -> Any:
    if d[0] == "D":
        return ("D", rank[d[1]], _ranked(d[2], rank), d[3] if d[3][0] == "Z" else _ranked(d[3], rank), d[4])
    if d[0] == "B":
        return ("B", rank[d[1]], d[2], _ranked(d[3], rank))
    return d


def _rebuild(d: Any, raws: Any, levels: list) -> Any:
    """An input leaf from its signature (levels by rank): raw leaves from the iterator ``raws``, in order."""
    return rebuild(d, levels, lambda leaf: leaf[2].value if leaf[0] == "S" else next(raws))


def _output(v: Any, recording: _Recording, rank: dict) -> Any:
    cls = type(v)
    if cls is JitTraced:
        if v.level != recording.level:
            raise _leak_error()
        return ("C", v.value) if v.var in recording.constant_slots else ("V", v.var)
    if cls is Dual or cls is Batched:
        if v.level not in rank:
            raise _leak_error()
        if cls is Batched:
            return ("B", rank[v.level], v.axis, _output(v.value, recording, rank))
        t = v.tangent
        return ("D", rank[v.level], _output(v.primal, recording, rank),
                ("Z", tuple(t.shape), t.dtype) if type(t) is Zero else _output(t, recording, rank), v.weak)
    if cls is Recorded:
        raise _leak_error()
    return ("C", v) if _is_array(v) and cls is not Zero else ("S", None, v)


def _signature(leaves: list) -> tuple[list, tuple, dict]:
    """The raw arrays of the input leaves (primal before tangent), their signature (levels by rank) and
    the kind of each level met (``_Inline``: linearize's or a recording's values among them)."""
    kinds: dict = {}
    if all(type(v) in _RAW_TYPES for v in leaves):  # plain arrays only: the signature in one pass
        return leaves, tuple([(type(v), v.shape, v.dtype) for v in leaves]), kinds
    raws: list = []
    signature = [_describe(v, kinds, raws) for v in leaves]
    if not kinds:
        return raws, tuple(signature), kinds
    rank = {level: k for k, level in enumerate(sorted(kinds))}
    return raws, tuple(_ranked(d, rank) for d in signature), kinds


def _key(spec: Any, static: dict, ranked: tuple, kinds: dict) -> tuple:
    """The cache key of a call (``TypeError`` if a static or Python value is not hashable)."""
    key = (spec, tuple(sorted((k, _Exact(v)) for k, v in static.items())), ranked,
           tuple(kinds[level] for level in sorted(kinds)))
    hash(key)
    return key


def _record(f: Callable, spec: Any, n_args: int, static: dict, signature: list, kinds: list, raws: list,
            outer: list) -> tuple[Program, Any]:
    """Record ``f`` on this call; the program and this call's outputs (built with the ``outer`` levels)."""
    recording = _Recording()
    _running.depth = getattr(_running, "depth", 0) + 1
    try:
        with contextlib.ExitStack() as stack:
            recording.level = stack.enter_context(new_level("jit", recording))
            inner = [stack.enter_context(new_level(kind)) for kind in kinds]  # by rank, above the recording
            traced = iter([recording.slot(r) for r in raws])
            dynamic, kwargs = optree.tree_unflatten(spec, [_rebuild(d, traced, inner) for d in signature])
            dynamic = iter(dynamic)
            out = f(*[static[k] if k in static else next(dynamic) for k in range(n_args)], **kwargs)
            out_leaves, out_spec = optree.tree_flatten(out, none_is_leaf=True)
            rank = {level: k for k, level in enumerate(inner)}
            outputs = [_output(v, recording, rank) for v in out_leaves]
    finally:
        _running.depth -= 1
    program = Program(recording, len(raws), outputs, out_spec)
    env = recording.values + [None]
    return program, optree.tree_unflatten(out_spec, [build(d, env, outer) for d in outputs])


def _static_positions(f: Callable, static_argnums: Any) -> tuple[int, ...]:
    """``static_argnums`` as a tuple, checked against ``f``'s positional parameters where its signature
    lists them (negative positions counted from the last of them, as in JAX)."""
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    if any(type(k) is not int for k in nums):
        raise TypeError(f"jit: static_argnums must be an int or a tuple of ints, got {static_argnums!r}")
    try:
        parameters = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):  # (no signature: checked per call)
        return nums
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return nums
    n = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    if any(not -n <= k < n for k in nums):
        raise ValueError(f"jit: static_argnums={static_argnums!r} but f takes {n} positional argument(s)")
    return tuple(k % n for k in nums)


def jit(f: Callable[..., Any], static_argnums: int | tuple[int, ...] = ()) -> Callable:
    """``f`` compiled: its program recorded on the first call of each signature, then replayed.

    The replay calls the backend's functions in a flat loop on raw arrays (no rules, no ``Dual``
    objects, no ``bind``); results equal ``f``'s bit for bit where the same kernels run (they do:
    the steps are the calls ``f`` made), and within rounding where the backend fuses elementwise
    runs into one kernel (CuPy). Composes with ``jvp``, ``vmap``, ``jacfwd``, ``scan`` in
    either order (see the module docstring). ``static_argnums``: positional arguments passed as they
    are and part of the signature by value (hashable; passed by keyword instead, a Python value is part
    of the signature as any other; an index beyond ``f``'s positional parameters is refused). Python
    scalars among the arguments are part of the signature too (pass 0-d arrays for values that change
    from call to call). A changed global or closed-over value is not seen by a replay, as with
    ``jax.jit``. ``bool()`` of a traced value
    records a guard (a new outcome: a new recording); ``float()``, ``int()`` raise a ``TypeError``.
    """
    if not callable(f):
        raise TypeError(f"jit: f must be callable, got {type(f).__name__}")
    static_nums = _static_positions(f, static_argnums)
    cache: dict = {}
    by_arrays: dict = {}  # the same programs by the signature of positional plain arrays
    # One recording of a signature at a time: threads meeting a new signature together recorded it once
    # each, filling its MAX_VARIANTS with copies (then a new guard outcome was refused) and leaving scan's
    # ``program_for`` none to use. A thread that waited replays what the other recorded.
    recording_locks: dict = {}

    @functools.wraps(f)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        if getattr(_running, "depth", 0):
            return f(*args, **kwargs)  # inside a recording: part of the enclosing program
        plain = None  # positional plain arrays only: their types, shapes and dtypes are the whole signature
        if not kwargs and not static_nums and all(type(a) in _RAW_TYPES for a in args):
            plain = tuple([(type(a), a.shape, a.dtype) for a in args])
            variants = by_arrays.get(plain)
            if variants:
                for program in variants:
                    try:
                        return program.replay(args, [])
                    except Exception:  # (Diverged, or an error that f may handle: see below)
                        continue
        static: dict = {}
        nums = {k if k >= 0 else k + len(args) for k in static_nums} & set(range(len(args)))
        if nums:  # (a static argument not passed positionally, by keyword or its default, is not among args)
            static = {k: args[k] for k in nums}
            args_ = tuple(a for k, a in enumerate(args) if k not in nums)
        else:
            args_ = args
        leaves, spec = optree.tree_flatten((args_, kwargs), none_is_leaf=True)
        try:
            raws, ranked, kinds = _signature(leaves)
        except _Inline:
            return f(*args, **kwargs)
        try:
            key = _key(spec, static, ranked, kinds)
        except TypeError:
            raise TypeError("jit: static arguments and Python values among the arguments must be hashable") from None
        variants = cache.setdefault(key, [])
        levels = sorted(kinds)  # the caller's levels, by rank
        if plain is not None:
            by_arrays[plain] = variants
        tried = 0
        for program in variants:
            try:
                return program.replay(raws, levels)
            except Exception:  # Diverged, or an error that f may handle (its recording runs f: as eagerly)
                tried += 1
        with recording_locks.setdefault(key, threading.Lock()):
            for program in variants[tried:]:  # (recorded by another thread while this one waited)
                try:
                    return program.replay(raws, levels)
                except Exception:
                    continue
            if len(variants) >= MAX_VARIANTS:
                raise RuntimeError(f"jit: {MAX_VARIANTS} recordings of one signature differ in Python control flow "
                                   f"on traced values (bool() of an array) or in shapes that follow values (x[mask], "
                                   f"nonzero, unique); use xp.where, or call f without jit")
            program, out = _record(f, spec, len(args), static, list(ranked), [kinds[level] for level in levels],
                                   raws, levels)
            variants.append(program)
        return out

    def program_for(*args: Any) -> tuple[Program, list] | None:
        """The one program recorded for the signature of ``args`` (positional, no static arguments) and
        the caller's levels by rank; ``None`` if none or several (guards) were recorded. For ``scan``,
        which replays it per step (``jit_step``)."""
        if static_nums or getattr(_running, "depth", 0):
            return None
        leaves, spec = optree.tree_flatten((args, {}), none_is_leaf=True)
        try:
            _, ranked, kinds = _signature(leaves)
            variants = cache.get(_key(spec, {}, ranked, kinds), ())
        except (_Inline, TypeError):
            return None
        return (variants[0], sorted(kinds)) if len(variants) == 1 else None

    compiled.cache = cache  # type: ignore[attr-defined]
    compiled.program_for = program_for  # type: ignore[attr-defined]
    return compiled


__all__ = ["MAX_VARIANTS", "jit"]
