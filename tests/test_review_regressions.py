"""Regressions found in review: each once gave a wrong answer or wrote into an input."""
import warnings

import numpy as np
import pytest
from array_api_compat import array_namespace

import cupy_ad as ad
from cupy_ad.testing import max_relative_error


def test_concat_and_stack_with_integer_constants(backend):
    x = backend.random((3,))
    ones = backend.asarray(np.ones(3))
    ns = backend.ns
    _, t = ad.jvp(lambda a: ns.concat([a, ns.astype(ns.arange(3), a.dtype)]), (x,), (ones,))
    np.testing.assert_array_equal(backend.to_numpy(t), [1, 1, 1, 0, 0, 0])
    _, t = ad.jvp(lambda a: ns.stack([a, ns.asarray([5.0, 6.0, 7.0])]), (x,), (ones,))
    np.testing.assert_array_equal(backend.to_numpy(t), [[1, 1, 1], [0, 0, 0]])


def test_scan_body_updating_its_carry_in_place(backend):
    """``a[0] = ...`` in a body whose pattern needs two passes: each pass starts from init."""
    a, b = backend.asarray([1.0]), backend.asarray([10.0])
    before = backend.to_numpy(a).copy()

    def run(a, b):
        def body(c, x):
            p, q = c
            p[0] = p[0] * 2.0
            return (q, p), p

        return ad.scan(body, (a, b), None, length=3)[1]

    plain = backend.to_numpy(run(a, b))
    ys, dys = ad.jvp(run, (a, b), (backend.asarray([1.0]), None))
    np.testing.assert_array_equal(backend.to_numpy(ys), plain)
    np.testing.assert_array_equal(plain.ravel(), [2.0, 20.0, 4.0])
    np.testing.assert_array_equal(backend.to_numpy(dys).ravel(), [2.0, 0.0, 4.0])
    np.testing.assert_array_equal(backend.to_numpy(a), before)


def test_check_jvp_never_writes_into_its_inputs(backend):
    x = backend.random((2,))
    before = backend.to_numpy(x).copy()

    def f(a):
        a[0] = 5.0
        return a * 2.0

    ad.check_jvp(f, (x,))
    max_relative_error(f, (x,))
    np.testing.assert_array_equal(backend.to_numpy(x), before)


def test_nan_never_passes_the_checks(backend):
    ns = backend.ns
    x = backend.asarray([0.0, 1.0])
    ones = backend.asarray([1.0, 1.0])
    with np.errstate(all="ignore"):
        assert max_relative_error(ns.sqrt, (x,), (ones,)) == float("inf")
        with pytest.raises(AssertionError):
            ad.check_jvp(ns.sqrt, (x,), (ones,))


def test_asarray_copy_gives_an_independent_value(backend):
    def f(a):
        xp = array_namespace(a)
        b = xp.asarray(a, copy=True)
        b[0] = 100.0
        return a

    out, t = ad.jvp(f, (backend.asarray([1.0, 2.0]),), (backend.asarray([1.0, 1.0]),))
    np.testing.assert_array_equal(backend.to_numpy(out), [1.0, 2.0])
    np.testing.assert_array_equal(backend.to_numpy(t), [1.0, 1.0])


def test_a_dual_escaping_its_jvp_is_refused(backend):
    leak = []
    x, t = backend.asarray([2.0]), backend.asarray([1.0])
    ad.jvp(lambda a: (leak.append(a), a * 1.0)[1], (x,), (t,))
    with pytest.raises(ValueError, match="finished jvp"):
        ad.jvp(lambda b: b * leak[0], (x,), (t,))
    with pytest.raises(ValueError, match="finished jvp"):
        leak[0] * 2.0


def test_none_and_bool_primals():
    x = np.array([1.0, 2.0])
    out, t = ad.jvp(lambda a, nothing, flag: a * 2.0 if nothing is None and flag else a, (x, None, True),
                    (x, None, None))
    np.testing.assert_array_equal(t, 2 * x)


def test_check_jvp_accepts_what_jvp_accepts():
    ad.check_jvp(lambda a: a * a, (3.0,), (1.0,))
    x = np.array([1.0, 2.0])
    ad.check_jvp(lambda p, q: p * q[0] * q[1], (x, (x, x)), (x, None))


def test_differentiable_fill_values_and_lists_of_duals(backend):
    x = backend.random((3,))

    ns = backend.ns  # our namespace on plain arrays too (the standard's full_like takes scalars only)

    def f(a):
        return ns.full_like(a, a[0]) * 2.0 + ns.asarray([a[1], a[2], a[0] * a[1]])

    ad.check_jvp(f, (x,))


def test_meshgrid_is_differentiable(backend):
    x, y = backend.random((3,)), backend.random((2,), seed=1)
    ns = backend.ns
    for indexing in ("xy", "ij"):
        for ours, theirs in zip(ns.meshgrid(x, y, indexing=indexing), backend.xp.meshgrid(x, y, indexing=indexing)):
            np.testing.assert_array_equal(backend.to_numpy(ours), backend.to_numpy(theirs))

    def f(a, b):
        u, v = ns.meshgrid(a, b)
        w, z = ns.meshgrid(a, b, indexing="ij")
        return u * v + ns.sin(w * z).mT

    ad.check_jvp(f, (x, y))


def test_more_linear_functions_against_finite_differences(backend):
    ns = backend.ns
    x = backend.random((2, 3), np.complex128)
    if backend.name == "numpy":  # the standard forbids casting complex to real (array_api_strict raises)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)  # the cast under test
            ad.check_jvp(lambda a: ns.astype(a, ns.float64), (x,))  # NumPy keeps the real part, and so does its tangent
    ad.check_jvp(lambda a: ns.tile(a, (2, 1)), (x,))
    ad.check_jvp(lambda a: ns.repeat(a, 2, axis=1), (x,))
    ad.check_jvp(lambda a: ns.repeat(a, ns.asarray([1, 0, 2]), axis=1), (x,))
    order = backend.xp.argsort(backend.xp.real(x), axis=1)
    ad.check_jvp(lambda a: ns.take_along_axis(a, order, axis=1), (x,))


@pytest.mark.parametrize("name", ["sin", "exp", "log", "sqrt", "tanh", "abs", "conj", "square"])
def test_complex64(backend, name):
    x = backend.asarray((np.linspace(0.5, 1.5, 6) + 0.3j).astype(np.complex64))
    ad.check_jvp(getattr(backend.ns, name), (x,), rtol=2e-3, atol=1e-3)
