"""Eigen-decomposition (symmetric), SVD (square) and QR of stacks of small real matrices through the compiled
kernels of ``numpy_compiled_spectral`` (Numba, the optional extra ``compiled``; their algorithms are there),
with NumPy's conventions: which arrays a kernel takes, the float64 stacks it reads (float32 runs in float64
and is rounded at the end), the thread split (``numpy_threads.split_stacks``), and NumPy's LAPACK for the
matrices a kernel leaves (no convergence, nearly repeated eigenvalues, Inf or NaN in or out). Every
function returns None without Numba or for arrays it does not take, and the backend falls back.

QR: Q and R as ``numpy.linalg.qr`` (modes "reduced" and "r") gives them, to rounding, the signs included.
Why not LAPACK there: for 4096 matrices of 16 x 16 NumPy's gufunc calls geqrf and orgqr once per matrix,
each making BLAS-2 calls per column, copies every matrix into and out of Fortran order and zeroes R's
lower triangle in a pass of its own (~23 ms on one core, the kernel ~12, docs/measurements.md).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import numpy_compiled_spectral
from .numpy_threads import split_stacks

#: the largest matrix side of eigh and svd here: at 32, 4096 matrices took 34 ms against NumPy's 42, but exactly
#: repeated eigenvalues of random orthogonal similarity transforms came out split by up to 21 eps ||A||
#: (LAPACK: 15; ``linalg._clusters`` resolved 16 then, 32 now); the same bound for the SVD (repeated singular values at
#: n = 2..16: split by up to ~10 eps ||A|| in 90000 matrices, LAPACK's by up to 33)
MAX_N = 16
#: a matrix whose computed eigenvalues have neighbours closer than this many eps max|w| goes to LAPACK: at
#: n = 12..16 the QL iteration splits exactly repeated eigenvalues (Q diag(w) Q^T, w in {-2, ..., 2}) by up to
#: ~20 eps max|w| in about one matrix of 4000, beyond ``linalg._clusters.resolution``'s 16 then (the jvp took
#: the ordinary path with a 1 / gap of ~1e15), where LAPACK's syevd stays below 13 (60000 matrices each)
NEAR_REPEATED = 64
#: QL steps allowed per eigenvalue before a matrix is left to LAPACK
STEP_LIMIT = 30
#: the largest matrix side of QR here (SciPy's LAPACK calls take single matrices up to the same side:
#: ``numpy_backend.SMALL_QR_MAX``)
MAX_QR_SIDE = 32


def _run(name: str, a: Any, outputs: tuple, flags: tuple, largest_side: int) -> tuple | None:
    """(stack, outputs, failed): kernel ``name`` on a's matrices as a float64 stack (count, m, n), split over
    threads, writing the given (count, ...) float64 outputs; None without Numba, for dtypes other than
    float32/64, empty stacks and sides above ``largest_side``."""
    m, n = a.shape[-2:]
    if a.dtype not in (np.float32, np.float64) or a.size == 0 or max(m, n) > largest_side:
        return None
    kernels = numpy_compiled_spectral._kernels()  # (only now: importing Numba and loading the kernels takes ~0.5 s)
    if kernels is None:
        return None
    stack = np.ascontiguousarray(a, dtype=np.float64).reshape(-1, m, n)
    outputs = tuple(np.empty((len(stack), *shape)) for shape in outputs)
    failed = np.zeros(len(stack), dtype=np.bool_)
    kernel = kernels[name]
    split_stacks(lambda block, *out: kernel(block, *flags, *out), (stack, *outputs, failed), max(m, n),
                 len(stack) * m * n * min(m, n))
    return stack, outputs, failed


def _shaped(outputs: tuple, a: Any) -> tuple:
    """The outputs in a's dtype, with a's batch shape."""
    batch = a.shape[:-2]
    return tuple(x.astype(a.dtype, copy=False).reshape(*batch, *x.shape[1:]) for x in outputs)


def eigh(a: Any, lower: bool, limit: int = STEP_LIMIT) -> tuple[Any, Any] | None:
    """(w, v) of every real symmetric matrix of a (..., n, n), as ``numpy.linalg.eigh`` (the ``lower`` or
    upper triangle read; eigenvectors up to sign), compiled and split over threads; matrices whose QL
    iteration needs more than ``limit`` steps per eigenvalue, or whose eigenvalues come out (nearly)
    repeated (``NEAR_REPEATED``) or not finite (NaN from a rotation no test found: LAPACK decides, as for
    an overflowing input), go to ``numpy.linalg.eigh``. None without Numba, for complex or other dtypes,
    empty batches, sides above ``MAX_N`` and matrices that are not square: the caller falls back."""
    n = a.shape[-1]
    if a.ndim < 2 or a.shape[-2] != n:
        return None
    run = _run("eigh", a, ((n,), (n, n)), (lower, limit), MAX_N)
    if run is None:
        return None
    stack, (w, v), failed = run
    with np.errstate(all="ignore"):  # (a failed matrix's w is meaningless: it goes to LAPACK anyway)
        near = NEAR_REPEATED * np.finfo(np.float64).eps * np.abs(w).max(axis=-1, keepdims=True)
        failed |= np.any(np.diff(w, axis=-1) < near, axis=-1) | ~np.isfinite(w).all(axis=-1)
    if failed.any():
        w[failed], v[failed] = np.linalg.eigh(stack[failed], UPLO="L" if lower else "U")
    return _shaped((w, v), a)


def svd(a: Any, limit: int = STEP_LIMIT) -> tuple[Any, Any, Any] | None:
    """(u, s, vh) of every real square matrix of a (..., n, n), as ``numpy.linalg.svd`` (the same for
    ``full_matrices`` or not; each pair of singular vectors up to a common sign), compiled and split over
    threads; matrices the QR iteration cannot finish (a negligible diagonal entry, more than ``limit`` n
    steps) or whose singular values come out not finite go to ``numpy.linalg.svd``. None as for
    :func:`eigh`."""
    n = a.shape[-1]
    if a.ndim < 2 or a.shape[-2] != n:
        return None
    run = _run("svd", a, ((n, n), (n,), (n, n)), (limit,), MAX_N)
    if run is None:
        return None
    stack, (u, s, vh), failed = run
    failed |= ~np.isfinite(s).all(axis=-1)
    if failed.any():
        u[failed], s[failed], vh[failed] = np.linalg.svd(stack[failed])
    return _shaped((u, s, vh), a)


def qr(a: Any, mode: str) -> Any:
    """``numpy.linalg.qr(a, mode)`` for a stack of small real matrices a (..., m, n) and modes "reduced" ((q, r))
    and "r" (r), compiled and split over threads; matrices holding an Inf or a NaN, or whose R or a reflector's
    tau overflows, are NumPy's. None without Numba, for other dtypes, modes, empty stacks and sides above
    ``MAX_QR_SIDE``: the caller falls back."""
    if mode not in ("reduced", "r"):
        return None
    m, n = a.shape[-2:]
    k = min(m, n)
    want_q = mode == "reduced"
    run = _run("qr", a, ((m, k) if want_q else (0, 0), (k, n)), (want_q,), MAX_QR_SIDE)
    if run is None:
        return None
    stack, (q, r), failed = run
    if failed.any():
        redone = np.linalg.qr(stack[failed], mode=mode)
        if want_q:
            q[failed], r[failed] = redone
        else:
            r[failed] = redone
    return _shaped((q, r), a) if want_q else _shaped((r,), a)[0]
