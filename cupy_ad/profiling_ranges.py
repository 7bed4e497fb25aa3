"""nvtx ranges for every primitive, in the ``cupy_ad`` domain.

Without the ``nvtx`` package, or with ``NVTX_DISABLE=1``, a range is a no-op context manager.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any


class _Range:
    __slots__ = ("_attributes",)

    def __init__(self, attributes: Any):
        self._attributes = attributes

    def __enter__(self) -> None:
        _domain.push_range(self._attributes)

    def __exit__(self, *exc: Any) -> None:
        _domain.pop_range()


try:
    if os.environ.get("NVTX_DISABLE"):
        raise ImportError
    import nvtx

    _domain = nvtx.get_domain("cupy_ad")
except ImportError:
    _domain = None


#: The range of every message without nvtx: a no-op (``bind`` skips entering it).
NO_RANGE = contextlib.nullcontext()


def nvtx_range(message: str) -> Any:
    """A reusable context manager for the range ``message`` (``NO_RANGE`` without nvtx)."""
    if _domain is None:
        return NO_RANGE
    return _Range(_domain.get_event_attributes(message=message))
