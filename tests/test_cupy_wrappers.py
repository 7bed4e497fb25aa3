"""Our calls of CuPy's real cuSOLVER/cuBLAS wrappers and CuPy APIs, checked where CuPy imports but no GPU
is usable (skipped without CuPy; on a GPU machine, as in ci/gpu.sh, the module reruns itself in a child
process that sees no device: ``CUDA_VISIBLE_DEVICES=""``). ``ci/cupy_wrappers.sh`` builds a venv with
cupy-cuda12x and NVIDIA's CUDA library wheels and runs it there.

CuPy's Cython wrappers convert their arguments (count, C types) before they reach the CUDA runtime, and
their docstrings carry the C signature. The kernels of :mod:`cupy_ad.backends.cusolver` run here on real
CuPy arrays whose memory is host memory (CuPy's allocator swapped for the module) with the NULL handle
(a library refuses it before reading any pointer): every wrapper call must fail with a CUDA, cuBLAS or
cuSOLVER error, never a TypeError, OverflowError or AttributeError (a wrong argument count, order of
types, or a routine that this CuPy lacks), and a routine's must come from setting the handle's stream
(the kernels run on CuPy's current stream only because the wrappers set it). Each call is also bound to the wrapper's parameter names and
checked: each leading dimension equals the rows of the column-major buffer its matrix lies in, each
matrix pointer starts a member of that buffer, the routine's type prefix matches the buffer's dtype,
lwork is the size query's answer and the workspace holds that many elements, info and pivots point into
int32 buffers, batch counts match. Then the CuPy APIs the backend names (fusion of a jit run, the
pivots kernel, errstate, streams) are driven up to the missing device.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import traceback
import types
from xml.etree import ElementTree

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")
try:
    from cupy_backends.cuda.libs import cublas, cusolver
except ImportError as exc:  # CuPy without the CUDA libraries (NVIDIA's wheels or a toolkit)
    pytest.skip(f"CuPy's cuBLAS/cuSOLVER wrappers do not load: {exc}", allow_module_level=True)
from cupy_backends.cuda.api.runtime import CUDARuntimeError  # noqa: E402

from cupy_ad.backends import cusolver as kernels  # noqa: E402
from cupy_ad.backends.base import OPERATOR_UFUNC_NAMES  # noqa: E402

# CuPy's own noise without a device: Stream.__del__ after a failed creation, CuPy 13's current-stream lookup
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
DEVICE_ERRORS = (CUDARuntimeError, cublas.CUBLASError, cusolver.CUSOLVERError)
LWORK = 7  # the size queries' answer here
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def _device_usable() -> bool:
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except DEVICE_ERRORS:
        return False


DEVICE_USABLE = _device_usable()

# The one check a CuPy may legitimately skip in the child: its fusion keeps no ``_memo`` (see the test)
NO_MEMO = "fusion keeps no _memo"

if DEVICE_USABLE:
    def test_in_a_child_without_a_device(tmp_path):
        """With a GPU, the checks run in a child that sees none (host memory must never reach a kernel):
        every one of them passes there, but ``test_fusion_of_a_jit_run_compiles`` may be skipped for
        ``NO_MEMO`` (read from the child's JUnit report: a skip for another reason, a module-level skip
        included, fails this test)."""
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        report = tmp_path / "child.xml"
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                               __file__], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        cases = list(ElementTree.parse(report).iter("testcase"))
        skipped = {case.get("name"): case.find("skipped").get("message", "") for case in cases
                   if case.find("skipped") is not None}
        assert len(cases) > len(skipped), done.stdout[-2000:]
        assert all(name == "test_fusion_of_a_jit_run_compiles" and NO_MEMO in message
                   for name, message in skipped.items()), skipped


@pytest.fixture(autouse=True)
def _in_the_child_only(request):
    """With a device, every other check runs in the child of ``test_in_a_child_without_a_device`` (a
    module-level skip here skipped that test too: on a GPU machine nothing ran)."""
    if DEVICE_USABLE and request.function.__name__ != "test_in_a_child_without_a_device":
        pytest.skip("run in the child without a device (test_in_a_child_without_a_device)")


def _host_view(ptr: int, nbytes: int, dtype):
    """NumPy's view of host memory at ``ptr`` (a stand-in device array's, or a host scalar's)."""
    return np.ctypeslib.as_array((ctypes.c_ubyte * nbytes).from_address(ptr)).view(dtype)


