"""Choosing a backend that cannot work fails at once, saying what to do."""
from __future__ import annotations

import sys
import types

import pytest

import cupy_ad as ad
from cupy_ad import backends


@pytest.fixture
def fresh_backends(monkeypatch):
    """Forget the loaded backends (and the default) for one test."""
    monkeypatch.setattr(backends, "_BY_NAME", {})
    monkeypatch.setattr(backends, "_BY_TYPE", {})
    monkeypatch.setattr(backends, "_default", [""])


def _fake_cupy(monkeypatch, get_device_count):
    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    monkeypatch.setitem(sys.modules, "cupy", cupy)


def test_unknown_backend_lists_the_valid_names(fresh_backends):
    with pytest.raises(ValueError, match="unknown backend 'foo'.*'numpy', 'cupy', 'array_api_strict'"):
        ad.set_backend("foo")
    with pytest.raises(ValueError, match="'json' is not an array library"):
        ad.set_backend("json")


def test_missing_cupy_names_the_extras(fresh_backends, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # ``import cupy`` raises ImportError
    with pytest.raises(ValueError, match=r'needs CuPy.*pip install "cupy-ad\[cuda12\]".*"cupy-ad\[cuda13\]"'):
        ad.set_backend("cupy")
    monkeypatch.setattr(backends, "_default", ["cupy"])  # as CUPY_AD_BACKEND=cupy sets it
    with pytest.raises(ValueError, match=r"cupy-ad\[cuda12\]"):
        ad.default_backend()


def _no_driver():
    raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")


@pytest.mark.parametrize("get_device_count, reason", [(_no_driver, "cudaErrorInsufficientDriver"),
                                                      (lambda: 0, "sees no GPU")])
def test_cupy_without_a_usable_device_fails_at_set_backend(fresh_backends, monkeypatch, get_device_count, reason):
    _fake_cupy(monkeypatch, get_device_count)
    with pytest.raises(RuntimeError, match=f"no CUDA device is usable.*{reason}"):
        ad.set_backend("cupy")
    assert backends.default_backend().name == "numpy"  # the automatic choice falls back

