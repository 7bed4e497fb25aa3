"""Any other array-API library (e.g. array_api_strict): its own namespace, kernels via DLPack to NumPy."""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from .base import Backend


class GenericBackend(Backend):
    def __init__(self, name: str, xp: Any):
        self.name = name
        self.xp = xp

    @classmethod
    def from_module_name(cls, name: str) -> "GenericBackend":
        module = importlib.import_module(name)
        if hasattr(module, "asarray"):
            xp = module
        elif hasattr(module, "__array_namespace__"):
            xp = module.__array_namespace__()
        else:
            raise ImportError(f"module {name!r} is not an array library")
        return cls(name, xp)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def may_share_memory(self, a: Any, b: Any) -> bool:
        try:  # (DLPack shares the memory: array_api_strict's arrays hold NumPy arrays)
            return bool(np.may_share_memory(np.from_dlpack(a), np.from_dlpack(b)))
        except (BufferError, TypeError, RuntimeError):  # (a device array: no view of it on the host)
            return False

    def from_numpy(self, a: Any) -> Any:
        return self.xp.asarray(np.asarray(a))
