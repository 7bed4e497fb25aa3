"""vmap: every primitive against a Python loop over the examples, in_axes/out_axes, compositions with
jvp and itself, scan, and bad input."""
import numpy as np
import optree
import pytest

import cupy_ad as ad

B = 3  # examples


def _spd(ns, a):
    return a @ a.mT + 3.0 * ns.eye(a.shape[-1], dtype=a.dtype)


# name -> (function of (ns, *args), shapes of one example of each argument)
CASES = {
    "sin_mul": (lambda ns, x, y: ns.sin(x) * y + 2.0, [(4, 3), (3,)]),
    "where_clip": (lambda ns, x, y: ns.where(x > y, ns.clip(x, -0.5, 0.5), y ** 2), [(2, 3), (2, 3)]),
    "pow_maximum": (lambda ns, x, y: ns.maximum(ns.abs(x) ** 1.5, y) - ns.atan2(x, y), [(3,), (3,)]),
    "astype_cmp": (lambda ns, x: ns.astype(x > 0, x.dtype) * ns.exp(x), [(4,)]),
    "sum_mean": (lambda ns, x: ns.sum(x, axis=0) + ns.mean(x, axis=-1, keepdims=True), [(3, 3)]),
    "sum_all": (lambda ns, x: ns.sum(x) * ns.max(x) - ns.min(x, axis=1)[0], [(2, 3)]),
    "prod_cumulative": (lambda ns, x: ns.prod(x, axis=1)[:, None] * ns.cumulative_sum(x, axis=0), [(3, 2)]),
    "cumulative_prod": (lambda ns, x: ns.cumulative_prod(x, axis=-1), [(2, 4)]),
    "var_std": (lambda ns, x: ns.var(x, axis=0) + ns.std(x), [(4, 2)]),
    "argmax_all": (lambda ns, x: ns.astype(ns.argmax(x), x.dtype) + ns.astype(ns.argmin(x, axis=0), x.dtype),
                   [(3, 4)]),
    "any_all": (lambda ns, x: ns.astype(ns.any(x > 1.0), x.dtype) + ns.astype(ns.all(x > -3.0, axis=1), x.dtype),
                [(2, 3)]),
    "getitem": (lambda ns, x: x[1:, ::2] * x[0, None, ...][..., :2], [(3, 4)]),
    "getitem_int_array": (lambda ns, x: x[:, 1][ns.asarray([0, 1, 0])][:, None] * x[1:, :], [(4, 2)]),
    "getitem_mask_index_2d": (lambda ns, x: x[ns.asarray([True, False, True])] * x[:, 0][ns.asarray([[0], [2]])],
                              [(3, 2)]),  # (a shared mask, a 2-d index: array_api_strict takes neither beside a slice)
    "setitem": (lambda ns, x, v: _setitem(ns, x, v), [(3, 4), (4,)]),
    "take_sort": (lambda ns, x: ns.take(x, ns.asarray([1, 0, 1]), axis=1) + ns.sort(x, axis=1)[:, :3], [(2, 4)]),
    "take_along_argsort": (lambda ns, x: ns.take_along_axis(x, ns.argsort(x, axis=0), axis=0), [(3, 2)]),
    "reshape_permute": (lambda ns, x: ns.permute_dims(ns.reshape(x, (2, 3, 2)), (2, 0, 1)), [(3, 4)]),
    "expand_squeeze_flip": (lambda ns, x: ns.squeeze(ns.expand_dims(ns.flip(x), axis=1), axis=1), [(3, 2)]),
    "moveaxis_roll": (lambda ns, x: ns.roll(ns.moveaxis(x, 0, -1), 1, axis=0) + ns.roll(x.mT, 2), [(2, 3)]),
    "broadcast_tile": (lambda ns, x: ns.broadcast_to(x, (2, 3)) + ns.tile(x, (2, 1))[:2, :], [(3,)]),
    "concat_stack": (lambda ns, x, y: ns.concat([x, y, x], axis=0) + ns.reshape(ns.stack([y, x, y], axis=1), (6,)),
                     [(2,), (2,)]),
    "tril_triu": (lambda ns, x: ns.tril(x, k=-1) + ns.triu(x) * 2.0, [(3, 3)]),
    "matmul_shapes": (lambda ns, x, v: (x @ v, v @ x, x @ x.mT, v @ v), [(3, 3), (3,)]),
    "tensordot_vecdot": (lambda ns, x, y: ns.tensordot(x, y, axes=1) + ns.vecdot(x, x)[:, None], [(2, 3), (3, 2)]),
    "outer_trace_diagonal": (lambda ns, x, y: ns.linalg.outer(x, y) * ns.linalg.trace(ns.linalg.outer(x, y))
                             + ns.linalg.diagonal(ns.linalg.outer(y, x))[:, None], [(3,), (3,)]),
    "fft": (lambda ns, x: (ns.fft.fft(ns.astype(x, ns.complex128)), ns.fft.rfftn(x, axes=(0,)),
                           ns.fft.ifftn(ns.astype(x, ns.complex128), s=(4,), axes=(-1,)), ns.fft.fftshift(x, axes=1),
                           ns.fft.irfft(ns.fft.rfft(x, axis=0), n=3, axis=0)), [(3, 4)]),
    "special": (lambda ns, x, y: ns.special.erf(x) * ns.special.expit(y) + ns.special.polygamma(1, ns.exp(x)),
                [(2, 3), (3,)]),
    "cholesky": (lambda ns, a: ad.linalg.cholesky(_spd(ns, a)), [(3, 3)]),
    "cross": (lambda ns, x, y: ad.linalg.cross(x, y), [(2, 3), (3,)]),
    "det_slogdet": (lambda ns, a: (ad.linalg.det(a), *ad.linalg.slogdet(a)), [(3, 3)]),
    "eigh": (lambda ns, a: _eigh(ns, _spd(ns, a)), [(3, 3)]),
    "eigvalsh": (lambda ns, a: ad.linalg.eigvalsh(_spd(ns, a), UPLO="U"), [(4, 4)]),
    "inv_solve": (lambda ns, a, b: (ad.linalg.inv(a), ad.linalg.solve(a, b), ad.linalg.solve(a, b[:, None])),
                  [(3, 3), (3,)]),
    "lu_factor_lu": (lambda ns, a: (*ad.linalg.lu_factor(a), *ad.linalg.lu(a)), [(3, 4)]),
    "norms": (lambda ns, a: (ad.linalg.matrix_norm(a), ad.linalg.matrix_norm(a, ord=2),
                             ad.linalg.vector_norm(a, ord=1, axis=0)), [(3, 2)]),
    "matrix_power_rank_pinv": (lambda ns, a: (ad.linalg.matrix_power(a, 3), ad.linalg.matrix_power(a, 0),
                                              ad.linalg.matrix_rank(a), ad.linalg.pinv(a)), [(3, 3)]),
    "qr": (lambda ns, a: (*_signed_qr(ad.linalg.qr(a)), ad.linalg.qr(a, mode="r")), [(4, 3)]),
    "solve_triangular_product": (lambda ns, a, b: (ad.linalg.solve_triangular(a + 4 * ns.eye(3), b, lower=True),
                                                   ad.linalg.solve_triangular(a + 4 * ns.eye(3), b[:, 0], trans=1),
                                                   ad.linalg.triangular_product(a, b)), [(3, 3), (3, 2)]),
    "svd": (lambda ns, a: (*_signed_svd(ad.linalg.svd(a, full_matrices=False)), ad.linalg.svdvals(a)), [(4, 3)]),
}


