"""Fast NumPy kernels: NumPy's own BLAS trmm/trsm/gemm through ctypes, and batch-vectorised small-matrix paths.

Used by the NumPy backend: ``triangular_product`` (trmm or a masked matmul), ``solve_triangular``
(trsm, per-matrix trsm, or a substitution vectorised over the batch) and ``lu_factor_batched``
(Crout elimination vectorised over the batch); each returns None where SciPy should take over.
:class:`PointerBlas` (trsm, trmm, gemm on blocks given by address) serves ``numpy_lu_tangent``.

Why not ``scipy.linalg.blas``: NumPy and SciPy wheels each bundle an OpenBLAS with its own thread
pool, and alternating the two pools makes their idle workers spin against each other (see
``numpy_backend._ScipyBlasOneThread``), so SciPy's kernels run on one thread. On this 2-core
machine a one-thread SciPy dtrmm of 1024 x 1024 took 27.8 ms, slower than NumPy's two-thread
masked matmul (22.9 ms, twice the flops), while NumPy's own cblas_dtrmm took 10 ms and cblas_dtrsm
9.8 ms (SciPy one thread: 22.4 ms). Calling the library NumPy already uses keeps one pool busy.

The library and its cblas symbols are found at first use (threadpoolctl's view of the loaded BLAS
libraries, NumPy's ``scipy_cblas_*64_`` / ``cblas_*64_`` / ``cblas_*`` names) and checked once on a
3 x 3 product; when anything is missing (other NumPy builds: MKL, Accelerate, system BLAS)
:func:`available` is False and callers fall back to SciPy or masked matmuls.
"""
from __future__ import annotations

import ctypes
import functools
import math
from typing import Any

import numpy as np

from . import numpy_compiled

_ROW_MAJOR, _LEFT, _RIGHT, _UPPER, _LOWER = 101, 141, 142, 121, 122
_TRANS = {0: 111, 1: 112, 2: 113}
_NON_UNIT, _UNIT = 131, 132
_SCALAR = {"s": ctypes.c_float, "d": ctypes.c_double}  # scalars by value; complex ones by pointer
_PREFIX = {np.dtype(np.float32): "s", np.dtype(np.float64): "d", np.dtype(np.complex64): "c",
           np.dtype(np.complex128): "z"}
_COMPLEX_ONE = {np.dtype(t): np.ones((), t) for t in (np.complex64, np.complex128)}  # alpha, passed by pointer
_char_at, _address_of = ctypes.c_char.from_buffer, ctypes.addressof


def address(a: Any) -> int:
    """The address of ``a``'s first element: through the buffer protocol where ``a`` is a writable,
    non-empty block in C or Fortran order (0.25 us here), else ``a.ctypes.data`` (1 us: it builds an
    object per call; a small matrix's BLAS or LAPACK call needs two or three)."""
    flags = a.flags
    if flags.writeable and a.size:
        if flags.c_contiguous:
            return _address_of(_char_at(a))
        if flags.f_contiguous:
            return _address_of(_char_at(a.T))  # (the same first element, C-ordered)
    return a.ctypes.data


#: LAPACK routines looked up beside the BLAS ones (used by :mod:`numpy_lapack`).
LAPACK_ROUTINES = ("sgetrf", "dgetrf", "cgetrf", "zgetrf", "sgelqf", "dgelqf", "cgelqf", "zgelqf",
                   "sorglq", "dorglq", "cunglq", "zunglq", "ssyevd", "dsyevd", "cheevd", "zheevd",
                   "sgesdd", "dgesdd", "cgesdd", "zgesdd")


