"""What the benchmark times: the ops (our jvp, the backend's primal kernel, JAX's and PyTorch's
versions of the same function) and their inputs, the same in every process."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import cupy_ad as ad


@dataclass
class Op:
    name: str
    make_input: Callable[[np.random.Generator, tuple, Any], np.ndarray]
    ours: Callable[[Any], Any]
    primal: Callable[[Any, Any], Any]          # (backend, x) -> the backend kernel alone
    align: str = "none"                          # how to align peers' gauges: "none" | "columns"


def _general(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _spd(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    a = rng.standard_normal(shape)
    n = shape[-1]
    return (a @ np.swapaxes(a, -1, -2) / n + np.eye(n)).astype(dtype)


def _symmetric(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    a = rng.standard_normal(shape)
    return ((a + np.swapaxes(a, -1, -2)) / 2).astype(dtype)


SCAN_STEPS = 32


def _recurrence_weights(rng: np.random.Generator, shape: tuple, dtype: Any) -> np.ndarray:
    return (0.9 * rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(dtype)


def _rnn(w: Any, xp: Any, scan: Callable) -> tuple:
    """The scan row: SCAN_STEPS steps of h <- tanh(W h) from h = 1/2, W (..., n, n); (h, all h)."""
    def step(h: Any, _: Any) -> tuple:
        h = xp.tanh(xp.matmul(w, h))
        return h, h

    return tuple(scan(step, xp.full((*w.shape[:-2], w.shape[-1], 1), 0.5, dtype=w.dtype), None, length=SCAN_STEPS))


def _python_scan(step: Callable, carry: Any, xs: None, length: int) -> tuple:
    """A plain loop with jax.lax.scan's signature (PyTorch has no stable scan)."""
    import torch

    ys = []
    for _ in range(length):
        carry, y = step(carry, None)
        ys.append(y)
    return carry, torch.stack(ys)


def _ours_rnn(w: Any) -> tuple:
    from array_api_compat import array_namespace

    return _rnn(w, array_namespace(w), ad.scan)


OPS: dict[str, Op] = {
    "lu_factor": Op("lu_factor", _general, lambda a: ad.linalg.lu_factor(a)[0], lambda b, a: b.lu_factor(a)),
    "qr": Op("qr", _general, lambda a: tuple(ad.linalg.qr(a)), lambda b, a: b.qr(a, "reduced")),
    "svd": Op("svd", _general, lambda a: tuple(ad.linalg.svd(a, full_matrices=False)),
              lambda b, a: b.svd(a, False), align="columns"),
    "eigh": Op("eigh", _symmetric, lambda a: tuple(ad.linalg.eigh(a)), lambda b, a: b.eigh(a, True),
               align="columns"),
    "cholesky": Op("cholesky", _spd, lambda a: ad.linalg.cholesky(a), lambda b, a: b.cholesky(a, False)),
    "scan": Op("scan", _recurrence_weights, _ours_rnn, lambda b, a: _ours_rnn(a)),  # primal: the loop on raw arrays
}


def jax_function(name: str) -> Callable:
    import jax
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    return {
        "lu_factor": lambda a: jsl.lu_factor(a)[0],
        "qr": lambda a: tuple(jnp.linalg.qr(a)),
        "svd": lambda a: tuple(jnp.linalg.svd(a, full_matrices=False)),
        "eigh": lambda a: tuple(jnp.linalg.eigh(a)),
        "cholesky": lambda a: jnp.linalg.cholesky(a),
        "scan": lambda a: _rnn(a, jnp, jax.lax.scan),
    }[name]


def torch_function(name: str) -> Callable:
    import torch

    return {
        "lu_factor": lambda a: torch.linalg.lu_factor(a).LU,
        "qr": lambda a: tuple(torch.linalg.qr(a)),
        "svd": lambda a: tuple(torch.linalg.svd(a, full_matrices=False)),
        "eigh": lambda a: tuple(torch.linalg.eigh(a)),
        "cholesky": lambda a: torch.linalg.cholesky(a),
        "scan": lambda a: _rnn(a, torch, _python_scan),
    }[name]


def inputs(op: Op, shape: tuple, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The primal and tangent of one case, the same in every process (seeded by the case)."""
    rng = np.random.default_rng(zlib.crc32(f"{op.name} {shape} {dtype}".encode()))
    return op.make_input(rng, shape, np.dtype(dtype)), op.make_input(rng, shape, np.dtype(dtype))


def as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)

