"""``scan`` over a ``jit`` body: the steps replayed straight from the body's recorded program.

A jitted body called step by step would check its signature every step (flatten the dual carries,
describe them, look the program up), which costs as much as the eager step on small arrays. But
``scan`` fixes the carries' structure before its loop (the nonzero pattern of their tangents, a
lattice join: see ``scan_loop``), so every step after the first has the signature of the first.
The program recorded for it is looked up once; then each step is one call of its generated replay
function on the raw arrays of the carries and of ``x``, its results sorted once for all into the
next step's raw carries and the rows of the ``ys`` buffers:

- a carry or ``y`` is a tree of duals (levels by the pattern); its raw arrays are listed primal
  before tangent, as ``jit`` lists the raw inputs of a dual;
- the program's outputs say where each raw array comes from: a returned slot, a constant of the
  program, or a symbolic zero. A zero tangent the carry's pattern holds becomes a zero array
  allocated once (the program never writes its inputs); a zero ``y`` tangent is not written (the
  buffers start at zero);
- an output that does not fit the pattern (not expected: the fixed point has settled), several
  recordings of the signature (guards), or a Python scalar among the outputs: no prepared steps,
  the ordinary loop runs. A guard that fails in a replay (``Diverged``), or an error in it (which the
  body may handle: see ``jit``), ends the prepared steps; the ordinary loop takes over from that step
  (and records the new outcome, or raises as eagerly).

The replay is the program's own, so the results are bit for bit those of the eager loop. Where the first
carries are dense and every carry stays so (a result the program knows dense, or a fixed dense array; no
``xs``), the steps run the program without its check of the inputs' layout (``Program.unchecked``).

Later calls (``SettledPatterns``). The fixed point's passes and the look-ups cost more than a few steps
(two passes through the jitted body with duals, each a signature and a replay, and one look-up of the
steps' program). Their outcome follows from the signature of the first pass as long as every signature
met has one program, so it is kept per body and first signature: the settled patterns, the steps'
program and how the ``ys`` buffers were made. A later call with that first signature takes one signature
(to find it) and replays every step from the first into fresh buffers; if the first step's replay fails
(a guard, an error) the fixed point runs as without it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable

from ..backends import backend_of
from ..values import Dual
from .jit_program import Program


class _Unfit(Exception):
    """The program's outputs do not fit the carries' pattern."""


def raws_of(v: Any) -> list:
    """The raw arrays of a tree of duals without symbolic zeros, primal before tangent."""
    if type(v) is Dual:
        return raws_of(v.primal) + raws_of(v.tangent)
    return [v]


def _sources(d: Any, node: Any, levels: list, position: dict) -> Any:
    """Where each raw array of a value of pattern ``node`` comes from, given the program's output
    descriptor ``d`` (see ``jit._output``): a tree of pairs (primal, tangent) over ints (positions in
    the replay's result), ``("C", array)`` (a constant) and ``None`` (a symbolic zero: the whole
    subtree). Mirrors ``scan_loop._conform``."""
    def drop_zero_duals(d: Any, above: int) -> Any:
        while d[0] == "D" and levels[d[1]] > above:
            if d[3][0] != "Z":
                raise _Unfit
            d = d[2]
        return d

    if node is None:
        d = drop_zero_duals(d, -1)
        if d[0] == "V":
            return position[d[1]]
        if d[0] == "C":
            return d
        raise _Unfit
    level, primal_node, tangent_node = node
    d = drop_zero_duals(d, level)
    if d[0] == "D" and levels[d[1]] == level:
        tangent = None if d[3][0] == "Z" else _sources(d[3], tangent_node, levels, position)
        return _sources(d[2], primal_node, levels, position), tangent
    return _sources(d, primal_node, levels, position), None


def _pair(v: Any, source: Any, out: list) -> None:
    """(raw array of ``v``, its source) for each raw array of the dual tree ``v``, in ``raws_of`` order."""
    if source is None:
        out.extend((raw, None) for raw in raws_of(v))
    elif type(v) is Dual:
        if type(source) is not tuple or len(source) != 2 or source[0] == "C":
            raise _Unfit
        _pair(v.primal, source[0], out)
        _pair(v.tangent, source[1], out)
    elif type(source) is tuple and source[0] != "C":
        raise _Unfit
    else:
        out.append((v, source))


def duals_of(node: Any, raws: Any) -> Any:
    """The tree of duals of pattern ``node`` over the raw arrays the iterator ``raws`` gives (``raws_of`` order)."""
    if node is None:
        return next(raws)
    return Dual(node[0], duals_of(node[1], raws), duals_of(node[2], raws))


def _copy(raw: Any) -> Any:
    return backend_of(raw).xp.asarray(raw, copy=True)  # (Dask arrays have no __array_namespace__)


def _loop_source(n_out: int, carry_from: list, n_xs: int, writes: list, n_constant_writes: int) -> str:
    """The source of the loop over the steps for one layout: ``carry_from`` (a position of the replay's result,
    or None: the fixed array ``f<k>`` of that carry), ``writes`` (positions written into the buffers ``b<k>``;
    the constants ``k<j>`` into the buffers after them)."""
    def names(prefix: str, n: int) -> list:
        return [f"{prefix}{k}" for k in range(n)]

    carries, xs, outs = names("c", len(carry_from)), names("x", n_xs), names("o", n_out)
    parameters = ["run", "indices", *carries, *xs, *names("b", len(writes) + n_constant_writes),
                  *names("f", len(carry_from)), *names("k", n_constant_writes)]
    arguments = carries + [f"{x}[i, ...]" for x in xs]
    lines = [f"def loop({', '.join(parameters)}):",
             "    done = 0",
             "    for i in indices:",
             "        try:",
             f"            {''.join(o + ', ' for o in outs) + '= ' if outs else ''}run({', '.join(arguments)})",
             "        except Exception:",
             "            break"]
    lines += [f"        c{k} = {'f' + str(k) if s is None else 'o' + str(s)}" for k, s in enumerate(carry_from)]
    lines += [f"        b{k}[i, ...] = o{s}" for k, s in enumerate(writes)]
    lines += [f"        b{len(writes) + k}[i, ...] = k{k}" for k in range(n_constant_writes)]
    lines += ["        done += 1", f"    return done, [{', '.join(carries)}]"]
    return "\n".join(lines)


@functools.lru_cache(maxsize=256)
def _loop(n_out: int, carry_from: tuple, n_xs: int, writes: tuple, n_constant_writes: int) -> Callable:
    scope: dict = {}
    exec(compile(_loop_source(n_out, list(carry_from), n_xs, list(writes), n_constant_writes),  # noqa: S102
                 "<cupy_ad.jit scan steps>", "exec"), scope)
    return scope["loop"]


def _plan(program: Program, levels: list, carry: list, nodes: list, buffers: list, y_nodes: list,
          n_xs: int) -> tuple | None:
    """How the replay's results become the next carries and the buffers' rows (see the module docstring):
    the loop, the fixed carries (zeros allocated once, constants) and which buffers' raw arrays are written
    with a result or a constant. None if the program does not fit."""
    outputs = program.outputs
    if len(outputs) != len(carry) + len(buffers):
        return None
    position: dict = {}
    for k, slot in enumerate(program.returned):
        position.setdefault(slot, k)
    carry_pairs: list = []
    y_pairs: list = []
    try:
        for v, d, node in zip(carry, outputs, nodes):
            _pair(v, _sources(d, node, levels, position), carry_pairs)
        for buffer, d, node in zip(buffers, outputs[len(carry):], y_nodes):
            _pair(buffer, _sources(d, node, levels, position), y_pairs)
    except _Unfit:
        return None
    carry_from = tuple(s if type(s) is int else None for _, s in carry_pairs)
    fixed = [None if type(s) is int else backend_of(raw).xp.zeros_like(raw) if s is None else s[1]
             for raw, s in carry_pairs]  # (never written: the program does not write its inputs)
    written = [(k, s) for k, (_, s) in enumerate(y_pairs) if type(s) is int]
    constants = [(k, s[1]) for k, (_, s) in enumerate(y_pairs) if type(s) is tuple]
    loop = _loop(len(program.returned), carry_from, n_xs, tuple(s for _, s in written), len(constants))
    # Steps whose first carries are dense keep them dense (``jit_program._dense_slots``): every carry a result the
    # program knows dense or a fixed dense array, no x rows (their layout is the caller's); they may skip the
    # program's check of its inputs on entry.
    dense_steps = program.unchecked is not None and not n_xs and all(
        program.returned[s] in program.dense if type(s) is int else backend_of(f).dense(f)
        for s, f in zip(carry_from, fixed))
    return loop, fixed, [k for k, _ in written] + [k for k, _ in constants], [c for _, c in constants], dense_steps


def _by_rank(node: Any, rank: dict) -> Any:
    """A carry's pattern (``scan_loop._pattern``) with each level replaced by its rank among the caller's."""
    return None if node is None else (rank[node[0]], _by_rank(node[1], rank), _by_rank(node[2], rank))


def _at_levels(node: Any, levels: list) -> Any:
    """``_by_rank`` undone: the pattern at the caller's ``levels`` (by rank)."""
    return None if node is None else (levels[node[0]], _at_levels(node[1], levels), _at_levels(node[2], levels))


