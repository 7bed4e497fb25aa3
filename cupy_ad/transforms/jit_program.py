"""The program of a ``jit`` recording: its steps, their replay as one generated Python function, and the
reuse of dead temporaries (see :mod:`cupy_ad.transforms.jit`)."""
from __future__ import annotations

import functools
import keyword
import operator
from typing import Any, Callable

import optree

from ..backends import backend_of, error_state
from ..values import Batched, Dual, JitTraced, Zero
from .jit_guards import Diverged

# Elementwise results from this size on are written into a dead temporary of the program (None: never).
# Measured on NumPy (a chain of 6 ufuncs, 2-core VM): 0.96x the time at 16 x 16, 0.93x at 128 x 128,
# 0.49x at 512 x 512 (no page faults on fresh buffers).
REUSE_MIN_BYTES: int | None = 1 << 17


def _is_array(v: Any) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, type)


def _is_complex(v: Any) -> bool:
    return _is_array(v) and backend_of(v).xp.isdtype(v.dtype, "complex floating")


class Slot:
    """A traced argument's place in a recorded call: the program's slot ``var``."""

    __slots__ = ("var",)

    def __init__(self, var: int):
        self.var = var


class Call:
    """A recorded call ``fn(*args, **kwargs)`` whose traced arguments (``Slot``) sit in tuples, lists and
    dicts with string keys: the replay's source writes the call out as it was made."""

    __slots__ = ("fn", "args", "kwargs")

    def __init__(self, fn: Callable, args: tuple, kwargs: dict):
        self.fn, self.args, self.kwargs = fn, args, kwargs

    @classmethod
    def of(cls, fn: Callable, args: tuple, kwargs: dict, n_traced: int) -> "Call | None":
        found: list = []

        def mark(v: Any) -> Any:
            kind = type(v)
            if kind is JitTraced:
                found.append(v)
                return Slot(v.var)
            if kind is tuple or kind is list:
                return kind(mark(item) for item in v)
            if kind is dict and all(type(k) is str for k in v):
                return {k: mark(item) for k, item in v.items()}
            return v  # a constant (a traced value inside another container: counted out below)

        marked = cls(fn, mark(args), mark(kwargs))
        return marked if len(found) == n_traced else None


class Flattening:
    """A recorded call whose result is a tree (not a tuple of arrays): its leaves are the step's outputs."""

    __slots__ = ("step",)

    def __init__(self, step: Any):
        self.step = step


def leaves_of(tree: Any) -> list:
    return optree.tree_leaves(tree, none_is_leaf=True)


class Method:
    """A recorded method call ``value.name(*args, **kwargs)``."""

    __slots__ = ("__name__",)

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(value, self.__name__)(*args, **kwargs)


def rebuild(d: Any, levels: list, leaf: Any) -> Any:
    """The value a description ``d`` stands for: duals ("D") and batches ("B") at ``levels`` (by rank)
    around the raw leaves that ``leaf(d)`` gives."""
    tag = d[0]
    if tag == "D":
        primal = rebuild(d[2], levels, leaf)
        return Dual(levels[d[1]], primal, Zero(d[3][1], d[3][2]) if d[3][0] == "Z" else rebuild(d[3], levels, leaf),
                    d[4])
    if tag == "B":
        return Batched(levels[d[1]], rebuild(d[3], levels, leaf), d[2])
    return leaf(d)


def build(d: Any, env: list, levels: list) -> Any:
    """An output leaf of a replay (constants copied: the caller may write into what it gets)."""
    return rebuild(d, levels, lambda leaf: _output(leaf, env))


def _output(d: Any, env: list) -> Any:
    tag = d[0]
    if tag == "V":
        return env[d[1]]
    if tag == "C":  # (a value that cannot be written, a NumPy scalar, is returned as it is: its type kept)
        return backend_of(d[1]).xp.asarray(d[1], copy=True) if hasattr(type(d[1]), "__setitem__") else d[1]
    return d[2]


