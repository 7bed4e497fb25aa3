#!/usr/bin/env bash
# The prepared GPU check (issue 4), for a lent GPU machine; run from the repo root.
#
# Exact device-tool call, after `bash ci/fetch_gpu_wheels.sh` has filled .whl/ on the dev machine:
#   run(command="bash ci/gpu.sh", carry=[".whl"], timeout_s=500)
# (one call, about 6 minutes on an H100; give the machine back afterwards unless rerunning at once).
#
# What it does, logging everything under $OUT (at most 8 files come back: the device tool's limit):
#   1. installs the wheels the image lacks (array-api-compat, array-api-strict, optree, nvtx);
#   2. records the GPU and the library versions (device.txt);
#   3. runs the whole test suite on the cupy backend (tests.log): tests/test_cupy_backend.py's GPU
#      half (real cuSOLVER/cuBLAS kernels vs NumPy incl. batched and looped paths, no host sync in
#      any decomposition's jvp under cupyx.allow_synchronize(False), inputs never overwritten, two
#      streams, errstate(linalg="raise") -> LinAlgError), tests/test_cupy_wrappers.py (our cuSOLVER/
#      cuBLAS calls bound to CuPy's real wrappers, fusion traces, NVRTC; it reruns itself in a child
#      with CUDA_VISIBLE_DEVICES="", as it needs a process without a device) and every other test
#      through the `backend` fixture on cupy;
#   4. runs profiling/bench_gpu.py (bench_gpu.log, bench_gpu.csv, bench_gpu_crossover.csv): primal
#      and jvp times at n = 256/1024/4096 and a batch of 10000 x 16 x 16, float32/float64, ours vs
#      CuPy's routines, and the batched-vs-loop crossover;
#   5. the peers benchmark vs JAX and PyTorch, `python3 -m cupy_ad bench --peers` (the package's
#      cupy_ad/bench/; bench_peers.log, bench_peers.csv);
#   6. the jit suite's rows on cupy against eager and JAX (bench_jit.log): the replay
#      with fused elementwise runs (cupy.fuse), batched decompositions, scan, dispatch.
# Exit status: nonzero if any step failed (each step still runs).
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX (peers bench, any test) must not grab the GPU
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed (did ci/fetch_gpu_wheels.sh run and carry include .whl?)"; exit 2; }
export PYTHONPATH=/tmp/site:$PWD
status=0

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
    python3 -c "import sys, cupy, numpy, scipy; print(sys.version); print('cupy', cupy.__version__, 'numpy',
numpy.__version__, 'scipy', scipy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())" 2>&1
    python3 -c "import jax, torch; print('jax', jax.__version__, 'torch', torch.__version__)" 2>&1
} | tee "$OUT/device.txt"

echo "== tests (cupy backend)"
workers=()  # pytest-xdist is in the image: 4 processes share the GPU and CuPy's on-disk kernel cache
python3 -c "import xdist" 2>/dev/null && workers=(-n 4)
CUPY_AD_TEST_BACKENDS=cupy timeout 150 python3 -m pytest -x -q -p no:cacheprovider "${workers[@]}" 2>&1 \
    | tee "$OUT/tests.log" || status=1

echo "== bench_gpu"
timeout 100 python3 profiling/bench_gpu.py --csv "$OUT/bench_gpu.csv" --budget 55 --max-duration 0.3 \
    --crossover-sizes 8 16 32 64 128 2>&1 | tee "$OUT/bench_gpu.log" || status=1

echo "== peers bench (JAX, PyTorch)"
timeout 45 python3 -m cupy_ad bench --peers --backend cupy --sizes 1024 4096 --dtypes float32 --batch 10000 \
    --csv "$OUT/bench_peers.csv" 2>&1 | tee "$OUT/bench_peers.log" || status=1
echo "== jit suite on cupy (issue 17: replay, fusion by cupy.fuse, batches, scan), against eager and JAX"
timeout 80 python3 -m cupy_ad bench --suite jit --peers --backend cupy --min-time 0.05 \
    --rows lu_factor_n16 eigh_n16 cholesky_batch eigh_batch scan_rnn kalman dispatch \
    --csv /tmp/bench_jit.csv 2>&1 | tee "$OUT/bench_jit.log" || status=1  # (the log has the table)
echo "== ci/gpu.sh exit status $status"
exit $status
