"""CuPy backend (imported lazily: ``import cupy_ad`` never needs CUDA)."""
from __future__ import annotations

from typing import Any

import array_api_compat.cupy as compat_cupy
import cupy

from .base import Backend


class CupyBackend(Backend):
    name = "cupy"
    xp = compat_cupy

    def to_numpy(self, x: Any) -> Any:
        return cupy.asnumpy(x)

    def from_numpy(self, a: Any) -> Any:
        return cupy.asarray(a)

    def synchronize(self) -> None:
        cupy.cuda.get_current_stream().synchronize()
