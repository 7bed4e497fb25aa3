"""Benchmark of ``ad.jit``: replayed jvps against eager ``ad.jvp`` and ``jax.jit(jax.jvp(...))``.

``python profiling/bench_jit.py [--rounds 7] [--min-time 0.05] [--cases n16 batch scan dispatch n128]``
prints one row per case: the median over interleaved rounds (the systems take turns within each
round, so a machine whose speed drifts favours no one) of each system's mean time per call, and
the ratios. float64, CPU; JAX (``jax_enable_x64``) runs in a worker process of its own (in one
process its thread pools and ours deadlocked here), taking its turn case by case. On a loaded
machine run both single-threaded (``OPENBLAS_NUM_THREADS=1`` and ``--jax-single-thread``): threaded
BLAS calls stall for tens of milliseconds when other processes hold the cores.
Every timed result is first checked against eager ``ad.jvp`` (the jitted one bit for bit).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np

import cupy_ad as ad

DECOMPOSITIONS = ("lu_factor", "qr", "svd", "eigh", "cholesky")


def _ours(name: str) -> Callable:
    return {"lu_factor": ad.linalg.lu_factor, "qr": ad.linalg.qr,
            "svd": lambda a: ad.linalg.svd(a, full_matrices=False), "eigh": ad.linalg.eigh,
            "cholesky": ad.linalg.cholesky}[name]


def _jax(name: str) -> Callable:
    import jax.numpy as jnp
    import jax.scipy.linalg as jsl

    return {"lu_factor": jsl.lu_factor, "qr": jnp.linalg.qr,
            "svd": lambda a: jnp.linalg.svd(a, full_matrices=False), "eigh": jnp.linalg.eigh,
            "cholesky": jnp.linalg.cholesky}[name]


def _input(name: str, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal(shape)
    if name in ("eigh", "cholesky"):
        a = a @ np.swapaxes(a, -1, -2) + shape[-1] * np.eye(shape[-1])
    return a


def _time(fn: Callable, min_time: float) -> float:
    """Mean seconds per call over at least ``min_time`` (after one warm-up call)."""
    fn()
    number, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / number
        number *= 2


def _leaves(tree: Any) -> list:
    import optree

    return [v for v in optree.tree_leaves(tree, is_leaf=lambda v: type(v) is ad.Zero) if type(v) is not ad.Zero]


def _check_same(got: Any, want: Any) -> None:
    for g, w in zip(_leaves(got), _leaves(want), strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def _decomposition_cases(n: int, batch: tuple, system: str) -> dict:
    cases = {}
    rng = np.random.default_rng(0)
    for name in DECOMPOSITIONS:
        a, t = _input(name, (*batch, n, n), rng), rng.standard_normal((*batch, n, n))
        if name in ("eigh", "cholesky"):
            t = t + np.swapaxes(t, -1, -2)
        case = f"{name} n={n}" + (f" batch={batch[0]}" if batch else "")
        if system == "jax":
            import jax

            jf = jax.jit(lambda a, t, g=_jax(name): jax.jvp(g, (a,), (t,)))
            ja, jt = jax.numpy.asarray(a), jax.numpy.asarray(t)
            cases[case] = {"jax": lambda j=jf, a=ja, t=jt: jax.block_until_ready(j(a, t))}
            continue
        eager = lambda a, t, f=_ours(name): ad.jvp(f, (a,), (t,))  # noqa: E731
        compiled = ad.jit(eager)
        _check_same(compiled(a, t), eager(a, t))
        cases[case] = {"jit": lambda c=compiled, a=a, t=t: c(a, t), "eager": lambda e=eager, a=a, t=t: e(a, t)}
    return cases


def _scan_cases(system: str, n: int = 16, steps: int = 32) -> dict:
    rng = np.random.default_rng(1)
    w, xs = rng.standard_normal((n, n)) / np.sqrt(n), rng.standard_normal((steps, n))
    c0, dc = rng.standard_normal(n), rng.standard_normal(n)
    case = f"scan tanh-RNN n={n} steps={steps}"
    if system == "jax":
        import jax

        jw, jxs = jax.numpy.asarray(w), jax.numpy.asarray(xs)

        def jbody(c, x):
            c = jax.numpy.tanh(jw @ c + x)
            return c, c

        jf = jax.jit(lambda c, dc: jax.jvp(lambda c: jax.lax.scan(jbody, c, jxs), (c,), (dc,)))
        jc, jdc = jax.numpy.asarray(c0), jax.numpy.asarray(dc)
        return {case: {"jax": lambda: jax.block_until_ready(jf(jc, jdc))}}
    xp = ad.namespace("numpy")

    def body(c, x):
        c = xp.tanh(xp.matmul(w, c) + x)
        return c, c

    eager = lambda c, dc: ad.jvp(lambda c: ad.scan(body, c, xs), (c,), (dc,))  # noqa: E731
    jitted_body = ad.jit(body)
    per_step = lambda c, dc: ad.jvp(lambda c: ad.scan(jitted_body, c, xs), (c,), (dc,))  # noqa: E731
    whole = ad.jit(eager)
    _check_same(whole(c0, dc), eager(c0, dc))
    _check_same(per_step(c0, dc), eager(c0, dc))
    return {case: {"jit": lambda: whole(c0, dc), "jit body": lambda: per_step(c0, dc), "eager": lambda: eager(c0, dc)}}


def _dispatch_cases(system: str, k: int = 400) -> dict:
    """A chain of k tiny additions: the replay against the same NumPy calls in a plain Python loop."""
    if system == "jax":
        return {}
    x = np.ones(1)

    def chain(x):
        for _ in range(k):
            x = x + 1.0
        return x

    compiled = ad.jit(chain)
    _check_same(compiled(x), chain(x))
    return {f"dispatch: {k} additions": {"jit": lambda: compiled(x), "numpy loop": lambda: chain(x)}}


def _cases(names: list[str], system: str) -> dict:
    cases: dict = {}
    if "n16" in names:
        cases.update(_decomposition_cases(16, (), system))
    if "batch" in names:
        cases.update(_decomposition_cases(16, (4096,), system))
    if "scan" in names:
        cases.update(_scan_cases(system))
    if "dispatch" in names:
        cases.update(_dispatch_cases(system))
    if "n128" in names:
        cases.update(_decomposition_cases(128, (), system))
    return cases


def _jax_worker(connection: Any, names: list[str], min_time: float, single_thread: bool) -> None:
    """JAX in a process of its own (its thread pools and ours do not meet), timing the cases it is sent."""
    if single_thread:  # (batched LAPACK calls of jax 0.10 deadlocked in their thread pool on this VM)
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax

    jax.config.update("jax_enable_x64", True)
    cases = _cases(names, "jax")
    connection.send(sorted(cases))
    while (case := connection.recv()) is not None:
        connection.send(_time(cases[case]["jax"], min_time))


def main(argv: list[str] | None = None) -> None:
    import multiprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.05)
    parser.add_argument("--cases", nargs="+", default=["n16", "batch", "scan", "dispatch", "n128"])
    parser.add_argument("--jax-single-thread", action="store_true", help="JAX with one intra-op thread")
    args = parser.parse_args(argv)
    ours, peer = multiprocessing.get_context("spawn").Pipe()
    worker = multiprocessing.get_context("spawn").Process(target=_jax_worker,
                                                          args=(peer, args.cases, args.min_time, args.jax_single_thread))
    worker.start()
    cases = _cases(args.cases, "ours")
    with_jax = set(ours.recv())
    times: dict = {case: {system: [] for system in [*systems, *(["jax"] if case in with_jax else [])]}
                   for case, systems in cases.items()}
    for _ in range(args.rounds):
        for case, systems in cases.items():
            for system, fn in systems.items():
                times[case][system].append(_time(fn, args.min_time))
            if case in with_jax:
                ours.send(case)
                times[case]["jax"].append(ours.recv())
    ours.send(None)
    worker.join()
    for case, systems in times.items():
        medians = {system: statistics.median(ts) for system, ts in systems.items()}
        cells = "  ".join(f"{system} {1e6 * t:9.1f} us" for system, t in medians.items())
        ratios = "  ".join(f"{system}/{base} {medians[system] / medians[base]:.2f}x"
                           for system in medians for base in ("jax", "eager", "numpy loop")
                           if system in ("jit", "jit body") and base in medians)
        print(f"{case:34s} {cells}  {ratios}", flush=True)


if __name__ == "__main__":
    main()
