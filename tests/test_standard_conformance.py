"""Pieces of the 2024.12 standard the conformance suite found missing: real signatures, shift
operators, meshgrid's list, broadcast_arrays, dtype helpers of duals, atan2 with a scalar,
searchsorted's sorter, nested asarray, api_version and to_device checks, unique_* outputs."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import cupy_ad as ad


def test_every_public_function_has_a_real_signature(backend):
    ns = backend.ns
    variadic = {"meshgrid", "broadcast_arrays", "result_type"}  # the standard's own *arrays
    for module in (ns, ns.linalg):
        for name, fn in vars(module).items():
            if name.startswith("_") or not callable(fn) or isinstance(fn, type):
                continue
            kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name
            assert name in variadic or inspect.Parameter.VAR_POSITIONAL not in kinds, name
    assert str(inspect.signature(ns.sum)) == "(x, /, *, axis=None, dtype=None, keepdims=False)"
    assert str(inspect.signature(ns.linalg.trace)) == "(x, /, *, offset=0, dtype=None)"
    assert list(inspect.signature(ns.arange).parameters) == ["start", "stop", "step", "dtype", "device"]
    # the positional-or-keyword parameters work both ways
    x = backend.random((2, 3))
    assert ns.reshape(x, (3, 2)).shape == ns.reshape(x, shape=(3, 2)).shape == (3, 2)
    assert ns.expand_dims(x, 1).shape == ns.expand_dims(x, axis=1).shape == (2, 1, 3)


def test_operators_and_grids(backend):
    ns = backend.ns
    k = backend.asarray([1, 2, 3])
    x, y = backend.random((3,), seed=1), backend.random((2,), seed=2)

    def f(a, b):
        grids = ns.meshgrid(a, b)
        assert isinstance(grids, list) and [g.shape for g in grids] == [(2, 3), (2, 3)]
        wide, tall = ns.broadcast_arrays(ns.reshape(a, (1, 3)), ns.reshape(b, (2, 1)))
        assert wide.shape == tall.shape == (2, 3)
        with pytest.raises(ValueError, match="broadcast"):
            ns.broadcast_arrays(a, b)
        ints = ns.asarray(k)
        shifted = (ints << 1) >> ns.asarray([1, 1, 1])
        assert backend.to_numpy(ad.primal_value(shifted)).tolist() == [1, 2, 3]
        return grids[0] * grids[1] + wide

    ad.check_jvp(f, (x, y))


def test_dtype_helpers_of_duals(backend):
    ns = backend.ns
    x = backend.random((2,))

    def f(a):
        assert ns.finfo(a).eps == ns.finfo(ns.float64).eps
        assert ns.iinfo(ns.asarray([1, 2])).max == ns.iinfo(ns.int64).max
        assert ns.can_cast(a, ns.complex128) and not ns.can_cast(a, ns.float32)
        assert ns.result_type(a, ns.float32) == ns.float64
        assert ns.isdtype(a.dtype, "real floating")
        return a

    ad.jvp(f, (x,), (x,))


def test_atan2_with_a_python_scalar(backend):
    ns = backend.ns
    x = backend.asarray([0.5, -1.5])
    ad.check_jvp(lambda a: ns.atan2(a, 2.0), (x,))
    ad.check_jvp(lambda a: ns.atan2(-3.0, a), (x,))
    _, t = ad.jvp(lambda a: ns.atan2(a, 2.0), (x,), (backend.asarray([1.0, 1.0]),))
    np.testing.assert_allclose(backend.to_numpy(t), 2.0 / (4.0 + np.array([0.5, -1.5]) ** 2))  # x / (x^2 + y^2)


def test_searchsorted_sorter_and_nested_asarray(backend):
    ns = backend.ns
    x = backend.asarray([3.0, 1.0, 2.0])

    def f(a):
        order = ns.argsort(a)
        where_ = ns.searchsorted(a, ns.asarray([1.5, 2.5]), sorter=order)
        assert backend.to_numpy(ad.primal_value(where_)).tolist() == [1, 2]
        rows = ns.asarray([[a[0], a[1]], [a[2], 4.0]])  # nested lists of 0-d duals (and a scalar)
        return rows

    value, slope = ad.jvp(f, (x,), (backend.asarray([1.0, 2.0, 3.0]),))
    np.testing.assert_array_equal(backend.to_numpy(value), [[3.0, 1.0], [2.0, 4.0]])
    np.testing.assert_array_equal(backend.to_numpy(slope), [[1.0, 2.0], [3.0, 0.0]])


def test_namespace_version_and_device(backend):
    x = backend.random((2,))

    def f(a):
        assert a.__array_namespace__(api_version="2024.12") is backend.ns
        assert a.__array_namespace__(api_version="2023.12") is backend.ns
        with pytest.raises(ValueError, match="1999.01"):
            a.__array_namespace__(api_version="1999.01")
        with pytest.raises(ValueError):
            a.to_device("gpu:7")
        return a.to_device(a.device) * 2.0

    _, t = ad.jvp(f, (x,), (x,))
    np.testing.assert_array_equal(backend.to_numpy(t), 2.0 * backend.to_numpy(x))


def test_unique_outputs_are_duals(backend):
    """Indices and counts are dual values too (zero tangent), so they mix with duals everywhere
    (scikit-learn's LDA multiplies counts-derived priors with dual means)."""
    ns = backend.ns
    x = backend.asarray([2.0, 1.0, 2.0, 3.0])

    def f(a):
        values, indices, inverse, counts = ns.unique_all(a)
        for out in (indices, inverse, counts):
            assert type(out) is ad.Dual and type(out.tangent) is ad.Zero
        weights = ns.astype(counts, a.dtype) / 4.0
        return weights @ values, ns.unique_counts(a).counts, ns.unique_inverse(a).inverse_indices

    (value, counts, inverse), (slope, _, _) = ad.jvp(f, (x,), (backend.asarray([1.0, 10.0, 100.0, 1000.0]),))
    assert float(value) == pytest.approx((1.0 + 2 * 2.0 + 3.0) / 4.0)
    assert float(slope) == pytest.approx((10.0 + 2 * 1.0 + 1000.0) / 4.0)  # first occurrences' tangents
    assert backend.to_numpy(counts).tolist() == [1, 2, 1]
    assert backend.to_numpy(inverse).tolist() == [1, 0, 1, 2]
