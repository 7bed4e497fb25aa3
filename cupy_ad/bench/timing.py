"""Timing and memory measurements shared by the benchmark and the demo."""
from __future__ import annotations

import time
import tracemalloc
from typing import Any, Callable

import numpy as np

import cupy_ad as ad
from cupy_ad.namespace import namespace

from .cases import as_tuple


def median_seconds(fn: Callable[[], Any], sync: Callable[[], None], min_time: float = 0.2, **calls: int) -> float:
    """The median of ``median_and_fastest_seconds``."""
    return median_and_fastest_seconds(fn, sync, min_time, **calls)[0]


def median_and_fastest_seconds(fn: Callable[[], Any], sync: Callable[[], None], min_time: float = 0.2,
                               **calls: int) -> tuple[float, float]:
    """``alternating_seconds`` of ``fn`` alone."""
    return alternating_seconds([fn], sync, min_time, **calls)[0]


def alternating_seconds(fns: list[Callable[[], Any]], sync: Callable[[], None], min_time: float = 0.2, *,
                        warmup_calls: int = 1, min_calls: int = 3,
                        max_calls: int = 2000) -> list[tuple[float, float]]:
    """Median and minimum of repeated timings of each of ``fns``, their calls taking turns (a b a b
    ...): a change of the machine's speed while they are measured (other jobs on a shared machine)
    reaches all of them alike, so their ratio holds where timing one after the other would not; on a
    loaded machine the minimum is the fairer comparison of a long call with a short one (preemption
    hits the long call more often). Each first gets a warm-up of at least ``warmup_calls`` calls and
    min_time / 4 seconds: a jitted JAX function takes a few dozen calls to settle (16 x 16 lu: about
    50 us for its first 15 calls, 21 us after), and our first calls pay for imports and caches, so a
    single warm-up call would mislead. Then calls until each has ``min_time`` seconds measured and at
    least ``min_calls`` made (at most ``max_calls``)."""
    for fn in fns:
        start = time.perf_counter()
        for _ in range(warmup_calls):
            fn()
            sync()
        while time.perf_counter() - start < min_time / 4:
            fn()
            sync()
    times: list[list[float]] = [[] for _ in fns]
    totals = [0.0] * len(fns)  # running totals: re-summing the lists each call would put a growing gap between
    while any(len(t) < min_calls or (total < min_time and len(t) < max_calls)  # calls (JAX slows then)
              for t, total in zip(times, totals)):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - start)
            totals[k] += times[k][-1]
    return [(float(np.median(t)), min(t)) for t in times]


def extra_memory(fn: Callable[[], Any], input_bytes: int) -> float:
    """Peak traced memory of ``fn`` beyond what its outputs hold, in units of the input's size."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(np.asarray(leaf).nbytes for part in out for leaf in as_tuple(part))
    return (peak - kept) / input_bytes


def peak_memory_over_output(fn: Callable[[], Any]) -> float:
    """Peak traced memory of ``fn`` (its outputs included) over the size of its outputs."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / sum(np.asarray(leaf).nbytes for leaf in as_tuple(out))


def dispatch_overhead_us(backend: Any) -> tuple[float, float]:
    """Microseconds per primitive bind on a dual (16 elements) and per jvp call of one sin."""
    ns = namespace(backend)
    x = backend.from_numpy(np.linspace(0.1, 1.0, 16))

    def chain(a: Any) -> Any:
        for _ in range(100):
            a = ns.sin(a)
        return a

    per_bind = median_seconds(lambda: ad.jvp(chain, (x,), (x,)), backend.synchronize) / 100 * 1e6
    per_call = median_seconds(lambda: ad.jvp(ns.sin, (x,), (x,)), backend.synchronize) * 1e6
    return per_bind, per_call

