"""linearize: the primal once, f_jvp bit-identical to jvp's tangents, no factorisation in f_jvp,
batched tangents through vmap, and bad tangents."""
import importlib

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad import core


def _sym(a):
    return a + a.mT


FUNCTIONS = {
    "lu_factor": lambda ns, a: ad.linalg.lu_factor(a),
    "qr": lambda ns, a: ad.linalg.qr(a),
    "eigh": lambda ns, a: ad.linalg.eigh(_sym(a)),
    "svd": lambda ns, a: ad.linalg.svd(a, full_matrices=False),
    "solve_det_cholesky": lambda ns, a: (ad.linalg.solve(a, a[:, :1]), ad.linalg.det(a),
                                         ad.linalg.cholesky(a @ a.mT + ns.eye(4))),
    "elementwise_scan": lambda ns, a: ad.scan(lambda c, x: (ns.tanh(c @ a) + x, ns.sum(c)), a[0, ...], a),
}


def _flat(backend, tree):
    import optree

    leaves = optree.tree_leaves(tree, is_leaf=lambda v: type(v) is ad.Zero)
    return [(v.shape, v.dtype) if type(v) is ad.Zero else backend.to_numpy(v) for v in leaves]


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_f_jvp_is_jvp_bit_for_bit(backend, name):
    ns = backend.ns
    f = lambda a: FUNCTIONS[name](ns, a)  # noqa: E731
    a = backend.random((4, 4)) + backend.asarray(3.0 * np.eye(4))
    copy = backend.to_numpy(a).copy()
    out, f_jvp = ad.linearize(f, a)
    for seed in (1, 2):
        t = backend.random((4, 4), seed=seed)
        want_out, want_tangent = ad.jvp(f, (a,), (t,))
        for got, want in zip(_flat(backend, f_jvp(t)), _flat(backend, want_tangent), strict=True):
            assert type(got) is type(want)
            if type(got) is np.ndarray:
                np.testing.assert_array_equal(got, want)
            else:  # a symbolic zero (the pivots): shape and dtype
                assert got == want
    for got, want in zip(_flat(backend, out), _flat(backend, want_out), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(backend.to_numpy(a), copy)  # nothing the user passed is modified


@pytest.mark.parametrize("kernel, f", [
    ("lu_factor", lambda a: ad.linalg.lu_factor(a)[0]),
    ("qr", lambda a: ad.linalg.qr(a).R),
    ("eigh", lambda a: ad.linalg.eigh(_sym(a)).eigenvectors),
    ("svd", lambda a: ad.linalg.svd(a, full_matrices=False).U),
])
def test_f_jvp_does_no_factorisation_and_batches_under_vmap(backend, monkeypatch, kernel, f):
    kernels = ad.namespace(backend.name).backend
    calls = []
    original = getattr(kernels, kernel)
    monkeypatch.setattr(kernels, kernel, lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    a = backend.random((4, 4)) + backend.asarray(3.0 * np.eye(4))
    _, f_jvp = ad.linearize(f, a)
    assert len(calls) == 1
    stacked = backend.random((5, 4, 4), seed=3)
    many = ad.vmap(f_jvp)(stacked)
    assert len(calls) == 1
    for k in range(5):
        t = backend.asarray(backend.to_numpy(stacked)[k])
        np.testing.assert_allclose(backend.to_numpy(many)[k], backend.to_numpy(ad.jvp(f, (a,), (t,))[1]),
                                   rtol=1e-10, atol=1e-12)


def test_pytrees_zero_tangents_and_bad_tangents(backend):
    ns = backend.ns
    x, y = backend.random((3,)), backend.random((3,), seed=1)
    f = lambda d, n: {"s": ns.sin(d["x"]) * d["y"], "n": n * 2}  # noqa: E731
    n = backend.asarray(np.arange(3))
    out, f_jvp = ad.linearize(f, {"x": x, "y": y}, n)
    t = f_jvp({"x": backend.random((3,), seed=2), "y": None}, None)
    want = ad.jvp(f, ({"x": x, "y": y}, n), ({"x": backend.random((3,), seed=2), "y": None}, None))[1]
    np.testing.assert_array_equal(backend.to_numpy(t["s"]), backend.to_numpy(want["s"]))
    with pytest.raises(ValueError, match=r"tangent for primals\[0\]\['x'\] has shape \(2,\)"):
        f_jvp({"x": backend.random((2,)), "y": None}, None)
    with pytest.raises(ValueError, match="takes 2 tangents"):
        f_jvp({"x": x, "y": y})


def test_linearize_of_a_mapped_function_and_refusal_inside_vmap(backend):
    ns = backend.ns
    f = lambda a: ad.linalg.eigvalsh(_sym(a)) * ns.sum(a)  # noqa: E731
    xs, ts = backend.random((3, 4, 4)), backend.random((3, 4, 4), seed=1)
    _, f_jvp = ad.linearize(ad.vmap(f), xs)
    np.testing.assert_array_equal(backend.to_numpy(f_jvp(ts)), backend.to_numpy(ad.jvp(ad.vmap(f), (xs,), (ts,))[1]))
    with pytest.raises(NotImplementedError, match=r"ad.linearize\(ad.vmap\(f\), xs\)"):
        ad.vmap(lambda x, t: ad.linearize(f, x)[1](t))(xs, ts)


def test_a_tangent_for_a_constant_primal_is_refused(backend):
    """f_jvp used to drop such a tangent silently (jvp refuses an integer primal's tangent and
    differentiates along a Python float: f_jvp gave a different answer for the latter)."""
    ns = backend.ns
    x = backend.random((3,))
    n = backend.asarray(np.arange(3))
    f = lambda a, n, s: ns.sin(a) * ns.astype(n, a.dtype) * s  # noqa: E731
    _, f_jvp = ad.linearize(f, x, n, 2.0)
    t = backend.random((3,), seed=1)
    np.testing.assert_array_equal(backend.to_numpy(f_jvp(t, None, None)),
                                  backend.to_numpy(ad.jvp(f, (x, n, 2.0), (t, None, None))[1]))
    with pytest.raises(ValueError, match=r"primals\[1\] has integer or boolean dtype.*pass None or ad.Zero"):
        f_jvp(t, n, None)
    with pytest.raises(ValueError, match=r"primals\[2\] is a Python float.*linearize at a 0-d array"):
        f_jvp(t, None, 1.0)
    with pytest.raises(TypeError, match="linearize: f must be callable"):
        ad.linearize(None, x)


def test_tangents_f_jvp_takes_and_refuses_as_jvp_does(backend):
    """A Python number as a tangent (jvp takes it; f_jvp raised AttributeError), a non-array, an array of
    another backend (the message printed two equal-looking dtypes), a stack of tangents (pointed to vmap)."""
    ns = backend.ns
    x = backend.asarray(0.5)
    _, f_jvp = ad.linearize(ns.sin, x)
    np.testing.assert_array_equal(backend.to_numpy(f_jvp(2.0)), backend.to_numpy(ad.jvp(ns.sin, (x,), (2.0,))[1]))
    with pytest.raises(TypeError, match=r"tangent for primals\[0\] must be an array, got list"):
        f_jvp([1.0])
    other = "numpy" if backend.name != "numpy" else "array_api_strict"
    with pytest.raises(ValueError, match=f"tangent for primals\\[0\\] is a {other} array but the primal is"):
        f_jvp(ad.namespace(other).asarray(1.0))
    _, f_jvp = ad.linearize(ns.sin, backend.random((3,)))
    with pytest.raises(ValueError, match=r"for a stack of 4 tangents use ad.vmap\(f_jvp\)\(stacked\)"):
        f_jvp(backend.random((4, 3)))


def test_has_aux_as_jax_and_only_needed_tangent_work(backend, monkeypatch):
    """linearize(f, *primals, has_aux=True) -> (out, f_jvp, aux) as in JAX (the keyword was refused); f_jvp
    replays only the tangent work its outputs need (the aux's, here a sum, is not replayed)."""
    module = importlib.import_module("cupy_ad.transforms.linearize")
    ns = backend.ns
    a, t = backend.random((3, 3)) + backend.asarray(3.0 * np.eye(3)), backend.random((3, 3), seed=1)
    f = lambda m: (ad.linalg.inv(m) * 2.0, ns.sum(m))  # noqa: E731
    out, f_jvp, aux = ad.linearize(f, a, has_aux=True)
    want_out, want_tangent = ad.jvp(lambda m: f(m)[0], (a,), (t,))
    np.testing.assert_array_equal(backend.to_numpy(out), backend.to_numpy(want_out))
    np.testing.assert_array_equal(backend.to_numpy(aux), backend.to_numpy(ns.sum(a)))
    replayed = []
    monkeypatch.setattr(module, "bind", lambda prim, *args, **params: replayed.append(prim.name) or core.bind(
        prim, *args, **params))
    np.testing.assert_array_equal(backend.to_numpy(f_jvp(t)), backend.to_numpy(want_tangent))
    assert replayed and "sum" not in replayed, replayed
    with pytest.raises(TypeError, match="has_aux=True f must return a pair.*got an array"):
        ad.linearize(ns.sin, a, has_aux=True)


def test_a_finished_recording_is_named_by_its_transform():
    """``values.program_of`` (a recording's program, looked up from one of its values) names the transform
    whose call has finished: it said "jit" for a linearize value too."""
    from cupy_ad import values

    finished = max(values.LEVELS.alive, default=0) + 10**6  # (levels are never reused: none runs)
    for value, name in [(values.Recorded(finished, np.zeros(2), values.Var(0)), "linearize"),
                        (values.JitTraced(finished, np.zeros(2), 0), "jit")]:
        with pytest.raises(ValueError, match=f"a value from a finished {name} call was used"):
            values.program_of(value)