def _planned(program: Program, levels: list, carry: list, nodes: list, buffers: list, y_nodes: list, n_xs: int,
             by_rank: tuple | None) -> tuple | None:
    """``_plan``, made once per program, patterns by rank, number of levels and of ``xs`` leaves (see
    ``replay_steps``)."""
    if by_rank is None:
        rank = {level: k for k, level in enumerate(levels)}
        try:
            by_rank = (tuple(_by_rank(n, rank) for n in nodes), tuple(_by_rank(n, rank) for n in y_nodes))
        except KeyError:  # (a level outside the caller's: planned for this call only)
            by_rank = None
    key = None if by_rank is None else (*by_rank, len(levels), n_xs)
    plans = program.__dict__.setdefault("scan_plans", {})
    if key is not None and key in plans:
        return plans[key]
    plan = _plan(program, levels, carry, nodes, buffers, y_nodes, n_xs)
    if key is not None:
        plans[key] = plan
    return plan


def replay_steps(program: Program, levels: list, carry: list, nodes: list, xs_raws: list, buffers: list,
                 y_nodes: list, indices: Iterable[int], by_rank: tuple | None = None) -> tuple[list, int] | None:
    """Run the steps ``indices`` of a scan by replaying ``program`` (recorded for the signature of the
    steps' carries and ``x``, with the caller's ``levels`` by rank): ``carry`` the carry leaves (in
    their patterns ``nodes``), ``xs_raws`` the raw arrays of the ``xs`` leaves (rows taken per step),
    ``buffers`` the ``ys`` buffers (patterns ``y_nodes``, rows written per step). The carry leaves after
    the last step replayed and the number of steps replayed (fewer on a failed guard); ``None`` if the
    program does not fit. The plan is made once per program and patterns, the patterns' levels by rank
    (each call of the enclosing transforms makes new levels: keyed by them, every call would make a plan
    and keep it; ``by_rank``: the tuples of ``nodes`` and ``y_nodes`` by rank, where the caller has them)."""
    plan = _planned(program, levels, carry, nodes, buffers, y_nodes, len(xs_raws), by_rank)
    if plan is None:
        return None
    loop, fixed, targets, constants, dense_steps = plan
    buffer_raws = [raw for buffer in buffers for raw in raws_of(buffer)]
    raws = [raw for v in carry for raw in raws_of(v)]
    run = program.unchecked if dense_steps and all(backend_of(raw).dense(raw) for raw in raws) else program.run
    done, raws = loop(run, indices, *raws, *xs_raws, *[buffer_raws[k] for k in targets], *fixed, *constants)
    if done:  # the caller may write into the carries it gets: none is shared with the program or other steps
        raws = [raw if f is None else _copy(raw) for raw, f in zip(raws, fixed)]
    raws = iter(raws)
    return [duals_of(node, raws) for node in nodes], done


