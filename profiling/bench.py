"""Benchmark: primal vs ``ad.jvp`` per decomposition and size, optionally against JAX and PyTorch.

``python -m cupy_ad bench [--peers] [--sizes 16 128 512 1024] [--dtypes float64 float32]
[--batch 4096] [--repeat N] [--csv FILE] [--plot FILE.png] [--breakdown]`` prints a table (op, n,
dtype, primal, ours, jax, torch, ours/primal, ours/best peer, extra memory), writes a CSV and
optionally a plot. Each time is the median of repeated calls after warm-up (and, with --repeat, the
median over sweeps); each peer runs in a process of its own (so that no thread pool of one system
slows another) and the systems take turns case by case; every JVP timed is checked against the
peers' (signs of singular/eigen vectors aligned), so a fast wrong answer cannot win. On NumPy the
extra memory of a jvp beyond its outputs is measured with tracemalloc, in units of the input's size.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import cupy_ad as ad
from cupy_ad.namespace import namespace


@dataclass
class Op:
    name: str
    make_input: Callable[[np.random.Generator, tuple, Any], np.ndarray]
    ours: Callable[[Any], Any]
    primal: Callable[[Any, Any], Any]          # (backend, x) -> the backend kernel alone
    jax: Callable[[Any], Any] | None = None     # built lazily from jax.numpy
    torch: Callable[[Any], Any] | None = None
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


def _ops() -> dict[str, Op]:
    return {
        "lu_factor": Op("lu_factor", _general, lambda a: ad.linalg.lu_factor(a)[0],
                        lambda b, a: b.lu_factor(a)),
        "qr": Op("qr", _general, lambda a: tuple(ad.linalg.qr(a)), lambda b, a: b.qr(a, "reduced")),
        "svd": Op("svd", _general, lambda a: tuple(ad.linalg.svd(a, full_matrices=False)),
                  lambda b, a: b.svd(a, False), align="columns"),
        "eigh": Op("eigh", _symmetric, lambda a: tuple(ad.linalg.eigh(a)), lambda b, a: b.eigh(a, True),
                   align="columns"),
        "cholesky": Op("cholesky", _spd, lambda a: ad.linalg.cholesky(a), lambda b, a: b.cholesky(a, False)),
        "scan": Op("scan", _recurrence_weights, _ours_rnn, lambda b, a: _ours_rnn(a)),  # primal: the loop on raw arrays
    }


def _jax_function(name: str) -> Callable:
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


def _torch_function(name: str) -> Callable:
    import torch

    return {
        "lu_factor": lambda a: torch.linalg.lu_factor(a).LU,
        "qr": lambda a: tuple(torch.linalg.qr(a)),
        "svd": lambda a: tuple(torch.linalg.svd(a, full_matrices=False)),
        "eigh": lambda a: tuple(torch.linalg.eigh(a)),
        "cholesky": lambda a: torch.linalg.cholesky(a),
        "scan": lambda a: _rnn(a, torch, _python_scan),
    }[name]


def _median_seconds(fn: Callable[[], Any], sync: Callable[[], None], min_time: float = 0.2,
                    max_repeat: int = 2000) -> float:
    """Median of repeated timings of ``fn`` after a warm-up of min_time / 4 seconds (at least one
    call): a jitted JAX function takes a few dozen calls to settle (16 x 16 lu: about 50 us for its
    first 15 calls, 21 us after), so a single warm-up call would flatter us. Then calls until
    ``min_time`` seconds are measured (at least 3, at most ``max_repeat``)."""
    start = time.perf_counter()
    fn()
    sync()
    while time.perf_counter() - start < min_time / 4:
        fn()
        sync()
    times: list[float] = []
    total = 0.0  # a running total: re-summing the list each call would put a growing gap between
    while len(times) < 3 or (total < min_time and len(times) < max_repeat):  # calls (JAX slows then)
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return float(np.median(times))


def _as_tuple(x: Any) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _aligned(reference: list[np.ndarray], values: list[np.ndarray], tangents: list[np.ndarray],
             align: str) -> list[np.ndarray]:
    """Peer tangents with each singular/eigen-vector column's sign matched to ours."""
    if align != "columns":
        return tangents
    out = list(tangents)
    vectors = [i for i, v in enumerate(values) if v.ndim >= 2]
    for i in vectors:
        signs = np.sign(np.sum(reference[i] * values[i], axis=-2, keepdims=True))
        out[i] = tangents[i] * signs
        if i == 2:  # svd's Vh: rows pair with U's columns
            signs_u = np.sign(np.sum(reference[0] * values[0], axis=-2, keepdims=True))
            out[i] = tangents[i] * np.swapaxes(signs_u, -1, -2)
    return out


