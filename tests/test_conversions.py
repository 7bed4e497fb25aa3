"""Leaving the differentiated world: float()/int()/bool()/complex()/__index__, NumPy conversion
(__array__) and DLPack raise on a nonzero tangent at any level and convert zero-tangent values;
ad.stop_gradient and ad.primal_value are the explicit ways out."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cupy_ad as ad


def test_python_conversions_refuse_a_tangent(backend):
    x = backend.asarray(2.0)
    for convert in (float, complex, math.log, lambda v: np.float64(v) + 0):
        with pytest.raises(ad.ConcretizationError, match="stop_gradient"):
            ad.jvp(lambda a, convert=convert: a * 0.0 + convert(a), (x,), (backend.asarray(1.0),))
    with pytest.raises(TypeError, match="primal_value"):  # a TypeError, as JAX's ConcretizationTypeError
        ad.jvp(lambda a: a if a else a, (x,), (backend.asarray(1.0),))
    # the reported bug: math.log dropped the tangent and gave 0 instead of 1/2
    with pytest.raises(ad.ConcretizationError):
        ad.jvp(lambda a: a * 0.0 + math.log(a), (2.0,), (1.0,))


def test_zero_tangents_convert_freely(backend):
    ns = backend.ns
    x = backend.asarray([0.5, -2.0, 3.0])

    def f(a):
        total = 0.0
        for i in range(int(ns.asarray(a.shape[0]))):  # an int constant: __int__
            if a[i] > 0:  # a comparison has a zero tangent: __bool__ works
                total = total + a[i] * float(ad.stop_gradient(a[i]))  # the value used as a constant
        counts = range(3)[ns.asarray(1)]  # __index__ of an integer dual
        return total * counts

    value, slope = ad.jvp(f, (x,), (backend.asarray([1.0, 10.0, 100.0]),))
    assert float(value) == pytest.approx(0.25 + 9.0)
    assert float(slope) == pytest.approx(0.5 + 300.0)  # d/dx of x * c at c = x is c


def test_nested_levels(backend):
    """A tangent at an outer level blocks conversion inside an inner jvp, and stop_gradient drops
    the tangents of every level."""
    x = backend.asarray(3.0)

    def inner(a):
        return ad.jvp(lambda b: b * float(a), (x,), (backend.asarray(1.0),))[1]

    with pytest.raises(ad.ConcretizationError):
        ad.jvp(inner, (x,), (backend.asarray(1.0),))

    def inner_stopped(a):
        return ad.jvp(lambda b: b * b * float(ad.stop_gradient(a)), (x,), (backend.asarray(1.0),))[1]

    value, slope = ad.jvp(inner_stopped, (x,), (backend.asarray(1.0),))
    assert float(value) == pytest.approx(2 * 3.0 * 3.0) and float(slope) == 0.0

    def stopped(b):  # keeps the levels of b (a dual over a dual), with zero tangents at both
        s = ad.stop_gradient(b)
        assert type(s) is ad.Dual and type(s.primal) is ad.Dual and not ad.values.has_tangent(s)
        return s

    def second(a):  # d/db (b s + b a) = s + a, whose derivative in a is 1: s is a constant
        return ad.jvp(lambda b: b * stopped(b) + b * a, (a,), (backend.asarray(1.0),))[1]

    value, slope = ad.jvp(second, (x,), (backend.asarray(1.0),))
    assert float(value) == pytest.approx(6.0) and float(slope) == pytest.approx(1.0)
    assert ad.stop_gradient(x) is x and ad.primal_value(x) is x


def test_primal_value(backend):
    x = backend.asarray([1.0, 2.0])
    value, slope = ad.jvp(lambda a: a + ad.primal_value(a * 2.0), (x,), (x,))
    np.testing.assert_array_equal(backend.to_numpy(value), [3.0, 6.0])
    np.testing.assert_array_equal(backend.to_numpy(slope), [1.0, 2.0])  # only the first term has a tangent


def test_numpy_conversion(backend):
    ns = backend.ns
    x = backend.random((2, 3), seed=3)

    def f(a):
        with pytest.raises(ad.ConcretizationError, match="__array__"):
            np.asarray(a)
        labels = ns.asarray([0, 1, 1])  # an integer constant converts, as scikit-learn's label paths need
        ramp = ns.arange(3.0)  # and so does a floating constant
        if backend.name == "numpy":
            np.testing.assert_array_equal(np.asarray(labels), [0, 1, 1])
            np.testing.assert_array_equal(np.asarray(ramp, dtype=np.float32), [0.0, 1.0, 2.0])
        return a

    ad.jvp(f, (x,), (x,))


def test_dlpack(backend):
    ns = backend.ns
    x = backend.random((2, 3), seed=4)

    def f(a):
        assert a.__dlpack_device__() == ad.primal_value(a).__dlpack_device__()
        with pytest.raises(BufferError, match="stop_gradient"):
            a.__dlpack__()
        exported = np.from_dlpack(ad.stop_gradient(a)) if backend.name != "cupy" else None
        if exported is not None:
            np.testing.assert_array_equal(exported, backend.to_numpy(ad.primal_value(a)))
        # from_dlpack of a dual keeps its tangent; without a copy it is a view: writes are shared
        b = ns.from_dlpack(a)
        c = ns.from_dlpack(a, copy=True)
        b[0, 0] = 5.0
        c[0, 1] = 7.0
        return a, c

    (a, c), (da, dc) = ad.jvp(f, (x,), (x,))
    expected = backend.to_numpy(x).copy()
    expected[0, 0] = 5.0
    np.testing.assert_array_equal(backend.to_numpy(a), expected)
    tangent = backend.to_numpy(x).copy()
    tangent[0, 0] = 0.0
    np.testing.assert_array_equal(backend.to_numpy(da), tangent)
    np.testing.assert_array_equal(backend.to_numpy(c)[0], [backend.to_numpy(x)[0, 0], 7.0, backend.to_numpy(x)[0, 2]])


def test_convert_primal_switch(backend, monkeypatch):
    """CUPY_AD_CONVERT_PRIMAL=1 (for harnesses reading values back) converts the primal."""
    monkeypatch.setenv("CUPY_AD_CONVERT_PRIMAL", "1")
    value, slope = ad.jvp(lambda a: a * 0.0 + math.log(a), (2.0,), (1.0,))
    assert float(value) == pytest.approx(math.log(2.0)) and float(slope) == 0.0
    ad.jvp(lambda a: a.__dlpack__() and a, (backend.random((2,)),), (backend.random((2,)),))


def test_every_traced_value_answers_the_array_attributes_alike(backend):
    """Dual, Batched (one example's), linearize's Recorded (a tangent) and jit's JitTraced share one
    definition of the array attributes, len() and the conversions (values._ArrayValue): each answers as
    the array it stands for, and len() of a 0-d value raises the same TypeError (a 0-d Dual raised the
    backend's own message before)."""
    x = backend.random((4, 3), dtype=np.float32)
    seen = {}

    def attributes(v):
        with pytest.raises(TypeError, match=r"^len\(\) of a 0-d array$"):
            len(v[0, 0])
        return tuple(v.shape), v.dtype, v.ndim, v.size, v.device, len(v)

    def probe(name, of=lambda v: v):
        def f(v):
            seen[name] = (type(of(v)).__name__, attributes(of(v)))
            return v * 2
        return f

    ad.jvp(probe("jvp"), (x,), (x,))
    ad.jit(probe("jit"))(x)
    ad.vmap(probe("vmap"))(backend.ns.stack([x, x]))
    ad.linearize(probe("linearize", of=lambda v: v.tangent), x)[1](x)
    want = (tuple(x.shape), x.dtype, 2, 12, x.device, 4)
    assert seen == {"jvp": ("Dual", want), "jit": ("JitTraced", want), "vmap": ("Batched", want),
                    "linearize": ("Recorded", want)}
