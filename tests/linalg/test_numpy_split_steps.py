"""The tangents' steps on threads (NumPy): the compiled batch kernels and a jit program's elementwise
steps and matmuls split over the batch give the one-thread results bit for bit (values, dtypes and
memory order), for every layout, broadcast, ``out=`` and scalar operand; steps that could differ
(complex products, non-boolean conditions, large or vector matmul) are never split."""
import operator

import numpy as np
import optree
import pytest

import cupy_ad as ad
from cupy_ad.backends import numpy_compiled, numpy_threads
from cupy_ad.backends.numpy_backend import NumpyBackend, _split_form
from cupy_ad.bench.cases import OPS, inputs


@pytest.fixture
def split_always(monkeypatch):
    """Every batch of two items or more split (2 threads; ``with_threads`` changes it)."""
    monkeypatch.setattr(numpy_threads, "MIN_WORK", 0)
    monkeypatch.setattr(numpy_threads, "MIN_SPLIT_BYTES", 0)

    def with_threads(n: int) -> None:
        monkeypatch.setenv("CUPY_AD_NUM_THREADS", str(n))
    with_threads(2)
    return with_threads


@pytest.fixture
def blocks_seen(monkeypatch):
    """The block counts of every split (``run_blocks``) while the test runs."""
    seen = []
    run_blocks = numpy_threads.run_blocks

    def spy(task, count, workers):
        seen.append(workers)
        return run_blocks(task, count, workers)
    monkeypatch.setattr(numpy_threads, "run_blocks", spy)
    return seen


def _same(got, want):
    assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
    assert got.strides == want.strides
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [2, 3])
def test_compiled_kernels_split_over_the_batch_match_one_thread(split_always, blocks_seen, threads):
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5, 5)) + 4 * np.eye(5)
    b = rng.standard_normal((7, 5, 3))
    perm = np.argsort(rng.standard_normal((7, 5)), axis=-1).astype(np.int32)
    calls = {
        "solve": lambda: numpy_compiled.solve_triangular_batched(a, b, lower=False, trans=1, unit_diagonal=False),
        "product": lambda: numpy_compiled.triangular_product_batched(a, b, lower=True, trans=0, unit_diagonal=True),
        "getf2": lambda: numpy_compiled.lu_factor_batched(a[:, :4]),
        "lu_tangent": lambda: numpy_compiled.lu_tangent_batched(a, perm, b[..., :1] * a),
        "cholesky_tangent": lambda: numpy_compiled.cholesky_tangent_batched(np.tril(a), b[..., :1] * a, False),
        "qr_tangent": lambda: numpy_compiled.qr_tangent_batched(b, np.triu(a[:, :3, :3]), b[..., ::-1]),
    }
    split_always(1)
    alone = {name: call() for name, call in calls.items()}
    assert blocks_seen == []
    split_always(threads)
    for name, call in calls.items():
        got = call()
        for g, w in zip(*(x if isinstance(x, tuple) else (x,) for x in (got, alone[name]))):
            _same(g, w)
    assert blocks_seen == [threads] * len(calls)


_T = np.random.default_rng(1).standard_normal((6, 4, 4))
_LAYOUTS = {"c": _T, "transposed": _T.swapaxes(-1, -2), "reversed": _T[::-1], "fortran": np.asfortranarray(_T),
            "strided": np.random.default_rng(2).standard_normal((12, 4, 8))[::2, :, ::2]}
_BOOL = _T > 0


@pytest.mark.parametrize("layout", list(_LAYOUTS))
@pytest.mark.parametrize("fn, others", [
    (operator.sub, [_T.swapaxes(-1, -2)]), (np.multiply, [2.5]), (operator.truediv, [np.float64(3.0)]),
    (np.add, [_T[0]]), (np.maximum, [_T[:, :1]]), (operator.gt, [np.zeros(())]), (np.negative, []),
    (np.sqrt, []), (operator.matmul, [_T[0]]), (np.matmul, [_T[:1]]), (np.where, "where")])
@pytest.mark.parametrize("threads", [1, 2])
def test_split_steps_give_numpys_result_bit_for_bit(split_always, blocks_seen, layout, fn, others, threads):
    """(One thread: an operand read across its memory order still goes block by block, gathered.)"""
    split_always(threads)
    x = _LAYOUTS[layout]
    args = [_BOOL, x, x.swapaxes(-1, -2)] if others == "where" else [x, *others]
    with np.errstate(invalid="ignore"):
        want = fn(*args)
        step = _split_form(fn, args)
        assert step is not None
        got = step(*args)
    _same(got, want)
    assert blocks_seen in ([threads], [])  # ([]: NumPy's own call, see SplitStep)
    if layout == "c":  # split: what reads across the memory order (also on one thread), broadcasts, matmul
        strided = fn in (operator.sub, np.where, np.maximum)  # (_T[:, :1] is a strided slice)
        assert bool(blocks_seen) == (strided or threads == 2 and fn in (np.maximum, operator.matmul, np.matmul))


