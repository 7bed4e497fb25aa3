"""``jvp``: push tangents through a function of arrays."""
from __future__ import annotations

import numbers
from typing import Any, Callable

import optree

from ..backends import backend_of, default_backend, is_array
from ..values import Batched, Dual, JitTraced, Recorded, Zero, base_array, check_alive, levelled, new_level
from ..namespace._rules import instantiate, is_inexact_dtype
from ..namespace.weak import weakly_typed


def _path_name(root: str, path: tuple) -> str:
    return root + "".join(f"[{p!r}]" for p in path)


def aux_pair(transform: str, out: Any) -> Any:
    """``out`` of an ``f`` called with ``has_aux=True``: the pair (output, aux), else a TypeError naming
    the transform and what ``f`` returned."""
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        got = f"{type(out).__name__} of length {len(out)}" if isinstance(out, (tuple, list)) else (
            "an array" if hasattr(out, "shape") else type(out).__name__)
        raise TypeError(f"{transform}: with has_aux=True f must return a pair (output, aux), got {got}")
    return out


# The array API function of each binary operator (x.__mul__ is multiply): for the message below.
_OPERATOR_FUNCTIONS = {
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide", "floordiv": "floor_divide",
    "mod": "remainder", "pow": "pow", "matmul": "matmul", "and": "bitwise_and", "or": "bitwise_or",
    "xor": "bitwise_xor", "lshift": "bitwise_left_shift", "rshift": "bitwise_right_shift", "lt": "less",
    "le": "less_equal", "gt": "greater", "ge": "greater_equal", "eq": "equal", "ne": "not_equal"}
_TRANSFORM_OF = {Dual: "jvp", Batched: "vmap", Recorded: "linearize", JitTraced: "jit"}


def call_user_function(f: Callable, *args: Any, **kwargs: Any) -> Any:
    """``f(*args, **kwargs)``: the user's function called by a transform on its values. A backend array's
    operator that raises on one of them as its right operand (array_api_strict's arrays: ``y * x`` with
    ``y`` closed over) becomes a TypeError naming the fix."""
    try:
        return f(*args, **kwargs)
    except TypeError as error:
        _explain_refused_operand(error)
        raise


def _explain_refused_operand(error: TypeError) -> None:
    """Raise a TypeError naming the fix where ``error`` was raised by a binary operator of another array
    type refusing a value of a transform as its right operand: Python tries the value's reflected
    operator only when that operator returns NotImplemented (array_api_strict raises instead:
    data-apis/array-api-strict#188), and no hook (``__array_priority__``) reaches its check. Only a
    backend array's operator counts (``is_array``): a user's class whose ``__mul__`` raises, or passes
    the value on to an array's, keeps its own error or names the array's operator."""
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        name = code.co_name
        if name[:2] == name[-2:] == "__" and name[2:-2] in _OPERATOR_FUNCTIONS and code.co_argcount == 2:
            left, right = (tb.tb_frame.f_locals.get(v) for v in code.co_varnames[:2])
            if levelled(right) and not levelled(left) and is_array(left) and type(right).__name__ in str(error):
                function = _OPERATOR_FUNCTIONS[name[2:-2]]
                raise TypeError(
                    f"{type(left).__module__.split('.')[0]}'s {type(left).__name__}.{name} refused a "
                    f"{_TRANSFORM_OF[type(right)]} value as its right operand ({error}) instead of returning "
                    f"NotImplemented, so Python never tried the value's own reflected operator (array_api_strict "
                    f"does this, data-apis/array-api-strict#188). Write xp.{function}(y, x) with "
                    f"xp = x.__array_namespace__() (y the array, x the traced value), or pass y to f as an argument "
                    f"(a primal with tangent None; in vmap, in_axes None)") from error
        tb = tb.tb_next


def _is_no_tangent(t: Any) -> bool:
    return t is None or t is Zero or type(t) is Zero


def _common_backend(named_leaves: list[tuple[str, Any]]):
    """The one backend of all array leaves; a TypeError naming both when two are mixed."""
    found = None
    for name, leaf in named_leaves:
        if not (isinstance(leaf, Dual) or is_array(leaf)):
            continue
        backend = backend_of(base_array(leaf))
        if found is None:
            found = (name, backend)
        elif backend.name != found[1].name:  # (a jit recording's proxy stands for its backend)
            raise TypeError(
                f"arrays from two backends in one jvp call: {found[0]} is {found[1].name}, "
                f"{name} is {backend.name}")
    return found[1] if found else default_backend()


def _as_array(x: Any, backend: Any, name: str) -> Any:
    if isinstance(x, Dual) or is_array(x):
        return x
    if isinstance(x, numbers.Number):
        return backend.xp.asarray(x)
    raise TypeError(f"{name} must be an array or a Python scalar, got {type(x).__name__}")


