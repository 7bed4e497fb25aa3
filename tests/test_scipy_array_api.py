"""SciPy with SCIPY_ARRAY_API=1 on dual values: scipy.fft, signal.fftconvolve, scipy.special dispatching to
xp.special, and the statistics and p-values of scipy.stats tests, against finite differences.

SciPy reads SCIPY_ARRAY_API when it is first imported, so the calls run in a fresh process
(scipy_array_api_child.py), once for all backends; each test reads its line of the report.
"""
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from conftest import BACKENDS
from cupy_ad.values import Dual

HERE = Path(__file__).parent
STATISTICS = ["fft.rfft", "fft.irfft", "signal.fftconvolve", "stats.pearsonr", "stats.ttest_1samp", "stats.ttest_ind",
              "stats.chisquare", "stats.jarque_bera", "stats.skewtest", "stats.f_oneway"]
SPECIAL = ["erf", "erfc", "erfinv", "erfcinv", "expit", "logit", "softplus", "gammaln", "psi", "digamma", "polygamma",
           "ndtr", "log_ndtr", "ndtri", "entr", "rel_entr", "xlogy", "xlog1py", "sinc", "i0", "i1", "i0e", "i1e",
           "gammainc", "gammaincc", "betainc", "betaincc", "stdtr", "chdtr", "chdtrc", "fdtr", "fdtrc"]


@cache
def _report() -> dict:
    env = {**os.environ, "SCIPY_ARRAY_API": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, str(HERE / "scipy_array_api_child.py"), ",".join(BACKENDS)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("case", STATISTICS)
def test_scipy_function_matches_finite_differences(backend, case):
    error = _report()[f"{backend.name}:{case}"]
    assert isinstance(error, float) and error < 1e-7, error


@pytest.mark.parametrize("name", SPECIAL)
def test_scipy_special_dispatches_to_ours(backend, name):
    """scipy.special.<name>(dual) gives our values and tangents (the NumPy fallback would raise)."""
    difference = _report()[f"{backend.name}:dispatch.{name}"]
    assert isinstance(difference, float) and difference < 1e-15, difference


def test_shape_parameter_through_scipy_raises(backend):
    report = _report()
    assert report[f"{backend.name}:betainc in a"].startswith(
        "NotImplementedError: the derivative of betainc in a is not implemented")
    # Welch's t-test: the degrees of freedom depend on the data, so the p-value needs d stdtr / d df.
    assert report[f"{backend.name}:stats.ttest_ind_welch"].startswith(
        "NotImplementedError: the derivative of stdtr in df is not implemented")


@pytest.mark.skipif(Dual.__array_ufunc__ is None, reason="scipy.special.softplus calls np.logaddexp directly, not "
                    "xp.special.softplus: it needs NumPy's ufunc protocol on dual values")
def test_scipy_softplus(backend):
    error = _report()[f"{backend.name}:special.softplus"]
    assert isinstance(error, float) and error < 1e-7, error
