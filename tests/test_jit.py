"""jit: replays bit-identical to eager calls (the same kernels run; on CuPy fused elementwise kernels: within
rounding), one recording per signature, static
arguments, compositions with jvp / vmap / jacfwd / scan, guards on bool(), refusals, inputs never written."""
import importlib
import warnings

import numpy as np
import optree
import pytest

import cupy_ad as ad

lu_module = importlib.import_module("cupy_ad.linalg.lu")


def _flat(backend, tree):
    leaves = optree.tree_leaves(tree, is_leaf=lambda v: type(v) is ad.Zero)
    return [(v.shape, v.dtype) if type(v) is ad.Zero else backend.to_numpy(v) for v in leaves]


def _assert_identical(backend, got, want):
    """Bit for bit; on CuPy within rounding (a fused kernel may contract a product and a sum)."""
    got, want = _flat(backend, got), _flat(backend, want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, tuple):
            assert g == w
        else:
            assert g.dtype == w.dtype and g.shape == w.shape
            if backend.name == "cupy" and w.dtype.kind in "fc" and w.size:
                rtol = 64 * np.finfo(w.dtype).eps
                finite = np.isfinite(w)
                np.testing.assert_array_equal(np.isfinite(g), finite)
                scale = np.max(np.abs(w[finite]), initial=0.0)
                np.testing.assert_allclose(g[finite], w[finite], rtol=rtol, atol=rtol * scale)
            else:
                np.testing.assert_array_equal(g, w)


def _sym(a):
    return a + a.mT


DECOMPOSITIONS = {
    "lu_factor": lambda ns, a: ad.linalg.lu_factor(a),
    "qr": lambda ns, a: ad.linalg.qr(a),
    "eigh": lambda ns, a: ad.linalg.eigh(_sym(a)),
    "svd": lambda ns, a: ad.linalg.svd(a, full_matrices=False),
    "cholesky_solve_det": lambda ns, a: (ad.linalg.cholesky(a @ a.mT + ns.eye(4)), ad.linalg.solve(a, a[:, :1]),
                                         ad.linalg.det(a)),
    "elementwise": lambda ns, a: ns.sum(ns.tanh(a) * 2.0 - a ** 3, axis=0) / (1.0 + ns.exp(a[0, ...])),
}


@pytest.mark.parametrize("name", list(DECOMPOSITIONS))
def test_jit_of_jvp_is_eager_jvp_bit_for_bit(backend, name):
    ns = backend.ns
    f = lambda a: DECOMPOSITIONS[name](ns, a)  # noqa: E731
    compiled = ad.jit(lambda a, t: ad.jvp(f, (a,), (t,)))
    a = backend.random((4, 4)) + backend.asarray(3.0 * np.eye(4))
    for seed in (1, 2, 3):  # the first call records, the others replay
        t = backend.random((4, 4), seed=seed)
        _assert_identical(backend, compiled(a, t), ad.jvp(f, (a,), (t,)))
        _assert_identical(backend, ad.jvp(ad.jit(f), (a,), (t,)), ad.jvp(f, (a,), (t,)))
    assert len(compiled.cache) == 1


def test_replay_runs_no_rule(backend, monkeypatch):
    """The replay is the recorded backend calls: a JVP rule that now fails is not called again."""
    compiled = ad.jit(lambda a, t: ad.jvp(ad.linalg.lu_factor, (a,), (t,)))
    a, t = backend.random((5, 5)), backend.random((5, 5), seed=1)
    want = compiled(a, t)

    def broken(*args, **kwargs):
        raise AssertionError("a rule ran during a replay")

    monkeypatch.setattr(lu_module.lu_factor_p, "jvp", broken)
    _assert_identical(backend, compiled(a, t), want)
    with pytest.raises(AssertionError, match="rule ran"):
        ad.jvp(ad.linalg.lu_factor, (a,), (t,))


def test_one_recording_per_signature(backend):
    ns = backend.ns
    calls = []

    def f(x, scale):
        calls.append(1)  # Python side effects happen only while recording
        return ns.sin(x) * scale

    compiled = ad.jit(f)
    x = backend.random((3,))
    for _ in range(3):
        _assert_identical(backend, compiled(x, 2.0), f(x, 2.0))
    assert len(calls) == 1 + 3
    compiled(backend.random((4,)), 2.0)  # new shape
    compiled(backend.asarray(np.ones(3, np.float32)), 2.0)  # new dtype
    compiled(x, 3.0)  # a Python scalar is part of the signature
    _assert_identical(backend, compiled(x, 3.0), f(x, 3.0))
    assert len(compiled.cache) == 4


