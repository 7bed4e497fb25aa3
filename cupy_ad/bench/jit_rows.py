"""The ``jit`` suite: ``ad.jit`` of a jvp (the compiled path) against the eager ``ad.jvp``, its own
compiled primal and ``jax.jit(jax.jvp)``, with the targets of the issue that asked for it.

Rows (float64; ``--quick`` shrinks every size to a smoke test of the rows, not a measurement):

- ``<op>_n16`` for lu_factor, qr, svd, eigh, cholesky: one 16 x 16 matrix; at most 1.5x JAX.
- ``<op>_batch``: 4096 matrices of 16 x 16; at most 1.0x JAX.
- ``<op>_n128``: one 128 x 128 matrix; at most the eager jvp's time (nothing slower than eager).
- ``scan_rnn``: 32 steps of h <- tanh(W h) in ``scan`` at n = 16 (the jvp along W); at most 3x JAX's
  jitted ``lax.scan``.
- ``scan_jit_body``: the same recurrence as ``scan_rnn`` with ``W`` carried, ``scan`` over ``ad.jit`` of the
  step under an eager ``jvp`` (the steps replay the body's program); against ``ad.jit`` of the whole jvp
  (the loop recorded unrolled) and JAX; at most 2x the whole jvp jitted.
- ``kalman``: a Kalman filter's log-likelihood, 2-D state, 100 steps in ``scan`` (the jvp along the
  transition matrix); at most 4x its own jitted primal.
- ``dispatch``: a chain of 400 additions on a 1-element array, replayed, against the same NumPy calls
  in a Python loop; at most 1 us of replay per step (``step_us``: the difference per step).

JAX is the only peer of this suite (PyTorch has no compiler of this kind on the CPU here). Ratios to the
baseline time ours and the baseline in turns, call by call; ratios to JAX take our calls timed back to
back (``ours_alone_ms``), as JAX's are in its own process.
"""
from __future__ import annotations

import zlib
from typing import Any, Callable

import numpy as np

import cupy_ad as ad

from .cases import OPS, SCAN_STEPS, as_tuple, inputs, jax_function
from .directions import Row, kalman_loglik

DECOMPOSITIONS = ("lu_factor", "qr", "svd", "eigh", "cholesky")
DISPATCH_STEPS = 400
PEERS = ("jax",)
WITHOUT_PEERS = frozenset({"dispatch"})


def _decomposition_data(op: str, shape: tuple) -> Callable:
    def data(rng: np.random.Generator, quick: bool) -> dict:
        x, t = inputs(OPS[op], (min(shape[0], 8), 4, 4) if quick and len(shape) == 3 else shape, "float64")
        return {"x": x, "t": t}
    return data


def _jitted_jvp(op: str) -> Callable:
    def build(xp: Any, d: dict) -> Callable:
        compiled = ad.jit(lambda x, t: ad.jvp(OPS[op].ours, (x,), (t,)))
        return lambda: compiled(d["x"], d["t"])
    return build


def _eager_jvp(op: str) -> Callable:
    return lambda xp, d: lambda: ad.jvp(OPS[op].ours, (d["x"],), (d["t"],))


def _rnn_carrying_w(xp: Any, step: Callable) -> Callable:
    """``cases._rnn`` with W in the carry (a jitted step takes its duals as arguments): w -> (h, all h)."""
    def f(w: Any) -> tuple:
        (_, h), hs = ad.scan(step, (w, xp.full((w.shape[-1], 1), 0.5, dtype=w.dtype)), None, length=SCAN_STEPS)
        return h, hs
    return f


def _rnn_step(xp: Any) -> Callable:
    def step(carry: tuple, _: Any) -> tuple:
        w, h = carry
        h = xp.tanh(xp.matmul(w, h))
        return (w, h), h
    return step


def _scan_of_jitted_step(xp: Any, d: dict) -> Callable:
    f = _rnn_carrying_w(xp, ad.jit(_rnn_step(xp)))
    return lambda: ad.jvp(f, (d["x"],), (d["t"],))


def _whole_jvp_jitted(xp: Any, d: dict) -> Callable:
    compiled = ad.jit(lambda x, t: ad.jvp(_rnn_carrying_w(xp, _rnn_step(xp)), (x,), (t,)))
    return lambda: compiled(d["x"], d["t"])