def _setitem(ns, x, v):
    y = ns.asarray(x, copy=True)
    y[1, :] = v
    y[0, :2] = 0.0
    return y * 1.0


def _eigh(ns, a):
    w, v = ad.linalg.eigh(a)
    return w, v * ns.sign(v[..., :1, :])  # the gauge: first row positive


def _signed_qr(qr):
    q, r = qr
    return q, r  # LAPACK's signs, the same for a matrix alone or in a batch


def _signed_svd(usv):
    u, s, vh = usv
    sign = u[..., :1, :] / abs(u[..., :1, :])
    return u * sign, s, vh * sign.mT


def _leaves_close(backend, got, want, rtol=1e-10, atol=1e-12):
    got_leaves, got_spec = optree.tree_flatten(got)
    want_leaves, want_spec = optree.tree_flatten(want)
    assert got_spec == want_spec
    for g, w in zip(got_leaves, want_leaves):
        assert tuple(g.shape) == tuple(w.shape)
        np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(w), rtol=rtol, atol=atol)


def _loop(backend, f, args, in_axes):
    """Stack f's results example by example (each example taken with a plain slice)."""
    results = []
    for i in range(B):
        example = [a if axis is None else backend.to_numpy(a).take(i, axis=axis) for a, axis in zip(args, in_axes)]
        results.append(f(*[a if axis is None else backend.asarray(a) for a, axis in zip(example, in_axes)]))
    leaves = [optree.tree_leaves(r) for r in results]
    spec = optree.tree_structure(results[0])
    return optree.tree_unflatten(spec, [backend.asarray(np.stack([backend.to_numpy(r[k]) for r in leaves]))
                                        for k in range(len(leaves[0]))])


