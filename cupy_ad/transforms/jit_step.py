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
  the ordinary loop runs. A guard that fails in a replay (``Diverged``) ends the prepared steps;
  the ordinary loop takes over from that step (and records the new outcome).

The replay is the program's own, so the results are bit for bit those of the eager loop.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..core import Dual
from .jit_program import Diverged, Program


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
        if type(source) is not tuple or len(source) != 2:
            raise _Unfit
        _pair(v.primal, source[0], out)
        _pair(v.tangent, source[1], out)
    elif type(source) is tuple and source[0] != "C":
        raise _Unfit
    else:
        out.append((v, source))


def _rebuild(node: Any, raws: Any) -> Any:
    if node is None:
        return next(raws)
    return Dual(node[0], _rebuild(node[1], raws), _rebuild(node[2], raws))


def _copy(raw: Any) -> Any:
    return raw.__array_namespace__().asarray(raw, copy=True)


def replay_steps(program: Program, levels: list, carry: list, nodes: list, xs_raws: list, buffers: list,
                 y_nodes: list, indices: Iterable[int]) -> tuple[list, int] | None:
    """Run the steps ``indices`` of a scan by replaying ``program`` (recorded for the signature of the
    steps' carries and ``x``, with the caller's ``levels`` by rank): ``carry`` the carry leaves (in
    their patterns ``nodes``), ``xs_raws`` the raw arrays of the ``xs`` leaves (rows taken per step),
    ``buffers`` the ``ys`` buffers (patterns ``y_nodes``, rows written per step). The carry leaves after
    the last step replayed and the number of steps replayed (fewer on a failed guard); ``None`` if the
    program does not fit."""
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
    # next carries: (position, None) or (None, a fixed array: a zero allocated once, or a constant)
    carry_from = [(s, None) if type(s) is int else (None, raw.__array_namespace__().zeros_like(raw) if s is None
                                                    else s[1]) for raw, s in carry_pairs]
    writes = [(buffer, s) for buffer, s in y_pairs if type(s) is int]
    constant_writes = [(buffer, s[1]) for buffer, s in y_pairs if type(s) is tuple]
    run = program.run
    raws = [raw for raw, _ in carry_pairs]
    done = 0
    for index in indices:
        try:
            out = run(*raws, *[x[index, ...] for x in xs_raws])
        except Diverged:
            break
        raws = [out[k] if k is not None else fixed for k, fixed in carry_from]
        for buffer, k in writes:
            buffer[index, ...] = out[k]
        for buffer, value in constant_writes:
            buffer[index, ...] = value
        done += 1
    if done:  # the caller may write into the carries it gets: none is shared with the program or other steps
        raws = [raw if k is not None else _copy(raw) for raw, (k, _) in zip(raws, carry_from)]
    raws = iter(raws)
    return [_rebuild(node, raws) for node in nodes], done
