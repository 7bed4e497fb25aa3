#!/usr/bin/env bash
# Our CuPy code against the REAL CuPy on a machine without a GPU: tests/test_cupy_wrappers.py (every
# cuSOLVER/cuBLAS wrapper call of cupy_ad/backends/cusolver.py bound to the wrapper's own C signature and
# driven up to the missing device; cupy.fuse of jit runs, the pivots kernel compiled by NVRTC, special
# functions, streams), with tests/test_cusolver_stub.py and the CPU half of tests/test_cupy_backend.py.
#
#   bash ci/cupy_wrappers.sh [CUDA-CUPY_VERSION ...]   (default: 12x-14.2.0 12x-13.6.0 13x-14.2.0, the
#                                                       extras cuda12 and cuda13 of pyproject.toml)
#
# One venv per package under ${CUPY_AD_WRAPPER_VENVS:-$HOME/.cache/cupy-ad-wrapper-venvs} (about 2.6 GB
# each: cupy-cuda12x or cupy-cuda13x and NVIDIA's CUDA library wheels of that major version, which CuPy
# needs to import its wrappers; no driver is needed), this checkout installed editable. CuPy 13 finds the
# wheels' libraries only on LD_LIBRARY_PATH (CuPy 14 looks them up itself). Exit status nonzero if any
# version fails. About 15 s per version once the venvs exist.
set -uo pipefail
cd "$(dirname "$0")/.."
root=${CUPY_AD_WRAPPER_VENVS:-$HOME/.cache/cupy-ad-wrapper-venvs}
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(12x-14.2.0 12x-13.6.0 13x-14.2.0)
status=0
for spec in "${versions[@]}"; do
    cuda=${spec%%-*} version=${spec#*-}
    venv=$root/cupy-cuda$cuda-$version
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" && "$venv/bin/pip" install -q -e . "cupy-cuda$cuda==$version" \
            "cuda-toolkit[cublas,cudart,cusolver,cusparse,nvrtc,nvjitlink]==${cuda%x}.*" pytest hypothesis \
            || { echo "cupy-cuda$cuda $version: venv install failed"; status=1; continue; }
    fi
    libs=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | paste -sd:)
    echo "== cupy-cuda$cuda $version"
    LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$venv/bin/python" -m pytest -q -p no:cacheprovider \
        tests/test_cupy_wrappers.py tests/test_cusolver_stub.py tests/test_cupy_backend.py || status=1
done
exit $status
