"""The dask backend against the NumPy backend: a batch of small matrices and one tall-skinny matrix.

    python profiling/bench_dask.py                  # the issue's sizes (several minutes on 2 cores)
    python profiling/bench_dask.py --batch 20000 --rows 100000   # a quick look

Batched (eigh and lu_factor jvps of ``--batch`` matrices n x n): the NumPy backend on the whole batch
in this process, then the same data on a LocalCluster of 1 and of 2 worker processes (one thread
each). Inputs are persisted on the workers first and outputs stay there (``persist``), so the times
are the computation's, not the transfers'. Tall-skinny (the qr jvp of a ``--rows`` x ``--cols``
matrix in ``--row-chunks`` row chunks): NumPy on the whole matrix, then 2 workers, with each
worker's peak resident memory during the run (the Dask TSQR and the rules only hold row chunks and
n x n pieces). Medians of ``--repeat`` runs, wall clock and CPU seconds (this process for NumPy, all
workers together for Dask: on a shared machine the CPU seconds compare the work, the wall clock
also measures what the other tenants leave).
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

import cupy_ad as ad

OPERATIONS = {  # inside jvp, x is a dual value: its namespace is cupy_ad's for its backend
    "eigh": lambda x: tuple(x.__array_namespace__().linalg.eigh(x)),
    "lu_factor": lambda x: tuple(x.__array_namespace__().linalg.lu_factor(x)),
    "qr": lambda x: tuple(x.__array_namespace__().linalg.qr(x)),
}


def _median_seconds(run, repeat: int, cpu=time.process_time) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``run()``; ``cpu()`` reads the CPU clock that matters."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), cpu()
        run()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _sample_rss(dask_worker) -> None:
    """Record this worker's largest resident set size, sampled every 5 ms, in ``dask_worker.peak_rss``."""
    import psutil

    process = psutil.Process()
    dask_worker.peak_rss = process.memory_info().rss

    def loop():
        while True:
            dask_worker.peak_rss = max(dask_worker.peak_rss, process.memory_info().rss)
            time.sleep(0.005)

    threading.Thread(target=loop, daemon=True).start()


def _peak_rss_mib(dask_worker) -> float:
    return dask_worker.peak_rss / 2**20


def _on_cluster(workers: int, body):
    with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        return body(client)


def _inputs(shape: tuple, chunks: tuple, symmetric: bool) -> tuple:
    """Seeded Dask inputs (primal, tangent), made where they are computed."""
    rng = da.random.default_rng(0)
    a, t = rng.standard_normal(shape, chunks=chunks), rng.standard_normal(shape, chunks=chunks)
    if symmetric:
        a, t = a + da.swapaxes(a, -1, -2), t + da.swapaxes(t, -1, -2)
    return a, t


def _jvp_time(client: Client, f, a, t, repeat: int) -> float:
    a, t = client.persist([a, t])
    wait([a, t])

    runs = iter(range(repeat + 1))

    def run():
        # a tangent under a new name each run: otherwise the cluster would find the last run's results
        fresh = da.map_blocks(_same, t, name=f"tangent-{next(runs)}-{t.name}", meta=t._meta)
        out, dout = ad.jvp(f, (a,), (fresh,))
        results = client.persist([x for x in (*out, *dout) if isinstance(x, da.Array)])
        wait(results)

    run()  # warm: imports and caches on the workers
    return _median_seconds(run, repeat, lambda: sum(client.run(_cpu_seconds).values()))


def _same(block):
    return block


def batched(args) -> None:
    shape = (args.batch, args.n, args.n)
    chunks = (args.batch // args.batch_chunks, args.n, args.n)
    print(f"batch of {args.batch} matrices {args.n} x {args.n} in {args.batch_chunks} chunks; medians of {args.repeat}")
    for name in ("eigh", "lu_factor"):
        a, t = dask.compute(*_inputs(shape, chunks, name == "eigh"), scheduler="threads")
        numpy_s = _median_seconds(lambda: ad.jvp(OPERATIONS[name], (a,), (t,)), args.repeat)
        del a, t
        dask_s = {w: _on_cluster(w, lambda c: _jvp_time(c, OPERATIONS[name], *_inputs(shape, chunks, name == "eigh"),
                                                        args.repeat)) for w in (1, 2)}
        print(f"  {name:9s} wall (CPU) s: numpy {_pair(numpy_s)} | dask 1 worker {_pair(dask_s[1])}, "
              f"{dask_s[1][0] / numpy_s[0]:.2f}x ({dask_s[1][1] / numpy_s[1]:.2f}x) numpy | "
              f"2 workers {_pair(dask_s[2])}, "
              f"speed-up {dask_s[1][0] / dask_s[2][0]:.2f}x")


def _pair(seconds: tuple[float, float]) -> str:
    return f"{seconds[0]:.2f} ({seconds[1]:.2f})"


def tall_skinny(args) -> None:
    m, n = args.rows, args.cols
    chunks = (m // args.row_chunks, n)
    qr = OPERATIONS["qr"]
    print(f"tall-skinny qr jvp, {m} x {n} ({m * n * 8 / 2**20:.0f} MiB a matrix) in {args.row_chunks} row chunks")
    a, t = dask.compute(*_inputs((m, n), chunks, False), scheduler="threads")
    numpy_s = _median_seconds(lambda: ad.jvp(qr, (a,), (t,)), args.repeat)
    del a, t

    def body(client: Client) -> tuple:
        client.run(_sample_rss)
        before = client.run(_peak_rss_mib)
        seconds = _jvp_time(client, qr, *_inputs((m, n), chunks, False), args.repeat)
        return seconds, before, client.run(_peak_rss_mib)

    dask_s, before, after = _on_cluster(2, body)
    peaks = ", ".join(f"{after[w]:.0f} MiB (at start {before[w]:.0f})" for w in sorted(after))
    print(f"  wall (CPU) s: numpy {_pair(numpy_s)} | dask 2 workers {_pair(dask_s)}, {dask_s[0] / numpy_s[0]:.2f}x "
          f"({dask_s[1] / numpy_s[1]:.2f}x) numpy; peak RSS per worker: {peaks}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=200_000)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-chunks", type=int, default=16)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=32)
    parser.add_argument("--row-chunks", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batched(args)
    tall_skinny(args)


if __name__ == "__main__":
    main()
