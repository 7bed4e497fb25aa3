"""NumPy's replay forms of a jit program's steps: the same result bit for bit with less Python around the
kernel. A matrix product runs ``ndarray.dot`` where both operands are contiguous (matmul's gufunc machinery
costs twice the BLAS call at n = 16) and neither is of one element (a scalar to dot), matmul itself for any
other memory order (a strided or broadcast operand takes matmul's own loop there, which rounds otherwise than
the BLAS call dot copies it for)."""
import importlib
import operator

import numpy as np
import optree
import pytest

import cupy_ad as ad
from cupy_ad.backends.numpy_backend import NumpyBackend, _matrix_product, _stack_vectors
from cupy_ad.bench.cases import OPS


def _unaligned(a):
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = np.ndarray(a.shape, a.dtype, buffer=raw, offset=1)
    out[...] = a
    return out


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _layouts(a):
    """``a``'s values (2-D) in memory orders a replay may meet: strides are not in the jit signature."""
    big = np.zeros((2 * a.shape[0], 2 * a.shape[1]), a.dtype)
    big[::2, ::2] = a
    return {"C": a.copy(), "F": np.asfortranarray(a), "strided": big[::2, ::2], "reversed": a[::-1].copy()[::-1],
            "unaligned": _unaligned(a), "read-only": _read_only(a)}


def _assert_same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape and got.strides == want.strides
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m, n, p", [(16, 16, 1), (16, 16, 2), (5, 17, 7), (1, 9, 1), (9, 1, 4), (1, 1, 1),
                                     (33, 33, 33)])
def test_matrix_product_is_matmul_bit_for_bit(dtype, m, n, p):
    rng = np.random.default_rng(m * n * p)
    a, b = rng.standard_normal((m, n)).astype(dtype), rng.standard_normal((n, p)).astype(dtype)
    for left in _layouts(a).values():
        for right in _layouts(b).values():
            _assert_same(_matrix_product(left, right), left @ right)
    for matrix in _layouts(a).values():  # matrix @ vector, vector @ matrix, a @ a.T (BLAS's syrk)
        _assert_same(_matrix_product(matrix, b[:, 0].copy()), matrix @ b[:, 0].copy())
        _assert_same(_matrix_product(b[:, 0].copy(), matrix.T), b[:, 0].copy() @ matrix.T)
        _assert_same(_matrix_product(matrix, matrix.T), matrix @ matrix.T)
    row = rng.standard_normal(n).astype(dtype)
    for stretched in (row[None, :], np.broadcast_to(row[:1], (1, n)), row[::-1][None, :]):
        _assert_same(_matrix_product(stretched, b), stretched @ b)
    _assert_same(_matrix_product(a[:0], b), a[:0] @ b)
    _assert_same(_matrix_product(a[:, :0], b[:0]), a[:, :0] @ b[:0])  # (an empty sum: zeros)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_product_with_a_one_element_operand_is_matmul_with_special_values(dtype):
    """A 1 x 1 matrix or a 1-vector is a scalar to ``ndarray.dot`` (BLAS's axpy, which skips a zero factor, or
    one product): 0 x inf is 0 there where matmul gives NaN, and a -0.0 product keeps its sign there only. Such
    products keep matmul in a replay, dense or not; bit for bit the eager values."""
    zero, inf = np.zeros((1, 1), dtype), np.array([[np.inf, 1.0, -1.0]], dtype)
    cases = [(zero, inf), (zero, inf[:, :1]), (inf[:, :1].T.copy(), -zero), (inf.T.copy(), zero[0]),
             (zero[0], inf), (np.full((1, 1), -1.0, dtype), zero)]
    for dense in (False, True):
        for a, b in cases:
            form = NumpyBackend().replay_form(operator.matmul, [a, b], dense=dense)
            with np.errstate(invalid="ignore"):
                got, want = form(a, b), a @ b
            _assert_same(got, want)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    compiled = ad.jit(lambda a, b: (a @ b, b.T @ a.T))
    with np.errstate(invalid="ignore"):
        for got, want in zip(compiled(zero, inf), (zero @ inf, inf.T @ zero.T)):
            _assert_same(got, want)


def test_matrix_product_form_only_where_dot_is_matmul():
    form = NumpyBackend().replay_form
    matrix, vector = np.zeros((3, 3)), np.zeros(3)
    assert form(operator.matmul, [matrix, vector]) is _matrix_product
    assert form(operator.matmul, [vector, matrix]) is _matrix_product
    for args in ([vector, vector], [np.zeros((2, 3, 3)), matrix], [matrix, np.zeros((3, 3), np.float32)],
                 [np.zeros((3, 3), np.int64)] * 2, [np.zeros((3, 3), np.complex128)] * 2, [matrix, 2.0]):
        # a scalar, a stack, mixed, integer or complex dtypes (dot's complex results differ from matmul's at times)
        assert form(operator.matmul, args) is operator.matmul
    assert form(np.matmul, [matrix, matrix]) is np.matmul  # (a recorded call may carry keywords)