class Buffers:
    """Every array the kernels allocate (in host memory) or are given, to find what a pointer points into."""

    def __init__(self):
        self.arrays: list = []
        self.pointer_arrays: dict = {}  # device address of a *Batched routine's pointer array -> its buffer

    def add(self, x):
        self.arrays.append(x)
        return x

    def holding(self, ptr: int):
        for x in self.arrays:
            if x.data.ptr <= ptr < x.data.ptr + max(x.nbytes, 1):
                return x
        raise AssertionError(f"pointer {ptr:#x} is in no buffer the kernel made or was given")


@pytest.fixture
def buffers(monkeypatch):
    """Host memory behind CuPy's allocator, the NULL handle, and the wrapper modules seen through
    :class:`Checked`; restored afterwards."""
    def host_memory(size):
        owner = np.zeros(max(size, 1), dtype=np.uint8)  # (kept alive by the memory object)
        return cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(owner.ctypes.data, size, owner, device_id=0), 0)

    previous = cupy.cuda.get_allocator()
    cupy.cuda.set_allocator(host_memory)
    found = Buffers()
    calls: list = []
    real_pointers = kernels._pointers

    def pointers(x):  # CuPy's arange is a kernel: the real helper must reach the device and fail there
        with pytest.raises(DEVICE_ERRORS):
            real_pointers(x)
        out = found.add(cupy.empty((x.shape[0],), dtype=cupy.uintp))
        _host_view(out.data.ptr, out.nbytes, np.uintp)[:] = list(kernels._addresses(x))
        found.pointer_arrays[out.data.ptr] = x
        return out

    allocate = cupy.empty
    namespace = {name: getattr(cupy, name) for name in dir(cupy) if not name.startswith("__")}
    namespace["empty"] = lambda *args, **kwargs: found.add(allocate(*args, **kwargs))
    monkeypatch.setattr(kernels, "cupy", types.SimpleNamespace(**namespace))
    monkeypatch.setattr(kernels, "_pointers", pointers)
    monkeypatch.setattr(kernels, "device", types.SimpleNamespace(get_cublas_handle=lambda: 0,
                                                                 get_cusolver_handle=lambda: 0))
    pointer_mode = {"mode": cublas.CUBLAS_POINTER_MODE_HOST}
    monkeypatch.setattr(kernels, "_libs", lambda: (Checked(cublas, calls, found, pointer_mode),
                                                   Checked(cusolver, calls, found, pointer_mode)))
    found.calls, found.pointer_mode = calls, pointer_mode
    try:
        yield found
    finally:
        cupy.cuda.set_allocator(previous)


def _parameters(routine) -> list[tuple[str, str]]:
    """(C type, name) of each parameter, from the signature CuPy's Cython embeds in the docstring."""
    match = re.match(r"\w+\((.*?)\)", routine.__doc__ or "")
    assert match, f"{routine.__name__}: no embedded signature"
    return [tuple(p.strip().rsplit(" ", 1)) for p in match.group(1).split(",") if p.strip()]


