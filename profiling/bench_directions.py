"""Benchmark: many directions at once (vmap, jacfwd, linearize) against one direction at a time and JAX.

``python profiling/bench_directions.py [--repeat N] [--no-jax] [--rows a,b,...]`` prints one line per row:
the contenders' median times (medians of ``--repeat`` interleaved rounds, each contender timed in
turn within a round, after a warm-up call), their ratio and the issue's target. Rows:
``eigvalsh_jacobian`` Jacobian of p -> eigvalsh(A0 + sum_i p_i A_i), n = 128, 64 parameters, vs 64
separate jvps and jax.jit(jax.jacfwd); ``lu_jacobian`` the Jacobian of lu_factor's packed output of a
32 x 32 matrix (1024 directions) vs jax.jit(jax.jacfwd), with its peak memory (tracemalloc) over the
output's size; ``kalman`` the Jacobian of a Kalman-filter log-likelihood (2-D state, 100 steps, in
scan) in the 4 transition entries vs one jvp; ``linearize_<op>`` one f_jvp call vs a full jvp for
lu / qr / eigh / svd at n = 512; ``vmap_small`` vmap of a function of small arrays over 1000 inputs
vs the same function written with a batch axis by hand.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from typing import Any, Callable

import numpy as np

import cupy_ad as ad

xp = ad.namespace("numpy")


def _interleaved(contenders: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median seconds per call of each contender, timed in turn, ``repeat`` rounds after a warm-up."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _jax() -> Any:
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        return jax
    except ImportError:
        return None


def eigvalsh_jacobian(rng: np.random.Generator, repeat: int, jax: Any) -> list[dict]:
    n, k = 128, 64
    a0 = rng.standard_normal((n, n))
    a0 = a0 + a0.T
    basis = rng.standard_normal((k, n, n))
    basis = (basis + basis.transpose(0, 2, 1)) / n
    p = rng.standard_normal(k) * 0.01

    def f(q: Any) -> Any:
        return ad.linalg.eigvalsh(xp.tensordot(q, basis, axes=1) + a0)

    eye = np.eye(k)
    contenders = {"jacfwd": lambda: ad.jacfwd(f)(p),
                  "64 jvps": lambda: [ad.jvp(f, (p,), (eye[i],))[1] for i in range(k)]}
    if jax:
        jnp = jax.numpy
        jf = jax.jit(jax.jacfwd(lambda q: jnp.linalg.eigvalsh(jnp.tensordot(q, basis, axes=1) + a0)))
        contenders["jax.jit(jacfwd)"] = lambda: jf(p).block_until_ready()
        np.testing.assert_allclose(ad.jacfwd(f)(p), np.asarray(jf(p)), rtol=1e-6, atol=1e-8)
    t = _interleaved(contenders, repeat)
    rows = [_row("eigvalsh_jacobian n=128 k=64", t, "jacfwd", "64 jvps", 0.15)]
    if jax:
        rows.append(_row("eigvalsh_jacobian n=128 k=64", t, "jacfwd", "jax.jit(jacfwd)", 1.0))
    return rows


def lu_jacobian(rng: np.random.Generator, repeat: int, jax: Any) -> list[dict]:
    n = 32
    a = rng.standard_normal((n, n))
    jac = lambda: ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0])(a)  # noqa: E731
    contenders = {"jacfwd": jac}
    if jax:
        import jax.scipy.linalg as jsl

        jf = jax.jit(jax.jacfwd(lambda m: jsl.lu_factor(m)[0]))
        contenders["jax.jit(jacfwd)"] = lambda: jf(a).block_until_ready()
        np.testing.assert_allclose(jac(), np.asarray(jf(a)), rtol=1e-6, atol=1e-8)
    t = _interleaved(contenders, repeat)
    tracemalloc.start()
    out = jac()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rows = [{"row": "lu_jacobian 32x32 (1024 directions)", "peak memory / output": round(peak / out.nbytes, 2),
             "target": "<= 2", "ours ms": round(t["jacfwd"] * 1e3, 2)}]
    if jax:
        rows.append(_row("lu_jacobian 32x32 (1024 directions)", t, "jacfwd", "jax.jit(jacfwd)", 1.0))
    return rows


def kalman_loglik(f_matrix: Any, ys: Any) -> Any:
    """Log-likelihood of a scalar observation of a 2-D linear Gaussian state (x' = F x + noise)."""
    q, r = 0.1 * xp.eye(2), 0.2
    h = xp.asarray([1.0, 0.0])

    def step(carry: tuple, y: Any) -> tuple:
        m, p, ll = carry
        m, p = f_matrix @ m, f_matrix @ p @ f_matrix.mT + q
        s = h @ p @ h + r
        gain = p @ h / s
        resid = y - h @ m
        return (m + gain * resid, p - xp.linalg.outer(gain, h @ p), ll - 0.5 * (xp.log(s) + resid * resid / s)), resid

    (_, _, ll), _ = ad.scan(step, (xp.zeros(2), xp.eye(2), xp.asarray(0.0)), ys)
    return ll


def kalman(rng: np.random.Generator, repeat: int, jax: Any) -> list[dict]:
    f_matrix = np.array([[0.9, 0.1], [-0.2, 0.8]])
    ys = rng.standard_normal(100)
    t = _interleaved({"jacfwd (4 entries)": lambda: ad.jacfwd(kalman_loglik)(f_matrix, ys),
                      "one jvp": lambda: ad.jvp(kalman_loglik, (f_matrix, ys), (np.eye(2), None))}, repeat)
    return [_row("kalman loglik, 100 steps", t, "jacfwd (4 entries)", "one jvp", 1.5)]


def linearize_rows(rng: np.random.Generator, repeat: int, jax: Any) -> list[dict]:
    n = 512
    a = rng.standard_normal((n, n))
    ops = {"lu": lambda m: ad.linalg.lu_factor(m)[0], "qr": lambda m: ad.linalg.qr(m),
           "eigh": lambda m: ad.linalg.eigh(m), "svd": lambda m: ad.linalg.svd(m, full_matrices=False)}
    rows = []
    for name, f in ops.items():
        x = a + a.T if name == "eigh" else a
        t_dir = rng.standard_normal((n, n))
        _, f_jvp = ad.linearize(f, x)
        t = _interleaved({"f_jvp": lambda: f_jvp(t_dir), "jvp": lambda: ad.jvp(f, (x,), (t_dir,))}, repeat)
        rows.append(_row(f"linearize {name} n=512", t, "f_jvp", "jvp", 0.6))
    return rows


def vmap_small(rng: np.random.Generator, repeat: int, jax: Any) -> list[dict]:
    count = 1000
    x = rng.standard_normal((count, 3, 3))
    w = rng.standard_normal((3, 3))

    def one(a: Any) -> Any:  # a function of one small matrix
        b = xp.tanh(a @ w) + a.mT
        return xp.sum(b * b, axis=-1) / (1.0 + xp.linalg.vector_norm(a))

    def by_hand(a: Any) -> Any:  # the same with a leading batch axis, written by hand
        b = xp.tanh(a @ w) + xp.linalg.matrix_transpose(a)
        return xp.sum(b * b, axis=-1) / (1.0 + xp.linalg.vector_norm(a, axis=(-2, -1)))[:, None]

    mapped = ad.vmap(one)
    np.testing.assert_allclose(mapped(x), by_hand(x), rtol=1e-12)
    t = _interleaved({"vmap": lambda: mapped(x), "by hand": lambda: by_hand(x)}, repeat)
    return [_row("vmap of a 3x3 function over 1000 inputs", t, "vmap", "by hand", 1.2)]


def _row(name: str, times: dict[str, float], ours: str, other: str, target: float) -> dict:
    ratio = times[ours] / times[other]
    return {"row": name, f"{ours} ms": round(times[ours] * 1e3, 3), f"{other} ms": round(times[other] * 1e3, 3),
            "ratio": round(ratio, 3), "target": f"<= {target}", "met": ratio <= target}


ROWS = {"eigvalsh_jacobian": eigvalsh_jacobian, "lu_jacobian": lu_jacobian, "kalman": kalman,
        "linearize": linearize_rows, "vmap_small": vmap_small}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--rows", default=",".join(ROWS))
    args = parser.parse_args(argv)
    jax = None if args.no_jax else _jax()
    results = []
    for name in args.rows.split(","):
        for row in ROWS[name](np.random.default_rng(0), args.repeat, jax):
            print("  ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
            results.append(row)
    return results


if __name__ == "__main__":
    main()