def test_split_steps_write_into_out_in_place(split_always, blocks_seen):
    transposed = _T.swapaxes(-1, -2)
    cases = [(_T.copy(), _T[:, :1].copy(), 0), (_T.copy(), transposed, 0), (transposed, _T.copy(), 1)]
    for a, b, out_position in cases:  # (broadcast along the rows, or read across its memory order)
        want = a / b
        out = (a, b)[out_position]
        assert _split_form(operator.truediv, [a, b])(a, b, out=out) is out
        np.testing.assert_array_equal(out, want)
    assert blocks_seen == [2, 2, 2]
    a = _T.copy()
    _split_form(operator.mul, [a, _T])(a, _T, out=a)  # streamed in order: NumPy's one call
    np.testing.assert_array_equal(a, _T * _T)
    assert blocks_seen == [2, 2, 2]


def test_steps_that_could_differ_or_cannot_pay_are_not_split(split_always, monkeypatch):
    c = _T + 1j
    assert _split_form(np.multiply, [c, c]) is None  # a complex product
    assert _split_form(np.add, [c, c]) is not None
    assert _split_form(np.exp, [_T]) is None  # not correctly rounded
    assert _split_form(np.where, [_T, _T, _T]) is None  # a non-boolean condition
    assert _split_form(np.matmul, [_T, _T[0, 0]]) is None  # a vector operand
    big = np.zeros((2, numpy_threads.MAX_N + 1, numpy_threads.MAX_N + 1))
    assert _split_form(np.matmul, [big, big]) is None  # OpenBLAS's own threads inside
    assert _split_form(np.add, [big, big]) is None  # (not a stack of small matrices)
    assert _split_form(np.add, [_T[0], _T[0]]) is None
    monkeypatch.setattr(numpy_threads, "MIN_SPLIT_BYTES", _T.nbytes + 1)
    assert _split_form(np.add, [_T, _T]) is None
    monkeypatch.setattr(numpy_threads, "MIN_SPLIT_BYTES", _T.nbytes)  # (the output's size counts: a comparison's
    assert _split_form(np.add, [_T, _T]) is not None                 # booleans take 1/8 of its operands')
    assert _split_form(operator.gt, [_T, _T]) is None
    single = _T.astype(np.float32)  # (a float32 result with a Python number, which stays weak; float64 with NumPy's)
    assert _split_form(np.multiply, [single, 2.0]) is None
    assert _split_form(np.multiply, [single, np.float64(2.0)]) is not None


def test_a_split_step_keeps_the_recorded_output_shape_of_the_call_made(split_always):
    """A recorded NumPy call whose traced operand sits in a list (``[y]``: one more leading axis) splits
    on the shape of the call it makes, not of its traced values alone."""
    rng = np.random.default_rng(3)
    c, x, y = rng.standard_normal((6, 4, 4)) > 0, rng.standard_normal((6, 4, 4)).mT, rng.standard_normal((6, 4, 4))
    f = lambda c, x, y: np.where(c, x, [y])  # noqa: E731
    jitted = ad.jit(f)
    for _ in range(2):
        _same(jitted(c, x, y), f(c, x, y))
    assert jitted.program_for(c, x, y) is not None


def test_a_split_step_inside_a_worker_thread_or_with_one_thread_is_one_call(split_always, blocks_seen):
    step = _split_form(np.add, [_T, _T])
    split_always(1)
    _same(step(_T, _T), _T + _T)
    assert blocks_seen == []


@pytest.mark.parametrize("name", ["cholesky", "svd", "eigh", "lu_factor", "qr"])
def test_jit_program_on_threads_equals_the_one_thread_program(split_always, blocks_seen, name):
    """The replayed jvp with every step split equals the one-thread replay bit for bit, also for inputs
    in another memory order than at recording (strides are not in the jit signature)."""
    x, t = inputs(OPS[name], (9, 5, 5), "float64")
    flip = (x.swapaxes(-1, -2) + 0).swapaxes(-1, -2), t[::-1].copy()[::-1]  # the same values, other strides
    f = ad.jit(lambda a, da: ad.jvp(OPS[name].ours, (a,), (da,)))
    split = [f(x, t), f(*flip)]
    # (lu_factor's steps that split are its compiled kernels: without Numba its 9 matrices go one by one)
    assert blocks_seen or (name == "lu_factor" and not numpy_compiled.available())
    split_always(1)
    g = ad.jit(lambda a, da: ad.jvp(OPS[name].ours, (a,), (da,)))
    for got, want in zip(split, [g(x, t), g(*flip)]):
        for a, b in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
            np.testing.assert_array_equal(a, b)
            assert a.strides == b.strides


def test_replay_form_keeps_small_steps_unwrapped():
    x = np.zeros((4, 4))
    assert NumpyBackend().replay_form(operator.add, [x, x]) is operator.add


def test_the_callers_errstate_holds_in_every_block(split_always):
    x = -np.ones((6, 4, 4))
    step = _split_form(np.sqrt, [x])
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        step(x)
    with np.errstate(invalid="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert np.isnan(step(x)).all()


def test_a_thread_left_without_a_cpu_leaves_its_runs_to_the_others(monkeypatch):
    """The runs are taken in turn: a pool thread that starts late (here: blocked until the caller has
    taken every run) holds nothing up, and the results stay in order."""
    import threading
    go = threading.Event()
    taken = []

    def task(start, stop):
        if threading.current_thread() is not threading.main_thread():
            go.wait(5)
        taken.append(threading.current_thread() is threading.main_thread())
        if len(taken) == 7:
            go.set()
        return start, stop
    results = numpy_threads.run_blocks(task, 16, 2)
    assert results == [(2 * k, 2 * k + 2) for k in range(8)]
    assert taken.count(True) >= 7
