"""``scan``: a loop with a carried state (``jax.lax.scan`` semantics) whose JVP pays only for tangents
that can be nonzero.

Derivation. The loop is c_{k+1}, y_k = f(c_k, x_k). Forward mode differentiates it step by step:
dc_{k+1} = D_c f dc_k + D_x f dx_k + D_theta f dtheta (theta: the duals ``f`` closes over), which
the eager engine computes by calling ``f`` on dual values. What ``scan`` adds is the *structure*
of the tangents (after JAX's ``_scan_jvp`` in ``jax/_src/lax/control_flow/loops.py``, written
here from scratch for an eager engine): a tangent that is the symbolic ``Zero`` at step k stays
``Zero`` only if no step can make it nonzero, so the nonzero pattern of the carry is the least
fixed point of P -> P v pattern(f(lift(init, P), x_0)) on the finite lattice of patterns (join =
OR). We find it before the loop, then give every carry in the pattern a concrete zero tangent, so
that every step has the same structure, and every carry outside it stays a plain value (no
tangent arithmetic is ever spent on it).

Patterns and levels. Nested ``jvp`` makes a value a tree of duals: ``Dual(2, Dual(1, p, t1),
Dual(1, t2, t12))``. The pattern of a value is that tree with arrays replaced by ``None`` and
every dual whose tangent is ``Zero`` collapsed into its primal: ``None`` (no tangent at any
level) or ``(level, primal_pattern, tangent_pattern)``. Every level is tracked, so carries that
get a tangent only from a closed-over dual (of the current ``jvp`` or of an outer one) and second
derivatives through ``scan`` are handled by the same code. With K levels a leaf's pattern can grow
at most 2**K - 1 times, so the fixed point settles within 1 + n_leaves * (2**K - 1) passes (1 +
n_leaves for one level); K is the number of levels: those of the running ``jvp`` calls and
those seen in the patterns. Joins only grow, so a body whose tangent structure is
a function of its inputs' structure always settles within the bound; ``FixedPointError`` is a
safeguard against bodies that keep inventing structure (e.g. leaking duals of new levels).

Which level: the levels present are those of ``init``, ``xs`` and whatever the body closes over;
the last are only seen by running the body, which the fixed point does. Inside ``jvp`` (at level d =
``core.current_level()`` > 0) plain carries and x slices are handed to the body as duals of level d
with a ``Zero`` tangent, as ``jvp`` hands its own inputs, so operators between them and duals
dispatch on every backend (array_api_strict arrays refuse a dual right operand).

Stacked outputs are preallocated per leaf and per pattern slot (a raw zero array of shape
(length, *y.shape) for the primal and for each nonzero tangent, nested as the pattern) and written
one step at a time by raw ``buffer[i] = value`` on the backend array; the result is the tree of
duals over those buffers. A ys slot the pattern marks zero stays ``Zero``. No value is read back
to the host inside the loop (shapes and dtypes only), so on CuPy every step is only enqueued on
the current stream.
"""
from __future__ import annotations

import contextlib
import numbers
import operator
import os
from typing import Any, Callable

import optree

from .backends import backend_of, default_backend, is_array
from .values import Batched, Dual, Recorded, Zero, active_levels, base_array, current_level
from .namespace.manipulation import stack
from .namespace.weak import type_weak_init, weakly_typed
from .profiling_ranges import nvtx_range
from .transforms.jit_step import duals_of, raws_of, replay_steps

__all__ = ["FixedPointError", "scan"]

_SCAN_RANGE = nvtx_range("cupy_ad/scan")
_STEP_RANGE = nvtx_range("cupy_ad/scan/step")


class FixedPointError(RuntimeError):
    """The nonzero pattern of the carry tangents did not settle within the bound on passes."""


class _Grow(Exception):
    """A value has a nonzero tangent where its pattern says zero (the pattern must grow)."""


