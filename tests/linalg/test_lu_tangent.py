"""The LU tangent primitive (one buffer, many directions sharing one factor): its NumPy kernel against
the composition of whole-matrix solves and products it replaces (one direction at a time), on each
of the kernel's paths (directions last, one direction blocked, few directions of a large matrix),
on an ill-conditioned triangle, at a zero last pivot, and the Jacobian's memory."""
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.linalg

import cupy_ad as ad
from cupy_ad.backends import numpy_lu_tangent
from cupy_ad.linalg import lu_tangent as lu_tangent_module


def _factor(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f, piv = scipy.linalg.lu_factor(a)
    return f, _permutation(piv)


def _permutation(piv: np.ndarray) -> np.ndarray:
    perm = np.arange(len(piv))
    for i, p in enumerate(piv):
        perm[[i, p]] = perm[[p, i]]
    return perm


def _reference(f: np.ndarray, perm: np.ndarray, da: np.ndarray) -> np.ndarray:
    """The composition (whole-matrix solves and products), one direction."""
    return np.asarray(lu_tangent_module._composition(f, perm, da))


@pytest.mark.parametrize("n, directions", [(6, 40), (9, 2), (70, 1), (90, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
def test_kernel_matches_the_composition_direction_by_direction(n, directions, dtype):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)).astype(dtype)
    stack = rng.standard_normal((n, directions, n)).astype(dtype)  # directions along axis 1
    if dtype == np.complex128:
        a = a + 1j * rng.standard_normal((n, n))
        stack = stack + 1j * rng.standard_normal(stack.shape)
    f, perm = _factor(a)
    copy = stack.copy()
    got = numpy_lu_tangent.lu_tangent(f, perm, stack, axis=1)
    want = np.stack([_reference(f, perm, stack[:, d]) for d in range(directions)], axis=-1)
    tol = 2e-4 if dtype == np.float32 else 1e-11
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale)
    one = numpy_lu_tangent.lu_tangent(f, perm, stack[:, 0])
    np.testing.assert_allclose(one, want[..., 0], rtol=0, atol=tol * scale)
    np.testing.assert_array_equal(stack, copy)  # the input is not written


def test_ill_conditioned_triangle_stays_accurate():
    """A triangle of condition ~1e12 (graded pivots): the kernel solves, as the composition does (an
    explicit inverse would lose several more digits here); both agree to rounding relative to the
    size of the answer, and the Jacobian matches the per-direction jvps."""
    n = 12
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = np.triu(rng.standard_normal((n, n)), 1) * 0.1 + np.diag(np.logspace(0, -12, n))
    a = (np.eye(n) + np.tril(rng.standard_normal((n, n)), -1) * 0.1) @ a  # L U with a graded U
    f, perm = _factor(a)
    assert np.linalg.cond(np.triu(f)) > 1e10
    stack = rng.standard_normal((n * n, n, n))
    got = numpy_lu_tangent.lu_tangent(f, perm, stack, axis=0)
    want = np.stack([_reference(f, perm, stack[d]) for d in range(n * n)], axis=-1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
    jac = np.asarray(ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0])(a))
    basis = np.eye(n * n).reshape(n * n, n, n)
    for d in (0, 17, n * n - 1):
        one = np.asarray(ad.jvp(lambda m: ad.linalg.lu_factor(m)[0], (a,), (basis[d],))[1])
        np.testing.assert_allclose(jac.reshape(n, n, n * n)[..., d], one, rtol=0, atol=1e-12 * np.abs(one).max())


def test_zero_last_pivot_keeps_a_finite_exact_tangent():
    rng = np.random.default_rng(5)
    n = 7
    b = rng.standard_normal((n, n - 1))
    a = b @ rng.standard_normal((n - 1, n))  # rank n - 1, nonzero leading minors
    jac = np.asarray(ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0])(a))
    assert np.all(np.isfinite(jac))
    eps = 1e-6
    f = lambda m: scipy.linalg.lu_factor(m)[0]  # noqa: E731
    for index in [(0, 0), (6, 6), (3, 5)]:
        step = np.zeros_like(a)
        step[index] = eps
        np.testing.assert_allclose(jac[..., index[0], index[1]], (f(a + step) - f(a - step)) / (2 * eps),
                                   rtol=1e-5, atol=1e-6)


