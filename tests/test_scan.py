"""scan: jax.lax.scan semantics, exact JVPs (nested too), the tangent-pattern fixed point, the
zero-work guarantee for carries that never meet a tangent, preallocated outputs and bad input."""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import optree
import pytest
from hypothesis import given, settings, strategies as st

import cupy_ad as ad
from conftest import BACKENDS, Backend
import cupy_ad.scan_loop as scan_module
from cupy_ad.values import Dual, active_levels
from cupy_ad.namespace import elementwise
from cupy_ad.scan_loop import FixedPointError, scan
from cupy_ad.testing import random_tangents

Pair = namedtuple("Pair", "u v")


def _scalar(backend, value):
    """A 0-d array (not through backend.asarray: the generic backend's from_numpy makes 0-d arrays 1-d)."""
    return backend.xp.asarray(value)


def _tol(dtype):
    return {"rtol": 5e-3, "atol": 5e-4} if dtype in (np.float32, np.complex64) else {}


def _python_loop(f, init, xs, length=None, reverse=False, ns=None, empty=None):
    """The reference: a hand-written loop with a final stack (``empty``: the ys of length 0)."""
    length = length if xs is None else optree.tree_leaves(xs)[0].shape[0]
    if length == 0:
        return init, empty
    order = range(length - 1, -1, -1) if reverse else range(length)
    carry, ys = init, [None] * length
    for i in order:
        x = None if xs is None else optree.tree_map(lambda v: v[i, ...], xs)
        carry, ys[i] = f(carry, x)
    return carry, optree.tree_map(lambda *leaves: ns.stack(leaves), *ys)


def _linear_body(ns, a, b, c):
    def body(h, x):
        h = ns.matmul(a, h) + ns.matmul(b, x)
        return h, ns.matmul(c, h)
    return body


def _rnn_setup(backend):
    return (backend.random((4, 4), seed=1), backend.random((3, 4), seed=2), backend.random((4,), seed=3),
            backend.random((4,), seed=4), backend.random((5, 3), seed=5))


def _rnn_body(ns, w, u, bias):
    def body(h, x):
        h = ns.tanh(ns.matmul(h, w) + ns.matmul(x, u) + bias)
        return h, ns.sum(h * h, axis=-1)
    return body


# ------------------------------------------------------------------------------- FD and references
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_linear_recurrence(backend, dtype):
    ns = backend.ns
    a = backend.asarray(0.4 * backend.to_numpy(backend.random((3, 3), dtype, 1)))
    b, c = backend.random((3, 2), dtype, 2), backend.random((2, 3), dtype, 3)
    h0, xs = backend.random((3,), dtype, 4), backend.random((5, 2), dtype, 5)

    def run(a, b, c, h0, xs):
        return scan(_linear_body(ns, a, b, c), h0, xs)

    ad.check_jvp(run, (a, b, c, h0, xs), **_tol(dtype))
    h, ys = run(a, b, c, h0, xs)
    h_ref, ys_ref = _python_loop(_linear_body(ns, a, b, c), h0, xs, ns=ns)
    np.testing.assert_allclose(backend.to_numpy(h), backend.to_numpy(h_ref), rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(ys), backend.to_numpy(ys_ref), rtol=1e-6)
    assert backend.to_numpy(ys).shape == (5, 2) and ys.dtype == h0.dtype


def test_tanh_rnn_matches_the_python_loop_and_fd(backend):
    ns = backend.ns
    w, u = 0.5 * backend.random((4, 4), seed=1), backend.random((3, 4), seed=2)
    bias, h0, xs = backend.random((4,), seed=3), backend.random((2, 4), seed=4), backend.random((6, 2, 3), seed=5)

    def run(w, u, bias, h0, xs):
        return scan(_rnn_body(ns, w, u, bias), h0, xs)

    primals = (w, u, bias, h0, xs)
    ad.check_jvp(run, primals)
    tangents = random_tangents(primals, seed=7)
    got = ad.jvp(run, primals, tangents)
    want = ad.jvp(lambda *p: _python_loop(_rnn_body(ns, *p[:3]), p[3], p[4], ns=ns), primals, tangents)
    for g, w in zip(optree.tree_leaves(got), optree.tree_leaves(want)):  # (h, ys), (dh, dys)
        np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(w), rtol=1e-13, atol=1e-14)
    assert backend.to_numpy(got[1][1]).shape == (6, 2)