def _check_tangent(name: str, primal: Any, tangent: Any) -> Any:
    if _is_no_tangent(tangent):
        return Zero.like(primal)
    if not is_inexact_dtype(primal):
        raise ValueError(
            f"{name} has integer or boolean dtype {primal.dtype}: it has no tangent; pass None or ad.Zero")
    if tuple(tangent.shape[1:]) == tuple(primal.shape) and len(tangent.shape) == len(primal.shape) + 1:
        raise ValueError(
            f"tangent for {name} has shape {tuple(tangent.shape)}: a stack of {tangent.shape[0]} tangents of the "
            f"primal's shape {tuple(primal.shape)}? jvp takes one direction; for many at once use "
            f"ad.vmap(lambda t: ad.jvp(f, primals, (t,)))(stacked), or ad.jacfwd(f) for the whole Jacobian")
    if tuple(tangent.shape) != tuple(primal.shape) or tangent.dtype != primal.dtype:
        raise ValueError(
            f"tangent for {name} has shape {tuple(tangent.shape)} and dtype {tangent.dtype}, but the primal has "
            f"shape {tuple(primal.shape)} and dtype {primal.dtype}")
    return tangent


def jvp(f: Callable[..., Any], primals: tuple | list, tangents: tuple | list) -> tuple[Any, Any]:
    """Evaluate ``f(*primals)`` and its directional derivative along ``tangents``.

    ``primals`` and ``tangents`` are tuples (or lists) of pytrees (tuples, lists, dicts,
    namedtuples) of arrays or Python scalars, with the same structure; a tangent of ``None`` or
    ``ad.Zero`` means "no perturbation" (for a leaf or a whole subtree). Returns ``(outputs,
    output_tangents)`` with the structure of ``f``'s result. Tangents of floating-point outputs are
    arrays (zeros where the derivative is symbolically zero); integer and boolean outputs get a
    ``Zero`` (shape and dtype, no data).
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp(f, primals, tangents): primals and tangents must be tuples (or lists)")
    if len(primals) != len(tangents):
        raise ValueError(f"jvp got {len(primals)} primals but {len(tangents)} tangents")
    paths, primal_leaves, spec = optree.tree_flatten_with_path(tuple(primals), none_is_leaf=True)
    tangent_leaves, tangent_spec = optree.tree_flatten(tuple(tangents), none_is_leaf=True)
    if tangent_spec != spec:  # (a prefix: None or ad.Zero for a whole subtree)
        try:
            tangents = optree.tree_broadcast_prefix(tuple(tangents), tuple(primals), none_is_leaf=True,
                                                    is_leaf=lambda t: t is Zero or type(t) is Zero)
        except ValueError:
            raise ValueError(
                f"tangents must have the structure of primals: primals {spec}, tangents {tangent_spec}") from None
        tangent_leaves = spec.flatten_up_to(tangents)
    names = [_path_name("primals", p) for p in paths]
    backend = _common_backend(list(zip(names, primal_leaves)) + [
        (n.replace("primals", "tangents", 1), t) for n, t in zip(names, tangent_leaves)])
    with new_level() as level:
        duals = []
        for name, p, t in zip(names, primal_leaves, tangent_leaves):
            if p is None:  # an empty subtree, as in JAX
                if not _is_no_tangent(t):
                    raise ValueError(f"{name} is None but its tangent is not")
                duals.append(None)
                continue
            weak = weakly_typed(p)  # a Python scalar keeps the dtype the code computes in (namespace.weak)
            p = _as_array(p, backend, name)
            t = t if _is_no_tangent(t) else _as_array(t, backend, name.replace("primals", "tangents", 1))
            duals.append(Dual(level, p, _check_tangent(name, p, t), weak))
        out = call_user_function(f, *optree.tree_unflatten(spec, duals))
        out_paths, out_leaves, out_spec = optree.tree_flatten_with_path(out)
        values, derivatives = [], []
        for path, leaf in zip(out_paths, out_leaves):
            if isinstance(leaf, Dual) and leaf.level == level:
                value, tangent = leaf.primal, leaf.tangent
                check_alive(value)
            elif isinstance(leaf, Dual) or is_array(leaf):
                check_alive(leaf)
                value, tangent = leaf, Zero.like(leaf)
            elif type(leaf) is Zero:  # an integer output's tangent from a nested jvp: constant, so its own is zero
                value, tangent = leaf, leaf
            else:
                raise TypeError(f"f must return arrays or pytrees of arrays; output{_path_name('', path)} "
                                f"is a {type(leaf).__name__}")
            if type(tangent) is Zero and is_inexact_dtype(value):
                tangent = instantiate(tangent, value)
            values.append(value)
            derivatives.append(tangent)
    return optree.tree_unflatten(out_spec, values), optree.tree_unflatten(out_spec, derivatives)
