"""NumPy backend: array_api_compat's NumPy namespace; kernels from NumPy's and SciPy's LAPACK calls."""
from __future__ import annotations

import functools
import math
import operator
from typing import Any

import array_api_compat.numpy as compat_numpy
import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.special

from . import numpy_compiled, numpy_compiled_decompositions, numpy_kernels, numpy_lapack, numpy_lu_tangent
from . import numpy_threads
from .numpy_threads import split_batch
from .base import OPERATOR_UFUNC_NAMES, Backend, strided_copy


class _ScipyBlasOneThread:
    """Run SciPy's kernels with its own BLAS pool at one thread, where SciPy bundles a BLAS of its own.

    NumPy and SciPy wheels each bundle an OpenBLAS with its own thread pool. When a rule alternates a
    SciPy kernel (getrf, trsm) with a NumPy matmul, each pool's idle workers spin on the cores the
    other needs: on 2 cores a 128 x 128 trsm followed by a matmul took 9.8 ms instead of 0.15 ms.
    With SciPy's pool at one thread only NumPy's pool has workers, and nothing spins against it.
    Where both share one BLAS (conda, system builds) nothing is limited. Costs about 4 us a call.
    """

    def __init__(self) -> None:
        self._libraries: list | None = None

    def __enter__(self) -> None:
        if self._libraries is None:
            try:
                from threadpoolctl import ThreadpoolController

                controllers = ThreadpoolController().lib_controllers
            except ImportError:
                controllers = []
            self._libraries = [c for c in controllers if c.user_api == "blas" and "scipy.libs" in c.filepath]
            self._threads = [c.num_threads for c in self._libraries]
        for library in self._libraries:
            library.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        for library, threads in zip(self._libraries, self._threads):
            library.set_num_threads(threads)


_scipy_one_thread = _ScipyBlasOneThread()


def _nan_where_not_finite(a: Any, decompose: Any) -> Any:
    """``decompose(a)``, with NaN outputs for the matrices holding NaN or Inf (LAPACK's SVD and
    eigensolvers do not converge on them and NumPy raises): NaN out, never a crash."""
    bad = ~np.isfinite(a).all(axis=(-2, -1))
    if not bad.any():
        return decompose(a)
    out = decompose(np.where(bad[..., None, None], 0, a))
    parts = out if isinstance(out, tuple) else (out,)
    for part in parts:
        part[bad] = np.nan
    return out


#: From this size on eigh / SVD run syevd / gesdd on the transposed view, matrix by matrix
#: (numpy_lapack): no copies into and out of Fortran order. ms on the 2-core CI machine, NumPy vs the
#: view: n = 64 eigh 0.24 vs 0.25, SVD 0.38 vs 0.40; 128: 1.30 vs 1.00, 2.48 vs 2.33; 512 float64 SVD
#: 105 vs 94, float32 eigh 21 vs 12, SVD 59 vs 29 (NumPy's single precision is as slow as its double).
LAPACK_ON_VIEW_MIN = 128


def _per_matrix(a: Any, one: Any) -> Any:
    """``one`` applied to each matrix of the batch a (..., m, n), its outputs stacked; None if ``one``
    declines (returns None)."""
    batch = a.shape[:-2]
    if not batch:
        return one(a)
    results = [one(a[index]) for index in np.ndindex(*batch)]
    if results[0] is None:
        return None
    return tuple(np.stack(parts).reshape(*batch, *parts[0].shape) for parts in zip(*results))


#: Up to this size one matrix's QR goes to LAPACK's geqrf and orgqr / ungqr through SciPy's wrappers (two
#: calls, no thread pool at these sizes): numpy.linalg.qr adds ~7 us of Python around the same two
#: routines (16 x 16 float64 on the 2-core CI machine: 11 us against 18 us).
SMALL_QR_MAX = 32


def _small_qr(a: Any, mode: str) -> Any:
    """numpy.linalg.qr of one small matrix (modes "reduced" and "r") with two LAPACK calls."""
    geqrf, orgqr = _householder_routines(a.dtype)
    k = min(a.shape)
    factored, tau, _, _ = geqrf(a)
    r = np.triu(factored[:k])
    return r if mode == "r" else (orgqr(factored[:, :k], tau)[0], r)


@functools.lru_cache(maxsize=None)
def _householder_routines(dtype: Any) -> tuple[Any, Any]:
    names = ("geqrf", "ungqr" if np.dtype(dtype).kind == "c" else "orgqr")
    return scipy.linalg.lapack.get_lapack_funcs(names, dtype=dtype)