# ----------------------------------------------------------------------------------------- patterns
def _pattern(v: Any) -> Any:
    """``None`` (no nonzero tangent at any level) or ``(level, primal_pattern, tangent_pattern)``."""
    while type(v) is Dual and type(v.tangent) is Zero:
        v = v.primal
    if type(v) is not Dual:
        return None
    return (v.level, _pattern(v.primal), _pattern(v.tangent))


def _join(p: Any, q: Any) -> Any:
    """The least pattern above ``p`` and ``q`` (a value of a lower top level is, at a higher level,
    a dual with a zero raw tangent)."""
    if p is None:
        return q
    if q is None or p == q:
        return p
    if p[0] == q[0]:
        return (p[0], _join(p[1], q[1]), _join(p[2], q[2]))
    if p[0] > q[0]:
        return (p[0], _join(p[1], q), p[2])
    return (q[0], _join(p, q[1]), q[2])


def _traced(v: Any) -> bool:
    """Whether ``v`` holds batched (vmap) or recorded (linearize) values anywhere under its duals."""
    if type(v) is Dual:
        return _traced(v.primal) or (type(v.tangent) is not Zero and _traced(v.tangent))
    return type(v) is Batched or isinstance(v, Recorded)  # (jit's JitTraced values too)


def _levels_in(p: Any) -> set[int]:
    return set() if p is None else {p[0]} | _levels_in(p[1]) | _levels_in(p[2])


def _zeros(shape: tuple, like: Any) -> Any:
    raw = base_array(like)  # (the backend, device and dtype of like's data, under any transform's values)
    return backend_of(raw).zeros(shape, raw.dtype, getattr(raw, "device", None))


def _zero_value(node: Any, like: Any, concrete: Any) -> Any:
    """A zero of pattern ``node`` shaped like ``like``: all its coefficients are one shared zero
    array (``concrete=True``: a value nobody writes into) or each its own (``"fresh"``: buffers)."""
    if not concrete:
        return Zero.like(like)
    shared = _zeros(tuple(like.shape), like) if concrete != "fresh" else None

    def build(n: Any) -> Any:
        if n is None:
            return shared if shared is not None else _zeros(tuple(like.shape), like)
        return Dual(n[0], build(n[1]), build(n[2]))

    return build(node)


def _conform(v: Any, node: Any, concrete: Any) -> Any:
    """``v`` in the shape of pattern ``node``: duals with a ``Zero`` tangent outside it are dropped,
    missing levels are added with a zero tangent (``concrete``: a concrete zero value, see
    ``_zero_value``; else ``Zero``). Raises ``_Grow`` if ``v`` has a nonzero tangent ``node`` lacks."""
    if node is None:
        while type(v) is Dual:
            if type(v.tangent) is not Zero:
                raise _Grow
            v = v.primal
        return v
    level, primal_node, tangent_node = node
    while type(v) is Dual and v.level > level:
        if type(v.tangent) is not Zero:
            raise _Grow
        v = v.primal
    if type(v) is Dual and v.level == level:
        p = _conform(v.primal, primal_node, concrete)
        t = v.tangent
        if type(t) is Zero:
            if concrete:
                t = _zero_value(tangent_node, p, concrete)
        else:
            t = _conform(t, tangent_node, concrete)
        return v if p is v.primal and t is v.tangent else Dual(level, p, t)
    p = _conform(v, primal_node, concrete)
    return Dual(level, p, _zero_value(tangent_node, p, concrete))


def _index(v: Any, i: int) -> Any:
    """``v[i]`` of a value in canonical form (no ``Zero`` tangents inside), level by level."""
    if type(v) is Dual:
        return Dual(v.level, _index(v.primal, i), _index(v.tangent, i))
    return v[i, ...]


def _allocate(v: Any, length: int) -> Any:
    """Zero buffers of shape (length, *v.shape) in the dual structure of ``v`` (``Zero`` slots too)."""
    if type(v) is Dual:
        t = v.tangent
        return Dual(v.level, _allocate(v.primal, length),
                    _allocate(v.primal if type(t) is Zero else t, length))
    return _zeros((length, *tuple(v.shape)), v)