class _Library:
    def __init__(self) -> None:
        self.functions: dict[str, Any] | None = None

    def load(self) -> dict[str, Any]:
        if self.functions is None:
            self.functions = {}
            try:
                self.functions = self._find()
                if not self._works():
                    self.functions = {}
                elif not self._transposes():  # (then the LU tangent kernel takes its unblocked path)
                    self.functions = {k: v for k, v in self.functions.items() if not k.endswith("omatcopy")}
            except Exception:  # noqa: BLE001 - any failure means "not available": callers fall back
                self.functions = {}
        return self.functions

    @staticmethod
    def _find() -> dict[str, Any]:
        from threadpoolctl import ThreadpoolController

        paths = [c.filepath for c in ThreadpoolController().lib_controllers
                 if c.user_api == "blas" and "numpy" in c.filepath.replace("\\", "/").split("/")[-2]]
        for path in paths:
            lib = ctypes.CDLL(path)
            for pattern, lapack_pattern, int_type in (("scipy_cblas_{}64_", "scipy_{}_64_", ctypes.c_int64),
                                                      ("cblas_{}64_", "{}_64_", ctypes.c_int64),
                                                      ("cblas_{}", "{}_", ctypes.c_int)):
                try:
                    found = {p + op: getattr(lib, pattern.format(p + op))
                             for p in "sdcz" for op in ("trmm", "trsm", "gemm")}
                except AttributeError:
                    continue
                for name, function in found.items():
                    # scalars (alpha, gemm's beta) by value for real types, by pointer for complex ones
                    scalar = _SCALAR.get(name[0], ctypes.c_void_p)
                    matrix = [ctypes.c_void_p, int_type]
                    function.argtypes = ([ctypes.c_int] * 3 + [int_type] * 3 + [scalar] + matrix * 2 + [scalar] + matrix
                                         if name.endswith("gemm") else
                                         [ctypes.c_int] * 5 + [int_type] * 2 + [scalar] + matrix * 2)
                    function.restype = None
                for prefix in "sdcz":  # OpenBLAS's out-of-place transpose (an extension: optional)
                    function = getattr(lib, pattern.format(prefix + "omatcopy"), None)
                    if function is not None:
                        alpha, matrix = _SCALAR.get(prefix, ctypes.c_void_p), [ctypes.c_void_p, int_type]
                        function.argtypes = [ctypes.c_int] * 2 + [int_type] * 2 + [alpha] + matrix * 2
                        function.restype = None
                        found[prefix + "omatcopy"] = function
                for name in LAPACK_ROUTINES:  # Fortran LAPACK of the same library: every argument by reference
                    function = getattr(lib, lapack_pattern.format(name), None)
                    if function is not None:
                        function.restype = None
                        found[name] = function
                found["lapack_int"] = int_type
                return found
        return {}

    def _works(self) -> bool:
        a = np.arange(1.0, 10.0).reshape(3, 3)
        b = np.arange(2.0, 11.0).reshape(3, 3)
        got = call("trmm", a, b, left=True, lower=True, trans=1, unit_diagonal=False, functions=self.functions)
        return got is not None and np.array_equal(got, np.tril(a).T @ b)

    def _transposes(self) -> bool:
        """OpenBLAS's ?omatcopy (trusted by the LU tangent kernel) checked once on a 2 x 3 block."""
        if "domatcopy" not in self.functions:
            return True
        a, b = np.arange(6.0).reshape(2, 3), np.zeros((3, 2))
        PointerBlas(self.functions, np.dtype(np.float64)).transpose_copy(2, 3, a.ctypes.data, 3, b.ctypes.data, 2)
        return np.array_equal(b, a.T)


_library = _Library()


def available() -> bool:
    return bool(_library.load())


def lapack(name: str) -> tuple[Any, Any] | None:
    """(function, Fortran integer type) of LAPACK routine ``name`` (e.g. "dgetrf") in NumPy's own
    library, or None where that library or routine is not available."""
    functions = _library.load()
    return (functions[name], functions["lapack_int"]) if name in functions else None


def _row_major_view(a: Any, lower: bool, trans: int) -> tuple[Any, int, bool, int] | None:
    """(array, lda, lower, trans) describing op(tri(a)) with a row-major (unit column stride) array."""
    item = a.itemsize
    if a.strides[1] == item and a.strides[0] % item == 0 and a.strides[0] >= a.shape[1] * item:
        return a, a.strides[0] // item, lower, trans
    if a.strides[0] == item and a.strides[1] % item == 0 and a.strides[1] >= a.shape[0] * item and trans != 2:
        return a.T, a.strides[1] // item, not lower, 1 - trans  # op(A) = op'(A^T) for the transposed view
    return None


