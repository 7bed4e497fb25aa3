"""Where a jvp's time goes: milliseconds spent in each primitive's implementation (the backend kernels).

``python -m cupy_ad bench --breakdown`` prints this for every case it times; the remainder up to the
jvp's total is dispatch (binds, rules' Python) and is shown as "outside kernels". Implementations do
not call each other, so the times add up. On CuPy the times are host times of asynchronous launches
unless the backend synchronises; use ``profiling/nsys_profile.sh`` there instead.
"""
from __future__ import annotations

import collections
import sys
import time
from typing import Any, Callable

from cupy_ad.core import Primitive


def _primitives() -> list[Primitive]:
    """Every primitive defined at module level in the loaded cupy_ad modules."""
    found: dict[int, Primitive] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("cupy_ad.") and module is not None:
            for value in vars(module).values():
                if type(value) is Primitive:
                    found[id(value)] = value
    return list(found.values())


def primitive_breakdown(fn: Callable[[], Any], sync: Callable[[], None], repeats: int = 3) -> tuple[float, list]:
    """(total ms per call, [(primitive, ms per call, calls per call)] by decreasing time) for ``fn``."""
    fn()
    sync()
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter = collections.Counter()
    originals = {}
    for prim in _primitives():
        def timed(*args: Any, _impl: Callable = prim.impl, _name: str = prim.name, **params: Any) -> Any:
            start = time.perf_counter()
            try:
                return _impl(*args, **params)
            finally:
                spent[_name] += time.perf_counter() - start
                calls[_name] += 1
        originals[prim] = prim.impl
        prim.impl = timed
    try:
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        sync()
        total = (time.perf_counter() - start) / repeats * 1e3
    finally:
        for prim, impl in originals.items():
            prim.impl = impl
    rows = sorted(((name, ms / repeats * 1e3, calls[name] // repeats) for name, ms in spent.items()),
                  key=lambda row: -row[1])
    return total, rows


def format_breakdown(label: str, total: float, rows: list, top: int = 8) -> str:
    inside = sum(ms for _, ms, _ in rows)
    parts = [f"{name} {ms:.3g} ms x{count}" for name, ms, count in rows[:top]]
    return (f"{label}: {total:.3g} ms = kernels {inside:.3g} ms ({', '.join(parts)}) "
            f"+ outside kernels {total - inside:.3g} ms")