class Checked:
    """A real wrapper module whose routines are bound to their parameter names, checked against the
    buffers, then called: a call must fail for want of a device (or, for host-only routines such as
    createSyevjInfo, succeed). A size query then answers LWORK and getPointerMode the mode under test."""

    def __init__(self, module, calls: list, buffers: Buffers, pointer_mode: dict):
        self._module, self._calls, self._buffers, self._pointer_mode = module, calls, buffers, pointer_mode

    def __getattr__(self, name):
        value = getattr(self._module, name)  # an AttributeError here: a routine this CuPy lacks
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args):
            parameters = _parameters(value)
            assert len(args) == len(parameters), f"{name}{args}: the wrapper takes {parameters}"
            bound = {pname: arg for (_, pname), arg in zip(parameters, args)}
            if bound.get("handle") == 0:
                _check_arguments(name, bound, self._buffers)
            self._calls.append((name, bound))
            try:
                result = value(*args)
            except DEVICE_ERRORS as error:
                if "handle" in bound and name not in ("getPointerMode", "setPointerMode"):
                    _assert_sets_the_stream(name, error)
            else:
                assert bound.get("handle") is None, f"{name} ran without a device"
                return result
            if name.endswith("_bufferSize"):
                return LWORK
            if name == "getPointerMode":
                return self._pointer_mode["mode"]
            return None

        return call


def _assert_sets_the_stream(name: str, error: BaseException) -> None:
    """The wrapper failed while setting the handle's stream to CuPy's current one (cusolver.py relies on
    it: every call runs on the current stream), not in the library."""
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert isinstance(error, CUDARuntimeError) and any(
        "setStream" in frame or "get_current_stream_ptr" in frame for frame in frames), \
        f"{name} reached the library without setting the handle's stream: {type(error).__name__} {error} {frames}"


_MATRICES = {"A": "lda", "Aarray": "lda", "U": "ldu", "VT": "ldvt", "V": "ldv", "Barray": "ldb"}
_PER_MATRIX = ("devInfo", "info", "infoArray", "devIpiv", "PivotArray", "S", "W", "tau")
_PREFIX_KIND = {"s": "f4", "d": "f8", "c": "c8", "z": "c16"}


def _member(buffers: Buffers, ptr: int, what: str) -> tuple:
    """(the buffer holding ``ptr``, the index of the batch member that ``ptr`` starts)."""
    x = buffers.holding(ptr)
    offset = ptr - x.data.ptr
    assert offset % x.strides[0] == 0, f"{what} starts no member of its buffer {x.shape}"
    return x, offset // x.strides[0]


def _check_arguments(name: str, bound: dict, buffers: Buffers) -> None:
    """The arguments of one call against the buffers they point into (see the module's docstring);
    every pointer of one call (matrices, info, pivots, values) at the same batch member."""
    prefix = name[0]
    matrix, members = None, set()
    for pointer, ld in _MATRICES.items():
        ptr = bound.get(pointer)
        if not ptr:  # gesvd without vectors passes 0
            continue
        x = buffers.pointer_arrays.get(ptr)
        if x is not None:  # a *Batched routine: the device array of the members' addresses
            assert buffers.holding(ptr).dtype == np.uintp, f"{name}: {pointer} is no pointer array"
            members.add(0)
        else:
            x, member = _member(buffers, ptr, f"{name}: {pointer}")
            members.add(member)
        assert bound[ld] == x.shape[-1], f"{name}: {ld}={bound[ld]} but the buffer's rows are {x.shape}"
        assert x.dtype.str[1:] == _PREFIX_KIND[prefix], f"{name} on a {x.dtype} buffer"
        if pointer == "A" and "m" in bound:
            assert bound["m"] <= bound[ld], f"{name}: m={bound['m']} > {ld}={bound[ld]}"
        matrix = matrix if matrix is not None else x
    for array in _PER_MATRIX:
        if array not in bound:
            continue
        x, member = _member(buffers, bound[array], f"{name}: {array}")
        members.add(member)
        real = matrix.dtype.char.lower()
        expected = {"S": real, "W": real, "tau": matrix.dtype}.get(array, "i4")
        assert x.dtype == np.dtype(expected), f"{name}: {array} is in a {x.dtype} buffer"
    assert len(members) <= 1, f"{name}: its pointers are at different batch members {members}"
    if "alpha" in bound:  # host pointer mode: alpha is read on the host at call time
        dtype = np.dtype(_PREFIX_KIND[prefix])
        assert _host_view(bound["alpha"], dtype.itemsize, dtype)[0] == 1, f"{name}: alpha is not 1"
    if "lwork" in bound:
        assert bound["lwork"] == LWORK, f"{name}: lwork={bound['lwork']}, the size query said {LWORK}"
    work = bound.get("work", bound.get("Work"))
    if work is not None:
        x = buffers.holding(work)
        assert x.size >= LWORK and x.dtype == matrix.dtype, f"{name}: the workspace is not {LWORK} of {matrix.dtype}"
    for count in ("batchSize", "batchCount"):
        if count in bound:
            assert bound[count] == matrix.shape[0], f"{name}: {count}={bound[count]} for {matrix.shape}"


