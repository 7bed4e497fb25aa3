"""``jacfwd`` and ``hessian``: Jacobians as ``vmap`` of ``jvp`` over the standard basis.

All directions run at once: the tangents are one batched value, so each primitive's JVP rule runs
once with its primal work (a factorisation) done once and its tangent work batched.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import optree

from ..backends import backend_of, default_backend, is_array
from ..values import Batched, Dual, JitTraced, Recorded, Zero, base_array, program_of
from ..namespace import permute_dims, reshape
from ..namespace._rules import is_complex_dtype, is_inexact_dtype
from .jvp import aux_pair, jvp
from .vmap import vmap


def _argnums(argnums: Any, n_args: int) -> tuple[int, ...]:
    if not isinstance(argnums, (int, tuple, list)) or isinstance(argnums, bool):
        raise TypeError(f"jacfwd: argnums must be an int or a tuple of ints, got {argnums!r}")
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums:
        raise ValueError("jacfwd: argnums is empty; name at least one positional argument to differentiate")
    for k in nums:
        if not isinstance(k, int) or isinstance(k, bool) or not -n_args <= k < n_args:
            raise ValueError(f"jacfwd: argnums {argnums!r} does not fit a call with {n_args} positional arguments")
    normalised = tuple(k % n_args for k in nums)
    if len(set(normalised)) < len(normalised):
        raise ValueError(f"jacfwd: argnums {argnums!r} names an argument twice; name each argument once")
    return normalised


def _tree_holds_arrays(x: Any) -> bool:
    """Whether any leaf of the tree ``x`` is an array (a traced value included)."""
    return any(isinstance(v, (Dual, Batched, Recorded)) or is_array(v) for v in optree.tree_leaves(x))


def _basis(leaves: list, names: list[str], holomorphic: bool, args: tuple) -> tuple[list, list, Any]:
    """The standard basis of the inputs: for each leaf, N stacked tangents of its shape (N = all entries);
    the leaves' shapes and the backend (the arguments' arrays', else the default one: a Python float is a
    0-d input of the default floating dtype, as in JAX, and stays weakly typed in f)."""
    array = next((leaf for leaf in optree.tree_leaves(args) if isinstance(leaf, Dual) or is_array(leaf)), None)
    base = None if array is None else base_array(array)
    backend = default_backend() if base is None else backend_of(base)
    dtypes = []
    for name, leaf in zip(names, leaves):
        if type(leaf) in (float, complex):
            dtypes.append(backend.xp.asarray(leaf).dtype)
        elif (isinstance(leaf, Dual) or is_array(leaf)) and is_inexact_dtype(leaf):
            dtypes.append(leaf.dtype)
        else:
            raise TypeError(f"jacfwd: {name} must be a floating-point array or a Python float (differentiated inputs "
                            f"are; pass others through argnums' complement), got "
                            f"{getattr(leaf, 'dtype', type(leaf).__name__)}")
        if backend.xp.isdtype(dtypes[-1], "complex floating") != holomorphic:  # (the real basis of a complex
            raise TypeError(f"jacfwd: {name} has dtype {dtypes[-1]}; " + (  # input spans half its directions)
                "holomorphic=True takes complex inputs only" if holomorphic else
                "a complex input needs holomorphic=True (the complex derivative of a holomorphic f, as in JAX); "
                "for a non-holomorphic f differentiate along its real and imaginary parts (jvp, or real inputs)"))
    shapes = [tuple(getattr(leaf, "shape", ())) for leaf in leaves]
    sizes = [math.prod(shape) for shape in shapes]
    total = sum(sizes)
    # inside a jit recording the basis is one of its constants, so that what indexes it with traced keys
    # (x[mask] of a direction stack) is recorded too
    lift = program_of(base).constant if type(base) is JitTraced else (lambda b: b)
    basis, offset = [], 0
    for shape, dtype, size in zip(shapes, dtypes, sizes):
        rows = backend.unit_rows(total, size, offset, dtype)  # (N, size): ones where row = offset + column
        basis.append(lift(backend.xp.reshape(rows, (total, *shape))))
        offset += size
    return basis, shapes, backend


def jacfwd(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0, has_aux: bool = False,
           holomorphic: bool = False) -> Callable:
    """The Jacobian of ``f`` by forward mode, as ``jax.jacfwd``.

    Returns a function of ``f``'s arguments giving, for every output leaf, an array of shape
    ``output.shape + input.shape`` for every input leaf of the arguments ``argnums`` (an int: the
    structure of that argument; a tuple: a tuple of them). With ``has_aux`` ``f`` returns ``(output,
    aux)`` and the result is ``(jacobian, aux)``. Keyword arguments, and the other positional arguments
    that hold no array, are passed to ``f`` as they are (not differentiated, as in JAX). A Python float
    input is a 0-d one (weakly typed in ``f``, as in ``jvp``; its directions on the backend of the other
    arguments' arrays). Complex inputs need
    ``holomorphic=True`` (then the Jacobian is the complex derivative, f and its inputs and outputs
    complex), as in JAX. All directions are pushed through one ``jvp`` under ``vmap``: a factorisation
    in ``f`` is computed once, whatever the number of inputs.
    """
    if not callable(f):
        raise TypeError(f"jacfwd: f must be callable, got {type(f).__name__}")

    def jacobian(*args: Any, **kwargs: Any) -> Any:
        nums = _argnums(argnums, len(args))
        dynamic = tuple(args[k] for k in nums)
        paths, leaves, spec = optree.tree_flatten_with_path(dynamic)
        names = [f"args[{nums[p[0]]}]" + "".join(f"[{q!r}]" for q in p[1:]) for p in paths]
        if not leaves:
            raise ValueError(f"jacfwd: the arguments argnums {argnums!r} names hold no arrays to differentiate")
        basis, shapes, backend = _basis(leaves, names, holomorphic, args)
        # the other arguments holding no array are closed over, as in JAX (a str; an int static_argnums of a
        # jit reads: not turned into a 0-d dual); those with arrays enter jvp with zero tangents
        through = [k for k in range(len(args)) if k in nums or _tree_holds_arrays(args[k])]

        def at(*inputs: Any) -> Any:
            full = list(args)
            for k, v in zip(through, inputs):
                full[k] = v
            out = f(*full, **kwargs)
            return aux_pair("jacfwd", out) if has_aux else out

        def pushforward(*tangent_leaves: Any) -> Any:
            tangents = dict(zip(nums, optree.tree_unflatten(spec, list(tangent_leaves))))
            out, dout = jvp(at, tuple(args[k] for k in through), tuple(tangents.get(k) for k in through))
            if any(type(t) is Zero for t in optree.tree_leaves(dout, is_leaf=lambda t: type(t) is Zero)):
                raise TypeError("jacfwd: f has an integer or boolean output, which has no derivative")
            if holomorphic and not all(map(is_complex_dtype, optree.tree_leaves(dout[0] if has_aux else dout))):
                raise TypeError("jacfwd: holomorphic=True needs complex outputs; f has a real one")
            if has_aux:
                return out[0], dout[0], out[1]
            return out, dout, None

        out, dout, aux = vmap(pushforward, out_axes=(None, 0, None))(*basis)

        def split(t: Any) -> Any:
            # t stacks the directions first: each input's block, reshaped and permuted (views, no copy)
            columns, offset = [], 0
            out_ndim = t.ndim - 1
            for shape in shapes:
                size = math.prod(shape)
                block = reshape(t[offset:offset + size, ...], (*shape, *t.shape[1:]))
                k = len(shape)
                columns.append(permute_dims(block, (*range(k, k + out_ndim), *range(k))))
                offset += size
            if not isinstance(t, (Dual, Batched, Recorded)):  # (f linear: the basis' read-only view may show)
                columns = [backend.writable(c) for c in columns]
            tree = optree.tree_unflatten(spec, columns)
            return tree[0] if isinstance(argnums, int) else tree

        jac = optree.tree_map(split, dout)
        return (jac, aux) if has_aux else jac

    return jacobian


def hessian(f: Callable[..., Any], argnums: int | tuple[int, ...] = 0, has_aux: bool = False,
            holomorphic: bool = False) -> Callable:
    """The Hessian of scalar-valued ``f``: ``jacfwd(jacfwd(f, argnums), argnums)``, shape
    ``input.shape + input.shape`` per pair of inputs (as ``jax.hessian``, ``has_aux`` and
    ``holomorphic`` included)."""
    inner = jacfwd(f, argnums, has_aux=has_aux, holomorphic=holomorphic)
    return jacfwd(inner, argnums, has_aux=has_aux, holomorphic=holomorphic)


__all__ = ["hessian", "jacfwd"]