@pytest.mark.parametrize("shape", [(16,), (16, 1), (1, 16), (1, 1), (1, 5, 1)])
def test_stack_of_dense_vectors_is_numpy_stack(shape):
    """Values and strides of ``numpy.stack`` for dense arrays with one dimension above 1 (C and F order alike:
    as the program's ufunc results are, whatever their inputs), other axes and options passed on."""
    rng = np.random.default_rng(len(shape))
    for layout in (np.ascontiguousarray, np.asfortranarray):
        arrays = [layout(rng.standard_normal(shape)) for _ in range(7)]
        _assert_same(_stack_vectors(tuple(arrays), axis=0), np.stack(arrays, axis=0))
        _assert_same(_stack_vectors(arrays, axis=-1), np.stack(arrays, axis=-1))
        _assert_same(_stack_vectors(arrays, axis=0, dtype=np.float32), np.stack(arrays, axis=0, dtype=np.float32))
    form = NumpyBackend().replay_form
    assert form(np.stack, [arrays], dense=True) is _stack_vectors  # (the positional arguments: the sequence)
    assert form(np.stack, [tuple(arrays), 0], dense=True) is _stack_vectors
    assert form(np.stack, [arrays]) is np.stack  # (dense unknown: a strided vector's layout is not C order)
    for others in ([np.zeros((3, 3))] * 2, [np.zeros((2, 1)), np.zeros((3, 1))], [np.zeros((0, 1))] * 2,
                   [np.zeros(3), np.zeros(3, np.float32)]):  # matrices, shapes, empty, dtypes
        assert form(np.stack, [others], dense=True) is np.stack



def test_dense_result_only_where_the_result_is_dense():
    """A ufunc's result is vouched dense (C or F order, aligned) only where it is, whatever the memory orders
    of its operands: arrays of at most 2 dimensions and scalars (Python or NumPy); an operand without ``ndim``
    (a nested list) may add dimensions, whose result a 2-D F-ordered operand lays out in neither order."""
    backend = NumpyBackend()
    f = np.asfortranarray(np.ones((3, 2)))
    nested = [[[1.0]], [[2.0]]]  # (2, 1, 1)
    cases = [(np.add, [f, nested]), (operator.mul, [nested, f]), (np.add, [f, 2.0]), (operator.add, [f, np.float32(1)]),
             (np.multiply, [f, np.ones((3, 2))]), (np.negative, [f]), (np.add, [f[None], 1.0]),
             (operator.matmul, [f.T, f])]
    vouched = [backend.dense_result(fn, args) for fn, args in cases]
    assert vouched == [False, False, True, True, True, True, False, True]
    for (fn, args), dense in zip(cases, vouched):
        assert backend.dense(fn(*args)) or not dense

def _globals(run):
    return [v for k, v in run.__globals__.items() if k.startswith("g")]


def test_jit_rnn_takes_dot_behind_one_layout_check_and_is_eager_bit_for_bit_in_any_layout():
    """The scan row of the benchmark (32 steps of tanh(W h), jvp along W) jitted: its matrix products read the
    inputs, a constant and the program's own results (ufuncs' and products' results: dense whatever the
    inputs' layout), so they call ``ndarray.dot`` itself behind one check of the inputs on entry; other
    layouts run the program with the checking form (compiled at its first call). C, F, strided and unaligned
    weights give the eager jvp bit for bit."""
    w = OPS["scan"].make_input(np.random.default_rng(0), (16, 16), "float64")
    dw = np.random.default_rng(1).standard_normal((16, 16))
    compiled = ad.jit(lambda w, dw: ad.jvp(OPS["scan"].ours, (w,), (dw,)))
    compiled(w, dw)
    (program,) = next(iter(compiled.cache.values()))
    assert program.source.splitlines()[1].startswith("    if not (")
    called = _globals(program.run)
    assert sum(v is np.ndarray.dot for v in called) == 1 and not any(v is operator.matmul for v in called)
    assert any(v is _stack_vectors for v in called)  # (the stacked h and its tangents: the program's results)
    (generic,) = [v for v in called if getattr(v, "__name__", None) == "replay"]
    (scope,) = [cell.cell_contents for cell in generic.__closure__ if type(cell.cell_contents) is dict]
    assert "replay" not in scope  # the fallback is compiled at its first call
    for layout in ("C", "F", "strided", "unaligned", "C"):
        point, direction = _layouts(w)[layout], _layouts(dw)[layout]
        got, want = compiled(point, direction), ad.jvp(OPS["scan"].ours, (point,), (direction,))
        for g, e in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
            np.testing.assert_array_equal(g, e)
    assert any(v is _matrix_product for v in _globals(scope["replay"]))  # (compiled at the strided call)