class Program:
    """A recorded program: ``steps`` ``(function, input slots, output slots)``, written out as the Python
    source of one function (``source``): every slot a local variable, every step one line, so that a
    replay is the backend's calls and nothing else (no loop, no list of slots)."""

    def __init__(self, recording: Any, n_inputs: int, outputs: list, out_spec: Any):
        self.outputs = outputs
        self.out_spec = out_spec
        # The caller's error state at the recording, where it raises (or calls) on an error: f's own
        # np.errstate(divide="raise") inside it changed nothing, so its steps kept no change, and a replay
        # under another caller state computed inf where f's error leads to its fallback. Such a program
        # replays only under that state (another diverges: a new recording).
        state = recording.error_state
        self.error_state = state if any(v in ("raise", "call") for v in state.values()) else None
        needed = set()
        for d in outputs:
            _slots_of(d, needed)
        self.output_slots = sorted(needed)
        steps, self.alias = _common_subexpressions(_fold_negations(recording.steps), recording, needed)
        kept = []
        for fn, ins, outs in reversed(steps):  # dead code: steps no output needs are dropped (``_droppable``)
            if (outs is None or (outs in needed if type(outs) is int else needed.intersection(outs))
                    or not _droppable(fn, ins, outs, recording)):
                kept.append((fn, ins, outs))
                needed.update(ins)
        kept.reverse()
        kept = _fuse_elementwise(kept, recording.values, set(self.output_slots))
        if REUSE_MIN_BYTES is not None:
            kept = _reuse_buffers(kept, recording.values, set(self.output_slots))
        self.steps = kept
        # plain outputs (no constants, duals, batches): the replay function returns them in order
        self.direct = all(d[0] == "V" for d in outputs)
        self.returned = [d[1] for d in outputs] if self.direct else self.output_slots  # the slots run returns
        # run: the replay; unchecked: the same without its check of the inputs' layout on entry (None where it
        # has none), for callers that know them dense (scan's steps: ``jit_step``); dense: the slots dense then
        self.dense = _dense_slots(kept, recording, n_inputs)
        self.source, self.run, self.unchecked = _compile(kept, n_inputs, self.returned, recording, self.alias,
                                                         self.dense)

    def replays_now(self) -> bool:
        """Whether the caller's error state now is one this program replays under (see ``error_state``)."""
        return self.error_state is None or error_state() == self.error_state

    def replay(self, raws: list, levels: list) -> Any:
        if not self.replays_now():
            raise Diverged
        if self.direct:
            return optree.tree_unflatten(self.out_spec, self.run(*raws))
        env = dict(zip(self.output_slots, self.run(*raws)))
        return optree.tree_unflatten(self.out_spec, [build(d, env, levels) for d in self.outputs])


_SCALARS = frozenset((int, float, complex, bool, str, type(None), type(Ellipsis), slice))

# Functions whose errors follow the shapes and dtypes of their arguments only (fixed by the signature: a
# call that did not raise at the recording never raises at a replay), by their array-API names: the
# elementwise functions (not integer powers, which raise at negative exponents), reshaping, reductions,
# products, and the operators of ``operator``. A name stands for the function of that name in the array's
# namespace (and its ``linalg``) and in ``operator``, matched by identity (NumPy's ``acos`` is ``arccos``,
# its ``concat`` ``concatenate``; another function of the same name is not matched), and for the method of
# that name (``x.reshape(...)``). Any other call may raise on values (cholesky of an indefinite matrix, an
# index out of bounds) where f may handle the error (``try``: errors are control flow), so a replay makes it
# even where its result is unused.
_SIGNATURE_ERRORS_ONLY = frozenset("""abs acos acosh asin asinh atan atan2 atanh bitwise_and bitwise_invert
bitwise_left_shift bitwise_or bitwise_right_shift bitwise_xor ceil clip conj copysign cos cosh divide equal exp expm1
floor floor_divide greater greater_equal hypot imag isfinite isinf isnan less less_equal log log10 log1p log2 logaddexp
logical_and logical_not logical_or logical_xor maximum minimum multiply negative nextafter not_equal positive real
reciprocal remainder round sign signbit sin sinh sqrt square subtract tan tanh trunc
reshape permute_dims matrix_transpose moveaxis expand_dims squeeze broadcast_to broadcast_arrays concat stack flip roll
tile astype where tril triu diagonal sum prod mean matmul tensordot vecdot zeros_like ones_like empty_like full_like
add sub mul truediv neg pos lt le gt ge eq ne""".split())