def _buffer(buffers: Buffers, batch: int, cols: int, rows: int, dtype):
    """A column-major buffer as the backend makes one: C-contiguous (batch, cols, rows)."""
    return buffers.add(cupy.empty((batch, cols, rows), dtype=dtype))


def _names(buffers: Buffers) -> list[str]:
    return [name for name, _ in buffers.calls]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, m, n, routine", [(1, 5, 5, "getrf"), (2, 6, 4, "getrf"), (1, 3, 7, "getrf"),
                                                  (3, 4, 4, "getrfBatched")])
def test_getrf(buffers, dtype, batch, m, n, routine):
    ipiv, info = kernels.getrf(_buffer(buffers, batch, n, m, dtype))
    assert ipiv.shape == (batch, min(m, n)) and info.shape == (batch,)
    prefix = kernels._PREFIX[np.dtype(dtype)]
    expected = [prefix + routine] if routine == "getrfBatched" else \
        [prefix + "getrf_bufferSize"] + [prefix + "getrf"] * batch
    assert _names(buffers) == expected


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, m, n", [(1, 5, 3), (2, 3, 5), (2, 4, 4)])
def test_geqrf_and_orgqr(buffers, dtype, batch, m, n):
    k = min(m, n)
    x = _buffer(buffers, batch, n, m, dtype)
    tau, info = kernels.geqrf(x)
    assert tau.shape == (batch, k) and tau.dtype == dtype
    kernels.orgqr(x, k, k, tau)  # reduced
    complete = _buffer(buffers, batch, m, m, dtype)
    kernels.orgqr(complete, m, k, tau)  # complete, m > n
    prefix = kernels._PREFIX[np.dtype(dtype)]
    orgqr = "ungqr" if prefix in "cz" else "orgqr"
    assert _names(buffers) == ([prefix + "geqrf_bufferSize"] + [prefix + "geqrf"] * batch
                               + 2 * ([prefix + orgqr + "_bufferSize"] + [prefix + orgqr] * batch))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("job", ["A", "S", "N"])
@pytest.mark.parametrize("batch, m, n", [(1, 5, 3), (2, 40, 3), (3, 5, 3), (3, 4, 4)])
def test_gesvd(buffers, dtype, job, batch, m, n):
    x = _buffer(buffers, batch, n, m, dtype)
    jacobi = batch >= 2 and m <= kernels.JACOBI_BATCHED_MAX_N
    try:
        s, u, vt, info = kernels.gesvd(x, job)
    except DEVICE_ERRORS:  # after its wrapper calls, the Jacobi path conjugates V for complex dtypes
        assert jacobi and np.dtype(dtype).kind == "c" and job != "N"
    else:
        assert s.shape == (batch, n) and s.dtype == np.dtype(dtype).char.lower()
        if job == "N":
            assert u is None and vt is None
        else:
            assert u.shape == (batch, m if job == "A" else n, m) and vt.shape == (batch, n, n)
    prefix = kernels._PREFIX[np.dtype(dtype)]
    if jacobi:
        assert _names(buffers) == ["createGesvdjInfo", "xgesvdjSetSortEig", prefix + "gesvdjBatched_bufferSize",
                                   prefix + "gesvdjBatched", "destroyGesvdjInfo"]
    else:
        assert _names(buffers) == [prefix + "gesvd_bufferSize"] + [prefix + "gesvd"] * batch
        for _, bound in buffers.calls[1:]:
            assert bound["jobu"] == bound["jobvt"] == ord(job)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("vectors", [True, False])
