"""Per-step cost of ``cupy_ad.scan`` and of its JVP on NumPy, against hand-written loops and JAX.

``python -m profiling.bench_scan [--length 400] [--repeat 7] [--no-jax]`` (from the repository root)
prints, for two bodies
(a few elementwise ops on 16-element vectors; a 256 x 256 matmul), the median time per step in
microseconds of:

primal
  numpy loop      the body written with NumPy directly, list + np.stack (the body's own work)
  python loop     the body written with cupy_ad's namespace on plain arrays, list + stack
  scan            ``scan`` of that body on plain arrays
JVP (tangent along every input)
  numpy fwd       primal and tangent written by hand with NumPy (the body's own work, JVP)
  rules direct    a Python loop calling each primitive's JVP rule directly (no duals, no bind)
  jvp(loop)       ``ad.jvp`` of the Python loop (duals through bind, list + namespace stack)
  jvp(scan)       ``ad.jvp`` of ``scan``
  jax             ``jax.jit(jax.jvp(jax.lax.scan))`` on the same CPU (if jax is installed)

and the overheads beyond the body's own work (``scan - numpy loop``, ``jvp(scan) - numpy fwd``,
``rules direct - numpy fwd``) with the ratio the issue targets (< 2): overhead of jvp(scan) /
overhead of the rules-direct loop. On a shared machine pin the BLAS and XLA threads for stable
matmul numbers: ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false"``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import numpy as np

import cupy_ad as ad
from cupy_ad.values import Zero
from cupy_ad.namespace import elementwise, indexing, manipulation, products
from cupy_ad.scan_loop import scan

ns = ad.namespace("numpy")


def _time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ----------------------------------------------------------------------------------------- bodies
class Small:
    """h' = tanh(w * h + x) + b, y = h' on 16-element vectors (4 elementwise ops)."""

    name = "small (4 ops, n=16)"

    def __init__(self, rng: np.random.Generator, length: int):
        self.w, self.b = rng.standard_normal(16), 0.1 * rng.standard_normal(16)
        self.h0, self.xs = rng.standard_normal(16), rng.standard_normal((length, 16))
        self.tangents = (rng.standard_normal(16), rng.standard_normal(16), rng.standard_normal(16),
                         rng.standard_normal((length, 16)))

    def primals(self) -> tuple:
        return self.w, self.b, self.h0, self.xs

    @staticmethod
    def body(w: Any, b: Any) -> Callable:
        def step(h, x):
            h = ns.add(ns.tanh(ns.add(ns.multiply(w, h), x)), b)
            return h, h
        return step

    def numpy_loop(self) -> Any:
        h, ys = self.h0, []
        for x in self.xs:
            h = np.tanh(self.w * h + x) + self.b
            ys.append(h)
        return h, np.stack(ys)

    def numpy_forward(self) -> Any:
        dw, db, dh, dxs = self.tangents
        h, ys, dys = self.h0, [], []
        for x, dx in zip(self.xs, dxs):
            u = np.tanh(self.w * h + x)
            dh = (1 - u * u) * (dw * h + self.w * dh + dx) + db
            h = u + self.b
            ys.append(h)
            dys.append(dh)
        return (h, np.stack(ys)), (dh, np.stack(dys))

    def rules_direct(self) -> Any:
        mul, add, tanh = elementwise.multiply.jvp, elementwise.add.jvp, elementwise.tanh.jvp
        dw, db, dh, dxs = self.tangents
        w, b, h = self.w, self.b, self.h0
        ys, dys = [], []
        for x, dx in zip(self.xs, dxs):
            p, dp = mul([w, h], [dw, dh])
            p, dp = add([p, x], [dp, dx])
            p, dp = tanh([p], [dp])
            h, dh = add([p, b], [dp, db])
            ys.append(h)
            dys.append(dh)
        return (h, manipulation._stack.impl(*ys, axis=0)), (dh, manipulation._stack.impl(*dys, axis=0))

    def jax_fn(self) -> tuple[Callable, tuple, tuple]:
        import jax
        import jax.numpy as jnp

        def run(w, b, h0, xs):
            return jax.lax.scan(lambda h, x: (lambda n: (n, n))(jnp.tanh(w * h + x) + b), h0, xs)
        return run, self.primals(), self.tangents


class Matmul:
    """H' = (W @ H) * 0.05, y = H'[0] with 256 x 256 matrices."""

    name = "matmul (256x256)"

    def __init__(self, rng: np.random.Generator, length: int):
        self.w, self.h0 = rng.standard_normal((256, 256)), rng.standard_normal((256, 256))
        self.xs = np.zeros((length, 1))
        self.tangents = (rng.standard_normal((256, 256)), rng.standard_normal((256, 256)), None)

    def primals(self) -> tuple:
        return self.w, self.h0, self.xs

    @staticmethod
    def body(w: Any) -> Callable:
        def step(h, x):
            h = ns.multiply(ns.matmul(w, h), 0.05)
            return h, h[0, ...]
        return step

    def numpy_loop(self) -> Any:
        h, ys = self.h0, []
        for _ in self.xs:
            h = (self.w @ h) * 0.05
            ys.append(h[0])
        return h, np.stack(ys)

    def numpy_forward(self) -> Any:
        dw, dh, _ = self.tangents
        h, ys, dys = self.h0, [], []
        for _ in self.xs:
            dh = (dw @ h + self.w @ dh) * 0.05
            h = (self.w @ h) * 0.05
            ys.append(h[0])
            dys.append(dh[0])
        return (h, np.stack(ys)), (dh, np.stack(dys))

    def rules_direct(self) -> Any:
        matmul, mul, getitem = products.matmul.jvp, elementwise.multiply.jvp, indexing.getitem.jvp
        dw, dh, _ = self.tangents
        w, h = self.w, self.h0
        ys, dys = [], []
        for _ in self.xs:
            p, dp = matmul([w, h], [dw, dh])
            h, dh = mul([p, 0.05], [dp, Zero((), None)])
            y, dy = getitem([h], [dh], key=(0, Ellipsis))
            ys.append(y)
            dys.append(dy)
        return (h, manipulation._stack.impl(*ys, axis=0)), (dh, manipulation._stack.impl(*dys, axis=0))

    def jax_fn(self) -> tuple[Callable, tuple, tuple]:
        import jax
        import jax.numpy as jnp

        def run(w, h0, xs):
            def step(h, x):
                h = (w @ h) * 0.05
                return h, h[0]
            return jax.lax.scan(step, h0, xs)
        dw, dh, _ = self.tangents
        return run, self.primals(), (dw, dh, jnp.zeros_like(jnp.asarray(self.xs)))


# ----------------------------------------------------------------------------------------- runner
def _python_loop(body: Callable, h0: Any, xs: Any) -> Any:
    h, ys = h0, []
    for i in range(xs.shape[0]):
        h, y = body(h, xs[i, ...])
        ys.append(y)
    return h, ns.stack(ys)


def measure(case: Any, length: int, repeat: int, use_jax: bool) -> dict[str, float]:
    primals = case.primals()
    make = case.body
    nparams = len(primals) - 2

    def via_loop(*p: Any) -> Any:
        return _python_loop(make(*p[:nparams]), p[nparams], p[nparams + 1])

    def via_scan(*p: Any) -> Any:
        return scan(make(*p[:nparams]), p[nparams], p[nparams + 1])

    tangents = case.tangents
    # correctness first: a fast wrong answer must not win
    reference = case.numpy_forward()
    for got in (ad.jvp(via_scan, primals, tangents), ad.jvp(via_loop, primals, tangents), case.rules_direct()):
        for g, r in zip((got[0][0], got[0][1], got[1][0], got[1][1]),
                        (reference[0][0], reference[0][1], reference[1][0], reference[1][1])):
            np.testing.assert_allclose(np.asarray(g), r, rtol=1e-9, atol=1e-9)
    per_step = 1e6 / length
    result = {
        "numpy loop": _time(case.numpy_loop, repeat) * per_step,
        "python loop": _time(lambda: via_loop(*primals), repeat) * per_step,
        "scan": _time(lambda: via_scan(*primals), repeat) * per_step,
        "numpy fwd": _time(case.numpy_forward, repeat) * per_step,
        "rules direct": _time(case.rules_direct, repeat) * per_step,
        "jvp(loop)": _time(lambda: ad.jvp(via_loop, primals, tangents), repeat) * per_step,
        "jvp(scan)": _time(lambda: ad.jvp(via_scan, primals, tangents), repeat) * per_step,
    }
    if use_jax:
        try:
            import jax

            jax.config.update("jax_enable_x64", True)
            run, jp, jt = case.jax_fn()
            jt = tuple(np.zeros_like(p) if t is None else t for p, t in zip(jp, jt))
            primal = jax.jit(run)
            tangent = jax.jit(lambda p, t: jax.jvp(run, p, t))
            jax.block_until_ready(primal(*jp))
            jax.block_until_ready(tangent(jp, jt))
            result["jax scan"] = _time(lambda: jax.block_until_ready(primal(*jp)), repeat) * per_step
            result["jax jvp(scan)"] = _time(lambda: jax.block_until_ready(tangent(jp, jt)), repeat) * per_step
        except ImportError:
            pass
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-jax", action="store_true")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    for cls, length in ((Small, args.length), (Matmul, max(args.length // 4, 10))):
        case = cls(rng, length)
        r = measure(case, length, args.repeat, not args.no_jax)
        print(f"\n{case.name}: {length} steps, microseconds per step (median of {args.repeat})")
        for key, value in r.items():
            print(f"  {key:14s} {value:10.2f}")
        scan_over = r["scan"] - r["numpy loop"]
        jvp_over, rules_over = r["jvp(scan)"] - r["numpy fwd"], r["rules direct"] - r["numpy fwd"]
        print(f"  overhead beyond the body's own work: scan {scan_over:.2f}, python loop "
              f"{r['python loop'] - r['numpy loop']:.2f}, jvp(scan) {jvp_over:.2f}, jvp(loop) "
              f"{r['jvp(loop)'] - r['numpy fwd']:.2f}, rules direct {rules_over:.2f}")
        ratio = f"{jvp_over / rules_over:.2f}" if rules_over > 0.05 * r["numpy fwd"] else "n/a (within noise)"
        print(f"  jvp(scan) overhead / rules-direct overhead = {ratio} (target < 2); "
              f"jvp(scan) / jvp(loop) = {r['jvp(scan)'] / r['jvp(loop)']:.2f}")


if __name__ == "__main__":
    main()
