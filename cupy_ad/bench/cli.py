"""Benchmark: primal vs ``ad.jvp`` per decomposition and size, optionally against JAX and PyTorch.

``python -m cupy_ad bench [--peers] [--sizes 16 128 512 1024] [--dtypes float64 float32]
[--batch 4096] [--repeat N] [--csv FILE] [--plot FILE.png] [--breakdown]`` prints a table (op, n,
dtype, primal, ours, jax, torch, ours/primal, ours/best peer, extra memory), writes a CSV and
optionally a plot. Each time is the median of repeated calls after warm-up (and, with --repeat, the
median over sweeps); each peer runs in a process of its own (so that no thread pool of one system
slows another) and the systems take turns case by case; every JVP timed is checked against the
peers' (signs of singular/eigen vectors aligned), so a fast wrong answer cannot win. On NumPy the
extra memory of a jvp beyond its outputs is measured with tracemalloc, in units of the input's size.

``--suite directions [--rows ...] [--quick]`` times instead the rows of ``directions.py`` (jacfwd,
linearize and vmap against one direction at a time, a hand-batched function, ``jax.jit(jax.jacfwd)``
and ``torch.func``), interleaved with the peers in the same way (ours and the row's baseline take
turns call by call, so that their ratio survives a machine whose speed changes), each with the issue's
targets; ``--suite jit`` the rows of ``jit_rows.py`` (``ad.jit`` of a jvp against the eager jvp, its
jitted primal and ``jax.jit(jax.jvp)``).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

import cupy_ad as ad

from .cases import OPS, Op, as_tuple, inputs
from .peers import SUITES, Peer, aligned, max_relative_difference, peer_worker
from .breakdown import format_breakdown, primitive_breakdown
from .report import COLUMNS, DIRECTION_COLUMNS, format_table, machine, plot
from .timing import (alternating_seconds, dispatch_overhead_us, extra_memory, median_and_fastest_seconds,
                     median_seconds, peak_memory_over_output)


def _progress(items: list, label: str) -> Any:
    try:
        from tqdm import tqdm

        return tqdm(items, desc=label, file=sys.stderr)
    except ImportError:
        return items


#: Seconds of rest before each system's turn: OpenMP and OpenBLAS workers spin for a while after
#: their last task (MKL's OpenMP up to 200 ms), and must be idle when another system is timed.
SETTLE_SECONDS = 0.3


def run(args: argparse.Namespace) -> list[dict]:
    """Time every case; with ``--repeat N`` the whole sweep runs N times and each time reported is the
    median over the sweeps (the checks, memory and breakdown come from the first)."""
    backend = ad.default_backend()
    cases = [(name, (n, n), dtype) for name in args.ops for dtype in args.dtypes for n in args.sizes]
    if args.batch:
        cases += [(name, (args.batch, 16, 16), dtype) for name in args.ops for dtype in args.dtypes]
    rows = _sweeps(args, cases, lambda case, index, peers, first: _time_case(
        args, backend, OPS[case[0]], *case, index, peers, first))
    for row in rows:
        row["ours_over_primal"] = row["ours_ms"] / row["primal_ms"]
        peer_times = [row[k] for k in ("jax_ms", "torch_ms") if isinstance(row.get(k), float)]
        if peer_times:
            row["ours_over_best_peer"] = row["ours_ms"] / min(peer_times)
    return rows


def _sweeps(args: argparse.Namespace, cases: list, time_case: Callable[..., dict],
            systems: tuple = ("jax", "torch")) -> list[dict]:
    """``time_case(case, index, peers, first)`` for every case, ``args.repeat`` sweeps in turn (a peer
    that gave no answer on a case is not asked again); each time reported is the median over the sweeps."""
    rows: list[dict] = []
    samples: list[dict[str, list[float]]] = [{} for _ in cases]
    with tempfile.TemporaryDirectory() as out_dir:
        peers = [Peer(system, out_dir, args.case_timeout, args.min_time)
                 for system in (systems if args.peers else ())]
        try:
            for sweep in range(args.repeat):
                for index, case in enumerate(_progress(cases, f"sweep {sweep + 1}/{args.repeat}")):
                    first = sweep == 0
                    hung = set() if first else {p.system for p in peers
                                                if isinstance(rows[index].get(f"{p.system}_ms"), str)}
                    row = time_case(case, index, [p for p in peers if p.system not in hung], first)
                    if first:
                        rows.append(row)
                    for key, value in row.items():
                        if key.endswith("_ms") and isinstance(value, float):
                            samples[index].setdefault(key, []).append(value)
        finally:
            for peer in peers:
                peer.close()
    for row, timed in zip(rows, samples):  # (the fastest call: the fastest of all sweeps)
        row.update({key: float(np.min(values) if key.endswith("_fastest_ms") else np.median(values))
                    for key, values in timed.items()})
    return rows


def run_rows(args: argparse.Namespace) -> list[dict]:
    """A suite of rows (``directions.ROWS``, ``jit_rows.ROWS``): ours, the row's baseline and each peer in
    turn, per row; the checks against the peers and the peak memory come from the first sweep."""
    backend = ad.default_backend()
    xp = ad.namespace(backend.name)
    suite = SUITES[args.suite]
    names = args.rows or list(suite.ROWS)
    unknown = [name for name in names if name not in suite.ROWS]
    if unknown:
        raise SystemExit(f"--rows: {unknown[0]!r} is not a row of the {args.suite} suite: {', '.join(suite.ROWS)}")
    built = {}
    for name in names:
        d = {key: backend.from_numpy(value) if isinstance(value, np.ndarray) else value
             for key, value in suite.row_data(name, args.quick).items()}
        row = suite.ROWS[name]
        built[name] = d, row.ours(xp, d), row.baseline and row.baseline(xp, d)

    def time_row(name: str, index: int, peers: list, first: bool) -> dict:
        d, ours, baseline = built[name]
        row: dict[str, Any] = {"row": name, "baseline": suite.ROWS[name].baseline_label or "-"}
        peers = [] if name in suite.WITHOUT_PEERS else peers
        time.sleep(SETTLE_SECONDS if peers else 0.0)
        timed = (("ours", ours), ("baseline", baseline)) if baseline else (("ours", ours),)
        # in turns, call by call: the ratio of ours to the baseline is the target
        for (key, _), (median, fastest) in zip(timed, alternating_seconds(
                [fn for _, fn in timed], backend.synchronize, args.min_time)):
            row[f"{key}_ms"], row[f"{key}_fastest_ms"] = 1e3 * median, 1e3 * fastest
        if peers and baseline:
            # a peer's calls are timed back to back in its own process; ours alike for that ratio (taking
            # turns with the eager baseline cost a replay 20-25% at n = 16 in one in-process A/B)
            median, fastest = median_and_fastest_seconds(ours, backend.synchronize, args.min_time)
            row["ours_alone_ms"], row["ours_alone_fastest_ms"] = 1e3 * median, 1e3 * fastest
        check = None
        if first:
            answer = [backend.to_numpy(a) for a in suite.our_answer(name, xp, d, ours)]
            if backend.name == "numpy":
                row["memory_over_output"] = peak_memory_over_output(  # (a jvp's outputs: (values, tangents))
                    lambda: [leaf for part in as_tuple(ours()) for leaf in as_tuple(part)])
            check = (lambda arrays: _difference(suite.ROWS[name].op, answer, arrays), 1e-6)
        _peer_turns(row, peers, index, (args.suite, name, args.quick), check)
        return row

    rows = _sweeps(args, names, time_row, suite.PEERS)
    for row in rows:
        d, ours_ms = built[row["row"]][0], row["ours_ms"]
        alone = "ours_alone" if "ours_alone_ms" in row else "ours"  # (the timing a peer's ratio takes)
        ratios = {"baseline": ours_ms / row["baseline_ms"] if "baseline_ms" in row else None,
                  "jax": row[f"{alone}_ms"] / row["jax_ms"] if isinstance(row.get("jax_ms"), float) else None,
                  "memory": row.get("memory_over_output"),
                  "step_us": 1e3 * (ours_ms - row["baseline_ms"]) / d["steps"] if "steps" in d else None}
        row["ours_over_baseline"], row["ours_over_jax"] = ratios["baseline"], ratios["jax"]
        for peer, ours_key in (("baseline", "ours"), ("jax", alone)):
            if isinstance(row.get(f"{peer}_fastest_ms"), float):  # the ratio of the fastest calls (fairer under load)
                row[f"fastest_ours_over_{peer}"] = row[f"{ours_key}_fastest_ms"] / row[f"{peer}_fastest_ms"]
        row["targets"] = "; ".join(
            f"{what} {'-' if ratios[what] is None else f'{ratios[what]:.3g}'} <= {bound}"
            f"{'' if ratios[what] is None else ' met' if ratios[what] <= bound else ' MISSED'}"
            for what, bound in suite.ROWS[row["row"]].targets.items())
    return rows


def _difference(op: str | None, ours: list, theirs: list) -> float:
    """Largest relative difference of a peer's answer from ours (linearize rows: the tangents, with
    the peer's vector signs aligned to ours by the primal outputs that precede them)."""
    if not op:
        return max_relative_difference(ours, theirs)
    half = len(ours) // 2
    return max_relative_difference(ours[half:], aligned(ours[:half], theirs[:half], theirs[half:], OPS[op].align))


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
    check = None
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
        check = (lambda arrays: max_relative_difference(our_tangents, aligned(
            our_values, arrays[:len(arrays) // 2], arrays[len(arrays) // 2:], op.align)),
            1e-6 if dtype == "float64" else 5e-2)
    _peer_turns(row, peers, index, (name, shape, dtype), check)
    return row


def _peer_turns(row: dict, peers: list, index: int, case: tuple, check: tuple | None) -> None:
    """Each peer's time of ``case`` into ``row`` (why not, ``Peer.failure``, when it gave no answer in time) and, with
    ``check = (compare, tolerance)``, whether ``compare(its answer's arrays)`` is within tolerance."""
    for peer in (p for p in peers if p.installed):
        time.sleep(SETTLE_SECONDS)
        result = peer.time(index, case)
        if result is None:
            if peer.installed:
                row[f"{peer.system}_ms"] = peer.failure
            continue
        ms, arrays = result
        if isinstance(ms, list):  # a suite of rows: (median, fastest)
            ms, row[f"{peer.system}_fastest_ms"] = ms
        row[f"{peer.system}_ms"] = ms
        if check:
            compare, tolerance = check
            row[f"{peer.system}_agrees"] = compare(arrays) < tolerance


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
    parser.add_argument("--suite", choices=["jvp", *SUITES], default="jvp",
                        help="jvp: primal and jvp per decomposition (--ops, --sizes, --dtypes, --batch); "
                             "directions: jacfwd, linearize and vmap against one direction at a time (--rows); "
                             "jit: ad.jit of a jvp against eager, its jitted primal and jax.jit (--rows)")
    parser.add_argument("--peers", action="store_true", help="also time JAX (jit) and PyTorch (torch.func)")
    parser.add_argument("--rows", nargs="+", metavar="ROW",
                        help="the rows of the directions or jit suite to time (default: all), of: "
                             + "; ".join(f"{suite}: {' '.join(module.ROWS)}" for suite, module in SUITES.items()))
    parser.add_argument("--quick", action="store_true",
                        help="the directions or jit suite at tiny sizes: a smoke test of the rows, not a measurement")
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
    if args.rows and args.suite not in SUITES:
        with_rows = " or ".join(f"--suite {name}" for name in SUITES)
        parser.error(f"--rows takes the rows of a suite that has them ({with_rows}), not of --suite {args.suite}")
    if args.plot:  # checked before the run, not after it
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error('--plot needs matplotlib: pip install "cupy-ad[bench]" (the bench extra)')
    if args.backend:
        ad.set_backend(args.backend)
    backend = ad.default_backend()
    per_bind, per_call = dispatch_overhead_us(backend)
    rows = run(args) if args.suite == "jvp" else run_rows(args)
    print(f"backend {backend.name}; dispatch: {per_bind:.1f} us per bind on a dual, "
          f"{per_call:.1f} us per jvp call of one primitive")
    columns = COLUMNS if args.suite == "jvp" else DIRECTION_COLUMNS
    print(format_table(rows, columns))
    for row in rows:
        if "breakdown" in row:
            print(row["breakdown"])
    os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
    with open(args.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    if args.plot and args.suite == "jvp":
        plot(rows, args.plot, f"cupy_ad vs peers, {backend.name} backend, {machine(backend)}")
    disagree = [r for r in rows if r.get("jax_agrees") is False or r.get("torch_agrees") is False]
    for r in disagree:
        print(f"disagrees with a peer: {r.get('row') or (r['op'], r['shape'], r['dtype'])}", file=sys.stderr)
    return 1 if disagree else 0

