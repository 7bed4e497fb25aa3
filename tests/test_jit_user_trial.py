"""jit as a new user meets it (session 7's trial): the namespace's functions on traced values, Python
control flow, and the compositions, each against the eager call (bit for bit on NumPy, within rounding on
CuPy: ``_assert_identical``)."""
import importlib
import threading
import time

import numpy as np
import pytest
from conftest import Backend
from test_jit import _assert_identical

import cupy_ad as ad

jit_module = importlib.import_module("cupy_ad.transforms.jit")
jit_recording = importlib.import_module("cupy_ad.transforms.jit_recording")


def _newton_sqrt(a):
    """Python control flow on values: a while loop to convergence from ``ones_like``."""
    xp = a.__array_namespace__()
    z = xp.ones_like(a)
    while xp.max(xp.abs(z * z - a)) > 1e-12:
        z = (z + a / z) / 2
    return z


def test_arrays_made_like_a_traced_value_are_arrays_of_the_program(backend):
    """``ones_like(x)`` and its kin on a traced value returned the traced value's shell itself (a jit
    value leaked to the caller, and a later operator on it failed the recording): they are constants
    of the program (their shape and dtype are part of the signature)."""
    ns = backend.ns
    x = backend.asarray([2.0, 3.0, 0.5])
    fns = [lambda a: ns.ones_like(a), lambda a: (ns.zeros_like(a, dtype=ns.int32), a * ns.empty_like(a).shape[0]),
           lambda a: ns.full_like(a, 2.5) * a, _newton_sqrt]
    for f in fns:
        jitted = ad.jit(f)
        for a in (x, x * 4.0, x):  # recorded, replayed, a new guard outcome for Newton's loop count
            got = jitted(a)
            assert type(got) is type(f(a)) or type(got) is tuple
            _assert_identical(backend, got, f(a))
    step = ad.jit(lambda a, da: ad.jvp(_newton_sqrt, (a,), (da,)))
    _assert_identical(backend, step(x, x), ad.jvp(_newton_sqrt, (x,), (x,)))
    doubled_ones = ad.jit(lambda a: ns.ones_like(a) * 2.0)
    doubled_ones(x)
    assert not doubled_ones.program_for(x)[0].steps  # a constant: no step


def test_dtype_helpers_and_devices_of_traced_values(backend):
    """``result_type``, ``can_cast`` and ``finfo`` given a traced array (they read its dtype: they
    refused it), and ``x.to_device(x.device)`` (it recursed until the stack overflowed)."""
    ns = backend.ns
    x = backend.asarray([0.5, -1.0])
    fns = [lambda a: ns.astype(a, ns.result_type(a, ns.float32)),
           lambda a: a * 2.0 if ns.can_cast(a, ns.float32) else a,
           lambda a: a * ns.finfo(a).eps,
           lambda a: a.to_device(a.device) * 2.0]
    for f in fns:
        jitted = ad.jit(f)
        for a in (x, -x):
            _assert_identical(backend, jitted(a), f(a))
        _assert_identical(backend, ad.jvp(jitted, (x,), (x,)), ad.jvp(f, (x,), (x,)))


