"""The fast paths of vmap's dispatch against the general batching machinery they bypass: elementwise
primitives on stacks of one rank (with Python scalars and lower-rank shared arrays), and a call
mapping raw arrays to one array; the cases they refuse fall back to the general path unchanged."""
import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.core import bind, bind_batched_elementwise
from cupy_ad.values import Batched, new_level
from cupy_ad.namespace import elementwise


@pytest.mark.parametrize("make_args", [
    lambda x, y, s: (x, y),             # two stacks of one rank
    lambda x, y, s: (x, 2.5),           # a Python scalar
    lambda x, y, s: (3, x),
    lambda x, y, s: (x, s),             # a shared array of lower rank
    lambda x, y, s: (s, y),
    lambda x, y, s: (x, y[:, 0, ...]),  # stacks of different ranks (per example: (3, 2) and (2,))
    lambda x, y, s: (y[:, 1, ...], x),  # (2,) against (3, 2), the lower rank first
    lambda x, y, s: (y[:, 1, ...], x[0, ...]),  # a stack of (2,) against a shared (3, 2)
])
def test_elementwise_fast_path_matches_the_batching_rule(backend, make_args):
    rng = np.random.default_rng(0)
    x, y = backend.asarray(rng.standard_normal((6, 3, 2))), backend.asarray(rng.standard_normal((6, 3, 2)))
    s = backend.asarray(rng.standard_normal(2))
    with new_level("vmap") as level:
        args = [Batched(level, a, 0) if getattr(a, "shape", (0,))[0] == 6 else a for a in make_args(x, y, s)]
        for prim in (elementwise.add, elementwise.multiply, elementwise.atan2):
            fast = bind_batched_elementwise(prim, tuple(args), {})
            assert type(fast) is Batched and fast.axis == 0
            general = bind(prim, *args)  # bind itself: _batch and the broadcasting rule
            np.testing.assert_array_equal(backend.to_numpy(fast.value),
                                          backend.to_numpy(general.value if general.axis == 0 else
                                                           backend.ns.moveaxis(general.value, general.axis, 0)))


def test_elementwise_fast_path_refuses_what_it_cannot_do(backend):
    x = backend.asarray(np.ones((4, 3)))
    with new_level("vmap") as level, new_level("vmap") as inner:
        refused = [
            (Batched(level, x, 1), 2.0),                        # another batch axis
            (Batched(level, x, 0), Batched(inner, x, 0)),       # two levels
            (Batched(level, x, None), 1.0),                     # nothing mapped
        ]
        for args in refused:
            assert bind_batched_elementwise(elementwise.add, args, {}) is None
    # through the public API, the refused cases still agree with a loop
    xs = np.random.default_rng(1).standard_normal((4, 3))
    got = ad.vmap(lambda a, b: a + b[0], in_axes=(0, 1))(backend.asarray(xs), backend.asarray(xs.T.copy()))
    np.testing.assert_allclose(backend.to_numpy(got), np.stack([xs[i] + xs[i, 0] for i in range(4)]))


def test_vmap_fast_path_agrees_with_the_general_path(backend):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 5))
    f = lambda x, y: backend.ns.sin(x) * backend.ns.sum(y)  # noqa: E731
    # in_axes an int: the fast path; a tuple prefix: the general path; both against a loop
    ys = backend.asarray(b.T.copy())
    fast = ad.vmap(f, in_axes=0, out_axes=1)(backend.asarray(a), ys)
    general = ad.vmap(f, in_axes=(0, 0), out_axes=1)(backend.asarray(a), ys)
    want = np.stack([np.sin(a[i]) * b[:, i].sum() for i in range(5)], axis=1)
    np.testing.assert_allclose(backend.to_numpy(fast), want, rtol=1e-14)
    np.testing.assert_array_equal(backend.to_numpy(fast), backend.to_numpy(general))
    # a constant output, a tuple output and an axis out of range go through the general path's checks
    assert backend.to_numpy(ad.vmap(lambda x: backend.ns.ones(2), in_axes=0)(backend.asarray(a))).shape == (5, 2)
    pair = ad.vmap(lambda x: (x, x), in_axes=0)(backend.asarray(a))
    assert isinstance(pair, tuple) and len(pair) == 2
    with pytest.raises(ValueError, match="out_axes 3"):
        ad.vmap(lambda x: x, in_axes=0, out_axes=3)(backend.asarray(a))
    with pytest.raises(ValueError, match="different sizes"):
        ad.vmap(f, in_axes=0)(backend.asarray(a), backend.asarray(b))


