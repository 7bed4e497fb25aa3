"""The batching rules that fold many examples into one large call with a shared matrix, against a
loop over the examples: triangular solves against few and many columns (examples left on axis 1,
then folded again by the next solve), a triangular product of the same kind, and a dot product of stacked vectors with one shared
vector; and the LU Jacobian that uses them against finite differences."""
import numpy as np
import pytest

import cupy_ad as ad


@pytest.mark.parametrize("count", [2, 640])
@pytest.mark.parametrize("lower, trans, unit", [(True, 0, True), (False, 1, False)])
def test_shared_triangle_solves_and_products_match_a_loop(backend, count, lower, trans, unit):
    rng = np.random.default_rng(count)
    n, k = 5, 3
    t_np = rng.standard_normal((n, n)) + 4 * np.eye(n)
    bs_np = rng.standard_normal((count, n, k))
    t, bs = backend.asarray(t_np), backend.asarray(bs_np)
    params = dict(lower=lower, trans=trans, unit_diagonal=unit)

    def chain(b):  # a solve, a second solve of its result (examples on axis 1), a product
        x = ad.linalg.solve_triangular(t, b, **params)
        x = ad.linalg.solve_triangular(t, x * 2.0, **params)
        return ad.linalg.triangular_product(t, x, lower=lower, unit_diagonal=unit)

    got = backend.to_numpy(ad.vmap(chain)(bs))
    want = np.stack([backend.to_numpy(chain(bs[i, ...])) for i in range(count)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_stacked_vectors_dot_a_shared_vector(backend):
    rng = np.random.default_rng(1)
    xs, v = backend.asarray(rng.standard_normal((7, 3))), backend.asarray(rng.standard_normal(3))
    want = np.stack([backend.to_numpy(xs[i, ...] @ v) for i in range(7)])
    for f, axes in ((lambda x, w: x @ w, (0, None)), (lambda x, w: w @ x, (0, None)), (lambda w, x: x @ w, (None, 0))):
        args = (xs, v) if axes[0] == 0 else (v, xs)
        np.testing.assert_allclose(backend.to_numpy(ad.vmap(f, in_axes=axes)(*args)), want, rtol=1e-14)


def test_lu_jacobian_through_the_folds_matches_finite_differences(backend):
    a_np = np.random.default_rng(2).standard_normal((9, 9))  # 81 directions: the inverse's path
    jac = backend.to_numpy(ad.jacfwd(lambda m: ad.linalg.lu_factor(m)[0])(backend.asarray(a_np)))
    f = lambda m: backend.to_numpy(ad.linalg.lu_factor(backend.asarray(m))[0])  # noqa: E731
    eps = 1e-6
    for index in [(0, 0), (3, 7), (8, 2)]:
        step = np.zeros_like(a_np)
        step[index] = eps
        np.testing.assert_allclose(jac[..., index[0], index[1]], (f(a_np + step) - f(a_np - step)) / (2 * eps),
                                   rtol=1e-6, atol=1e-7)
