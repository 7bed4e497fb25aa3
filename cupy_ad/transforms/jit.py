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
namespace's, as on duals): all of this in ``jit_recording``. So the steps are the backend's own
functions (``numpy.add``, a LAPACK wrapper) on raw arrays: JVP rules, symbolic zeros, ``Dual``
objects and ``bind`` leave no trace in them.

Transforms of the inputs. Duals (``jvp``) and batched values (``vmap``) among the inputs are taken
apart into raw slots: the recording opens a fresh level of the same kind for each of them, above its
own, and rebuilds the inputs there, so the whole jvp-expanded (or batched) computation is recorded
on raw arrays; the outputs are rebuilt with the caller's levels. ``jit(jvp(f))``, ``jvp(jit(f))``,
``vmap(jit(f))``, ``jacfwd(jit(f))`` and ``scan(jit(body), ...)`` all work (``scan`` looks the body's program up
once and replays it per step with no signature check, and keeps its fixed point's outcome per signature:
``jit_step``); ``jit`` of a function that calls ``scan`` records the loop unrolled. Inside a running recording, and on
``linearize``'s recorded values, ``jit(f)`` simply calls ``f``.

Replay. Steps whose outputs no output needs are dropped (dead code), unless they may raise on values
(``jit_program._droppable``: a ``try: cholesky(a)`` kept as a check; under a caller error state that raises,
any arithmetic); calls that depend on no input ran once at recording (constant folding); a negation is
folded into the sum or difference using it (``a + (-b)``: ``a - b``, the same IEEE result) and a call
repeating an earlier one (``b * a`` after ``a * b`` included, unless complex: NumPy rounds those two differently)
runs once. The program is then written out as the Python source of
one function: a line per step (``v7 = g3(v5, v6)``, calls with lists and keywords written as they
were made, methods as methods), every slot a local variable dropped after its last use (as eager
code frees its temporaries), functions and constants its globals; the backend may swap a function
for one computing the same result with less Python around the kernel (``replay_form``: NumPy drops
array_api_compat's one-call wrappers, and a matrix product of real matrices or a matrix and a vector (neither
of one element: dot takes that for a scalar) runs ``ndarray.dot``, the same BLAS call without matmul's gufunc
machinery, where both operands are dense: aligned and C or F contiguous, as the program's own ufunc and
product results always are and its inputs are checked for once on entry; a replay with other input layouts
runs the program compiled with per-call checks;
``numpy.stack`` of such dense vectors is their concatenation reshaped). Where the backend fuses (CuPy:
``cupy.fuse``), each run of consecutive elementwise steps on arrays becomes one step, one kernel (a Python
scalar operand ends a run: how a fused kernel types it is not pinned to the eager ufunc's rule), agreeing
with the eager kernels within rounding (the compiler may contract a product and a sum). A replay is that
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
the value of the recording call: a raw array it uses (closed over, or made by NumPy in ``f``) is copied
as it is at that use (``_Recording.captured``), so a write into it, later in ``f`` or between calls, is not
seen by a replay.

Value-dependent Python control flow: ``bool()`` of a traced value (``if``, ``while``, the host checks
of the linear-algebra rules; the integers they read, ``values.host_int``: ``value_guard``) records a
guard: a replay whose outcome differs stops and the call is recorded again for the new outcome (up to
``MAX_VARIANTS`` programs per signature, then an error). So
does an array whose shape follows values (``x[mask]``, ``nonzero``, ``unique_*``: ``_VALUE_SHAPED``): Python
may have read its shape (``.shape[0]``, a rule's zeros), so a replay checks it (``shape_guard``).
``float()``, ``int()``, ``.item()`` and conversion to NumPy raise a ``TypeError``: a number read from
a traced value cannot be replayed (one read from a constant of the program converts).
Errors are control flow too (``try: cholesky(a)`` ``except
LinAlgError:`` a fallback): a backend call that raised at recording is replayed as a check that it
still raises (``raises``), and an error in a replay is taken as a divergence: the call is recorded
again, so ``f`` itself meets the error, handles it or raises it, as eagerly. NumPy's error state set
inside ``f`` (``np.errstate``) is part of the program: a step keeps what ``f`` changed of the caller's
state at the recording (``backends.error_state_change``) and a replay sets that around the step; the
other steps run in the caller's state at the replay. (A program recorded under a caller state that raises
on some error replays only under that state: f's own ``divide="raise"`` inside it is no change to keep.)
A rule's warning (``values.host_effect``: the nested degenerate check) is a step of its own: each replay
warns, from its own values, as the eager call does.

Threads: replays run concurrently (a replay holds its temporaries in its own frame); the recordings of
one signature of a jitted function run one at a time, and a thread that waited for one first replays
what was recorded (so ``f`` must not wait, while it is recorded, for another thread calling the same
jitted function on the same signature: that thread waits for the recording).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import struct
import threading
from typing import Any, Callable

import optree

from ..values import LEVELLED_TYPES, Batched, Dual, JitTraced, Recorded, Zero, new_level
from .jit_guards import Diverged
from .jit_program import Program, _is_array, build, rebuild
from .jit_recording import _leak_error, _Recording
from .jit_step import SettledPatterns
from .jvp import call_user_function

MAX_VARIANTS = 8


class _Inline(Exception):
    """The call cannot be compiled on its own (inside a recording, or on linearize's values)."""


_running = threading.local()


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
    if cls in _RAW_TYPES:  # (a plain array of a type met before)
        raws.append(v)
        return (cls, v.shape, v.dtype)
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


def _unhashable(static: dict, leaves: list) -> str:
    """The error for a call with a static argument or a Python value that does not hash: which, and the fix."""
    named = [(f"static argument {k}", v) for k, v in sorted(static.items())]
    named += [("a Python value among the arguments", v) for v in leaves
              if type(v) not in LEVELLED_TYPES and not _is_array(v)]
    where, value = next((where, v) for where, v in named if not _hashes(v))
    return (f"jit: {where} ({type(value).__name__}) is part of the signature by value and must be hashable: pass a "
            f"tuple for a list, an object defining __hash__, or an array as an ordinary argument (not in "
            f"static_argnums), which is traced")


def _hashes(v: Any) -> bool:
    try:
        hash(_Exact(v))
    except TypeError:
        return False
    return True


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
            out = call_user_function(f, *[static[k] if k in static else next(dynamic) for k in range(n_args)], **kwargs)
            out_leaves, out_spec = optree.tree_flatten(out, none_is_leaf=True)
            rank = {level: k for k, level in enumerate(inner)}
            outputs = [_output(v, recording, rank) for v in out_leaves]
    finally:
        _running.depth -= 1
        recording.captures.clear()  # (the caller's arrays: the program keeps only their copies)
    program = Program(recording, len(raws), outputs, out_spec)
    env = recording.values + [None]
    return program, optree.tree_unflatten(out_spec, [build(d, env, outer) for d in outputs])


_MISSED = object()  # no recorded program fits a call


def _replay_first(variants: list, start: int, raws: list, levels: list) -> tuple[Any, int, Exception | None]:
    """The outputs of the first program of ``variants[start:]`` whose replay neither diverges nor raises (else
    ``_MISSED``), the index after the last one tried, and the last error a replay raised (an error that f may
    handle: its recording runs f, which meets the error as eagerly)."""
    error = None
    for k in range(start, len(variants)):
        try:
            return variants[k].replay(raws, levels), k + 1, error
        except Diverged:
            pass
        except Exception as raised:
            error = raised
    return _MISSED, len(variants), error


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
    scalars among the arguments are part of the signature too (pass 0-d arrays, of the dtype to compute
    in, for values that change from call to call: jax.jit's weakly typed tracing of a Python scalar
    would need weak traced values in every call they meet, see the README). A changed global or
    closed-over value is not seen by a replay, as with ``jax.jit``. ``bool()`` of a traced value
    records a guard (a new outcome: a new recording); ``float()``, ``int()`` raise a ``TypeError`` (but
    on constants of the program, computed from no input).
    """
    if not callable(f):
        raise TypeError(f"jit: f must be callable, got {type(f).__name__}")
    static_nums = _static_positions(f, static_argnums)
    cache: dict = {}
    by_arrays: dict = {}  # the same programs by the signature of positional plain arrays
    # One recording of a signature at a time: threads meeting a new signature together recorded it once
    # each, filling its MAX_VARIANTS with copies (then a new guard outcome was refused) and leaving scan's
    # ``program_for`` none to use. A thread that waited replays what the other recorded. (One lock per key of
    # ``cache``, made at its first miss and kept as long as its programs, which outweigh it a hundredfold.)
    recording_locks: dict = {}
    scan_patterns = SettledPatterns()  # scan's settled tangent patterns over this body (jit_step)

    @functools.wraps(f)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        if getattr(_running, "depth", 0):
            return f(*args, **kwargs)  # inside a recording: part of the enclosing program
        plain = None  # positional plain arrays only: their types, shapes and dtypes are the whole signature
        tried, error = 0, None  # (the programs of the call's signature replayed, each once, and the last error)
        if not kwargs and not static_nums and all(type(a) in _RAW_TYPES for a in args):
            plain = tuple([(type(a), a.shape, a.dtype) for a in args])
            variants = by_arrays.get(plain)
            if variants:
                out, tried, error = _replay_first(variants, 0, args, [])
                if out is not _MISSED:
                    return out
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
            raise TypeError(_unhashable(static, leaves)) from None
        variants = cache.setdefault(key, [])  # (by_arrays[plain]'s list: a plain call's key follows from plain)
        levels = sorted(kinds)  # the caller's levels, by rank
        if plain is not None:
            by_arrays[plain] = variants
        out, tried, raised = _replay_first(variants, tried, raws, levels)  # (those the plain path did not try)
        if out is not _MISSED:
            return out
        error = error if raised is None else raised
        with recording_locks.setdefault(key, threading.Lock()):
            out, _, raised = _replay_first(variants, tried, raws, levels)  # (recorded while this thread waited)
            if out is not _MISSED:
                return out
            error = error if raised is None else raised
            if len(variants) >= MAX_VARIANTS:
                raise RuntimeError(f"jit: {MAX_VARIANTS} recordings of one signature differ in Python control flow "
                                   f"on traced values (bool() of an array) or in shapes that follow values (x[mask], "
                                   f"nonzero, unique); use xp.where, or call f without jit (a branch in the body of a "
                                   f"scan: jit the body, scan(jit(body)), whose steps share its few programs)"
                                   + ("" if error is None else f" (a replay raised {type(error).__name__}: {error})")
                                   ) from error
            program, out = _record(f, spec, len(args), static, list(ranked), [kinds[level] for level in levels],
                                   raws, levels)
            variants.append(program)
            if len(variants) > 1:
                scan_patterns.forget()
        return out

    def signature_of(*args: Any) -> tuple[tuple, list, list] | None:
        """The cache key of a call with the positional ``args`` (no static arguments), its raw arrays (the
        replay's inputs) and the caller's levels by rank; ``None`` where the call would not be looked up
        (static arguments, inside a recording, linearize's values). For ``scan`` (``jit_step``)."""
        if static_nums or getattr(_running, "depth", 0):
            return None
        leaves, spec = optree.tree_flatten((args, {}), none_is_leaf=True)
        try:
            raws, ranked, kinds = _signature(leaves)
            return _key(spec, {}, ranked, kinds), raws, sorted(kinds)
        except (_Inline, TypeError):
            return None

    def program_for(*args: Any) -> tuple[Program, list] | None:
        """The one program recorded for the signature of ``args`` (positional, no static arguments) and
        the caller's levels by rank; ``None`` if none, several (guards) or one recorded under another raising
        error state (``Program.replays_now``)."""
        found = signature_of(*args)
        variants = () if found is None else cache.get(found[0], ())
        return (variants[0], found[2]) if len(variants) == 1 and variants[0].replays_now() else None

    compiled.cache = cache  # type: ignore[attr-defined]
    compiled.program_for = program_for  # type: ignore[attr-defined]
    compiled.signature_of = signature_of  # type: ignore[attr-defined]
    compiled.scan_patterns = scan_patterns  # type: ignore[attr-defined]
    return compiled


__all__ = ["MAX_VARIANTS", "jit"]