@functools.lru_cache(maxsize=None)
def _signature_errors_only(xp: Any) -> dict:
    """id -> function, of the functions ``_SIGNATURE_ERRORS_ONLY`` names in ``xp`` (and ``xp.linalg``) and
    ``operator`` (kept here: an id stays theirs)."""
    spaces = [space for space in (operator, xp, getattr(xp, "linalg", None)) if space is not None]
    found = (getattr(space, name, None) for space in spaces for name in _SIGNATURE_ERRORS_ONLY)
    return {id(fn): fn for fn in found if fn is not None}


def _droppable(fn: Any, ins: list, outs: Any, recording: Any) -> bool:
    """Whether a step whose results nothing uses may be left out of the replay: it cannot raise there (under a
    caller error state that raises on floating-point errors, only an indexing by constants or a getter)."""
    while type(fn) is Flattening or type(fn) is Call:
        fn = fn.step if type(fn) is Flattening else fn.fn
    if fn is operator.getitem:  # a key of constants: the bounds follow the shape
        return all(k in recording.constant_slots for k in ins[1:])
    if type(fn) is operator.attrgetter:  # (x.mT, x.real: a getter)
        return True
    if any(v in ("raise", "call") for v in recording.error_state.values()):
        return False  # (arithmetic raises FloatingPointError on values there: the programs of ``Program.error_state``)
    if type(fn) is Method:
        return fn.__name__ in _SIGNATURE_ERRORS_ONLY
    array = next((recording.values[k] for k in ins if _is_array(recording.values[k])), None)
    return id(fn) in _signature_errors_only(None if array is None else backend_of(array).xp)


_COMMUTATIVE = frozenset((operator.add, operator.mul))
_NEGATING = {operator.add: operator.sub, operator.sub: operator.add}


def _fold_negations(steps: list) -> list:
    """The steps with each negation folded into the sum or difference that uses it: ``a + (-b)`` and
    ``(-b) + a`` become ``a - b``, ``a - (-b)`` becomes ``a + b`` (bit for bit: IEEE defines a - b as
    a + (-b), and addition commutes); a negation nothing else uses is then dead code. The operators of
    traced values (what the JVP rules write) are the steps folded."""
    negated: dict = {}  # the output slot of a negation -> the slot it negates
    folded = []
    for fn, ins, outs in steps:
        if fn is operator.neg and type(outs) is int:
            negated[outs] = ins[0]
        elif fn in _NEGATING and len(ins) == 2:
            a, b = ins
            if b in negated:
                fn, ins = _NEGATING[fn], [a, negated[b]]
            elif fn is operator.add and a in negated:
                fn, ins = operator.sub, [b, negated[a]]
        folded.append((fn, ins, outs))
    return folded