@pytest.mark.parametrize("name", list(CASES))
def test_vmap_matches_a_loop(backend, name):
    fn, shapes = CASES[name]
    ns = backend.ns
    f = lambda *args: fn(ns, *args)  # noqa: E731
    args = [backend.random((B, *shape), seed=k) for k, shape in enumerate(shapes)]
    copies = [backend.to_numpy(a).copy() for a in args]
    _leaves_close(backend, ad.vmap(f)(*args), _loop(backend, f, args, [0] * len(args)))
    for a, c in zip(args, copies):  # nothing the user passed is modified
        np.testing.assert_array_equal(backend.to_numpy(a), c)


def test_in_axes_and_out_axes(backend):
    ns = backend.ns
    x = backend.random((4, B, 2))  # mapped along axis 1 (and -2)
    y = backend.random((2,), seed=1)  # shared
    f = lambda d: {"s": ns.sin(d["x"]) @ d["y"], "t": d["y"] * 2.0}  # noqa: E731
    out = ad.vmap(f, in_axes=({"x": 1, "y": None},), out_axes={"s": 1, "t": None})({"x": x, "y": y})
    want = _loop(backend, lambda x_: ns.sin(x_) @ y, [x], [1])
    _leaves_close(backend, out["s"], ns.permute_dims(want, (1, 0)))
    _leaves_close(backend, out["t"], y * 2.0)
    same = ad.vmap(lambda a, b: a + b, in_axes=(-2, None), out_axes=-1)(x, y)
    assert tuple(same.shape) == (4, 2, B)
    made = ad.vmap(lambda: ns.ones(2), axis_size=5)()  # nothing mapped: broadcast to axis_size
    assert tuple(made.shape) == (5, 2)


def test_vmap_of_vmap_matches_a_double_loop(backend):
    x = backend.random((B, 2, 3, 3))
    f = lambda a: ad.linalg.det(a) * ad.linalg.inv(a)  # noqa: E731
    out = ad.vmap(ad.vmap(f), in_axes=1)(backend.asarray(np.moveaxis(backend.to_numpy(x), 0, 1)))
    want = np.stack([np.stack([np.linalg.det(a) * np.linalg.inv(a) for a in row]) for row in backend.to_numpy(x)])
    np.testing.assert_allclose(backend.to_numpy(out), want, rtol=1e-10)


def _logdet_mix(ns, a):
    return ad.linalg.slogdet(_spd(ns, a))[1] + ns.sum(ad.linalg.eigvalsh(_spd(ns, a)) ** 2)


def test_vmap_of_jvp_and_jvp_of_vmap(backend):
    ns = backend.ns
    x, t = backend.random((B, 3, 3)), backend.random((B, 3, 3), seed=1)
    f = lambda a: _logdet_mix(ns, a)  # noqa: E731
    per_point = [ad.jvp(f, (backend.asarray(a),), (backend.asarray(b),))
                 for a, b in zip(backend.to_numpy(x), backend.to_numpy(t))]
    want_out = np.stack([backend.to_numpy(o) for o, _ in per_point])
    want_tan = np.stack([backend.to_numpy(d) for _, d in per_point])
    out, tan = ad.vmap(lambda a, b: ad.jvp(f, (a,), (b,)))(x, t)  # batched primals: the rules run once on all
    np.testing.assert_allclose(backend.to_numpy(out), want_out, rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(tan), want_tan, rtol=1e-9)
    out, tan = ad.jvp(ad.vmap(f), (x,), (t,))
    np.testing.assert_allclose(backend.to_numpy(out), want_out, rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(tan), want_tan, rtol=1e-9)
    # many directions at one point: the factorisations once (the point closed over, or passed unmapped)
    out, tan = ad.vmap(lambda b: ad.jvp(f, (x[0, ...],), (b,)))(t)
    np.testing.assert_allclose(backend.to_numpy(tan)[0], want_tan[0], rtol=1e-9)
    tan = ad.vmap(lambda b, a: ad.jvp(f, (a,), (b,))[1], in_axes=(0, None))(t, x[0, ...])
    np.testing.assert_allclose(backend.to_numpy(tan)[0], want_tan[0], rtol=1e-9)


