"""Direct cuSOLVER / cuBLAS kernels for the CuPy backend (GPU only; imported lazily).

Buffer convention of every kernel here: a *column-major buffer* is a C-contiguous CuPy array ``x``
of shape (batch, cols, rows) whose member ``b`` holds the column-major rows x cols matrix
M[i, j] = x[b, j, i] (leading dimension = rows). Kernels work in place on the buffers they are
given: the caller (``cupy_backend.CupyBackend``) makes the one copy of the input, so the caller's
array is never written. Every call runs on CuPy's current stream (CuPy's library wrappers set the
handle's stream on each call; element-wise kernels and allocations use the current stream too),
and nothing is read back to the host: the cuSOLVER/cuBLAS status arrays (``info``) are returned
and are only inspected by :func:`check_info`, under ``cupyx.errstate(linalg="raise")``, as CuPy
does. Workspaces are sized once per call (one ``bufferSize`` query) and shared by a loop's
iterations, which is safe because the loop is ordered on one stream.

Batching rule (per call; the constants below; ``profiling/bench_gpu.py --crossover`` times both
paths so that they can be re-tuned per GPU):

* LU (getrf): cuBLAS ``getrfBatched`` for batches (>= 2) of square matrices when
  ``batch * GETRF_BATCHED_RATIO >= n * n`` (CuPy's measured heuristic, ratio 65536); otherwise one
  cuSOLVER ``getrf`` per matrix.
* Cholesky (potrf): cuSOLVER ``potrfBatched`` for batches (>= 2) with n <= POTRF_BATCHED_MAX_N,
  otherwise a loop of ``potrf``.
* eigh (syevd/heevd): ``syevjBatched``/``heevjBatched`` (Jacobi, sorted ascending) for batches (>= 2)
  with n <= 32 (cuSOLVER's limit for the batched Jacobi solver), otherwise a loop of ``syevd``.
* SVD (gesvd): ``gesvdjBatched`` (Jacobi, sorted descending) for batches (>= 2) with m, n <= 32,
  otherwise a loop of ``gesvd`` (which needs rows >= cols: the backend passes A or A^T accordingly).
* QR (geqrf + orgqr/ungqr): a loop (cuSOLVER has no batched QR).
* Triangular solves (trsm): one cuBLAS ``trsm`` when the matrix is shared by the whole batch (the
  batch is folded into the right-hand sides), ``trsmBatched`` for batches with n <= TRSM_BATCHED_MAX_N
  where CuPy wraps it (from CuPy 14 on; CuPy 13 has no ``?trsmBatched``), otherwise a loop of ``trsm``.
A loop issues one library call per matrix from Python with pointer arithmetic only: it never
synchronises with the host.
"""
from __future__ import annotations

import functools
from typing import Any

import cupy
import numpy
from cupy.cuda import device

GETRF_BATCHED_RATIO = 65536  # getrfBatched when batch * GETRF_BATCHED_RATIO >= n * n (CuPy's heuristic)
POTRF_BATCHED_MAX_N = 256
JACOBI_BATCHED_MAX_N = 32  # cuSOLVER's limit for syevjBatched and gesvdjBatched
TRSM_BATCHED_MAX_N = 128
_PREFIX = {numpy.dtype(numpy.float32): "s", numpy.dtype(numpy.float64): "d",
           numpy.dtype(numpy.complex64): "c", numpy.dtype(numpy.complex128): "z"}


@functools.lru_cache(maxsize=None)
def _libs() -> tuple[Any, Any]:
    """CuPy's cuBLAS and cuSOLVER wrapper modules (loading the CUDA libraries on first use)."""
    from cupy_backends.cuda.libs import cublas, cusolver

    return cublas, cusolver


@functools.lru_cache(maxsize=None)
def _wraps_trsm_batched(cublas: Any) -> bool:
    """Whether CuPy's cuBLAS wrapper module has ``?trsmBatched`` (CuPy >= 14), looked up once."""
    return all(hasattr(cublas, prefix + "trsmBatched") for prefix in "sdcz")