def test_threads_meeting_a_new_signature_together_record_it_once(backend):
    """Each thread recorded it (as many copies as threads: MAX_VARIANTS filled with copies refused the
    next guard outcome, and scan's ``program_for`` found no single program): one records, the others
    replay its program."""
    ns = backend.ns
    x = backend.random((3,))
    threads = jit_module.MAX_VARIANTS + 1
    arrived = threading.Barrier(threads)

    def f(a):
        time.sleep(0.02)  # (runs at the recording only: the other threads arrive meanwhile)
        return ns.tanh(a) * 2.0 if ns.sum(a) > -100.0 else a

    jitted = ad.jit(f)
    results = [None] * threads

    def call(k):
        arrived.wait()
        results[k] = jitted(x)

    workers = [threading.Thread(target=call, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [len(variants) for variants in jitted.cache.values()] == [1]
    for got in results:
        _assert_identical(backend, got, f(x))
    _assert_identical(backend, jitted(x - 1000.0), f(x - 1000.0))  # a new outcome still records


def test_the_blockwise_rotation_of_clusters_records_a_guard_per_cluster_size(backend, monkeypatch):
    """jit of eigh/svd jvps at repeated values from BLOCKWISE_FROM on (the host loop over cluster sizes):
    ``int()`` of a cluster size, then a NumPy array indexed by a traced mask, were refused. The sizes
    are now guards (another structure records again); the results are the eager ones bit for bit."""
    monkeypatch.setattr(importlib.import_module("cupy_ad.linalg._clusters"), "BLOCKWISE_FROM", 2)
    n = 6
    rng = np.random.default_rng(4)
    d = rng.standard_normal((n, n))
    d = backend.asarray(d + d.T)
    points = [np.eye(n), np.diag([1.0, 1.0, 1.0, 2.0, 2.0, 3.0]), np.eye(n), np.diag(np.arange(n) + 1.0)]
    for f in (lambda a, da: ad.jvp(ad.linalg.eigh, (a,), (da,)), lambda a, da: ad.jvp(ad.linalg.svdvals, (a,), (da,))):
        jitted = ad.jit(f)
        for a in map(backend.asarray, points):
            _assert_identical(backend, jitted(a, d), f(a, d))
        assert [len(variants) for variants in jitted.cache.values()] == [3]  # (the third point replays the first)


def test_a_nested_degenerate_warning_inside_jit(backend):
    """The warning's numbers were read with int() and float() of traced values (refused): they are the
    recording's, and the NaN tangents are the eager ones."""
    rng = np.random.default_rng(5)
    d1, d2 = rng.standard_normal((2, 3, 3))
    a, d1, d2 = (backend.asarray(m) for m in (np.diag([1.0, 1.0, 2.0]), d1 + d1.T, d2 + d2.T))

    def f(a, d1, d2):
        return ad.jvp(lambda z: ad.jvp(lambda y: ad.linalg.eigh(y)[1], (z,), (d1,))[1], (a,), (d2,))

    with pytest.warns(ad.linalg.DegenerateNestedWarning):
        eager = f(a, d1, d2)
    with pytest.warns(ad.linalg.DegenerateNestedWarning):
        _assert_identical(backend, ad.jit(f)(a, d1, d2), eager)


def test_a_slice_among_the_arguments(backend):
    """A slice argument (a Python value of the signature, static or not) was refused as unhashable
    (slices are, before Python 3.12); slices that differ record again."""
    x = backend.random((6,))
    for jitted in (ad.jit(lambda a, key: a[key] * 2.0), ad.jit(lambda a, key: a[key] * 2.0, static_argnums=1)):
        for key in (slice(1, 4), slice(1, 4), slice(None, None, -2)):
            _assert_identical(backend, jitted(x, key), x[key] * 2.0)
        assert sum(len(variants) for variants in jitted.cache.values()) == 2


def test_jacfwd_passes_arguments_without_arrays_as_they_are(backend):
    """jacfwd turned every other argument into a 0-d dual through jvp: an int that a jitted f takes
    through static_argnums was refused as unhashable, a str (a mode) was refused. As in JAX they are
    closed over; arguments holding arrays still enter jvp with zero tangents."""
    ns = backend.ns
    x, y = backend.random((3,)), backend.random((3,), seed=1)

    def g(a, n, mode, b):
        for _ in range(n):
            a = ns.sin(a) * b
        return a * 2.0 if mode == "double" else a

    jitted = ad.jit(g, static_argnums=(1, 2))
    for n, mode in ((2, "double"), (1, "same"), (2, "double")):
        _assert_identical(backend, ad.jacfwd(jitted)(x, n, mode, y), ad.jacfwd(g)(x, n, mode, y))
        _assert_identical(backend, ad.jacfwd(jitted, argnums=3)(x, n, mode, y), ad.jacfwd(g, argnums=3)(x, n, mode, y))
    assert len(jitted.cache) == 4  # (two static pairs, each with argnums 0 and 3)
    expected = backend.to_numpy(ns.cos(x) * y * 2.0)
    np.testing.assert_array_equal(np.diagonal(backend.to_numpy(ad.jacfwd(g)(x, 1, "double", y))), expected)


def _logdet_or_marker(a):
    """log det of a positive definite ``a`` by Cholesky; where Cholesky fails, a fallback (-1)."""
    ns = a.__array_namespace__()
    try:
        c = ad.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return ad.linalg.slogdet(a)[1] * 0.0 - 1.0
    return 2.0 * ns.sum(ns.log(ns.linalg.diagonal(c)), axis=-1)


def test_an_error_that_f_handles_is_control_flow(backend):
    """``try: cholesky`` / ``except LinAlgError:`` a fallback. Recorded on a failing matrix, the replay
    ran the fallback for positive definite ones (a silently wrong result); recorded on a positive
    definite one, the replay raised where f falls back. Both are now the eager results, in scan too."""
    spd, bad = backend.asarray(2.0 * np.eye(3)), backend.asarray(-np.eye(3))
    for order in ((bad, spd), (spd, bad)):
        jitted = ad.jit(_logdet_or_marker)
        for a in order + order:
            _assert_identical(backend, jitted(a), _logdet_or_marker(a))
        assert [len(variants) for variants in jitted.cache.values()] == [2]
    with pytest.raises(np.linalg.LinAlgError):  # (an error f does not handle still reaches the caller)
        ad.jit(ad.linalg.cholesky)(bad)

    def body(total, a):
        value = _logdet_or_marker(a)
        return total + value, value

    stack = backend.asarray(np.stack([2.0 * np.eye(3), 3.0 * np.eye(3), -np.eye(3), 4.0 * np.eye(3)]))
    # (recorded at the first step, replayed from the second: the third's error hands over to the ordinary loop)
    _assert_identical(backend, ad.scan(ad.jit(body), backend.asarray(0.0), stack),
                      ad.scan(body, backend.asarray(0.0), stack))
    with pytest.raises(np.linalg.LinAlgError):
        ad.scan(ad.jit(lambda total, a: (total, ad.linalg.cholesky(a))), backend.asarray(0.0), stack)


def test_a_recording_may_wait_for_another_thread_calling_the_same_function(backend):
    """Recordings wait for each other per signature only: a recording that waits for a thread calling
    the same jitted function on another signature (a pool over chunks, say) goes on."""
    x = backend.random((4,))
    half = backend.random((2,), seed=1)
    results = {}

    def f(a):
        if a.shape[0] == 4:  # (the call on the whole array hands another array to another thread)
            helper = threading.Thread(target=lambda: results.setdefault("half", jitted(half)))
            helper.start()
            helper.join(timeout=30)
            assert not helper.is_alive(), "the helper waited for the recording that waits for it"
        return a * 2.0

    jitted = ad.jit(f)
    _assert_identical(backend, jitted(x), x * 2.0)
    _assert_identical(backend, results["half"], half * 2.0)


def test_a_traced_value_used_after_its_recording_says_so(backend):
    """Operators, indexing and bool() on a traced value that escaped its recording (a global, another
    thread) raised a bare KeyError; they raise bind's ValueError, saying what happened."""
    x = backend.random((3,))
    escaped = []
    ad.jit(lambda a: (escaped.append(a), a * 2.0)[1])(x)
    for use in (lambda a: a * 2.0, lambda a: a[1], lambda a: bool(a[0] > 0), lambda a: backend.ns.sin(a)):
        with pytest.raises(ValueError, match="a value from a finished jit call was used.*another thread"):
            use(escaped[0])


def test_numpy_functions_without_an_equivalent_are_recorded_as_they_are():
    """A plain jit needs no JVP rule: NumPy functions and ufunc methods the namespace lacks (np.diff,
    np.fft.rfft, np.median, np.exp2, np.round with decimals) were refused "on the values of jvp and vmap";
    they are recorded as called, so replays are eager NumPy's results (types included). Under a jvp
    the duals refuse them as before, and functions writing into an argument are refused."""
    numpy_backend = Backend("numpy", importlib.import_module("array_api_compat.numpy"))
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4))

    def f(a):
        return (np.diff(a, axis=-1), np.hstack([a, a]), np.fft.rfft(a), np.median(a), np.exp2(a),
                np.round(a, 2), np.logaddexp.reduce(a, axis=0), np.trapezoid(a))

    jitted = ad.jit(f)
    for a in (x, -2.0 * x, x):
        got, want = jitted(a), f(a)
        assert [type(g) for g in got] == [type(w) for w in want]
        _assert_identical(numpy_backend, got, want)
    with pytest.raises(TypeError, match="np.diff has no equivalent on the values of jvp"):
        ad.jit(lambda a, t: ad.jvp(lambda z: np.diff(z), (a,), (t,)))(x, x)
    for writes in (lambda a: np.fill_diagonal(a, 0.0), lambda a: np.copyto(a, 0.0), lambda a: np.exp2(a, out=a)):
        with pytest.raises(TypeError, match="writes into an array in place"):
            ad.jit(writes)(x.copy())


