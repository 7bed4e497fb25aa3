"""The values transforms trace, and the levels that tell them apart.

``Zero`` (a symbolic zero tangent), ``Dual`` (a ``jvp`` value: a primal and a tangent), and the
traced values of ``vmap`` (``Batched``), ``linearize`` (``Recorded``, in a ``Program``) and ``jit``
(``JitTraced``); the conversions of duals (``float(x)`` and friends refuse a live tangent); and the
levels: every running transform call owns one from a single counter (``new_level``), which is how
nested transforms keep their values apart and how a value that escaped a finished call is caught.
The engine that runs primitives on these values is :mod:`cupy_ad.core`.
"""
from __future__ import annotations

import itertools
import math
import operator
import os
import sys
import threading
from typing import Any, Callable


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


class _ArrayValue:
    """What every value of a transform shares: the array attributes of the array it holds (``dtype``,
    ``device``, and by default ``shape``, ``ndim``, ``size``), ``len()``, and Python conversions through
    the subclass's ``_concrete(what)`` (the raw array where the conversion loses nothing, else an error).

    A subclass names the slot holding its array (``class Dual(_ArrayValue, holds="primal")``); the
    attributes read it through ``operator.attrgetter``: one C call, as fast as a property written out
    (these are on the hot path of every rule)."""

    __slots__ = ()

    def __init_subclass__(cls, holds: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if holds:
            for name in ("shape", "dtype", "ndim", "size", "device"):
                setattr(cls, name, property(operator.attrgetter(f"{holds}.{name}"),
                                            doc=f"``{name}`` of the array held in ``{holds}``"))

    def __len__(self) -> int:
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d array")
        return shape[0]

    # Conversions leave the transform's world: allowed only where nothing would be lost.
    def __bool__(self) -> bool:
        return bool(self._concrete("bool()"))

    def __float__(self) -> float:
        return float(self._concrete("float()"))

    def __int__(self) -> int:
        return int(self._concrete("int()"))

    def __complex__(self) -> complex:
        return complex(self._concrete("complex()"))

    def __index__(self) -> int:
        return operator.index(self._concrete("use as an index (__index__)"))


class Dual(_ArrayValue, holds="primal"):
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

    def __repr__(self) -> str:
        return f"Dual(level={self.level}, primal={self.primal!r}, tangent={self.tangent!r})"

    def _concrete(self, what: str) -> Any:
        return concrete(self, what)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> Any:
        raw = _converted(lambda: concrete(self, "NumPy conversion (__array__)"))
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


# NumPy functions that write into an array given to them
NUMPY_WRITERS = frozenset(("copyto", "fill_diagonal", "put", "put_along_axis", "place", "putmask"))


def writes_into(call: str) -> TypeError:
    """The refusal of a NumPy function that would write a value of a transform into an array in place."""
    return TypeError(f"{call} writes into an array in place, which cannot hold a value of jvp, vmap or jit (its "
                     f"tangent, examples or replay would be lost): build the result with the array namespace's "
                     f"functions, xp = x.__array_namespace__(), e.g. a = xp.where(mask, value, a) (for "
                     f"np.fill_diagonal: mask = xp.eye(n, dtype=xp.bool))")


def _converted(convert: Callable[[], Any]) -> Any:
    """``convert()``; where it refuses inside one of NumPy's writers (``np.fill_diagonal(a, x)`` converts x
    itself: NumPy's dispatch looks at ``a`` only), the writer's refusal, which names the fix."""
    try:
        return convert()
    except TypeError:
        frame = sys._getframe(2)  # (the caller of __array__)
        for _ in range(4):
            if frame is None:
                break
            name = frame.f_code.co_name
            if name in NUMPY_WRITERS and frame.f_globals.get("__name__", "").startswith("numpy"):
                raise writes_into(f"np.{name}") from None
            frame = frame.f_back
        raise


class _Traced(_ArrayValue, holds="value"):
    """What ``Batched`` and ``Recorded`` share: the array attributes of ``value`` (``Batched`` gives one
    example's) and conversions that refuse where the value is not one concrete array (a ``Batched`` shared
    by all examples and a ``JitTraced`` constant of the program convert)."""

    __slots__ = ()
    __array_ufunc__ = None  # NumPy defers to our reflected operators
    __array_priority__ = 1000
    _transform = ""

    def _concrete(self, what: str) -> Any:
        return self._refuse(what)

    def _refuse(self, what: str) -> Any:
        raise TypeError(
            f"{what} of a value inside {self._transform}: its data is not one concrete array here. Python "
            f"control flow (if x > 0:, while, bool(), float(), int()) cannot depend on it; use array "
            f"functions instead (e.g. xp.where(x > 0, a, b) in place of an if), or call the function "
            f"outside {self._transform}")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        return _converted(lambda: self._concrete(
            "conversion to a NumPy array (np.asarray in f; a NumPy array indexed by it: index xp.asarray(array) or "
            "use xp.take; or a rule of cupy_ad reading values on the host: eigh and svd read tangents at repeated "
            "eigen/singular values, where the one-sided derivative is not linear in the tangent and there is no "
            "Jacobian)")).__array__(*args, **kwargs)


class Batched(_Traced):
    """A value of a running ``vmap`` (level ``level``): ``value`` holds every example stacked along
    ``axis`` (``None``: one value shared by all examples). ``shape`` is one example's shape; Python
    operators and ``__array_namespace__`` act per example (installed by :mod:`cupy_ad.namespace`)."""

    __slots__ = ("level", "value", "axis", "_view", "_views", "__weakref__")  # _view, _views: as on Dual
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

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        return f"Batched(level={self.level}, axis={self.axis}, value={self.value!r})"

    # A value shared by all examples (axis None: a constant made in f, an unmapped input) is one value: bool(),
    # int(), float(), index and NumPy conversion read it (``_ArrayValue``'s conversions through ``_concrete``).
    def _concrete(self, what: str) -> Any:
        return self.value if self.axis is None else self._refuse(what)


class Recorded(_Traced):
    """A tangent of a running ``linearize`` recording (level ``level``): ``value`` is a stand-in
    (the tangent computed from zeros) and ``var`` its variable in the recorded program."""

    __slots__ = ("level", "value", "var")
    _transform = "linearize"

    def __init__(self, level: int, value: Any, var: "Var"):
        self.level = level
        self.value = value
        self.var = var

    def __repr__(self) -> str:
        return f"Recorded(level={self.level}, var={self.var.index})"


class JitTraced(Recorded):
    """A value of a running ``jit`` recording (level ``level``): ``value`` is the concrete array of the
    recording call and ``var`` its slot in the recorded program. Primitives run their implementation on
    it, and every backend call it reaches is recorded (see :mod:`cupy_ad.transforms.jit`). ``_view``,
    ``_views``: as on ``Dual`` (its views, so that ``x[key] = v`` reaches them)."""

    __slots__ = ("_view", "_views", "__weakref__")
    _transform = "jit"

    def __bool__(self) -> bool:  # a guard: the program is valid for this outcome only
        return program_of(self).guard(self)

    def _concrete(self, what: str) -> Any:  # a constant (computed from no input) is the same in every replay
        if self.var in program_of(self).constant_slots:
            return self.value
        return self._refuse(what)

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        out = super().__array__(*args, **kwargs)  # (a constant's array, else the refusal)
        if out is self.value:  # the program's own constant, which its steps read again at every replay: read-only
            out = out.view()  # (a write into it, np.asarray(c)[:] = 7, changed every replay's result silently)
            out.flags.writeable = False
        return out

    def _refuse(self, what: str) -> Any:
        raise TypeError(
            f"{what} of a traced value inside jit: a number read from an array cannot be replayed (bool() "
            f"can: it records a guard). Keep it an array (xp.where in place of Python arithmetic on it; written into "
            f"a NumPy array, z[i] = x: make z with xp.zeros), pass it through static_argnums, or call the function "
            f"without jit")

    def __repr__(self) -> str:
        return f"JitTraced(level={self.level}, slot={self.var}, value={self.value!r})"


def host_int(x: Any) -> int:
    """``int(x)`` read by a rule on the host to shape its work (``_clusters``' cluster sizes): in a jit
    recording also a guard that a replay sees the same value (else the call is recorded again), where
    ``int()`` of a traced value in user code is refused."""
    if type(x) is JitTraced:
        return program_of(x).value_guard(x)
    return int(x)


def host_effect(fn: Callable, *xs: Any) -> None:
    """``fn(*xs)`` run on the host for an effect only (a rule's warning) on the concrete arrays of ``xs``:
    in a jit recording also a step of the program, so that each replay has it on its own values."""
    traced = next((x for x in xs if type(x) is JitTraced), None)
    if traced is None:
        fn(*xs)
    else:
        program_of(traced).effect(fn, xs)


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


LEVELLED_TYPES = frozenset((Dual, Batched, Recorded, JitTraced))


def levelled(x: Any) -> bool:
    """Whether ``x`` is a value of a running transform (not a raw array or a Python scalar)."""
    return type(x) in LEVELLED_TYPES


class _Levels(threading.local):
    def __init__(self) -> None:
        self.active: list[int] = []  # the levels of the running jvp calls, innermost last
        self.stack: list[tuple[int, str]] = []  # (level, kind) of every running transform, innermost last
        self.alive: set[int] = set()
        self.programs: dict[int, Any] = {}  # the recordings of running linearize (Program) and jit calls


LEVELS = _Levels()
_next_level = itertools.count(1)


def current_level() -> int:
    """The level of the innermost running ``jvp`` (0 outside any)."""
    active = LEVELS.active
    return active[-1] if active else 0


def active_levels() -> list[int]:
    """The levels of the running ``jvp`` calls, outermost first."""
    return list(LEVELS.active)


def constant(x: Any) -> Any:
    """A new constant array as a value of the innermost transform's level (a zero tangent, or shared by
    all examples), so that operators between it and traced values dispatch through them, whatever the
    backend."""
    if not LEVELS.stack:
        return x
    level, kind = LEVELS.stack[-1]
    if kind == "jvp":
        return Dual(level, x, Zero.like(x))
    if kind == "jit":
        return LEVELS.programs[level].constant(x)
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
        self.program = program  # kinds "record" (a linearize Program) and "jit" (see cupy_ad.transforms.jit)

    def __enter__(self) -> int:
        level = self.level = next(_next_level)
        if self.kind == "jvp":
            LEVELS.active.append(level)
        elif self.kind in ("record", "jit"):
            LEVELS.programs[level] = self.program
        LEVELS.stack.append((level, self.kind))
        LEVELS.alive.add(level)
        return level

    def __exit__(self, *exc: Any) -> None:
        if self.kind == "jvp":
            LEVELS.active.pop()
        LEVELS.programs.pop(self.level, None)
        LEVELS.stack.pop()
        LEVELS.alive.discard(self.level)


def program_of(traced: Recorded) -> Any:
    """The program recorded so far by the running recording of ``traced`` (a ``jit`` or ``linearize``
    value; ``ValueError`` naming that transform if its recording does not run here: the value escaped
    a finished call, or was handed to another thread)."""
    program = LEVELS.programs.get(traced.level)
    if program is None:
        raise _escaped(traced._transform)
    return program


def _escaped(kind: str) -> ValueError:
    return ValueError(f"a value from a finished {kind} call was used (it escaped, e.g. through a closure or a "
                      f"global, or was handed to another thread); pass it as an input of the {kind} instead")


def check_alive(x: Any) -> None:
    """Raise if ``x`` holds a value of a transform call (``jvp``, ``vmap``, ``linearize``) that has finished."""
    while type(x) in LEVELLED_TYPES:
        if x.level not in LEVELS.alive:
            raise _escaped({Dual: "jvp", Batched: "vmap", Recorded: "linearize", JitTraced: "jit"}[type(x)])
        x = x.primal if type(x) is Dual else x.value
