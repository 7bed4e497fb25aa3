"""Placeholder: being written (replaced by the real primitive and rule)."""


def solve(*args, **kwargs):
    raise NotImplementedError("solve")


def inv(*args, **kwargs):
    raise NotImplementedError("inv")
