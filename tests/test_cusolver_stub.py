"""The CuPy backend's choices, checked without a GPU or CuPy against stub modules (the calls themselves
are checked against CuPy's real wrappers by tests/test_cupy_wrappers.py where CuPy imports).

cusolver.trsm's choice of cuBLAS routine: cusolver.py is loaded against stub ``cupy`` /
``cupy_backends`` modules whose cuBLAS wrapper records its calls. CuPy 13's wrapper has no
``?trsmBatched`` (CuPy 14's has): a batch of small triangular solves must then be a loop of ``trsm``,
one call per matrix at that matrix's addresses. CupyBackend.special's native kernels (a stub
``cupyx.scipy.special`` computing as CuPy's do) give the NumPy backend's dtypes."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import cupy_ad.backends
from cupy_ad.backends.cupy_backend import CupyBackend
from cupy_ad.backends.numpy_backend import NumpyBackend

A_BASE, B_BASE, POINTERS_BASE = 0x10000, 0x90000, 0xF0000


class _DeviceArray:
    """What cusolver.trsm reads of a C-contiguous CuPy array: shape, dtype, strides, device address."""

    def __init__(self, shape: tuple, dtype, ptr: int):
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.strides = tuple(int(np.prod(shape[i + 1:])) * self.dtype.itemsize for i in range(len(shape)))
        self.data = types.SimpleNamespace(ptr=ptr)


def _cublas(calls: list, batched: bool) -> types.ModuleType:
    cublas = types.ModuleType("cupy_backends.cuda.libs.cublas")
    constants = ["SIDE_LEFT", "FILL_MODE_LOWER", "FILL_MODE_UPPER", "OP_N", "OP_T", "OP_C", "DIAG_UNIT",
                 "DIAG_NON_UNIT", "POINTER_MODE_HOST"]
    for value, name in enumerate(constants):
        setattr(cublas, "CUBLAS_" + name, value)
    cublas.getPointerMode = lambda handle: cublas.CUBLAS_POINTER_MODE_HOST
    for prefix in "sdcz":
        for routine in ("trsm", "trsmBatched") if batched else ("trsm",):
            setattr(cublas, prefix + routine, lambda *args, name=prefix + routine: calls.append((name, args)))
    return cublas


def _cusolver_on(cublas: types.ModuleType, monkeypatch) -> types.ModuleType:
    """cupy_ad/backends/cusolver.py loaded as a separate module over stubs (sys.modules restored after)."""
    cupy = types.ModuleType("cupy")
    cupy.uintp = np.uintp
    cupy.arange = lambda start, stop, step, dtype: _DeviceArray(((stop - start) // step,), dtype, POINTERS_BASE)
    cupy.ElementwiseKernel = lambda *args, **kwargs: None
    cupy.cuda = types.ModuleType("cupy.cuda")
    cupy.cuda.device = types.SimpleNamespace(get_cublas_handle=lambda: "cublas handle")
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.cublas, libs.cusolver = cublas, types.ModuleType("cupy_backends.cuda.libs.cusolver")
    for module in (cupy, cupy.cuda, types.ModuleType("cupy_backends"), types.ModuleType("cupy_backends.cuda"),
                   libs, libs.cublas, libs.cusolver):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    path = Path(cupy_ad.backends.__file__).with_name("cusolver.py")
    spec = importlib.util.spec_from_file_location("cusolver_on_stubs", path)
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    return kernels


def _solve(kernels, batch_a: int, batch: int, n: int, k: int, dtype=np.float64) -> None:
    a = _DeviceArray((batch_a, n, n), dtype, A_BASE)
    b = _DeviceArray((batch, k, n), dtype, B_BASE)
    kernels.trsm(a, b, lower=True, trans=0, unit_diagonal=False)


@pytest.mark.parametrize("dtype, prefix", [(np.float32, "s"), (np.complex128, "z")])
def test_batched_solves_loop_over_trsm_without_the_wrapper(monkeypatch, dtype, prefix):
    calls = []
    kernels = _cusolver_on(_cublas(calls, batched=False), monkeypatch)
    _solve(kernels, 3, 3, n=4, k=2, dtype=dtype)
    assert [name for name, _ in calls] == [prefix + "trsm"] * 3
    size = np.dtype(dtype).itemsize
    for i, (_, args) in enumerate(calls):
        # (handle, side, uplo, op, diag, m, n, alpha, A, lda, B, ldb): matrix i at its own addresses
        assert args[5:7] == (4, 2) and args[9] == args[11] == 4
        assert args[8] == A_BASE + i * 16 * size and args[10] == B_BASE + i * 8 * size


def test_batched_solves_use_trsm_batched_where_wrapped(monkeypatch):
    calls = []
    kernels = _cusolver_on(_cublas(calls, batched=True), monkeypatch)
    _solve(kernels, 3, 3, n=4, k=2)
    (name, args), = calls
    assert name == "dtrsmBatched" and args[5:7] == (4, 2) and args[8] == args[10] == POINTERS_BASE and args[-1] == 3
    calls.clear()
    _solve(kernels, 2, 2, n=kernels.TRSM_BATCHED_MAX_N + 1, k=1)  # large matrices: the loop either way
    assert [name for name, _ in calls] == ["dtrsm"] * 2


@pytest.mark.parametrize("batched", [False, True])
def test_a_shared_matrix_is_one_trsm_either_way(monkeypatch, batched):
    calls = []
    kernels = _cusolver_on(_cublas(calls, batched), monkeypatch)
    _solve(kernels, 1, 5, n=4, k=2)
    (name, args), = calls
    assert name == "dtrsm" and args[5:7] == (4, 10)  # the batch folded into 5 * 2 right-hand sides


def _cupyx_special(monkeypatch) -> None:
    """A stub ``cupyx.scipy.special`` whose kernels type their results as CuPy's: polygamma as CuPy writes
    it (cupyx/scipy/special/_polygamma.py: float64 for an integer order beside float32 values), gammainc
    a ufunc with float32 and float64 loops only (an int64 array and a float32 one take the float64 loop)."""
    import scipy.special

    def polygamma(n, x):
        n, x = np.broadcast_arrays(n, x)
        return np.where(n == 0, scipy.special.psi(x),
                        (-1.0) ** (n + 1) * scipy.special.gamma(n + 1.0) * scipy.special.zeta(n + 1.0, x))

    def gammainc(a, x):
        dtype = np.float32 if np.result_type(a, x) == np.float32 else np.float64
        return scipy.special.gammainc(np.asarray(a, dtype), np.asarray(x, dtype))

    special = types.ModuleType("cupyx.scipy.special")
    special.polygamma, special.gammainc = polygamma, gammainc
    cupyx = types.ModuleType("cupyx")
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.special = special
    for module in (cupyx, cupyx.scipy, special):
        monkeypatch.setitem(sys.modules, module.__name__, module)


@pytest.mark.parametrize("name, args", [("polygamma", (1, "x")), ("polygamma", ("n", "x")),
                                        ("gammainc", ("n", "x")), ("gammainc", (2.5, "x"))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_special_functions_keep_the_precision_of_their_arguments(monkeypatch, name, args, dtype):
    _cupyx_special(monkeypatch)
    values = {"x": np.array([0.5, 1.5, 4.0], dtype=dtype), "n": np.array([1, 2, 0])}
    args = [values.get(a, a) if isinstance(a, str) else a for a in args]
    on_cupy = CupyBackend(cp=types.SimpleNamespace(ndarray=np.ndarray), kernels=None, xp=None).special(name, *args)
    on_numpy = NumpyBackend().special(name, *args)
    assert on_cupy.dtype == on_numpy.dtype == dtype
    np.testing.assert_allclose(on_cupy, on_numpy, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_real_cupy_wrapper_decision():
    """With CuPy installed (never on CI): its wrapper has ?trsmBatched exactly from CuPy 14 on."""
    cupy = pytest.importorskip("cupy")
    from cupy_backends.cuda.libs import cublas

    from cupy_ad.backends import cusolver

    assert cusolver._wraps_trsm_batched(cublas) == (int(cupy.__version__.split(".")[0]) >= 14)
