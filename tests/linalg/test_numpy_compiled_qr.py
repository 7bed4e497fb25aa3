"""The compiled Householder QR of stacks of small real matrices (``numpy_compiled_spectral``'s kernel through
``numpy_compiled_decompositions``, Numba, optional): Q and R as ``numpy.linalg.qr``'s to rounding with
LAPACK's signs (x_0 = +0 and -0 included), Q R = A and Q^T Q = I at rounding level; zero columns and zero
matrices; tiny and huge scales; matrices holding Inf or NaN left to NumPy; the thread split bit for bit;
NumPy's results without Numba and for what the kernel does not take; the jvp the same with and without the
kernel."""
import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import numpy_compiled, numpy_compiled_decompositions, numpy_compiled_spectral
from cupy_ad.backends.numpy_backend import NumpyBackend
from cupy_ad.testing import check_jvp

needs_numba = pytest.mark.skipif(not numpy_compiled.available(), reason="numba is not installed (extra 'compiled')")

SHAPES = [(1, 1, 1), (3, 1, 5), (3, 5, 1), (4, 2, 2), (5, 16, 16), (2, 3, 6, 6), (6, 20, 7), (6, 7, 20),
          (2, 32, 32)]


def _transposed(x):
    return np.swapaxes(x, -1, -2)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_numpy_to_rounding_with_its_signs(dtype, shape):
    a = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    keep = a.copy()
    q, r = numpy_compiled_decompositions.qr(a, "reduced")
    q0, r0 = np.linalg.qr(a)
    assert (q.dtype, r.dtype, q.shape, r.shape) == (q0.dtype, r0.dtype, q0.shape, r0.shape)
    k = min(shape[-2:])
    tol = 8 * max(shape[-2:]) * np.finfo(dtype).eps
    np.testing.assert_allclose(q, q0, rtol=0, atol=tol)
    np.testing.assert_allclose(r, r0, rtol=0, atol=tol * np.abs(a).max())
    np.testing.assert_array_equal(np.tril(r, -1), 0)
    wide = a.astype(np.float64)
    assert np.abs(q.astype(np.float64) @ r.astype(np.float64) - wide).max() <= tol * np.abs(a).max()
    assert np.abs(_transposed(q) @ q - np.eye(k)).max() <= tol
    np.testing.assert_array_equal(numpy_compiled_decompositions.qr(a, "r"), r)
    np.testing.assert_array_equal(a, keep)  # input untouched