def _routine(lib: Any, dtype: Any, real_name: str, complex_name: str | None = None) -> Any:
    prefix = _PREFIX.get(numpy.dtype(dtype))
    if prefix is None:
        raise TypeError(f"cuSOLVER kernels need float32, float64, complex64 or complex128, got {dtype}")
    name = complex_name if complex_name is not None and prefix in "cz" else real_name
    return getattr(lib, prefix + name)


def _real_dtype(dtype: Any) -> Any:
    return numpy.dtype(dtype).char.lower()


def _pointers(x: Any) -> Any:
    """A device array of the addresses of the batch members of ``x`` (for the *Batched routines)."""
    start, step = x.data.ptr, x.strides[0]
    return cupy.arange(start, start + step * x.shape[0], step, dtype=cupy.uintp)


def _addresses(x: Any) -> range:
    """Host-side addresses of the batch members of ``x`` (for loops; pointer arithmetic only)."""
    start, step = x.data.ptr, x.strides[0]
    return range(start, start + step * x.shape[0], step) if step else range(start, start + 1)


def check_info(routine: str, info: Any) -> None:
    """Raise ``numpy.linalg.LinAlgError`` if any ``info`` is nonzero, only under
    ``cupyx.errstate(linalg="raise")`` (this reads ``info`` on the host: a synchronisation that the
    caller asked for). By default (linalg="ignore") it does nothing, as CuPy does."""
    import cupyx

    if cupyx.geterr()["linalg"] != "raise" or info.size == 0:
        return
    if bool((info != 0).any()):
        raise numpy.linalg.LinAlgError(
            f"Error reported by {routine} in cuSOLVER/cuBLAS: info = {cupy.asnumpy(info).tolist()}. "
            "Please refer to the cuSOLVER documentation.")


def getrf(x: Any) -> tuple[Any, Any]:
    """LU with partial pivoting of the column-major (m x n) buffer ``x`` (batch, n, m), in place.
    Returns (ipiv (batch, min(m, n)) int32, 1-based as LAPACK, info (batch,))."""
    batch, n, m = x.shape
    ipiv = cupy.empty((batch, min(m, n)), dtype=numpy.int32)
    info = cupy.empty((batch,), dtype=numpy.int32)
    cublas, cusolver = _libs()
    if m == n and batch >= 2 and batch * GETRF_BATCHED_RATIO >= n * n:
        fn = _routine(cublas, x.dtype, "getrfBatched")
        pointers = _pointers(x)
        fn(device.get_cublas_handle(), n, pointers.data.ptr, n, ipiv.data.ptr, info.data.ptr, batch)
        return ipiv, info
    handle = device.get_cusolver_handle()
    lwork = _routine(cusolver, x.dtype, "getrf_bufferSize")(handle, m, n, x.data.ptr, m)
    work = cupy.empty(max(lwork, 1), dtype=x.dtype)
    fn = _routine(cusolver, x.dtype, "getrf")
    piv_step, info_step = ipiv.strides[0], info.strides[0]
    for i, ptr in enumerate(_addresses(x)):
        fn(handle, m, n, ptr, m, work.data.ptr, ipiv.data.ptr + i * piv_step, info.data.ptr + i * info_step)
    return ipiv, info


def geqrf(x: Any) -> tuple[Any, Any]:
    """Householder QR of the column-major (m x n) buffer ``x`` (batch, n, m), in place (R above the
    diagonal, reflectors below). Returns (tau (batch, min(m, n)), info (batch,))."""
    batch, n, m = x.shape
    k = min(m, n)
    tau = cupy.empty((batch, k), dtype=x.dtype)
    info = cupy.empty((batch,), dtype=numpy.int32)
    _, cusolver = _libs()
    handle = device.get_cusolver_handle()
    lwork = _routine(cusolver, x.dtype, "geqrf_bufferSize")(handle, m, n, x.data.ptr, m)
    work = cupy.empty(max(lwork, 1), dtype=x.dtype)
    fn = _routine(cusolver, x.dtype, "geqrf")
    tau_step, info_step = tau.strides[0], info.strides[0]
    for i, ptr in enumerate(_addresses(x)):
        fn(handle, m, n, ptr, m, tau.data.ptr + i * tau_step, work.data.ptr, lwork, info.data.ptr + i * info_step)
    return tau, info