def test_eigh_inside_the_body(backend):
    ns = backend.ns
    s0 = backend.random((3, 3), seed=1)
    s0 = backend.asarray(backend.to_numpy(s0) + backend.to_numpy(s0).T)
    xs = backend.random((4, 3), seed=2)

    def run(s0, xs):
        def body(s, x):
            w, v = ad.linalg.eigh(s + ns.reshape(x, (3, 1)) * ns.reshape(x, (1, 3)))
            s = ns.matmul(v * ns.tanh(w), ns.matrix_transpose(v))  # gauge invariant: v diag(f(w)) v^T
            return s, w
        return scan(body, s0, xs)

    ad.check_jvp(run, (s0, xs))


def test_reverse_walks_from_the_end_and_writes_in_order(backend):
    ns = backend.ns
    a, b, c = 0.4 * backend.random((3, 3), seed=1), backend.random((3, 2), seed=2), backend.random((2, 3), seed=3)
    h0, xs = backend.random((3,), seed=4), backend.random((4, 2), seed=5)

    def run(a, h0, xs):
        return scan(_linear_body(ns, a, b, c), h0, xs, reverse=True)

    ad.check_jvp(run, (a, h0, xs))
    h, ys = run(a, h0, xs)
    h_ref, ys_ref = _python_loop(_linear_body(ns, a, b, c), h0, xs, reverse=True, ns=ns)
    np.testing.assert_allclose(backend.to_numpy(h), backend.to_numpy(h_ref), rtol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(ys), backend.to_numpy(ys_ref), rtol=1e-13)
    forward = scan(_linear_body(ns, a, b, c), h0, xs)
    assert not np.allclose(backend.to_numpy(forward[0]), backend.to_numpy(h))


def test_xs_none_with_length(backend):
    ns = backend.ns

    def make(r):
        def body(c, x):
            assert x is None
            return ns.sin(c) * r + 1.0, c * c
        return body

    r, c0 = backend.random((2,), seed=1), backend.random((2,), seed=2)
    ad.check_jvp(lambda r, c0: scan(make(r), c0, None, length=4), (r, c0))
    got, want = scan(make(r), c0, None, length=4), _python_loop(make(r), c0, None, length=4, ns=ns)
    for g, w in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
        np.testing.assert_array_equal(backend.to_numpy(g), backend.to_numpy(w))
    assert backend.to_numpy(got[1]).shape == (4, 2)


def test_pytrees_of_carries_xs_and_ys(backend):
    ns = backend.ns
    n0 = backend.xp.asarray(0, dtype=backend.xp.int64)

    def run(h, u, v, xa, xb):
        def body(carry, x):
            h, pair, n = carry["h"], carry["pair"], carry["n"]
            h = ns.tanh(h * pair.u + x["a"])
            pair = Pair(pair.u * x["b"][0], pair.v + ns.sum(h))
            return {"h": h, "pair": pair, "n": n + 1}, [h, None, {"s": pair.v * 2.0}]
        return scan(body, {"h": h, "pair": Pair(u, v), "n": n0}, {"a": xa, "b": (xb,)})

    primals = (backend.random((3,), seed=1), backend.random((3,), seed=2), backend.random((1,), seed=3),
               backend.random((5, 3), seed=4), backend.random((5,), seed=5))
    ad.check_jvp(run, primals)
    (carry, ys), (dcarry, dys) = ad.jvp(run, primals, (None, None, backend.asarray(np.ones(1)), None, None))
    assert isinstance(carry["pair"], Pair) and isinstance(dcarry["pair"], Pair)
    assert int(backend.to_numpy(carry["n"])) == 5 and isinstance(dcarry["n"], ad.Zero)
    assert isinstance(ys, list) and ys[1] is None and backend.to_numpy(ys[2]["s"]).shape == (5, 1)
    assert backend.to_numpy(dys[0]).shape == (5, 3)