def test_static_argnums(backend):
    def power(x, n):
        y = x
        for _ in range(n - 1):  # Python control flow on a static argument
            y = y * x
        return y

    compiled = ad.jit(power, static_argnums=1)
    x = backend.random((3,))
    for n in (2, 3, 2):
        _assert_identical(backend, compiled(x, n), power(x, n))
    assert len(compiled.cache) == 2
    with pytest.raises(TypeError, match="hashable"):
        ad.jit(lambda x, d: x, static_argnums=1)(x, {})


def test_static_argnums_positions(backend):
    """An index past the arguments of a call used to wrap around (``k % len(args)``): the array argument
    was taken as static. Now checked against f's parameters, and ignored for a call that passes that
    argument by keyword or not at all (its default), as jax.jit does."""
    def scaled(x, n=2):
        return x * n

    x = backend.random((3,))
    compiled = ad.jit(scaled, static_argnums=1)
    for got, want in ((compiled(x), scaled(x)), (compiled(x, n=3), scaled(x, 3)), (compiled(x, 3), scaled(x, 3))):
        _assert_identical(backend, got, want)
    _assert_identical(backend, ad.jit(scaled, static_argnums=-1)(x, 4), scaled(x, 4))
    with pytest.raises(ValueError, match=r"static_argnums=3 but f takes 2 positional argument\(s\)"):
        ad.jit(scaled, static_argnums=3)
    with pytest.raises(TypeError, match="static_argnums must be an int or a tuple of ints"):
        ad.jit(scaled, static_argnums="n")
    variadic = ad.jit(lambda *args: args[0] * args[-1], static_argnums=2)  # no signature to check: per call
    _assert_identical(backend, variadic(x, x), x * x)


def test_compositions(backend):
    ns = backend.ns

    def f(x):
        q, r = ad.linalg.qr(ns.sin(x) @ x)
        return ns.sum(q * r, axis=0) + ad.linalg.eigh(_sym(x))[0]

    compiled = ad.jit(f)
    a, t = backend.random((4, 4)), backend.random((4, 4), seed=1)
    stack = backend.random((3, 4, 4), seed=2)
    for _ in range(2):
        _assert_identical(backend, ad.vmap(compiled)(stack), ad.vmap(f)(stack))
        _assert_identical(backend, ad.jit(ad.vmap(f))(stack), ad.vmap(f)(stack))
        _assert_identical(backend, ad.jacfwd(compiled)(a), ad.jacfwd(f)(a))
        second = lambda g: ad.jvp(lambda x: ad.jvp(g, (x,), (t,))[1], (a,), (t,))  # noqa: E731
        _assert_identical(backend, second(compiled), second(f))


def test_scan_with_a_jitted_body_and_jit_of_scan(backend):
    ns = backend.ns
    w = backend.random((4, 4)) / 4
    xs = backend.random((6, 4), seed=1)

    def body(c, x):
        c = ns.tanh(ns.matmul(w, c) + x)
        return c, ns.sum(c * c)

    def loop(body_fn, c):
        return ad.scan(body_fn, c, xs)

    c0, dc = backend.random((4,), seed=2), backend.random((4,), seed=3)
    want = ad.jvp(lambda c: loop(body, c), (c0,), (dc,))
    jitted_body = ad.jit(body)
    _assert_identical(backend, ad.jvp(lambda c: loop(jitted_body, c), (c0,), (dc,)), want)
    _assert_identical(backend, loop(jitted_body, c0), loop(body, c0))
    assert len(jitted_body.cache) == 2  # dual carries (one step's structure) and plain ones
    whole = ad.jit(lambda c, dc: ad.jvp(lambda c: loop(body, c), (c,), (dc,)))
    for _ in range(2):
        _assert_identical(backend, whole(c0, dc), want)


