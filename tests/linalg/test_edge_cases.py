"""Edge cases found in review: empty batches, integer input, NaN input, SciPy's dtypes."""
import numpy as np
import pytest

import cupy_ad as ad


def test_empty_batches(backend):
    a = backend.asarray(np.zeros((0, 3, 3)))
    assert backend.to_numpy(ad.linalg.det(a)).shape == (0,)
    assert backend.to_numpy(ad.linalg.inv(a)).shape == (0, 3, 3)
    assert backend.to_numpy(ad.linalg.slogdet(a).logabsdet).shape == (0,)
    assert backend.to_numpy(ad.linalg.solve(a, backend.asarray(np.zeros((0, 3, 2))))).shape == (0, 3, 2)
    for fn in (ad.linalg.qr, ad.linalg.cholesky, ad.linalg.lu_factor, ad.linalg.eigh, ad.linalg.svd):
        out, tangent = ad.jvp(fn, (a,), (a,))
        for leaf in (out if isinstance(out, tuple) else (out,)):
            assert backend.to_numpy(leaf).shape[0] == 0


@pytest.mark.parametrize("name", ["svd", "svdvals", "eigh", "eigvalsh", "det", "inv", "cholesky", "lu_factor"])
def test_integer_input_is_promoted_as_numpy_does(backend, name):
    a = np.array([[4, 1, 0], [1, 3, 1], [0, 1, 2]])
    ours = getattr(ad.linalg, name)(backend.asarray(a))
    reference = getattr(ad.linalg, name)(backend.asarray(a.astype(np.float64)))
    for x, y in zip(ours if isinstance(ours, tuple) else (ours,), reference if isinstance(reference, tuple) else
                    (reference,)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(backend.to_numpy(x), backend.to_numpy(y))


def test_nan_input_gives_nan_not_an_error(backend):
    x = np.random.default_rng(0).random((2, 3, 3))
    x[0, 1, 1] = np.nan
    a = backend.asarray(x)
    for fn in (ad.linalg.svdvals, ad.linalg.svd, ad.linalg.eigh, ad.linalg.eigvalsh):
        out, tangent = ad.jvp(fn, (a,), (a,))
        first = backend.to_numpy(out[1] if isinstance(out, tuple) and fn is ad.linalg.svd else
                                 out[0] if isinstance(out, tuple) else out)
        assert np.isnan(first[0]).all() and np.isfinite(first[1]).all()


def test_lu_permutation_is_real_as_in_scipy(backend):
    import scipy.linalg

    a = np.random.default_rng(1).standard_normal((3, 3)) * (1 + 1j)
    p = ad.linalg.lu(backend.asarray(a.astype(np.complex64)))[0]
    assert backend.to_numpy(p).dtype == scipy.linalg.lu(a.astype(np.complex64))[0].dtype == np.float32
