"""The ``directions`` suite: many directions at once (jacfwd, linearize, vmap) against one direction
at a time, against the same function written by hand, and against JAX and PyTorch.

Each row is a function of seeded NumPy data (the same in every process) written once over an
array namespace, so that ours (``ad.namespace``), JAX's (``jax.numpy``) and PyTorch's (``torch``)
versions are the same code. Rows and the issue's targets:

- ``eigvalsh_jacobian``: Jacobian of p -> eigvalsh(A0 + sum_i p_i A_i), n = 128, 64 parameters;
  at most 0.15x the time of 64 separate jvps and 1.0x ``jax.jit(jax.jacfwd)``.
- ``lu_jacobian``: Jacobian of lu_factor's packed output of a 32 x 32 matrix (1024 directions); at
  most 1.0x ``jax.jit(jax.jacfwd)``, peak traced memory within 2x the output's size.
- ``kalman``: Jacobian of a Kalman-filter log-likelihood (2-D state, 100 steps in ``scan``) in the 4
  transition entries; at most 1.5x one jvp.
- ``linearize_<op>``: one ``f_jvp`` call of ``linearize`` for lu / qr / eigh / svd at n = 512; at
  most 0.6x a full jvp (the peers: ``jax.linearize``'s jitted f_jvp, ``torch.func.linearize``).
- ``vmap_small``: ``vmap`` of a function of 3 x 3 matrices over 1000 inputs; at most 1.2x the same
  function written with a batch axis by hand.

``--quick`` shrinks every size to a smoke test of the rows (not a measurement).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import cupy_ad as ad

from .cases import OPS, as_tuple, inputs, jax_function, torch_function


PEERS = ("jax", "torch")
WITHOUT_PEERS: frozenset = frozenset()


@dataclass
class Row:
    name: str
    data: Callable[[np.random.Generator, bool], dict]     # (rng, quick) -> NumPy inputs
    ours: Callable[[Any, dict], Callable[[], Any]]        # (xp, data) -> the timed call
    baseline: Callable[[Any, dict], Callable[[], Any]] | None   # what the target compares ours to
    baseline_label: str
    targets: dict = field(default_factory=dict)  # "baseline" / "jax" / "memory" -> the bound
    op: str | None = None                         # linearize rows: the op of cases.OPS


def _eigvalsh_data(rng: np.random.Generator, quick: bool) -> dict:
    n, k = (8, 4) if quick else (128, 64)
    a0 = rng.standard_normal((n, n))
    basis = rng.standard_normal((k, n, n))
    return {"a0": a0 + a0.T, "basis": (basis + basis.transpose(0, 2, 1)) / n, "p": 0.01 * rng.standard_normal(k)}


def _eigvalsh_of(xp: Any, eigvalsh: Callable, d: dict, dims: str = "axes") -> Callable:
    return lambda q: eigvalsh(xp.tensordot(q, d["basis"], **{dims: 1}) + d["a0"])


def _ours_eigvalsh(xp: Any, d: dict) -> Callable:
    return lambda: ad.jacfwd(_eigvalsh_of(xp, ad.linalg.eigvalsh, d))(d["p"])


def _eigvalsh_jvps(xp: Any, d: dict) -> Callable:
    f, eye = _eigvalsh_of(xp, ad.linalg.eigvalsh, d), xp.eye(d["p"].shape[0], dtype=d["p"].dtype)
    return lambda: [ad.jvp(f, (d["p"],), (eye[i],))[1] for i in range(eye.shape[0])]


def _lu_data(rng: np.random.Generator, quick: bool) -> dict:
    n = 4 if quick else 32
    return {"a": rng.standard_normal((n, n))}


def _kalman_data(rng: np.random.Generator, quick: bool) -> dict:
    return {"f": np.array([[0.9, 0.1], [-0.2, 0.8]]), "ys": rng.standard_normal(5 if quick else 100)}


def kalman_loglik(f_matrix: Any, ys: Any, xp: Any, scan: Callable, outer: Callable) -> Any:
    """Log-likelihood of a scalar observation of a 2-D linear Gaussian state (x' = F x + noise)."""
    dtype = f_matrix.dtype
    q, r, h = 0.1 * xp.eye(2, dtype=dtype), 0.2, xp.asarray([1.0, 0.0], dtype=dtype)

    def step(carry: tuple, y: Any) -> tuple:
        m, p, ll = carry
        m, p = f_matrix @ m, f_matrix @ p @ f_matrix.mT + q
        s = h @ p @ h + r
        gain = p @ h / s
        resid = y - h @ m
        return (m + gain * resid, p - outer(gain, h @ p), ll - 0.5 * (xp.log(s) + resid * resid / s)), resid

    start = (xp.zeros(2, dtype=dtype), xp.eye(2, dtype=dtype), xp.asarray(0.0, dtype=dtype))
    (_, _, ll), _ = scan(step, start, ys)
    return ll


def _ours_kalman(xp: Any, d: dict) -> Callable:
    return lambda: ad.jacfwd(lambda f: kalman_loglik(f, d["ys"], xp, ad.scan, xp.linalg.outer))(d["f"])


def _kalman_jvp(xp: Any, d: dict) -> Callable:
    f = lambda m: kalman_loglik(m, d["ys"], xp, ad.scan, xp.linalg.outer)  # noqa: E731
    return lambda: ad.jvp(f, (d["f"],), (xp.eye(2, dtype=d["f"].dtype),))


def _vmap_data(rng: np.random.Generator, quick: bool) -> dict:
    return {"x": rng.standard_normal((5 if quick else 1000, 3, 3)), "w": rng.standard_normal((3, 3))}


def small_function(xp: Any, w: Any) -> Callable:
    """A function of one 3 x 3 matrix."""
    def one(a: Any) -> Any:
        b = xp.tanh(a @ w) + a.mT
        return xp.sum(b * b, axis=-1) / (1.0 + xp.linalg.vector_norm(a))

    return one


def _by_hand(xp: Any, d: dict) -> Callable:
    """``small_function`` with a leading batch axis, written by hand."""
    def batched(a: Any) -> Any:
        b = xp.tanh(a @ d["w"]) + xp.linalg.matrix_transpose(a)
        return xp.sum(b * b, axis=-1) / (1.0 + xp.linalg.vector_norm(a, axis=(-2, -1)))[:, None]

    return lambda: batched(d["x"])


def _linearize_data(op: str) -> Callable:
    def data(rng: np.random.Generator, quick: bool) -> dict:
        x, t = inputs(OPS[op], (8, 8) if quick else (512, 512), "float64")
        return {"x": x, "t": t}

    return data


def _ours_linearize(op: str) -> Callable:
    def build(xp: Any, d: dict) -> Callable:
        _, f_jvp = ad.linearize(OPS[op].ours, d["x"])
        return lambda: f_jvp(d["t"])

    return build


def _full_jvp(op: str) -> Callable:
    return lambda xp, d: lambda: ad.jvp(OPS[op].ours, (d["x"],), (d["t"],))


ROWS: dict[str, Row] = {row.name: row for row in [
    Row("eigvalsh_jacobian", _eigvalsh_data, _ours_eigvalsh, _eigvalsh_jvps, "one jvp per parameter",
        {"baseline": 0.15, "jax": 1.0}),
    Row("lu_jacobian", _lu_data, lambda xp, d: lambda: ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0])(d["a"]),
        None, "", {"jax": 1.0, "memory": 2.0}),
    Row("kalman", _kalman_data, _ours_kalman, _kalman_jvp, "one jvp", {"baseline": 1.5}),
    *[Row(f"linearize_{op}", _linearize_data(name), _ours_linearize(name), _full_jvp(name), "full jvp",
          {"baseline": 0.6}, op=name)
      for op, name in (("lu", "lu_factor"), ("qr", "qr"), ("eigh", "eigh"), ("svd", "svd"))],
    Row("vmap_small", _vmap_data, lambda xp, d: lambda: ad.vmap(small_function(xp, d["w"]))(d["x"]), _by_hand,
        "written batched by hand", {"baseline": 1.2}),
]}