def _common_subexpressions(steps: list, recording: Any, output_slots: set) -> tuple[list, dict]:
    """The steps without those computing what an earlier step computed (the same function of the same
    slots and constants; the backend's functions are pure: a recording never writes into an array it
    did not make), and the slots of the dropped steps' outputs -> the earlier step's. A step making an
    output of the program is kept (the caller gets distinct arrays, as from ``f``)."""
    alias: dict = {}
    seen: dict = {}
    kept = []
    values, constants = recording.values, recording.constant_slots

    def slot_key(k: int) -> Any:
        k = alias.get(k, k)
        if k not in constants:
            return k
        plain = type(values[k]) in _SCALARS or type(values[k]) is tuple
        return frozen(values[k]) if plain else ("id", id(values[k]))  # (the recording keeps constants alive)

    def frozen(v: Any) -> Any:
        kind = type(v)
        if kind is Slot:
            return ("slot", slot_key(v.var))
        if kind is tuple or kind is list:
            return kind, tuple(map(frozen, v))
        if kind is dict:
            return dict, tuple((k, frozen(item)) for k, item in v.items())
        return (kind, repr(v)) if kind in _SCALARS else ("id", id(v))  # (repr: -0.0 is not 0.0)

    def function_key(fn: Any) -> Any:
        kind = type(fn)
        if kind is Call:
            return "call", function_key(fn.fn), frozen(fn.args), frozen(fn.kwargs)
        if kind is Flattening:
            return "tree", function_key(fn.step)
        return ("method", fn.__name__) if kind is Method else ("id", id(fn))

    for fn, ins, outs in steps:
        ins = [alias.get(k, k) for k in ins]
        if outs is None:
            kept.append((fn, ins, outs))
            continue
        operands = tuple(map(slot_key, ins))
        if fn in _COMMUTATIVE and len(operands) == 2 and repr(operands[1]) < repr(operands[0]) and (
                fn is operator.add or not _is_complex(values[outs])):
            operands = operands[::-1]  # (a + b and b + a round alike: IEEE addition and real products commute;
            # NumPy's complex a * b and b * a differ: its SIMD loops contract one product with an FMA)
        key = (function_key(fn), operands)
        earlier = seen.get(key)
        made = (outs,) if type(outs) is int else outs
        if earlier is not None and output_slots.isdisjoint(made):
            alias.update(zip(made, (earlier,) if type(earlier) is int else earlier))
            continue
        seen.setdefault(key, outs)
        kept.append((fn, ins, outs))
    return kept, alias


def _dense_slots(steps: list, recording: Any, n_inputs: int) -> set:
    """The slots that are ``dense`` (``Backend.dense``) at every replay whose inputs are: the inputs, the
    constants that are (an array's layout never changes) and the results the backend vouches for
    (``dense_result``: NumPy's ufuncs and matrix products up to 2-D)."""
    values = recording.values
    dense = set(range(n_inputs)) | {k for k in recording.constant_slots
                                    if _is_array(values[k]) and backend_of(values[k]).dense(values[k])}
    for fn, ins, out in steps:
        if type(out) is int and _is_array(values[out]) and backend_of(values[out]).dense_result(
                fn, [values[k] for k in ins]):
            dense.add(out)
    return dense