def _write(buffer: Any, v: Any, i: int) -> None:
    """``buffer[i] = v`` slot by slot; ``v`` is conformed to the buffer's pattern (``Zero`` slots
    are skipped: the buffers start at zero)."""
    if type(buffer) is Dual:
        _write(buffer.primal, v.primal, i)
        if type(v.tangent) is not Zero:
            _write(buffer.tangent, v.tangent, i)
    else:
        buffer[i, ...] = v


# -------------------------------------------------------------------------------------- validation
def _name(root: str, path: tuple) -> str:
    return root + "".join(f"[{p!r}]" for p in path)


def _describe(v: Any) -> str:
    return f"shape {tuple(v.shape)} and dtype {v.dtype}"


def _as_leaf(v: Any, backend: Any, name: str) -> Any:
    if type(v) is Dual or is_array(v):
        return v
    if isinstance(v, numbers.Number):
        return backend.xp.asarray(v)
    raise TypeError(f"scan: {name} must be an array or a Python scalar, got {type(v).__name__}")


def _backend_of_leaves(*leaf_lists: list) -> Any:
    """The backend of the first array among the leaves; None if there is none."""
    for leaves in leaf_lists:
        for v in leaves:
            if type(v) is Dual or is_array(v):
                return backend_of(base_array(v))
    return None


def _pass_limit(n_leaves: int, n_levels: int) -> int:
    """Passes after which the fixed point must have settled (see the module docstring)."""
    return 1 + n_leaves * (2 ** n_levels - 1)


class _Body:
    """The body with its checks: returns flattened (carry leaves, y leaves) of one step."""

    def __init__(self, f: Callable, carry_spec: Any, carry_ref: list, backend: Any | None):
        self.f = f
        self.carry_spec = carry_spec
        self.carry_ref = [(tuple(v.shape), v.dtype) for v in carry_ref]
        self.carry_is_leaf = carry_spec.is_leaf()
        self.backend = backend
        self.y_spec = None
        self.y_is_leaf = False
        self.y_ref: list[tuple] = []

    @property
    def carry_names(self) -> list[str]:  # (for messages: made when one is needed)
        return [_name("carry", p) for p in self.carry_spec.paths()]

    @property
    def y_names(self) -> list[str]:
        return [_name("y", p) for p in self.y_spec.paths()]

    def __call__(self, carry: Any, x: Any) -> tuple[list, list]:
        out = self.f(carry, x)
        if type(out) is not tuple and not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"scan: the body must return a pair (new_carry, y), got {type(out).__name__}"
                            + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""))
        new_carry, y = out
        if self.backend is None:  # (no array in init or xs: the body's, for the Python scalars it returns)
            self.backend = _backend_of_leaves(optree.tree_leaves(out)) or default_backend()
        leaves = self._checked(new_carry, self.carry_is_leaf, self.carry_spec, self.carry_ref, self._check_carry,
                               "a carry with structure {}, but init has structure {}")
        if self.y_spec is None:
            y_leaves, self.y_spec = optree.tree_flatten(y)
            for k, v in enumerate(y_leaves):
                if type(v) is not Dual and not is_array(v):
                    y_leaves[k] = _as_leaf(v, self.backend, self.y_names[k])
            self.y_ref = [(tuple(v.shape), v.dtype) for v in y_leaves]
            self.y_is_leaf = self.y_spec.is_leaf()
            return leaves, y_leaves
        return leaves, self._checked(y, self.y_is_leaf, self.y_spec, self.y_ref, self._check_y,
                                     "y with structure {}, but an earlier step returned {}")

    @staticmethod
    def _checked(value: Any, is_leaf: bool, spec: Any, ref: list, check: Callable, mismatch: str) -> list:
        """The leaves of ``value``, checked against the reference structure, shapes and dtypes.

        The fast path (one array: no flattening, one comparison) is most of scan's own cost per step
        on plain arrays; ``check`` (the slow path) converts Python scalars and names the leaf.
        """
        if is_leaf and (type(value) is Dual or hasattr(value, "__array_namespace__")):
            if (value.shape, value.dtype) != ref[0]:
                check([value])
            return [value]
        leaves, found = optree.tree_flatten(value)
        if found != spec:
            raise TypeError("scan: the body returned " + mismatch.format(found, spec))
        try:
            ok = [(v.shape, v.dtype) for v in leaves] == ref
        except AttributeError:
            ok = False
        if not ok:
            check(leaves)
        return leaves

    def _check_carry(self, leaves: list) -> None:
        names = self.carry_names
        for k, (v, (shape, dtype)) in enumerate(zip(leaves, self.carry_ref)):
            if type(v) is not Dual and not is_array(v):
                leaves[k] = v = _as_leaf(v, self.backend, f"the body's new {names[k]}")
            if v.dtype != dtype:
                raise TypeError(f"scan: the body returned {names[k]} with {_describe(v)}, but "
                                f"init's has shape {shape} and dtype {dtype}: the dtype differs")
            if tuple(v.shape) != shape:
                raise ValueError(f"scan: the body returned {names[k]} with {_describe(v)}, but "
                                 f"init's has shape {shape} and dtype {dtype}: the shape differs")

    def _check_y(self, y_leaves: list) -> None:
        names = self.y_names
        for k, (v, (shape, dtype)) in enumerate(zip(y_leaves, self.y_ref)):
            if type(v) is not Dual and not is_array(v):
                y_leaves[k] = v = _as_leaf(v, self.backend, names[k])
            if tuple(v.shape) != shape or v.dtype != dtype:
                raise (ValueError if v.dtype == dtype else TypeError)(
                    f"scan: the body returned {names[k]} with {_describe(v)}, but an earlier "
                    f"step returned shape {shape} and dtype {dtype}")