def row_data(name: str, quick: bool) -> dict:
    """The row's NumPy inputs, the same in every process (seeded by the row)."""
    return ROWS[name].data(np.random.default_rng(zlib.crc32(name.encode())), quick)


def peer_call(system: str, name: str, quick: bool) -> tuple[Callable[[], Any], Callable[[], list]]:
    """The peer's version of the row's timed call (jax.jit'ed for JAX), and a call giving its answer as
    arrays (for a linearize row: the primal's outputs, to align vector signs, then the tangents)."""
    row, d = ROWS[name], row_data(name, quick)
    if system == "jax":
        import jax
        import jax.numpy as jnp
        import jax.scipy.linalg as jsl

        d = {k: jnp.asarray(v) for k, v in d.items()}
        if row.op:
            f = jax_function(row.op)
            f_jvp = jax.jit(jax.linearize(f, d["x"])[1])
            timed = lambda: jax.block_until_ready(f_jvp(d["t"]))  # noqa: E731
            return timed, lambda: [*as_tuple(f(d["x"])), *as_tuple(timed())]
        fn = {"eigvalsh_jacobian": lambda: jax.jacfwd(_eigvalsh_of(jnp, jnp.linalg.eigvalsh, d)),
              "lu_jacobian": lambda: jax.jacfwd(lambda m: jsl.lu_factor(m)[0]),
              "kalman": lambda: jax.jacfwd(lambda f: kalman_loglik(f, d["ys"], jnp, jax.lax.scan, jnp.outer)),
              "vmap_small": lambda: jax.vmap(small_function(jnp, d["w"]))}[name]()
        argument = {"eigvalsh_jacobian": "p", "lu_jacobian": "a", "kalman": "f", "vmap_small": "x"}[name]
        jitted = jax.jit(fn)
        timed = lambda: jax.block_until_ready(jitted(d[argument]))  # noqa: E731
        return timed, lambda: [timed()]
    import torch
    import torch.func as tf

    d = {k: torch.from_numpy(v) for k, v in d.items()}
    if row.op:
        f = torch_function(row.op)
        f_jvp = tf.linearize(f, d["x"])[1]
        return (lambda: f_jvp(d["t"])), lambda: [*as_tuple(f(d["x"])), *as_tuple(f_jvp(d["t"]))]
    timed = {"eigvalsh_jacobian": lambda: tf.jacfwd(_eigvalsh_of(torch, torch.linalg.eigvalsh, d, "dims"))(d["p"]),
             "lu_jacobian": lambda: tf.jacfwd(lambda m: torch.linalg.lu_factor(m).LU)(d["a"]),
             "kalman": lambda: tf.jacfwd(lambda f: kalman_loglik(f, d["ys"], torch, _loop_scan, torch.outer))(d["f"]),
             "vmap_small": lambda: tf.vmap(small_function(torch, d["w"]))(d["x"])}[name]
    return timed, lambda: [timed()]


def our_answer(name: str, xp: Any, d: dict, timed: Callable[[], Any]) -> list:
    """Our answer as the peers give theirs (see ``peer_call``), backend arrays."""
    op = ROWS[name].op
    return [*as_tuple(OPS[op].ours(d["x"])), *as_tuple(timed())] if op else list(as_tuple(timed()))


def _loop_scan(step: Callable, carry: Any, xs: Any) -> tuple:
    """jax.lax.scan over the leading axis of ``xs`` as a plain loop (PyTorch has no stable scan)."""
    import torch

    ys = []
    for x in xs:
        carry, y = step(carry, x)
        ys.append(y)
    return carry, torch.stack(ys)
