"""``linearize``: the primal computed once, the tangent computation recorded once and replayed.

``jvp`` runs on tangents that are ``Recorded`` values of a recording level below its own. Every JVP
rule computes its primal side (factorisations included) on plain arrays and its tangent side by
binding primitives to tangents, with primal-side arrays as constants; each such bind on a recorded
value appends an equation ``(prim, args, params, outs)`` to the level's program (the value it
computes on is a stand-in: the tangent of zeros, for shapes and dtypes). ``f_jvp`` replays the
program with ``bind``, so replaying under ``vmap`` batches it and the results are those ``jvp``
computes, bit for bit.

Towards reverse mode: the program is linear in its variables (each equation applies a primitive
to variables and constants, linearly in the variables: the tangent sides of the JVP rules), so
transposing it gives vjp. What that needs: a transpose rule per primitive that appears with a
variable argument (add/subtract/negative: fan-out; multiply/divide by a constant: the same; matmul,
tensordot, triangular_product, solve_triangular with a constant operand: the transposed operation;
reshape, permute_dims, moveaxis, expand_dims, squeeze: their inverses; broadcast_to and sum: each
other; getitem, take: scatter-adds; concat and stack: slices; where with a constant mask: where;
astype, real/imag/conj: their adjoints), and a backward walk over the equations accumulating
cotangents per variable. Rules whose tangent side is not linear in the tangent (eigh and svd at
clustered values take eigendecompositions of tangent blocks) would need marking and refusing.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import optree

from ..backends import backend_of, is_array
from ..core import bind
from ..values import Batched, Dual, Program, Recorded, Var, Zero, base_array, new_level, strip
from ..namespace._rules import instantiate, is_inexact_dtype
from .jvp import aux_pair, jvp


def _checked(name: str, t: Any, primal: Any, reference: tuple) -> Any:
    """The tangent ``t`` for ``primal`` as ``jvp`` takes it (a Python number: an array of the backend's), or a
    ``ValueError`` naming the primal and what differs."""
    backend = backend_of(base_array(primal))
    if isinstance(t, numbers.Number):
        t = backend.xp.asarray(t)
    elif not (isinstance(t, Dual) or is_array(t)):
        raise TypeError(f"f_jvp: the tangent for {name} must be an array, got {type(t).__name__}")
    if backend_of(base_array(t)).name != backend.name:
        raise ValueError(f"f_jvp: the tangent for {name} is a {backend_of(base_array(t)).name} array but the primal "
                         f"is {backend.name}")
    if (tuple(t.shape), t.dtype) != reference:
        stacked = tuple(t.shape[1:]) == reference[0] and t.dtype == reference[1]
        raise ValueError(f"f_jvp: tangent for {name} has shape {tuple(t.shape)} and dtype {t.dtype}, but the primal "
                         f"has shape {reference[0]} and dtype {reference[1]}" + (
                             f"; for a stack of {t.shape[0]} tangents use ad.vmap(f_jvp)(stacked)" if stacked else ""))
    return t


def _needed(equations: list, outputs: list) -> list:
    """The equations the outputs depend on (the others: tangent work for what f_jvp does not return)."""
    needed = {v.index for v in outputs if type(v) is Var}
    kept = []
    for equation in reversed(equations):
        if any(var.index in needed for var in equation[3]):
            kept.append(equation)
            needed.update(a.index for a in equation[1] if type(a) is Var)
    return kept[::-1]


def linearize(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> tuple:
    """``(f(*primals), f_jvp)`` where ``f_jvp(*tangents)`` equals ``jvp(f, primals, tangents)[1]``.

    The primal and its factorisations are computed once, here; ``f_jvp`` only does tangent work
    (the recorded tangent side of every JVP rule, replayed). Tangents have the structure, shapes and
    dtypes of ``primals`` (``None`` or ``ad.Zero``: no perturbation); ``f_jvp`` accepts batched
    tangents through ``vmap`` (``vmap(f_jvp)(stacked)``: many directions, one pass each primitive).
    With ``has_aux`` ``f`` returns ``(output, aux)`` and the result is ``(output, f_jvp, aux)``, as in JAX.
    """
    if not callable(f):
        raise TypeError(f"linearize: f must be callable, got {type(f).__name__}")
    paths, leaves, spec = optree.tree_flatten_with_path(primals, none_is_leaf=True)
    if any(type(strip(leaf)) is Batched for leaf in leaves):
        raise NotImplementedError("linearize of primals mapped by an enclosing vmap is not supported; linearize "
                                  "the mapped function instead: ad.linearize(ad.vmap(f), xs)")
    program = Program()
    with new_level("record", program) as level:
        inputs = []
        for leaf in leaves:
            differentiable = leaf is not None and hasattr(leaf, "dtype") and is_inexact_dtype(leaf)
            inputs.append(Recorded(level, instantiate(Zero.like(strip(leaf)), leaf), program.new_var())
                          if differentiable else None)
        out, tangents = jvp((lambda *args: aux_pair("linearize", f(*args))) if has_aux else f, primals,
                            optree.tree_unflatten(spec, inputs))
    if has_aux:  # (the aux's tangent work is not replayed: _needed)
        (out, aux), tangents = out, tangents[0]
    in_vars = [None if t is None else t.var for t in inputs]
    out_leaves, out_spec = optree.tree_flatten(tangents, is_leaf=lambda t: type(t) is Zero)
    outputs = [t.var if type(t) is Recorded else t for t in out_leaves]
    equations = _needed(program.equations, outputs)
    shapes = [None if v is None else (tuple(leaf.shape), leaf.dtype) for v, leaf in zip(in_vars, leaves)]

    def f_jvp(*tangents: Any) -> Any:
        if len(tangents) != len(primals):
            raise ValueError(f"f_jvp takes {len(primals)} tangents (one per primal), got {len(tangents)}")
        try:
            t_leaves = spec.flatten_up_to(tangents)
        except ValueError:
            raise ValueError(f"f_jvp: tangents must have the structure of the primals ({spec})") from None
        env: list[Any] = [None] * program.n_vars
        for path, var, reference, t, primal in zip(paths, in_vars, shapes, t_leaves, leaves):
            no_tangent = t is None or t is Zero or type(t) is Zero
            if var is None:
                if not no_tangent:
                    name = f"primals{''.join(f'[{p!r}]' for p in path)}"
                    if hasattr(primal, "dtype"):  # (as jvp refuses it)
                        raise ValueError(f"f_jvp: {name} has integer or boolean dtype {primal.dtype}: it has no "
                                         f"tangent; pass None or ad.Zero")
                    raise ValueError(f"f_jvp: {name} is a Python {type(primal).__name__}, a constant of linearize: "
                                     f"pass None or ad.Zero as its tangent, or linearize at a 0-d array to "
                                     f"differentiate along it")
                continue
            env[var.index] = (instantiate(Zero.like(strip(primal)), primal) if no_tangent else
                              _checked(f"primals{''.join(f'[{p!r}]' for p in path)}", t, primal, reference))
        for prim, args, params, outs in equations:
            result = bind(prim, *[env[a.index] if type(a) is Var else a for a in args], **params)
            if prim.multiple_results:
                for var, value in zip(outs, result):
                    env[var.index] = value
            else:
                env[outs[0].index] = result
        return optree.tree_unflatten(out_spec, [env[t.index] if type(t) is Var else t for t in outputs])

    return (out, f_jvp, aux) if has_aux else (out, f_jvp)


__all__ = ["linearize"]