@needs_numba
@pytest.mark.parametrize("zero", [0.0, -0.0])
def test_a_column_led_by_a_signed_zero_gets_lapacks_sign(zero):
    """dlarfg's beta = -sign(x_0) ||x||, Fortran's SIGN reading the sign bit: R_00 = -||x|| for x_0 = +0 and
    +||x|| for x_0 = -0 (a reflector taking sign(+0) as negative gives the other factorisation, Q and R
    with a row and a column negated)."""
    a = np.random.default_rng(1).standard_normal((3, 5, 5))
    a[:, 0, 0] = zero
    a[1, :, 2] = a[1, :, 2] - a[1, :, 2]  # (and a column of zeros later on)
    q, r = numpy_compiled_decompositions.qr(a, "reduced")
    q0, r0 = np.linalg.qr(a)
    np.testing.assert_array_equal(np.signbit(np.diagonal(r, axis1=-2, axis2=-1)[..., :2]),
                                  np.signbit(np.diagonal(r0, axis1=-2, axis2=-1)[..., :2]))
    np.testing.assert_allclose(q, q0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(r, r0, rtol=0, atol=1e-14)


@needs_numba
def test_zero_columns_and_zero_matrices():
    """A zero column below and on the diagonal: no reflector (H = I), R_jj = 0, as LAPACK's; the zero matrix:
    Q = I and R = 0 exactly."""
    a = np.random.default_rng(2).standard_normal((2, 6, 4))
    a[0, :, 1] = 0.0
    a[1] = 0.0
    q, r = numpy_compiled_decompositions.qr(a, "reduced")
    q0, r0 = np.linalg.qr(a)
    np.testing.assert_allclose(q[0], q0[0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(r[0], r0[0], rtol=0, atol=1e-14)
    assert r[0, 1, 1] == 0.0
    np.testing.assert_array_equal(q[1], np.eye(6, 4))
    np.testing.assert_array_equal(r[1], 0.0)


@needs_numba
@pytest.mark.parametrize("scale", [2.0 ** -990, 2.0 ** 990, 2.0 ** -1060])
def test_tiny_and_huge_scales(scale):
    """Unscaled, as LAPACK's (the reflector scales its own vector where its sum of squares would overflow or
    underflow): the same arithmetic at 2^990 (R exactly scaled); at 2^-990 (beta below 2^-969, tau from the
    reflector's scaled vector, products near the subnormal range) Q and R to rounding, as NumPy's; subnormal
    entries (2^-1060: ~14 bits left) still give an orthogonal Q and Q R = A."""
    a = np.random.default_rng(3).standard_normal((4, 8, 8))
    q1, r1 = numpy_compiled_decompositions.qr(a, "reduced")
    q, r = numpy_compiled_decompositions.qr(a * scale, "reduced")
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(r))
    if scale > 1.0:
        np.testing.assert_array_equal(q, q1)
        np.testing.assert_array_equal(r, r1 * scale)
    elif scale > 2.0 ** -1000:
        q0, r0 = np.linalg.qr(a * scale)
        for x in (q1, q0):
            np.testing.assert_allclose(q, x, rtol=0, atol=1e-14)
        for x in (r1 * scale, r0):
            np.testing.assert_allclose(r, x, rtol=0, atol=1e-14 * scale)
    else:
        assert np.abs(_transposed(q) @ q - np.eye(8)).max() <= 1e-14
        subnormal_ulps = 64 * 2.0 ** -1074  # (Q R's own rounding, in absolute terms down there)
        assert np.abs(q @ r - a * scale).max() <= 1e-14 * np.abs(a * scale).max() + subnormal_ulps


@needs_numba
def test_matrices_holding_inf_or_nan_are_numpys():
    a = np.random.default_rng(4).standard_normal((5, 6, 6))
    a[1, 2, 3] = np.nan
    a[3, 0, 0] = np.inf
    got, want = numpy_compiled_decompositions.qr(a, "reduced"), np.linalg.qr(a)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x[[1, 3]], y[[1, 3]])
        np.testing.assert_allclose(x[[0, 2, 4]], y[[0, 2, 4]], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(numpy_compiled_decompositions.qr(a, "r")[[1, 3]], np.linalg.qr(a, "r")[[1, 3]])


@needs_numba
def test_the_thread_split_gives_the_one_thread_result_bit_for_bit(monkeypatch):
    a = np.random.default_rng(7).standard_normal((96, 16, 16))  # work 96 x 16^3 >= numpy_threads.MIN_WORK
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "1")
    one = numpy_compiled_decompositions.qr(a, "reduced")
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "3")
    for x, y in zip(one, numpy_compiled_decompositions.qr(a, "reduced")):
        np.testing.assert_array_equal(x, y)


def test_without_numba_the_backend_runs_numpy(monkeypatch):
    a = np.random.default_rng(8).standard_normal((3, 6, 6))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled_decompositions.qr(a, "reduced") is None
    for got, want in zip(NumpyBackend().qr(a, "reduced"), np.linalg.qr(a)):
        np.testing.assert_array_equal(got, want)