def _check_length(xs_paths: list, xs_leaves: list, length: Any) -> int:
    if length is not None:
        try:
            length = operator.index(length)
        except TypeError:
            raise TypeError(f"scan: length must be an integer, got {type(length).__name__}") from None
        if length < 0:
            raise ValueError(f"scan: length must be non-negative, got {length}")
    lengths = []
    for path, v in zip(xs_paths, xs_leaves):
        if len(v.shape) == 0:
            raise ValueError(f"scan: {_name('xs', path)} has shape () and no leading axis to scan over")
        lengths.append(v.shape[0])
    if lengths and any(n != lengths[0] for n in lengths):
        listed = ", ".join(f"{_name('xs', p)}: {n}" for p, n in zip(xs_paths, lengths))
        raise ValueError(f"scan: the leaves of xs have different leading lengths ({listed})")
    if lengths and length is not None and length != lengths[0]:
        raise ValueError(f"scan: length={length} but the leaves of xs have leading length {lengths[0]}")
    if length is None:
        if not lengths:
            raise ValueError("scan: length is required when xs is None (or has no leaves)")
        length = lengths[0]
    return length


def _templates(buffers: list) -> list:
    """What ``ys`` buffers like these are made from: the shape of a row, the dtype, the backend and the device of
    each raw buffer (``raws_of`` order)."""
    return [(tuple(raw.shape[1:]), raw.dtype, backend_of(raw), getattr(raw, "device", None))
            for buffer in buffers for raw in raws_of(buffer)]