def test_scan_under_vmap_and_jvp(backend):
    ns = backend.ns

    def f(c0, xs, w):
        def step(c, x):
            c = ns.tanh(w @ c + x)
            return c, ns.sum(c)
        return ad.scan(step, c0, xs)

    c0, xs, w = backend.random((B, 2)), backend.random((B, 5, 2), seed=1), backend.random((2, 2), seed=2)
    _leaves_close(backend, ad.vmap(f, in_axes=(0, 0, None))(c0, xs, w),
                  _loop(backend, f, [c0, xs, w], [0, 0, None]))
    # batched carry from a closed-over batched value only (init shared), and reverse
    g = lambda w_: ad.scan(lambda c, x: (ns.sin(w_ @ c) + x, c[0]), c0[0, ...], xs[0, ...],
                                   reverse=True)  # noqa: E731
    ws = backend.random((B, 2, 2), seed=3)
    _leaves_close(backend, ad.vmap(g)(ws), _loop(backend, g, [ws], [0]))
    # jvp of the vmapped scan against the loop of jvps
    t = backend.random((B, 2), seed=4)
    _, tan = ad.jvp(ad.vmap(f, in_axes=(0, 0, None)), (c0, xs, w), (t, None, None))
    want = _loop(backend, lambda c, d, x: ad.jvp(f, (c, x, w), (d, None, None))[1], [c0, t, xs], [0, 0, 0])
    _leaves_close(backend, tan[0], want[0], rtol=1e-9)


def test_scan_of_length_zero_under_vmap(backend):
    """init back and empty ys of each example's shape and dtype, as a loop of length-0 scans gives."""
    ns = backend.ns

    def f(c0, xs, w):
        return ad.scan(lambda c, x: (ns.tanh(w @ c + x), (ns.sum(c), c * 2.0)), c0, xs)

    c0, xs, w = backend.random((B, 2)), backend.asarray(np.zeros((B, 0, 2))), backend.random((2, 2), seed=2)
    for in_axes in [(0, 0, None), (0, None, None)]:
        got = ad.vmap(f, in_axes=in_axes)(c0, xs if in_axes[1] == 0 else xs[0, ...], w)
        want = _loop(backend, f, [c0, xs, w], [0, 0, None])
        _leaves_close(backend, got, want)
        assert [tuple(leaf.shape) for leaf in got[1]] == [(B, 0), (B, 0, 2)]


def test_bad_input_names_the_argument_and_the_fix(backend):
    ns = backend.ns
    x, y = backend.random((B, 2)), backend.random((B + 1, 2))
    with pytest.raises(ValueError, match=r"different sizes \(args\[0\]: 3, args\[1\]: 4\)"):
        ad.vmap(lambda a, b: a + b)(x, y)
    with pytest.raises(ValueError, match=r"in_axes 2 for args\[0\] is out of range"):
        ad.vmap(lambda a: a, in_axes=2)(x)
    with pytest.raises(ValueError, match="in_axes has 1 entries but the function got 2"):
        ad.vmap(lambda a, b: a, in_axes=(0,))(x, x)
    with pytest.raises(ValueError, match="pytree prefix"):
        ad.vmap(lambda d: d["a"], in_axes=({"b": 0},))({"a": x})
    with pytest.raises(ValueError, match="out_axes is None for output"):
        ad.vmap(lambda a: a * 2.0, out_axes=None)(x)
    with pytest.raises(ValueError, match="out_axes 3 for output is out of range"):
        ad.vmap(lambda a: a, out_axes=3)(x)
    with pytest.raises(TypeError, match=r"output\[1\] is a str"):
        ad.vmap(lambda a: (a, "no"))(x)
    with pytest.raises(TypeError, match=r"output\[1\] is a float \(a constant: return xp.asarray"):
        ad.vmap(lambda a: (a, 2.0))(x)
    with pytest.raises(TypeError, match=r"args\[1\] is a float.*in_axes None"):
        ad.vmap(lambda a, s: a * s)(x, 2.0)
    with pytest.raises(ValueError, match="axis_size"):
        ad.vmap(lambda a: a, in_axes=None)(x)

    def branchy(a):
        if ns.sum(a) > 0:  # Python control flow on a mapped value
            return a
        return -a

    with pytest.raises(TypeError, match=r"bool\(\) of a value inside vmap.*xp.where"):
        ad.vmap(branchy)(x)
    with pytest.raises(TypeError, match=r"conversion to a NumPy array \(np.asarray in f; a NumPy array indexed"):
        ad.vmap(lambda a: np.asarray(a))(x)
    with pytest.raises(NotImplementedError, match=r"x\[mask\] with a mask that differs.*xp.where\(mask, x, 0\)"):
        ad.vmap(lambda a: a[a > 0])(x)
    assert ad.vmap(lambda a, s: a * s, in_axes=(0, None))(x, 2.0).shape == (B, 2)