def _compile(steps: list, n_inputs: int, returned: list, recording: Any, alias: dict,
             dense: set | None = None, deferred: bool = False) -> tuple[str, Callable, Callable | None]:
    """The source of the replay function of ``steps`` (inputs: the first ``n_inputs`` slots; result: the
    tuple of the ``returned`` slots; ``alias``: slots standing for others), the function, and the function
    without its check of the inputs (or None). Functions and constants are its globals ``g<k>``. ``dense``:
    slots that are dense at every replay whose inputs are (``_dense_slots``); steps on them only take the
    backend's dense forms, behind one check of the inputs they read on entry (a replay with other inputs
    runs the program compiled without ``dense``, ``deferred``: its source compiled at its first call)."""
    names: dict = {}  # id of an object -> its global's name
    scope: dict = {}
    checked: set = set()  # the inputs a dense form reads

    def name(obj: Any) -> str:
        key = names.get(id(obj))
        if key is None:
            key = names[id(obj)] = f"g{len(scope)}"
            scope[key] = obj
        return key

    def slot(k: int) -> str:
        k = alias.get(k, k)
        return name(recording.values[k]) if k in recording.constant_slots else f"v{k}"

    def literal(v: Any) -> str:
        kind = type(v)
        if kind is Slot:
            return slot(v.var)
        if kind is tuple:
            return f"({''.join(literal(item) + ', ' for item in v)})"
        if kind is list:
            return f"[{', '.join(map(literal, v))}]"
        if kind is dict:
            return "{" + ", ".join(f"{k!r}: {literal(item)}" for k, item in v.items()) + "}"
        return name(v)

    def arguments(args: Any, kwargs: dict) -> str:
        """A call's arguments written out (``f(a, b, lower=g1)``: no tuple and dict made per call), or
        unpacked from literals where a keyword is not a Python name."""
        if not all(k.isidentifier() and not keyword.iskeyword(k) for k in kwargs):
            return f"*{literal(tuple(args))}, **{literal(kwargs)}"
        return ", ".join([*map(literal, args), *(f"{k}={literal(v)}" for k, v in kwargs.items())])

    def value(a: Any) -> Any:
        kind = type(a)
        if kind is Slot:
            return recording.values[a.var]
        return kind(map(value, a)) if kind is tuple or kind is list else a

    def arrays_in(a: Any) -> list:
        """(array, its slot or None: a constant written in the call) for each array among ``a``."""
        kind = type(a)
        if kind is Slot:
            return [(recording.values[a.var], alias.get(a.var, a.var))] if _is_array(recording.values[a.var]) else []
        if kind is tuple or kind is list:
            return [found for item in a for found in arrays_in(item)]
        return [(a, None)] if _is_array(a) else []

    def function(fn: Any, args: list) -> str:
        """The name of ``fn``'s replay form for a call with the positional arguments ``args`` (traced ones as
        ``Slot``, in tuples and lists too), asked on their values at recording: the backend's dense form where
        every array among them is dense at every replay (an input it reads is checked on entry)."""
        found = arrays_in(args)
        if not found:
            return name(fn)
        backend = backend_of(found[0][0])
        values = [value(a) for a in args]
        form = backend.replay_form(fn, values)
        if dense and all(backend.dense(v) if k is None else k in dense for v, k in found):
            dense_form = backend.replay_form(fn, values, dense=True)
            if dense_form != form:  # (a bound method is made anew at each access: equal, not the same)
                checked.update(k for _, k in found if k is not None and k < n_inputs)
                form = dense_form
        return name(form)

    def call(fn: Any, ins: list) -> str:
        if type(fn) is Flattening:
            return f"{name(leaves_of)}({call(fn.step, ins)})"
        if type(fn) is Call:
            if type(fn.fn) is Method and fn.args and type(fn.args[0]) is Slot:
                head, *rest = fn.args
                return f"{slot(head.var)}.{fn.fn.__name__}({arguments(rest, fn.kwargs)})"
            return f"{function(fn.fn, list(fn.args))}({arguments(fn.args, fn.kwargs)})"
        slots = [Slot(k) for k in ins]
        if type(fn) is functools.partial and fn.func is _into:  # out= into a dead temporary where a fresh result
            form, position = fn.args  # would lie as it does (NumPy's order K; a later reshape's view follows it)
            buffer, listed = ins[position], ", ".join(map(slot, ins))
            fresh = f"{function(form, slots)}({listed})"
            into = f"{fresh[:-1]}, out={slot(buffer)})"
            alike = _lies_as_fresh(slot(buffer), [(slot(k), getattr(recording.values[k], "shape", ())) for k in ins
                                                  if k != buffer], recording.values[buffer].shape)
            return f"({into} if {alike} else {fresh})" if alike else into
        if type(fn) is Method:
            return f"{slot(ins[0])}.{fn.__name__}({', '.join(map(slot, ins[1:]))})"
        return f"{function(fn, slots)}({operands(fn, ins)})"

    def operands(fn: Any, ins: list) -> str:
        """A plain step's operands, a constant Python number in the backend's ``replay_scalar`` form."""
        values = [recording.values[k] for k in ins]
        array = next((v for v in values if _is_array(v)), None)
        written = []
        for position, k in enumerate(ins):
            number = alias.get(k, k) in recording.constant_slots and type(values[position]) in (int, float)
            typed = backend_of(array).replay_scalar(fn, values, position) if number and array is not None else None
            written.append(slot(k) if typed is None or typed is values[position] else name(typed))
        return ", ".join(written)

    last_use = {}  # slot -> the step after which nothing reads it (it is dropped there, as eagerly)
    for index, (_, ins, outs) in enumerate(steps):
        for k in (() if outs is None else (outs,) if type(outs) is int else outs):
            last_use[k] = index
        for k in ins:
            last_use[k] = index
    dropped: dict = {}
    for k, index in last_use.items():
        if k >= n_inputs and k not in recording.constant_slots and k not in returned:
            dropped.setdefault(index, []).append(f"v{k}")
    lines = [f"def replay({''.join(f'v{k}, ' for k in range(n_inputs))}):"]
    for index, (fn, ins, outs) in enumerate(steps):
        target = "" if outs is None else f"v{outs} = " if type(outs) is int else "".join(f"v{k}, " for k in outs) + "= "
        drop = f"; del {', '.join(dropped[index])}" if index in dropped else ""
        lines.append(f"    {target}{call(fn, ins)}{drop}")
    lines.append(f"    return ({''.join(slot(k) + ', ' for k in returned)})")
    unchecked = None
    if checked:  # (the same function without the check first, for callers that know their inputs dense)
        exec(compile("\n".join(lines), "<cupy_ad.jit replay>", "exec"), scope)  # noqa: S102 (our own source)
        unchecked = scope["replay"]
        generic = name(_compile(steps, n_inputs, returned, recording, alias, deferred=True)[1])
        test = " and ".join(f"{name(backend_of(recording.values[k]).dense)}(v{k})" for k in sorted(checked))
        lines.insert(1, f"    if not ({test}): return {generic}({''.join(f'v{k}, ' for k in range(n_inputs))})")
    source = "\n".join(lines)
    if deferred:
        return source, _deferred(source, scope), None
    exec(compile(source, "<cupy_ad.jit replay>", "exec"), scope)  # noqa: S102 (our own generated source)
    return source, scope["replay"], unchecked