def _rnn_body(ns):
    def body(carry, x):  # W travels in the carry: a jitted body takes its duals as arguments
        w, h = carry
        h = ns.tanh(ns.matmul(w, h) + x)
        return (w, h), (ns.sum(h * h), h)
    return body


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_replays_the_jitted_body_without_signature_checks(backend, monkeypatch, reverse):
    """scan(jit(body)) under jvp (first order, along the closed-over weights and along xs, and nested):
    the steps after the first replay the body's program directly (the jit call's signature is taken only
    in the fixed point and to find the programs; on a later call once), bit for bit the eager loop's results."""
    ns = backend.ns
    w, dw = backend.random((4, 4)) / 4, backend.random((4, 4), seed=1)
    xs, dxs = backend.random((7, 4), seed=2), backend.random((7, 4), seed=3)
    h0 = backend.random((4,), seed=4)
    jit_module = importlib.import_module("cupy_ad.transforms.jit")
    signatures = []
    original = jit_module._signature
    monkeypatch.setattr(jit_module, "_signature", lambda leaves: signatures.append(1) or original(leaves))
    body, jitted = _rnn_body(ns), ad.jit(_rnn_body(ns))

    def along_w(step):
        return lambda w: ad.scan(step, (w, h0), xs, reverse=reverse)

    def along_xs(step):
        return lambda xs: ad.scan(step, (w, h0), xs, reverse=reverse)

    def second(step):
        return lambda w: ad.jvp(along_w(step), (w,), (dw,))[1]

    for loop, point, direction in ((along_w, w, dw), (along_xs, xs, dxs), (second, w, dw)):
        want = ad.jvp(loop(body), (point,), (direction,))
        for call in range(2):
            signatures.clear()
            _assert_identical(backend, ad.jvp(loop(jitted), (point,), (direction,)), want)
            # the first call: the settled pattern's look-up, the fixed point's passes (step 0) and the programs'
            # look-ups; a later one: the look-up alone (jit_step.SettledPatterns); none per step
            assert len(signatures) == 1 if call else len(signatures) <= 5
    _assert_identical(backend, ad.scan(jitted, (w, h0), xs, reverse=reverse), ad.scan(body, (w, h0), xs,
                                                                                       reverse=reverse))
    batch = ns.stack([w, 2.0 * w])
    _assert_identical(backend, ad.vmap(lambda w: ad.jvp(along_w(jitted), (w,), (dw,)))(batch),
                      ad.vmap(lambda w: ad.jvp(along_w(body), (w,), (dw,)))(batch))


def test_scan_of_a_jitted_body_plans_once_for_every_call(backend):
    """Each jvp call makes new levels; the plan of the replayed steps (how results become carries and rows)
    is keyed by their ranks: made once and reused by later calls (keyed by the levels themselves, a plan
    was made and kept per call: work each time and memory without bound), the results bit for bit eager."""
    ns = backend.ns
    w, dw = backend.random((4, 4)) / 4, backend.random((4, 4), seed=1)
    xs, h0 = backend.random((7, 4), seed=2), backend.random((4,), seed=4)
    jitted = ad.jit(_rnn_body(ns))
    loop = lambda step: lambda w: ad.scan(step, (w, h0), xs)  # noqa: E731
    for _ in range(5):
        _assert_identical(backend, ad.jvp(loop(jitted), (w,), (dw,)), ad.jvp(loop(_rnn_body(ns)), (w,), (dw,)))
    programs = [p for variants in jitted.cache.values() for p in variants]
    assert [len(p.__dict__.get("scan_plans", {})) for p in programs if "scan_plans" in p.__dict__] == [1]


def test_scan_of_a_jitted_body_with_constant_and_zero_outputs(backend):
    """A carry the body sets to a constant, a carry whose tangent stays zero and a y without a tangent: the
    replayed steps pass constants and zeros on as eager does (the caller gets arrays of its own)."""
    ns = backend.ns

    def body(c, x):
        h, k, u = c
        return (ns.tanh(h) * x, k + 1.0, ns.ones((3,), dtype=u.dtype)), (x * 2.0, h)

    xs = backend.random((5, 3), seed=1)
    init = (backend.random((3,)), ns.zeros((3,)), ns.zeros((3,)))
    tangents = (backend.random((3,), seed=2), None, backend.random((3,), seed=3))  # u: a zero tangent from step 1
    loop = lambda step: lambda h, k, u: ad.scan(step, (h, k, u), xs)  # noqa: E731
    jitted = ad.jit(body)
    got = ad.jvp(loop(jitted), init, tangents)
    _assert_identical(backend, got, ad.jvp(loop(body), init, tangents))
    (_, _, u), _ = got[0]
    assert len(jitted.cache) == 1
    u[0] = 5.0  # the returned constant carry is the caller's own
    _assert_identical(backend, ad.jvp(loop(jitted), init, tangents), ad.jvp(loop(body), init, tangents))


def test_scan_of_a_jitted_body_whose_guard_flips(backend):
    """A guard of the body's program that fails in the middle of the loop: the ordinary loop takes over at
    that step and records the new outcome; the results are the eager loop's."""
    ns = backend.ns

    def body(c, x):
        if ns.sum(c) > 3.0:  # true from some step on
            return c * 0.5 + x, c
        return c + x, c

    xs = ns.ones((8, 2))
    c0, dc = ns.zeros((2,)), backend.random((2,))
    jitted = ad.jit(body)
    want = ad.jvp(lambda c: ad.scan(body, c, xs), (c0,), (dc,))
    _assert_identical(backend, ad.jvp(lambda c: ad.scan(jitted, c, xs), (c0,), (dc,)), want)
    assert sum(len(variants) for variants in jitted.cache.values()) == 2