# --------------------------------------------------------------------- the tangent pattern, zero work
def _has_tangent(v):
    return type(v) is Dual and not isinstance(v.tangent, ad.Zero)


def test_carry_tangent_only_from_a_closed_over_dual(backend):
    ns = backend.ns
    c0, xs = backend.random((3,), seed=1), backend.random((4, 3), seed=2)  # plain arrays
    seen = []

    def run(theta):
        def body(c, x):
            seen.append(_has_tangent(c))
            return ns.sin(c) * theta + x, c
        return scan(body, c0, xs)

    ad.check_jvp(run, (backend.random((3,), seed=3),))
    seen.clear()
    theta = backend.random((3,), seed=3)
    (c, ys), (dc, dys) = ad.jvp(run, (theta,), (backend.asarray(np.ones(3)),))
    # 4 steps + 1 pass: pass 1 finds the tangent, pass 2 (= step 0) confirms it; from then on every
    # step gets a concrete tangent
    assert seen == [False, True, True, True, True]
    # d c_k / d theta by hand: c_{k+1} = sin(c_k) theta + x_k
    c_np, t_np, th, ref_ys = backend.to_numpy(c0), np.zeros(3), backend.to_numpy(theta), []
    for x in backend.to_numpy(xs):
        ref_ys.append(t_np)
        c_np, t_np = np.sin(c_np) * th + x, np.cos(c_np) * t_np * th + np.sin(c_np)
    np.testing.assert_allclose(backend.to_numpy(dc), t_np, rtol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(dys), np.stack(ref_ys), rtol=1e-13, atol=1e-15)


def test_swapping_carries_terminates(backend):
    calls = []

    def body(c, x):
        calls.append((_has_tangent(c[0]), _has_tangent(c[1])))
        return (c[1] * x, c[0]), c[0] + c[1]

    def run(a, b, xs):
        return scan(body, (a, b), xs)

    a, b, xs = backend.random((2,), seed=1), backend.random((2,), seed=2), backend.random((5, 2), seed=3)
    ad.check_jvp(run, (a, b, xs))
    calls.clear()
    _, (dcarry, dys) = ad.jvp(run, (a, b, xs), (backend.asarray(np.ones(2)), None, None))
    # only a has a tangent at first: one extra pass makes b's nonzero too, and from then on every
    # step gets a concrete (zero) tangent for b
    assert calls == [(True, False)] + [(True, True)] * 5
    x = backend.to_numpy(xs)
    # (a, b) -> (b x0, a) -> (a x1, b x0) -> (b x0 x2, a x1) -> (a x1 x3, b x0 x2) -> (b x0 x2 x4, a x1 x3)
    np.testing.assert_allclose(backend.to_numpy(dcarry[0]), 0.0)
    np.testing.assert_allclose(backend.to_numpy(dcarry[1]), x[1] * x[3])
    # y_k = the sum of the two carries: d/da = 1, 1, x1, x1, x1 x3
    np.testing.assert_allclose(backend.to_numpy(dys), [[1, 1], [1, 1], x[1], x[1], x[1] * x[3]], atol=0)


