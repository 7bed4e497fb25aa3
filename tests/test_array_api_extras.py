"""The rest of the array API: reciprocal, copysign, nextafter, cumulative_prod, diff, the set functions,
linalg.cross, matrix_power, pinv and matrix_rank. Primal equal to the backend's, JVP equal to finite
differences, and an identity each."""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad


def _np(backend, x):
    return backend.to_numpy(x)


def test_elementwise_additions(backend):
    ns, xp = backend.ns, backend.xp
    x = backend.asarray([0.5, -1.5, 2.0, -0.25])
    y = backend.asarray([-1.0, 2.0, -3.0, 4.0])
    for name in ("reciprocal", "copysign", "nextafter"):
        args = (x,) if name == "reciprocal" else (x, y)
        np.testing.assert_array_equal(_np(backend, getattr(ns, name)(*args)), _np(backend, getattr(xp, name)(*args)))
        ad.check_jvp(lambda *a, name=name: getattr(ns, name)(*a), args)
    # copysign flips the tangent exactly where it flips the value; x2's tangent moves nothing
    _, t = ad.jvp(lambda a: ns.copysign(a, y), (x,), (backend.asarray(np.ones(4)),))
    np.testing.assert_array_equal(_np(backend, t), [-1.0, -1.0, -1.0, -1.0])
    _, t = ad.jvp(lambda b: ns.copysign(x, b), (y,), (backend.asarray(np.ones(4)),))
    np.testing.assert_array_equal(_np(backend, t), 0.0)


@pytest.mark.parametrize("kwargs", [dict(axis=0), dict(axis=1), dict(axis=-1, include_initial=True)])
def test_cumulative_prod(backend, kwargs):
    ns = backend.ns
    x = backend.random((3, 5), seed=1)
    np.testing.assert_allclose(_np(backend, ns.cumulative_prod(x, **kwargs)),
                               _np(backend, backend.xp.cumulative_prod(x, **kwargs)), rtol=1e-15)
    ad.check_jvp(lambda a: ns.cumulative_prod(a, **kwargs), (x,))


def test_cumulative_prod_exact_at_zeros_and_nested(backend):
    """The tangent is the product rule summed exactly (no division); second derivatives too."""
    ns = backend.ns
    x = backend.asarray([2.0, 0.0, 3.0, 0.0, 5.0])
    t = backend.asarray([1.0, 1.0, 1.0, 1.0, 1.0])
    _, d = ad.jvp(lambda a: ns.cumulative_prod(a), (x,), (t,))
    values = _np(backend, x)
    expected = [sum(np.prod(np.delete(values[:k + 1], i)) for i in range(k + 1)) for k in range(5)]
    np.testing.assert_array_equal(_np(backend, d), expected)  # [1, 2, 6, 0, 0]

    def first(a):
        return ad.jvp(lambda b: ns.cumulative_prod(b), (a,), (t,))[1]

    _, second = ad.jvp(first, (x,), (t,))
    # d2/dh2 prod_{i<=k}(x_i + h) at h = 0 is 2 sum_{i<j<=k} prod_{l != i, j} x_l
    expected2 = [2 * sum(np.prod(np.delete(values[:k + 1], [i, j])) for i in range(k + 1) for j in range(i + 1, k + 1))
                 for k in range(5)]
    np.testing.assert_allclose(_np(backend, second), expected2)
    ad.check_jvp(lambda a: ns.cumulative_prod(a, dtype=ns.float64), (backend.asarray(np.arange(1.0, 5.0)),))


@pytest.mark.parametrize("kwargs", [dict(), dict(n=2), dict(axis=0), dict(n=0), dict(prepend="zeros", append="ones")])
def test_diff(backend, kwargs):
    ns = backend.ns
    x = backend.random((3, 4), seed=2)
    if "prepend" in kwargs:
        kwargs = dict(prepend=backend.asarray(np.zeros((3, 1))), append=backend.asarray(np.ones((3, 2))))
    np.testing.assert_allclose(_np(backend, ns.diff(x, **kwargs)), _np(backend, backend.xp.diff(x, **kwargs)))
    ad.check_jvp(lambda a: ns.diff(a, **kwargs), (x,))
    with pytest.raises(ValueError):
        ns.diff(x, n=-1)


