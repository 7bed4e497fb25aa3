"""GPU benchmark of the CuPy backend: CUDA-event times of the primal and of ``ad.jvp`` per
decomposition and size, and our primal kernels against CuPy's own routines.

    python profiling/bench_gpu.py [--sizes 256 1024 4096] [--dtypes float32 float64]
        [--batch 10000 --batch-n 16] [--ops lu_factor qr svd eigh cholesky solve_triangular]
        [--csv FILE] [--budget SECONDS] [--crossover | --no-crossover]

Every time is the median of ``cupyx.profiler.benchmark``'s GPU times (CUDA events around each
call, after warm-up; one call for the slow cases). Columns: ours = ``cupy_ad.linalg.<op>`` on a
plain CuPy array (our direct cuSOLVER/cuBLAS kernels), cupy = CuPy's routine for the same call
(``cupyx.scipy.linalg.lu_factor``/``solve_triangular``, ``cupy.linalg.qr/svd/eigh/cholesky``; n/a
where CuPy has no batched version), ours/cupy (target <= 1.0), jvp = ``ad.jvp`` (primal and
tangent), jvp/primal. Before timing, our primal is checked against CuPy's (gauge-free
quantities), so a fast wrong kernel cannot win. ``--crossover`` also times the batched cuSOLVER/
cuBLAS routines against the per-matrix loop for small matrices, the data behind the batching rule
in cupy_ad/backends/cusolver.py. ``--budget`` skips the remaining cases (marked so) once spent.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
OPS = ("lu_factor", "qr", "svd", "eigh", "cholesky", "solve_triangular")
cupy = cupyx = benchmark = ad = cusolver = None  # imported by _load(), after argument parsing


def _load() -> None:
    global cupy, cupyx, benchmark, ad, cusolver
    import cupy
    import cupyx
    import cupyx.scipy.linalg
    from cupyx.profiler import benchmark

    import cupy_ad as ad
    from cupy_ad.backends import cusolver


def _inputs(op: str, shape: tuple, dtype: Any, seed: int = 0) -> tuple[Any, Any]:
    rng = cupy.random.default_rng(seed)
    n = shape[-1]
    a = rng.standard_normal(shape, dtype=dtype)
    t = rng.standard_normal(shape, dtype=dtype)
    if op == "eigh":
        a = (a + cupy.swapaxes(a, -1, -2)) / 2
    elif op == "cholesky":
        a = a @ cupy.swapaxes(a, -1, -2) / n + cupy.eye(n, dtype=dtype)
    elif op == "solve_triangular":
        a = cupy.tril(a) + n * cupy.eye(n, dtype=dtype)
    return a, t


def _functions(op: str, batched: bool) -> tuple[Callable, Callable | None]:
    """(ours, CuPy's) for ``op`` on a plain array."""
    if op == "lu_factor":
        return (lambda a: ad.linalg.lu_factor(a),
                None if batched else (lambda a: cupyx.scipy.linalg.lu_factor(a, check_finite=False)))
    if op == "qr":
        return (lambda a: ad.linalg.qr(a)), (lambda a: cupy.linalg.qr(a))
    if op == "svd":
        return (lambda a: ad.linalg.svd(a, full_matrices=False)), (lambda a: cupy.linalg.svd(a, full_matrices=False))
    if op == "eigh":
        return (lambda a: ad.linalg.eigh(a)), (lambda a: cupy.linalg.eigh(a))
    if op == "cholesky":
        return (lambda a: ad.linalg.cholesky(a)), (lambda a: cupy.linalg.cholesky(a))
    if op == "solve_triangular":  # CuPy's takes batches from CuPy 14 on (cupy/cupy#8329): 13.6 refuses them
        cupy_batches = int(cupy.__version__.split(".")[0]) >= 14
        return ((lambda a: ad.linalg.solve_triangular(a, a[..., :8], lower=True)),
                (lambda a: cupyx.scipy.linalg.solve_triangular(a, a[..., :8], lower=True))
                if cupy_batches or not batched else None)
    raise ValueError(op)


def _check(op: str, ours: Any, theirs: Any, dtype: Any) -> float:
    """Largest relative difference of gauge-free quantities (factors or values) of the two primals."""
    if op == "lu_factor":
        pairs = [(ours[0], theirs[0])]
    elif op == "qr":
        pairs = [(cupy.abs(ours[1]), cupy.abs(theirs[1]))]
    elif op in ("svd", "eigh"):
        pairs = [(ours[1] if op == "svd" else ours[0], theirs[1] if op == "svd" else theirs[0])]
    else:
        pairs = [(ours, theirs)]
    worst = 0.0
    for x, y in pairs:
        scale = float(cupy.abs(y).max()) or 1.0
        worst = max(worst, float(cupy.abs(x - y).max()) / scale)
    return worst


def _time(fn: Callable[[], Any], max_duration: float) -> float:
    """Median GPU seconds of ``fn``: a pilot call decides the warm-up (none for calls over 0.2 s)."""
    start = time.perf_counter()
    fn()
    cupy.cuda.Device().synchronize()
    pilot = time.perf_counter() - start
    slow = pilot > 0.2
    result = benchmark(fn, n_repeat=1 if slow else 1000, n_warmup=0 if slow else 3, max_duration=max_duration)
    return float(np.median(result.gpu_times[0]))


def run(args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    cases = [(op, (args.batch, args.batch_n, args.batch_n), dtype)
             for dtype in args.dtypes for op in args.ops] if args.batch else []
    cases += [(op, (n, n), dtype) for n in sorted(args.sizes) for dtype in args.dtypes for op in args.ops]
    deadline = time.perf_counter() + args.budget
    for op, shape, dtype in cases:
        row = dict(op=op, n=shape[-1], batch=shape[0] if len(shape) == 3 else 1, dtype=dtype)
        rows.append(row)
        if time.perf_counter() > deadline:
            row["note"] = "skipped (budget)"
            print(_format_row(row), flush=True)
            continue
        a, t = _inputs(op, shape, dtype)
        ours, theirs = _functions(op, len(shape) == 3)
        if theirs is not None:
            row["max_rel_diff"] = _check(op, ours(a), theirs(a), dtype)
            row["cupy_ms"] = 1e3 * _time(lambda: theirs(a), args.max_duration)
        row["ours_ms"] = 1e3 * _time(lambda: ours(a), args.max_duration)
        row["jvp_ms"] = 1e3 * _time(lambda: ad.jvp(ours, (a,), (t,)), args.max_duration)
        if "cupy_ms" in row:
            row["ours/cupy"] = row["ours_ms"] / row["cupy_ms"]
        row["jvp/primal"] = row["jvp_ms"] / row["ours_ms"]
        print(_format_row(row), flush=True)
        a = t = None  # the device arrays go before the next case
        cupy.get_default_memory_pool().free_all_blocks()
    return rows


_COLUMNS = ("op", "n", "batch", "dtype", "ours_ms", "cupy_ms", "ours/cupy", "jvp_ms", "jvp/primal",
            "max_rel_diff", "note")


def _format_row(row: dict) -> str:
    def cell(key: str) -> str:
        value = row.get(key, "n/a" if key != "note" else "")
        if isinstance(value, float):
            return f"{value:.2e}" if key == "max_rel_diff" else f"{value:.3f}"
        return str(value)

    return " | ".join(f"{cell(k):>12}" for k in _COLUMNS)


def crossover(args: argparse.Namespace) -> list[dict]:
    """Batched routine vs per-matrix loop for small matrices (forces each path via the rule's constants)."""
    from cupy_ad.backends.cupy_backend import CupyBackend

    backend = CupyBackend()
    rows = []
    saved = {k: getattr(cusolver, k) for k in ("GETRF_BATCHED_RATIO", "POTRF_BATCHED_MAX_N",
                                                "JACOBI_BATCHED_MAX_N", "TRSM_BATCHED_MAX_N")}
    kernels = {
        "getrf": (lambda a: backend.lu_factor(a), "GETRF_BATCHED_RATIO", 1 << 62, 0),
        "potrf": (lambda a: backend.cholesky(a, False), "POTRF_BATCHED_MAX_N", 1 << 30, 0),
        "syevd": (lambda a: backend.eigh(a, True), "JACOBI_BATCHED_MAX_N", 32, 0),
        "gesvd": (lambda a: backend.svd(a, False), "JACOBI_BATCHED_MAX_N", 32, 0),
        "trsm": (lambda a: backend.solve_triangular(a, a[..., :4], lower=True, trans=0, unit_diagonal=False),
                 "TRSM_BATCHED_MAX_N", 1 << 30, 0),
    }
    if not cusolver._wraps_trsm_batched(cusolver._libs()[0]):  # CuPy 13: no trsmBatched, both paths loop
        del kernels["trsm"]
    try:
        for name, (fn, constant, batched_value, loop_value) in kernels.items():
            for n in args.crossover_sizes:
                if name in ("syevd", "gesvd") and n > 32:
                    continue
                op = {"potrf": "cholesky", "syevd": "eigh", "trsm": "solve_triangular"}.get(name, "lu_factor")
                a, _ = _inputs(op, (args.crossover_batch, n, n), "float64")
                times = {}
                for path, value in (("batched", batched_value), ("loop", loop_value)):
                    setattr(cusolver, constant, value)
                    times[path] = 1e3 * _time(lambda: fn(a), args.max_duration)
                row = dict(kernel=name, n=n, batch=args.crossover_batch, batched_ms=times["batched"],
                           loop_ms=times["loop"], faster="batched" if times["batched"] < times["loop"] else "loop")
                rows.append(row)
                print(" | ".join(f"{v:>10.3f}" if isinstance(v, float) else f"{v!s:>10}" for v in row.values()),
                      flush=True)
                setattr(cusolver, constant, saved[constant])
    finally:
        for k, v in saved.items():
            setattr(cusolver, k, v)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="*", choices=OPS, default=list(OPS))
    parser.add_argument("--sizes", nargs="*", type=int, default=[256, 1024, 4096])
    parser.add_argument("--dtypes", nargs="*", default=["float32", "float64"])
    parser.add_argument("--batch", type=int, default=10000, help="batch of --batch-n matrices (0: none)")
    parser.add_argument("--batch-n", type=int, default=16)
    parser.add_argument("--csv", default="bench_gpu.csv")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for the main table")
    parser.add_argument("--max-duration", type=float, default=0.5, help="seconds per timed case")
    parser.add_argument("--crossover", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--crossover-sizes", nargs="*", type=int, default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--crossover-batch", type=int, default=512)
    args = parser.parse_args(argv)
    _load()

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    device = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"# device: {device}; cupy {cupy.__version__}; CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    print(" | ".join(f"{c:>12}" for c in _COLUMNS))
    rows = run(args)
    with open(args.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["device", *_COLUMNS])
        writer.writeheader()
        for row in rows:
            writer.writerow({"device": device, **row})
    print(f"# wrote {args.csv}")
    if args.crossover:
        print("# batched routine vs per-matrix loop (float64)")
        print(" | ".join(f"{c:>10}" for c in ("kernel", "n", "batch", "batched_ms", "loop_ms", "faster")))
        cross = crossover(args)
        path = Path(args.csv).with_name(Path(args.csv).stem + "_crossover.csv")
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["device", *cross[0].keys()] if cross else ["device"])
            writer.writeheader()
            for row in cross:
                writer.writerow({"device": device, **row})
        print(f"# wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
