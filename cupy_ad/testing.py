"""``check_jvp``: compare ``jvp`` against central finite differences in double precision."""
from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np
import optree

from .backends import backend_of, default_backend, is_array
from .values import Zero, strip
from .transforms import jvp

_DOUBLE = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.float64,
           np.dtype(np.complex64): np.complex128, np.dtype(np.complex128): np.complex128}


def _numpy_dtype(x: Any) -> np.dtype | None:
    try:
        return np.dtype(str(x.dtype).rsplit(".", 1)[-1])
    except TypeError:
        return None


def _is_inexact(x: Any) -> bool:
    dtype = _numpy_dtype(x)
    return dtype is not None and np.issubdtype(dtype, np.inexact)


def random_tangents(primals: Any, seed: int = 0) -> Any:
    """Standard normal tangents (complex where the primal is), ``None`` for integer primals."""
    rng = np.random.default_rng(seed)

    def draw(p: Any) -> Any:
        if not is_array(p) or not _is_inexact(p):
            return None
        dtype = _numpy_dtype(p)
        t = rng.standard_normal(p.shape)
        if np.issubdtype(dtype, np.complexfloating):
            t = t + 1j * rng.standard_normal(p.shape)
        return backend_of(p).from_numpy(t.astype(dtype))

    return optree.tree_map(draw, primals, none_is_leaf=True)


def _to_numpy(x: Any) -> np.ndarray:
    raw = strip(x)
    return np.asarray(backend_of(raw).to_numpy(raw))


def _promoted(primals: Any, tangents: Any, step: float) -> Any:
    """primals + step * tangents, computed in double precision on the primals' backend."""
    def move(p: Any, t: Any) -> Any:
        if not is_array(p) or not _is_inexact(p):
            return p
        backend = backend_of(p)
        wide = _to_numpy(p).astype(_DOUBLE[_numpy_dtype(p)])
        if t is not None and t is not Zero and type(t) is not Zero:
            wide = wide + step * _to_numpy(t)
        return backend.from_numpy(wide)

    return optree.tree_map(move, primals, tangents, none_is_leaf=True)


def _normalised(primals: Any, tangents: Any) -> tuple[tuple, tuple]:
    """Primals with Python scalars as 0-d arrays, and tangents broadcast to the primals' structure
    (``None``/``Zero`` for a whole subtree), as ``jvp`` reads them; random tangents if None."""
    primals = tuple(primals)
    arrays = [p for p in optree.tree_leaves(primals) if is_array(p)]
    backend = backend_of(strip(arrays[0])) if arrays else default_backend()

    def as_array(v: Any) -> Any:
        return backend.xp.asarray(v) if isinstance(v, numbers.Number) else v

    primals = optree.tree_map(as_array, primals, none_is_leaf=True)
    if tangents is None:
        return primals, random_tangents(primals)
    tangents = optree.tree_broadcast_prefix(tuple(tangents), primals, none_is_leaf=True,
                                            is_leaf=lambda t: t is Zero or type(t) is Zero)
    return primals, optree.tree_map(as_array, tangents, none_is_leaf=True)


def _copies(primals: Any) -> Any:
    """Fresh copies of the array leaves: ``f`` run on raw arrays may write into them."""
    return optree.tree_map(lambda p: backend_of(p).xp.asarray(p, copy=True) if is_array(p) else p, primals,
                           none_is_leaf=True)


def _max_abs(x: np.ndarray) -> float:
    """max |x|, and inf where x holds NaN (so a NaN never passes a tolerance)."""
    if x.size and np.isnan(x).any():
        return float("inf")
    return float(np.max(np.abs(x), initial=0.0))


def _align(y: np.ndarray, like: np.ndarray, how: str | None) -> np.ndarray:
    """``y`` with each column (``how="columns"``) or row (``"rows"``) of its matrices multiplied by the
    sign (real) or unit phase (complex) that makes its inner product with that of ``like`` real and
    non-negative; unchanged for ``how=None`` and for arrays of fewer than 2 dimensions."""
    if how is None or y.ndim < 2:
        return y
    if how not in ("columns", "rows"):
        raise ValueError(f"align must be None, 'columns' or 'rows', got {how!r}")
    axis = -2 if how == "columns" else -1
    inner = np.sum(np.conj(like) * y, axis=axis, keepdims=True)
    magnitude = np.abs(inner)
    return y * np.conj(np.where(magnitude == 0, 1, inner / np.where(magnitude == 0, 1, magnitude)))


def _alignments(align: Any, out: Any) -> list:
    """One alignment (None, "columns", "rows") per leaf of ``out``."""
    if align is None or isinstance(align, str):
        return [align] * len(optree.tree_leaves(out))
    if not isinstance(out, (tuple, list)) or len(align) != len(out):
        raise ValueError(f"align must be a string or have one entry per output of f; got {len(align)} entries")
    return [how for how, part in zip(align, out) for _ in optree.tree_leaves(part)]