def _deferred(source: str, scope: dict) -> Callable:
    """The replay function of ``source`` (its globals ``scope``), compiled at its first call: a fallback most
    programs never run costs no compilation (about 40 us a step)."""
    def replay(*raws: Any) -> tuple:
        if "replay" not in scope:  # (two threads may both compile it: the same function)
            exec(compile(source, "<cupy_ad.jit replay>", "exec"), scope)  # noqa: S102 (our own generated source)
        return scope["replay"](*raws)
    return replay


def _last_reads(steps: list) -> dict:
    """Slot -> the index of the last step reading it."""
    last: dict = {}
    for k, (_, ins, _) in enumerate(steps):
        for slot in ins:
            last[slot] = k
    return last


def _fuse_elementwise(steps: list, values: list, output_slots: set) -> list:
    """Each run of consecutive elementwise steps on arrays (the backend's ``fusible_form`` of their
    functions) becomes one step calling the backend's fusion of the run (CuPy: ``cupy.fuse``, one kernel
    where eager code launches one per step). The run's inputs are the slots it reads and does not make,
    its outputs the slots it makes that a later step or the caller reads. Where the backend has no
    fusion (NumPy: no fusible form) the steps are unchanged. Rounding: the fused kernel computes each
    step in the step's dtype as the separate kernels do, but its compiler may contract a product and a
    sum into one fused multiply-add: results agree with eager ones within rounding, not bit for bit."""
    last_use = _last_reads(steps)
    fused: list = []
    run: list = []  # (form, ins, out, step) of the current run; all on ``run_backend``
    run_backend = None

    def close(end: int) -> None:
        made = {out for _, _, out, _ in run}
        outputs = [out for _, _, out, _ in run if out in output_slots or last_use.get(out, -1) >= end]
        function = _fusion_source(run, made, outputs) if len(run) > 1 else None
        kernel = None if function is None else run_backend.fuse(function[0])
        if kernel is None:
            fused.extend(step for _, _, _, step in run)
        else:
            fused.append((kernel, function[1], outputs[0] if len(outputs) == 1 else tuple(outputs)))
        run.clear()

    for k, step in enumerate(steps):
        fn, ins, out = step
        result = values[out] if type(out) is int else None
        backend = backend_of(result) if _is_array(result) else None
        form = None
        if backend is not None and all(_is_array(values[slot]) and backend_of(values[slot]) is backend for slot in ins):
            form = backend.fusible_form(fn)
        if run and (form is None or backend is not run_backend):
            close(k)
        if form is None:
            fused.append(step)
        else:
            run.append((form, ins, out, step))
            run_backend = backend
    if run:
        close(len(steps))
    return fused