def test_counter_carry_spends_no_tangent_work(backend, monkeypatch):
    rule_calls = {"add": 0, "multiply": 0}
    for name in rule_calls:
        def counting(primals, tangents, rule=getattr(elementwise, name).jvp, name=name, **params):
            rule_calls[name] += 1
            return rule(primals, tangents, **params)
        monkeypatch.setattr(getattr(elementwise, name), "jvp", counting)
    counter_tangents = []

    def run(c0, xs):
        def body(carry, x):
            i, n, c = carry
            counter_tangents.append(type(i) is Dual and isinstance(i.tangent, ad.Zero))
            return (i + 1.0, n + 1, c * x), i * 2.0
        return scan(body, (_scalar(backend, 0.0), _scalar(backend, 0), c0), xs)

    c0, xs = backend.random((3,), seed=1), backend.random((6, 3), seed=2)
    (carry, ys), (dcarry, dys) = ad.jvp(run, (c0, xs), (backend.asarray(np.ones(3)), None))
    assert rule_calls == {"add": 0, "multiply": 6}  # one per step for c * x; none for the counter
    assert counter_tangents == [True] * 6
    np.testing.assert_array_equal(backend.to_numpy(carry[0]), 6.0)
    np.testing.assert_array_equal(backend.to_numpy(dcarry[0]), 0.0)
    np.testing.assert_array_equal(backend.to_numpy(dys), np.zeros(6))
    np.testing.assert_allclose(backend.to_numpy(dcarry[2]), np.prod(backend.to_numpy(xs), axis=0))

    def inner(c0):  # inside jvp, the zero-pattern ys leaf is a plain stacked array (no tangent at all)
        carry, ys = run(c0, xs)
        assert type(ys) is not Dual and type(carry[2]) is Dual and carry[2].tangent.shape == (3,)
        return ys
    ad.jvp(inner, (c0,), (backend.asarray(np.ones(3)),))


def test_shift_register_needs_one_pass_per_leaf_and_the_bound_raises(backend, monkeypatch):
    zeros = backend.asarray(np.zeros(2))
    xs = backend.random((3, 2), seed=1)
    calls = []

    def run(theta):
        def body(c, x):  # the closure's tangent reaches c[k] only after k + 1 passes
            calls.append(1)
            return (theta * x, c[0], c[1], c[2]), c[3]
        return scan(body, (zeros, zeros, zeros, zeros), xs)

    theta = backend.random((2,), seed=2)
    ad.check_jvp(run, (theta,))
    calls.clear()
    ad.jvp(run, (theta,), (theta,))
    assert len(calls) == (1 + 4) + (3 - 1)  # 1 + n_leaves passes, the last being step 0
    monkeypatch.setattr(scan_module, "_pass_limit", lambda n_leaves, n_levels: 3)
    with pytest.raises(FixedPointError, match=r"after 3 passes.*carry\[2\]") as info:
        ad.jvp(run, (theta,), (theta,))
    assert "carry[3]" not in str(info.value)
    run(theta)  # plain arrays: one pass, no error


def test_pattern_growing_mid_loop_stays_exact(backend):
    """Python control flow on the step count makes the closure's tangent enter at step 2."""
    ns = backend.ns
    xs = backend.random((5, 2), seed=1)

    def make(theta):
        step = [0]

        def body(c, x):
            step[0] += 1
            if step[0] >= 3:
                return ns.sin(c) + theta * x, (c, theta * x)
            return c + x, (c, x)
        return body

    primals = (backend.random((2,), seed=2), backend.random((2,), seed=3))
    tangents = (backend.asarray(np.ones(2)), None)
    got = ad.jvp(lambda theta, c0: scan(make(theta), c0, xs), primals, tangents)
    want = ad.jvp(lambda theta, c0: _python_loop(make(theta), c0, xs, ns=ns), primals, tangents)
    for g, w in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
        np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(w), rtol=1e-14, atol=0)
    assert np.any(backend.to_numpy(got[1][1][1]))


# ------------------------------------------------------------------------------------ nesting
def test_second_derivatives_through_scan(backend):
    ns = backend.ns
    w, u, bias = 0.5 * backend.random((3, 3), seed=1), backend.random((2, 3), seed=2), backend.random((3,), seed=3)
    h0, xs = backend.random((3,), seed=4), backend.random((4, 2), seed=5)
    dw = backend.random((3, 3), seed=6)

    def first(w, h0):  # d/dw along dw, itself differentiated along random directions of (w, h0)
        return ad.jvp(lambda v: scan(_rnn_body(ns, v, u, bias), h0, xs), (w,), (dw,))[1]

    ad.check_jvp(first, (w, h0))

    def first_in_init(h0):  # the inner tangent enters through init, the outer through a closure (w)
        return ad.jvp(lambda h: scan(_rnn_body(ns, w, u, bias), h, xs), (h0,), (h0,))[1]

    ad.check_jvp(first_in_init, (h0,))