@pytest.mark.parametrize("batch, n", [(1, 5), (3, 4), (2, 40)])
def test_syevd(buffers, dtype, lower, vectors, batch, n):
    w, info = kernels.syevd(_buffer(buffers, batch, n, n, dtype), lower, vectors)
    assert w.shape == (batch, n) and w.dtype == np.dtype(dtype).char.lower()
    prefix = kernels._PREFIX[np.dtype(dtype)]
    routine = ("he" if prefix in "cz" else "sy") + "ev"
    if batch >= 2 and n <= kernels.JACOBI_BATCHED_MAX_N:
        assert _names(buffers) == ["createSyevjInfo", "xsyevjSetSortEig", prefix + routine + "jBatched_bufferSize",
                                   prefix + routine + "jBatched", "destroySyevjInfo"]
    else:
        assert _names(buffers) == [prefix + routine + "d_bufferSize"] + [prefix + routine + "d"] * batch
    for _, bound in buffers.calls:
        if "jobz" in bound:
            jobz = cusolver.CUSOLVER_EIG_MODE_VECTOR if vectors else cusolver.CUSOLVER_EIG_MODE_NOVECTOR
            assert bound["jobz"] == jobz
            assert bound["uplo"] == (cublas.CUBLAS_FILL_MODE_LOWER if lower else cublas.CUBLAS_FILL_MODE_UPPER)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch, n", [(1, 5), (3, 4), (2, kernels.POTRF_BATCHED_MAX_N + 1)])
def test_potrf(buffers, dtype, batch, n):
    kernels.potrf_upper(_buffer(buffers, batch, n, n, dtype))
    prefix = kernels._PREFIX[np.dtype(dtype)]
    if batch >= 2:
        expected = [prefix + "potrfBatched"] if n <= kernels.POTRF_BATCHED_MAX_N else \
            [prefix + "potrf_bufferSize"] + [prefix + "potrf"] * batch
    else:
        expected = [prefix + "potrf_bufferSize", prefix + "potrf"]
    assert _names(buffers) == expected
    assert all(bound["uplo"] == cublas.CUBLAS_FILL_MODE_UPPER for _, bound in buffers.calls)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_a, batch, n", [(1, 3, 4), (3, 3, 4), (2, 2, kernels.TRSM_BATCHED_MAX_N + 1)])
@pytest.mark.parametrize("trans", [0, 1, 2])
@pytest.mark.parametrize("mode", ["CUBLAS_POINTER_MODE_HOST", "CUBLAS_POINTER_MODE_DEVICE"])
def test_trsm(buffers, dtype, batch_a, batch, n, trans, mode):
    buffers.pointer_mode["mode"] = getattr(cublas, mode)
    k = 2
    kernels.trsm(_buffer(buffers, batch_a, n, n, dtype), _buffer(buffers, batch, k, n, dtype),
                 lower=trans != 1, trans=trans, unit_diagonal=trans == 2)
    prefix = kernels._PREFIX[np.dtype(dtype)]
    if batch_a == 1:
        solves = [prefix + "trsm"]
    elif n <= kernels.TRSM_BATCHED_MAX_N and kernels._wraps_trsm_batched(cublas):
        solves = [prefix + "trsmBatched"]
    else:
        solves = [prefix + "trsm"] * batch
    switch = [] if mode == "CUBLAS_POINTER_MODE_HOST" else ["setPointerMode"]
    assert _names(buffers) == ["getPointerMode"] + switch + solves + switch
    for name, bound in buffers.calls:
        if name == "setPointerMode":
            assert bound["mode"] in (cublas.CUBLAS_POINTER_MODE_HOST, cublas.CUBLAS_POINTER_MODE_DEVICE)
        if "trsm" in name:
            assert bound["n"] == (batch * k if batch_a == 1 else k) and bound["m"] == n
            assert bound["trans"] == (cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_C)[trans]


