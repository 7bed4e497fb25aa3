"""scan over a jit body: the settled tangent pattern kept per first signature (``jit_step.SettledPatterns``).

A later call with the first signature of an earlier one replays every step from the body's program and runs
no fixed-point pass; its results are the eager loop's bit for bit (on CuPy within rounding), for every
signature and tangent pattern, and a body whose signatures get a second program keeps no pattern."""
import importlib
import threading
import warnings

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import backend_of
from cupy_ad.values import Dual
from test_jit import _assert_identical

jit_module = importlib.import_module("cupy_ad.transforms.jit")


def _rnn(ns):
    def body(carry, x):  # h's tangent comes from w's: two passes settle it when h starts plain
        w, h = carry
        h = ns.tanh(ns.matmul(w, h) + x)
        return (w, h), (ns.sum(h * h), h, 2.0 * x)
    return body


@pytest.fixture
def signatures(monkeypatch):
    """The number of jit signatures taken (a fixed-point pass through the jitted body takes one)."""
    taken = []
    original = jit_module._signature
    monkeypatch.setattr(jit_module, "_signature", lambda leaves: taken.append(1) or original(leaves))
    return taken


def _data(backend, n=4, steps=5, dtype="float64"):
    ns = backend.ns
    cast = lambda a: ns.astype(a, getattr(ns, dtype))  # noqa: E731
    w, dw = cast(backend.random((n, n)) / n), cast(backend.random((n, n), seed=1))
    xs, dxs = cast(backend.random((steps, n), seed=2)), cast(backend.random((steps, n), seed=3))
    h0, dh = cast(backend.random((n,), seed=4)), cast(backend.random((n,), seed=5))
    return w, dw, xs, dxs, h0, dh


@pytest.mark.parametrize("reverse", [False, True])
def test_a_later_call_replays_every_step_and_runs_no_pass(backend, signatures, reverse):
    w, dw, xs, dxs, h0, dh = _data(backend)
    body, jitted = _rnn(backend.ns), ad.jit(_rnn(backend.ns))
    loop = lambda step: lambda w: ad.scan(step, (w, h0), xs, reverse=reverse)  # noqa: E731
    want = ad.jvp(loop(body), (w,), (dw,))
    inputs = [backend.to_numpy(v).copy() for v in (w, dw, xs, h0)]
    for call in range(3):
        signatures.clear()
        got = ad.jvp(loop(jitted), (w,), (dw,))
        _assert_identical(backend, got, want)
        # first call: the look-up, two passes, the programs' look-ups; later: the look-up alone
        assert len(signatures) == (1 if call else 5)
        (_, h), (_, hs, _) = got[0]
        h[...], hs[...] = 7.0, 7.0  # the caller's own arrays: the next call is not affected
    for v, before in zip((w, dw, xs, h0), inputs):  # inputs never written
        np.testing.assert_array_equal(backend.to_numpy(v), before)
    assert len(jitted.scan_patterns.entries) == 1
    w2 = w * 0.5  # other values, the same signature
    _assert_identical(backend, ad.jvp(loop(jitted), (w2,), (dw,)), ad.jvp(loop(body), (w2,), (dw,)))
    assert len(jitted.scan_patterns.entries) == 1


def test_patterns_are_kept_per_shape_dtype_and_tangent_pattern(backend, signatures):
    """Each first signature has its own entry: another shape, dtype, tangent pattern (which carries and xs
    have tangents, of which levels), length or no jvp at all; every call, first or later, bit for bit eager."""
    ns = backend.ns
    body, jitted = _rnn(ns), ad.jit(_rnn(ns))
    cases = []
    for n, steps, dtype in ((4, 5, "float64"), (3, 5, "float64"), (4, 5, "float32"), (4, 1, "float64")):
        w, dw, xs, dxs, h0, dh = _data(backend, n, steps, dtype)
        cases += [
            lambda step, w=w, dw=dw, xs=xs, h0=h0: ad.jvp(lambda w: ad.scan(step, (w, h0), xs), (w,), (dw,)),
            lambda step, w=w, xs=xs, h0=h0, dh=dh: ad.jvp(lambda h: ad.scan(step, (w, h), xs), (h0,), (dh,)),
            lambda step, w=w, xs=xs, dxs=dxs, h0=h0: ad.jvp(lambda xs: ad.scan(step, (w, h0), xs), (xs,), (dxs,)),
            lambda step, w=w, dw=dw, xs=xs, h0=h0: ad.jvp(
                lambda w: ad.jvp(lambda v: ad.scan(step, (v, h0), xs), (w,), (dw,))[1], (w,), (dw,)),
            lambda step, w=w, xs=xs, h0=h0: ad.scan(step, (w, h0), xs),
        ]
    for round in range(2):  # first calls fill the entries, the second round hits them
        for case in cases:
            _assert_identical(backend, case(jitted), case(body))
        if round == 0:
            entries = len(jitted.scan_patterns.entries)
    # the length-1 cases share the first signature of their length-5 twins (one row of xs): 4 x 5 - 5
    assert entries == len(jitted.scan_patterns.entries) == 15