def test_nested_swap_joins_levels_in_one_pass(backend):
    """Carry a has the inner level's tangent, b the outer's; swapping needs both levels (and their
    product) on both carries: the fixed point settles in two passes and every step after it has the
    same structure."""
    xs = backend.random((4, 2), seed=1)
    patterns = []

    levels = []

    def body(c, x):
        patterns.append(tuple(scan_module._pattern(v) for v in c))
        return (c[1] * x, c[0] * 1.5), c[0] * c[1]

    def first(b, a):
        levels[:] = active_levels()  # outer, inner
        return ad.jvp(lambda a: scan(body, (a, b), xs), (a,), (a,))[1]

    a, b = backend.random((2,), seed=2), backend.random((2,), seed=3)
    ad.check_jvp(first, (b, a))
    patterns.clear()
    ad.jvp(first, (b, a), (b, None))
    outer = levels[0]
    inner = outer + 1  # the inner jvp starts right after (levels are never reused)
    both = (inner, (outer, None, None), None)
    assert patterns == [((inner, None, None), (outer, None, None))] + [(both, both)] * 4


def test_second_derivative_exact_value(backend):
    """c_{k+1} = c_k a: c_n = c_0 a^n, d^2 c_n / da^2 = n (n - 1) a^(n-2) c_0."""
    a, c0, one = _scalar(backend, 1.3), _scalar(backend, 0.7), _scalar(backend, 1.0)

    def first(a):
        return ad.jvp(lambda b: scan(lambda c, x: (c * b, c), c0, None, length=5)[0], (a,), (one,))[1]

    _, second = ad.jvp(first, (a,), (one,))
    np.testing.assert_allclose(backend.to_numpy(second), 5 * 4 * 1.3 ** 3 * 0.7, rtol=1e-14)


# ------------------------------------------------------------------------------------- Kalman filter
N_STATE, N_OBS, T = 3, 2, 6


def _kalman_params(backend):
    rng = np.random.default_rng(11)
    a = np.linalg.qr(rng.standard_normal((N_STATE, N_STATE)))[0] * 0.9
    params = (a, rng.standard_normal((N_OBS, N_STATE)), 0.3 * np.triu(rng.standard_normal((N_STATE, N_STATE))),
              0.5 * np.eye(N_OBS) + 0.1 * np.triu(rng.standard_normal((N_OBS, N_OBS))),
              rng.standard_normal(N_STATE), np.eye(N_STATE) + 0.1 * np.triu(rng.standard_normal((N_STATE,) * 2)))
    return tuple(backend.asarray(p) for p in params), backend.asarray(rng.standard_normal((T, N_OBS)))


def _sqrt_kalman_loglik(ns, a, c, uq, ur, m0, u0, obs):
    """Square-root filter: covariances P = U^T U carried as upper factors U and propagated by QR.

    Predict: [U A^T; UQ] = Q R  =>  R^T R = A P A^T + Q.  Update: the QR of
    [[UR, 0], [Up C^T, Up]] is [[X, Y], [0, Z]] with X^T X = S (innovation covariance),
    Y = X^-T C P and Z^T Z = P - P C^T S^-1 C P; the gain term is Y^T X^-T e."""
    p = N_OBS

    def body(carry, y):
        m, u = carry
        m = ns.matmul(a, m)
        up = ad.linalg.qr(ns.concat([ns.matmul(u, ns.matrix_transpose(a)), uq], axis=0), mode="r")
        top = ns.concat([ur, ns.zeros((p, N_STATE), dtype=ur.dtype)], axis=1)
        bottom = ns.concat([ns.matmul(up, ns.matrix_transpose(c)), up], axis=1)
        r = ad.linalg.qr(ns.concat([top, bottom], axis=0), mode="r")
        x, gain, z = r[:p, :p], r[:p, p:], r[p:, p:]
        e = y - ns.matmul(c, m)
        w = ad.linalg.solve_triangular(ns.matrix_transpose(x), ns.reshape(e, (p, 1)), lower=True)[:, 0]
        loglik = -0.5 * (ns.sum(w * w) + 2.0 * ns.sum(ns.log(ns.abs(ns.linalg.diagonal(x))))
                         + p * math.log(2 * math.pi))
        return (m + ns.matmul(ns.matrix_transpose(gain), w), z), loglik

    _, logliks = scan(body, (m0, u0), obs)
    return ns.sum(logliks)