def test_handles_exist_and_reach_the_device():
    from cupy.cuda import device

    for get_handle in (device.get_cublas_handle, device.get_cusolver_handle):
        with pytest.raises(DEVICE_ERRORS):
            get_handle()


def test_pivots_kernel_and_check_info_reach_the_device(buffers):
    import cupyx

    piv = cupy.empty((3, 4), dtype=np.int32)
    with pytest.raises(DEVICE_ERRORS):  # the ElementwiseKernel accepts its arguments, then needs the device
        kernels.pivots_to_permutation(piv, 6)
    info = cupy.empty((3,), dtype=np.int32)
    kernels.check_info("getrf", info)  # linalg="ignore": nothing read
    with cupyx.errstate(linalg="raise"), pytest.raises(DEVICE_ERRORS):
        kernels.check_info("getrf", info)


@pytest.fixture
def nvrtc(monkeypatch):
    """Compile an ElementwiseKernel for given arguments as CuPy would, with NVRTC (a host library: only
    loading the module needs a device), for compute capability 8.0: CuPy's own headers and options, the
    source from its private code generator (``_get_elementwise_kernel_code``, CuPy 13 and 14)."""
    from cupy._core import _carray, _kernel, core
    from cupy.cuda import compiler

    monkeypatch.setattr(compiler, "_get_arch_for_options_for_nvrtc", lambda arch=None: ("-arch=compute_80", "ptx"))
    bundled = os.path.join(core._get_header_dir_path(), "cupy", "_cuda", f"cuda-{compiler._get_nvrtc_version()[0]}")
    options = core.assemble_cupy_compiler_options(()) + (("-I" + bundled,) if os.path.isdir(bundled) else ())
    header = "".join(f"#include <{name}>\n" for name in core._cupy_header_list)

    def compile_kernel(kernel, arguments: list, edit=lambda source: source):
        """``arguments``: an _ArgInfo's fields per parameter (kind, type, dtype, ndim, c_contiguous, 32-bit)."""
        ndim = max([argument[3] for argument in arguments] + [1])
        indexer = _kernel._ArgInfo(2, _carray.Indexer, None, ndim, True, True)
        infos = tuple(_kernel._ArgInfo(*argument) for argument in arguments) + (indexer,)
        source = _kernel._get_elementwise_kernel_code(infos, _kernel._TypeMap(()), kernel.params, kernel.operation,
                                                      kernel.name, kernel.preamble)
        compiler.compile_using_nvrtc(header + edit(source), options=options, arch="80")

    compile_kernel.error = compiler.CompileException
    return compile_kernel


def test_pivots_kernel_compiles(nvrtc):
    """Our one hand-written CUDA kernel (pivots_to_permutation), as CuPy generates it for its arguments."""
    from cupy._core import _scalar

    int32 = np.dtype(np.int32)
    array, scalar = (1, cupy.ndarray, int32, 1, True, True), (3, _scalar.CScalar, int32, 0, True, True)
    nvrtc(kernels._PIVOTS_TO_PERMUTATION, [array, scalar, scalar, array])
    with pytest.raises(nvrtc.error):  # (the check can fail)
        nvrtc(kernels._PIVOTS_TO_PERMUTATION, [array, scalar, scalar, array],
              lambda source: source.replace("= tmp;", ""))


def _backend():
    import array_api_compat.cupy as xp

    from cupy_ad.backends.cupy_backend import CupyBackend

    return CupyBackend(cp=cupy, kernels=kernels, xp=xp)