def test_value_sized_outputs_are_refused_saying_what_to_write_instead(backend):
    """nonzero and unique_* size their output by each example's values: no batching rule can exist, so
    the refusal says how to keep the size fixed (not to write one with def_batch)."""
    ns = backend.ns
    x = backend.asarray(np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]]))
    for f, fix in ((lambda a: ns.nonzero(a)[0], r"the mask itself \(x != 0"),
                   (lambda a: ns.unique_values(a), r"unique_all \(unique_values.*xp.sort")):
        with pytest.raises(NotImplementedError, match=fix) as refusal:
            ad.vmap(f)(x)
        assert "def_batch" not in str(refusal.value) and "outside vmap" in str(refusal.value)
    shared = ad.vmap(lambda a, b: ns.nonzero(b)[0] + a, in_axes=(0, None))  # (a shared input stays allowed)
    np.testing.assert_array_equal(np.asarray(shared(backend.asarray(np.arange(2)), x[0, ...])), [[1, 2], [2, 3]])



def test_a_shared_mask_of_another_shape_is_refused_as_eager_indexing_refuses_it(backend):
    """x[mask] with a shared mask was a take on the flattened leading dimensions: a mask of another shape
    with as many entries (3 x 2 on 2 x 3 examples) selected entries silently, where x[mask] raises."""
    x = backend.random((B, 2, 3))
    mask = backend.asarray(np.array([[True, False], [False, True], [True, True]]))
    with pytest.raises(IndexError, match=r"boolean index of shape \(3, 2\) does not match.*\(2, 3\)"):
        ad.vmap(lambda a: a[mask])(x)
    good = backend.asarray(np.array([[True, False, True], [False, True, True]]))
    np.testing.assert_array_equal(backend.to_numpy(ad.vmap(lambda a: a[good])(x)),
                                  backend.to_numpy(x)[:, backend.to_numpy(good)])

def test_stacked_tangents_to_jvp_point_to_vmap(backend):
    x = backend.random((2, 2))
    with pytest.raises(ValueError, match=r"stack of 4 tangents.*ad.vmap.*ad.jacfwd"):
        ad.jvp(lambda a: a * 2.0, (x,), (backend.random((4, 2, 2)),))


@pytest.mark.parametrize("left, lower, trans, unit", [(True, True, 0, False), (True, False, 2, True),
                                                      (False, True, 1, True), (False, False, 0, False)])
def test_large_shared_operands_fold_into_one_product(backend, left, lower, trans, unit):
    """From 32 columns on a batch of triangles (or of right-hand sides) times one shared matrix runs as
    one GEMM (or one triangular call): the same numbers as the loop."""
    ns = backend.ns
    n = 32
    t, shared = backend.random((B, n, n)), backend.random((n, n), seed=1)
    triangular = lambda a, b: ad.linalg.triangular_product(a, b, left=left, lower=lower, trans=trans,  # noqa: E731
                                                           unit_diagonal=unit)
    _leaves_close(backend, ad.vmap(triangular, in_axes=(0, None))(t, shared),
                  _loop(backend, triangular, [t, shared], [0, None]), rtol=1e-9, atol=1e-10)
    _leaves_close(backend, ad.vmap(triangular, in_axes=(None, 0))(shared, t),
                  _loop(backend, triangular, [shared, t], [None, 0]), rtol=1e-9, atol=1e-10)
    solve = lambda a, b: ad.linalg.solve_triangular(a + 8.0 * ns.eye(n), b, lower=lower, trans=trans)  # noqa: E731
    _leaves_close(backend, ad.vmap(solve, in_axes=(None, 0))(shared, t),
                  _loop(backend, solve, [shared, t], [None, 0]), rtol=1e-9, atol=1e-10)
    product = lambda a, b: a @ b  # noqa: E731
    for args, in_axes in (([t, shared], [0, None]), ([shared, t], [None, 0])):
        _leaves_close(backend, ad.vmap(product, in_axes=tuple(in_axes))(*args), _loop(backend, product, args, in_axes),
                      rtol=1e-9, atol=1e-10)


