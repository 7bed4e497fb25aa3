"""SciPy and scikit-learn differentiated unchanged (against finite differences), in a fresh process
per backend (SciPy reads SCIPY_ARRAY_API at import); skipped where a library is absent."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ecosystem_checks.py")
ROOT = Path(__file__).resolve().parents[1]
_RESULTS: dict = {}

SCIPY = ["logsumexp", "zscore", "moment", "skew", "kurtosis", "gmean", "boxcox_llf", "boxcox_llf_lambda", "lmoment",
         "jit_skew", "jit_lmoment", "vmap_jit_skew", "vmap_jit_lmoment"]
SKLEARN = ["Ridge", "PCA", "GaussianMixture", "RidgeClassifier", "log_loss", "jit_Ridge", "jit_RidgeClassifier"]


def _results(backend: str, library: str) -> dict:
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    if backend not in _RESULTS:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        done = subprocess.run([sys.executable, str(SCRIPT), backend], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        _RESULTS[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    return _RESULTS[backend]


@pytest.mark.parametrize("name", SCIPY)
def test_scipy(backend, name):
    assert _results(backend.name, "scipy")[name] == "ok"


@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn(backend, name):
    assert _results(backend.name, "sklearn")[name] == "ok"
