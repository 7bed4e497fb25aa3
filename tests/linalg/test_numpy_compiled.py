"""The compiled batched triangular solve (Numba, optional): the same solutions as SciPy's trsm to
rounding, for both triangles, every op and unit diagonals; without Numba the substitution runs."""
import numpy as np
import pytest
import scipy.linalg

from cupy_ad.backends import numpy_compiled, numpy_kernels


def _case(dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((20, 6, 6)) + 4 * np.eye(6)
    b = rng.standard_normal((20, 6, 3))
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(a.shape)
        b = b + 1j * rng.standard_normal(b.shape)
    return a.astype(dtype), b.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("trans", [0, 1, 2])
def test_compiled_solve_matches_scipy(dtype, lower, trans):
    if not numpy_compiled.available():
        pytest.skip("numba is not installed (the optional extra 'compiled')")
    a, b = _case(dtype)
    for unit in (False, True):
        got = numpy_compiled.solve_triangular_batched(a, b, lower=lower, trans=trans, unit_diagonal=unit)
        want = np.stack([scipy.linalg.solve_triangular(a[i], b[i], lower=lower, trans=trans, unit_diagonal=unit)
                         for i in range(len(a))])
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=0)
    np.testing.assert_array_equal(a, _case(dtype)[0])  # inputs untouched


def test_backend_falls_back_to_the_substitution_without_numba(monkeypatch):
    a, b = _case(np.float64, seed=1)
    with_compiled = numpy_kernels.solve_triangular(a, b, lower=True, trans=0, unit_diagonal=False)
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    assert numpy_compiled.solve_triangular_batched(a, b, lower=True, trans=0, unit_diagonal=False) is None
    without = numpy_kernels.solve_triangular(a, b, lower=True, trans=0, unit_diagonal=False)
    np.testing.assert_allclose(with_compiled, without, rtol=1e-13)
    np.testing.assert_allclose(np.tril(a) @ without, b, rtol=1e-12, atol=1e-12)