def orgqr(q: Any, ncols: int, k: int, tau: Any) -> Any:
    """Form the first ``ncols`` columns of Q from geqrf's reflectors, in place in the column-major
    buffer ``q`` (batch, >= ncols, m) [orgqr/ungqr]. Returns info (batch,)."""
    batch, _, m = q.shape
    info = cupy.empty((batch,), dtype=numpy.int32)
    _, cusolver = _libs()
    handle = device.get_cusolver_handle()
    lwork = _routine(cusolver, q.dtype, "orgqr_bufferSize", "ungqr_bufferSize")(
        handle, m, ncols, k, q.data.ptr, m, tau.data.ptr)
    work = cupy.empty(max(lwork, 1), dtype=q.dtype)
    fn = _routine(cusolver, q.dtype, "orgqr", "ungqr")
    tau_step, info_step = tau.strides[0], info.strides[0]
    for i, ptr in enumerate(_addresses(q)):
        fn(handle, m, ncols, k, ptr, m, tau.data.ptr + i * tau_step, work.data.ptr, lwork,
           info.data.ptr + i * info_step)
    return info


def gesvd(x: Any, job: str) -> tuple[Any, Any, Any, Any]:
    """SVD of the column-major (m x n) buffer ``x`` (batch, n, m) with m >= n; ``x`` is destroyed.

    ``job`` is "A" (U m x m), "S" (U m x n) or "N" (values only). Returns (s (batch, n) descending,
    u (batch, ucols, m) column-major U, vt (batch, n, n) column-major V^H, info (batch,)); u and vt
    are None for job "N". Jacobi (gesvdjBatched) for batches of small matrices, else gesvd.
    """
    batch, n, m = x.shape
    if m < n:
        raise ValueError("gesvd needs rows >= columns")
    s = cupy.empty((batch, n), dtype=_real_dtype(x.dtype))
    info = cupy.empty((batch,), dtype=numpy.int32)
    _, cusolver = _libs()
    handle = device.get_cusolver_handle()
    if batch >= 2 and m <= JACOBI_BATCHED_MAX_N:
        return _gesvdj_batched(x, job, s, info)
    ucols = m if job == "A" else n
    u = cupy.empty((batch, ucols, m), dtype=x.dtype) if job != "N" else None
    vt = cupy.empty((batch, n, n), dtype=x.dtype) if job != "N" else None
    lwork = _routine(cusolver, x.dtype, "gesvd_bufferSize")(handle, m, n)
    work = cupy.empty(max(lwork, 1), dtype=x.dtype)
    fn = _routine(cusolver, x.dtype, "gesvd")
    s_step, info_step = s.strides[0], info.strides[0]
    u_step = u.strides[0] if u is not None else 0
    vt_step = vt.strides[0] if vt is not None else 0
    u0 = u.data.ptr if u is not None else 0
    vt0 = vt.data.ptr if vt is not None else 0
    for i, ptr in enumerate(_addresses(x)):
        fn(handle, ord(job), ord(job), m, n, ptr, m, s.data.ptr + i * s_step,
           u0 + i * u_step if u0 else 0, m, vt0 + i * vt_step if vt0 else 0, n,
           work.data.ptr, lwork, 0, info.data.ptr + i * info_step)
    return s, u, vt, info