def _tuple_or_array(out: Any) -> Any:
    """numpy.linalg.qr's result: a plain tuple of its arrays (a namedtuple otherwise), or its one array."""
    return tuple(out) if isinstance(out, tuple) else out


_OPERATOR_UFUNCS = {op: getattr(np, name) for op, name in OPERATOR_UFUNC_NAMES.items()}


def _transpose(x: np.ndarray, /, axes: tuple) -> np.ndarray:
    return x.transpose(axes)


def _diagonal(x: np.ndarray, /, *, offset: int = 0) -> np.ndarray:
    return x.diagonal(offset, -2, -1)


_WEAK_SCALAR_UFUNCS = frozenset((np.add, np.subtract, np.multiply, np.divide))  # (not power: scalar fast paths)
_INEXACT = frozenset(map(np.dtype, ("float32", "float64", "complex64", "complex128")))
_REAL_BLAS_DTYPES = frozenset(map(np.dtype, ("float32", "float64")))  # (complex: dot and matmul differ at times)
_ndarray_dot = np.ndarray.dot
_SCALAR_TYPES = frozenset((bool, int, float, complex))  # (Python numbers: a ufunc takes them as 0-d)
_ALIGNED = 0x100  # (numpy's NPY_ARRAY_ALIGNED, and its C_ and F_CONTIGUOUS: 0x1, 0x2, in ``flags.num``)


def _dense(x: np.ndarray) -> bool:
    """Aligned and contiguous in C or F order."""
    return x.flags.num & 0x103 > _ALIGNED