def test_fusion_of_a_jit_run_compiles(buffers, nvrtc, monkeypatch):
    """jit_program's fusion of a recorded run of elementwise steps (operators and array_api_compat's
    functions; two outputs, mixed dtypes): CupyBackend's fusible forms, cupy.fuse of jit_program's
    generated function traced up to the device, and the kernel CuPy generates per signature compiles."""
    import operator

    from cupy_ad.transforms import jit_program

    backend = _backend()
    xp = backend.xp
    for op in OPERATOR_UFUNC_NAMES:
        assert backend.fusible_form(op) is getattr(cupy, OPERATOR_UFUNC_NAMES[op])
    assert backend.fusible_form(xp.matmul) is None and backend.fusible_form(xp.linalg.eigh) is None
    assert backend.fusible_form(xp.sign) is None  # array_api_compat's wrapper, not a ufunc: never fused
    monkeypatch.setattr(jit_program, "backend_of", lambda x: backend)  # (CupyBackend() needs a device)
    signatures = [(np.float64, np.float64), (np.float32, np.float64), (np.complex64, np.float32)]
    first, second = (cupy.empty((4, 3), dtype=dtype) for dtype in signatures[0])
    values = [first, second, first, first, first, first]  # slot 5: a matmul's result
    steps = [(operator.mul, (0, 1), 2), (xp.tanh, (2,), 3), (operator.add, (3, 0), 4), (xp.matmul, (4, 2), 5)]
    fused = jit_program._fuse_elementwise(steps, values, output_slots={5})
    assert len(fused) == 2 and fused[1] == steps[3]  # the elementwise run, then the matmul
    kernel, inputs, outputs = fused[0]
    assert tuple(inputs) == (0, 1) and outputs == (2, 4)  # (what the matmul reads)
    for dtypes in signatures:
        with pytest.raises(DEVICE_ERRORS):
            kernel(*(cupy.empty(shape, dtype=dtype) for shape, dtype in zip([(4, 3), (3,)], dtypes)))
    memo = getattr(kernel, "_memo", None)  # CuPy's ElementwiseKernel per signature (CuPy 13 and 14)
    if memo is None:
        pytest.skip(f"CuPy {cupy.__version__}'s {NO_MEMO}: its kernels are not compiled here")
    assert len(memo) == len(signatures)
    for elementwise, _ in memo.values():
        nvrtc(elementwise, [(1, cupy.ndarray, p.dtype, 2, True, True) for p in elementwise.params[:-1]])


_LOOP_DTYPES = {"?": np.bool_, "l": np.int64, "f": np.float32, "d": np.float64, "F": np.complex64, "D": np.complex128}


def _loops(ufunc):
    """The input dtypes of the ufunc's loops whose inputs share one of the dtypes above."""
    for loop in ufunc.types:
        inputs = loop.split("->")[0]
        if len(set(inputs)) == 1 and inputs[0] in _LOOP_DTYPES:
            yield _LOOP_DTYPES[inputs[0]], len(inputs)


def test_every_fusible_form_traces_in_cupy_fuse(buffers):
    """Each elementwise function of array_api_compat's CuPy namespace that the backend lets jit fuse,
    on each of its loops (bool, int64, float32/64, complex64/128): cupy.fuse traces it (a function named
    ``fused`` as jit_program's) up to the device."""
    backend = _backend()
    fusible = {name: backend.fusible_form(getattr(backend.xp, name)) for name in dir(backend.xp)
               if not name.startswith("_")}
    fusible = {name: form for name, form in fusible.items() if form is not None}
    assert {"add", "multiply", "exp", "sin", "tanh", "sqrt", "where"} - set(fusible) == {"where"}
    for name, form in fusible.items():
        for dtype, nin in _loops(form):
            scope = {"f0": form}
            exec(f"def fused({', '.join(f'v{i}' for i in range(nin))}):\n"
                 f"    return f0({', '.join(f'v{i}' for i in range(nin))})", scope)
            with pytest.raises(DEVICE_ERRORS):
                backend.fuse(scope["fused"])(*[cupy.empty((2, 3), dtype=dtype)] * nin)