def test_keywords_none_and_axis_size_as_jax(backend):
    """Keyword arguments are mapped over axis 0 and None is an empty subtree (both used to raise: the
    keyword with a message naming the user's function), a bad axis_size is refused (was truncated)."""
    x, w = backend.random((B, 2)), backend.random((B, 1), seed=1)
    got = ad.vmap(lambda a, scale=None, mask=None: a * scale)(x, scale=w, mask=None)
    np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(x) * backend.to_numpy(w))
    assert ad.vmap(lambda a, b: a)(x, None).shape == (B, 2)
    assert ad.vmap(lambda d: d["a"])({"a": x, "b": None}).shape == (B, 2)
    with pytest.raises(ValueError, match=r"different sizes \(args\[0\]: 3, kwargs\['scale'\]: 2\)"):
        ad.vmap(lambda a, scale: a * scale)(x, scale=backend.random((2,)))
    for bad in (2.5, -1, True):
        with pytest.raises(ValueError, match=f"axis_size must be a non-negative int.*got {bad}"):
            ad.vmap(lambda a: a, in_axes=None, axis_size=bad)(x)



def test_a_keyword_argument_that_cannot_be_mapped_is_told_to_go_positional(backend):
    """Keyword arguments are mapped over axis 0 and take no in_axes: the messages said to give them
    in_axes None, which a keyword argument cannot have."""
    x = backend.random((B, 2))
    for shared in (2.0, backend.asarray(np.float64(2.0))):
        with pytest.raises((TypeError, ValueError), match=r"kwargs\['s'\].*pass it positionally with in_axes None"):
            ad.vmap(lambda a, s: a * s)(x, s=shared)

def test_an_output_shared_by_every_example_is_an_array_of_its_own(backend):
    """An unmapped output stacked by out_axes was a broadcast view (NumPy: read-only; CuPy: one write
    reaches every example); now a stack as a loop gives."""
    shared = backend.random((3,))
    out = ad.vmap(lambda a: (a, shared))(backend.random((B, 2)))[1]
    out[0, 0] = 5.0
    want = np.stack([backend.to_numpy(shared)] * B)
    want[0, 0] = 5.0
    np.testing.assert_array_equal(backend.to_numpy(out), want)



def test_an_output_shared_by_every_example_is_an_array_of_its_own_under_jit(backend):
    """Under jit the unmapped output stayed a broadcast view (a jit value is a ``Recorded``: it took the
    path of an enclosing transform's values), in the recording call and in every replay."""
    f = ad.jit(lambda a: ad.vmap(lambda: a * 2.0, axis_size=B)())
    for _ in range(2):  # the recording call, then a replay
        shared = backend.random((3,))
        out = f(shared)
        out[0, 0] = 5.0
        want = np.stack([2.0 * backend.to_numpy(shared)] * B)
        want[0, 0] = 5.0
        np.testing.assert_array_equal(backend.to_numpy(out), want)

def _scan_body(ns):
    return lambda c, x: (c * 0.9 + ns.sin(x) * c, c * x)


JAX_CASES = {  # name -> (the mapped function from (namespace, vmap, scan), inputs from a generator)
    "dict_prefix_out_dict": (
        lambda ns, vmap, scan: vmap(lambda d: {"p": d["a"] @ d["b"], "q": d["b"] * 2.0},
                                    in_axes=({"a": 0, "b": None},), out_axes={"p": -1, "q": None}),
        lambda rng: ({"a": rng.standard_normal((B, 2, 3)), "b": rng.standard_normal(3)},)),
    "negative_axes_nested": (
        lambda ns, vmap, scan: vmap(vmap(lambda a, b: ns.sin(a) * b, in_axes=(1, None), out_axes=1),
                                    in_axes=(-1, 0), out_axes=0),
        lambda rng: (rng.standard_normal((2, 4, B)), rng.standard_normal((B,)))),
    "tuple_prefix_none_leaf": (
        lambda ns, vmap, scan: vmap(lambda p, s: (p[0] @ p[1], s * p[1]), in_axes=((0, None), None),
                                    out_axes=(0, 1)),
        lambda rng: ((rng.standard_normal((B, 2, 3)), rng.standard_normal(3)), 1.5)),
    "scan_batched_carry": (
        lambda ns, vmap, scan: vmap(lambda c, xs: scan(_scan_body(ns), c, xs), in_axes=(0, 1)),
        lambda rng: (rng.standard_normal((B, 2)), rng.standard_normal((4, B, 2)))),
}