def check_jvp(f: Callable[..., Any], primals: tuple, tangents: tuple | None = None, *,
              rtol: float | None = None, atol: float | None = None, eps: float | None = None,
              align: str | tuple | None = None) -> None:
    """Check ``jvp(f, primals, tangents)`` against central finite differences.

    Finite differences are taken in float64/complex128 (primals promoted) with step ``eps``
    (default 1e-6); tangents default to seeded standard-normal draws. Each inexact output leaf
    must satisfy ``max|jvp - fd| <= atol + rtol * max|fd|``, with defaults by the output's
    precision (rtol 1e-6 for double, 2e-3 for single; atol scaled by the output's size). Also
    checks that the jvp's primal outputs equal ``f(*primals)`` and that each tangent has its
    output's shape and dtype. Raises ``AssertionError`` with a report of every leaf.

    ``align`` compares outputs defined only up to the sign or phase of each vector, such as
    eigenvectors and singular vectors: a decomposition may return a vector's sign flipped at
    x + eps t and not at x - eps t, which ruins the difference although the rule is exact. With
    ``align="columns"`` (or ``"rows"``, for ``Vh`` of an SVD) each column (row) of every output
    matrix, at x + eps t, at x - eps t and at x, is first multiplied by the sign (real) or unit
    phase (complex) that makes its inner product with the jvp's primal column real and
    non-negative. The finite difference then follows the gauge in which that inner product stays
    real, the gauge of ``eigh`` (diag(V^H dV) = 0) and of the left vectors of ``svd``. A tuple
    gives one choice per output of ``f`` (e.g. ``align=(None, "columns")`` for ``eigh``); arrays of
    fewer than 2 dimensions are never aligned.
    """
    primals, tangents = _normalised(primals, tangents)
    eps = 1e-6 if eps is None else eps
    out, out_dot = jvp(f, primals, tangents)
    reference = f(*_copies(primals))
    plus = f(*_promoted(primals, tangents, eps))
    minus = f(*_promoted(primals, tangents, -eps))
    paths, leaves, spec = optree.tree_flatten_with_path(out)

    def leaves_like_out(tree: Any) -> list:
        # f on raw arrays may return other namedtuple classes than on duals (numpy.linalg's
        # EighResult and ours, say): the leaves' paths must agree, not the classes.
        tree_paths, tree_leaves, tree_spec = optree.tree_flatten_with_path(tree)
        if tree_paths != paths:
            raise AssertionError(f"jvp's outputs have structure {spec}, f's have {tree_spec}")
        return tree_leaves

    lines, failed = [], False
    for path, value, tangent, ref, hi, lo, how in zip(paths, leaves, spec.flatten_up_to(out_dot),
                                                      leaves_like_out(reference), leaves_like_out(plus),
                                                      leaves_like_out(minus), _alignments(align, out)):
        where = "out" + "".join(f"[{p!r}]" for p in path)
        value_np = _to_numpy(value)
        ref_np = _align(_to_numpy(ref), value_np, how)
        single = value_np.dtype in (np.float32, np.complex64)
        if not np.allclose(value_np, ref_np, rtol=1e-5 if single else 1e-12, atol=0, equal_nan=True):
            failed = True
            lines.append(f"{where}: primal output differs from f(*primals)")
        if not _is_inexact(value):
            if type(tangent) is not Zero:
                failed = True
                lines.append(f"{where}: integer/bool output must have a Zero tangent, got {type(tangent).__name__}")
            continue
        if type(tangent) is Zero or tuple(tangent.shape) != tuple(value.shape) or tangent.dtype != value.dtype:
            failed = True
            lines.append(f"{where}: tangent {getattr(tangent, 'shape', None)} {getattr(tangent, 'dtype', None)} "
                         f"does not match output {tuple(value.shape)} {value.dtype}")
            continue
        fd = (_align(_to_numpy(hi), value_np, how) - _align(_to_numpy(lo), value_np, how)) / (2 * eps)
        got = _to_numpy(tangent).astype(fd.dtype if fd.dtype.kind == "c" else np.result_type(fd.dtype, np.float64))
        scale_f = float(np.max(np.abs(ref_np), initial=0.0)) if ref_np.size else 0.0
        leaf_rtol = rtol if rtol is not None else (2e-3 if single else 1e-6)
        leaf_atol = atol if atol is not None else (1e-4 if single else 1e-8) * max(1.0, scale_f)
        error = _max_abs(got - fd)  # NaN anywhere (in the jvp or the FD) fails
        scale = _max_abs(fd)
        ok = np.isfinite(error) and error <= leaf_atol + leaf_rtol * scale
        failed = failed or not ok
        lines.append(f"{where}: shape {tuple(value.shape)} {value.dtype}: max|jvp - fd| = {error:.3e}, "
                     f"max|fd| = {scale:.3e}, tolerance {leaf_atol + leaf_rtol * scale:.3e}"
                     f"{'' if ok else '  <-- FAIL'}")
    if failed:
        raise AssertionError("check_jvp failed:\n  " + "\n  ".join(lines))


def max_relative_error(f: Callable[..., Any], primals: tuple, tangents: tuple | None = None,
                       eps: float = 1e-6) -> float:
    """The largest normwise relative difference between jvp and central finite differences."""
    primals, tangents = _normalised(primals, tangents)
    _, out_dot = jvp(f, primals, tangents)
    plus = f(*_promoted(primals, tangents, eps))
    minus = f(*_promoted(primals, tangents, -eps))
    worst = 0.0
    for t, hi, lo in zip(optree.tree_leaves(out_dot), optree.tree_leaves(plus), optree.tree_leaves(minus)):
        if type(t) is Zero:
            continue
        fd = (_to_numpy(hi) - _to_numpy(lo)) / (2 * eps)
        error = _max_abs(_to_numpy(t) - fd)
        if not np.isfinite(error):
            return float("inf")
        worst = max(worst, error / max(_max_abs(fd), np.finfo(float).tiny))
    return worst
