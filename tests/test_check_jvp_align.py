"""check_jvp(..., align=...): outputs defined up to the sign or phase of each vector (eigenvectors,
singular vectors) whose finite-difference reference flips between x + eps t and x - eps t."""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import numpy_compiled

EPS = 1e-6


def _flips(decompose, a, t, index):
    """Whether the columns of ``decompose(a +- EPS t)[index]`` point opposite ways."""
    plus, minus = decompose(a + EPS * t)[index], decompose(a - EPS * t)[index]
    return bool(np.all(np.sum(plus * minus, axis=0) < 0))


def test_eigenvectors_where_numpy_flips_a_column():
    # Both LAPACK's syevd (NumPy) and the compiled QL solver (ours, with Numba) pick each vector's sign
    # by quantities crossing zero at this a along t (found by a search): every column flips between
    # a + eps t and a - eps t. The eigenvalues are distinct.
    a = np.array([[0.0, 0.0, -1.0], [0.0, 2.0, -2.0], [-1.0, -2.0, 0.0]])
    t = np.array([[-1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, -1.0]])
    assert _flips(np.linalg.eigh, a, t, 1) and _flips(ad.linalg.eigh, a, t, 1)
    for eigh in (np.linalg.eigh, ad.linalg.eigh):
        with pytest.raises(AssertionError, match=r"out\[1\].*FAIL"):
            ad.check_jvp(eigh, (a,), (t,))
        ad.check_jvp(eigh, (a,), (t,), align="columns")
        ad.check_jvp(eigh, (a,), (t,), align=(None, "columns"))


def test_singular_vectors_where_numpy_flips_them(monkeypatch):
    # LAPACK's gesdd flips the vectors here, in a way a column alignment of Vh does not undo; the compiled
    # solver (Numba, n <= 16) does not flip at this a, and where it does (it turns whole pairs) aligning
    # Vh's columns undoes it at 2 x 2: so our SVD runs on LAPACK here, as without Numba
    monkeypatch.setattr(numpy_compiled, "_compiled", None)
    a, t = np.array([[1.0, 2.0], [0.0, 1.0]]), np.array([[0.0, 0.0], [1.0, 0.0]])
    assert _flips(np.linalg.svd, a, t, 0) and _flips(ad.linalg.svd, a, t, 0)
    for svd in (np.linalg.svd, ad.linalg.svd):
        with pytest.raises(AssertionError, match="FAIL"):
            ad.check_jvp(svd, (a,), (t,))
        with pytest.raises(AssertionError, match=r"out\[2\].*FAIL"):  # Vh holds the vectors in its rows
            ad.check_jvp(svd, (a,), (t,), align="columns")
        ad.check_jvp(svd, (a,), (t,), align=("columns", None, "rows"))


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_a_sign_or_phase_convention_that_jumps_at_x(backend, dtype):
    # Eigenvectors times a unit factor that switches as a[0, 1] crosses its value at x: the kind of
    # convention LAPACK applies, made explicit so that every backend's solver meets it.
    rng = np.random.default_rng(1)
    m = rng.standard_normal((4, 4)) + (1j * rng.standard_normal((4, 4)) if dtype == np.complex128 else 0)
    a0 = m + np.conj(m.T)
    switch = 1j if dtype == np.complex128 else -1.0

    def eigenvectors(a):
        xp = a.__array_namespace__()
        v = ad.linalg.eigh(a).eigenvectors
        one = xp.ones((), dtype=v.dtype)
        return v * xp.where(xp.real(a[0, 1]) >= float(a0[0, 1].real), one, one * switch)

    a, t = backend.asarray(a0), backend.asarray(np.full((4, 4), 1.0 + 0.5j if dtype == np.complex128 else 1.0))
    with pytest.raises(AssertionError, match="FAIL"):
        ad.check_jvp(eigenvectors, (a,), (t,))
    ad.check_jvp(eigenvectors, (a,), (t,), align="columns")


def test_align_is_checked():
    a = np.eye(2)
    with pytest.raises(ValueError, match="'columns' or 'rows'"):
        ad.check_jvp(ad.linalg.eigh, (a,), align="cols")
    with pytest.raises(ValueError, match="one entry per output"):
        ad.check_jvp(ad.linalg.eigh, (a,), align=("columns",))
