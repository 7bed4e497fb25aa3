"""Raw arrays that become constants of a ``jit`` program (closed over, or made by the backend inside
``f``) are captured at the recording, as ``jax.jit`` does: a write into one after a step used it (later
in ``f``, or between calls) is not seen by a replay; each against the eager call, bit for bit."""
import numpy as np
from test_jit import _assert_identical

import cupy_ad as ad


def _accumulated(xp):
    def f(x):
        buf = xp.zeros(3, dtype=x.dtype)  # raw, written after each use
        out = 0 * x
        for i in range(3):
            buf[...] = i + 1.0
            out = out + x * buf
        return out
    return f


def _gathered_then_written(ns, xp):
    def f(x):
        d = xp.asarray([1.0, 2.0, 3.0])
        out = ns.asarray(d)[x > 0] * x[x > 0]
        d[...] = 5.0
        return out
    return f


def test_a_raw_array_written_in_f_after_its_use(backend):
    """The replay once read the buffer's final contents (9 x instead of 6 x; [5, 5] instead of [1, 3])."""
    ns, xp = backend.ns, backend.xp
    x, t = backend.asarray([1.0, -2.0, 3.0]), backend.asarray([0.5, 1.0, -1.5])
    for f in (_accumulated(xp), _gathered_then_written(ns, xp)):
        want = f(x)
        jitted = ad.jit(f)
        for _ in range(2):  # the recording, then a replay
            _assert_identical(backend, jitted(x), want)
        want = ad.jvp(f, (x,), (t,))
        jvp_of_jit, jit_of_jvp = ad.jit(f), ad.jit(lambda x, t: ad.jvp(f, (x,), (t,)))
        for _ in range(2):
            _assert_identical(backend, ad.jvp(jvp_of_jit, (x,), (t,)), want)
            _assert_identical(backend, jit_of_jvp(x, t), want)
    np.testing.assert_array_equal(backend.to_numpy(x), [1.0, -2.0, 3.0])  # the input is never written
    np.testing.assert_array_equal(backend.to_numpy(t), [0.5, 1.0, -1.5])


def test_a_closed_over_array_written_between_calls(backend):
    """Every replay computes with the array as it was at the recording (it computed ``a * w`` with the new
    ``w`` and ``sum(w)`` with the old one: neither result); a new recording (another signature, under
    a ``jvp``) captures it as it is then."""
    ns, xp = backend.ns, backend.xp
    w = xp.asarray([1.0, 2.0, 3.0])

    def g(a):
        return a * w + ns.sum(ns.asarray(w)) + ns.sum(ns.asarray(w)[a > 0])
    f, x = ad.jit(g), backend.asarray([1.0, -1.0, 2.0])
    want = f(x)
    w[...] = 2.0
    _assert_identical(backend, f(x), want)
    _assert_identical(backend, f(x), want)
    _assert_identical(backend, ad.jvp(f, (x,), (x,)), ad.jvp(g, (x,), (x,)))  # a new recording: w as it is now
    np.testing.assert_array_equal(backend.to_numpy(w), [2.0, 2.0, 2.0])  # the caller's array is its own