@pytest.mark.parametrize("name", list(JAX_CASES))
def test_against_jax(backend, name):
    """in_axes / out_axes prefixes (dicts, tuples, None leaves, negative axes), nesting and scan under vmap
    give JAX's structure, shapes and values."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    build, make_inputs = JAX_CASES[name]
    inputs = make_inputs(np.random.default_rng(5))
    ours = build(backend.ns, ad.vmap, ad.scan)(*optree.tree_map(
        lambda a: backend.asarray(a) if isinstance(a, np.ndarray) else a, inputs))
    theirs = build(jax.numpy, jax.vmap, jax.lax.scan)(*inputs)
    theirs = optree.tree_map(lambda a: backend.asarray(np.asarray(a)), theirs)
    _leaves_close(backend, ours, theirs, rtol=1e-12, atol=1e-14)


def test_masked_write_with_a_shared_mask(backend):
    """d[mask] = value under vmap with the mask shared by the examples (jacfwd's: the primal's): the batching
    rule put a full slice before the mask, which array_api_strict refuses (a mask only as the sole index)."""
    ns = backend.ns
    x0 = np.array([[1.0, -2.0, 3.0], [-1.0, 4.0, 0.5]])
    x = backend.asarray(x0)

    def f(x):
        d = ns.zeros_like(x)
        d[x > 0] = x[x > 0] ** 2
        return d

    np.testing.assert_array_equal(backend.to_numpy(ad.jacfwd(f)(x)), np.diag((2.0 * x0 * (x0 > 0)).ravel()).reshape(
        2, 3, 2, 3))

    def g(x, v, s):
        d = ns.ones_like(x)
        d[x > 0, ...] = v  # per-example values of the masked entries' count
        e = ns.ones_like(x)
        e[x > 0] = s  # a per-example scalar
        d[x < 0] = -1.0  # a Python number
        e[x < 0] = ns.asarray([-2.0, -3.0])[:1]  # a shared array
        return d, e

    v0, s0 = np.arange(8.0).reshape(2, 4), np.array([5.0, 6.0])
    outs = ad.vmap(g, in_axes=(None, 0, 0))(x, backend.asarray(v0), backend.asarray(s0))
    for k in range(2):
        want_d, want_e = np.ones_like(x0), np.ones_like(x0)
        want_d[x0 > 0], want_e[x0 > 0] = v0[k], s0[k]
        want_d[x0 < 0], want_e[x0 < 0] = -1.0, -2.0
        np.testing.assert_array_equal(backend.to_numpy(outs[0])[k], want_d)
        np.testing.assert_array_equal(backend.to_numpy(outs[1])[k], want_e)


def _write_through_mask(x, m, v):
    x[m] = v * 2.0
    return x


def test_masked_write_with_a_mask_of_each_example(backend):
    """x[mask] = v with a mask that differs from example to example raised NotImplementedError: it is a where
    (v broadcast against one entry). Against a loop of NumPy over the examples, values and tangents."""
    rng = np.random.default_rng(3)
    x0, dx0 = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    rows, entries = rng.random((3, 4)) > 0.5, rng.random((3, 4, 2)) > 0.5
    x, dx = backend.asarray(x0), backend.asarray(dx0)
    loop = lambda f, *args: np.stack([f(*(a[k].copy() for a in args)) for k in range(3)])  # noqa: E731
    for mask, entry in [(rows, (2,)), (entries, ())]:  # v: one entry's shape
        v0, dv0 = rng.standard_normal((3, *entry)), rng.standard_normal((3, *entry))
        m, v, dv = backend.asarray(mask), backend.asarray(v0), backend.asarray(dv0)
        np.testing.assert_array_equal(backend.to_numpy(ad.vmap(_write_through_mask)(x, m, v)),
                                      loop(_write_through_mask, x0, mask, v0))
        out, slope = ad.jvp(lambda x, v: ad.vmap(_write_through_mask)(x, m, v), (x, v), (dx, dv))
        np.testing.assert_array_equal(backend.to_numpy(out), loop(_write_through_mask, x0, mask, v0))
        np.testing.assert_array_equal(backend.to_numpy(slope), loop(_write_through_mask, dx0, mask, dv0))
    m, one = backend.asarray(rows), rng.standard_normal((1, 2))  # one entry's value as x[mask]'s (1, 2), shared
    shared = ad.vmap(_write_through_mask, in_axes=(0, 0, None))(x, m, backend.asarray(one))
    np.testing.assert_array_equal(backend.to_numpy(shared), loop(lambda x, m: _write_through_mask(x, m, one), x0, rows))
    number = ad.vmap(lambda x, m: _write_through_mask(x, m, 1.5))(x, m)
    np.testing.assert_array_equal(backend.to_numpy(number), loop(lambda x, m: _write_through_mask(x, m, 1.5), x0, rows))
    with pytest.raises(NotImplementedError, match=r"a value for each selected entry.*shape of one entry, \(2,\)"):
        ad.vmap(_write_through_mask)(x, m, backend.asarray(rng.standard_normal((3, 2, 2))))
    with pytest.raises(IndexError, match="boolean index of shape"):
        ad.vmap(_write_through_mask, in_axes=(0, 0, None))(x, backend.asarray(rng.random((3, 2)) > 0.5), 1.0)


def test_masked_write_with_a_mask_of_each_example_against_jax():
    """The same against JAX, which has no x[mask] = v on a traced mask: its where, under vmap and jvp."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(4)
    x, dx, v, dv = (rng.standard_normal(s) for s in ((5, 3, 2), (5, 3, 2), (5, 2), (5, 2)))
    m = rng.random((5, 3)) > 0.3

    def theirs(x, v):
        return jax.vmap(lambda x, m, v: jax.numpy.where(m[:, None], v * 2.0, x))(x, m, v)

    out, slope = ad.jvp(lambda x, v: ad.vmap(_write_through_mask)(x, m, v), (x, v), (dx, dv))
    want, want_slope = jax.jvp(theirs, (x, v), (dx, dv))
    np.testing.assert_array_equal(out, np.asarray(want))
    np.testing.assert_array_equal(slope, np.asarray(want_slope))