def test_a_product_of_a_view_keeps_the_checking_form():
    """A transposed input is a view, not checked on entry (only inputs are): its product checks per call, the
    product of the inputs themselves takes dot behind the entry check."""
    compiled = ad.jit(lambda a, b: a.T @ (a @ b))
    a, b = np.arange(12.0).reshape(3, 4) / 7, np.ones((4, 2)) / 3
    for point in (a, np.asfortranarray(a), _layouts(a)["strided"]):
        np.testing.assert_array_equal(compiled(point, b), point.T @ (point @ b))
    (program,) = next(iter(compiled.cache.values()))
    called = _globals(program.run)
    assert any(v is _matrix_product for v in called) and any(v is np.ndarray.dot for v in called)


def test_replays_leave_inputs_alone_and_share_no_memory_between_calls():
    """Two replays of the jitted RNN (dense forms): neither writes its inputs, and no output of one shares memory
    with an output of the other or with an input (the caller may keep and write what it gets)."""
    w = OPS["scan"].make_input(np.random.default_rng(0), (16, 16), "float64")
    dw = np.random.default_rng(1).standard_normal((16, 16))
    kept = w.copy(), dw.copy()
    compiled = ad.jit(lambda w, dw: ad.jvp(OPS["scan"].ours, (w,), (dw,)))
    compiled(w, dw)
    first, second = optree.tree_leaves(compiled(w, dw)), optree.tree_leaves(compiled(w, dw))
    np.testing.assert_array_equal(w, kept[0])
    np.testing.assert_array_equal(dw, kept[1])
    for a in first:
        assert not any(np.shares_memory(a, b) for b in [*second, w, dw])


def _rnn_step(carry, _):
    w, h = carry
    h = np.tanh(w @ h)
    return (w, h), h


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_scan_steps_skip_the_layout_check_only_from_dense_carries(layout, monkeypatch):
    """scan(jit(step)) with W carried, under jvp: the carries stay dense from step to step (W passed on, h and
    its tangent the program's results), so the replayed steps run the program without its entry check when the
    first carries are dense, with it otherwise (a strided W); eager's results bit for bit either way."""
    w = _layouts(OPS["scan"].make_input(np.random.default_rng(0), (16, 16), "float64"))[layout]
    dw = _layouts(np.random.default_rng(1).standard_normal((16, 16)))[layout]
    h0 = np.full((16, 1), 0.5)
    jitted = ad.jit(_rnn_step)
    runs = []
    jit_step = importlib.import_module("cupy_ad.transforms.jit_step")
    loop = jit_step._loop
    monkeypatch.setattr(jit_step, "_loop", lambda *key: (lambda run, *a: runs.append(run) or loop(*key)(run, *a)))
    loops = {step: lambda w, s=step: ad.scan(s, (w, h0), None, length=8) for step in (_rnn_step, jitted)}
    got, want = ad.jvp(loops[jitted], (w,), (dw,)), ad.jvp(loops[_rnn_step], (w,), (dw,))
    for g, e in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
        np.testing.assert_array_equal(g, e)
    (program,) = [p for variants in jitted.cache.values() for p in variants if p.__dict__.get("scan_plans")]
    assert runs == [program.run if layout == "strided" else program.unchecked] and program.unchecked is not None


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128", "int64"])
def test_python_numbers_as_typed_constants_give_the_eager_values(dtype):
    """A Python number in a sum, difference, product or quotient with an inexact array is cast to the array's
    dtype (NEP 50): the program holds it as a 0-d array of that dtype where the cast is exact (3.0, 2, 1e300 in
    float64), the number itself elsewhere (0.1 or 1e300 in float32, integer arrays, powers): eager values bit
    for bit, special values and signed zeros included."""
    def f(x):
        return ((1.0 - x * x) * 3 + x / 2 - 0.1, 2.0 / (x + 1e300) - x ** 2.0, -0.0 * x)

    x = np.array([0, -1, 3, 7, -2] if dtype == "int64" else [0.0, -0.0, 1.5, -2.25, np.inf, np.nan, 3.0], dtype)
    compiled = ad.jit(f)
    with np.errstate(all="ignore"):
        for value in (x, x[::-1].copy()):
            for got, want in zip(compiled(value), f(value)):
                _assert_same(got, want)
                np.testing.assert_array_equal(np.signbit(np.real(got)), np.signbit(np.real(want)))
    (program,) = next(iter(compiled.cache.values()))
    typed = [v for v in _globals(program.run) if type(v) is np.ndarray and v.ndim == 0]
    numbers = {v for v in _globals(program.run) if type(v) in (int, float)}
    assert 2.0 in numbers  # (the power's exponent: NumPy's scalar fast path)
    if dtype != "int64":  # (there the numbers meet float64 temporaries: typed where they do)
        assert {complex(v) for v in typed} >= {1.0, 3.0, 2.0} and all(v.dtype == x.dtype for v in typed)
        assert (0.1 in numbers) is (dtype == "float32") and (1e300 in numbers) is (dtype == "float32")
