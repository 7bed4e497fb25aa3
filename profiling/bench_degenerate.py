"""Cost of the degenerate-spectrum paths and of svd_split (issue 13), on NumPy.

``python profiling/bench_degenerate.py [--sizes 128 256 512 1024] [--repeat 5] [--trg]`` prints
median seconds of ``ad.jvp`` for
- svd and eigh on matrices with distinct spectra (the path a spectrum without clusters takes; run it
  on two checkouts to compare before/after),
- svd and eigh at n = 512 with repeated values (quartets) against the distinct case, the two
  called alternately (degenerate, distinct, degenerate, ...) so that a machine whose speed drifts
  slows both alike; medians and minima of each and their ratios,
- ``svd_split(a, k)`` against ``svd`` + the same truncation on the same matrix,
- with ``--trg``: the Ising TRG's first derivative (chi 16, 16 and 20 steps, beta 0.4 and 0.5)
  with a plain svd truncation and with svd_split, and the values they give against finite
  differences of the same program.
Set OPENBLAS_NUM_THREADS (and OPENBLAS_CORETYPE) to pin what you compare.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import cupy_ad as ad

ns = ad.namespace("numpy")


def median_time(f, repeat: int) -> float:
    f()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def with_spectrum(values, seed: int, symmetric: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(values)
    q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    p = q if symmetric else np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (q * np.asarray(values)) @ p.T


def distinct(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, n))


def interleaved_times(calls, repeat: int, clock=time.perf_counter) -> list[list[float]]:
    """Seconds of each of ``calls`` over ``repeat`` rounds, the calls alternating within a round;
    ``clock`` time.process_time counts this process's CPU time only (with OPENBLAS_NUM_THREADS=1:
    what other processes on a shared machine take is not counted)."""
    for call in calls:
        call()  # warm-up
    times = [[] for _ in calls]
    for _ in range(repeat):
        for call, record in zip(calls, times):
            start = clock()
            call()
            record.append(clock() - start)
    return times


def jvp_call(f, a):
    t = np.random.default_rng(1).standard_normal(a.shape)
    return lambda: ad.jvp(f, (a,), (t,))


def jvp_time(f, a, repeat):
    return median_time(jvp_call(f, a), repeat)


def svd_thin(a):
    return ad.linalg.svd(a, full_matrices=False)


def eigh_sym(a):
    return ad.linalg.eigh(a)


def truncate_by_svd(k):
    def f(a):
        u, s, vh = ad.linalg.svd(a, full_matrices=False)
        root = ns.sqrt(s[:k])
        return u[:, :k] * root, vh[:k, :].T * root
    return f


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--degenerate-only", action="store_true", help="only the quartets vs distinct comparison")
    parser.add_argument("--trg", action="store_true")
    args = parser.parse_args()
    if not args.degenerate_only:
        distinct_sizes(args.sizes, args.repeat)
    degenerate_vs_distinct(512, args.repeat)
    if not args.degenerate_only:
        split_vs_svd(512, args.repeat)
    if args.trg:
        trg()


def distinct_sizes(sizes: list[int], repeat: int) -> None:
    print("distinct spectra: median seconds of ad.jvp")
    for n in sizes:
        a = distinct(n, 0)
        print(f"  n={n:5d}  svd {jvp_time(svd_thin, a, repeat):.4f}  "
              f"eigh {jvp_time(eigh_sym, a + a.T, repeat):.4f}")


def degenerate_vs_distinct(n: int, repeat: int) -> None:
    quartets = np.repeat(np.linspace(1.0, 2.0, n // 4), 4)
    for label, clock in (("wall", time.perf_counter), ("CPU", time.process_time)):
        print(f"repeated values (quartets) vs distinct, n = {n}, called alternately: {label} seconds of ad.jvp "
              f"(median / minimum of {repeat})")
        for name, f, sym in (("svd", svd_thin, False), ("eigh", eigh_sym, True)):
            degen, base = interleaved_times([jvp_call(f, with_spectrum(quartets, 2, sym)),
                                             jvp_call(f, with_spectrum(np.linspace(1.0, 2.0, n), 2, sym))], repeat, clock)
            med = statistics.median(degen) / statistics.median(base)
            low = min(degen) / min(base)
            print(f"  {name:5s} distinct {statistics.median(base):.4f} / {min(base):.4f}  quartets "
                  f"{statistics.median(degen):.4f} / {min(degen):.4f}  ratio {med:.2f} (medians) {low:.2f} (minima)")


def split_vs_svd(n: int, repeat: int) -> None:
    print(f"svd_split(a, k) vs svd + truncation, n = {n}: median seconds of ad.jvp")
    a = distinct(n, 3)
    for k in (16, 128, 512):
        split = jvp_time(lambda m: tuple(ad.linalg.svd_split(m, k)), a, repeat)
        plain = jvp_time(truncate_by_svd(k), a, repeat)
        print(f"  k={k:4d}  svd_split {split:.4f}  svd {plain:.4f}  ratio {split / plain:.2f}")


def trg() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    import ising_trg

    print("Ising TRG, chi 16: d lnZ / d beta by jvp (seconds) vs central finite differences (h = 1e-6)")
    for beta in (0.4, 0.5):
        for steps in (16, 20):
            row = []
            for split in ("svd", "svd_split"):
                def f(x, split=split):
                    return ising_trg.log_z_per_site(x, chi=16, steps=steps, split=split)
                start = time.perf_counter()
                slope = float(ad.jvp(f, (np.asarray(beta),), (np.asarray(1.0),))[1])
                seconds = time.perf_counter() - start
                fd = (float(f(np.asarray(beta + 1e-6))) - float(f(np.asarray(beta - 1e-6)))) / 2e-6
                row.append(f"{split} {slope:.10g} ({seconds:.2f} s)")
            print(f"  beta={beta} steps={steps}  " + "  ".join(row) + f"  fd {fd:.10g}")


if __name__ == "__main__":
    main()
