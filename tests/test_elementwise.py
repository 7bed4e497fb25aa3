"""Every elementwise rule against central finite differences, real and complex, on every backend."""
import numpy as np
import pytest

import cupy_ad as ad

UNARY = {  # name: (low, high) of the real domain sampled, whether complex input is tested
    "negative": (-2, 2, True), "positive": (-2, 2, True), "square": (-2, 2, True), "sqrt": (0.5, 3, True),
    "exp": (-2, 2, True), "expm1": (-2, 2, True), "log": (0.5, 3, True), "log1p": (0.1, 3, True),
    "log2": (0.5, 3, True), "log10": (0.5, 3, True), "sin": (-3, 3, True), "cos": (-3, 3, True),
    "tan": (-1, 1, True), "sinh": (-2, 2, True), "cosh": (-2, 2, True), "tanh": (-2, 2, True),
    "asin": (-0.9, 0.9, True), "acos": (-0.9, 0.9, True), "atan": (-2, 2, True), "asinh": (-2, 2, True),
    "acosh": (1.2, 3, True), "atanh": (-0.9, 0.9, True), "abs": (-2, 2, True), "sign": (-2, 2, True),
    "real": (-2, 2, True), "imag": (-2, 2, True), "conj": (-2, 2, True),
    "arcsin": (-0.9, 0.9, False), "arccos": (-0.9, 0.9, False), "arctan": (-2, 2, False),
    "floor": (-2, 2, False), "ceil": (-2, 2, False), "trunc": (-2, 2, False), "round": (-2, 2, False),
}
BINARY = {  # name: (low, high) for both arguments, whether complex input is tested
    "add": (-2, 2, True), "subtract": (-2, 2, True), "multiply": (-2, 2, True), "divide": (0.5, 2, True),
    "pow": (0.5, 2, True), "atan2": (-2, 2, False), "arctan2": (-2, 2, False), "maximum": (-2, 2, False),
    "minimum": (-2, 2, False), "hypot": (-2, 2, False), "logaddexp": (-2, 2, False),
    "remainder": (0.5, 3, False),
}


def _sample(backend, shape, low, high, dtype, seed):
    rng = np.random.default_rng(seed)
    a = rng.uniform(low, high, shape)
    if np.issubdtype(dtype, np.complexfloating):
        a = a + 0.3j * rng.uniform(-1, 1, shape)
    return backend.asarray(a.astype(dtype))


def _cases(table, dtypes):
    """(name, dtype) pairs: complex dtypes only for functions that take them; imag only for complex."""
    return [(name, dtype) for name in sorted(table) for dtype in dtypes
            if (table[name][2] or not np.issubdtype(dtype, np.complexfloating))
            and (name != "imag" or np.issubdtype(dtype, np.complexfloating))]


@pytest.mark.parametrize("name, dtype", _cases(UNARY, [np.float64, np.complex128, np.float32]))
def test_unary(backend, name, dtype):
    low, high, _ = UNARY[name]
    x = _sample(backend, (3, 4), low, high, dtype, seed=1)
    fn = getattr(backend.ns, name)
    ad.check_jvp(fn, (x,))


@pytest.mark.parametrize("name, dtype", _cases(BINARY, [np.float64, np.complex128]))
def test_binary_broadcasting(backend, name, dtype):
    low, high, _ = BINARY[name]
    x = _sample(backend, (2, 3), low, high, dtype, seed=2)
    y = _sample(backend, (3,), low, high, dtype, seed=3)
    fn = getattr(backend.ns, name)
    ad.check_jvp(fn, (x, y))
    ad.check_jvp(fn, (y, x))


@pytest.mark.parametrize("name", ["add", "multiply", "divide", "pow", "maximum"])
def test_binary_with_python_scalar(backend, name):
    x = _sample(backend, (5,), 0.5, 2, np.float64, seed=4)
    fn = getattr(backend.ns, name)
    ad.check_jvp(lambda a: fn(a, 1.5), (x,))
    ad.check_jvp(lambda a: fn(1.5, a), (x,))


def test_type_promotion_of_tangents(backend):
    x32 = backend.random((4,), np.float32)
    y64 = backend.random((4,), np.float64, seed=1)
    out, tangent = ad.jvp(lambda a, b: a * b, (x32, y64), (backend.random((4,), np.float32, seed=2), None))
    assert out.dtype == tangent.dtype == y64.dtype
    z = backend.random((4,), np.complex128, seed=3)
    out, tangent = ad.jvp(lambda a, b: a * b, (y64, z), (backend.random((4,), np.float64, seed=4), None))
    assert tangent.dtype == out.dtype == z.dtype


def test_maximum_ties_share_the_tangent(backend):
    x = backend.asarray([1.0, 2.0, 3.0])
    _, t = ad.jvp(lambda a, b: backend.ns.maximum(a, b), (x, x),
                  (backend.asarray([1.0, 1.0, 1.0]), backend.asarray([3.0, 3.0, 3.0])))
    np.testing.assert_allclose(backend.to_numpy(t), [2.0, 2.0, 2.0])


def test_abs_and_sign_at_zero(backend):
    """abs and sign have finite tangents at 0 (0 for sign; sign(0) g = 0 and 0 for complex abs);
    sqrt's derivative at 0 is infinite, and so is its tangent."""
    for dtype in (np.float64, np.complex128):
        x = backend.asarray(np.zeros(3, dtype))
        ones = backend.asarray(np.ones(3, dtype))
        for fn in (backend.ns.abs, backend.ns.sign):
            with np.errstate(invalid="ignore"):  # NumPy's complex sign computes 0/0 before masking it
                _, t = ad.jvp(fn, (x,), (ones,))
            np.testing.assert_array_equal(backend.to_numpy(t), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        _, t = ad.jvp(backend.ns.sqrt, (backend.asarray(np.zeros(2)),), (backend.asarray(np.ones(2)),))
    assert np.all(np.isinf(backend.to_numpy(t)))


@pytest.mark.parametrize("bounds", [(-0.5, 0.5), (None, 0.5), (-0.5, None)])
def test_clip(backend, bounds):
    x = backend.random((7,), seed=5)
    ad.check_jvp(lambda a: backend.ns.clip(a, *bounds), (x,))
    lo = backend.asarray(np.full(7, -0.3))
    ad.check_jvp(lambda a, b: backend.ns.clip(a, b, 0.4), (x, lo))


def test_where(backend):
    x = backend.random((3, 4))
    y = backend.random((3, 4), seed=1)
    ad.check_jvp(lambda a, b: backend.ns.where(a > 0, a * b, backend.ns.sin(b)), (x, y))
    ad.check_jvp(lambda a: backend.ns.where(a > 0, a, 0.0), (x,))


def test_comparisons_and_logic_have_no_tangent(backend):
    x = backend.random((4,))
    ns = backend.ns
    for fn in (lambda a: a < 0, lambda a: a == a, lambda a: ns.isnan(a), lambda a: ns.logical_not(a > 0),
               lambda a: ns.argmax(a), lambda a: ns.signbit(a)):
        out, t = ad.jvp(fn, (x,), (backend.random((4,), seed=1),))
        assert isinstance(t, ad.Zero)
        assert t.shape == tuple(out.shape) and t.dtype == out.dtype
