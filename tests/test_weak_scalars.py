"""Python-scalar primals are weakly typed: they do not change the dtype float32 code computes in."""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import backend_of


def _xs(backend):
    return backend.asarray(np.linspace(0.5, 1.5, 6).reshape(2, 3), dtype=np.float32)


CASES = {
    "s * x": lambda s, x: s * x,
    "s + x": lambda s, x: s + x,
    "x - s, x / s": lambda s, x: (x - s) / s,
    "sin(s) * x": lambda s, x: x.__array_namespace__().sin(s) * x,
    "x ** s": lambda s, x: x ** s,
    "where(x > 1, s, x)": lambda s, x: x.__array_namespace__().where(x > 1, s, x),
    "s * s * x": lambda s, x: s * s * x,
}


@pytest.mark.parametrize("name", CASES)
def test_python_scalar_keeps_float32(backend, name):
    f, x = CASES[name], _xs(backend)
    value, tangent = ad.jvp(f, (1.25, x), (1.0, None))
    assert value.dtype == x.dtype and tangent.dtype == x.dtype
    # the derivative in s against float64 finite differences of the same code
    f64 = lambda s: f(backend.asarray(s), backend.asarray(backend.to_numpy(x), dtype=np.float64))  # noqa: E731
    h = 1e-6
    fd = (backend.to_numpy(f64(1.25 + h)) - backend.to_numpy(f64(1.25 - h))) / (2 * h)
    np.testing.assert_allclose(backend.to_numpy(tangent), fd, rtol=1e-5, atol=1e-6)
    if backend.name == "numpy" and name != "sin(s) * x":  # plain NumPy code: same dtype (np.sin(1.25) is strong)
        assert f(1.25, x).dtype == value.dtype


def test_complex_and_integer_scalars_promote_as_python_scalars(backend):
    x = _xs(backend)
    value, _ = ad.jvp(lambda s, x: s * x, (2j, x), (1j, None))
    assert value.dtype == backend.ns.complex64
    value, _ = ad.jvp(lambda n, x: n * x, (3, x), (None, None))
    assert value.dtype == x.dtype


def test_a_python_float_next_to_integers_gives_the_default_float():
    # (array_api_strict refuses a Python float next to an integer array, with or without jvp)
    value, tangent = ad.jvp(lambda s, k: s * k, (2.0, np.arange(3, dtype=np.int32)), (1.0, None))
    assert value.dtype == np.float64 and tangent.dtype == np.float64
    np.testing.assert_array_equal(tangent, np.arange(3))


def test_a_lone_python_scalar_stays_float64(backend):
    value, tangent = ad.jvp(lambda s: s * 2.0, (2.0,), (1.0,))
    assert value.dtype == np.float64 and tangent.dtype == np.float64 and float(tangent) == 2.0


def test_nested_jvp_of_a_python_scalar(backend):
    x = _xs(backend)

    def slope(s, x):
        return ad.jvp(lambda t: t * t * x, (s,), (1.0,))[1]  # 2 s x

    value, curvature = ad.jvp(slope, (1.5, x), (1.0, None))
    assert value.dtype == x.dtype and curvature.dtype == x.dtype
    np.testing.assert_allclose(backend.to_numpy(curvature), 2 * backend.to_numpy(x), rtol=1e-6)


def test_scan_python_scalar_init_takes_the_body_dtype(backend):
    xs = _xs(backend)

    def run(w, xs):
        return ad.scan(lambda c, x: (c * w + x[0] * x[1], c * x[2]), 0.0, xs)

    carry, ys = run(np.float32(0.5) if backend.name == "numpy" else backend.asarray(0.5, dtype=np.float32), xs)
    assert carry.dtype == xs.dtype and ys.dtype == xs.dtype
    (carry, ys), (dcarry, dys) = ad.jvp(lambda xs: run(0.5, xs), (xs,), (xs,))
    assert carry.dtype == xs.dtype and dcarry.dtype == xs.dtype and dys.dtype == xs.dtype
    ad.check_jvp(lambda xs: run(0.5, xs), (backend.asarray(backend.to_numpy(xs), dtype=np.float64),))