class SettledPatterns:
    """The settled carry patterns of ``scan``'s fixed point over one jit body, by the signature of the first
    pass's arguments (``init`` in its own pattern, the first ``x``), each with the program of the steps (the
    last pass's too: one signature) and what ``scan`` needs to make the ``ys`` buffers, so that a later call
    with that signature replays every step, from the first, and runs no pass.

    A pass's outcome is its program's: which tangents it returns follows from the program's outputs, so
    the patterns follow from the first signature as long as every signature met has one program. A second
    program for a signature (a guard's new outcome, a replay that raised) may return another structure
    for other values: the body then keeps no patterns (``forget``). As with ``jit`` itself, a changed
    global or closed-over value is not seen: the patterns are those of the recorded programs."""

    def __init__(self) -> None:
        self.entries: dict = {}
        self.several = False  # some signature of the body has more than one program

    def forget(self) -> None:
        self.several = True
        self.entries.clear()

    def look_up(self, f: Callable, first_args: tuple) -> "Settled | None":
        """The settled pattern for the fixed point's first pass (``Settled.nodes`` is None if not known yet);
        None where the body keeps none."""
        found = None if self.several else f.signature_of(*first_args)
        if found is None:
            return None
        key, _, levels = found
        return Settled(self, key, levels, self.entries.get(key))