def _covariance_kalman_loglik(ns, a, c, uq, ur, m0, u0, obs):
    """The textbook covariance form, written separately: a Python loop, 2 x 2 inverse by adjugate."""
    t = ns.matrix_transpose
    q, r = ns.matmul(t(uq), uq), ns.matmul(t(ur), ur)
    m, cov, total = m0, ns.matmul(t(u0), u0), 0.0
    for k in range(obs.shape[0]):
        m = ns.matmul(a, m)
        cov = ns.matmul(ns.matmul(a, cov), t(a)) + q
        s = ns.matmul(ns.matmul(c, cov), t(c)) + r
        det = s[0, 0] * s[1, 1] - s[0, 1] * s[1, 0]
        s_inv = ns.stack([ns.stack([s[1, 1], -s[0, 1]]), ns.stack([-s[1, 0], s[0, 0]])]) / det
        e = ns.subtract(obs[k, ...], ns.matmul(c, m))
        total = total - 0.5 * (ns.sum(e * ns.matmul(s_inv, e)) + ns.log(det) + 2 * math.log(2 * math.pi))
        gain = ns.matmul(ns.matmul(cov, t(c)), s_inv)
        m = m + ns.matmul(gain, e)
        cov = cov - ns.matmul(gain, ns.matmul(c, cov))
    return total


def test_square_root_kalman_loglik_and_its_jvp(backend):
    ns = backend.ns
    params, obs = _kalman_params(backend)

    def sqrt_form(*p):
        return _sqrt_kalman_loglik(ns, *p, obs)

    def cov_form(*p):
        return _covariance_kalman_loglik(ns, *p, obs)

    tangents = random_tangents(params, seed=3)
    value, slope = ad.jvp(sqrt_form, params, tangents)
    value_ref, slope_ref = ad.jvp(cov_form, params, tangents)
    np.testing.assert_allclose(backend.to_numpy(value), backend.to_numpy(value_ref), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(slope), backend.to_numpy(slope_ref), rtol=1e-10)
    assert abs(float(backend.to_numpy(slope))) > 1e-3
    ad.check_jvp(sqrt_form, params, tangents)
    for k in range(len(params)):  # each parameter alone (the others' tangents symbolically zero)
        one = tuple(tg if i == k else None for i, tg in enumerate(tangents))
        np.testing.assert_allclose(backend.to_numpy(ad.jvp(sqrt_form, params, one)[1]),
                                   backend.to_numpy(ad.jvp(cov_form, params, one)[1]), rtol=1e-9)


# ---------------------------------------------------------------------------------- execution
def test_plain_arrays_give_plain_arrays(backend):
    ns = backend.ns
    a, b, c = 0.4 * backend.random((3, 3), seed=1), backend.random((3, 2), seed=2), backend.random((2, 3), seed=3)
    h0, xs = backend.random((3,), seed=4), backend.random((5, 2), seed=5)
    h, ys = scan(_linear_body(ns, a, b, c), h0, xs)
    assert type(h) is type(h0) and type(ys) is type(h0)
    h_ref, ys_ref = _python_loop(_linear_body(ns, a, b, c), h0, xs, ns=ns)
    np.testing.assert_array_equal(backend.to_numpy(h), backend.to_numpy(h_ref))
    np.testing.assert_array_equal(backend.to_numpy(ys), backend.to_numpy(ys_ref))


