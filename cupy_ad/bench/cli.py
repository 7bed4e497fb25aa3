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
import os
import sys
import tempfile
import time
from typing import Any

import numpy as np

import cupy_ad as ad

from .cases import OPS, Op, as_tuple, inputs
from .peers import Peer, aligned, max_relative_difference, peer_worker
from .breakdown import format_breakdown, primitive_breakdown
from .report import COLUMNS, format_table, machine, plot
from .timing import dispatch_overhead_us, extra_memory, median_seconds


def _progress(items: list, label: str) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(items, desc=label, file=sys.stderr)
    except ImportError:
        return items


#: Seconds of rest before each system's turn: OpenMP and OpenBLAS workers spin for a while after
#: their last task (MKL's OpenMP up to 200 ms), and must be idle when another system is timed.
SETTLE_SECONDS = 0.3


_TIMES = ("primal_ms", "ours_ms", "jax_ms", "torch_ms")


def run(args: argparse.Namespace) -> list[dict]:
    """Time every case; with ``--repeat N`` the whole sweep runs N times and each time reported is the
    median over the sweeps (the checks, memory and breakdown come from the first)."""
    backend = ad.default_backend()
    cases = [(name, (n, n), dtype) for name in args.ops for dtype in args.dtypes for n in args.sizes]
    if args.batch:
        cases += [(name, (args.batch, 16, 16), dtype) for name in args.ops for dtype in args.dtypes]
    rows: list[dict] = []
    samples: list[dict[str, list[float]]] = [{} for _ in cases]
    with tempfile.TemporaryDirectory() as out_dir:
        peers = [Peer(system, out_dir, args.case_timeout, args.min_time)
                 for system in (("jax", "torch") if args.peers else ())]
        try:
            for sweep in range(args.repeat):
                for index, (name, shape, dtype) in enumerate(_progress(cases, f"sweep {sweep + 1}/{args.repeat}")):
                    first = sweep == 0
                    hung = set() if first else {p.system for p in peers if rows[index].get(f"{p.system}_ms") == "hung"}
                    row = _time_case(args, backend, OPS[name], name, shape, dtype, index,
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
    a_np, t_np = inputs(op, shape, dtype)
    a, t = backend.from_numpy(a_np), backend.from_numpy(t_np)
    row: dict[str, Any] = {"op": name, "shape": "x".join(map(str, shape)), "dtype": dtype}
    time.sleep(SETTLE_SECONDS if peers else 0.0)
    row["primal_ms"] = 1e3 * median_seconds(lambda: op.primal(backend, a), backend.synchronize, args.min_time)
    row["ours_ms"] = 1e3 * median_seconds(lambda: ad.jvp(op.ours, (a,), (t,)), backend.synchronize, args.min_time)
    if first:
        values, tangents = ad.jvp(op.ours, (a,), (t,))
        our_values = [backend.to_numpy(v) for v in as_tuple(values)]
        our_tangents = [backend.to_numpy(v) for v in as_tuple(tangents)]
        if backend.name == "numpy":
            row["extra_memory_inputs"] = extra_memory(lambda: ad.jvp(op.ours, (a,), (t,)), a_np.nbytes)
        if args.breakdown:
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
            theirs = aligned(our_values, values, tangents, op.align)
            tolerance = 1e-6 if dtype == "float64" else 5e-2
            row[f"{peer.system}_agrees"] = max_relative_difference(our_tangents, theirs) < tolerance
    return row


class _ShowDefaults(argparse.HelpFormatter):
    """Appends each option's default to its help, lists as typed on the command line."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{action.help} (default: {shown})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cupy_ad bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=_ShowDefaults)
    parser.add_argument("--peers", action="store_true", help="also time JAX (jit) and PyTorch (torch.func)")
    parser.add_argument("--ops", nargs="+", choices=list(OPS), default=list(OPS), metavar="OP",
                        help="what to time, of: %(choices)s")
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 128, 512, 1024], metavar="N",
                        help="n of the n x n matrices")
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], metavar="DTYPE", help="dtypes to time")
    parser.add_argument("--batch", type=int, default=4096, metavar="B", help="batch of 16 x 16 matrices (0: none)")
    parser.add_argument("--backend", help="numpy or cupy (default: $CUPY_AD_BACKEND, else cupy with a GPU, else numpy)")
    parser.add_argument("--csv", default="bench.csv", metavar="FILE", help="the table as CSV")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also write a figure of time vs n per op (needs matplotlib: the bench extra)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="sweeps over all cases; each time reported is the median over the sweeps")
    parser.add_argument("--min-time", type=float, default=0.2, metavar="SECONDS",
                        help="seconds of timed calls per case and system (the median is reported)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print, per case, the time of each primitive's kernels inside our jvp")
    parser.add_argument("--case-timeout", type=float, default=90.0, metavar="SECONDS",
                        help="seconds a peer may take on one case before it is skipped")
    parser.add_argument("--worker", choices=["jax", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.worker:
        return peer_worker(args.worker, args.out, args.min_time)
    if args.plot:  # checked before the run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib: pip install "cupy-ad[bench]" (the bench extra)')
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
        plot(rows, args.plot, f"cupy_ad vs peers, {backend.name} backend, {machine(backend)}")
    disagree = [r for r in rows if r.get("jax_agrees") is False or r.get("torch_agrees") is False]
    for r in disagree:
        print(f"JVP disagrees with a peer: {r['op']} {r['shape']} {r['dtype']}", file=sys.stderr)
    return 1 if disagree else 0

