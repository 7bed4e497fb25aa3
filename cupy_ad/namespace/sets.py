"""Set functions of the array API: unique_all, unique_counts, unique_inverse, unique_values, isin.

Indices, counts and isin's booleans are dual values with zero tangents. Each unique value is the input at its first
occurrence (the ``indices`` of unique_all), and its tangent is that entry's tangent: a gather, so
it nests. (Where equal entries move apart the set itself changes: the derivative is one-sided, the
first occurrence's.)
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

from ..values import Dual
from .manipulation import looped
from ._rules import nondifferentiable, value_sized, xp_of
from .indexing import take
from .manipulation import reshape

isin = nondifferentiable("isin", batch=looped)  # x2 is a set, not broadcast


class UniqueAllResult(NamedTuple):
    values: Any
    indices: Any
    inverse_indices: Any
    counts: Any


class UniqueCountsResult(NamedTuple):
    values: Any
    counts: Any


class UniqueInverseResult(NamedTuple):
    values: Any
    inverse_indices: Any


_unique_all = nondifferentiable("unique_all", lambda x: tuple(xp_of(x).unique_all(x)), multiple_results=True,
                                batch=value_sized("unique_all (unique_values, unique_counts, unique_inverse)",
                                                  "Keep the size fixed: sort (s = xp.sort(x, axis=-1)) and mark "
                                                  "each value's first occurrence (s[..., 1:] != s[..., :-1])"))


def unique_all(x: Any, /) -> UniqueAllResult:
    values, indices, inverse_indices, counts = _unique_all(x)
    if type(x) is Dual:  # values: a gather of x at the first occurrences, with their tangents
        values = take(reshape(x, (math.prod(x.shape),)), indices, axis=0)
    return UniqueAllResult(values, indices, inverse_indices, counts)


def unique_counts(x: Any, /) -> UniqueCountsResult:
    result = unique_all(x)
    return UniqueCountsResult(result.values, result.counts)


def unique_inverse(x: Any, /) -> UniqueInverseResult:
    result = unique_all(x)
    return UniqueInverseResult(result.values, result.inverse_indices)


def unique_values(x: Any, /) -> Any:
    return unique_all(x).values


__all__ = ["isin", "unique_all", "unique_counts", "unique_inverse", "unique_values"]