def call(op: str, a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool,
         functions: dict | None = None) -> Any:
    """op(tri(a)) b / b op(tri(a)) ("trmm") or their solves ("trsm") for 2-D a (n, n) and b, as a new
    C-contiguous array; None when NumPy's BLAS is unavailable for these dtypes (caller falls back)."""
    functions = _library.load() if functions is None else functions
    dtype = a.dtype if a.dtype == b.dtype else np.result_type(a.dtype, b.dtype)
    prefix = _PREFIX.get(dtype)
    if not functions or prefix is None or a.ndim != 2 or b.ndim != 2:
        return None
    if trans == 2 and dtype.kind != "c":
        trans = 1
    if trans != 2 and b.flags.f_contiguous and not b.flags.c_contiguous:
        # b is a transposed view: solve/multiply the transposed problem, X^T = B^T op(T)^T (sides
        # swap, op(T)^T = op'(T)), so that the copy below is a plain copy, not a transposing one.
        out = call(op, a, b.T, left=not left, lower=lower, trans=1 - trans, unit_diagonal=unit_diagonal,
                   functions=functions)
        return None if out is None else out.T
    out = b.astype(dtype, order="C", copy=True)
    _invoke(functions, op, a.astype(dtype, copy=False), out, max(out.shape[1], 1), left, lower, trans, unit_diagonal)
    return out