def test_masked_write_with_a_mask_of_each_example_casts_v_only():
    """x[mask] = v (a mask of each example's own) casts v to x's dtype, as NumPy's write: it promoted x with v in
    the where and cast back, so the entries the mask leaves changed where x's dtype does not fit in the promoted
    one (int64 2**53 + 1 through float64: 2**53), silently; and a Python NaN into integers, a complex into reals,
    which NumPy's write refuses, were cast (garbage, the imaginary part dropped)."""
    m = np.array([[True, False, True], [False, True, False]])
    loop = lambda f, x, *args: np.stack([f(x[k].copy(), m[k], *(a[k] for a in args)) for k in range(2)])  # noqa: E731
    for x, v in [(np.full((2, 3), 2**53 + 1, np.int64), np.array([0.5, -2.5])),
                 (np.full((2, 3), 2**63 + 1, np.uint64), np.array([1, 2], np.uint64))]:
        np.testing.assert_array_equal(ad.vmap(_write_through_mask)(x, m, v), loop(_write_through_mask, x, v))
        number = lambda x, m: _write_through_mask(x, m, 0.75)  # noqa: E731
        np.testing.assert_array_equal(ad.vmap(number)(x, m), loop(number, x))
    with pytest.raises(ValueError, match="NaN"):
        ad.vmap(lambda x, m: _write_through_mask(x, m, np.nan))(np.zeros((2, 3), np.int64), m)
    with pytest.raises(TypeError):
        ad.vmap(lambda x, m: _write_through_mask(x, m, 1j))(np.zeros((2, 3)), m)


def test_vmap_of_a_jvp_with_an_integer_output(backend):
    """An integer output's tangent is a symbolic zero (JAX: float0); vmap refused it ("output is a Zero").
    It now has the examples' axis, where out_axes puts it; the other outputs match a loop."""
    ns = backend.ns
    x0, d0 = np.array([1.0, -2.0, 3.0]), np.arange(6.0).reshape(2, 3)

    def f(x):
        return ns.astype(x > 0, ns.int64), ns.sin(x)

    def directions(d):
        return ad.jvp(f, (backend.asarray(x0),), (d,))

    for out_axes, shape in ((0, (2, 3)), (1, (3, 2))):
        (labels, values), (zero, slopes) = ad.vmap(directions, out_axes=out_axes)(backend.asarray(d0))
        assert type(zero) is ad.Zero and zero.shape == shape and zero.dtype == labels.dtype
        assert tuple(labels.shape) == shape
        for k in range(2):
            index = (k, ...) if out_axes == 0 else (slice(None), k)
            np.testing.assert_allclose(backend.to_numpy(slopes)[index], np.cos(x0) * d0[k], rtol=1e-15)
            np.testing.assert_array_equal(backend.to_numpy(labels)[index], x0 > 0)
    nested = ad.jvp(ad.vmap(lambda x: ad.jvp(f, (x,), (x,))), (backend.asarray(d0),), (backend.asarray(d0),))
    assert type(nested[1][1][0]) is ad.Zero and nested[1][1][0].shape == (2, 3)  # the zero's own tangent