def _max_relative_difference(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs):
        scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst


def _extra_memory(fn: Callable[[], Any], input_bytes: int) -> float:
    """Peak traced memory of ``fn`` beyond what its outputs hold, in units of the input's size."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(np.asarray(leaf).nbytes for part in out for leaf in _as_tuple(part))
    return (peak - kept) / input_bytes


def dispatch_overhead_us(backend: Any) -> tuple[float, float]:
    """Microseconds per primitive bind on a dual (16 elements) and per jvp call of one sin."""
    ns = namespace(backend)
    x = backend.from_numpy(np.linspace(0.1, 1.0, 16))

    def chain(a: Any) -> Any:
        for _ in range(100):
            a = ns.sin(a)
        return a

    per_bind = _median_seconds(lambda: ad.jvp(chain, (x,), (x,)), backend.synchronize) / 100 * 1e6
    per_call = _median_seconds(lambda: ad.jvp(ns.sin, (x,), (x,)), backend.synchronize) * 1e6
    return per_bind, per_call


def _inputs(op: Op, shape: tuple, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """The primal and tangent of one case, the same in every process (seeded by the case)."""
    rng = np.random.default_rng(zlib.crc32(f"{op.name} {shape} {dtype}".encode()))
    return op.make_input(rng, shape, np.dtype(dtype)), op.make_input(rng, shape, np.dtype(dtype))


def _progress(items: list, label: str) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(items, desc=label, file=sys.stderr)
    except ImportError:
        return items


def peer_worker(system: str, out_dir: str, min_time: float) -> int:
    """Serve ``system``'s jvp timings: for each line ``[index, [name, shape, dtype]]`` on stdin, time the
    case, write ``{index}.npz`` (outputs and tangents) and ``{index}.json`` (milliseconds) to out_dir
    and answer ``done``; an empty line ends. Answers ``missing`` when the system is not installed."""
    ops = _ops()
    try:
        if system == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
        else:
            import torch
    except ImportError:
        print("missing", flush=True)
        return 0
    for line in sys.stdin:
        if not line.strip():
            break
        index, (name, shape, dtype) = json.loads(line)
        a_np, t_np = _inputs(ops[name], tuple(shape), dtype)
        if system == "jax":
            f = _jax_function(name)
            jitted = jax.jit(lambda x, dx, f=f: jax.jvp(f, (x,), (dx,)))
            x, dx = jax.numpy.asarray(a_np), jax.numpy.asarray(t_np)
            ms = 1e3 * _median_seconds(lambda: jax.block_until_ready(jitted(x, dx)), lambda: None, min_time)
            values, tangents = jitted(x, dx)
        else:
            f = _torch_function(name)
            x, dx = torch.from_numpy(a_np), torch.from_numpy(t_np)
            ms = 1e3 * _median_seconds(lambda: torch.func.jvp(f, (x,), (dx,)), lambda: None, min_time)
            values, tangents = torch.func.jvp(f, (x,), (dx,))
        np.savez(os.path.join(out_dir, f"{index}.npz"), *[np.asarray(v) for v in _as_tuple(values)],
                 *[np.asarray(v) for v in _as_tuple(tangents)])
        with open(os.path.join(out_dir, f"{index}.json"), "w") as fh:
            json.dump(ms, fh)
        print("done", flush=True)
    return 0


class _Peer:
    """A peer system (JAX or PyTorch) in a process of its own, so that no thread pool of one system
    slows another, timing one case at a time when asked: the cases of all systems interleave, and a
    drift of the machine's speed during the run does not favour whichever system ran first.

    A case with no answer after ``timeout`` seconds (JAX 0.10.2 deadlocks on the jvp of a batched QR
    on the CPU) is recorded as None and the worker is restarted for the next case.
    """

    def __init__(self, system: str, out_dir: str, timeout: float, min_time: float):
        self.system, self.out_dir, self.timeout, self.min_time = system, out_dir, timeout, min_time
        self.process: subprocess.Popen | None = None
        self.installed = True

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(ad.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        command = [sys.executable, __file__, "--worker", self.system, "--out", self.out_dir,
                   "--min-time", str(self.min_time)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def time(self, index: int, case: tuple) -> tuple[float, list, list] | None:
        """(ms, outputs, tangents) of one case, or None (no answer in time, or not installed)."""
        if not self.installed:
            return None
        if self.process is None:
            self._start()
        try:
            self.process.stdin.write(json.dumps([index, [case[0], list(case[1]), case[2]]]) + "\n")
            self.process.stdin.flush()
        except OSError:  # the worker died after its last case: a fresh one takes the next
            print(f"\n{self.system}: the worker had exited before {case}: skipped", file=sys.stderr)
            self.close()
            return None
        answered = select.select([self.process.stdout], [], [], self.timeout)[0]
        answer = self.process.stdout.readline().strip() if answered else ""
        if answer == "missing":
            print(f"{self.system} not installed: no {self.system} column", file=sys.stderr)
            self.installed = False
            self.close()
            return None
        if answer != "done":
            why = f"no result after {self.timeout:.0f} s" if not answered else f"the worker answered {answer!r}"
            print(f"\n{self.system}: {why} for {case}: skipped", file=sys.stderr)
            self.close()
            return None
        with open(os.path.join(self.out_dir, f"{index}.json")) as fh:
            ms = json.load(fh)
        with np.load(os.path.join(self.out_dir, f"{index}.npz")) as data:
            arrays = [data[f"arr_{k}"] for k in range(len(data.files))]
        half = len(arrays) // 2
        return ms, arrays[:half], arrays[half:]

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


#: Seconds of rest before each system's turn: OpenMP and OpenBLAS workers spin for a while after
#: their last task (MKL's OpenMP up to 200 ms), and must be idle when another system is timed.
SETTLE_SECONDS = 0.3


_TIMES = ("primal_ms", "ours_ms", "jax_ms", "torch_ms")


def run(args: argparse.Namespace) -> list[dict]:
    """Time every case; with ``--repeat N`` the whole sweep runs N times and each time reported is the
    median over the sweeps (the checks, memory and breakdown come from the first)."""
    backend = ad.default_backend()
    ops = _ops()
    names = args.ops or list(ops)
    cases = [(name, (n, n), dtype) for name in names for dtype in args.dtypes for n in args.sizes]
    if args.batch:
        cases += [(name, (args.batch, 16, 16), dtype) for name in names for dtype in args.dtypes]
    rows: list[dict] = []
    samples: list[dict[str, list[float]]] = [{} for _ in cases]
    with tempfile.TemporaryDirectory() as out_dir:
        peers = [_Peer(system, out_dir, args.case_timeout, args.min_time)
                 for system in (("jax", "torch") if args.peers else ())]
        try:
            for sweep in range(args.repeat):
                for index, (name, shape, dtype) in enumerate(_progress(cases, f"sweep {sweep + 1}/{args.repeat}")):
                    first = sweep == 0
                    hung = set() if first else {p.system for p in peers if rows[index].get(f"{p.system}_ms") == "hung"}
                    row = _time_case(args, backend, ops[name], name, shape, dtype, index,
                                     [p for p in peers if p.system not in hung], first)
                    if first:
                        rows.append(row)
                    for key in _TIMES:
                        if isinstance(row.get(key), float):
                            samples[index].setdefault(key, []).append(row[key])
        finally:
            for peer in peers:
                peer.close()
    for row, timed in zip(rows, samples):
        row.update({key: float(np.median(values)) for key, values in timed.items()})
        row["ours_over_primal"] = row["ours_ms"] / row["primal_ms"]
        peer_times = [row[k] for k in ("jax_ms", "torch_ms") if isinstance(row.get(k), float)]
        if peer_times:
            row["ours_over_best_peer"] = row["ours_ms"] / min(peer_times)
    return rows


def _time_case(args: argparse.Namespace, backend: Any, op: Op, name: str, shape: tuple, dtype: str, index: int,
               peers: list, first: bool) -> dict:
    """One row: our primal and jvp, then each peer's jvp; on the ``first`` sweep also the checks
    against the peers, the memory and the breakdown."""
    a_np, t_np = _inputs(op, shape, dtype)
    a, t = backend.from_numpy(a_np), backend.from_numpy(t_np)
    row: dict[str, Any] = {"op": name, "shape": "x".join(map(str, shape)), "dtype": dtype}
    time.sleep(SETTLE_SECONDS if peers else 0.0)
    row["primal_ms"] = 1e3 * _median_seconds(lambda: op.primal(backend, a), backend.synchronize, args.min_time)
    row["ours_ms"] = 1e3 * _median_seconds(lambda: ad.jvp(op.ours, (a,), (t,)), backend.synchronize, args.min_time)
    if first:
        values, tangents = ad.jvp(op.ours, (a,), (t,))
        our_values = [backend.to_numpy(v) for v in _as_tuple(values)]
        our_tangents = [backend.to_numpy(v) for v in _as_tuple(tangents)]
        if backend.name == "numpy":
            row["extra_memory_inputs"] = _extra_memory(lambda: ad.jvp(op.ours, (a,), (t,)), a_np.nbytes)
        if args.breakdown:
            from breakdown import format_breakdown, primitive_breakdown

            label = f"{name} {row['shape']} {dtype}"
            row["breakdown"] = format_breakdown(label, *primitive_breakdown(lambda: ad.jvp(op.ours, (a,), (t,)),
                                                                            backend.synchronize))
    for peer in (p for p in peers if p.installed):
        time.sleep(SETTLE_SECONDS)
        result = peer.time(index, (name, shape, dtype))
        if result is None:
            if peer.installed:
                row[f"{peer.system}_ms"] = "hung"
            continue
        ms, values, tangents = result
        row[f"{peer.system}_ms"] = ms
        if first:
            theirs = _aligned(our_values, values, tangents, op.align)
            tolerance = 1e-6 if dtype == "float64" else 5e-2
            row[f"{peer.system}_agrees"] = _max_relative_difference(our_tangents, theirs) < tolerance
    return row


COLUMNS = ["op", "shape", "dtype", "primal_ms", "ours_ms", "jax_ms", "torch_ms", "ours_over_primal",
           "ours_over_best_peer", "extra_memory_inputs", "jax_agrees", "torch_agrees"]


def format_table(rows: list[dict]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, float):
            return f"{value:.3f}" if value < 100 else f"{value:.1f}"
        return str(value)

    table = [COLUMNS] + [[cell(row.get(c)) for c in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["| " + " | ".join(v.rjust(w) for v, w in zip(r, widths)) + " |" for r in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = sorted({r["op"] for r in rows})
    columns = min(3, len(ops))
    lines = -(-len(ops) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.set_visible(False)
    for ax, op in zip(axes.flat, ops):
        square = [r for r in rows if r["op"] == op and r["shape"].count("x") == 1 and r["dtype"] == "float64"]
        n = [int(r["shape"].split("x")[0]) for r in square]
        for key, label in (("primal_ms", "primal"), ("ours_ms", "cupy_ad jvp"), ("jax_ms", "JAX jvp (jit)"),
                           ("torch_ms", "PyTorch jvp")):
            if square and key in square[0]:
                ax.loglog(n, [r[key] if isinstance(r[key], float) else float("nan") for r in square], marker="o",
                          label=label)
        ax.set_title(f"{op} (float64)")
        ax.set_xlabel("n")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _machine(backend: Any) -> str:
    """The machine in a few words, for the figure's title."""
    import platform

    if backend.name == "cupy":
        import cupy

        return cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    return f"{os.cpu_count()} CPUs ({platform.machine()}), {time.strftime('%Y-%m-%d')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cupy_ad bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", action="store_true", help="also time JAX (jit) and PyTorch (torch.func)")
    parser.add_argument("--ops", nargs="*", choices=list(_ops()), help="default: all")
    parser.add_argument("--sizes", nargs="*", type=int, default=[16, 128, 512, 1024])
    parser.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    parser.add_argument("--batch", type=int, default=4096, help="batch of 16 x 16 matrices (0: none)")
    parser.add_argument("--backend", help="numpy or cupy (default: the default backend)")
    parser.add_argument("--csv", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "bench.csv"))
    parser.add_argument("--plot", help="write a figure of time vs n per op")
    parser.add_argument("--repeat", type=int, default=1,
                        help="sweeps over all cases; each time reported is the median over the sweeps (default 1)")
    parser.add_argument("--min-time", type=float, default=0.2,
                        help="seconds of timed calls per case and system (the median is reported; default 0.2)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print, per case, the time of each primitive's kernels inside our jvp")
    parser.add_argument("--case-timeout", type=float, default=90.0,
                        help="seconds a peer may take on one case before it is skipped (default 90)")
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return peer_worker(args.worker, args.out, args.min_time)
    if args.backend:
        ad.set_backend(args.backend)
    backend = ad.default_backend()
    per_bind, per_call = dispatch_overhead_us(backend)
    rows = run(args)
    print(f"backend {backend.name}; dispatch: {per_bind:.1f} us per bind on a dual, "
          f"{per_call:.1f} us per jvp call of one primitive")
    print(format_table(rows))
    for row in rows:
        if "breakdown" in row:
            print(row["breakdown"])
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    if args.plot:
        plot(rows, args.plot, f"cupy_ad vs peers, {backend.name} backend, {_machine(backend)}")
    disagree = [r for r in rows if r.get("jax_agrees") is False or r.get("torch_agrees") is False]
    for r in disagree:
        print(f"JVP disagrees with a peer: {r['op']} {r['shape']} {r['dtype']}", file=sys.stderr)
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
