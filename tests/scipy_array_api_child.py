"""Run by test_scipy_array_api.py in a fresh process with SCIPY_ARRAY_API=1 (SciPy reads it on import).

For each backend named in argv: SciPy functions called on dual values, each differentiated and
compared with central finite differences (``max_relative_error``), and ``scipy.special.<name>``
compared with ``xp.special.<name>`` (SciPy must dispatch to ours). Prints one JSON object:
"<backend>:<case>" -> relative error, or the error message where the call raised.
"""
import json
import sys

import numpy as np
import scipy.fft
import scipy.signal
import scipy.special
import scipy.stats

import cupy_ad as ad
from cupy_ad.namespace.special import FUNCTIONS

STATISTICS = {  # name: (function of the samples returning arrays, number of samples)
    "fft.rfft": (lambda x: scipy.fft.rfft(x), 1),
    "fft.irfft": (lambda x: scipy.fft.irfft(x, n=9), 1),
    "signal.fftconvolve": (lambda x, y: scipy.signal.fftconvolve(x, y), 2),
    "stats.pearsonr": (lambda x, y: tuple(scipy.stats.pearsonr(x, y)), 2),
    "stats.ttest_1samp": (lambda x: tuple(scipy.stats.ttest_1samp(x, 0.1)), 1),
    "stats.ttest_ind": (lambda x, y: tuple(scipy.stats.ttest_ind(x, y)), 2),
    "stats.ttest_ind_welch": (lambda x, y: tuple(scipy.stats.ttest_ind(x, y, equal_var=False)), 2),
    "stats.chisquare": (lambda x: tuple(scipy.stats.chisquare(x * x + 1.0)), 1),
    "stats.jarque_bera": (lambda x: tuple(scipy.stats.jarque_bera(x)), 1),
    "stats.skewtest": (lambda x: tuple(scipy.stats.skewtest(x)), 1),
    "stats.f_oneway": (lambda x, y: tuple(scipy.stats.f_oneway(x, y)), 2),
    "special.softplus": (lambda x: scipy.special.softplus(x), 1),
}
PARAMETERS = {"polygamma": (1,), "gammainc": (2.5,), "gammaincc": (2.5,), "betainc": (2.5, 1.5),
              "betaincc": (2.5, 1.5), "stdtr": (3.5,), "chdtr": (3.0,), "chdtrc": (3.0,), "fdtr": (3.0, 7.5),
              "fdtrc": (3.0, 7.5)}
BINARY = ("rel_entr", "xlogy", "xlog1py")


def _attempt(run):
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        return f"{type(exc).__name__}: {exc}"


def _dispatch_difference(backend, ns, name, x):
    """max |scipy.special.<name> - xp.special.<name>| over values and tangents (0.0: SciPy called ours)."""
    def call(fn):
        args = (x, x * 0.5 + 1.0) if name in BINARY else (*PARAMETERS.get(name, ()), x)
        return fn(*args)

    t = backend.from_numpy(np.linspace(0.5, 1.5, 10))
    theirs = ad.jvp(lambda x: call(getattr(scipy.special, name)), (x,), (t,))
    ours = ad.jvp(lambda x: call(getattr(ns.special, name)), (x,), (t,))
    return max(float(np.max(np.abs(backend.to_numpy(a) - backend.to_numpy(b)))) for a, b in zip(theirs, ours))


def main(backends):
    results = {}
    rng = np.random.default_rng(42)  # not seed 0: max_relative_error's tangents are default_rng(0) draws
    samples = [rng.standard_normal(12), rng.standard_normal(12) + 0.5]
    for name in backends:
        ns = ad.namespace(name)
        backend = ns.backend
        arrays = [backend.from_numpy(s) for s in samples]
        for case, (fn, count) in STATISTICS.items():
            results[f"{name}:{case}"] = _attempt(lambda: ad.testing.max_relative_error(fn, tuple(arrays[:count])))
        x = backend.from_numpy(np.linspace(0.15, 0.85, 10))
        for function in FUNCTIONS:
            results[f"{name}:dispatch.{function}"] = _attempt(lambda: _dispatch_difference(backend, ns, function, x))
        a = backend.from_numpy(np.full(10, 2.5))
        results[f"{name}:betainc in a"] = _attempt(
            lambda: ad.jvp(lambda a, x: scipy.special.betainc(a, 1.5, x), (a, x), (a, None)))
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1].split(","))
