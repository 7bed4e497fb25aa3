"""vmap and jit with weakly typed Python scalars (namespace.weak), and vmap with NumPy's protocols
(np.sin(x) on a mapped value): each against a Python loop over the examples or eager jvp."""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.namespace.numpy_protocols import NoArrayMethodError

B = 3


def _xs(backend):
    return backend.asarray(np.linspace(0.5, 1.5, B * 4).reshape(B, 4), dtype=np.float32)


def _stacked_jvps(backend, f, xs, s=1.25):
    """f's jvp in the Python scalar s (tangent 1) at every example of xs, stacked as float64."""
    pairs = [ad.jvp(lambda t, x: f(t, x), (s, backend.asarray(x)), (1.0, None)) for x in backend.to_numpy(xs)]
    return tuple(np.stack([backend.to_numpy(p[k]).astype(np.float64) for p in pairs]) for k in (0, 1))


def _body(t, x):
    xp = x.__array_namespace__()
    return t * x + xp.sin(t) * x ** t - xp.where(x > 1.0, t, x)


def test_weak_scalars_keep_float32_under_vmap(backend):
    xs = _xs(backend)
    want = _stacked_jvps(backend, _body, xs)
    # (the arrays are jvp primals too, with no tangent: that names the backend the scalar joins)
    results = {
        "jvp inside vmap": ad.vmap(lambda x: ad.jvp(_body, (1.25, x), (1.0, None)))(xs),
        "vmap inside jvp": ad.jvp(lambda t, a: ad.vmap(lambda x: _body(t, x))(a), (1.25, xs), (1.0, None)),
        # the weak dual enters vmap unmapped (shared by all examples): it keeps its weak type there
        "weak dual unmapped": ad.jvp(ad.vmap(_body, in_axes=(None, 0)), (1.25, xs), (1.0, None)),
    }
    for name, (value, tangent) in results.items():
        assert value.dtype == xs.dtype and tangent.dtype == xs.dtype, name
        np.testing.assert_allclose(backend.to_numpy(value), want[0], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(backend.to_numpy(tangent), want[1], rtol=1e-5, err_msg=name)
    mapped = ad.vmap(lambda x, t: t * x, in_axes=(0, None))(xs, 2.0)  # a Python scalar unmapped
    assert mapped.dtype == xs.dtype


def test_weak_scalars_keep_float32_through_jit(backend):
    xs = _xs(backend)
    body = lambda t, x: _body(t, x[0, ...])  # noqa: E731
    want = ad.jvp(body, (1.25, xs), (1.0, None))
    jitted = ad.jit(body)
    for _ in range(2):  # the recording call and a replay
        value, tangent = ad.jvp(jitted, (1.25, xs), (1.0, None))
        assert value.dtype == xs.dtype and tangent.dtype == xs.dtype
        np.testing.assert_array_equal(backend.to_numpy(value), backend.to_numpy(want[0]))
        np.testing.assert_array_equal(backend.to_numpy(tangent), backend.to_numpy(want[1]))
    value, tangent = ad.jit(lambda x: ad.jvp(body, (1.25, x), (1.0, None)))(xs)  # jvp inside jit
    assert value.dtype == xs.dtype and tangent.dtype == xs.dtype


def test_numpy_functions_on_mapped_values_match_the_namespace(backend):
    ns = backend.ns
    xs = backend.random((B, 3, 3))
    ts = backend.random((B, 3, 3), seed=1)

    def plain_numpy(a):
        return np.sum(np.sin(a) * np.exp(a), axis=0) + np.linalg.det(a) + np.add.reduce(np.tanh(a), axis=1)

    def with_namespace(a):
        return ns.sum(ns.sin(a) * ns.exp(a), axis=0) + ad.linalg.det(a) + ns.sum(ns.tanh(a), axis=1)

    np.testing.assert_allclose(backend.to_numpy(ad.vmap(plain_numpy)(xs)),
                               backend.to_numpy(ad.vmap(with_namespace)(xs)), rtol=1e-12)
    # and differentiated inside and outside the vmap, against the loop of jvps
    want = np.stack([backend.to_numpy(ad.jvp(with_namespace, (backend.asarray(a),), (backend.asarray(t),))[1])
                     for a, t in zip(backend.to_numpy(xs), backend.to_numpy(ts))])
    inside = ad.vmap(lambda a, t: ad.jvp(plain_numpy, (a,), (t,))[1])(xs, ts)
    outside = ad.jvp(ad.vmap(plain_numpy), (xs,), (ts,))[1]
    np.testing.assert_allclose(backend.to_numpy(inside), want, rtol=1e-10)
    np.testing.assert_allclose(backend.to_numpy(outside), want, rtol=1e-10)


def test_numpy_only_methods_and_arguments_on_mapped_values_fail_clearly(backend):
    xs = backend.random((B, 4))
    with pytest.raises(NoArrayMethodError, match=r"'sum': use xp.sum\(x\)"):
        ad.vmap(lambda x: x.sum())(xs)
    with pytest.raises(TypeError, match=r"np.sin\(..., out=...\) cannot write into an array"):
        ad.vmap(lambda x: np.sin(x, out=np.empty(4)))(xs)
    with pytest.raises(TypeError, match="np.fix has no equivalent"):
        ad.vmap(np.fix)(xs)


def test_repeated_values_refuse_a_batched_or_recorded_tangent_saying_why(backend):
    """The degenerate path of eigh/svd computes on the tangent's entries (not linear there): a vmap
    or linearize value as the tangent is refused with the reason, now that NumPy functions accept it,
    naming the function called."""
    eye = backend.asarray(np.eye(3))
    reason = "at repeated eigen/singular values under vmap, jacfwd or linearize"
    with pytest.raises(TypeError, match="^svdvals " + reason):
        ad.jacfwd(ad.linalg.svdvals)(eye)
    with pytest.raises(TypeError, match="^eigvalsh " + reason):  # (the recording meets the degenerate path)
        ad.linearize(ad.linalg.eigvalsh, eye)
    with pytest.raises(TypeError, match="^eigvalsh " + reason):
        ad.jacfwd(ad.linalg.eigvalsh)(eye)
    with pytest.raises(TypeError, match="^eigh " + reason):
        ad.vmap(lambda t: ad.jvp(ad.linalg.eigh, (eye,), (t,))[1])(backend.asarray(np.stack([np.eye(3)] * 2)))
    with pytest.raises(TypeError, match="^svd " + reason):
        ad.jacfwd(lambda a: ad.linalg.svd(a)[0])(eye)
