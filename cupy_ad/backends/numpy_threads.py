"""Batches of small matrices decomposed on several threads (NumPy backend).

NumPy's ``linalg`` gufuncs (eigh, svd, qr, cholesky, ...) call LAPACK once per matrix, on one thread,
and release the GIL while they run; at 16 x 16 OpenBLAS uses no threads inside the call either. A
batch of 4096 such matrices therefore keeps one core busy however many the process may use. JAX's
CPU kernels split the batch over XLA's thread pool (``ParallelBatchMap``); here the batch is split
into contiguous blocks (a few per thread, taken in turn), each decomposed by the same NumPy call,
and the blocks' outputs stacked: every matrix meets the same LAPACK call on the same data, so the
result is the one-thread result bit for bit.

When: matrices up to ``MAX_N`` on a side (larger ones get OpenBLAS's own threads inside LAPACK, which
would compete with ours), at least ``MIN_WORK`` (count x m x n x min(m, n)) in the batch, called from
the main thread only (inside a worker thread, e.g. Dask's, the caller already runs things in
parallel). Threads: the CPUs this process may run on (``os.sched_getaffinity``: ``taskset -c 0``
gives one, i.e. no split), fewer where a container's CPU quota allows fewer (the process's own
cgroup and its parents, from ``/proc/self/cgroup``: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us``: quota / period CPUs, rounded up, the smallest), or the environment variable
``CUPY_AD_NUM_THREADS`` (``1``: never split), which overrides both.

The same split serves the tangents of such batches: the compiled kernels (``numpy_compiled``, Numba
``nogil``) run on contiguous blocks of their stacked operands and output (``split_stacks``), and a jit
program's steps on a stack of small matrices (elementwise ufuncs that compute each element exactly,
``where``, matmul) write blocks of their one output on the threads (``SplitStep``). Each item meets
the same kernel on the same values: bit for bit the one-thread result again.
"""
from __future__ import annotations

import contextvars
import functools
import itertools
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
#: the runs of a split batch per thread (taken in turn: a thread left without a CPU holds up one run)
RUNS_PER_THREAD = 4
#: the least output (bytes) of a compiled program's elementwise step or matmul split over threads
MIN_SPLIT_BYTES = 1 << 20

#: where the cgroup hierarchies are mounted
CGROUP_ROOT = "/sys/fs/cgroup"
#: the process's own cgroup in each hierarchy
OWN_CGROUP = "/proc/self/cgroup"

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
    quota = cgroup_cpu_quota(CGROUP_ROOT, OWN_CGROUP)
    return cpus if quota is None else min(cpus, quota)


@functools.lru_cache(maxsize=None)
def cgroup_cpu_quota(root: str, own_cgroup: str) -> int | None:
    """The CPUs this process's cgroup may use: the smallest ``ceil(quota / period)`` along the path from
    its own cgroup up to the hierarchy's root (a quota on a parent caps its children), or None without a
    quota (no cgroup files, ``max`` in v2, ``-1`` in v1). The paths are read from ``own_cgroup``
    (``/proc/self/cgroup``: v2's line ``0::/path``, v1's line of the ``cpu`` controller; ``/`` where it
    has none), the files under the mount ``root``: v2's ``cpu.max`` ("quota period"), v1's
    ``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us``. A level absent from the mount is passed
    over (a container without its own cgroup namespace has its cgroup mounted at the root, its path
    naming the host's). Read once per root (the files cost ~0.1 ms, and a jit replay's split steps ask)."""
    def read(*path: str) -> str:
        try:
            with open(os.path.join(*path)) as file:
                return file.read().strip()
        except OSError:
            return ""

    v2 = v1 = "/"
    for line in read(own_cgroup).splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    quotas = [_cpus(*read(root, level, "cpu.max").partition(" ")[::2]) for level in _levels(v2)]
    quotas += [_cpus(read(root, "cpu", level, "cpu.cfs_quota_us"), read(root, "cpu", level, "cpu.cfs_period_us"))
               for level in _levels(v1)]
    return min((q for q in quotas if q is not None), default=None)