def test_a_zero_tangent_pattern_stays_symbolic_on_a_later_call(backend):
    """A carry and a y whose tangents stay zero get none (not zero arrays) when the pattern is known too."""
    ns = backend.ns

    def body(c, x):
        h, k = c
        return (ns.tanh(h) * x, k + 1.0), (x * 2.0, h)

    xs = backend.random((4, 3), seed=1)
    h0, dh = backend.random((3,)), backend.random((3,), seed=2)
    zero = []

    def loop(step):
        def f(h):
            (h, k), (doubled, hs) = ad.scan(step, (h, ns.zeros((3,))), xs)
            zero.append([type(v) is not Dual or type(v.tangent) is ad.Zero for v in (h, k, doubled, hs)])
            return (h, k), (doubled, hs)
        return f

    jitted = ad.jit(body)
    want = ad.jvp(loop(body), (h0,), (dh,))
    for _ in range(2):
        _assert_identical(backend, ad.jvp(loop(jitted), (h0,), (dh,)), want)
    assert zero == [[False, True, True, False]] * 3


def test_a_second_program_drops_the_patterns(backend):
    """A guard whose other outcome returns another tangent structure: with a kept pattern the step-0 replay
    meets the guard, the fixed point runs as without it and the body keeps no patterns from then on; a guard
    flipping after step 0 of a call that knew its pattern hands the rest to the ordinary loop."""
    ns = backend.ns

    def body(c, x):
        w, h = c
        if ns.sum(x) > 0.0:
            h = ns.tanh(ns.matmul(w, h)) + x
        else:
            h = 1.0 * x  # no tangent from w
        return (w, h), h

    w, dw, xs, _, h0, _ = _data(backend)
    negative = ns.concat([-xs[:1, ...], xs[1:, ...]])  # step 0 takes the other branch
    late = ns.concat([xs[:3, ...], -xs[3:, ...]])  # steps 3 and 4 do
    loop = lambda step, xs: lambda w: ad.scan(step, (w, h0), xs)  # noqa: E731
    jitted = ad.jit(body)
    for data in (xs, xs, late):
        _assert_identical(backend, ad.jvp(loop(jitted, data), (w,), (dw,)), ad.jvp(loop(body, data), (w,), (dw,)))
    assert not jitted.scan_patterns.entries and jitted.scan_patterns.several  # late: a second program
    fresh = ad.jit(body)
    for data in (xs, negative, xs):
        _assert_identical(backend, ad.jvp(loop(fresh, data), (w,), (dw,)), ad.jvp(loop(body, data), (w,), (dw,)))
    assert not fresh.scan_patterns.entries


def test_threads_sharing_the_patterns(backend):
    """Threads scanning one jitted body at once, under jvp: each gets the eager results."""
    w, dw, xs, _, h0, _ = _data(backend)
    body, jitted = _rnn(backend.ns), ad.jit(_rnn(backend.ns))
    loop = lambda step, scale: lambda w: ad.scan(step, (w, h0), xs * scale)  # noqa: E731
    want = [ad.jvp(loop(body, 1.0 + k), (w,), (dw,)) for k in range(4)]
    got = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(k):
        start.wait()
        for _ in range(5):
            got[k].append(ad.jvp(loop(jitted, 1.0 + k), (w,), (dw,)))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert len(got[k]) == 5
        for result in got[k]:
            _assert_identical(backend, result, want[k])


