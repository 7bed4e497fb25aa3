"""The interface every backend offers."""
from __future__ import annotations

from typing import Any


class Backend:
    """One array library: its array-API namespace and the kernels the standard lacks.

    Subclasses set ``name`` and ``xp`` and implement ``to_numpy``/``from_numpy``. Kernels not
    overridden by a subclass run on NumPy through ``to_numpy``/``from_numpy`` (the generic path).
    """

    name: str
    xp: Any

    def to_numpy(self, x: Any) -> Any:
        raise NotImplementedError

    def from_numpy(self, a: Any) -> Any:
        raise NotImplementedError

    def via_numpy(self, kernel: str, *arrays: Any, **params: Any) -> Any:
        """Run the NumPy backend's ``kernel`` on copies of ``arrays`` and bring the results back."""
        from . import backend_named

        numpy_backend = backend_named("numpy")
        out = getattr(numpy_backend, kernel)(*(self.to_numpy(a) for a in arrays), **params)
        if isinstance(out, tuple):
            return tuple(self.from_numpy(o) for o in out)
        return self.from_numpy(out)

    def __repr__(self) -> str:
        return f"<cupy_ad backend {self.name}>"