def test_lu_jacobian_peak_memory_is_about_its_output():
    """The standard basis is a view of one vector and the kernel writes the Jacobian in one buffer:
    peak traced memory within 1.2x the output's size (256 directions of a 16 x 16 matrix)."""
    a = np.random.default_rng(0).standard_normal((16, 16))
    jacobian = ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0])
    jacobian(a)
    tracemalloc.start()
    try:
        out = jacobian(a)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.2 * out.nbytes, peak / out.nbytes


def test_nested_directions_against_the_composition(backend):
    """Second order through the primitive's JVP rule (the factor varies) against the composition."""
    a_np = np.random.default_rng(8).standard_normal((4, 4)) + 3 * np.eye(4)
    a = backend.asarray(a_np)
    hess = backend.to_numpy(ad.jacfwd(ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0][1:, 2]))(a))
    eps = 1e-5
    jac = lambda m: backend.to_numpy(ad.jacfwd(lambda x: ad.linalg.lu_factor(x)[0][1:, 2])(backend.asarray(m)))  # noqa: E731
    step = np.zeros((4, 4))
    step[2, 1] = eps
    np.testing.assert_allclose(hess[..., 2, 1], (jac(a_np + step) - jac(a_np - step)) / (2 * eps), rtol=1e-6, atol=1e-7)


def _matrix(rng: np.random.Generator, n: int, dtype) -> np.ndarray:
    a = rng.standard_normal((n, n))
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal((n, n))
    return a.astype(dtype)


BLOCK = numpy_lu_tangent.BLOCK


@pytest.mark.parametrize("n", [1, 5, 40, BLOCK, BLOCK + 1, 2 * BLOCK + 19])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32])
@pytest.mark.parametrize("small_compiled", [True, False])
def test_blocked_one_direction_matches_the_composition(n, dtype, small_compiled, monkeypatch):
    """One direction goes block column by block column (the differentiated blocked LU): sizes below,
    at and across the block size, n = 1, the factor in LAPACK's Fortran order and in C order; a small
    factor (n <= 32) takes the compiled kernel where Numba is installed, else (forced here) the blocks."""
    if not small_compiled:
        monkeypatch.setattr(numpy_lu_tangent.numpy_compiled, "lu_tangent_batched", lambda *args: None)
    rng = np.random.default_rng(n)
    f, perm = _factor(_matrix(rng, n, dtype))
    da = _matrix(rng, n, dtype)
    copy = da.copy()
    want = _reference(f, perm, da)
    tol = 2e-4 if dtype == np.float32 else 1e-11
    for layout in (np.asfortranarray(f), np.ascontiguousarray(f)):
        got = numpy_lu_tangent.lu_tangent(layout, perm, da)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())
    np.testing.assert_array_equal(da, copy)


@pytest.mark.parametrize("n", [1, 50, 2 * BLOCK + 19])
def test_blocked_one_direction_matches_finite_differences(n):
    rng = np.random.default_rng(10 + n)
    a, da = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    f, perm = _factor(a)
    eps = 1e-6
    (plus, piv_plus), (minus, piv_minus) = (scipy.linalg.lu_factor(a + s * eps * da) for s in (1, -1))
    np.testing.assert_array_equal(piv_plus, piv_minus)  # the same pivots: the factor is smooth there
    np.testing.assert_allclose(numpy_lu_tangent.lu_tangent(f, perm, da), (plus - minus) / (2 * eps),
                               rtol=0, atol=1e-6 * np.abs(plus).max())


