"""jit as a demanding user meets it (session 9's trial): array-API code written by others and the
edge cases of the compiled path, each against the eager call (``_assert_identical``: bit for bit on
NumPy, within rounding on CuPy)."""
import numpy as np
from test_jit import _assert_identical

import cupy_ad as ad


def test_an_array_without_a_trace_indexed_by_a_traced_key(backend):
    """Under a jvp or jacfwd inside jit, a constant's primal and a rule's zeros are raw arrays: indexed by
    a traced mask or index (``d[x > 0] = x[x > 0]`` on zeros, scikit-learn's ridge ``d[idx] = ...``)
    NumPy converted the key and the recording refused it; the index is now a step of the program."""
    ns = backend.ns
    w = backend.asarray([[0.5, 1.5, -2.0, 3.0], [4.0, 5.0, 6.0, 7.0]])

    def masked(x):
        d = ns.zeros(4, dtype=x.dtype)
        d[x > 0] = x[x > 0] * 2.0
        return d

    def gathered(x):
        return ns.asarray(w)[1, ...][x > 0] * ns.sum(x) + ns.asarray(w)[0, ...][ns.argmax(x)]

    for x in (backend.asarray([1.0, -1.0, 2.0, -3.0]), backend.asarray([-1.0, 1.0, 1.0, 3.0])):
        t = backend.asarray([0.5, 1.0, -2.0, 1.5])
        for f in (masked, gathered):
            _assert_identical(backend, ad.jvp(ad.jit(f), (x,), (t,)), ad.jvp(f, (x,), (t,)))
            _assert_identical(backend, ad.jit(lambda x, t: ad.jvp(f, (x,), (t,)))(x, t), ad.jvp(f, (x,), (t,)))
            if f is gathered or backend.name != "array_api_strict":  # (eager jacfwd of a masked write builds
                _assert_identical(backend, ad.jacfwd(ad.jit(f))(x), ad.jacfwd(f)(x))  # a key strict refuses)