def call_in_place(op: str, a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> bool:
    """As :func:`call`, writing the result into ``b`` (2-D, rows of unit stride: a buffer the caller
    owns, e.g. a block of a larger one); False (``b`` untouched) when NumPy's BLAS cannot."""
    functions = _library.load()
    ldb = _leading_dimension(b)
    if not functions or b.dtype not in _PREFIX or a.dtype != b.dtype or a.ndim != 2 or ldb is None:
        return False
    if b.dtype.kind != "c" and trans == 2:
        trans = 1
    _invoke(functions, op, a, b, ldb, left, lower, trans, unit_diagonal)
    return True


class PointerBlas:
    """cblas ?trsm / ?trmm / ?gemm and OpenBLAS's ?omatcopy of one dtype on row-major blocks given by
    address and leading dimension (in items): for a caller that addresses blocks of its own C-ordered
    buffers, where a view's ``.ctypes`` and the checks of :func:`call_in_place` would cost more than a
    small block's operation. Nothing is checked: the caller owns the layouts."""

    def __init__(self, functions: dict, dtype: Any) -> None:
        prefix = _PREFIX[dtype]
        self._trsm, self._trmm, self._gemm, self._omatcopy = (functions[prefix + op]
                                                              for op in ("trsm", "trmm", "gemm", "omatcopy"))
        self.itemsize = dtype.itemsize
        if dtype.kind == "c":  # complex scalars by pointer (kept alive here)
            self._scalars = np.array([1, -1], dtype=dtype)
            self._one, self._minus_one = self._scalars.ctypes.data, self._scalars.ctypes.data + dtype.itemsize
        else:
            self._one, self._minus_one = 1.0, -1.0

    def triangular(self, op: str, *, left: bool, lower: bool, transposed: bool, unit_diagonal: bool, m: int, n: int,
                   t: int, ldt: int, b: int, ldb: int) -> None:
        """op "trmm": B = T B (left) or B T; "trsm": their solves; B (m, n) at ``b``; T the lower or upper
        triangle of the block at ``t``, transposed if asked."""
        (self._trsm if op == "trsm" else self._trmm)(
            _ROW_MAJOR, _LEFT if left else _RIGHT, _LOWER if lower else _UPPER, _TRANS[int(transposed)],
            _UNIT if unit_diagonal else _NON_UNIT, m, n, self._one, t, ldt, b, ldb)

    def subtract_product(self, m: int, n: int, k: int, a: int, lda: int, a_transposed: bool, b: int, ldb: int,
                         b_transposed: bool, c: int, ldc: int) -> None:
        """C -= A B for C (m, n), A (m, k) and B (k, n), each of A and B given by its block or its
        transpose's."""
        self._gemm(_ROW_MAJOR, _TRANS[int(a_transposed)], _TRANS[int(b_transposed)], m, n, k, self._minus_one, a, lda,
                   b, ldb, self._one, c, ldc)

    def transpose_copy(self, rows: int, cols: int, a: int, lda: int, b: int, ldb: int) -> None:
        """B = A^T (not conjugated) for A (rows, cols) at ``a`` and B (cols, rows) at ``b``; a blocked
        copy (numpy's transposing copy of a 448 x 64 float64 block: 95 us; this: 21 us)."""
        self._omatcopy(_ROW_MAJOR, _TRANS[1], rows, cols, self._one, a, lda, b, ldb)


def pointer_blas(dtype: Any) -> PointerBlas | None:
    """:class:`PointerBlas` for ``dtype``, or None where NumPy's BLAS (OpenBLAS) is unavailable for it."""
    functions = _library.load()
    dtype = np.dtype(dtype)
    return PointerBlas(functions, dtype) if dtype in _PREFIX and _PREFIX[dtype] + "omatcopy" in functions else None


def _leading_dimension(x: Any) -> int | None:
    """The row stride in items of a 2-D array whose rows have unit stride, else None."""
    item = x.itemsize
    if x.ndim != 2 or x.shape[1] > 1 and x.strides[1] != item or x.strides[0] % item or x.strides[0] < 0:
        return None
    return max(x.strides[0] // item, x.shape[1], 1)


def _invoke(functions: dict, op: str, a: Any, out: Any, ldb: int, left: bool, lower: bool, trans: int,
            unit_diagonal: bool) -> None:
    """cblas ?trmm / ?trsm of op(tri(a)) on ``out`` in place (row-major, leading dimension ``ldb``)."""
    m, n = out.shape
    if m == 0 or n == 0:
        return
    view = _row_major_view(a, lower, trans)
    a, lda, lower, trans = (np.ascontiguousarray(a), a.shape[1], lower, trans) if view is None else view
    dtype = out.dtype
    functions[_PREFIX[dtype] + op](_ROW_MAJOR, _LEFT if left else _RIGHT, _LOWER if lower else _UPPER, _TRANS[trans],
                                   _UNIT if unit_diagonal else _NON_UNIT, m, n,
                                   _COMPLEX_ONE[dtype].ctypes.data if dtype.kind == "c" else 1.0,
                                   address(a), max(lda, 1), address(out), ldb)


# Thresholds measured on the 2-core CI machine (float64, n x n right-hand sides, ms):
# - 2-D triangular products, masked matmul vs trmm: n = 16: 0.0044 vs 0.0057, 32: 0.0069 vs 0.0067,
#   64: 0.016 vs 0.010, 128: 0.056 vs 0.032. trmm from n = TRMM_MIN on (batches: one call per matrix).
# - batched solves, substitution vectorised over the batch vs one trsm call per matrix (SciPy's
#   batched solve_triangular, its own Python loop, is slower than either): 4096 matrices of n = 4:
#   0.36 vs 24.5, n = 16: 4.2 vs 26.5, n = 32: 35 vs 37; 64 matrices of n = 16: 0.10 vs 0.41.
#   Substitution for n <= SUBSTITUTION_MAX and at least SUBSTITUTION_MIN_BATCH matrices.
TRMM_MIN = 32
SUBSTITUTION_MAX = 32
SUBSTITUTION_MIN_BATCH = 16


def _triangle_parts(mod: Any, n: int, lower: bool, unit_diagonal: bool, dtype: Any) -> tuple[Any, Any]:
    """(mask of the triangle read, what fills the rest) for numpy or cupy."""
    keep = mod.tri(n, k=-1 if unit_diagonal else 0, dtype=bool)
    fill = mod.eye(n, dtype=dtype) if unit_diagonal else mod.zeros((), dtype=dtype)
    return (keep if lower else keep.T), fill


@functools.lru_cache(maxsize=64)
def _numpy_triangle(n: int, lower: bool, unit_diagonal: bool, dtype: Any) -> tuple[Any, Any]:
    """:func:`_triangle_parts` for NumPy, made once per case (read-only)."""
    keep, fill = _triangle_parts(np, n, lower, unit_diagonal, dtype)
    keep.flags.writeable = fill.flags.writeable = False
    return keep, fill


def _masked_operand(mod: Any, a: Any, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(T) as a full array: T the lower (upper) triangle of ``a``, unit diagonal if asked."""
    n = a.shape[-1]
    if mod is np and n <= 256:  # small cases are cached (large masks cost little next to the product)
        keep, fill = _numpy_triangle(n, lower, unit_diagonal, a.dtype)
    else:
        keep, fill = _triangle_parts(mod, n, lower, unit_diagonal, a.dtype)
    t = mod.where(keep, a, fill)
    if trans:
        t = mod.swapaxes(t, -1, -2)
        if trans == 2 and t.dtype.kind == "c":
            t = mod.conj(t)
    return t


def masked_triangular_product(mod: Any, a: Any, b: Any, *, left: bool, lower: bool, trans: int,
                              unit_diagonal: bool) -> Any:
    """op(T) @ b or b @ op(T) as one (batched) matmul of the masked triangle; ``mod`` is numpy or cupy."""
    t = _masked_operand(mod, a, lower, trans, unit_diagonal)
    return mod.matmul(t, b) if left else mod.matmul(b, t)


def _batch_loop(op: str, a: Any, b: Any, out_shape: tuple, dtype: Any, **params: Any) -> Any:
    """One BLAS call per matrix of the broadcast batch (large matrices: the call's cost dominates)."""
    batch = out_shape[:-2]
    a = np.broadcast_to(a, (*batch, *a.shape[-2:]))
    b = np.broadcast_to(b, (*batch, *b.shape[-2:]))
    out = np.empty(out_shape, dtype=dtype)
    for index in np.ndindex(*batch):
        result = call(op, a[index], b[index], **params)
        if result is None:
            return None
        out[index] = result
    return out


def triangular_product(a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(T) @ b (left) or b @ op(T) (right), T the lower/upper triangle of a (..., n, n); batches broadcast."""
    n = a.shape[-1]
    dtype = np.result_type(a.dtype, b.dtype)
    params = dict(left=left, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
    if n >= TRMM_MIN and dtype in _PREFIX and available():
        if a.ndim == 2 and b.ndim == 2:
            out = call("trmm", a, b, **params)
        else:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            out = _batch_loop("trmm", a, b, (*batch, *b.shape[-2:]), dtype, **params)
        if out is not None:
            return out
    out = _compiled_product(a, b, **params)
    return masked_triangular_product(np, a, b, **params) if out is None else out


def _compiled_product(a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """The product of a batch of small matrices compiled (numpy_compiled), or None: b op(T) as
    (op(T)^T b^T)^T, op(T)^T = op'(T) for trans 0 and 1 (the conjugate alone has no op)."""
    if a.ndim < 3 or a.shape[:-2] != b.shape[:-2] or a.shape[-1] > SUBSTITUTION_MAX or b.ndim < 3:
        return None
    if math.prod(a.shape[:-2]) < SUBSTITUTION_MIN_BATCH:
        return None
    if left:
        return numpy_compiled.triangular_product_batched(a, b, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
    if trans == 2 and np.result_type(a.dtype, b.dtype).kind == "c":
        return None
    out = numpy_compiled.triangular_product_batched(a, np.swapaxes(b, -1, -2), lower=lower, trans=1 - min(trans, 1),
                                                    unit_diagonal=unit_diagonal)
    return None if out is None else np.swapaxes(out, -1, -2)


def _check_diagonal(a: Any, unit_diagonal: bool) -> None:
    """LinAlgError at an exactly zero diagonal entry, as LAPACK's trtrs (SciPy's solve_triangular)."""
    if unit_diagonal or a.diagonal(0, -2, -1).all():
        return
    zero = np.diagonal(a, axis1=-2, axis2=-1) == 0
    if zero.any():
        first = int(np.argmax(zero.reshape(-1, zero.shape[-1]).any(axis=0)))
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {first}")


def _substitution(a: Any, b: Any, out_shape: tuple, dtype: Any, lower: bool, trans: int,
                  unit_diagonal: bool) -> Any:
    """op(T)^-1 b by substitution, one row of all matrices of the batch at a time."""
    m = a
    if trans:
        m = np.swapaxes(a, -1, -2)
        if trans == 2 and m.dtype.kind == "c":
            m = m.conj()
        lower = not lower
    n = a.shape[-1]
    x = np.empty(out_shape, dtype=dtype)
    for i in (range(n) if lower else range(n - 1, -1, -1)):
        done = slice(0, i) if lower else slice(i + 1, n)
        row = b[..., i, :]
        if (i if lower else n - 1 - i) > 0:
            row = row - (m[..., i:i + 1, done] @ x[..., done, :])[..., 0, :]
        x[..., i, :] = row if unit_diagonal else row / m[..., i, i, None]
    return x


def solve_triangular(a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
    """op(T)^-1 b for a (..., n, n) and b (n,) or (..., n, k) with NumPy's BLAS or a substitution
    vectorised over the batch; None where SciPy should handle the case (empty, other dtypes,
    NumPy's BLAS unavailable for large matrices)."""
    if a.ndim == 2 and b.ndim == 2 and a.dtype in _PREFIX and b.dtype in _PREFIX:  # one matrix: little Python
        _check_diagonal(a, unit_diagonal)
        return call("trsm", a, b, left=True, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
    dtype = np.result_type(a.dtype, b.dtype)
    if dtype not in _PREFIX or a.dtype not in _PREFIX or b.dtype not in _PREFIX or a.size == 0 or b.size == 0:
        return None
    if dtype.kind != "c" and trans == 2:
        trans = 1
    vector = b.ndim == 1
    bm = b[:, None] if vector else b
    batch = np.broadcast_shapes(a.shape[:-2], bm.shape[:-2]) if a.ndim > 2 or bm.ndim > 2 else ()
    out_shape = (*batch, *bm.shape[-2:])
    count = math.prod(batch)
    params = dict(left=True, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
    out = None
    if count >= SUBSTITUTION_MIN_BATCH and a.shape[-1] <= SUBSTITUTION_MAX:
        _check_diagonal(a, unit_diagonal)
        out = numpy_compiled.solve_triangular_batched(a, bm, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
        if out is None:
            out = _substitution(a, bm, out_shape, dtype, lower, trans, unit_diagonal)
    elif available():
        _check_diagonal(a, unit_diagonal)
        if count == 1:
            out = call("trsm", a.reshape(a.shape[-2:]), bm.reshape(bm.shape[-2:]), **params)
            out = None if out is None else out.reshape(out_shape)
        else:
            out = _batch_loop("trsm", a, bm, out_shape, dtype, **params)
    if out is None:
        return None
    return out[..., 0] if vector else out


# Batched getrf: SciPy's batched lu_factor is a Python loop (4096 x 16 x 16: 18-20 ms here); a Crout
# elimination vectorised over the batch takes 12 ms there but loses from n = 24 on (40 vs 28 ms),
# and costs a fixed ~0.4 ms, so it is used for many small matrices only.
CROUT_MAX = 16
CROUT_MIN_BATCH = 64


def lu_factor_batched(a: Any) -> tuple[Any, Any] | None:
    """(lu, piv) as ``scipy.linalg.lu_factor`` for many small matrices (..., m, n), or None (not worth it).

    Crout's order with partial pivoting, one column of L and one row of U per step for the whole
    batch: column j of L is a[j:, j] - a[j:, :j] a[:j, j] (the same column getf2 forms before its
    pivot search), its pivot the first entry of largest |re| + |im| (LAPACK's i?amax), then the row
    interchange of the whole rows, the row of U and the division by the pivot (skipped at a zero
    pivot, as LAPACK does). Pivots equal SciPy's except at near-ties that rounding decides; lu agrees
    to rounding (the summation order differs from OpenBLAS's: ~1e-14 relative to max |lu| at n = 16).
    An exactly zero pivot gives SciPy's LinAlgWarning.
    """
    *batch, m, n = a.shape
    count = math.prod(batch)
    if count < CROUT_MIN_BATCH or max(m, n) > CROUT_MAX or a.dtype not in _PREFIX or a.size == 0:
        return None
    compiled = numpy_compiled.lu_factor_batched(a)  # (Numba: getf2 per matrix)
    if compiled is not None:
        _warn_at_zero_pivot(compiled[0])
        return compiled
    k = min(m, n)
    lu = np.array(a, order="C", copy=True).reshape(count, m, n)
    piv = np.empty((count, k), dtype=np.int32)
    complex_ = lu.dtype.kind == "c"
    for j in range(k):
        if j:
            lu[:, j:, j:j + 1] -= lu[:, j:, :j] @ lu[:, :j, j:j + 1]
        column = lu[:, j:, j]
        size = np.abs(column.real) + np.abs(column.imag) if complex_ else np.abs(column)
        p = np.argmax(size, axis=1)
        piv[:, j] = p + j
        swap = np.nonzero(p)[0]
        if swap.size:
            rows = p[swap] + j
            here = lu[swap, j, :].copy()
            lu[swap, j, :] = lu[swap, rows, :]
            lu[swap, rows, :] = here
        if j and j + 1 < n:
            lu[:, j:j + 1, j + 1:] -= lu[:, j:j + 1, :j] @ lu[:, :j, j + 1:]
        if j + 1 < m:
            pivot = lu[:, j, j]
            lu[:, j + 1:, j] /= np.where(pivot != 0, pivot, 1)[:, None]
    _warn_at_zero_pivot(lu)
    return lu.reshape(*batch, m, n), piv.reshape(*batch, k)


def _warn_at_zero_pivot(lu: Any) -> None:
    """SciPy's LinAlgWarning at an exactly zero pivot of any matrix of the batch."""
    zero = np.diagonal(lu, axis1=-2, axis2=-1) == 0
    if zero.any():
        from scipy.linalg import LinAlgWarning
        import warnings

        first = int(np.argmax(zero.reshape(-1, zero.shape[-1]).any(axis=0))) + 1
        warnings.warn(f"Diagonal number {first} is exactly zero. Singular matrix.", LinAlgWarning, stacklevel=4)
