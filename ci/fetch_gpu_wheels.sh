#!/usr/bin/env bash
# Download the wheels the lent GPU machine's image lacks into .whl/ (git-ignored), for its
# Python 3.12 on x86_64: array-api-compat, array-api-strict, optree and nvtx (their own
# dependencies, numpy and typing-extensions, are in the image). Pinned to the versions this
# project's CPU environment is tested with; one version of each, or the install there stops.
# Run here, in the repo root, before calling the device tool with carry=[".whl"] (see ci/gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
rm -f .whl/*.whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for spec in array-api-compat==1.16.0 array-api-strict==2.6.1 optree==0.20.0 nvtx==0.2.17; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${platforms[@]}" -d .whl "$spec"
done
ls -l .whl