def test_numpy_functions_recorded_as_they_are_check_their_shapes_and_effects():
    """A NumPy function recorded as called may size its output by values (np.bincount: Python read that
    size, and a replay kept it: silently wrong), or work by writing into an argument where the step's
    result is unused (np.add.at, nan_to_num(copy=False), a positional out: the replay dropped the write, a
    silently wrong result). Shapes are checked at replay (a new size: a new recording); writes refused."""
    def scaled_counts(a):
        counts = np.bincount(a)
        return counts / counts.shape[0]

    jitted = ad.jit(scaled_counts)
    for a in (np.array([0, 1, 1]), np.array([0, 1, 2]), np.array([0, 1, 1])):
        np.testing.assert_array_equal(jitted(a), scaled_counts(a))

    def add_at(a):
        np.add.at(a, np.array([0]), 1.0)
        return a * 2.0

    def cleaned(a):
        np.nan_to_num(a, copy=False)
        return a + 1.0

    def summed_into(a, b):
        np.cumsum(a, 0, None, b)
        return b * 2.0

    x = np.array([np.nan, 1.0, 2.0])
    for writes, arguments in ((add_at, (x,)), (cleaned, (x,)), (lambda a: np.nan_to_num(a, 0), (x,)),
                              (summed_into, (x, np.zeros(3)))):
        copies = [a.copy() for a in arguments]
        with pytest.raises(TypeError, match="writes into an array in place"):
            ad.jit(writes)(*copies)
        for copy, argument in zip(copies, arguments):  # (refused before the call: nothing written)
            np.testing.assert_array_equal(copy, argument)
    with pytest.raises(TypeError, match="np.save returns nothing"):
        ad.jit(lambda a: (np.save(__import__("io").BytesIO(), a), a * 2.0)[1])(x)