def _replay_settled(settled: Any, body: _Body, init_leaves: list, xs_raws: list, length: int,
                    reverse: bool) -> tuple | None:
    """The steps replayed from the program of a jit body whose settled pattern is known (``settled``:
    ``jit_step.Settled``), from step 0 on, into zero buffers made as the call that settled it made them (on
    the device of this call's data where it has data of the buffer's backend: without ``init`` and ``xs`` the
    data are the program's constants, and ys of arrays the body closes over may be of another backend than
    the carries): (carry leaves, patterns, buffers, ys' patterns, steps done); None if step 0 did not replay
    (a guard, an error: the fixed point runs as without the pattern)."""
    nodes, y_nodes = settled.nodes, settled.y_nodes
    y_spec, y_ref, templates = settled.ys
    carry = [_conform(v, n, True) for v, n in zip(init_leaves, nodes)]
    data = base_array(carry[0]) if carry else xs_raws[0] if xs_raws else None
    raws = iter([backend.zeros((length, *shape), dtype, device if data is None or backend_of(data) is not backend
                               else getattr(data, "device", None)) for shape, dtype, backend, device in templates])
    buffers = [duals_of(n, raws) for n in y_nodes]
    indices = range(length - 1, -1, -1) if reverse else range(length)
    replayed = replay_steps(settled.program, settled.levels, carry, nodes, xs_raws, buffers, y_nodes, indices,
                            settled.by_rank)
    if replayed is None or not replayed[1]:
        return None
    body.y_spec, body.y_ref, body.y_is_leaf = y_spec, y_ref, y_spec.is_leaf()
    return replayed[0], nodes, buffers, y_nodes, replayed[1]