def test_bool_records_a_guard_per_outcome(backend):
    ns = backend.ns
    calls = []

    def f(x):
        calls.append(1)
        if ns.sum(x) > 0:  # value-dependent Python control flow
            return x * 2.0
        return -x

    compiled = ad.jit(f)
    x = backend.random((5,))
    for sign in (1.0, -1.0, 1.0, -1.0):
        _assert_identical(backend, compiled(sign * ns.abs(x)), f(sign * ns.abs(x)))
    assert len(calls) == 2 + 4  # one recording per outcome, then replays
    assert len(compiled.cache) == 1


@pytest.mark.parametrize("keyword", [False, True])
def test_a_miss_replays_each_recorded_program_once(backend, monkeypatch, keyword):
    """A call whose guard outcome is new replays each recorded program once before recording (the path for
    positional plain arrays replayed them, then the general path again); a hit replays until one fits."""
    from cupy_ad.transforms import jit_program
    ns = backend.ns
    replays = []
    replay = jit_program.Program.replay
    monkeypatch.setattr(jit_program.Program, "replay", lambda self, *a: (replays.append(1), replay(self, *a))[1])

    def f(x):
        return x * 2.0 if ns.sum(x) > 0 else -x

    compiled = ad.jit(f)
    x = ns.abs(backend.random((5,)))
    counts = []
    for sign in (1.0, 1.0, -1.0, -1.0, 1.0):
        replays.clear()
        _assert_identical(backend, compiled(x=sign * x) if keyword else compiled(sign * x), f(sign * x))
        counts.append(len(replays))
    assert counts == [0, 1, 1, 2, 1]

