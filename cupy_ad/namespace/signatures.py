"""The standard's signatures for the namespace functions that are primitives.

A primitive is called as ``bind(prim, *args, **params)``; setting its ``__signature__`` makes
``inspect.signature``, ``help()`` and IDEs show the standard's parameters (2024.12) instead.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..core import Primitive

_UNARY = """abs absolute acos acosh arccos arccosh arcsin arcsinh arctan arctanh asin asinh atan atanh bitwise_invert
ceil conj conjugate cos cosh exp expm1 floor imag isfinite isinf isnan log log10 log1p log2 logical_not negative
positive real reciprocal round sign signbit sin sinh sqrt square tan tanh trunc""".split()
_BINARY = """add arctan2 atan2 bitwise_and bitwise_left_shift bitwise_or bitwise_right_shift bitwise_xor copysign
divide equal floor_divide greater greater_equal hypot less less_equal logaddexp logical_and logical_or logical_xor
matmul maximum minimum multiply nextafter not_equal outer pow power remainder subtract""".split()

# Each lambda only carries a signature: the standard's parameters of the function of that name.
_OTHERS: dict[str, Callable] = {
    "all": lambda x, /, *, axis=None, keepdims=False: None,
    "any": lambda x, /, *, axis=None, keepdims=False: None,
    "argmax": lambda x, /, *, axis=None, keepdims=False: None,
    "argmin": lambda x, /, *, axis=None, keepdims=False: None,
    "argsort": lambda x, /, *, axis=-1, descending=False, stable=True: None,
    "broadcast_to": lambda x, /, shape: None,
    "count_nonzero": lambda x, /, *, axis=None, keepdims=False: None,
    "cumulative_sum": lambda x, /, *, axis=None, dtype=None, include_initial=False: None,
    "diagonal": lambda x, /, *, offset=0: None,
    "expand_dims": lambda x, /, axis: None,
    "flip": lambda x, /, *, axis=None: None,
    "isin": lambda x1, x2, /, *, invert=False: None,
    "max": lambda x, /, *, axis=None, keepdims=False: None,
    "mean": lambda x, /, *, axis=None, keepdims=False: None,
    "min": lambda x, /, *, axis=None, keepdims=False: None,
    "moveaxis": lambda x, source, destination, /: None,
    "nonzero": lambda x, /: None,
    "permute_dims": lambda x, /, axes: None,
    "reshape": lambda x, /, shape, *, copy=None: None,
    "roll": lambda x, /, shift, *, axis=None: None,
    "squeeze": lambda x, /, axis: None,
    "sum": lambda x, /, *, axis=None, dtype=None, keepdims=False: None,
    "tensordot": lambda x1, x2, /, *, axes=2: None,
    "tile": lambda x, repetitions, /: None,
    "trace": lambda x, /, *, offset=0, dtype=None: None,
    "tril": lambda x, /, *, k=0: None,
    "triu": lambda x, /, *, k=0: None,
    "vecdot": lambda x1, x2, /, *, axis=-1: None,
    "where": lambda condition, x1, x2, /: None,
}


def _signature(name: str) -> inspect.Signature:
    if name in _UNARY:
        return inspect.signature(lambda x, /: None)
    if name in _BINARY:
        return inspect.signature(lambda x1, x2, /: None)
    return inspect.signature(_OTHERS[name])


def sign_primitives(functions: dict[str, Any]) -> None:
    """Give each primitive among ``functions`` (name -> function) the standard's signature."""
    for name, fn in functions.items():
        if isinstance(fn, Primitive):
            fn.__signature__ = _signature(name)