def test_replays_that_raise_name_their_error_once_the_recordings_are_spent(backend, monkeypatch):
    """Any error in a replay records the call again (f may handle it); a replay that always raises (a
    defect of the program, not of f) recorded copies until MAX_VARIANTS, then said the recordings differ in
    control flow, the replay's own error lost. The error is named and chained."""
    x = backend.random((3,))
    jitted = ad.jit(lambda a: a * 2.0)
    jitted(x)

    def defective(self, *args):
        raise KeyError("a defect of the replay")

    monkeypatch.setattr(importlib.import_module("cupy_ad.transforms.jit_program").Program, "replay", defective)
    for _ in range(jit_module.MAX_VARIANTS - 1):  # (each call recorded again: the eager result)
        _assert_identical(backend, jitted(x), x * 2.0)
    with pytest.raises(RuntimeError, match="KeyError: 'a defect of the replay'") as raised:
        jitted(x)
    assert isinstance(raised.value.__cause__, KeyError)


def test_replays_warn_where_the_eager_call_warns(backend):
    """The nested degenerate warning was Python run at the recording only: replays gave the NaN tangents
    silently. It is a step of the program, from the replay's own numbers, at the caller's line."""
    rng = np.random.default_rng(5)
    d1, d2 = rng.standard_normal((2, 3, 3))
    d1, d2 = backend.asarray(d1 + d1.T), backend.asarray(d2 + d2.T)

    def f(a, d1, d2):
        return ad.jvp(lambda z: ad.jvp(lambda y: ad.linalg.eigh(y)[1], (z,), (d1,))[1], (a,), (d2,))

    def across(a, d1, d2):  # (eigvalsh along another outer direction: the curve check's warning)
        return ad.jvp(lambda z: ad.jvp(ad.linalg.eigvalsh, (z,), (d1,))[1], (a,), (d2,))

    for g in (f, across):
        jitted = ad.jit(g)
        for scale in (1.0, 2.0, 3.0):  # recorded, then replayed
            a = backend.asarray(np.diag([1.0, 1.0, 2.0]) * scale)
            with pytest.warns(ad.linalg.DegenerateNestedWarning) as eager_warnings:
                eager = g(a, d1, d2)
            with pytest.warns(ad.linalg.DegenerateNestedWarning) as replay_warnings:
                _assert_identical(backend, jitted(a, d1, d2), eager)
            assert [str(w.message) for w in replay_warnings] == [str(w.message) for w in eager_warnings]
            assert {w.filename for w in replay_warnings} == {__file__}
        assert [len(variants) for variants in jitted.cache.values()] == [1]


