"""Differentiates SciPy and scikit-learn functions on dual values; run as a script in a fresh process.

SciPy reads ``SCIPY_ARRAY_API`` when it is first imported, so this runs in a process of its own
(tests/test_ecosystem.py starts it). Prints a JSON object: check name -> "ok" or the error, for
the libraries installed. Usage: python ecosystem_checks.py BACKEND
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings

os.environ["SCIPY_ARRAY_API"] = "1"

import numpy as np  # noqa: E402

import cupy_ad as ad  # noqa: E402


def jit_agrees(backend, asarray, f, primals):
    """``jit(f)`` and ``jvp(jit(f))`` (random tangents), recorded then replayed, against the eager ``jvp``: bit
    for bit (its primal too: ``f`` on plain arrays may take the library's NumPy path, not the array API's)."""
    rng = np.random.default_rng(1)
    tangents = tuple(asarray(rng.standard_normal(p.shape)) for p in primals)
    to_numpy = ad.namespace(backend).backend.to_numpy
    want = ad.jvp(f, primals, tangents)
    for jitted, call, expected in ((ad.jit(f), lambda g: (g(*primals),), want[:1]),
                                   (ad.jit(f), lambda g: ad.jvp(g, primals, tangents), want)):
        for _ in range(2):
            for got, value in zip(call(jitted), expected):
                assert np.array_equal(to_numpy(got), to_numpy(value)), (got, value)


def vmap_agrees(backend, f, batch):
    """``vmap(jit(f))`` over the rows of ``batch`` against ``f`` row by row (within rounding: the batched
    reductions may pair their terms differently)."""
    to_numpy = ad.namespace(backend).backend.to_numpy
    got = to_numpy(ad.vmap(ad.jit(f))(batch))
    want = np.stack([to_numpy(f(batch[k, ...])) for k in range(batch.shape[0])])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


def scipy_checks(backend, asarray):
    import scipy.special
    import scipy.stats

    rng = np.random.default_rng(0)
    x, positive = asarray(rng.standard_normal(12)), asarray(rng.uniform(0.5, 2.0, 12))
    rows = asarray(rng.standard_normal((3, 12)))

    def boxcox_in_lambda():  # SciPy calls math.log(abs(lmb)): refused, not a wrong derivative
        try:
            ad.jvp(lambda lmb: scipy.stats.boxcox_llf(lmb, positive), (asarray(0.7),), (asarray(1.0),))
        except ad.ConcretizationError:
            return
        raise AssertionError("boxcox_llf in lambda did not raise ConcretizationError")

    return {
        "logsumexp": lambda: ad.check_jvp(lambda a: scipy.special.logsumexp(a), (x,)),
        "zscore": lambda: ad.check_jvp(lambda a: scipy.stats.zscore(a), (x,)),
        "moment": lambda: ad.check_jvp(lambda a: scipy.stats.moment(a, order=3), (x,)),
        "skew": lambda: ad.check_jvp(lambda a: scipy.stats.skew(a), (x,)),
        "kurtosis": lambda: ad.check_jvp(lambda a: scipy.stats.kurtosis(a), (x,)),
        "gmean": lambda: ad.check_jvp(lambda a: scipy.stats.gmean(a), (positive,)),
        "boxcox_llf": lambda: ad.check_jvp(lambda a: scipy.stats.boxcox_llf(0.7, a), (positive,)),
        "boxcox_llf_lambda": boxcox_in_lambda,
        "lmoment": lambda: ad.check_jvp(lambda a: scipy.stats.lmoment(a), (x,)),
        "jit_skew": lambda: jit_agrees(backend, asarray, lambda a: scipy.stats.skew(a), (x,)),
        # lmoment reads int() of its default orders; Ridge writes d[mask] = ...
        "jit_lmoment": lambda: jit_agrees(backend, asarray, lambda a: scipy.stats.lmoment(a), (x,)),
        # skew ends with vals[()]; lmoment checks and reads its default orders (values shared by all examples)
        "vmap_jit_skew": lambda: vmap_agrees(backend, lambda a: scipy.stats.skew(a), rows),
        "vmap_jit_lmoment": lambda: vmap_agrees(backend, lambda a: scipy.stats.lmoment(a), rows),
    }


def sklearn_checks(backend, asarray):
    import sklearn
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.metrics import log_loss
    from sklearn.mixture import GaussianMixture

    sklearn.set_config(array_api_dispatch=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(20)
    labels = asarray((y > 0).astype(np.int64))
    blobs = asarray(np.concatenate([rng.standard_normal((15, 2)) + 3, rng.standard_normal((15, 2)) - 3]))
    means = asarray(np.array([[2.5, 2.5], [-2.5, -2.5]]))
    X, y = asarray(X), asarray(y)

    def gaussian_mixture(a):  # adds reg_covar to each covariance through a view (scikit-learn's pattern)
        means_init = ad.namespace(backend).asarray(means)  # a dual constant: strict arrays refuse duals on their right
        return GaussianMixture(2, means_init=means_init, init_params="random_from_data", random_state=0,
                               max_iter=5, tol=0.0).fit(a).means_

    def log_loss_ends_in_float():  # the label path converts; the final float() refuses the tangent
        probabilities = asarray(rng.uniform(0.1, 0.9, 20))
        try:
            ad.jvp(lambda q: log_loss(labels, q), (probabilities,), (probabilities,))
        except ad.ConcretizationError as error:
            assert "float()" in str(error), error
            return
        raise AssertionError("log_loss did not raise ConcretizationError at its float()")

    return {
        "Ridge": lambda: ad.check_jvp(lambda a, b: Ridge(alpha=0.5).fit(a, b).coef_, (X, y)),
        "PCA": lambda: ad.check_jvp(lambda a: PCA(n_components=2).fit(a).explained_variance_, (X,)),
        "GaussianMixture": lambda: ad.check_jvp(gaussian_mixture, (blobs,)),
        "RidgeClassifier": lambda: ad.check_jvp(lambda a: RidgeClassifier(alpha=0.5).fit(a, labels).coef_, (X,)),
        "log_loss": log_loss_ends_in_float,
        "jit_Ridge": lambda: jit_agrees(backend, asarray, lambda a, b: Ridge(alpha=0.5).fit(a, b).coef_, (X, y)),
        "jit_RidgeClassifier": lambda: jit_agrees(backend, asarray,
                                                  lambda a: RidgeClassifier(alpha=0.5).fit(a, labels).coef_, (X,)),
    }


def main(backend: str) -> None:
    from_numpy = ad.namespace(backend).backend.from_numpy
    results = {}
    for library, checks in (("scipy", scipy_checks), ("sklearn", sklearn_checks)):
        if importlib.util.find_spec(library) is None:
            continue
        for name, check in checks(backend, lambda a: from_numpy(np.asarray(a))).items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    check()
                results[name] = "ok"
            except Exception as error:  # noqa: BLE001 - reported to the test, which fails on it
                results[name] = f"{type(error).__name__}: {error}"
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