def test_comparisons_and_rounding_with_a_python_scalar(backend):
    x = backend.asarray(np.float32([0.1, 0.2, 0.35]))
    (greater, quotient), _ = ad.jvp(lambda s, x: (x > s, x // s), (0.1, x), (1.0, None))
    # 0.1 compared in float32, as ``x > 0.1`` does (in float64, float32(0.1) > 0.1)
    np.testing.assert_array_equal(backend.to_numpy(greater), [False, True, True])
    assert quotient.dtype == x.dtype


def test_scan_body_refusing_duals_keeps_the_default_dtype(backend):
    # array_api_strict arrays refuse a dual right operand; the probe for the carry's dtype gives way
    w, xs = backend.asarray(2.0, dtype=np.float32), _xs(backend)[0, ...]  # 0.5, 0.7, 0.9
    carry, ys = ad.scan(lambda c, x: (w * c + x, c), 0.0, xs)
    expected = backend.ns.float32 if backend.name != "array_api_strict" else backend.ns.float64
    assert carry.dtype == expected and ys.dtype == expected
    np.testing.assert_allclose(backend.to_numpy(carry), (0.5 * 2 + 0.7) * 2 + 0.9, rtol=1e-6)


# the dual on the left: a closure's array_api_strict array does not defer to duals on its right
CLOSURE_CASES = {
    "s * x": lambda s, x: s * x,
    "(s - x) / s": lambda s, x: (s - x) / s,
    "sin(s * x)": lambda s, x: (s * x).__array_namespace__().sin(s * x),
    "s ** 2 + x": lambda s, x: s ** 2 + x,
}


@pytest.mark.parametrize("name", CLOSURE_CASES)
def test_scalar_only_primal_meets_arrays_from_a_closure(backend, name):
    """The only primal is a Python scalar (made on jvp's default backend); the arrays come from the
    closure, on the test's backend: the scalar is remade there, first and second order."""
    f, x = CLOSURE_CASES[name], _xs(backend)
    value, tangent = ad.jvp(lambda s: f(s, x), (1.25,), (1.0,))
    expected_value, expected_tangent = ad.jvp(f, (1.25, x), (1.0, None))
    assert value.dtype == x.dtype and tangent.dtype == x.dtype
    np.testing.assert_array_equal(backend.to_numpy(value), backend.to_numpy(expected_value))
    np.testing.assert_array_equal(backend.to_numpy(tangent), backend.to_numpy(expected_tangent))
    second = ad.jvp(lambda s: ad.jvp(lambda t: f(t, x), (s,), (1.0,))[1], (1.25,), (1.0,))[1]
    h = 1e-3
    fd = (backend.to_numpy(ad.jvp(lambda t: f(t, x), (1.25 + h,), (1.0,))[1]).astype(np.float64)
          - backend.to_numpy(ad.jvp(lambda t: f(t, x), (1.25 - h,), (1.0,))[1]).astype(np.float64)) / (2 * h)
    np.testing.assert_allclose(backend.to_numpy(second), fd, rtol=2e-3, atol=2e-3)


def test_scan_without_arrays_in_init_or_xs_takes_the_backend_of_the_body(backend):
    """(session 9) Python scalars in init, no xs, the arrays from the closure: the carry and a Python scalar
    the body returns become arrays of the body's backend (they were the default backend's: with
    array_api_strict arrays, the probe for the carry's dtype failed on the NumPy carry, a TypeError), and so
    does jvp's Python-scalar primal as init."""
    ns, w = backend.ns, backend.asarray(np.float32([0.5, 1.5]))

    def body(c, x):
        return c * ns.sum(w) + 1.0, (c, c * w, 2.0)  # (the dual on the left: see above)

    carry, (cs, scaled, twos) = ad.scan(body, 0.0, None, length=3)
    for v in (carry, cs, scaled, twos):
        assert backend_of(v) is backend_of(w)
    assert carry.dtype == cs.dtype == scaled.dtype == w.dtype and twos.dtype == ns.float64
    np.testing.assert_array_equal(backend.to_numpy(cs), np.float32([0.0, 1.0, 3.0]))
    (carry, ys), (dcarry, dys) = ad.jvp(lambda s: ad.scan(body, s, None, length=3), (0.0,), (1.0,))
    for v in (carry, dcarry, *ys, *dys[:2]):
        assert backend_of(v) is backend_of(w) and v.dtype == (w.dtype if v is not ys[2] else ns.float64)
    np.testing.assert_array_equal(backend.to_numpy(dys[0]), np.float32([1.0, 2.0, 4.0]))


def test_scan_python_scalar_init_and_carry():
    """A Python scalar returned for a Python-scalar carry (the probe for its dtype read the float's ``dtype``:
    an AttributeError): NumPy's default dtype, as the first step makes it."""
    carry, ys = ad.scan(lambda c, x: (1.0, c), 0.0, None, length=2)
    assert carry.dtype == ys.dtype == np.float64
    np.testing.assert_array_equal(ys, [0.0, 1.0])
