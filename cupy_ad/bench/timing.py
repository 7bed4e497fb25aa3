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


def median_and_fastest_seconds(fn: Callable[[], Any], sync: Callable[[], None], min_time: float = 0.2, *,
                               warmup_calls: int = 1, min_calls: int = 3,
                               max_calls: int = 2000) -> tuple[float, float]:
    """Median and minimum of repeated timings of ``fn`` (on a loaded machine the minimum is the fairer
    comparison of a long call with a short one: preemption hits the long call more often), after a
    warm-up of at least ``warmup_calls`` calls and min_time / 4 seconds: a jitted JAX function takes a
    few dozen calls to settle (16 x 16 lu: about 50 us for its first 15 calls, 21 us after), and our
    first calls pay for imports and caches, so a single warm-up call would mislead. Then calls until
    ``min_time`` seconds are measured and at least ``min_calls`` made (at most ``max_calls``)."""
    start = time.perf_counter()
    for _ in range(warmup_calls):
        fn()
        sync()
    while time.perf_counter() - start < min_time / 4:
        fn()
        sync()
    times: list[float] = []
    total = 0.0  # a running total: re-summing the list each call would put a growing gap between
    while len(times) < min_calls or (total < min_time and len(times) < max_calls):  # calls (JAX slows then)
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        total += times[-1]
    return float(np.median(times)), min(times)


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