def test_a_kept_pattern_replays_only_under_its_error_state(backend):
    """A body whose program was recorded under a caller's raising error state (``Program.replays_now``): a
    later call under another state does not replay it from the kept pattern (f's own errstate inside the
    caller's changed nothing, so the program would divide by zero silently); it meets the error as eagerly,
    through its fallback."""
    ns = backend.ns

    def body(c, x):
        with np.errstate(divide="raise"):
            try:
                r = c / x
            except FloatingPointError:
                r = c * 0.0
        return ns.tanh(r), r

    finite = backend.asarray([[1.0, 2.0], [1.0, 3.0], [2.0, 4.0]])
    zero = backend.asarray([[1.0, 2.0], [1.0, 0.0], [2.0, 4.0]])  # the fallback at step 1
    loop = lambda step, xs: lambda c: ad.scan(step, c, xs)  # noqa: E731
    c0, dc = backend.asarray([1.0, 1.0]), backend.asarray([0.5, 0.25])
    jitted = ad.jit(body)
    with np.errstate(divide="raise"):
        for _ in range(2):
            _assert_identical(backend, ad.jvp(loop(jitted, finite), (c0,), (dc,)),
                              ad.jvp(loop(body, finite), (c0,), (dc,)))
    assert len(jitted.scan_patterns.entries) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a replay's warning under an error filter would diverge it)
        _assert_identical(backend, ad.jvp(loop(jitted, zero), (c0,), (dc,)), ad.jvp(loop(body, zero), (c0,), (dc,)))


def test_a_first_step_that_does_not_replay_runs_the_fixed_point(backend):
    """(review12) A kept pattern whose step-0 replay meets a guard (the other branch: no tangent from w) is not
    used: the fixed point runs, and the carry and the ys keep symbolic zero tangents as eagerly (starting the
    loop at step 0 in the kept pattern gave them zero arrays)."""
    ns = backend.ns

    def body(c, x):
        w, h = c
        h = ns.tanh(ns.matmul(w, h)) + x if ns.sum(x) > 0.0 else 1.0 * x
        return (w, h), h

    w, dw, xs, _, h0, _ = _data(backend)
    positive = ns.abs(xs) + 0.1
    symbolic = []

    def loop(step, xs):
        def f(w):
            (_, h), hs = ad.scan(step, (w, h0), xs)
            symbolic.append([type(v) is not Dual or type(v.tangent) is ad.Zero for v in (h, hs)])
            return h, hs
        return f

    jitted = ad.jit(body)
    for data in (positive, positive, -positive):
        _assert_identical(backend, ad.jvp(loop(jitted, data), (w,), (dw,)), ad.jvp(loop(body, data), (w,), (dw,)))
    assert symbolic == [[False, False]] * 4 + [[True, True]] * 2


@pytest.mark.parametrize("empty", [True, False])
def test_a_body_of_constants_replays(backend, empty):
    """(review12) A program whose outputs are all constants returns no array: the loop over its steps was
    written ``= run(x0[i, ...])`` (a SyntaxError on every call, the first one too; older than the kept patterns)."""
    ns = backend.ns

    def body(c, x):
        return (() if isinstance(c, tuple) else ns.ones(())), (ns.ones((2,)), ns.full((), 2.0))

    jitted, init, xs = ad.jit(body), () if empty else backend.asarray(1.0), backend.random((3, 2))
    for _ in range(2):
        _assert_identical(backend, ad.scan(jitted, init, xs), ad.scan(body, init, xs))


def test_a_later_call_without_init_or_xs_makes_its_buffers_on_the_backend_of_the_ys(backend):
    """(session 9) With ``init=()`` and no ``xs`` the only arrays are those the body closes over: a later call's
    buffers were made on the default backend (NumPy's zeros of an array_api_strict dtype: a TypeError)."""
    ns = backend.ns
    w = backend.random((2,))

    def body(c, x):
        return c, ns.tanh(w) * 2.0

    jitted = ad.jit(body)
    for _ in range(3):
        _assert_identical(backend, ad.scan(jitted, (), None, length=3), ad.scan(body, (), None, length=3))
    assert len(jitted.scan_patterns.entries) == 1


def test_a_body_whose_steps_do_not_replay_keeps_no_pattern(backend):
    """(session 9) A program that does not fit the settled pattern (a Python scalar among the body's results:
    ``jit_step._plan``) runs the ordinary loop; its pattern is not kept either, or every later call would make
    zero buffers and try step 0 from it, then run the fixed point all the same."""
    ns = backend.ns

    def body(c, x):
        return ns.tanh(c) * x, (c, 2.0)

    jitted, c0, xs = ad.jit(body), backend.random((3,)), backend.random((4, 3), seed=1)
    for length in (4, 1, 4):  # (length 1: no steps to replay, the plan is checked all the same)
        _assert_identical(backend, ad.scan(jitted, c0, xs[:length, ...]), ad.scan(body, c0, xs[:length, ...]))
    assert not jitted.scan_patterns.entries


