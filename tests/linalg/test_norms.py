"""vector_norm and matrix_norm: values as the backend's own, tangents against finite differences."""
import math

import numpy as np
import pytest

import cupy_ad as ad


@pytest.mark.parametrize("ord", [2, 1, math.inf, -math.inf, 3, 0.5])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, True), ((0, 2), False)])
def test_vector_norm(backend, ord, dtype, axis, keepdims):
    x = backend.random((2, 3, 4), dtype)
    ours = ad.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord)
    theirs = backend.xp.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord)
    np.testing.assert_allclose(backend.to_numpy(ours), backend.to_numpy(theirs), rtol=1e-13)
    ad.check_jvp(lambda a: ad.linalg.vector_norm(a, axis=axis, keepdims=keepdims, ord=ord), (x,))


@pytest.mark.parametrize("ord", ["fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_matrix_norm(backend, ord, dtype):
    x = backend.random((2, 4, 3), dtype)
    ours = ad.linalg.matrix_norm(x, ord=ord, keepdims=True)
    theirs = backend.xp.linalg.matrix_norm(x, ord=ord, keepdims=True)
    np.testing.assert_allclose(backend.to_numpy(ours), backend.to_numpy(theirs), rtol=1e-12)
    ad.check_jvp(lambda a: ad.linalg.matrix_norm(a, ord=ord), (x,))


def test_norms_through_the_namespace(backend):
    x = backend.random((3, 3))
    assert backend.ns.linalg.vector_norm is ad.linalg.vector_norm
    assert backend.ns.linalg.matrix_norm is ad.linalg.matrix_norm
    with pytest.raises(ValueError, match="ord"):
        ad.linalg.matrix_norm(x, ord=3)