def test_a_call_made_only_for_its_error_is_replayed(backend):
    """``try: cholesky(a)`` as a check alone (its result unused), or an index read only to see it is in
    bounds: the replay dropped the call as dead code, so it never raised and f's fallback never ran (a
    silently wrong result). Calls whose errors follow values are kept; dead elementwise and reshaping
    steps are still dropped."""
    ns = backend.ns

    def checked(a):
        try:
            ad.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            return a * 0.0 - 1.0
        return a * 2.0

    def in_bounds(x, i):
        try:
            x[i]
        except IndexError:
            return x * 0.0
        return x + 1.0

    spd, bad = backend.asarray(2.0 * np.eye(3)), backend.asarray(-np.eye(3))
    jitted = ad.jit(checked)
    for a in (spd, bad, spd, bad):
        _assert_identical(backend, jitted(a), checked(a))
    x = backend.random((3,))
    jitted = ad.jit(in_bounds)
    for i in (1, 5, 2, 7):
        index = backend.asarray(np.asarray(i))
        _assert_identical(backend, jitted(x, index), in_bounds(x, index))
    dead_views = ad.jit(lambda a: (ns.reshape(a, (-1,)), a[0, 1:], ns.permute_dims(a, (1, 0)), a.mT, a * 2.0)[4])
    dead_views(spd)  # (the reshape stays, with the check of its layout: whether it is a view decides the writes
    assert len(dead_views.program_for(spd)[0].steps) == 3  # that reach it later, even where it is dead)


def test_dead_steps_are_dropped_by_what_their_names_stand_for(backend):
    """The dead-code rule's names stand for the functions of the array's namespace (by identity, aliases
    included: NumPy's concat is ``concatenate``, its abs ``absolute``), of ``operator`` and the methods of
    those names: unused, they are dropped. Another function of the same name (here one named ``real``
    that raises on negative values, recorded as a backend call is) may raise where f handles the error:
    it is replayed (it was dropped by its name, and the replay returned f's other branch)."""
    ns = backend.ns
    a = backend.asarray(np.ones((3, 3)) + 1j)
    views = ad.jit(lambda a: (ns.real(a), ns.imag(a), ns.conj(a), ns.abs(a), abs(a), ns.concat([a, a]), a * 2.0)[-1])
    views(a)
    assert len(views.program_for(a)[0].steps) == 1
    if backend.name == "numpy":  # (methods and attributes of NumPy's arrays)
        methods = ad.jit(lambda a: (a.conj(), a.real, a.imag, abs(a).sum(), a * 2.0)[-1])
        methods(a)
        assert len(methods.program_for(a)[0].steps) == 1

    def real(v):
        if np.any(backend.to_numpy(v) < 0):
            raise ValueError("negative")
        return v

    def checked(x):
        try:
            jit_recording._record_call(real, (x,), {})
        except ValueError:
            return x * 0.0
        return x * 2.0

    jitted = ad.jit(checked)
    for x in (backend.asarray(np.ones(3)), backend.asarray(-np.ones(3))):
        _assert_identical(backend, jitted(x), checked(x))


def test_a_recorded_call_with_keywords_that_are_not_python_names_replays():
    """NumPy passes a callback's keywords through (np.apply_along_axis(f, axis, x, **kw)), so a recorded
    call's keywords may be any strings ("scale factor", "lambda"): the replay's source cannot write them
    as ``name=value`` and unpacks a dict of them instead."""
    def scaled(v, **options):
        return v * options["scale factor"] + options["lambda"]

    def f(x):
        return np.apply_along_axis(scaled, 0, x, **{"scale factor": 2.0, "lambda": 1.0})

    jitted = ad.jit(f)
    x = np.arange(6.0).reshape(2, 3)
    for a in (x, x - 7.0):
        np.testing.assert_array_equal(jitted(a), f(a))
    (program,) = jitted.cache[next(iter(jitted.cache))]
    assert "**{'scale factor': " in program.source


def test_ufunc_keywords_the_namespace_lacks_under_a_plain_jit():
    """A ufunc given a keyword its namespace equivalent cannot honour is recorded as called under a plain
    jit (as NumPy functions are: ``np.round(x, 2)``): ``dtype=`` replays; ``out=`` is refused as a write
    that a replay cannot repeat (it was refused with jvp's and vmap's message, which names the tangent),
    and with that message still where a jvp's values take part."""
    x = np.linspace(-1.0, 1.0, 4)
    single = ad.jit(lambda a: np.exp(a, dtype=np.float32) * 2.0)
    for a in (x, 2.0 * x):
        got, want = single(a), np.exp(a, dtype=np.float32) * 2.0
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ad.jit(lambda a: np.exp(a, out=None))(x), np.exp(x))  # (no array to write)
    buffer = np.empty(4)
    for into in (lambda a: np.exp(a, out=buffer), lambda a: np.add(a, a, out=a)):
        with pytest.raises(TypeError, match=r"^jit: np\.(exp|add) writes into an array in place.*use the array"):
            ad.jit(into)(x.copy())
    with pytest.raises(TypeError, match=r"np.exp\(..., out=...\) cannot write into an array.*jvp and vmap"):
        ad.jit(lambda a, t: ad.jvp(lambda z: np.exp(z, out=buffer), (a,), (t,)))(x, x)