def test_shapes_that_follow_values_record_a_guard(backend):
    """x[mask], nonzero and unique make arrays whose shape follows the values, and Python read it
    (``.shape[0]``, ``len``, a rule's zeros): replays used to reuse the recorded shape, giving wrong numbers
    (the mean of the positives 3.0 for 2.0) or broadcast errors. Now a replay that meets another shape
    records again, as a guard does; under jvp and in a scan's body too."""
    ns = backend.ns

    def mean_of_positives(a):
        positive = a[a > 0]
        distinct, (negative,) = ns.unique_values(a), ns.nonzero(a < 0)
        return (ns.sum(positive * positive) / positive.shape[0] + ns.sum(distinct) * distinct.shape[0]
                + ns.sum(ns.take(a, negative) * ns.ones(negative.shape[0])))

    compiled = ad.jit(lambda a, t: ad.jvp(mean_of_positives, (a,), (t,)))
    t = backend.random((4,))
    for values in ([1.0, 2.0, -1.0, -3.0], [1.0, 2.0, 3.0, -3.0], [1.0, -2.0, -2.0, -3.0], [1.0, 2.0, -1.0, -3.0]):
        a = backend.asarray(np.array(values))
        _assert_identical(backend, compiled(a, t), ad.jvp(mean_of_positives, (a,), (t,)))
    assert [len(variants) for variants in compiled.cache.values()] == [3]
    body = lambda c, x: (c + ns.sum(x[x > 0]) / x[x > 0].shape[0], c)  # noqa: E731
    xs = backend.asarray(np.array([[1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [-1.0, -1.0, 2.0]]))
    c0 = backend.asarray(0.0)
    _assert_identical(backend, ad.scan(ad.jit(body), c0, xs), ad.scan(body, c0, xs))


def test_jacfwd_of_a_function_indexing_with_traced_keys(backend):
    """Under jit the directions of jacfwd were a raw array, and a boolean mask or an index array of more than
    one dimension computed from the input met them in x[key] as a raw array indexed by a traced key (refused
    as a conversion to NumPy); the basis is now a constant of the recording."""
    ns = backend.ns

    def f(a):
        return a[a > 0] * ns.sum(a[ns.reshape(ns.argsort(a), (3, 1))], axis=1)[:1]

    compiled = ad.jit(ad.jacfwd(f))
    for values in ([1.0, -1.0, 2.0], [1.0, 1.0, 2.0], [1.0, -1.0, 2.0]):
        a = backend.asarray(np.array(values))
        _assert_identical(backend, compiled(a), ad.jacfwd(f)(a))


def test_numpy_protocols_on_traced_values(backend):
    """np.sin(x), np.sum(x), np.add.reduce(x), np.linalg.norm(x) inside jit: the namespace's functions, as on
    duals (the results and their backend are the eager jvp's); out= is refused as there."""
    def f(x):
        return np.sin(x) * np.sum(x) + np.add.reduce(x, axis=0) / np.linalg.norm(x)

    compiled = ad.jit(lambda x, t: ad.jvp(f, (x,), (t,)))
    x = backend.random((3, 3))
    for seed in (1, 2):
        t = backend.random((3, 3), seed=seed)
        _assert_identical(backend, compiled(x, t), ad.jvp(f, (x,), (t,)))
        _assert_identical(backend, ad.jit(f)(x), ad.jvp(f, (x,), (t,))[0])
    buffer = np.empty((3, 3))
    with pytest.raises(TypeError, match="jit: np.sin writes into an array in place"):
        ad.jit(lambda x: np.sin(x, out=buffer))(x)


def test_replay_is_one_generated_function(backend):
    """The program is one function's source, a line per step (calls with lists and keywords written out);
    on NumPy array_api_compat's one-call wrappers are replaced by their NumPy call (the same kernels)."""
    ns = backend.ns

    def f(a, v):
        w = ns.linalg.outer(v, v) + ns.permute_dims(a, (1, 0)) + ns.linalg.diagonal(a)
        return ns.stack([w, a], axis=0), ns.concat([v, ns.sum(w, axis=1)])

    compiled = ad.jit(f)
    a, v = backend.random((3, 3)), backend.random((3,), seed=1)
    for seed in (2, 3):
        v = backend.random((3,), seed=seed)
        _assert_identical(backend, compiled(a, v), f(a, v))
    (program,) = next(iter(compiled.cache.values()))
    assert program.source.count("\n") == len(program.steps) + 1
    called = [value for key, value in program.run.__globals__.items() if key.startswith("g")]
    assert any("stack" in getattr(fn, "__name__", "") for fn in called)
    if backend.name == "numpy":
        assert not any("array_api_compat" in (getattr(fn, "__module__", None) or "") for fn in called)


def test_refusals(backend):
    ns = backend.ns
    x = backend.random((3,))
    with pytest.raises(TypeError, match="float.*jit"):
        ad.jit(lambda x: x * float(ns.sum(x)))(x)
    with pytest.raises(TypeError, match="not among its arguments"):
        ad.jvp(lambda d: ad.jit(lambda y: d * y)(x), (x,), (x,))  # closes over an outer dual


def test_inputs_are_never_written(backend):
    ns = backend.ns

    def f(x):
        y = ns.asarray(x, copy=True)
        y[0] = 5.0  # a functional update on the program's own value
        return y * x, ad.jvp(lambda z: ns.exp(z) + z[1], (x,), (y,))[1]

    compiled = ad.jit(f)
    x = backend.random((3,))
    keep = backend.to_numpy(x).copy()
    want = f(x)
    for _ in range(3):
        _assert_identical(backend, compiled(x), want)
    np.testing.assert_array_equal(backend.to_numpy(x), keep)
    out = compiled(x)[0]
    assert out is not compiled(x)[0]


def test_dead_code_and_constants_leave_no_steps(backend):
    ns = backend.ns

    def f(x):
        ns.sin(x)  # unused
        c = ns.linspace(0.0, 1.0, 3, dtype=x.dtype) ** 2 + 1.0  # independent of x: computed once
        return x + c

    compiled = ad.jit(f)
    x = backend.random((3,))
    _assert_identical(backend, compiled(x), f(x))
    (program,) = next(iter(compiled.cache.values()))
    assert len(program.steps) == 1


def test_common_subexpressions_run_once(backend):
    """A call repeated on the same values (and equal constants) runs once; outputs stay distinct arrays."""
    ns = backend.ns

    def f(x):
        a = ns.sin(x) * 2.0 + ns.permute_dims(x, (1, 0))
        b = ns.sin(x) * 2.0 + ns.permute_dims(x, (1, 0))  # the same three calls again
        return a * b, ns.sin(x) * 2.0, ns.sin(x) * 2.0

    compiled = ad.jit(f)
    x = backend.random((3, 3))
    _assert_identical(backend, compiled(x), f(x))
    (program,) = next(iter(compiled.cache.values()))
    assert len(program.steps) == 5 + 2  # sin, * 2.0, permute_dims, +, a * b; the outputs' own * 2.0 twice
    product, first, second = compiled(x)
    assert first is not second


def test_negations_fold_and_operands_commute(backend):
    """a + (-b), (-b) + a and a - (-b) replay as one subtraction or addition; b * a repeats a * b; a method
    or a constant used twice is one step: bit for bit the eager results (special values included)."""
    ns = backend.ns
    h = backend.random((3,), seed=1)

    def f(a, b):
        n = -b
        return (a + n, n + a, a - (-a), a * b + b * a, a.mT @ h + (a.mT @ h) * n[0, ...])

    compiled = ad.jit(f)
    a = ns.asarray([[0.0, -0.0, 1.5], [float("inf"), -2.0, 1e-300], [3.0, float("nan"), -1e300]])
    b = ns.asarray([[0.0, 0.0, -1.5], [float("inf"), -0.0, 1e-300], [-3.0, 2.0, 1e300]])
    with np.errstate(all="ignore"):  # (inf - inf, overflow: the special values are the point)
        _assert_identical(backend, compiled(a, b), f(a, b))
        _assert_identical(backend, compiled(b, a), f(b, a))
    (program,) = next(iter(compiled.cache.values()))
    names = [getattr(fn, "__name__", "") for fn, _, _ in program.steps]
    assert names.count("neg") == 1 and names.count("mul") == 2 and names.count("matmul") == 1
    assert len(program.steps) == 11  # neg, sub, sub, add, mul, add, mT, matmul, getitem, mul, add


def test_buffer_reuse_is_bit_identical_and_spares_inputs(backend, monkeypatch):
    """Large elementwise chains write into the program's own temporaries (NumPy), never into an input or
    a view of one; the results do not change."""
    program_module = importlib.import_module("cupy_ad.transforms.jit_program")
    ns = backend.ns

    def f(x, y):
        t = ns.sin(x.mT) * 2.0 + y  # x.mT: a view of an input (never written)
        u = ns.tanh(t) - y
        return u * u + 1.0, t

    x, y = backend.random((64, 64)), backend.random((64, 64), seed=1)
    keep = backend.to_numpy(x).copy(), backend.to_numpy(y).copy()
    monkeypatch.setattr(program_module, "REUSE_MIN_BYTES", 1024)
    compiled = ad.jit(f)
    for _ in range(3):
        _assert_identical(backend, compiled(x, y), f(x, y))
    np.testing.assert_array_equal(backend.to_numpy(x), keep[0])
    np.testing.assert_array_equal(backend.to_numpy(y), keep[1])
    (program,) = next(iter(compiled.cache.values()))
    reused = sum(getattr(fn, "func", None) is program_module._into for fn, _, _ in program.steps)
    assert reused == (5 if backend.name == "numpy" else 0)  # * 2.0, + y, - y, u * u, + 1.0 (not sin: its input
    # is a view of x; not tanh: t is an output)


@pytest.mark.parametrize("view", ["reshape", "ravel"])
def test_memory_order_of_the_inputs_never_lets_reuse_overwrite_a_view(backend, view, monkeypatch):
    """A reshape of a temporary is a copy when the input is Fortran-ordered (the recording here) and a view
    when it is C-ordered: the temporary is not written into afterwards on any replay."""
    program_module = importlib.import_module("cupy_ad.transforms.jit_program")
    monkeypatch.setattr(program_module, "REUSE_MIN_BYTES", 1024)
    ns = backend.ns

    if view == "ravel" and backend.name != "numpy":
        pytest.skip("ravel is a NumPy method")

    def f(x):
        t = x + 1.0
        return ns.reshape(t, (-1,)) if view == "reshape" else t.ravel(), t * 2.0

    compiled = ad.jit(f)
    fortran = ns.permute_dims(backend.random((64, 64), seed=1), (1, 0))
    _assert_identical(backend, compiled(fortran), f(fortran))
    x = backend.random((64, 64))
    for _ in range(2):
        _assert_identical(backend, compiled(x), f(x))


def test_signed_zeros_and_nans_in_the_signature(backend):
    """0.0 and -0.0 (also complex zeros, in tuples, as static arguments) are different constants of the
    program; a NaN argument is found in the cache again (one recording)."""
    x = backend.random((3,))

    def assert_same_signs(got, want):
        np.testing.assert_array_equal(np.signbit(backend.to_numpy(got)), np.signbit(backend.to_numpy(want)))

    compiled = ad.jit(lambda x, s: x / s)
    static = ad.jit(lambda x, s: x / s[0], static_argnums=1)
    with np.errstate(divide="ignore"):
        for s in (0.0, -0.0, 0.0):
            assert_same_signs(compiled(x, s), x / s)
            assert_same_signs(static(x, (s,)), x / s)
    assert len(compiled.cache) == len(static.cache) == 2
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in (0j, complex(0.0, -0.0), -0j, 0j):
            compiled(x, s)
            static(x, (s,))
    assert len(compiled.cache) == len(static.cache) == 2 + 3  # (-0j is complex(-0.0, -0.0))
    with np.errstate(invalid="ignore"):
        nan = ad.jit(lambda x, s: x * s)
        for _ in range(3):
            assert np.isnan(backend.to_numpy(nan(x, float("nan")))).all()
    assert len(nan.cache) == 1 and len(next(iter(nan.cache.values()))) == 1


def test_a_python_float_argument_is_a_constant_and_a_0d_array_an_input(backend):
    """(README, jit: Python numbers among the arguments.) A float argument is part of the signature by value:
    each new value records again, float32 work stays float32 (weak, as eagerly); a 0-d array of the dtype to
    compute in is an input: one recording for every value. Eager values bit for bit either way."""
    x = backend.asarray(backend.to_numpy(backend.random((4,))).astype(np.float32))
    compiled, arrays = ad.jit(lambda x, a: x * a), ad.jit(lambda x, a: x * a)
    for a in (2.5, 3.5, 2.5):
        _assert_identical(backend, compiled(x, a), x * a)
        zero_d = backend.asarray(np.float32(a))
        _assert_identical(backend, arrays(x, zero_d), x * zero_d)
    assert backend.to_numpy(compiled(x, 2.5)).dtype == np.float32
    assert len(compiled.cache) == 2 and len(arrays.cache) == 1

def test_a_constant_output_keeps_its_type(backend):
    ns = backend.ns

    def f(x):
        return x + 1.0, ns.sum(ns.ones(3, dtype=x.dtype))

    compiled = ad.jit(f)
    x = backend.random((2,))
    for _ in range(2):
        got, want = compiled(x), f(x)
        _assert_identical(backend, got, want)
        assert type(got[1]) is type(want[1])


def test_writes_reach_the_views_taken_before(backend):
    """``y[k] = v`` and ``y += v`` on a traced value reach its basic-indexing views, and a write into a view
    reaches its base and the base's other views, as in NumPy memory (eagerly) and as on duals (jvp)."""

    def f(x):
        y = x * 1.0
        v = y[0:3]
        w = v[1:]
        y[1] = 100.0  # into the base: v and w see it
        w[1] = -5.0  # into a view of a view: v and y see it
        z = y[::2]
        v[0] = x[4]  # a traced value written
        y += 1.0  # in-place operators write too
        w *= x[1:3]
        return y + 0.0, v + 0.0, w + 0.0, z * 2.0

    x = backend.random((5,))
    keep = backend.to_numpy(x).copy()
    compiled = ad.jit(f)
    for _ in range(2):
        _assert_identical(backend, compiled(x), f(x))
    np.testing.assert_array_equal(backend.to_numpy(x), keep)
    t = backend.random((5,), seed=1)
    _assert_identical(backend, ad.jvp(compiled, (x,), (t,)), ad.jvp(f, (x,), (t,)))
    _assert_identical(backend, ad.jit(lambda x, t: ad.jvp(f, (x,), (t,)))(x, t), ad.jvp(f, (x,), (t,)))


def test_elementwise_runs_fuse_into_one_step_where_the_backend_fuses(monkeypatch):
    """Runs of elementwise steps on arrays become one step calling the backend's fusion (CuPy: cupy.fuse).
    NumPy has none: here it is given one that returns the run's Python function, which calls the same
    ufuncs in the same order, so the replay stays bit for bit the eager call; the program has fewer
    steps, a Python scalar operand ends a run, and a value the run makes and a later step reads is one of
    the fused step's outputs."""
    from cupy_ad.backends.cupy_backend import CupyBackend
    from cupy_ad.backends.numpy_backend import NumpyBackend

    stand_in = CupyBackend(cp=np, kernels=None, xp=None)  # (its fusible_form, on NumPy's ufuncs)
    fused = []

    def fuse(self, function):
        fused.append(function)
        return function

    def rnn(h, w, x):
        pre = h @ w + x
        t = pre.__array_namespace__().tanh(pre)
        return t * t - x * h, pre * 2.0

    def jvp_of(h, w, x, dh):
        return ad.jvp(rnn, (h, w, x), (dh, None, None))

    rng = np.random.default_rng(0)
    h, w, x, dh = (rng.standard_normal((4, 4)) for _ in range(4))
    plain = ad.jit(jvp_of)
    plain(h, w, x, dh)
    monkeypatch.setattr(NumpyBackend, "fusible_form", lambda self, fn: stand_in.fusible_form(fn))
    monkeypatch.setattr(NumpyBackend, "fuse", fuse)
    compiled = ad.jit(jvp_of)
    for _ in range(2):
        _assert_identical(ad.backends.backend_named("numpy"), compiled(h, w, x, dh), jvp_of(h, w, x, dh))
    (program,) = next(iter(compiled.cache.values()))
    (unfused,) = next(iter(plain.cache.values()))
    assert fused and all(fn in [step[0] for step in program.steps] for fn in fused)
    assert len(program.steps) < len(unfused.steps)
    multiple = [outs for fn, _, outs in program.steps if fn in fused and type(outs) is tuple]
    assert multiple  # tanh(pre) feeds the product and the tangent's 1 - t^2 after a matmul: two outputs


def test_cupy_backend_fusion_hooks():
    """CuPy's fusible forms are its ufuncs (the operators' included), never a gufunc; without ``fuse``
    (the NumPy stand-in) nothing fuses."""
    import operator
    from types import SimpleNamespace

    from cupy_ad.backends.cupy_backend import CupyBackend

    stand_in = CupyBackend(cp=np, kernels=None, xp=None)
    assert stand_in.fusible_form(operator.mul) is np.multiply and stand_in.fusible_form(np.tanh) is np.tanh
    assert stand_in.fusible_form(np.matmul) is None and stand_in.fusible_form(np.divmod) is None
    assert stand_in.fuse(lambda a: a) is None
    traced = []
    with_fuse = CupyBackend(cp=SimpleNamespace(fuse=lambda fn: traced.append(fn) or "kernel"), kernels=None, xp=None)
    assert with_fuse.fuse(np.tanh) == "kernel" and traced == [np.tanh]


def _divide_or_zero(x, y):
    """x / y, or x * 0 where NumPy's error state, set here, makes the division raise."""
    with np.errstate(divide="raise"):
        try:
            return x / y
        except FloatingPointError:
            return x * 0.0


def test_error_state_set_inside_f_is_part_of_the_program(backend):
    """np.errstate inside f: each step keeps what f changed of the caller's error state at the recording,
    and a replay sets that around the step. divide="raise" with a fallback replays as the eager call
    (a replay computed inf silently); divide="ignore" replays without the warning, while the caller's
    own state still rules the steps outside f's block (invalid="ignore" around the call)."""
    ns = backend.ns
    x = backend.asarray([1.0, 1.0, 1.0])

    def quiet(x, y):
        with np.errstate(divide="ignore"):
            ratio = x / y
        return ratio + ns.sqrt(-x)

    guarded = _divide_or_zero
    compiled, quieted = ad.jit(guarded), ad.jit(quiet)
    for y in ([1.0, 2.0, 4.0], [1.0, 0.0, 4.0], [1.0, 2.0, 4.0], [1.0, 0.0, 4.0]):
        y = backend.asarray(y)
        np.testing.assert_array_equal(backend.to_numpy(compiled(x, y)), backend.to_numpy(guarded(x, y)))
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("error")
            got = backend.to_numpy(quieted(x, y))
        with np.errstate(invalid="ignore", divide="ignore"):
            np.testing.assert_array_equal(got, backend.to_numpy(quiet(x, y)))
    assert sum(map(len, quieted.cache.values())) == 1
    assert sum(map(len, compiled.cache.values())) == 2  # the fallback's replay checks x / y still raises (review10)
    with pytest.raises(FloatingPointError), np.errstate(invalid="raise"):  # the caller's state outside f's block
        quieted(x, x)


def test_a_program_recorded_under_a_raising_error_state_replays_only_under_it(backend):
    """(review10) f's np.errstate(divide="raise") inside a caller's own divide="raise" changes nothing at the
    recording, so its step kept no change: replayed under the default state it computed inf (and warned)
    where f's error leads eagerly to its fallback. Such a program replays, and scan gets it, only under the
    caller state it was recorded in; another state records again."""
    x = backend.asarray([1.0, 1.0, 1.0])

    guarded = _divide_or_zero
    compiled = ad.jit(guarded)
    ones, zero = backend.asarray([1.0, 2.0, 4.0]), backend.asarray([1.0, 0.0, 4.0])
    with np.errstate(divide="raise"):
        compiled(x, ones)
        assert compiled.program_for(x, ones) is not None
    assert compiled.program_for(x, ones) is None
    for y in (zero, ones, zero):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (an error filter would make the replay's warning diverge it)
            np.testing.assert_array_equal(backend.to_numpy(compiled(x, y)), backend.to_numpy(guarded(x, y)))
    with np.errstate(divide="raise"):
        np.testing.assert_array_equal(backend.to_numpy(compiled(x, zero)), backend.to_numpy(guarded(x, zero)))


def test_an_unused_step_is_kept_where_the_recording_error_state_raises(backend):
    """(review12) Dead code: an unused division is dropped as unable to raise, but under a caller's
    np.errstate(divide="raise") (where the program replays: review10) it raises FloatingPointError on values,
    as the eager call does; such a program keeps it. Under the default state it is still dropped."""
    ns = backend.ns

    def unused_ratio(x, y):
        x / y  # noqa: B018 (unused: only its error matters)
        return ns.exp(x)

    compiled = ad.jit(unused_ratio)
    x, ones, zero = backend.asarray([1.0, 2.0]), backend.asarray([1.0, 2.0]), backend.asarray([1.0, 0.0])
    with np.errstate(divide="raise"):
        compiled(x, ones)
        try:
            unused_ratio(x, zero)
            eager = None
        except FloatingPointError as error:
            eager = error
        if eager is None:  # (CuPy's kernels do not read NumPy's error state)
            np.testing.assert_array_equal(backend.to_numpy(compiled(x, zero)), backend.to_numpy(ns.exp(x)))
        else:
            with pytest.raises(FloatingPointError):
                compiled(x, zero)
    plain = ad.jit(unused_ratio)
    plain(x, ones)
    (program,) = [p for variants in plain.cache.values() for p in variants]
    assert "divide" not in program.source and "truediv" not in program.source
