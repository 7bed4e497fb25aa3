"""Every test runs on each available backend: numpy, array_api_strict and (with a GPU) cupy.

``CUPY_AD_TEST_BACKENDS=cupy`` (comma-separated) restricts the run, e.g. for ci/gpu.sh.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import cupy_ad as ad


def _available() -> list[str]:
    names = ["numpy", "array_api_strict"]
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            names.append("cupy")
    except Exception:  # noqa: BLE001 - no CuPy or no GPU
        pass
    wanted = os.environ.get("CUPY_AD_TEST_BACKENDS")
    if wanted:
        names = [n for n in wanted.split(",") if n in names]
    return names


@dataclass
class Backend:
    """What a test needs of a backend: its raw namespace, our namespace and conversions."""

    name: str
    xp: Any  # the raw array-API namespace (arrays without tangents)

    @property
    def ns(self) -> Any:
        return ad.namespace(self.name)

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
        return ad.namespace(self.name).backend.from_numpy(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(ad.namespace(self.name).backend.to_numpy(x))

    def random(self, shape: tuple, dtype: Any = np.float64, seed: int = 0) -> Any:
        rng = np.random.default_rng(seed)
        a = rng.standard_normal(shape)
        if np.issubdtype(dtype, np.complexfloating):
            a = a + 1j * rng.standard_normal(shape)
        return self.asarray(a.astype(dtype))


BACKENDS = _available()


@pytest.fixture(params=BACKENDS)
def backend(request: Any) -> Backend:
    name = request.param
    module = importlib.import_module("array_api_compat.numpy" if name == "numpy" else
                                     "array_api_compat.cupy" if name == "cupy" else name)
    return Backend(name, module)
