"""Set functions of the array API: unique_all, unique_counts, unique_inverse, unique_values, isin.

Indices, counts and isin's booleans carry no tangent. Each unique value is the input at its first
occurrence (the ``indices`` of unique_all), and its tangent is that entry's tangent: a gather, so
it nests. (Where equal entries move apart the set itself changes: the derivative is one-sided, the
first occurrence's.)
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ..core import strip
from .manipulation import looped
from ._rules import nondifferentiable, xp_of
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


def unique_all(x: Any, /) -> UniqueAllResult:
    raw = strip(x)
    result = xp_of(raw).unique_all(raw)
    values = result.values if x is raw else take(reshape(x, (raw.size,)), result.indices, axis=0)
    return UniqueAllResult(values, result.indices, result.inverse_indices, result.counts)


def unique_counts(x: Any, /) -> UniqueCountsResult:
    result = unique_all(x)
    return UniqueCountsResult(result.values, result.counts)


def unique_inverse(x: Any, /) -> UniqueInverseResult:
    result = unique_all(x)
    return UniqueInverseResult(result.values, result.inverse_indices)


def unique_values(x: Any, /) -> Any:
    return unique_all(x).values


__all__ = ["isin", "unique_all", "unique_counts", "unique_inverse", "unique_values"]