def _levels(path: str) -> list[str]:
    """A cgroup's path and its parents' up to the root, relative: "/a/b" -> ["a/b", "a", ""]."""
    parts = [part for part in path.split("/") if part]
    return ["/".join(parts[:k]) for k in range(len(parts), -1, -1)]


def _cpus(quota: str, period: str) -> int | None:
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # (no file, or "max")
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


def workers_for(count: int, side: int, work: int) -> int:
    """How many threads a batch of ``count`` items, ``side`` the largest matrix side, ``work`` in all,
    is split over: 1 (no split) for sides above ``MAX_N``, less than ``MIN_WORK``, or outside the main
    thread (see the module docstring)."""
    if side > MAX_N or work < MIN_WORK or threading.current_thread() is not threading.main_thread():
        return 1  # (before asking for threads: a single matrix pays nothing for them)
    return min(threads(), count)


def run_blocks(task: Callable[[int, int], Any], count: int, workers: int) -> list:
    """``[task(start, stop), ...]`` for contiguous runs [start, stop) of range(count), in order: the runs
    (``RUNS_PER_THREAD`` per thread) are taken in turn by the calling thread and ``workers - 1``
    threads of the pool, so that a thread the system leaves without a CPU for a while (a loaded
    machine) leaves its share to the others instead of holding the caller up. Pool threads run in a
    copy of the caller's context (NumPy's ``errstate`` included); an error of any run reaches the
    caller, once every thread has stopped."""
    runs = min(count, workers * RUNS_PER_THREAD)
    bounds = [count * k // runs for k in range(runs + 1)]
    results: list = [None] * runs
    turns = itertools.count()  # (its next() is atomic: each run is taken once)

    def take_runs() -> None:
        k = next(turns)
        while k < runs:
            results[k] = task(bounds[k], bounds[k + 1])
            k = next(turns)

    others = [_executor(workers - 1).submit(contextvars.copy_context().run, take_runs) for _ in range(workers - 1)]
    try:
        take_runs()
    finally:
        errors = [future.exception() for future in others]  # (waits for each)
    for error in errors:
        if error is not None:
            raise error
    return results


def split_batch(decompose: Callable[[Any], Any], a: Any) -> Any:
    """``decompose(a)`` for a batch a (..., m, n), on several threads where that pays (see the module
    docstring): ``decompose`` maps a stack (k, m, n) to an array or a tuple of arrays with k leading."""
    *batch, m, n = a.shape
    count = math.prod(batch)
    workers = workers_for(count, max(m, n), count * m * n * min(m, n))
    if workers < 2:
        return decompose(a)
    flat = a.reshape(count, m, n)
    parts = run_blocks(lambda start, stop: decompose(flat[start:stop]), count, workers)
    if not isinstance(parts[0], tuple):
        return _stacked(parts, batch)
    return tuple(_stacked(list(outputs), batch) for outputs in zip(*parts))


def split_stacks(kernel: Callable[..., None], stacks: tuple, side: int, work: int) -> None:
    """``kernel(*stacks)`` for ``stacks`` sharing their leading (batch) axis, e.g. a compiled kernel's
    operands and its preallocated output, on several threads where that pays: each thread calls
    ``kernel`` on contiguous blocks of every stack (so a kernel treating each item of the batch
    on its own gives the one-call result bit for bit). ``side``: the largest matrix side, ``work``:
    the whole batch's (as count x m x n x min(m, n) for a decomposition)."""
    count = len(stacks[0])
    workers = workers_for(count, side, work)
    if workers < 2:
        kernel(*stacks)
        return
    run_blocks(lambda start, stop: kernel(*(stack[start:stop] for stack in stacks)), count, workers)


class SplitStep:
    """A compiled program's step ``fn(*args)`` (``fn``: an elementwise ufunc computing each element on
    its own, exactly; ``np.where``; or matmul over a stack of small matrices) on several threads, each
    writing contiguous blocks of the leading axis of the one output array (``out=`` the caller's or
    a new one): an operand spanning that axis is cut into the same blocks, one broadcast along it
    (fewer dimensions, length 1, a scalar) is passed whole. Every element (every matrix, for matmul)
    meets the same kernel on the same values: the result is the one-call result bit for bit, for any
    strides. The output's ``shape`` and ``dtype`` are the recording's (the program's shapes and dtypes
    are those of every replay; whether the output is large enough to split was decided there). Split
    from the main thread, on ``threads()`` threads, unless the step streams its operands in order
    (bound by memory); an operand read across its memory order goes block by block on one thread too.
    Else the one call."""

    __slots__ = ("fn", "kernel", "shape", "dtype")

    def __init__(self, fn: Callable, kernel: Callable, shape: tuple, dtype: Any):
        self.fn, self.kernel = fn, kernel  # kernel(*args, out=block): fn's values written into out
        self.shape, self.dtype = shape, dtype

    def __call__(self, *args: Any, out: Any = None, **kwargs: Any) -> Any:
        if kwargs or threading.current_thread() is not threading.main_thread():
            return self.fn(*args, **kwargs) if out is None else self.fn(*args, out=out, **kwargs)
        shape = self.shape
        if out is None and self.fn is not np.matmul and not _c_order_result(args, shape):
            # (NumPy's own output would not be in C order, it follows its operands' layout)
            return self.fn(*args)
        ndim = len(shape)
        cut = [isinstance(a, np.ndarray) and a.ndim == ndim and a.shape[0] != 1 for a in args]
        # operands read across their memory order (x.mT): NumPy's loop then runs a matrix row at a time;
        # a ufunc reads a C-ordered copy of each block instead (in cache), where copies the block itself
        strided = self.fn is not np.matmul and any(c and not a.flags.c_contiguous for a, c in zip(args, cut))
        gather = [c and strided and self.kernel is self.fn and not a.flags.c_contiguous for a, c in zip(args, cut)]
        workers = min(threads(), shape[0])
        if not strided and (workers < 2 or self.fn is not np.matmul and all(_streamed(a, shape) for a in args)):
            # (an elementwise pass streaming its operands in order is bound by memory, not by the core:
            # measured slower split on 2 cores, e.g. 4096 x 16 x 16 divide into a buffer 0.34 -> 0.41 ms)
            return self.fn(*args) if out is None else self.fn(*args, out=out)
        if out is None:
            out = np.empty(shape, self.dtype)  # (C order: NumPy's, where an operand of its shape has it)

        def block(start: int, stop: int) -> None:
            self.kernel(*(np.ascontiguousarray(a[start:stop]) if g else a[start:stop] if c else a
                          for a, c, g in zip(args, cut, gather)), out=out[start:stop])
        run_blocks(block, shape[0], workers)
        return out


def _c_order_result(args: tuple, shape: tuple) -> bool:
    """Whether NumPy gives an elementwise call on ``args`` an output in C order: NumPy orders the
    output's axes as its operands' strides suggest, C order wherever one operand (broadcast
    dimensions aside) has it; so when all are C-contiguous, or one of the output's shape is."""
    arrays = [a for a in args if type(a) is np.ndarray]
    return all(a.flags.c_contiguous for a in arrays) or any(a.shape == shape and a.flags.c_contiguous for a in arrays)


def _streamed(a: Any, shape: tuple) -> bool:
    """Whether an elementwise call reads ``a`` in order along the output ``shape``: a number, or a
    C-contiguous array of the output's trailing shape (broadcast along leading axes only)."""
    if type(a) is not np.ndarray:
        return True
    trailing = a.shape[next((k for k, d in enumerate(a.shape) if d != 1), a.ndim):]
    return a.flags.c_contiguous and shape[len(shape) - len(trailing):] == trailing


def _where_into(condition: Any, x: Any, y: Any, *, out: Any) -> None:
    """np.where(condition, x, y) written into out: y everywhere, then x where the condition holds."""
    np.copyto(out, y, casting="unsafe")
    np.copyto(out, x, where=condition, casting="unsafe")


def split_step(fn: Callable, shape: tuple, dtype: Any) -> SplitStep:
    """The splitting form of ``fn`` (a ufunc with an ``out=``, or ``np.where``) for a compiled program's
    step whose output has ``shape`` and ``dtype``."""
    return SplitStep(fn, _where_into if fn is np.where else fn, shape, dtype)


def _stacked(parts: list, batch: list) -> Any:
    out = np.concatenate(parts)
    return out.reshape(*batch, *out.shape[1:])