def _gesvdj_batched(x: Any, job: str, s: Any, info: Any) -> tuple[Any, Any, Any, Any]:
    batch, n, m = x.shape
    _, cusolver = _libs()
    handle = device.get_cusolver_handle()
    jobz = cusolver.CUSOLVER_EIG_MODE_NOVECTOR if job == "N" else cusolver.CUSOLVER_EIG_MODE_VECTOR
    u = cupy.empty((batch, m, m), dtype=x.dtype)  # column-major U (m x m) and V (n x n)
    v = cupy.empty((batch, n, n), dtype=x.dtype)
    params = cusolver.createGesvdjInfo()
    try:
        cusolver.xgesvdjSetSortEig(params, 1)
        lwork = _routine(cusolver, x.dtype, "gesvdjBatched_bufferSize")(
            handle, jobz, m, n, x.data.ptr, m, s.data.ptr, u.data.ptr, m, v.data.ptr, n, params, batch)
        work = cupy.empty(max(lwork, 1), dtype=x.dtype)
        _routine(cusolver, x.dtype, "gesvdjBatched")(
            handle, jobz, m, n, x.data.ptr, m, s.data.ptr, u.data.ptr, m, v.data.ptr, n, work.data.ptr,
            lwork, info.data.ptr, params, batch)
    finally:
        cusolver.destroyGesvdjInfo(params)
    if job == "N":
        return s, None, None, info
    # column-major V^H from column-major V: vt[b, j, i] = conj(V[j, i]) = conj(v[b, i, j])
    vt = v.swapaxes(-1, -2)
    vt = vt.conj() if vt.dtype.kind == "c" else vt
    return s, (u if job == "A" else u[:, :n, :]), vt, info


def syevd(x: Any, lower: bool, vectors: bool) -> tuple[Any, Any]:
    """Eigen-decomposition of the Hermitian column-major buffer ``x`` (batch, n, n) read from its
    lower (or upper) triangle, in place (eigenvectors overwrite ``x`` when ``vectors``). Returns
    (w (batch, n) ascending, info (batch,)). Jacobi (syevjBatched) for batches of n <= 32."""
    batch, n, _ = x.shape
    w = cupy.empty((batch, n), dtype=_real_dtype(x.dtype))
    info = cupy.empty((batch,), dtype=numpy.int32)
    cublas, cusolver = _libs()
    handle = device.get_cusolver_handle()
    jobz = cusolver.CUSOLVER_EIG_MODE_VECTOR if vectors else cusolver.CUSOLVER_EIG_MODE_NOVECTOR
    uplo = cublas.CUBLAS_FILL_MODE_LOWER if lower else cublas.CUBLAS_FILL_MODE_UPPER
    if batch >= 2 and n <= JACOBI_BATCHED_MAX_N:
        params = cusolver.createSyevjInfo()
        try:
            cusolver.xsyevjSetSortEig(params, 1)
            lwork = _routine(cusolver, x.dtype, "syevjBatched_bufferSize", "heevjBatched_bufferSize")(
                handle, jobz, uplo, n, x.data.ptr, n, w.data.ptr, params, batch)
            work = cupy.empty(max(lwork, 1), dtype=x.dtype)
            _routine(cusolver, x.dtype, "syevjBatched", "heevjBatched")(
                handle, jobz, uplo, n, x.data.ptr, n, w.data.ptr, work.data.ptr, lwork, info.data.ptr,
                params, batch)
        finally:
            cusolver.destroySyevjInfo(params)
        return w, info
    lwork = _routine(cusolver, x.dtype, "syevd_bufferSize", "heevd_bufferSize")(
        handle, jobz, uplo, n, x.data.ptr, n, w.data.ptr)
    work = cupy.empty(max(lwork, 1), dtype=x.dtype)
    fn = _routine(cusolver, x.dtype, "syevd", "heevd")
    w_step, info_step = w.strides[0], info.strides[0]
    for i, ptr in enumerate(_addresses(x)):
        fn(handle, jobz, uplo, n, ptr, n, w.data.ptr + i * w_step, work.data.ptr, lwork,
           info.data.ptr + i * info_step)
    return w, info


def potrf_upper(x: Any) -> Any:
    """Cholesky factor U (M = U^H U) of the column-major buffer ``x`` (batch, n, n), read from and
    written to its upper triangle, in place (the strict lower triangle is left undefined: the
    batched routine uses it as workspace). Returns info (batch,)."""
    batch, n, _ = x.shape
    info = cupy.empty((batch,), dtype=numpy.int32)
    cublas, cusolver = _libs()
    handle = device.get_cusolver_handle()
    uplo = cublas.CUBLAS_FILL_MODE_UPPER
    if batch >= 2 and n <= POTRF_BATCHED_MAX_N:
        pointers = _pointers(x)
        _routine(cusolver, x.dtype, "potrfBatched")(handle, uplo, n, pointers.data.ptr, n, info.data.ptr, batch)
        return info
    lwork = _routine(cusolver, x.dtype, "potrf_bufferSize")(handle, uplo, n, x.data.ptr, n)
    work = cupy.empty(max(lwork, 1), dtype=x.dtype)
    fn = _routine(cusolver, x.dtype, "potrf")
    info_step = info.strides[0]
    for i, ptr in enumerate(_addresses(x)):
        fn(handle, uplo, n, ptr, n, work.data.ptr, lwork, info.data.ptr + i * info_step)
    return info


