"""Named results, as NumPy and the array API name them."""
from __future__ import annotations

from typing import Any, NamedTuple


class QRResult(NamedTuple):
    Q: Any
    R: Any


class SVDResult(NamedTuple):
    U: Any
    S: Any
    Vh: Any


class SplitResult(NamedTuple):
    X: Any
    Y: Any


class EighResult(NamedTuple):
    eigenvalues: Any
    eigenvectors: Any


class SlogdetResult(NamedTuple):
    sign: Any
    logabsdet: Any
