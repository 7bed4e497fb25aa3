"""NumPy's own LAPACK through ctypes (backends/numpy_lapack.py): getrf equals SciPy's lu_factor and
QR through gelqf/orglq on the transposed view equals numpy.linalg.qr, for every dtype and shape;
the NumPy backend uses them where they are faster and falls back without them."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

import cupy_ad as ad
from cupy_ad.backends import numpy_kernels, numpy_lapack

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(1, 1), (4, 4), (7, 3), (3, 7), (9, 1), (1, 9), (33, 20), (20, 33)]


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if np.dtype(dtype).kind == "c" else 0)
    return a.astype(dtype)


def _eps(dtype):
    return np.finfo(dtype).eps


def test_routines_found():
    assert all(numpy_kernels.lapack(p + r) is not None for p in "sdcz" for r in ("getrf", "gelqf"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_getrf_equals_scipy(shape, dtype):
    a = _random(shape, dtype, seed=1)
    a0 = a.copy()
    lu, piv = numpy_lapack.getrf(a)
    lu_ref, piv_ref = scipy.linalg.lu_factor(a)
    np.testing.assert_array_equal(piv, piv_ref)
    assert lu.dtype == lu_ref.dtype and piv.dtype == np.int32
    assert np.max(np.abs(lu - lu_ref)) <= 4 * _eps(dtype) * np.max(np.abs(lu_ref))
    np.testing.assert_array_equal(a, a0)


def test_getrf_warns_at_zero_pivot_as_scipy():
    a = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.warns(scipy.linalg.LinAlgWarning, match="Diagonal number 2"):
        numpy_lapack.getrf(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qr_via_lq_equals_numpy(shape, dtype):
    """Same factors as geqrf/orgqr (LAPACK's gauge: real diag(R), numpy's signs), to rounding."""
    a = _random(shape, dtype, seed=2)
    a0 = a.copy()
    q, r = numpy_lapack.qr(a, "reduced")
    q_ref, r_ref = np.linalg.qr(a)
    assert q.shape == q_ref.shape and r.shape == r_ref.shape and q.dtype == q_ref.dtype and q.flags.c_contiguous
    scale = 50 * _eps(dtype) * max(1.0, np.max(np.abs(r_ref)))
    assert np.max(np.abs(q - q_ref)) <= scale and np.max(np.abs(r - r_ref)) <= scale
    np.testing.assert_array_equal(np.tril(r, -1), 0)
    np.testing.assert_array_equal(numpy_lapack.qr(a, "r"), r)
    np.testing.assert_array_equal(a, a0)


def test_qr_modes_and_inputs_it_leaves_to_numpy():
    assert numpy_lapack.qr(np.ones((5, 3)), "complete") is None
    assert numpy_lapack.qr(np.ones((2, 5, 3)), "reduced") is None
    assert numpy_lapack.qr(np.ones((0, 3)), "reduced") is None
    assert numpy_lapack.qr(np.ones((3, 3), dtype=np.float16), "reduced") is None


@pytest.mark.parametrize("shape, dtype", [((160, 130), np.float32), ((130, 130), np.float64),
                                          ((130, 200), np.complex128), ((300, 130), np.float64)])
def test_backend_qr_and_jvp_on_the_lq_path(shape, dtype):
    """Matrices large enough for the backend to take gelqf/orglq (or NumPy for tall float64)."""
    a = _random(shape, dtype, seed=3)
    q, r = ad.linalg.qr(a)
    q_ref, r_ref = np.linalg.qr(a)
    tol = 200 * _eps(dtype) * np.max(np.abs(r_ref))
    assert np.max(np.abs(q - q_ref)) <= tol and np.max(np.abs(r - r_ref)) <= tol
    if dtype == np.float64 or dtype == np.complex128:
        ad.check_jvp(lambda x: tuple(ad.linalg.qr(x)), (a,))


def test_backend_falls_back_without_lapack(monkeypatch):
    a = _random((140, 140), np.float64, seed=4)
    fast = ad.namespace("numpy").backend.lu_factor(a), ad.namespace("numpy").backend.qr(a, "reduced")
    functions = {k: v for k, v in numpy_kernels._library.load().items() if not k[1:].startswith(("getrf", "gelqf"))}
    monkeypatch.setattr(numpy_kernels._library, "functions", functions)
    assert numpy_lapack.getrf(a) is None and numpy_lapack.qr(a, "reduced") is None
    backend = ad.namespace("numpy").backend
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slow = backend.lu_factor(a), backend.qr(a, "reduced")
    for x, y in zip(fast, slow):
        for u, v in zip(x, y):
            np.testing.assert_allclose(u, v, atol=1e-12)