def _matrix_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of a matrix and a matrix or vector, neither of one element: ``ndarray.dot`` (0.4 us at
    16 x 16 against matmul's 1 us, its gufunc machinery) where both are dense (aligned, contiguous in C or F
    order), where NumPy runs both through the same BLAS call; else matmul itself (on other strides or
    unaligned data matmul may run its own loop where dot copies for BLAS: the roundings differ). Bit for bit
    ``a @ b`` (tested over layouts, dtypes and special values). A program that knows its operands dense
    calls ``ndarray.dot`` itself."""
    if a.flags.num & 0x103 > _ALIGNED and b.flags.num & 0x103 > _ALIGNED:
        return _ndarray_dot(a, b)
    return a @ b


# Ufuncs whose every element is computed on its own and exactly (correctly rounded, a comparison, a
# selection): a block of the batch gets the whole call's values bit for bit, whatever NumPy's SIMD
# loops do at a block's ends. On complex values only the sums and signs (a complex product or
# quotient may be computed otherwise at a loop's tail).
_EXACT_UFUNCS = frozenset((np.add, np.subtract, np.multiply, np.divide, np.negative, np.positive, np.absolute,
                           np.square, np.sqrt, np.reciprocal, np.maximum, np.minimum, np.fmax, np.fmin, np.copysign,
                           np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal,
                           np.logical_and, np.logical_or, np.logical_xor, np.logical_not, np.invert, np.conjugate))
_EXACT_ON_COMPLEX = frozenset((np.add, np.subtract, np.negative, np.positive, np.conjugate))
_OPERATOR_KERNELS = {**_OPERATOR_UFUNCS, operator.gt: np.greater, operator.ge: np.greater_equal, operator.lt: np.less,
                     operator.le: np.less_equal, operator.eq: np.equal, operator.ne: np.not_equal,
                     operator.invert: np.invert, operator.matmul: np.matmul, compat_numpy.matmul: np.matmul}


def _stack_vectors(arrays: Any, axis: int = 0, **options: Any) -> np.ndarray:
    """``numpy.stack`` of dense arrays of one shape with at most one dimension above 1 (C and F contiguous
    alike) along a new first axis: their concatenation seen in that shape (4.8 us for 32 arrays of 16 x 1,
    against stack's 12.6 us: its checks and expanded views); the same values and strides (C order). Other
    axes or options: ``numpy.stack``."""
    if axis != 0 or options:
        return np.stack(arrays, axis=axis, **options)
    return np.concatenate(arrays).reshape(len(arrays), *arrays[0].shape)


def _vectors(args: list) -> bool:
    """Whether ``args`` are non-empty ndarrays of one shape and dtype with at most one dimension above 1."""
    shape = args[0].shape if args and type(args[0]) is np.ndarray else ()
    return len(shape) >= 1 and math.prod(shape) > 0 and sum(n > 1 for n in shape) <= 1 and all(
        type(a) is np.ndarray and a.shape == shape and a.dtype == args[0].dtype for a in args)


def _matrix_and_vector_or_matrix(args: list) -> bool:
    """Whether ``args`` are two ndarrays of one real BLAS dtype, a matrix and a matrix or vector (where dot is
    matmul: no stacks), as at every replay of the step (its signature fixes shapes and dtypes)."""
    if len(args) != 2 or type(args[0]) is not np.ndarray or type(args[1]) is not np.ndarray:
        return False
    a, b = args
    return a.dtype == b.dtype and a.dtype in _REAL_BLAS_DTYPES and 2 in (a.ndim, b.ndim) and max(a.ndim, b.ndim) == 2 \
        and min(a.ndim, b.ndim) >= 1


def _split_form(fn: Any, args: list) -> Any:
    """The form of a compiled program's step ``fn(*args)`` that runs on several threads
    (:class:`.numpy_threads.SplitStep`), or None: an exact elementwise ufunc, ``where`` with a boolean
    condition, or matmul of stacks of small matrices, on ndarrays and numbers, with an output of
    ``numpy_threads.MIN_SPLIT_BYTES`` or more. Asked once, at the recording (the program's shapes and
    dtypes are those of every replay): the step keeps the output's shape and dtype found here."""
    kernel = _OPERATOR_KERNELS.get(fn, fn)
    if not all(type(a) in (np.ndarray, int, float, complex, bool) or isinstance(a, np.generic) for a in args):
        return None
    arrays = [a for a in args if type(a) is np.ndarray]
    if not arrays:
        return None
    if kernel is np.matmul:
        if len(arrays) != 2 or len(args) != 2 or min(a.ndim for a in arrays) < 2:
            return None
        if args[0].shape[-1] > numpy_threads.MAX_N:  # (the inner dimension: the output's are checked below)
            return None
        shape = (*np.broadcast_shapes(args[0].shape[:-2], args[1].shape[:-2]), args[0].shape[-2], args[1].shape[-1])
    elif kernel is np.where:
        if len(args) != 3 or type(args[0]) is not np.ndarray or args[0].dtype != np.bool_:
            return None
        shape = np.broadcast_shapes(*map(np.shape, args))
    elif kernel in _EXACT_UFUNCS and len(args) == kernel.nin:
        if kernel not in _EXACT_ON_COMPLEX and any(np.iscomplexobj(a) for a in args):
            return None
        shape = np.broadcast_shapes(*map(np.shape, args))
    else:
        return None
    if len(shape) < 3 or max(shape[-2:]) > numpy_threads.MAX_N:
        return None  # (a stack of small matrices only: one large array's steps are left to NumPy)
    one = [np.zeros((1, 1) if kernel is np.matmul else (), a.dtype) if hasattr(a, "dtype") else a for a in args]
    with np.errstate(all="ignore"):
        dtype = kernel(*one).dtype  # (the output's: kernel on one element of each operand, Python numbers kept)
    if math.prod(shape) * dtype.itemsize < numpy_threads.MIN_SPLIT_BYTES:
        return None
    return numpy_threads.split_step(kernel, shape, dtype)


# array_api_compat's wrappers whose NumPy call is one ndarray method or ufunc: the same kernel without the
# wrapper's frames (a replayed program calls them thousands of times on tiny arrays), for ndarray arguments
_DIRECT = {compat_numpy.permute_dims: _transpose, compat_numpy.linalg.diagonal: _diagonal}


class NumpyBackend(Backend):
    name = "numpy"
    xp = compat_numpy

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def may_share_memory(self, a: Any, b: Any) -> bool:
        return bool(np.may_share_memory(a, b))

    def layout(self, x: Any) -> Any:
        return x.strides

    def copy_in_layout(self, x: Any) -> Any:
        return strided_copy(np.asarray(x), np.empty, np.lib.stride_tricks.as_strided)  # (a NumPy scalar: 0-d)

    def from_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def in_place_form(self, fn: Any) -> Any:
        fn = _OPERATOR_UFUNCS.get(fn, fn)  # (operators call the same ufuncs: the same kernels)
        return fn if isinstance(fn, np.ufunc) and fn.nout == 1 and fn.signature is None else None  # (not matmul)

    def replay_form(self, fn: Any, args: list, dense: bool = False) -> Any:
        if fn is operator.matmul and _matrix_and_vector_or_matrix(args) and 1 not in (args[0].size, args[1].size):
            # (an operand of one element, 1 x 1 or a 1-vector, is a scalar to dot: a product or BLAS's axpy,
            # which skips a zero factor: 0 x inf is 0 there, NaN in matmul, and -0.0 may lose its sign)
            return _ndarray_dot if dense else _matrix_product
        if fn is np.stack and dense and args and type(args[0]) in (tuple, list) and _vectors(list(args[0])):
            return _stack_vectors
        if fn is compat_numpy.linalg.outer:  # numpy.outer: the same multiply of the raveled vectors
            vectors = all(type(a) is np.ndarray and a.ndim == 1 for a in args)
            return np.multiply.outer if vectors else fn
        split = _split_form(fn, args)
        if split is not None:
            return split
        return _DIRECT.get(fn, fn) if args and type(args[0]) is np.ndarray else fn

    def replay_scalar(self, fn: Any, args: list, position: int) -> Any:
        # A Python number next to an inexact ndarray in a sum, difference, product or quotient is cast to the
        # array's dtype (NEP 50: a weak scalar); as a 0-d array of that dtype, converted once, it gives the same
        # values (one IEEE operation per element) without the conversion per call (0.52 -> 0.37 us at 16 x 1).
        # Only where the cast is exact (no overflow warning lost) and the step is not split over threads.
        c, other = args[position], args[1 - position] if len(args) == 2 else None
        if (_OPERATOR_UFUNCS.get(fn, fn) not in _WEAK_SCALAR_UFUNCS or type(c) not in (int, float)
                or type(other) is not np.ndarray or other.dtype not in _INEXACT or _split_form(fn, args) is not None):
            return c
        with np.errstate(all="ignore"):  # (an overflowing cast is not taken: the step's own warning stays)
            typed = np.asarray(c, other.dtype)
        return typed if typed.item() == c else c

    dense = staticmethod(_dense)  # (a plain function: the replay calls it, no method in between)

    def dense_result(self, fn: Any, args: list) -> bool:
        # a ufunc's one result is a new aligned array laid out as its inputs (C or F order up to 2-D: arrays of
        # at most 2 dimensions and scalars; a nested list may have more); matmul's a new C-ordered one
        if fn is operator.matmul:
            return _matrix_and_vector_or_matrix(args)
        ufunc = self.in_place_form(fn)
        return ufunc is not None and all((type(a) is np.ndarray and a.ndim <= 2) or type(a) in _SCALAR_TYPES
                                         or isinstance(a, np.generic) for a in args)

    def zeros(self, shape: tuple, dtype: Any, device: Any = None) -> Any:
        return np.zeros(shape, dtype=dtype)  # (one device, the CPU: without the wrapper's check of it)

    def unit_rows(self, rows: int, columns: int, offset: int, dtype: Any) -> Any:
        # A read-only view of one (rows + columns - 1) vector with a single one: element (i, j) is
        # ones[rows - 1 - i + j], which is 1 where i = j + offset. (A Jacobian's basis of N directions
        # costs O(N) memory, not N^2: the output alone is N^2.)
        if rows == 0 or columns == 0:  # (no entries: nothing to view)
            return np.zeros((rows, columns), dtype)
        ones = np.zeros(rows + columns - 1, dtype)
        ones[rows - 1 - offset] = 1
        item = ones.itemsize
        view = np.lib.stride_tricks.as_strided(ones[rows - 1:], shape=(rows, columns), strides=(-item, item),
                                               writeable=False)
        return view

    def writable(self, x: Any) -> Any:
        return x if x.flags.writeable else x.copy()

    def lu_factor(self, a: Any) -> tuple[Any, Any]:
        if a.size == 0:  # SciPy refuses empty batches; the factors of nothing are empty
            dtype = np.result_type(a.dtype, np.float32)
            return np.empty(a.shape, dtype), np.empty((*a.shape[:-2], min(a.shape[-2:])), np.int32)
        batched = numpy_kernels.lu_factor_batched(a)  # many small matrices: vectorised over the batch
        if batched is not None:
            return self._refactor_not_finite(a, *batched)
        factors = _per_matrix(a, numpy_lapack.getrf)  # NumPy's own (parallel) getrf, on the rules' pool
        if factors is not None:
            return factors
        with _scipy_one_thread:
            return tuple(scipy.linalg.lu_factor(a, check_finite=False))  # SciPy returns a list when batched

    def _refactor_not_finite(self, a: Any, lu: Any, piv: Any) -> tuple[Any, Any]:
        """The batched factors (lu, piv) of ``a``, where a matrix's factor holds NaN or Inf (a non-finite
        input always leaves one) replaced by that matrix's own factorisation, one call as for a single
        matrix: where NaN and Inf go depends on the pivot search and the order of the updates (LAPACK's
        i?amax passes over a NaN that is not first; OpenBLAS's getrf leaves a NaN pivot's column
        undivided), so each matrix gets the NaN/Inf pattern a loop over the batch gives it."""
        if np.isfinite(lu).all():
            return lu, piv
        for index in zip(*np.nonzero(~np.isfinite(lu).all(axis=(-2, -1)))):
            lu[index], piv[index] = self.lu_factor(a[index])
        return lu, piv

    def lu_tangent(self, f: Any, perm: Any, da: Any, axis: int | None = None) -> Any:
        """dL + dU of the square packed factor ``f`` (n, n) for the tangent ``da`` (n, n), or for a stack
        of them with the directions along ``axis`` (result (n, n, K), the directions last); see
        :mod:`.numpy_lu_tangent` (only this backend has the kernel: the rule composes solves elsewhere)."""
        return numpy_lu_tangent.lu_tangent(f, perm, da, axis)

    def lu_tangent_batch(self, f: Any, perm: Any, da: Any) -> Any:
        """dL + dU of each square packed factor of a batch f (..., n, n), permutations ``perm`` (..., n), for
        the tangent ``da`` of f's shape: compiled, one small matrix at a time in the core's cache (see
        ``numpy_compiled._lu_tangent``); None (the rule composes batched solves) for other shapes,
        larger matrices or without Numba."""
        n = f.shape[-1]
        if f.shape != da.shape or perm.shape != f.shape[:-1] or not 0 < n <= numpy_kernels.SUBSTITUTION_MAX:
            return None
        return numpy_compiled.lu_tangent_batched(f, perm, da)

    def lu_pivots_to_permutation(self, piv: Any, m: int) -> Any:
        piv = np.asarray(piv)
        k = piv.shape[-1]
        if piv.size == 0:
            return np.broadcast_to(np.arange(m, dtype=np.int32), (*piv.shape[:-1], m)).copy()
        flat = piv.reshape(-1, k)
        out = np.empty((flat.shape[0], m), dtype=np.int32)
        if flat.shape[0] > k:  # many small matrices: one vectorised swap per pivot step
            out[:] = np.arange(m, dtype=np.int32)
            rows = np.arange(flat.shape[0])
            for i in range(k):
                target = flat[:, i]
                here = out[:, i].copy()
                out[:, i] = out[rows, target]
                out[rows, target] = here
        else:  # few large matrices: plain Python swaps per matrix
            for b, row in enumerate(flat.tolist()):
                perm = list(range(m))
                for i, p in enumerate(row):
                    perm[i], perm[p] = perm[p], perm[i]
                out[b] = perm
        return out.reshape(*piv.shape[:-1], m)

    def qr(self, a: Any, mode: str) -> Any:
        m, n = a.shape[-2:]
        # gelqf/orglq on the transposed view (numpy_lapack.qr) against numpy.linalg.qr, ms on the 2-core
        # CI machine: 1024^2 float64 96 vs 117, float32 66 vs 108; 512^2 17 vs 23; 128^2 1.08 vs 1.13;
        # 64^2 and smaller: NumPy (ctypes overhead); tall float64 2000 x 300: 19 vs 16.5 (NumPy), the
        # same in float32: 12.5 vs 17.5; complex128 512^2: 44 vs 34 (NumPy), complex64 tall 65 vs 57.
        # Hence: real matrices from min(m, n) = 128 on, float64 only when m <= n.
        if a.ndim == 2 and min(m, n) >= 128 and (a.dtype == np.float32 or (a.dtype == np.float64 and m <= n)):
            out = numpy_lapack.qr(a, mode)
            if out is not None:
                return out
        if a.ndim == 2 and 0 < min(m, n) and max(m, n) <= SMALL_QR_MAX and mode != "complete" and a.dtype.char in "dD":
            return _small_qr(a, mode)
        if a.ndim > 2:  # a stack of small real matrices: compiled (see numpy_compiled_decompositions), else None
            out = numpy_compiled_decompositions.qr(a, mode)
            if out is not None:
                return out
        return split_batch(lambda x: _tuple_or_array(np.linalg.qr(x, mode=mode)), a)

    def svd(self, a: Any, full_matrices: bool) -> tuple[Any, Any, Any]:
        def decompose(x: Any) -> tuple:
            if min(x.shape[-2:]) >= LAPACK_ON_VIEW_MIN:
                out = _per_matrix(x, lambda one: numpy_lapack.svd(one, full_matrices))
            else:  # small real square matrices, one or a batch: compiled (see numpy_compiled_decompositions), else None
                out = numpy_compiled_decompositions.svd(x)
            if out is not None:
                return out
            return split_batch(lambda y: tuple(np.linalg.svd(y, full_matrices=full_matrices)), x)

        return _nan_where_not_finite(a, decompose)

    def svdvals(self, a: Any) -> Any:
        return _nan_where_not_finite(a, lambda x: split_batch(lambda y: np.linalg.svd(y, compute_uv=False), x))

    def eigh(self, a: Any, lower: bool) -> tuple[Any, Any]:
        def decompose(x: Any) -> tuple:
            if x.shape[-1] >= LAPACK_ON_VIEW_MIN:
                out = _per_matrix(x, lambda one: numpy_lapack.eigh(one, lower))
            else:  # small real matrices, one or a batch: compiled (see numpy_compiled_decompositions), else None
                out = numpy_compiled_decompositions.eigh(x, lower)
            if out is not None:
                return out
            return split_batch(lambda y: tuple(np.linalg.eigh(y, UPLO="L" if lower else "U")), x)

        return _nan_where_not_finite(a, decompose)

    def eigvalsh(self, a: Any, lower: bool) -> Any:
        return _nan_where_not_finite(
            a, lambda x: split_batch(lambda y: np.linalg.eigvalsh(y, UPLO="L" if lower else "U"), x))

    def cholesky(self, a: Any, upper: bool) -> Any:
        return split_batch(lambda x: np.linalg.cholesky(x, upper=upper), a)

    def cholesky_tangent(self, factor: Any, da: Any, *, upper: bool) -> Any:
        """The tangent of each small Cholesky factor (..., n, n) for the tangent ``da`` of its matrix (same
        shape), compiled one matrix at a time (``numpy_compiled._cholesky_tangent``); None (the rule
        composes solves and a product) for larger matrices, other shapes or without Numba."""
        if factor.shape != da.shape or not 0 < factor.shape[-1] <= numpy_kernels.SUBSTITUTION_MAX:
            return None
        return numpy_compiled.cholesky_tangent_batched(factor, da, upper)

    def qr_tangent(self, q: Any, r: Any, da: Any) -> tuple[Any, Any] | None:
        """(dQ, dR) of each small QR factor pair Q (..., m, n), R (..., n, n), n <= m <= 32, for the tangent
        ``da`` of Q's shape, compiled one matrix at a time (``numpy_compiled._qr_tangent``); None (the rule
        composes a solve and products) for larger or taller matrices (BLAS's products win from about m = 64:
        2000 x 16 0.55 ms against 0.34), other shapes or without Numba."""
        m, n = q.shape[-2:]
        small = 0 < n <= m <= numpy_kernels.SUBSTITUTION_MAX
        if not small or da.shape != q.shape or r.shape != (*q.shape[:-2], n, n):
            return None
        return numpy_compiled.qr_tangent_batched(q, r, da)

    def solve_triangular(self, a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        # NumPy's own trsm (two threads, no second pool) or a batch-vectorised substitution; else SciPy.
        if a.size == 0 or b.size == 0:  # SciPy refuses empty batches
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2] if b.ndim > 1 else ())
            return np.empty((*batch, *b.shape[-2:]) if b.ndim > 1 else (*batch, b.shape[-1]),
                            np.result_type(a.dtype, b.dtype, np.float32))
        out = numpy_kernels.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit_diagonal)
        if out is not None:
            return out
        with _scipy_one_thread:
            return scipy.linalg.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit_diagonal,
                                             check_finite=False)

    def triangular_product(self, a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        return numpy_kernels.triangular_product(a, b, left=left, lower=lower, trans=trans, unit_diagonal=unit_diagonal)

    def special(self, name: str, *args: Any) -> Any:
        out = np.asarray(getattr(scipy.special, name)(*args))
        # in the precision of the floating arguments: some of SciPy's ufuncs (gammainc, polygamma) give
        # float64 for float32 input and a Python number
        floating = [a.dtype for a in args if isinstance(a, (np.ndarray, np.generic)) and a.dtype.kind in "fc"]
        return out.astype(np.result_type(*floating), copy=False) if floating else out
