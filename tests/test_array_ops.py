"""Reductions, shape manipulation, products and indexing against finite differences."""
import numpy as np
import pytest

import cupy_ad as ad


@pytest.fixture(params=[np.float64, np.complex128])
def dtype(request):
    return request.param


REDUCTIONS = {
    "sum": [dict(), dict(axis=0), dict(axis=(0, 2), keepdims=True)],
    "mean": [dict(), dict(axis=1), dict(axis=-1, keepdims=True)],
    "prod": [dict(), dict(axis=1), dict(axis=(0, 2), keepdims=True)],
    "cumulative_sum": [dict(axis=0), dict(axis=2), dict(axis=1, include_initial=True)],
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_linear_reductions(backend, name, dtype):
    x = backend.random((2, 3, 4), dtype)
    for kwargs in REDUCTIONS[name]:
        ad.check_jvp(lambda a: getattr(backend.ns, name)(a, **kwargs), (x,))


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("kwargs", [dict(), dict(axis=1), dict(axis=(0, 2), keepdims=True)])
def test_extrema(backend, name, kwargs):
    ad.check_jvp(lambda a: getattr(backend.ns, name)(a, **kwargs), (backend.random((2, 3, 4)),))


def test_prod_with_zeros_is_exact(backend):
    x = backend.asarray([[2.0, 0.0, 3.0], [0.0, 0.0, 5.0]])
    t = backend.asarray([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    _, dp = ad.jvp(lambda a: backend.ns.prod(a, axis=1), (x,), (t,))
    np.testing.assert_allclose(backend.to_numpy(dp), [6.0, 0.0])
    ad.check_jvp(lambda a: backend.ns.prod(a, axis=1), (x,))


def test_prod_tangent_cases_and_large_axes(backend):
    """No zero: p / x_i; one zero: the product of the others at it, 0 elsewhere; two zeros: 0. The
    rule needs O(K) memory (a K x K table of "all but one" would need 8e10 bytes here)."""
    x = backend.asarray([[2.0, 4.0, 0.5], [2.0, 0.0, 3.0], [0.0, 7.0, 0.0]])
    _, dp = ad.jvp(lambda a: backend.ns.prod(a, axis=1), (x,), (backend.asarray(np.eye(3)),))
    np.testing.assert_array_equal(backend.to_numpy(dp), [4.0 * 0.5, 2.0 * 3.0, 0.0])
    k = 100_000
    big = backend.asarray(np.linspace(0.99999, 1.00001, k))
    _, dp = ad.jvp(lambda a: backend.ns.prod(a), (big,), (backend.asarray(np.ones(k)),))
    values = backend.to_numpy(big)
    np.testing.assert_allclose(backend.to_numpy(dp), np.sum(np.prod(values) / values), rtol=1e-12)


def test_prod_second_derivative_with_a_zero(backend):
    """d2/dh2 prod(x + h e_0 + h e_1) at x_0 = 0 is 2 prod(x_2..): the nested rule stays exact."""
    x = backend.asarray([0.0, 3.0, 5.0])
    e = backend.asarray([1.0, 1.0, 0.0])
    ns = backend.ns

    def first(a):
        return ad.jvp(lambda b: ns.prod(b), (a,), (e,))[1]

    _, second = ad.jvp(first, (x,), (e,))
    assert float(backend.to_numpy(second)) == 2.0 * 5.0


def test_var_std(backend, dtype):
    x = backend.random((3, 5), dtype)
    ns = backend.ns
    ad.check_jvp(lambda a: ns.var(a, axis=1, correction=1), (x,))
    ad.check_jvp(lambda a: ns.std(a, axis=0, keepdims=True), (x,))


def test_max_ties_average(backend):
    x = backend.asarray([1.0, 3.0, 3.0])
    _, t = ad.jvp(backend.ns.max, (x,), (backend.asarray([5.0, 1.0, 2.0]),))
    np.testing.assert_allclose(backend.to_numpy(t), 1.5)


MANIPULATIONS = [
    lambda ns, a: ns.reshape(a, (4, 6)),
    lambda ns, a: ns.expand_dims(a, axis=1),
    lambda ns, a: ns.squeeze(ns.expand_dims(a, axis=0), axis=0),
    lambda ns, a: ns.permute_dims(a, (2, 0, 1)),
    lambda ns, a: ns.broadcast_to(a[:, :1, :], (2, 3, 4)),
    lambda ns, a: ns.concat([a, ns.sin(a)], axis=1),
    lambda ns, a: ns.stack([a, ns.sin(a)], axis=-1),
    lambda ns, a: ns.flip(a, axis=1),
    lambda ns, a: ns.roll(a, 2, axis=2),
    lambda ns, a: ns.moveaxis(a, 0, -1),
    lambda ns, a: ns.matrix_transpose(a),
    lambda ns, a: ns.linalg.matrix_transpose(a),
    lambda ns, a: ns.linalg.diagonal(a[:, :3, :3]),
    lambda ns, a: ns.tril(a[:, :3, :3]),
    lambda ns, a: ns.triu(a, k=1),
    lambda ns, a: ns.tril(a, k=-1),
    lambda ns, a: a.mT,
    lambda ns, a: a[0, ...].T,
    lambda ns, a: a[1, ::2, None, 1:],
    lambda ns, a: a[..., -1],
    lambda ns, a: a[1, ns.asarray([2, 0, 0]), 3],
    lambda ns, a: ns.take(a, ns.asarray([3, 1]), axis=2),
    SORT := lambda ns, a: ns.sort(a, axis=1),
    lambda ns, a: ns.unstack(a, axis=1)[2],
]


@pytest.mark.parametrize("index", list(range(len(MANIPULATIONS))))
def test_manipulations(backend, dtype, index):
    if MANIPULATIONS[index] is SORT:  # the standard sorts real input only
        dtype = np.float64
    x = backend.random((2, 3, 4), dtype)
    ad.check_jvp(lambda a: MANIPULATIONS[index](backend.ns, a), (x,))


def test_astype(backend):
    ns = backend.ns
    x = backend.random((3,), np.float64)
    out, t = ad.jvp(lambda a: ns.astype(a, ns.float32), (x,), (x,))
    assert out.dtype == t.dtype == ns.float32
    out, t = ad.jvp(lambda a: ns.astype(a, ns.complex128), (x,), (x,))
    assert t.dtype == ns.complex128
    out, t = ad.jvp(lambda a: ns.astype(a, ns.int64), (x,), (x,))
    assert isinstance(t, ad.Zero)


PRODUCTS = [
    (lambda ns, a, b: a @ b, (2, 3, 4), (4, 5)),
    (lambda ns, a, b: ns.matmul(a, b), (3, 4), (2, 4, 5)),
    (lambda ns, a, b: a @ b, (4,), (4, 2)),
    (lambda ns, a, b: ns.tensordot(a, b, axes=2), (2, 3, 4), (3, 4, 2)),
    (lambda ns, a, b: ns.tensordot(a, b, axes=([0], [1])), (2, 3), (3, 2)),
    (lambda ns, a, b: ns.vecdot(a, b), (2, 3), (3,)),
    (lambda ns, a, b: ns.linalg.vecdot(a, b, axis=-2), (3, 2), (3, 2)),
    (lambda ns, a, b: ns.linalg.outer(a, b), (3,), (4,)),
    (lambda ns, a, b: ns.linalg.trace(a @ b), (3, 4), (4, 3)),
]


@pytest.mark.parametrize("index", list(range(len(PRODUCTS))))
def test_products(backend, dtype, index):
    fn, sa, sb = PRODUCTS[index]
    x, y = backend.random(sa, dtype), backend.random(sb, dtype, seed=1)
    ad.check_jvp(lambda a, b: fn(backend.ns, a, b), (x, y))


def test_setitem_is_functional(backend):
    ns = backend.ns
    x = backend.random((4,))
    before = backend.to_numpy(x).copy()

    def f(a, b):
        c = a * 1.0
        c[1:3] = b * 2.0
        c[0] = ns.sin(a[3])
        return c

    ad.check_jvp(f, (x, backend.random((2,), seed=1)))
    np.testing.assert_array_equal(backend.to_numpy(x), before)


def test_creation_functions(backend):
    ns = backend.ns
    x = backend.random((2, 3))

    def f(a):
        xp = a.__array_namespace__()
        z = xp.zeros_like(a) + xp.ones((2, 3)) + xp.full((2, 3), 2.0) + xp.eye(2, 3)
        r = xp.arange(3, dtype=xp.float64) + xp.linspace(0.0, 1.0, 3)
        return a * z + r + xp.ones_like(a) * xp.asarray(a)

    ad.check_jvp(f, (x,))
    assert ns.zeros((2,)).dtype == ns.float64
    # a dual fill value broadcasts its tangent (our extension: the standard takes Python scalars)
    _, t = ad.jvp(lambda a: ns.full((2, 3), a[0, 0] * 2.0), (x,), (backend.asarray(np.ones((2, 3))),))
    np.testing.assert_allclose(backend.to_numpy(t), 2.0)


@pytest.mark.parametrize("num, endpoint", [(5, True), (4, False), (1, True)])
def test_linspace_differentiates_its_endpoints(backend, num, endpoint):
    """xp.linspace(x[0], x[2], n) refused ("np.linspace has no equivalent ... use the array namespace"). The
    primal is NumPy's linspace bit for bit; the tangent is dstart (1 - t) + dstop t, t = k / div (an identity,
    independent of the rule's formula), and matches finite differences; jit and vmap agree with a loop."""
    x0, dx0 = np.array([1.0, 2.0, 3.5]), np.array([0.5, -1.0, 2.0])

    def f(x):
        return x.__array_namespace__().linspace(x[0], x[2], num, endpoint=endpoint)

    value, slope = ad.jvp(f, (backend.asarray(x0),), (backend.asarray(dx0),))
    np.testing.assert_array_equal(backend.to_numpy(value), np.linspace(x0[0], x0[2], num, endpoint=endpoint))
    t = np.arange(num) / max(num - 1 if endpoint else num, 1)
    np.testing.assert_allclose(backend.to_numpy(slope), dx0[0] * (1 - t) + dx0[2] * t, rtol=1e-15, atol=1e-15)
    ad.check_jvp(f, (backend.asarray(x0),))
    stack = np.stack([x0, 2.0 * x0 + 1.0])
    for got in (ad.vmap(f)(backend.asarray(stack)), ad.vmap(ad.jit(f))(backend.asarray(stack))):
        for k in range(2):
            np.testing.assert_array_equal(backend.to_numpy(got)[k], f(stack[k]))


def test_linspace_of_another_dtype_rounds_as_numpy(backend):
    """Traced float64 endpoints with dtype=float32 were cast first, then stepped in float32: values one ulp off
    NumPy's (which steps in the endpoints' float64, then casts); dtype=int64 returned float64 values, not
    floored. The tangent follows the cast (float32; an integer dtype's is a symbolic zero)."""
    x0, dx0 = np.array([0.1, -2.3, 7.9]), np.array([0.5, -1.0, 2.0])
    xp = backend.ns
    value, slope = ad.jvp(lambda x: xp.linspace(x[0], x[2], 13, dtype=xp.float32), (backend.asarray(x0),),
                          (backend.asarray(dx0),))
    np.testing.assert_array_equal(backend.to_numpy(value), np.linspace(x0[0], x0[2], 13, dtype=np.float32))
    t = np.arange(13) / 12
    np.testing.assert_allclose(backend.to_numpy(slope), dx0[0] * (1 - t) + dx0[2] * t, rtol=1e-6)
    assert backend.to_numpy(slope).dtype == np.float32
    if backend.name == "numpy":  # (the standard's linspace takes floating dtypes only)
        value, slope = ad.jvp(lambda x: xp.linspace(x[1], x[2], 6, dtype=xp.int64), (x0,), (dx0,))
        np.testing.assert_array_equal(value, np.linspace(x0[1], x0[2], 6, dtype=np.int64))
        assert value.dtype == np.int64 and type(slope) is ad.Zero