_SPECIAL = ["erf", "erfc", "erfinv", "erfcinv", "expit", "logit", "gammaln", "psi", "ndtr", "log_ndtr", "ndtri",
            "entr", "rel_entr", "xlogy", "xlog1py", "sinc", "i0", "i1", "i0e", "i1e"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_functions_take_our_arguments(buffers, dtype):
    """CupyBackend.special's native kernels (cupyx.scipy.special) accept the arguments the namespace
    passes (as scipy.special: polygamma(n, x)), up to the device; the list is cupy_ad.namespace.special's."""
    import cupyx.scipy.special

    ours = importlib.import_module("cupy_ad.namespace.special")
    assert all(hasattr(ours, name) for name in _SPECIAL + ["polygamma"])
    backend = _backend()
    x = cupy.empty((3,), dtype=dtype)
    for name in _SPECIAL:
        native = getattr(cupyx.scipy.special, name)
        with pytest.raises(DEVICE_ERRORS):
            backend.special(name, *[x] * native.nin)
    for order in (1, cupy.empty((3,), dtype=np.int64)):  # psi's derivative passes a Python int
        with pytest.raises(DEVICE_ERRORS):
            backend.special("polygamma", order, x)


def test_streams_and_the_apis_tests_and_benches_name():
    """What the backend, bench/report.py, profiling/bench_gpu.py and ci/gpu.sh name of CuPy exists
    (stream, errstate, devices, benchmark); the stream calls reach the device."""
    import cupyx
    import cupyx.profiler
    import cupyx.scipy.linalg

    for owner, names in [(cupy, "asnumpy ufunc fuse ElementwiseKernel get_default_memory_pool swapaxes triu tril"),
                         (cupy.cuda, "Device Stream get_current_stream"),
                         (cupy.cuda.runtime, "getDeviceCount getDeviceProperties runtimeGetVersion"),
                         (cupyx, "errstate geterr allow_synchronize"), (cupyx.profiler, "benchmark"),
                         (cupyx.scipy.linalg, "lu_factor solve_triangular")]:
        missing = [name for name in names.split() if not hasattr(owner, name)]
        assert not missing, f"{owner.__name__} lacks {missing}"
    with pytest.raises(DEVICE_ERRORS):
        _backend().synchronize()
    with pytest.raises(DEVICE_ERRORS):
        cupy.cuda.Stream(non_blocking=True)


def test_the_cupy_backend_without_a_device_says_what_to_check():
    from cupy_ad.backends import backend_named

    with pytest.raises(RuntimeError, match="CuPy is installed but no CUDA device is usable"):
        backend_named("cupy")


def test_bench_gpu_calls_cupys_routines_as_this_cupy_takes_them(buffers):
    """profiling/bench_gpu.py (ci/gpu.sh's step 4) compares ours with CuPy's routines on single matrices
    and batches: each CuPy call it makes must reach the device (CuPy 13's solve_triangular takes no batch)."""
    spec = importlib.util.spec_from_file_location(
        "bench_gpu", os.path.join(os.path.dirname(__file__), "..", "profiling", "bench_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench._load()
    for shape in [(16, 16), (3, 16, 16)]:
        for op in bench.OPS:
            _, theirs = bench._functions(op, len(shape) == 3)
            if theirs is not None:
                with pytest.raises(DEVICE_ERRORS):
                    theirs(cupy.empty(shape, dtype=np.float64))


def test_bench_gpu_crossover_compares_only_paths_this_cupy_has(monkeypatch):
    """The crossover rows (batched routine vs loop) name only routines this CuPy wraps: without trsmBatched
    (CuPy 13) both trsm paths would be the same loop."""
    from cupy_ad.backends import cupy_backend

    spec = importlib.util.spec_from_file_location(
        "bench_gpu", os.path.join(os.path.dirname(__file__), "..", "profiling", "bench_gpu.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench._load()
    monkeypatch.setattr(cupy_backend, "CupyBackend", lambda: None)  # (no device: nothing is run)
    monkeypatch.setattr(bench, "_inputs", lambda op, shape, dtype: (None, None))
    monkeypatch.setattr(bench, "_time", lambda fn, max_duration: 1.0)
    rows = bench.crossover(types.SimpleNamespace(crossover_sizes=[4], crossover_batch=3, max_duration=0.1))
    expected = {"getrf", "potrf", "syevd", "gesvd"} | ({"trsm"} if kernels._wraps_trsm_batched(cublas) else set())
    assert {row["kernel"] for row in rows} == expected