def test_blocked_zero_last_pivot_and_the_fallback(monkeypatch):
    """A zero last pivot after two blocks (the last row is half of row 3: it vanishes exactly once row 3
    is eliminated): the tangent is finite and matches finite differences; without NumPy's BLAS
    (another build) the directions-last path gives the same tangent."""
    n = 2 * BLOCK + 19
    da = np.random.default_rng(4).standard_normal((n, n))
    a = 4 * np.eye(n) + np.eye(n, k=1) - np.eye(n, k=-1)
    a[-1] = 0.5 * a[3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy's LinAlgWarning for the zero pivot
        f, piv = scipy.linalg.lu_factor(a)
        dlu = np.asarray(ad.jvp(lambda m: ad.linalg.lu_factor(m)[0], (a,), (da,))[1])
    assert f[-1, -1] == 0 and np.count_nonzero(np.diagonal(f) == 0) == 1
    assert np.all(np.isfinite(dlu))
    eps = 1e-7
    (plus, piv_plus), (minus, _) = (scipy.linalg.lu_factor(a + s * eps * da) for s in (1, -1))
    np.testing.assert_array_equal(piv_plus, piv)
    np.testing.assert_allclose(dlu, (plus - minus) / (2 * eps), rtol=0, atol=1e-6)
    f_solvable, perm = f.copy(), _permutation(piv)
    f_solvable[-1, -1] = 1.0
    blocked = numpy_lu_tangent.lu_tangent(f_solvable, perm, da)
    monkeypatch.setattr(numpy_lu_tangent.numpy_kernels, "pointer_blas", lambda dtype: None)
    np.testing.assert_allclose(numpy_lu_tangent.lu_tangent(f_solvable, perm, da), blocked, rtol=0,
                               atol=1e-12 * np.abs(blocked).max())


def test_linearize_across_blocks_is_jvp_bit_for_bit():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((2 * BLOCK + 19,) * 2)
    f = lambda m: ad.linalg.lu_factor(m)[0]  # noqa: E731
    _, f_jvp = ad.linearize(f, a)
    for seed in (1, 2):
        t = np.random.default_rng(seed).standard_normal(a.shape)
        np.testing.assert_array_equal(np.asarray(f_jvp(t)), np.asarray(ad.jvp(f, (a,), (t,))[1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_pointer_blas_transposes_blocks_without_conjugating(dtype):
    blas = numpy_lu_tangent.numpy_kernels.pointer_blas(dtype)
    if blas is None:
        pytest.skip("NumPy's BLAS is not OpenBLAS here (the kernel then takes its unblocked path)")
    rng = np.random.default_rng(7)
    a = (rng.standard_normal((9, 11)) + (1j * rng.standard_normal((9, 11)) if np.dtype(dtype).kind == "c" else 0))
    a = a.astype(dtype)
    b = np.zeros((5, 9), dtype)
    block = a[2:, 3:8]  # a 7 x 5 block of a (not square: rows and columns told apart), copied transposed
    blas.transpose_copy(7, 5, block.ctypes.data, 11, b.ctypes.data, 9)  # into b's first 7 columns
    np.testing.assert_array_equal(b[:, :7], block.T)
    assert not b[:, 7:].any()


def test_without_openblas_transpose_the_kernel_takes_its_unblocked_path(monkeypatch):
    functions = {k: v for k, v in numpy_lu_tangent.numpy_kernels._library.load().items() if "omatcopy" not in k}
    monkeypatch.setattr(numpy_lu_tangent.numpy_kernels._library, "functions", functions)
    assert numpy_lu_tangent.numpy_kernels.pointer_blas(np.float64) is None
    rng = np.random.default_rng(8)
    a, da = rng.standard_normal((2, BLOCK + 5, BLOCK + 5))
    f, perm = _factor(a)
    np.testing.assert_allclose(numpy_lu_tangent.lu_tangent(f, perm, da), _reference(f, perm, da), rtol=0,
                               atol=1e-12 * np.abs(_reference(f, perm, da)).max())


def test_an_omatcopy_that_does_not_transpose_is_not_trusted(monkeypatch):
    kernels = numpy_lu_tangent.numpy_kernels
    real = kernels._library.load()
    if "domatcopy" not in real:
        pytest.skip("NumPy's BLAS is not OpenBLAS here")
    broken = {**real, "domatcopy": lambda *args: None}  # (as a library that rejects the call and copies nothing)
    library = kernels._Library()
    monkeypatch.setattr(library, "_find", lambda: broken)
    functions = library.load()
    assert "dtrsm" in functions and not any(name.endswith("omatcopy") for name in functions)