def test_outputs_are_written_into_preallocated_buffers(backend, monkeypatch):
    """No per-step list and final stack: stacking is forbidden and the ys tangent is one buffer."""
    from cupy_ad.namespace import manipulation

    for name in ("impl", "jvp"):
        monkeypatch.setattr(manipulation._stack, name, lambda *a, **k: pytest.fail("scan must not stack"))
    ns = backend.ns
    w, u, bias, h0, xs = _rnn_setup(backend)

    def inner(w):
        ys = scan(_rnn_body(ns, w, u, bias), h0, xs)[1]
        assert type(ys) is Dual and type(ys.primal) is type(h0) and type(ys.tangent) is type(h0)
        return ys
    ad.jvp(inner, (w,), (w,))


def test_inputs_are_never_modified(backend):
    ns = backend.ns
    w, u, bias, h0, xs = _rnn_setup(backend)
    dh0, dxs = backend.random((4,), seed=6), backend.random((5, 3), seed=7)
    before = [backend.to_numpy(v).copy() for v in (w, h0, xs, dh0, dxs)]
    ad.jvp(lambda h, x: scan(_rnn_body(ns, w, u, bias), h, x), (h0, xs), (dh0, dxs))
    scan(_rnn_body(ns, w, u, bias), h0, xs, reverse=True)
    for v, b in zip((w, h0, xs, dh0, dxs), before):
        np.testing.assert_array_equal(backend.to_numpy(v), b)


def test_length_zero_gives_empty_ys_of_the_right_shapes(backend):
    ns = backend.ns
    w, u, bias, _, _ = _rnn_setup(backend)
    h0, xs = backend.random((2, 4), seed=4), backend.asarray(np.zeros((0, 2, 3)))
    h, ys = scan(_rnn_body(ns, w, u, bias), h0, xs)
    np.testing.assert_array_equal(backend.to_numpy(h), backend.to_numpy(h0))
    assert backend.to_numpy(ys).shape == (0, 2)
    (h, ys), (dh, dys) = ad.jvp(lambda v, h: scan(_rnn_body(ns, v, u, bias), h, xs), (w, h0), (w, h0))
    assert backend.to_numpy(dys).shape == (0, 2) and backend.to_numpy(ys).shape == (0, 2)
    np.testing.assert_array_equal(backend.to_numpy(dh), backend.to_numpy(h0))
    _, ys = scan(lambda c, x: (c, (c, c * 2.0)), h0, None, length=0)
    assert [backend.to_numpy(y).shape for y in ys] == [(0, 2, 4), (0, 2, 4)]


if "cupy" in BACKENDS:  # collected only where a GPU works: nothing is skipped elsewhere
    def test_no_host_synchronisation_on_cupy():
        import array_api_compat.cupy
        import cupyx

        backend = Backend("cupy", array_api_compat.cupy)
        ns = backend.ns
        w, u, bias, h0, xs = _rnn_setup(backend)
        run = lambda w, h0, xs: scan(_rnn_body(ns, w, u, bias), h0, xs, reverse=True)  # noqa: E731
        with cupyx.allow_synchronize(False):
            got = run(w, h0, xs), ad.jvp(run, (w, h0, xs), (w, h0, None))
        want = _python_loop(_rnn_body(ns, w, u, bias), h0, xs, reverse=True, ns=ns)
        for g, r in zip(optree.tree_leaves(got[0]), optree.tree_leaves(want)):
            np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(r), rtol=1e-13)