def test_a_first_step_of_another_signature_keeps_no_pattern(backend):
    """(review12) The kept program replays every step, the first too, so it is kept only where the last pass
    (step 0) had the signature of the steps: NumPy's 0-d results are scalars (``numpy.float64``), so there a
    0-d array carry has another signature at step 0 than at the steps after it, whose program was not
    recorded for step 0's arguments (the other backends' 0-d results are arrays: kept)."""
    xs, c0, dc = backend.random((4,)), backend.asarray(0.5), backend.asarray(1.0)

    def body(c, x):
        return c * x + 1.0, c

    jitted = ad.jit(body)
    loop = lambda step: lambda c: ad.scan(step, c, xs)  # noqa: E731
    for _ in range(2):
        _assert_identical(backend, ad.jvp(loop(jitted), (c0,), (dc,)), ad.jvp(loop(body), (c0,), (dc,)))
    assert len(jitted.scan_patterns.entries) == (backend.name != "numpy")


def test_a_plain_init_whose_pattern_takes_an_outer_level_keeps_its_pattern(backend, signatures):
    """(review12) In a nested jvp the plain init is handed to the body as a dual of the inner level; its pattern
    takes the outer level of xs, so the steps' levels are the first pass's without the inner one (the highest:
    the same ranks). The pattern is kept and a later call replays every step, bit for bit eager (a check that
    the levels were equal kept none)."""
    ns = backend.ns

    def body(h, x):
        h = ns.tanh(h) * 0.5 + x
        return h, h * 2.0

    w, dw, xs, dxs, h0, _ = _data(backend)
    nested = lambda step: ad.jvp(  # noqa: E731 - xs along the outer jvp; the inner one's w is not used
        lambda xs: ad.jvp(lambda w: ad.scan(step, h0, xs), (w,), (dw,)), (xs,), (dxs,))
    jitted = ad.jit(body)
    for call in range(3):
        signatures.clear()
        _assert_identical(backend, nested(jitted), nested(body))
        if call:
            assert len(signatures) == 1
    assert len(jitted.scan_patterns.entries) == 1


@pytest.mark.parametrize("with_xs", [False, True])
def test_python_scalar_init_of_a_jit_body_is_typed_as_the_eager_body_types_it(backend, with_xs):
    """(review18) A Python scalar in init (or jvp's Python-scalar primal as init) next to arrays of another
    backend than NumPy's from the closure: the probe for its dtype through the jitted body raised TypeError
    (its recording reads the weak scalar's value to remake it on that backend), so the init stayed a NumPy
    float64 and the jitted scan returned NumPy float64 arrays where the eager one returns float32 arrays of
    the backend."""
    ns = backend.ns
    w, xs = backend.asarray(np.float32([0.5, 1.5])), backend.asarray(np.float32([[1, 2], [3, 4], [5, 6]]))

    def body(c, x):
        return c * ns.sum(w if x is None else x * w) + 1.0, (c, c * w)

    jitted, data = ad.jit(body), dict(xs=xs) if with_xs else dict(xs=None, length=3)
    loop = lambda step: lambda s: ad.scan(step, s, **data)  # noqa: E731
    for _ in range(2):
        got, want = loop(jitted)(0.0), loop(body)(0.0)
        _assert_identical(backend, got, want)
        assert all(backend_of(v) is backend_of(w) for v in (got[0], *got[1]))
        assert got[0].dtype == w.dtype
        _assert_identical(backend, ad.jvp(loop(jitted), (0.25,), (1.0,)), ad.jvp(loop(body), (0.25,), (1.0,)))


def test_ys_of_another_backend_than_the_carries_replay(backend):
    """(review18) NumPy carries, ys of the arrays the body closes over: a later call made the ys' buffers on
    their backend but on the device of the NumPy carry ('cpu': array_api_strict raised ValueError)."""
    ns, w = backend.ns, backend.asarray([0.5, 1.5])

    def body(c, x):
        return c + 1.0, ns.tanh(w) * 2.0

    jitted, c0 = ad.jit(body), np.zeros(2)
    for _ in range(3):
        _assert_identical(backend, ad.scan(jitted, c0, None, length=3), ad.scan(body, c0, None, length=3))
    assert len(jitted.scan_patterns.entries) == 1