# ------------------------------------------------------------------------------------------ scan
def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False, *, step_ranges: bool | None = None) -> tuple[Any, Any]:
    """Loop ``carry, y = f(carry, x)`` over the leading axis of ``xs``; return ``(carry, ys)``.

    Same semantics as ``jax.lax.scan``: ``init``/the carry, ``xs``/``x`` and ``y`` are pytrees
    (tuples, lists, dicts, namedtuples, ``None``) of arrays; ``ys`` stacks each ``y`` along a new
    axis 0. ``length`` is required when ``xs`` is None and must equal the leading length of every
    leaf of ``xs`` otherwise. ``reverse=True`` walks ``xs`` from the end and writes ``ys`` in the
    original order (``ys[i]`` comes from ``xs[i]``). ``length=0`` returns ``init`` and empty ``ys``
    of the right shapes (the body is called once on zeros to learn them, as JAX traces it).
    Python scalars in ``init`` become arrays of the backend of the other leaves, of the dtype of
    their kind the body returns for them (``0.0`` as a float32 carry where the body computes in
    float32, as in JAX; found by one extra call of ``f``); without arrays in ``init`` and ``xs``, of
    the backend of the arrays the body returns (so do Python scalars the body returns).

    Differentiation: under ``jvp`` (nested too) the carry tangents start from those of ``init``
    and of anything ``f`` closes over. The nonzero pattern of the carry tangents is found before the
    loop by a fixed point (see the module docstring) and every carry in it gets a concrete zero
    tangent from the start; a carry outside it is handed to ``f`` with a symbolic ``Zero`` tangent
    for the whole loop (no tangent arithmetic is spent on it). A ``ys`` leaf whose tangent the
    pattern marks zero keeps a ``Zero`` tangent. If Python control flow in ``f`` makes a tangent
    nonzero later than the first step can show, the pattern grows there (buffers and carries gain
    zero-filled slots), so the result is still exact.

    Raises ``TypeError`` if ``f`` returns a carry whose structure or a leaf's dtype differs from
    ``init`` (or a ``y`` that differs from the first step's), ``ValueError`` if a leaf's shape
    differs, if ``xs`` leaves have different leading lengths, if ``length`` disagrees with them or is
    negative, and ``FixedPointError`` if the tangent pattern does not settle.

    A body compiled with ``ad.jit`` runs its recorded program: after the first step (and the fixed
    point) the steps call the program's replay function on raw arrays, with no signature check per
    step (``transforms/jit_step.py``); a later call whose first step has the signature of an earlier
    call's reuses that call's settled pattern and replays every step, running no fixed-point pass
    (``jit_step.SettledPatterns``; as with ``jit`` itself, a changed global or closed-over value is not
    seen). The results are the eager loop's bit for bit.

    ``f`` gets its own copy of ``init``; on plain arrays the rows of ``xs`` it gets are views, as in a
    Python loop over them (writing into them writes into ``xs``).

    nvtx: the whole loop is the range ``cupy_ad/scan``; one range ``cupy_ad/scan/step`` per step
    (and per fixed-point pass, each of which runs step 0) only with ``step_ranges=True`` or the
    environment variable ``CUPY_AD_SCAN_STEP_RANGES=1``: per-step ranges would flood a profile.
    """
    if not callable(f):
        raise TypeError(f"scan: f must be callable, got {type(f).__name__}")
    carry_paths, init_leaves, carry_spec = optree.tree_flatten_with_path(init)
    xs_paths, xs_leaves, xs_spec = optree.tree_flatten_with_path(xs)
    weak = [weakly_typed(v) for v in init_leaves]
    # (a weak leaf tells no backend: jvp makes its Python-scalar primals on the default one)
    backend = _backend_of_leaves([v for v, w in zip(init_leaves, weak) if not w], xs_leaves)
    made_on = backend or default_backend()
    init_leaves = [v if type(v) is Dual or is_array(v) else _as_leaf(v, made_on, _name("init", p))
                   for p, v in zip(carry_paths, init_leaves)]
    # The carries are scan's own: a body writing into its carry (``c[k] = v`` on a plain array) must
    # not write into the caller's init. One copy per leaf; duals get fresh shells per step instead.
    init_leaves = [v if type(v) in (Dual, Batched, Recorded) else backend_of(v).xp.asarray(v, copy=True)
                   for v in init_leaves]
    for p, v in zip(xs_paths, xs_leaves):
        if type(v) is not Dual and not is_array(v):
            raise TypeError(f"scan: {_name('xs', p)} must be an array, got {type(v).__name__}")
    length = _check_length(xs_paths, xs_leaves, length)
    if any(weak) and length:
        first = length - 1 if reverse else 0
        x0 = None if xs is None else optree.tree_unflatten(xs_spec, [v[first, ...] for v in xs_leaves])
        init_leaves = type_weak_init(f, init_leaves, weak, carry_spec, x0)
    if step_ranges is None:
        step_ranges = os.environ.get("CUPY_AD_SCAN_STEP_RANGES", "") not in ("", "0")
    with _SCAN_RANGE:
        return _scan(f, init_leaves, carry_spec, xs_leaves, xs_spec, xs is None,
                     length, bool(reverse), step_ranges, backend)


