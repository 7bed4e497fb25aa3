"""The checks a ``jit`` replay makes where the recording read a value in Python (``bool()``, a rule's host
integer, a shape or a layout that follows values, an error that ``f`` handled): each is a step of the
program that raises ``Diverged`` when the replay sees another outcome than the recording did, and the
call is then recorded again (see :mod:`cupy_ad.transforms.jit`)."""
from __future__ import annotations

from typing import Any, Callable

from ..backends import backend_of


class Diverged(Exception):
    """A guard of the program saw another outcome than at recording."""


def guard(expected: bool) -> Callable:
    """The step checking that a value's truth is still ``expected`` (else ``Diverged``)."""
    def check(value: Any) -> None:
        if bool(value) is not expected:
            raise Diverged
    return check


def raises(step: Callable, error: type) -> Callable:
    """The step checking that a call that raised ``error`` at recording (and that ``f`` handled) still
    raises it (else ``Diverged``): ``step`` makes the call from the traced arguments."""
    def check(*values: Any) -> None:
        try:
            step(*values)
        except error:
            return
        raise Diverged
    return check


def value_guard(expected: int) -> Callable:
    """The step checking that an integer a rule read on the host (``values.host_int``) is still ``expected``
    (else ``Diverged``)."""
    def check(value: Any) -> None:
        if int(value) != expected:
            raise Diverged
    return check


def memory_guard(expected: bool) -> Callable:
    """The step checking that a result still shares memory with its argument or not, ``expected`` (else
    ``Diverged``): the layout, not in jit's signature, decides whether a reshape is a view (writes reach x)."""
    def check(x: Any, out: Any) -> None:
        if backend_of(x).may_share_memory(x, out) is not expected:
            raise Diverged
    return check


def layout_guard(layout: Callable) -> Callable:
    """The step checking that two arrays still lie alike in memory (``layout``: their backend's ``layout``; else
    ``Diverged``): ``x op= y`` keeps its result as x where they do. Where they did not at recording, it copies the
    result into x's layout, which is right for any layout: no check (one program for all such layouts, at the
    cost of a copy where a replay's would need none). The layout is not in jit's signature."""
    def check(a: Any, b: Any) -> None:
        if layout(a) != layout(b):
            raise Diverged
    return check


def shape_guard(expected: tuple) -> Callable:
    """The step checking that an array whose shape follows its arguments' values (a boolean mask, nonzero,
    unique) still has the recorded ``expected`` shape (else ``Diverged``): what follows may depend on it."""
    def check(value: Any) -> None:
        if value.shape != expected:
            raise Diverged
    return check
