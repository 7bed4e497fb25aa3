"""Batches of small matrices decomposed on several threads (NumPy backend).

NumPy's ``linalg`` gufuncs (eigh, svd, qr, cholesky, ...) call LAPACK once per matrix, on one thread,
and release the GIL while they run; at 16 x 16 OpenBLAS uses no threads inside the call either. A
batch of 4096 such matrices therefore keeps one core busy however many the process may use. JAX's
CPU kernels split the batch over XLA's thread pool (``ParallelBatchMap``); here the batch is split
into one contiguous block per thread, each block decomposed by the same NumPy call, and the blocks'
outputs stacked: every matrix meets the same LAPACK call on the same data, so the result is the
one-thread result bit for bit.

When: matrices up to ``MAX_N`` on a side (larger ones get OpenBLAS's own threads inside LAPACK, which
would compete with ours), at least ``MIN_WORK`` (count x m x n x min(m, n)) in the batch, called from
the main thread only (inside a worker thread, e.g. Dask's, the caller already runs things in
parallel). Threads: the CPUs this process may run on (``os.sched_getaffinity``: ``taskset -c 0``
gives one, i.e. no split), fewer where a container's CPU quota allows fewer (cgroup v2
``/sys/fs/cgroup/cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``: quota / period CPUs,
rounded up), or the environment variable ``CUPY_AD_NUM_THREADS`` (``1``: never split), which
overrides both.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

#: the largest matrix side split over threads
MAX_N = 32
#: the least work (count x m x n x min(m, n)) split over threads: below, a thread's hand-over costs more
MIN_WORK = 1 << 18

#: where the process's cgroup files are read (its own cgroup inside a container)
CGROUP_ROOT = "/sys/fs/cgroup"

_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def threads() -> int:
    """How many threads a batch may use: ``CUPY_AD_NUM_THREADS``, or the CPUs this process may run on
    capped by its container's CPU quota."""
    configured = os.environ.get("CUPY_AD_NUM_THREADS", "").strip()
    if configured:
        if not configured.isdigit() or int(configured) < 1:
            raise ValueError(f"CUPY_AD_NUM_THREADS must be a positive integer, got {configured!r}")
        return int(configured)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # (not on every platform)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(CGROUP_ROOT)
    return cpus if quota is None else min(cpus, quota)


def cgroup_cpu_quota(root: str) -> int | None:
    """The CPUs the cgroup at ``root`` may use, ``ceil(quota / period)``, or None without a quota (no
    cgroup files, ``max`` in v2, ``-1`` in v1): v2's ``cpu.max`` ("quota period") first, then v1's
    ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us``."""
    def read(*path: str) -> str | None:
        try:
            with open(os.path.join(root, *path)) as file:
                return file.read().strip()
        except OSError:
            return None

    v2 = read("cpu.max")
    quota, period = v2.partition(" ")[::2] if v2 is not None else (
        read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us"))
    try:
        quota_us, period_us = int(quota), int(period)
    except (TypeError, ValueError):  # (no files, or "max")
        return None
    if quota_us <= 0 or period_us <= 0:  # (v1 writes -1 for no quota)
        return None
    return math.ceil(quota_us / period_us)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < workers:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cupy_ad-batch"), workers
    return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: a new pool is made at the next split."""
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def split_batch(decompose: Callable[[Any], Any], a: Any) -> Any:
    """``decompose(a)`` for a batch a (..., m, n), on several threads where that pays (see the module
    docstring): ``decompose`` maps a stack (k, m, n) to an array or a tuple of arrays with k leading."""
    *batch, m, n = a.shape
    count = math.prod(batch)
    if (max(m, n) > MAX_N or count * m * n * min(m, n) < MIN_WORK
            or threading.current_thread() is not threading.main_thread()):
        return decompose(a)  # (before asking for threads: a single matrix pays nothing for them)
    workers = min(threads(), count)
    if workers < 2:
        return decompose(a)
    flat = a.reshape(count, m, n)
    bounds = [count * k // workers for k in range(workers + 1)]
    blocks = [flat[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]
    others = [_executor(workers - 1).submit(decompose, block) for block in blocks[1:]]
    first = decompose(blocks[0])  # (the calling thread takes the first block)
    parts = [first, *(future.result() for future in others)]
    if not isinstance(first, tuple):
        return _stacked(parts, batch)
    return tuple(_stacked(list(outputs), batch) for outputs in zip(*parts))


def _stacked(parts: list, batch: list) -> Any:
    out = np.concatenate(parts)
    return out.reshape(*batch, *out.shape[1:])
