"""The tracing engine: symbolic zeros, dual values with levels, primitives and ``bind``.

Eager forward mode in the style of JAX's autodidax. A ``Dual`` at level k pairs a primal with a
tangent; either may itself be a ``Dual`` of a lower level, which is how nested ``jvp`` computes
higher derivatives without perturbation confusion. ``bind`` runs a primitive's implementation on
raw arrays, or its JVP rule at the highest level present among the arguments.
"""
from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable

from .profiling_ranges import nvtx_range


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
    """The raw array under all levels of duals (``ad.primal_value``: the tangents are dropped)."""
    while type(x) is Dual:
        x = x.primal
    return x


class Primitive:
    """An operation with an implementation on raw arrays and a JVP rule.

    ``impl(*args, **params)`` computes on raw arrays. ``jvp(primals, tangents, **params)`` returns
    ``(outputs, output_tangents)``; it is written with the namespace and other primitives so that
    it nests. Tangents may be ``Zero``; when every tangent is ``Zero`` the rule is not called.
    """

    # __signature__: the public signature (``inspect.signature``, ``help``) where the namespace sets one
    __slots__ = ("name", "impl", "jvp", "multiple_results", "_primal_range", "_jvp_range", "__signature__")

    def __init__(self, name: str, impl: Callable, jvp: Callable | None = None, *,
                 multiple_results: bool = False):
        self.name = name
        self.impl = impl
        self.jvp = jvp
        self.multiple_results = multiple_results
        self._primal_range = nvtx_range(f"cupy_ad/{name}/primal")
        self._jvp_range = nvtx_range(f"cupy_ad/{name}/jvp")

    def def_jvp(self, rule: Callable) -> Callable:
        self.jvp = rule
        return rule

    def __repr__(self) -> str:
        return f"Primitive({self.name})"


def bind(prim: Primitive, *args: Any, **params: Any) -> Any:
    """Apply ``prim``: its implementation on raw arrays, its JVP rule at the top dual level."""
    level = 0
    for a in args:
        if type(a) is Dual and a.level > level:
            level = a.level
    if level == 0:
        with prim._primal_range:
            return prim.impl(*args, **params)
    if level not in _levels.active:
        check_alive(next(a for a in args if type(a) is Dual and a.level == level))
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
        with prim._jvp_range:
            out, out_tangent = prim.jvp(primals, tangents, **params)
    else:
        out = bind(prim, *primals, **params)
        out_tangent = tuple(map(Zero.like, out)) if prim.multiple_results else Zero.like(out)
    if prim.multiple_results:
        return tuple(Dual(level, o, t) for o, t in zip(out, out_tangent))
    return Dual(level, out, out_tangent)


Primitive.__call__ = bind  # type: ignore[method-assign]  # prim(*args) is bind(prim, *args), one frame less


class _Levels(threading.local):
    def __init__(self) -> None:
        self.active: list[int] = []  # the levels of the running jvp calls, innermost last


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
    """A new constant array as a value of the current level (zero tangent), so that operators
    between it and dual values dispatch through the dual, whatever the backend."""
    level = current_level()
    return Dual(level, x, Zero.like(x)) if level else x


class new_level:
    """Context manager giving each ``jvp`` call a level of its own.

    Levels are never reused: a nested call's level is above its caller's, and a dual that escaped
    from a finished call (kept in a closure, say) is recognised as dead instead of being confused
    with the perturbation of a later call.
    """

    def __enter__(self) -> int:
        level = next(_next_level)
        _levels.active.append(level)
        return level

    def __exit__(self, *exc: Any) -> None:
        _levels.active.pop()


def check_alive(x: Any) -> None:
    """Raise if ``x`` holds a dual of a ``jvp`` call that has finished."""
    while type(x) is Dual:
        if x.level not in _levels.active:
            raise ValueError(
                "a dual value from a finished jvp call was used (it escaped, e.g. through a closure or a "
                "global); pass it as an input of the jvp instead")
        x = x.primal