def test_step_ranges_only_when_asked(backend, monkeypatch):
    entered = []

    counting = type("Counting", (), {"__enter__": lambda self: entered.append(1), "__exit__": lambda *exc: None})
    monkeypatch.setattr(scan_module, "_STEP_RANGE", counting())
    body = lambda c, x: (c + x, c)  # noqa: E731
    c0, xs = backend.random((2,), seed=1), backend.random((4, 2), seed=2)
    scan(body, c0, xs)
    assert entered == []
    scan(body, c0, xs, step_ranges=True)
    assert len(entered) == 4
    monkeypatch.setenv("CUPY_AD_SCAN_STEP_RANGES", "1")
    scan(body, c0, xs)
    assert len(entered) == 8


@settings(max_examples=15, deadline=None)
@given(length=st.integers(0, 4), batch=st.lists(st.integers(1, 3), max_size=2), reverse=st.booleans(),
       seed=st.integers(0, 1000))
def test_property_linear_recurrence_matches_the_loop(length, batch, reverse, seed):
    ns = ad.namespace("numpy")
    rng = np.random.default_rng(seed)
    a = 0.4 * rng.standard_normal((3, 3))
    b, c = rng.standard_normal((3, 2)), rng.standard_normal((2, 3))
    h0, xs = rng.standard_normal((*batch, 3, 1)), rng.standard_normal((length, *batch, 2, 1))
    primals = (a, b, c, h0, xs)
    tangents = random_tangents(primals, seed=seed)

    def run(a, b, c, h0, xs):
        return scan(_linear_body(ns, a, b, c), h0, xs, reverse=reverse)

    def loop(a, b, c, h0, xs):
        return _python_loop(_linear_body(ns, a, b, c), h0, xs, reverse=reverse, ns=ns,
                            empty=np.zeros((0, *batch, 2, 1)))

    got, want = ad.jvp(run, primals, tangents), ad.jvp(loop, primals, tangents)
    for g, w in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------------ bad input
def test_body_outputs_that_differ_from_init_or_from_step_to_step(backend):
    ns = backend.ns
    c0, xs = backend.random((3,), seed=1), backend.random((3, 3), seed=2)
    with pytest.raises(TypeError, match="structure"):
        scan(lambda c, x: ((c, c), x), c0, xs)
    with pytest.raises(TypeError, match="pair"):
        scan(lambda c, x: c, c0, xs)
    with pytest.raises(ValueError, match=r"carry\[1\].*\(2,\).*\(3,\)"):
        scan(lambda c, x: ((c[0], x[:2]), x), (c0, c0), xs)
    with pytest.raises(ValueError, match=r"returned carry with shape \(2,\).*\(3,\)"):
        scan(lambda c, x: (x[:2], x), c0, xs)
    with pytest.raises(TypeError, match=r"carry\['h'\].*float32.*float64"):
        scan(lambda c, x: ({"h": ns.astype(c["h"], ns.float32)}, x), {"h": c0}, xs)
    calls = []

    def body(c, x):  # y loses an element after the first step
        calls.append(1)
        return c + 1.0, (x if len(calls) == 1 else x[:2])

    with pytest.raises(ValueError, match=r"y.*\(2,\).*\(3,\)"):
        scan(body, c0, xs)


def test_bad_xs_and_length(backend):
    body = lambda c, x: (c, x)  # noqa: E731
    c0 = backend.random((2,), seed=1)
    with pytest.raises(ValueError, match=r"different leading lengths.*xs\[0\]: 3.*xs\[1\]: 4"):
        scan(body, c0, (backend.random((3, 2)), backend.random((4, 2))))
    with pytest.raises(ValueError, match="length=5"):
        scan(body, c0, backend.random((3, 2)), length=5)
    with pytest.raises(ValueError, match="non-negative"):
        scan(body, c0, None, length=-1)
    with pytest.raises(ValueError, match="length is required"):
        scan(body, c0)
    with pytest.raises(TypeError, match="integer"):
        scan(body, c0, None, length=2.5)
    with pytest.raises(ValueError, match="no leading axis"):
        scan(body, c0, _scalar(backend, 1.0))
    with pytest.raises(TypeError, match="callable"):
        scan(None, c0, None, length=1)
