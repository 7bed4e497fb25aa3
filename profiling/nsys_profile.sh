#!/usr/bin/env bash
# Profile profiling/bench_gpu.py with its nvtx ranges (cupy_ad/<prim>/primal, cupy_ad/<prim>/jvp):
#   * Nsight Systems when `nsys` is found:  nsys profile -t cuda,nvtx  (+ `nsys stats` summaries);
#   * nvprof on pre-Ampere GPUs (compute capability < 8.0; nvprof does not support >= 8.0);
#   * otherwise (or if the profiler fails) the CUDA-event table of bench_gpu.py alone.
# Usage: profiling/nsys_profile.sh [OUTDIR] [-- bench_gpu.py arguments]
#   default OUTDIR profiling/results (git-ignored); default arguments: a short run
#   (--sizes 256 1024 --dtypes float32 --batch 1000 --no-crossover).
# Needs the `nvtx` Python package for the ranges (without it the profile has CUDA activity only).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=profiling/results
if [ $# -gt 0 ] && [ "$1" != "--" ]; then out=$1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--sizes 256 1024 --dtypes float32 --batch 1000 --no-crossover)
py=${PYTHON:-python3}
mkdir -p "$out"
bench=("$py" "$here/bench_gpu.py" --csv "$out/bench_gpu.csv" "${args[@]}")

nsys_bin=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda/bin/nsys 2>/dev/null | head -n1)
cc=$("$py" -c "import cupy; print(cupy.cuda.Device().compute_capability)" 2>/dev/null || echo 0)
python_has_nvtx=$("$py" -c "import nvtx" 2>/dev/null && echo yes || echo no)
echo "# compute capability ${cc}; nsys: ${nsys_bin:-none}; nvtx package: ${python_has_nvtx}"

if [ -n "$nsys_bin" ]; then
    if "$nsys_bin" profile -t cuda,nvtx --force-overwrite true -o "$out/bench_gpu" "${bench[@]}"; then
        "$nsys_bin" stats --report nvtx_sum --report cuda_gpu_kern_sum --format csv \
            --output "$out/nsys" "$out/bench_gpu.nsys-rep" || echo "# nsys stats failed; open $out/bench_gpu.nsys-rep in the GUI"
        echo "# report: $out/bench_gpu.nsys-rep; summaries: $out/nsys_*.csv"
        exit 0
    fi
    echo "# nsys failed: falling back"
fi
if [ "$cc" -lt 80 ] && command -v nvprof >/dev/null; then
    if nvprof --profile-child-processes -o "$out/bench_gpu.%p.nvvp" "${bench[@]}"; then
        echo "# nvprof timeline(s): $out/bench_gpu.*.nvvp (nvvp or Nsight Systems can import them)"
        exit 0
    fi
    echo "# nvprof failed: falling back"
fi
echo "# no usable profiler (nvprof does not support compute capability >= 8.0): CUDA-event table only"
exec "${bench[@]}"