@pytest.mark.parametrize("x_shape, y_shape, in_axes", [
    ((5, 3, 4), (4, 2), (0, None)),      # stacked matrices @ a shared matrix
    ((5, 2, 3, 4), (4, 4), (0, None)),   # stacked stacks of matrices @ a shared matrix
    ((5, 3, 4), (4,), (0, None)),        # ... @ a shared vector
    ((5, 4), (4, 2), (0, None)),         # stacked vectors @ a shared matrix
    ((5, 4), (4,), (0, None)),           # stacked vectors . a shared vector
    ((4,), (5, 4), (None, 0)),           # a shared vector . stacked vectors
    ((3, 4), (5, 4, 2), (None, 0)),      # a shared matrix @ stacked matrices
    ((3, 4), (5, 4), (None, 0)),         # a shared matrix @ stacked vectors (rows times its transpose)
    ((5, 3, 4), (5, 4, 2), (0, 0)),      # two stacks of matrices
    ((5, 4), (5, 4), (0, 0)),            # two stacks of vectors (the batching rule)
])
def test_matmul_and_outer_of_stacks_match_a_loop(backend, x_shape, y_shape, in_axes):
    rng = np.random.default_rng(len(x_shape) + 3 * len(y_shape))
    x_np, y_np = rng.standard_normal(x_shape) + 1j * rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    x, y = backend.asarray(x_np), backend.asarray(y_np.astype(complex))
    got = backend.to_numpy(ad.vmap(lambda a, b: a @ b, in_axes=in_axes)(x, y))
    pick = lambda a, axis, i: a if axis is None else a[i]  # noqa: E731
    want = np.stack([pick(x_np, in_axes[0], i) @ pick(y_np, in_axes[1], i) for i in range(5)])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    if len(x_shape) - (in_axes[0] is not None) == 1 and len(y_shape) - (in_axes[1] is not None) == 1:
        got = backend.to_numpy(ad.vmap(lambda a, b: ad.namespace(backend.name).linalg.outer(a, b), in_axes=in_axes)(x, y))
        want = np.stack([np.outer(pick(x_np, in_axes[0], i), pick(y_np, in_axes[1], i)) for i in range(5)])
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("params", [{}, {"axis": 0}, {"axis": -1, "keepdims": True}, {"axis": (0, 2)}])
def test_reductions_and_transposes_of_stacks_match_a_loop(backend, name, params):
    """``Primitive.stack_rule`` (a raw stack, the only mapped argument) against a loop, and against the
    batching rule it bypasses (a stack on axis 1)."""
    ns = backend.ns
    x_np = np.random.default_rng(4).standard_normal((5, 2, 3, 4))
    f = lambda a: getattr(ns, name)(a, **params)  # noqa: E731
    got = backend.to_numpy(ad.vmap(f)(backend.asarray(x_np)))
    want = np.stack([backend.to_numpy(f(backend.asarray(x_np[i]))) for i in range(5)])
    np.testing.assert_allclose(got, want, rtol=1e-14)
    moved = backend.asarray(np.moveaxis(x_np, 0, 1).copy())
    np.testing.assert_allclose(backend.to_numpy(ad.vmap(f, in_axes=1)(moved)), want, rtol=1e-14)
    for t in (lambda a: a.mT, lambda a: ns.permute_dims(a, (2, 0, 1)), lambda a: ns.permute_dims(a, axes=(-1, 1, 0))):
        got = backend.to_numpy(ad.vmap(t)(backend.asarray(x_np)))
        np.testing.assert_array_equal(got, np.stack([backend.to_numpy(t(backend.asarray(x_np[i]))) for i in range(5)]))


@pytest.mark.parametrize("examples", [127, 130])  # folded from 128 examples on
@pytest.mark.parametrize("shape, w_shape, transpose", [
    ((3, 4), (4, 2), False),     # stacked matrices @ a tiny shared matrix: one product of the stack's rows
    ((2, 3, 4), (4, 4), False),  # stacked stacks of matrices (16 entries: still folded)
    ((2, 3), (2, 4), True),      # a strided stack (its transpose), which the fold reshapes
    ((3, 5), (5, 4), False),     # a shared matrix of more than 16 entries: NumPy's broadcast
])
def test_many_examples_times_a_tiny_matrix_match_a_loop(backend, examples, shape, w_shape, transpose):
    """A stack of many examples times a tiny shared matrix, folded into one product, against a loop
    (real and complex), under jvp too; the input is left as it was."""
    rng = np.random.default_rng(examples + len(shape))
    x_np = rng.standard_normal((examples, *shape)) + 1j * rng.standard_normal((examples, *shape))
    w_np = rng.standard_normal(w_shape)
    f = (lambda a, w: a.mT @ w) if transpose else (lambda a, w: a @ w)  # noqa: E731
    x = backend.asarray(x_np)
    for w_dtype in (float, complex):
        w = backend.asarray(w_np.astype(w_dtype))
        got = backend.to_numpy(ad.vmap(lambda a: f(a, w))(x))
        want = np.stack([f(x_np[i], w_np) for i in range(examples)])
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(backend.to_numpy(x), x_np)
    tangent = ad.jvp(lambda a: ad.vmap(lambda b: f(b, w))(a), (x,), (x,))[1]  # the rule's products
    np.testing.assert_allclose(backend.to_numpy(tangent), want, rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError):  # mismatched inner dimensions: matmul's error, not a silent fold
        ad.vmap(lambda a: f(a, backend.asarray(np.ones((w_shape[0] + 1, 2)))))(x)


@pytest.mark.parametrize("x_shape, w_shape", [((130, 3, 0), (0, 2)), ((130, 3, 2), (2, 0))])
def test_many_examples_times_an_empty_matrix(backend, x_shape, w_shape):
    """Empty shared matrices are never folded (their rows cannot be reshaped): the product is empty, as
    NumPy's."""
    x, w = backend.asarray(np.ones(x_shape)), backend.asarray(np.ones(w_shape))
    got = backend.to_numpy(ad.vmap(lambda a: a @ w)(x))
    assert got.shape == (130, 3, w_shape[1]) and np.all(got == 0)