class Settled:
    """One scan call's settled pattern: the carries' ``nodes`` and the ys' ``y_nodes`` (at the call's
    ``levels``), the steps' ``program`` and ``scan``'s own ``ys`` (structure, shapes, buffer templates), when
    a call with the same first signature settled before and the program replays under the caller's error
    state now (else ``nodes`` is None and ``store`` keeps this call's)."""

    def __init__(self, patterns: SettledPatterns, key: tuple, levels: list, entry: tuple | None):
        self.patterns, self.key, self.levels = patterns, key, levels
        self.nodes = self.y_nodes = self.program = self.ys = self.by_rank = None
        if entry is not None and not patterns.several and entry[2].replays_now():
            nodes, y_nodes, self.program, self.ys = entry
            self.nodes = [_at_levels(n, levels) for n in nodes]
            self.y_nodes = [_at_levels(n, levels) for n in y_nodes]
            self.by_rank = (nodes, y_nodes)  # (``replay_steps``' key)

    def store(self, f: Callable, steps: tuple, nodes: list, last_pass: tuple, carry: list, y_nodes: list,
              buffers: list, n_xs: int, ys: Any) -> None:
        """Keep this call's settled ``nodes`` (``carry``: the first step's carries in them), ``y_nodes`` (``buffers``:
        the ys') and ``ys`` with ``steps``, the program of the steps after the first and the caller's levels by
        rank (as ``jit``'s ``program_for`` gives it), where a later call can replay every step from them: the last
        pass (arguments ``last_pass``: step 0 exactly) ran that program and the program fits the patterns
        (``replay_steps``; ``n_xs`` leaves of xs).

        Levels: a jit body closes over no dual (``jit`` refuses it), so every level of the patterns is one of the
        first signature's (those of init and x, and the current jvp's, at which plain ones are handed to the body).
        The steps' levels are the same, or those without the current level where a plain init took others: the
        current level is the highest, so the patterns' ranks are the same either way."""
        program = steps[0]
        last = f.program_for(*last_pass)
        if self.patterns.several or last is None or last[0] is not program:
            return
        rank = {level: k for k, level in enumerate(self.levels)}
        by_rank = (tuple(_by_rank(n, rank) for n in nodes), tuple(_by_rank(n, rank) for n in y_nodes))
        if _planned(program, self.levels, carry, nodes, buffers, y_nodes, n_xs, by_rank) is not None:
            self.patterns.entries[self.key] = (*by_rank, program, ys)