def test_the_backend_leaves_complex_larger_single_and_complete_to_numpy():
    rng = np.random.default_rng(9)
    side = numpy_compiled_decompositions.MAX_QR_SIDE + 1
    for a, mode in ((rng.standard_normal((2, 4, 4)) + 1j * rng.standard_normal((2, 4, 4)), "reduced"),
                    (rng.standard_normal((2, side, 3)), "reduced"), (rng.standard_normal((2, 5, 3)), "complete"),
                    (rng.standard_normal((2, 0, 3)), "reduced")):
        assert numpy_compiled_decompositions.qr(a, mode) is None
        for got, want in zip(NumpyBackend().qr(a, mode), np.linalg.qr(a, mode)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_qr_jvp_agrees_with_and_without_the_compiled_kernel(dtype, monkeypatch):
    """The jvp through the kernel (Numba present) against finite differences and against the jvp through
    NumPy's QR (Numba absent), to rounding: the same factorisation, signs included."""
    rng = np.random.default_rng(10)
    a, da = rng.standard_normal((2, 3, 7, 5)).astype(dtype), rng.standard_normal((2, 3, 7, 5)).astype(dtype)
    check_jvp(lambda x: tuple(ad.linalg.qr(x)), (a,), (da,))
    (q, r), (dq, dr) = ad.jvp(lambda x: tuple(ad.linalg.qr(x)), (a,), (da,))
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    (q0, r0), (dq0, dr0) = ad.jvp(lambda x: tuple(ad.linalg.qr(x)), (a,), (da,))
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    for x, y in ((q, q0), (r, r0), (dq, dq0), (dr, dr0)):
        assert x.dtype == y.dtype == dtype
        np.testing.assert_allclose(x, y, **tol)


@needs_numba
def test_the_kernel_lives_in_the_file_of_the_helpers_it_inlines():
    """Numba's cache (``cache=True``) is keyed on the text of the kernel's own file: a kernel in another file
    than ``_reflector`` kept a cached copy of the old helper after it changed (review14)."""
    kernel = numpy_compiled_spectral._kernels()["qr"]
    assert kernel.py_func.__code__.co_filename == numpy_compiled_spectral.__file__


@needs_numba
@pytest.mark.parametrize("power", [-540, -600, -700, -1000])
def test_a_tail_whose_squares_underflow_still_gets_lapacks_reflector(power):
    """A column with x_0 of order one and a tail below 2^-537 (its squares underflow to zero): dlarfg's
    norm of the tail is not zero, so LAPACK reflects (R_jj = -x_0, Q's column negated); H = I there gave
    the other factorisation (review14)."""
    a = np.random.default_rng(11).standard_normal((3, 4, 3))
    a[:, 1:, 0] = 2.0 ** power * np.array([1.0, -3.0, 0.5])
    q, r = numpy_compiled_decompositions.qr(a, "reduced")
    q0, r0 = np.linalg.qr(a)
    np.testing.assert_allclose(q, q0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(r, r0, rtol=0, atol=1e-14)



@needs_numba
def test_columns_of_very_different_scales_keep_their_digits():
    """QR is column-scaling invariant (Q of A D is Q of A, R D its R for a positive diagonal D) and so is
    LAPACK's Householder QR, each column reflected in its own scale; one scaling of the whole matrix
    made a column below 2^-1022 of the largest entry subnormal or zero (Q's columns from there on O(1)
    wrong, review14). The matrix is not scaled (the reflector scales its own vector where needed)."""
    a = np.random.default_rng(12).standard_normal((4, 6, 4))
    scales = 2.0 ** np.array([500.0, -560.0, 0.0, -1000.0])
    q0, r0 = np.linalg.qr(a)
    q, r = numpy_compiled_decompositions.qr(a * scales, "reduced")
    np.testing.assert_allclose(q, q0, rtol=0, atol=1e-14)
    np.testing.assert_allclose(q, np.linalg.qr(a * scales)[0], rtol=0, atol=1e-14)
    np.testing.assert_allclose(r / scales, r0, rtol=0, atol=1e-13)



@needs_numba
def test_an_overflowing_r_is_numpys():
    """A column whose norm overflows (R_jj = Inf): NumPy's factors (LAPACK's NaN and Inf), not a finite Q
    beside an infinite R (review14)."""
    a = np.random.default_rng(13).standard_normal((3, 4, 3))
    a[1, :, 0] = 1.5e308
    with np.errstate(all="ignore"):
        got, want = numpy_compiled_decompositions.qr(a, "reduced"), np.linalg.qr(a)
        want_r = np.linalg.qr(a, "r")
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x[1], y[1])
        np.testing.assert_allclose(x[[0, 2]], y[[0, 2]], rtol=0, atol=1e-14)
    np.testing.assert_array_equal(numpy_compiled_decompositions.qr(a, "r")[1], want_r[1])


@needs_numba
def test_exact_zeros_come_out_as_lapacks():
    """H = I - tau v v^T with v_0 = 1 and tau = (beta - x_0) / beta, applied as dlarf does: a row swap is
    exact (tau = 1, v = (1, +-1)) and zeros stay zeros with LAPACK's signs, so R_jj takes LAPACK's sign
    where x_0 is such a zero; with H = I - t u u^T a quarter of these matrices had a sign flipped (Q's
    column O(1) off NumPy's, review14)."""
    rng = np.random.default_rng(14)
    permutations = np.stack([np.eye(5)[rng.permutation(5)] * rng.standard_normal(5) for _ in range(200)])
    zero_first_row = rng.standard_normal((200, 5, 4))
    zero_first_row[:, 0] = 0.0
    zero_first_row[:, 2:, 0] = 0.0
    for a in (permutations, -permutations, zero_first_row, -zero_first_row):
        q, r = numpy_compiled_decompositions.qr(a, "reduced")
        q0, r0 = np.linalg.qr(a)
        np.testing.assert_array_equal(np.signbit(np.diagonal(r, axis1=-2, axis2=-1)),
                                      np.signbit(np.diagonal(r0, axis1=-2, axis2=-1)))
        np.testing.assert_allclose(q, q0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r, r0, rtol=0, atol=1e-12)


@needs_numba
def test_a_reflector_with_a_subnormal_beta_stays_orthogonal():
    """A column whose part below the diagonal is ~2^-1040 after the earlier reflectors (rows those never
    touch): beta is subnormal, so tau comes from the reflector's scaled vector, as LAPACK scales x up
    there (tau = (beta - x_0) / beta from the subnormal beta gave Q^T Q - I ~ 0.7)."""
    rng = np.random.default_rng(15)
    a = rng.standard_normal((8, 6, 4))
    a[:, 3:, :3] = 0.0
    a[:, 3:, 3] *= 2.0 ** -1040
    q, r = numpy_compiled_decompositions.qr(a, "reduced")
    assert np.abs(_transposed(q) @ q - np.eye(4)).max() <= 1e-14
    assert np.abs(q @ r - a).max() <= 1e-14 * np.abs(a).max()
    q0, r0 = np.linalg.qr(a)
    np.testing.assert_allclose(q, q0, rtol=0, atol=1e-13)


@needs_numba
def test_entries_far_below_their_columns_largest_are_not_flushed():
    """LAPACK scales nothing (dnrm2 is safe): a column's entries 2^-1200 below its largest still make a
    reflector (tau = 2, R_jj = -x_0). Scaling each column to max |a_ij| in [1, 2) flushed them to zero (H = I,
    the other sign, review14); the reflector alone now scales, its own vector, where the sum of squares
    would underflow or overflow, and knows a nonzero tail before it does."""
    rng = np.random.default_rng(16)
    a = rng.standard_normal((6, 3, 2)) * 2.0 ** np.array([600.0, -600.0, 0.0])[:, None]
    column = np.array([[[2.0 ** 600], [2.0 ** -600]], [[-(2.0 ** 1000)], [2.0 ** -100]]])
    rows = rng.standard_normal((4, 5, 3)) * 2.0 ** np.array([1000.0, -60.0, 0.0, 500.0, -1000.0])[:, None]
    for x in (a, column, rows):
        q, r = numpy_compiled_decompositions.qr(x, "reduced")
        q0, r0 = np.linalg.qr(x)
        np.testing.assert_array_equal(np.signbit(np.diagonal(r, axis1=-2, axis2=-1)),
                                      np.signbit(np.diagonal(r0, axis1=-2, axis2=-1)))
        np.testing.assert_allclose(q, q0, rtol=0, atol=1e-14)
        np.testing.assert_allclose(r, r0, rtol=1e-14, atol=0)


@needs_numba
def test_an_overflowing_tau_is_numpys():
    """tau = (beta - x_0) / beta overflows where x_0 and -beta are both near the largest float64 (R itself
    finite): LAPACK's does too, and its Q holds Inf and NaN; those are NumPy's (review14: Q's Inf and NaN
    elsewhere)."""
    a = np.random.default_rng(17).standard_normal((3, 2, 1))
    a[1, :, 0] = [1.0e308, 8.0e307]
    with np.errstate(all="ignore"):
        got, want = numpy_compiled_decompositions.qr(a, "reduced"), np.linalg.qr(a)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x[1], y[1])
        np.testing.assert_allclose(x[[0, 2]], y[[0, 2]], rtol=0, atol=1e-14)