def test_set_functions(backend):
    """unique_*: the backend's values, indices, inverse and counts; each value's tangent is that of
    its first occurrence; isin carries no tangent."""
    ns, xp = backend.ns, backend.xp
    x = backend.asarray([3.0, 1.0, 3.0, 2.0, 1.0, 7.0])
    t = backend.asarray([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    ref = xp.unique_all(x)
    (values, indices, inverse, counts), tangents = ad.jvp(lambda a: tuple(ns.unique_all(a)), (x,), (t,))
    for got, want in zip((values, indices, inverse, counts), ref):
        np.testing.assert_array_equal(_np(backend, got), _np(backend, want))
    np.testing.assert_array_equal(_np(backend, tangents[0]), [20.0, 40.0, 10.0, 60.0])
    assert all(type(d) is ad.Zero for d in tangents[1:])
    for name, fields in (("unique_counts", 2), ("unique_inverse", 2)):
        out, tan = ad.jvp(lambda a, name=name: tuple(getattr(ns, name)(a)), (x,), (t,))
        assert len(out) == fields
        np.testing.assert_array_equal(_np(backend, tan[0]), [20.0, 40.0, 10.0, 60.0])
    _, tan = ad.jvp(ns.unique_values, (x,), (t,))
    np.testing.assert_array_equal(_np(backend, tan), [20.0, 40.0, 10.0, 60.0])
    out, tan = ad.jvp(lambda a: ns.isin(ns.astype(a, ns.int64), backend.asarray([1, 7])), (x,), (t,))
    np.testing.assert_array_equal(_np(backend, out), [False, True, False, False, True, True])
    assert type(tan) is ad.Zero  # (the standard's isin takes integers; NumPy's takes floats too)


def test_cross(backend):
    ns = backend.ns
    a, b = backend.random((4, 3), seed=3), backend.random((4, 3), seed=4)
    np.testing.assert_allclose(_np(backend, ns.linalg.cross(a, b)), _np(backend, backend.xp.linalg.cross(a, b)))
    ad.check_jvp(lambda x, y: ns.linalg.cross(x, y), (a, b))
    ad.check_jvp(lambda x, y: ns.linalg.cross(x, y, axis=-2), (ns.matrix_transpose(a), ns.matrix_transpose(b)))
    # identity: (a x b) . a = 0 for all a, so its derivative vanishes: da.(a x b) + a.(da x b + a x db) = 0
    da, db = backend.random((4, 3), seed=5), backend.random((4, 3), seed=6)
    c, dc = ad.jvp(lambda x, y: ns.linalg.cross(x, y), (a, b), (da, db))
    lhs = np.sum(_np(backend, da) * _np(backend, c) + _np(backend, a) * _np(backend, dc), axis=-1)
    np.testing.assert_allclose(lhs, 0.0, atol=1e-12)


@pytest.mark.parametrize("power", [0, 1, 2, 5, -1, -3])
def test_matrix_power(backend, power):
    ns = backend.ns
    a = backend.asarray(np.eye(3) + 0.3 * np.random.default_rng(7).standard_normal((2, 3, 3)))
    np.testing.assert_allclose(_np(backend, ns.linalg.matrix_power(a, power)),
                               np.linalg.matrix_power(_np(backend, a), power), rtol=1e-12)
    ad.check_jvp(lambda x: ns.linalg.matrix_power(x, power), (a,))
    # identity: A^p A^-p = I, so d(A^p) A^-p + A^p d(A^-p) = 0
    t = backend.random((2, 3, 3), seed=8)
    p, dp = ad.jvp(lambda x: ns.linalg.matrix_power(x, power), (a,), (t,))
    q, dq = ad.jvp(lambda x: ns.linalg.matrix_power(x, -power), (a,), (t,))
    np.testing.assert_allclose(_np(backend, dp) @ _np(backend, q) + _np(backend, p) @ _np(backend, dq), 0.0,
                               atol=1e-11)


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (2, 3, 3)])
def test_pinv(backend, shape):
    ns = backend.ns
    a = backend.random(shape, seed=9)
    np.testing.assert_allclose(_np(backend, ns.linalg.pinv(a)), np.linalg.pinv(_np(backend, a)), rtol=1e-10,
                               atol=1e-12)
    ad.check_jvp(ns.linalg.pinv, (a,))
    # identity: A A+ A = A, differentiated: dA A+ A + A dA+ A + A A+ dA = dA
    t = backend.random(shape, seed=10)
    p, dp = ad.jvp(ns.linalg.pinv, (a,), (t,))
    a_, t_, p_, dp_ = (_np(backend, v) for v in (a, t, p, dp))
    np.testing.assert_allclose(t_ @ p_ @ a_ + a_ @ dp_ @ a_ + a_ @ p_ @ t_, t_, atol=1e-10)