def _kalman_data(rng: np.random.Generator, quick: bool) -> dict:
    return {"f": np.array([[0.9, 0.1], [-0.2, 0.8]]), "df": rng.standard_normal((2, 2)),
            "ys": rng.standard_normal(5 if quick else 100)}


def _kalman(xp: Any, d: dict) -> Callable:
    return lambda f: kalman_loglik(f, d["ys"], xp, ad.scan, xp.linalg.outer)


def _kalman_jvp(xp: Any, d: dict) -> Callable:
    compiled = ad.jit(lambda f, df: ad.jvp(_kalman(xp, d), (f,), (df,)))
    return lambda: compiled(d["f"], d["df"])


def _kalman_primal(xp: Any, d: dict) -> Callable:
    compiled = ad.jit(_kalman(xp, d))
    return lambda: compiled(d["f"])


def _dispatch_data(rng: np.random.Generator, quick: bool) -> dict:
    return {"x": np.ones(1), "steps": DISPATCH_STEPS}


def _chain(x: Any) -> Any:
    for _ in range(DISPATCH_STEPS):
        x = x + 1.0
    return x


def _rows() -> list[Row]:
    rows = []
    for shape, suffix, targets in (((16, 16), "n16", {"jax": 1.5}), ((4096, 16, 16), "batch", {"jax": 1.0}),
                                   ((128, 128), "n128", {"baseline": 1.0})):
        rows += [Row(f"{op}_{suffix}", _decomposition_data(op, shape), _jitted_jvp(op), _eager_jvp(op), "eager jvp",
                     targets, op=op) for op in DECOMPOSITIONS]
    return [
        *rows,
        Row("scan_rnn", _decomposition_data("scan", (16, 16)), _jitted_jvp("scan"), _eager_jvp("scan"), "eager jvp",
            {"jax": 3.0}, op="scan"),
        Row("scan_jit_body", _decomposition_data("scan", (16, 16)), _scan_of_jitted_step, _whole_jvp_jitted,
            "jit of the whole jvp", {"baseline": 2.0}, op="scan"),
        Row("kalman", _kalman_data, _kalman_jvp, _kalman_primal, "jitted primal", {"baseline": 4.0}),
        Row("dispatch", _dispatch_data, lambda xp, d: lambda c=ad.jit(_chain): c(d["x"]),
            lambda xp, d: lambda: _chain(d["x"]), "NumPy loop", {"step_us": 1.0}),
    ]


ROWS: dict[str, Row] = {row.name: row for row in _rows()}


def row_data(name: str, quick: bool) -> dict:
    """The row's NumPy inputs, the same in every process (seeded by the row)."""
    return ROWS[name].data(np.random.default_rng(zlib.crc32(name.encode())), quick)


def our_answer(name: str, xp: Any, d: dict, timed: Callable[[], Any]) -> list:
    """Our answer as JAX gives its (``peer_call``): the outputs, then the tangents (the dispatch row: its
    output)."""
    if name in WITHOUT_PEERS:
        return [timed()]
    values, tangents = timed()
    return [*as_tuple(values), *as_tuple(tangents)]


def peer_call(system: str, name: str, quick: bool) -> tuple[Callable[[], Any], Callable[[], list]]:
    """JAX's ``jit(jvp)`` of the row, and a call giving its answer as ``our_answer`` gives ours."""
    import jax
    import jax.numpy as jnp

    row, d = ROWS[name], {k: jnp.asarray(v) for k, v in row_data(name, quick).items()}
    if name == "kalman":
        f, primal, tangent = (lambda m: kalman_loglik(m, d["ys"], jnp, jax.lax.scan, jnp.outer)), d["f"], d["df"]
    else:
        f, primal, tangent = jax_function(row.op), d["x"], d["t"]
    jitted = jax.jit(lambda x, dx: jax.jvp(f, (x,), (dx,)))
    timed = lambda: jax.block_until_ready(jitted(primal, tangent))  # noqa: E731

    def answer() -> list:
        values, tangents = timed()
        return [*as_tuple(values), *as_tuple(tangents)]
    return timed, answer
