"""solve_triangular: FD checks for every option, the differentiated identity, nesting, bad input."""
import itertools

import numpy as np
import pytest
import scipy.linalg

import cupy_ad as ad

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _triangular(backend, shape, dtype, lower, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.iscomplexobj(dtype(0)) else 0)
    a = a + 3 * np.eye(shape[-1])  # well conditioned; the other triangle holds garbage the solve must ignore
    return backend.asarray(a.astype(dtype))


def _tolerances(dtype):
    return dict(rtol=5e-3, atol=5e-3) if dtype in (np.float32, np.complex64) else {}


@pytest.mark.parametrize("lower, trans, unit", list(itertools.product([True, False], [0, 1, 2, "T"], [False, True])))
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_scipy_and_finite_differences(backend, lower, trans, unit, dtype):
    a = _triangular(backend, (4, 4), dtype, lower)
    b = backend.random((4, 3), dtype, seed=1)
    f = lambda x, y: ad.linalg.solve_triangular(x, y, lower=lower, trans=trans, unit_diagonal=unit)  # noqa: E731
    expected = scipy.linalg.solve_triangular(backend.to_numpy(a), backend.to_numpy(b), lower=lower, trans=trans,
                                             unit_diagonal=unit)
    np.testing.assert_allclose(backend.to_numpy(f(a, b)), expected, rtol=1e-5 if dtype in (np.float32, np.complex64)
                               else 1e-13)
    ad.check_jvp(f, (a, b), **_tolerances(dtype))


@pytest.mark.parametrize("a_shape, b_shape", [((4, 4), (4,)), ((2, 4, 4), (2, 4, 3)), ((2, 4, 4), (4,)),
                                              ((1, 1), (1, 2)), ((3, 2, 2), (3, 2, 1))])
def test_shapes_and_batches(backend, a_shape, b_shape):
    a = _triangular(backend, a_shape, np.float64, True)
    b = backend.random(b_shape, seed=2)
    ad.check_jvp(lambda x, y: ad.linalg.solve_triangular(x, y, lower=True), (a, b))


def test_differentiated_identity(backend):
    """op(A) dX + op(dA) X = dB with dA restricted to the triangle that is read."""
    a = _triangular(backend, (5, 5), np.complex128, False)
    b = backend.random((5, 2), np.complex128, seed=1)
    da, db = backend.random((5, 5), np.complex128, seed=2), backend.random((5, 2), np.complex128, seed=3)
    x, dx = ad.jvp(lambda p, q: ad.linalg.solve_triangular(p, q, trans=2), (a, b), (da, db))
    a_, da_, x_, dx_ = (backend.to_numpy(v) for v in (a, da, x, dx))
    residual = np.triu(a_).conj().T @ dx_ + np.triu(da_).conj().T @ x_ - backend.to_numpy(db)
    assert np.max(np.abs(residual)) < 1e-12


def test_unit_diagonal_ignores_the_diagonal(backend):
    a = _triangular(backend, (3, 3), np.float64, True)
    b = backend.random((3,), seed=1)
    diagonal_only = backend.asarray(np.diag([1.0, 2.0, 3.0]))
    _, dx = ad.jvp(lambda p: ad.linalg.solve_triangular(p, b, lower=True, unit_diagonal=True), (a,), (diagonal_only,))
    assert not np.any(backend.to_numpy(dx))


def test_second_derivative(backend):
    a = _triangular(backend, (4, 4), np.float64, True)
    b = backend.random((4, 2), seed=1)
    direction = backend.random((4, 4), seed=3)

    def first(x):
        return ad.jvp(lambda y: ad.linalg.solve_triangular(y, b, lower=True), (x,), (direction,))[1]

    ad.check_jvp(first, (a,))


def test_bad_input(backend):
    a = _triangular(backend, (3, 3), np.float64, True)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        ad.linalg.solve_triangular(backend.random((3, 2)), backend.random((3,)))
    with pytest.raises(ValueError, match="incompatible"):
        ad.linalg.solve_triangular(a, backend.random((4,)))
    with pytest.raises(ValueError, match="trans"):
        ad.linalg.solve_triangular(a, backend.random((3,)), trans=3)


def test_inputs_not_modified(backend):
    a = _triangular(backend, (3, 3), np.float64, True)
    b = backend.random((3, 2), seed=1)
    before = backend.to_numpy(a).copy(), backend.to_numpy(b).copy()
    ad.jvp(lambda p, q: ad.linalg.solve_triangular(p, q), (a, b), (a, b))
    np.testing.assert_array_equal(backend.to_numpy(a), before[0])
    np.testing.assert_array_equal(backend.to_numpy(b), before[1])


def _layouts(x):
    """x in C order, Fortran order and as a strided (non-contiguous) view holding the same values."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    wide[:, ::2] = x
    return {"C": np.ascontiguousarray(x), "F": np.asfortranarray(x), "strided": wide[:, ::2]}


@pytest.mark.parametrize("trans", [0, 1, 2])
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float32, np.float64), (np.complex128, np.complex128),
                                    (np.complex64, np.float32)])
def test_numpy_one_matrix_path_every_layout(trans, dtypes):
    """The NumPy backend's path for one matrix (a BLAS call with little around it) against SciPy, for every
    layout of both operands, mixed dtypes, each triangle and op, unit diagonals; and its error on a zero
    diagonal entry, as LAPACK's trtrs."""
    from cupy_ad.backends import numpy_kernels

    rng = np.random.default_rng(3)
    a = (rng.standard_normal((5, 5)) + 3 * np.eye(5)).astype(dtypes[0])
    b = rng.standard_normal((5, 3)).astype(dtypes[1])
    if np.iscomplexobj(a):
        a = a + 1j * rng.standard_normal((5, 5)).astype(dtypes[0])
    rtol = 1e-5 if np.result_type(*dtypes) in (np.float32, np.complex64) else 1e-13
    for (a_name, a_), (b_name, b_), lower, unit in itertools.product(_layouts(a).items(), _layouts(b).items(),
                                                                    [True, False], [False, True]):
        got = numpy_kernels.solve_triangular(a_, b_, lower=lower, trans=trans, unit_diagonal=unit)
        expected = scipy.linalg.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit)
        assert got.dtype == expected.dtype, (a_name, b_name)
        np.testing.assert_allclose(got, expected, rtol=rtol, err_msg=f"{a_name} {b_name} {lower} {unit}")
    singular = a.copy()
    singular[2, 2] = 0
    with pytest.raises(np.linalg.LinAlgError, match="diagonal 2"):
        numpy_kernels.solve_triangular(singular, b, lower=True, trans=trans, unit_diagonal=False)
    assert numpy_kernels.solve_triangular(singular, b, lower=True, trans=trans, unit_diagonal=True) is not None