def _scan(f: Callable, init_leaves: list, carry_spec: Any, xs_leaves: list, xs_spec: Any,
          no_xs: bool, length: int, reverse: bool, step_ranges: bool, backend: Any) -> tuple[Any, Any]:
    depth = current_level()
    body = _Body(f, carry_spec, init_leaves, backend)
    xs_nodes = [_pattern(v) for v in xs_leaves]
    xs_leaves = [_conform(v, n, False) for v, n in zip(xs_leaves, xs_nodes)]  # canonical: no Zero inside

    def present(v: Any) -> Any:
        # Inside a jvp a plain value is handed to f as a dual with a Zero tangent at the current level,
        # as jvp hands its inputs, so operators between it and duals dispatch on every backend.
        return Dual(depth, v, Zero.like(v)) if depth and type(v) not in (Dual, Batched, Recorded) else v

    carry_is_leaf = carry_spec.is_leaf()
    plain_xs = not depth and all(type(v) is not Dual for v in xs_leaves)
    single_x = xs_spec.is_leaf()

    def x_at(i: int) -> Any:
        if no_xs:
            return None
        if plain_xs:  # the common case, kept cheap
            return xs_leaves[0][i, ...] if single_x else optree.tree_unflatten(
                xs_spec, [v[i, ...] for v in xs_leaves])
        return optree.tree_unflatten(xs_spec, [present(_index(v, i)) for v in xs_leaves])

    def x_zero() -> Any:  # a stand-in x for length 0, in the pattern of xs
        if no_xs:
            return None
        return optree.tree_unflatten(xs_spec, [present(_conform(_zeros(tuple(v.shape[1:]), v), n, True))
                                               for v, n in zip(xs_leaves, xs_nodes)])

    def arguments(carry_leaves: list, x: Any) -> tuple[Any, Any]:
        # Fresh dual shells every call: ``c[k] = v`` in the body rebinds the shell it is given, which
        # must never be one the fixed point reuses (or the caller's).
        carry_leaves = [Dual(v.level, v.primal, v.tangent) if type(v) is Dual else present(v) for v in carry_leaves]
        return carry_leaves[0] if carry_is_leaf else carry_spec.unflatten(carry_leaves), x

    def call(carry_leaves: list, x: Any) -> tuple[list, list]:
        return body(*arguments(carry_leaves, x))

    def traced_loop() -> tuple[Any, Any]:
        # Batched or recorded values (vmap, linearize) in the carries: a plain loop over the steps, the
        # ys stacked at the end (the pattern machinery below is for duals over plain arrays).
        if length == 0:  # the body once on a stand-in x for the ys' shapes and dtypes, as below
            _, y_leaves = call(init_leaves, x_zero())
            empty = [stack([y], axis=0)[:0, ...] for y in y_leaves]
            return optree.tree_unflatten(carry_spec, init_leaves), optree.tree_unflatten(body.y_spec, empty)
        carry, ys = init_leaves, []
        for i in range(length):
            carry, y = call(carry, x_at(length - 1 - i if reverse else i))
            ys.append(y)
        if reverse:
            ys.reverse()
        stacked = [stack([y[k] for y in ys], axis=0) for k in range(len(ys[0]))]
        return optree.tree_unflatten(carry_spec, carry), optree.tree_unflatten(body.y_spec, stacked)

    if any(_traced(v) for v in init_leaves + xs_leaves):
        return traced_loop()

    nodes = [_pattern(v) for v in init_leaves]
    first = (length - 1 if reverse else 0)
    x0 = x_at(first) if length else x_zero()
    xs_raws = [raw for v in xs_leaves for raw in raws_of(v)]
    # A jit body may know the settled pattern and the ys from an earlier call with this first signature: then
    # every step is replayed from its program (``jit_step.SettledPatterns``), the fixed point is not run.
    patterns = getattr(f, "scan_patterns", None)
    settled = None if patterns is None or not length or step_ranges else patterns.look_up(
        f, arguments([_conform(v, n, True) for v, n in zip(init_leaves, nodes)], x0))
    begun = None if settled is None or settled.nodes is None else _replay_settled(
        settled, body, init_leaves, xs_raws, length, reverse)
    if begun is not None:
        carry, nodes, buffers, y_nodes, start = begun
    else:
        # 1. The fixed point of the carry pattern, on the first x. The last pass ran on init lifted to
        #    the settled pattern, which is step 0 exactly: its result is kept.
        levels = set(active_levels()).union(*[_levels_in(n) for n in nodes + xs_nodes])
        step_range = _STEP_RANGE if step_ranges else contextlib.nullcontext()
        passes = 0
        while True:
            passes += 1
            lifted = [_conform(v, n, True) for v, n in zip(init_leaves, nodes)]
            with step_range:  # each pass runs step 0 (again)
                out_leaves, y_leaves = call(lifted, x0)
            if any(_traced(v) for v in out_leaves + y_leaves):  # the body closes over batched values
                return traced_loop()
            out_nodes = [_pattern(v) for v in out_leaves]
            joined = [_join(n, m) for n, m in zip(nodes, out_nodes)]
            if joined == nodes:
                break
            levels = levels.union(*[_levels_in(n) for n in joined])
            if passes >= _pass_limit(len(nodes), len(levels)):
                grew = [body.carry_names[k] for k, (n, m) in enumerate(zip(nodes, joined)) if n != m]
                raise FixedPointError(
                    f"scan: the nonzero pattern of the carry tangents did not settle after {passes} passes "
                    f"(bound for {len(nodes)} carry leaves and {len(levels)} levels); still changing: "
                    + ", ".join(grew))
            nodes = joined
        if length == 0:
            ys = [_allocate(_conform(y, _pattern(y), False), 0) for y in y_leaves]
            return (optree.tree_unflatten(carry_spec, init_leaves), optree.tree_unflatten(body.y_spec, ys))

        # 2. Step 0's outputs fix the buffers; the loop writes one step at a time.
        y_nodes = [_pattern(y) for y in y_leaves]
        buffers = []
        for y, n in zip(y_leaves, y_nodes):
            y = _conform(y, n, False)
            buffers.append(_allocate(y, length))
            _write(buffers[-1], y, first)
        carry = [_conform(v, n, True) for v, n in zip(out_leaves, nodes)]
        start = 1
        # a jit body: the steps' program, replayed per step (jit_step; x0: any row has the signature of every other)
        found = f.program_for(*arguments(carry, x0)) if hasattr(f, "program_for") else None
        if settled is not None and found is not None:
            settled.store(f, found, nodes, arguments(lifted, x0), carry, y_nodes, buffers, len(xs_raws),
                          (body.y_spec, body.y_ref, _templates(buffers)))
        if found is not None and length > 1 and not step_ranges:
            indices = range(length - 2, -1, -1) if reverse else range(1, length)
            replayed = replay_steps(*found, carry, nodes, xs_raws, buffers, y_nodes, indices)
            if replayed is not None:
                carry, done = replayed
                start += done
    step_range = _STEP_RANGE if step_ranges else None  # entered by hand: no context cost when off
    direct = not depth and carry_is_leaf and (no_xs or plain_xs and single_x)
    single_y = len(buffers) == 1
    for i in range(start, length):
        index = length - 1 - i if reverse else i
        if step_range is not None:
            step_range.__enter__()
        try:
            if direct:  # the plain common case without the helpers' calls
                out_leaves, y_leaves = body(carry[0], None if no_xs else xs_leaves[0][index, ...])
            else:
                out_leaves, y_leaves = call(carry, x_at(index))
            try:  # (plain values in plain slots, the common case, skip the call)
                if direct and nodes[0] is None and type(out_leaves[0]) is not Dual:
                    carry = out_leaves
                else:
                    carry = [v if n is None and type(v) is not Dual else _conform(v, n, True)
                             for v, n in zip(out_leaves, nodes)]
            except _Grow:  # data-dependent structure: grow the pattern from here on
                nodes = [_join(n, _pattern(v)) for n, v in zip(nodes, out_leaves)]
                carry = [_conform(v, n, True) for v, n in zip(out_leaves, nodes)]
            if single_y and y_nodes[0] is None and type(y_leaves[0]) is not Dual:
                buffers[0][index, ...] = y_leaves[0]
                continue
            for k, (buffer, y, n) in enumerate(zip(buffers, y_leaves, y_nodes)):
                if n is None and type(y) is not Dual:
                    buffer[index, ...] = y
                    continue
                try:
                    y = _conform(y, n, False)
                except _Grow:  # past steps had zero tangents in the new slots: zero-filled buffers
                    y_nodes[k] = _join(n, _pattern(y))
                    buffers[k] = _conform(buffers[k], y_nodes[k], "fresh")
                    y = _conform(y, y_nodes[k], False)
                _write(buffers[k], y, index)
        finally:
            if step_range is not None:
                step_range.__exit__(None, None, None)
    return optree.tree_unflatten(carry_spec, carry), optree.tree_unflatten(body.y_spec, buffers)