def test_pinv_rank_deficient_and_matrix_rank(backend):
    """Below the cutoff singular values are dropped as NumPy does; along a rank-preserving
    direction (pinv is discontinuous across ranks) the tangent matches finite differences."""
    ns = backend.ns
    rng = np.random.default_rng(11)
    u, v = rng.standard_normal((5, 2)), rng.standard_normal((2, 4))
    a = backend.asarray(u @ v)  # rank 2
    np.testing.assert_allclose(_np(backend, ns.linalg.pinv(a)), np.linalg.pinv(u @ v), atol=1e-12)
    assert int(_np(backend, ns.linalg.matrix_rank(a))) == 2
    np.testing.assert_array_equal(_np(backend, ns.linalg.matrix_rank(backend.random((3, 4, 5), seed=12))), [4, 4, 4])
    du, dv = rng.standard_normal((5, 2)), rng.standard_normal((2, 4))
    direction = backend.asarray(du @ v + u @ dv)  # tangent to the rank-2 matrices at a
    _, dp = ad.jvp(ns.linalg.pinv, (a,), (direction,))
    h = 1e-6
    fd = (np.linalg.pinv((u + h * du) @ (v + h * dv)) - np.linalg.pinv((u - h * du) @ (v - h * dv))) / (2 * h)
    np.testing.assert_allclose(_np(backend, dp), fd, rtol=1e-5, atol=1e-7)
    out, tan = ad.jvp(ns.linalg.matrix_rank, (a,), (direction,))
    assert type(tan) is ad.Zero


def test_edge_cases_of_the_scans_and_diff(backend):
    """dtype= keeps primal and tangent dtypes equal; 3-D axes; 0-d input; empty reductions; diff's
    bad axes and more steps than entries behave as the backend."""
    ns, xp = backend.ns, backend.xp
    x32 = backend.random((2, 3, 4), np.float32, seed=13)
    t32 = backend.random((2, 3, 4), np.float32, seed=14)
    for f in (lambda a: ns.cumulative_prod(a, axis=1, dtype=ns.float64),
              lambda a: ns.prod(a, axis=1, dtype=ns.float64)):
        out, tan = ad.jvp(f, (x32,), (t32,))
        assert out.dtype == tan.dtype == xp.float64
    x = backend.random((2, 3, 4), seed=15)
    ad.check_jvp(lambda a: ns.cumulative_prod(a, axis=1), (x,))
    ad.check_jvp(lambda a: ns.cumulative_prod(a, axis=-3, include_initial=True), (x,))
    out, tan = ad.jvp(lambda a: ns.prod(a, axis=1), (x[:, :0, :],), (x[:, :0, :],))  # empty products
    np.testing.assert_array_equal(_np(backend, out), 1.0)
    np.testing.assert_array_equal(_np(backend, tan), 0.0)
    if backend.name == "numpy":  # NumPy takes a 0-d array as one entry (the standard does not say)
        s = backend.asarray(3.0)
        out, tan = ad.jvp(ns.cumulative_prod, (s,), (backend.asarray(2.0),))
        assert out.shape == tan.shape == xp.cumulative_prod(s).shape and float(_np(backend, tan).ravel()[0]) == 2.0
    with pytest.raises(IndexError):
        ns.diff(x, axis=3)
    with pytest.raises(ValueError):
        ns.diff(backend.asarray(1.0))
    short = backend.random((2, 3), seed=16)
    np.testing.assert_array_equal(_np(backend, ns.diff(short, n=5)).shape, (2, 0))


def test_reciprocal_complex_and_pinv_options(backend):
    ns, xp = backend.ns, backend.xp
    z = backend.random((5,), np.complex128, seed=17)
    ad.check_jvp(ns.reciprocal, (z,))
    a = backend.random((3, 4, 3), seed=18)
    rtol = backend.asarray([1e-3, 0.5, 0.9])  # per matrix: the second and third drop singular values
    np.testing.assert_allclose(_np(backend, ns.linalg.pinv(a, rtol=rtol)),
                               np.linalg.pinv(_np(backend, a), rtol=_np(backend, rtol)), atol=1e-12)
    ad.check_jvp(lambda m: ns.linalg.pinv(m, rtol=rtol), (a,))
    empty = backend.asarray(np.zeros((0, 3)))
    assert ns.linalg.pinv(empty).shape == (3, 0)
    rank = ns.linalg.matrix_rank(a, rtol=rtol)
    reference = xp.linalg.matrix_rank(a, rtol=rtol)
    assert rank.dtype == reference.dtype
    np.testing.assert_array_equal(_np(backend, rank), _np(backend, reference))