def trsm(a: Any, b: Any, lower: bool, trans: int, unit_diagonal: bool) -> None:
    """Solve op(M) X = B in place in ``b``: ``a`` is the column-major buffer (batch_a, n, n) of the
    triangular M (never written), ``b`` the column-major buffer (batch, k, n) of B (n x k); op is
    identity, transpose or conjugate transpose for trans 0, 1, 2. With batch_a == 1 the matrix is
    shared and the whole batch is one solve with batch * k right-hand sides; otherwise batch_a ==
    batch."""
    batch_a, n, _ = a.shape
    batch, k, _ = b.shape
    cublas, _ = _libs()
    handle = device.get_cublas_handle()
    side = cublas.CUBLAS_SIDE_LEFT
    uplo = cublas.CUBLAS_FILL_MODE_LOWER if lower else cublas.CUBLAS_FILL_MODE_UPPER
    op = (cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_T, cublas.CUBLAS_OP_C)[trans]
    diag = cublas.CUBLAS_DIAG_UNIT if unit_diagonal else cublas.CUBLAS_DIAG_NON_UNIT
    one = numpy.ones(1, dtype=a.dtype)  # alpha, read on the host at call time (host pointer mode)
    mode = cublas.getPointerMode(handle)
    if mode != cublas.CUBLAS_POINTER_MODE_HOST:
        cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    try:
        if batch_a == 1:
            _routine(cublas, a.dtype, "trsm")(handle, side, uplo, op, diag, n, batch * k, one.ctypes.data,
                                              a.data.ptr, n, b.data.ptr, n)
        elif n <= TRSM_BATCHED_MAX_N and _wraps_trsm_batched(cublas):
            a_pointers, b_pointers = _pointers(a), _pointers(b)
            _routine(cublas, a.dtype, "trsmBatched")(handle, side, uplo, op, diag, n, k, one.ctypes.data,
                                                     a_pointers.data.ptr, n, b_pointers.data.ptr, n, batch)
        else:
            fn = _routine(cublas, a.dtype, "trsm")
            for a_ptr, b_ptr in zip(_addresses(a), _addresses(b)):
                fn(handle, side, uplo, op, diag, n, k, one.ctypes.data, a_ptr, n, b_ptr, n)
    finally:
        if mode != cublas.CUBLAS_POINTER_MODE_HOST:
            cublas.setPointerMode(handle, mode)


_PIVOTS_TO_PERMUTATION = cupy.ElementwiseKernel(
    "raw int32 piv, int32 k, int32 m", "raw int32 perm",
    """
    const long long p0 = (long long)i * k, q0 = (long long)i * m;
    for (int j = 0; j < m; ++j) perm[q0 + j] = j;
    for (int j = 0; j < k; ++j) {
        const int t = piv[p0 + j];
        if (t != j) {
            const int tmp = perm[q0 + j];
            perm[q0 + j] = perm[q0 + t];
            perm[q0 + t] = tmp;
        }
    }
    """,
    "cupy_ad_pivots_to_permutation")


def pivots_to_permutation(piv: Any, m: int) -> Any:
    """The row permutation (batch, m) int32 of 0-based getrf pivots ``piv`` (batch, k): one thread
    per matrix applies the k interchanges to an index vector (laswp on 0..m-1), on the device."""
    piv = cupy.ascontiguousarray(piv, dtype=numpy.int32)
    batch, k = piv.shape
    perm = cupy.empty((batch, m), dtype=numpy.int32)
    if batch:  # flat views: the kernel indexes them linearly
        _PIVOTS_TO_PERMUTATION(piv.reshape(-1), k, m, perm.reshape(-1), size=batch)
    return perm
