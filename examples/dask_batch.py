"""Sensitivities of the eigenvalues and eigenvectors of a large batch of symmetric matrices, on a Dask cluster.

    python examples/dask_batch.py                      # 200 000 matrices 16 x 16, 1 then 2 workers
    python examples/dask_batch.py --batch 2000 --n 8   # a quick run

``ad.jvp`` on Dask arrays builds one lazy task graph (one task per block of matrices runs eigh and
its JVP through the chunks' own backend); ``persist`` hands it to the cluster, and Dask's progress
bar follows it. The batch is made on the workers (a seeded generator), so nothing large passes
through this process.

Workers' memory: distributed's nanny starts workers with MALLOC_TRIM_THRESHOLD_ = 64 KiB, so every
block-sized temporary is a fresh mmap whose pages fault in again (measured: up to half of a batched
lu jvp's time); ``KEEP_FREED_MEMORY`` below lets each worker's malloc keep freed blocks for reuse
(up to 1 GiB per worker). Set it before the cluster starts (here: ``dask.config.set``; on a real
cluster: the same environment variables on the workers).

Another cluster: replace the LocalCluster by
  - a running scheduler:            Client("tcp://scheduler-host:8786")
    (every worker needs cupy_ad installed, and the same versions of dask and numpy);
  - one worker per GPU:             from dask_cuda import LocalCUDACluster; Client(LocalCUDACluster())
    with CuPy chunks (e.g. ``a.map_blocks(cupy.asarray)``): each block then runs the CuPy backend's
    cuSOLVER kernels on its worker's GPU.
"""
from __future__ import annotations

import argparse
import time

import dask
import dask.array as da
from distributed import Client, LocalCluster, progress, wait

import cupy_ad as ad


KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": 2**25, "MALLOC_TRIM_THRESHOLD_": 2**30}


def symmetric_batch(batch: int, n: int, chunk: int, seed: int) -> da.Array:
    x = da.random.default_rng(seed).standard_normal((batch, n, n), chunks=(chunk, n, n))
    return (x + da.swapaxes(x, -1, -2)) / 2


def eigh(a):
    """Eigenvalues and eigenvectors; inside ``jvp`` ``a`` is a dual value, its namespace cupy_ad's."""
    return tuple(a.__array_namespace__().linalg.eigh(a))


def run(client: Client, batch: int, n: int, chunk: int, show_progress: bool) -> float:
    a = symmetric_batch(batch, n, chunk, seed=0)
    da_ = symmetric_batch(batch, n, chunk, seed=1)
    a, da_ = client.persist([a, da_])  # the batch is made on the workers, before the clock starts
    wait([a, da_])
    start = time.perf_counter()
    (w, v), (dw, dv) = ad.jvp(eigh, (a,), (da_,))  # lazy: nothing is computed yet
    results = client.persist([w, v, dw, dv])
    if show_progress:
        progress(results)  # Dask's progress bar (in a notebook: a widget)
        print()
    wait(results)
    seconds = time.perf_counter() - start
    largest_change = float(abs(results[2]).max().compute())  # a small result brought back
    print(f"  largest |dw| = {largest_change:.3f}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description="jvp of eigh of a batch of matrices on a Dask LocalCluster")
    parser.add_argument("--batch", type=int, default=200_000)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=12_500, help="matrices per block")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    times = {}
    dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": value for name, value in KEEP_FREED_MEMORY.items()})
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            print(f"{workers} worker(s): jvp of eigh, {args.batch} matrices {args.n} x {args.n}")
            times[workers] = run(client, args.batch, args.n, args.chunk, not args.no_progress)
            print(f"  {times[workers]:.2f} s")
    print(f"speed-up with 2 workers: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