def _fusion_source(run: list, made: set, outputs: list) -> tuple[Callable, list]:
    """The Python function of a run of elementwise steps (its kernels called in order on local
    variables) and its input slots, in the order of the function's parameters."""
    inputs: list = []
    for _, ins, _, _ in run:
        inputs.extend(slot for slot in ins if slot not in made and slot not in inputs)
    scope = {f"f{k}": form for k, (form, _, _, _) in enumerate(run)}
    lines = [f"def fused({', '.join(f'v{slot}' for slot in inputs)}):"]
    lines += [f"    v{out} = f{k}({', '.join(f'v{slot}' for slot in ins)})" for k, (_, ins, out, _) in enumerate(run)]
    lines.append(f"    return {', '.join(f'v{slot}' for slot in outputs)}")
    exec(compile("\n".join(lines), "<cupy_ad.jit fused>", "exec"), scope)  # noqa: S102 (our own generated source)
    return scope["fused"], inputs


def _reuse_buffers(steps: list, values: list, output_slots: set) -> list:
    """Elementwise steps write into a temporary the program owns instead of a new array, where that is
    the temporary's last use: a fresh elementwise result (never an input, a constant or memory of
    theirs) of the same shape and dtype, not an output, read by elementwise steps (and guards) only.
    That last condition is what makes the reuse safe on every replay: whether a reshape, ravel or
    ascontiguousarray returns a view or a copy depends on the memory order of its argument, which
    follows the inputs' strides, and those are not in the signature (array_api_strict does not even
    show them). An elementwise step never returns a view, so a temporary only such steps read has no
    view whatever the layout; one that any other step read may have one (at replay, if not at
    recording)."""
    last_use = _last_reads(steps)
    fresh: set = set()  # slots holding a new elementwise result
    viewable: set = set()  # slots read by a step that may return a view of them
    reused = []
    for k, (fn, ins, out) in enumerate(steps):
        result = values[out] if type(out) is int else None
        form = backend_of(result).in_place_form(fn) if _is_array(result) else None
        if form is not None:
            for position, slot in enumerate(ins):
                v = values[slot]
                if (slot in fresh and slot not in output_slots and slot not in viewable and last_use[slot] == k
                        and type(v) is type(result) and v.shape == result.shape and v.dtype == result.dtype
                        and result.nbytes >= REUSE_MIN_BYTES):
                    fn = functools.partial(_into, form, position)
                    break
            fresh.add(out)
        elif out is not None:
            viewable.update(ins)
        reused.append((fn, ins, out))
    return reused


def _lies_as_fresh(buffer: str, operands: list, shape: tuple) -> str:
    """The replay's test that NumPy would lay out a fresh elementwise result as the temporary ``buffer`` (source
    text; "" where it always would): its operands (name, shape; a 0-d one has no say) all of its shape and lying
    as it does, or the temporary C-contiguous (NumPy's order K keeps C order wherever one operand does)."""
    shaped = [name for name, operand_shape in operands if operand_shape]
    if not shaped:
        return ""
    contiguous = f"{buffer}.flags.c_contiguous"
    if any(operand_shape not in ((), shape) for _, operand_shape in operands):
        return contiguous
    return f"{contiguous} or " + " and ".join(f"{name}.strides == {buffer}.strides" for name in shaped)


def _into(form: Callable, position: int, *args: Any) -> Any:
    return form(*args, out=args[position])


def _slots_of(d: Any, found: set) -> None:
    if d[0] == "V":
        found.add(d[1])
    elif d[0] == "D":
        _slots_of(d[2], found)
        if d[3][0] != "Z":
            _slots_of(d[3], found)
    elif d[0] == "B":
        _slots_of(d[3], found)


