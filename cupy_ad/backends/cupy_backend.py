"""CuPy backend: array_api_compat's CuPy namespace; kernels are direct cuSOLVER/cuBLAS calls.

Imported lazily (``import cupy_ad`` never imports CuPy or needs CUDA). The kernels of
:mod:`cupy_ad.backends.cusolver` work in place on column-major buffers (see its docstring); this
class turns the caller's (..., m, n) arrays into such buffers with exactly one copy, picks
A or A^T so that each routine sees the layout it needs without further copies, and turns the
results back into the conventions of the NumPy backend: SciPy's 0-based int32 pivots,
``numpy.linalg.qr`` modes, descending singular values, ascending eigenvalues, leading batch
dimensions, empty inputs. Outputs may be views with Fortran-ordered matrices (e.g. ``lu``,
``u``, ``v``): they are new arrays that share no memory with the inputs.

No host synchronisation: nothing here reads device data on the host. cuSOLVER's ``info`` is
checked only under ``cupyx.errstate(linalg="raise")`` (``numpy.linalg.LinAlgError``, as CuPy);
otherwise a failed factorisation is not reported: Cholesky of a matrix that is not positive
definite gives NaN (set on the device), and the other routines give what cuSOLVER leaves.

For tests, ``CupyBackend(cp=numpy, kernels=fake, xp=array_api_compat.numpy)`` runs this same
layout logic on NumPy with LAPACK stand-ins for the kernels (tests/test_cupy_backend.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .base import OPERATOR_UFUNC_NAMES, Backend, strided_copy


def _solver_dtype(*dtypes: Any) -> Any:
    """The LAPACK dtype for inputs of these dtypes (integers and booleans become float64)."""
    dtype = np.result_type(*[np.float64 if np.dtype(d).kind in "biu" else d for d in dtypes])
    if dtype == np.float16:
        raise TypeError("float16 is unsupported in linalg")
    if dtype.kind not in "fc":
        raise TypeError(f"linalg needs a real or complex floating dtype, got {dtype}")
    return dtype


def _real(dtype: Any) -> Any:
    return np.dtype(dtype).char.lower()


INSTALL_HINT = 'pip install "cupy-ad[cuda12]" (CUDA 12) or "cupy-ad[cuda13]" (CUDA 13)'


def import_cupy() -> Any:
    """CuPy, once a CUDA device is known to be usable: ImportError (with the install command) without
    CuPy, RuntimeError when CuPy is installed but the CUDA runtime finds no usable device."""
    try:
        import cupy
    except ImportError as exc:
        raise ImportError(f"the cupy backend needs CuPy, which could not be imported ({exc}): {INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDA's errors (no driver, driver too old) have no common base
        raise RuntimeError(
            f"CuPy is installed but no CUDA device is usable ({type(exc).__name__}: {exc}). Check the NVIDIA "
            "driver (nvidia-smi) and that the CuPy package matches its CUDA version (cupy-ad[cuda12] or "
            "cupy-ad[cuda13]), or use the numpy backend") from None
    if count < 1:
        raise RuntimeError("CuPy is installed but no CUDA device is usable: the CUDA runtime sees no GPU. "
                           "Use the numpy backend on this machine")
    return cupy


class CupyBackend(Backend):
    name = "cupy"
    host_branching = False

    def __init__(self, cp: Any = None, kernels: Any = None, xp: Any = None):
        if cp is None:
            cupy = import_cupy()
            import array_api_compat.cupy as compat_cupy

            from . import cusolver

            cp, kernels, xp = cupy, cusolver, compat_cupy
        self.cp = cp
        self.kernels = kernels
        self.xp = xp

    def to_numpy(self, x: Any) -> Any:
        return self.cp.asnumpy(x) if hasattr(self.cp, "asnumpy") else np.asarray(x)

    def may_share_memory(self, a: Any, b: Any) -> bool:
        return bool(self.cp.may_share_memory(a, b))

    def layout(self, x: Any) -> Any:
        return x.strides

    def copy_in_layout(self, x: Any) -> Any:
        return strided_copy(x, self.cp.empty, self.cp.lib.stride_tricks.as_strided)

    def from_numpy(self, a: Any) -> Any:
        return self.cp.asarray(a)

    def special(self, name: str, *args: Any) -> Any:
        """cupyx.scipy.special's kernel where CuPy has one, in the precision of the floating array arguments
        as on NumPy (CuPy's polygamma, or an integer array beside a float32 one, gives float64); else
        SciPy's through the host (a copy each way)."""
        if self.cp is not np:
            import cupyx.scipy.special

            native = getattr(cupyx.scipy.special, name, None)
            if native is not None:
                out = native(*args)
                floating = [a.dtype for a in args if hasattr(a, "dtype") and a.dtype.kind in "fc"]
                return out.astype(np.result_type(*floating), copy=False) if floating else out
        return super().special(name, *args)

    def fusible_form(self, fn: Any) -> Any:
        ufunc = getattr(self.cp, "ufunc", None)
        if fn in OPERATOR_UFUNC_NAMES:  # (the kernel a fused program traces in the operator's place)
            fn = getattr(self.cp, OPERATOR_UFUNC_NAMES[fn])
        plain = ufunc is not None and isinstance(fn, ufunc) and fn.nout == 1 and getattr(fn, "signature", None) is None
        return fn if plain else None

    def fuse(self, function: Callable) -> Callable | None:
        fuse = getattr(self.cp, "fuse", None)  # (cupy.fuse: one generated elementwise kernel per dtype signature)
        return None if fuse is None else fuse(function)

    def synchronize(self) -> None:
        if hasattr(self.cp, "cuda"):
            self.cp.cuda.get_current_stream().synchronize()

    # Buffers: exactly one copy of the input, in the layout a kernel needs.
    def _column_major(self, a: Any, dtype: Any) -> Any:
        """A new (batch, n, m) C-contiguous array holding each (m, n) matrix of ``a`` column-major."""
        *batch, m, n = a.shape
        x = self.cp.empty((*batch, n, m), dtype=dtype)
        x[...] = self.cp.swapaxes(a, -1, -2)
        return x.reshape(math.prod(batch), n, m)

    def _row_major(self, a: Any, dtype: Any) -> Any:
        """A new (batch, m, n) C-contiguous copy of ``a``: column-major, each matrix is A^T."""
        *batch, m, n = a.shape
        x = self.cp.empty((*batch, m, n), dtype=dtype)
        x[...] = a
        return x.reshape(math.prod(batch), m, n)

    def _eye(self, batch: tuple, n: int, dtype: Any) -> Any:
        out = self.cp.empty((*batch, n, n), dtype=dtype)
        out[...] = self.cp.eye(n, dtype=dtype)
        return out

    # Kernels.
    def lu_factor(self, a: Any) -> tuple[Any, Any]:
        *batch, m, n = a.shape
        k = min(m, n)
        dtype = _solver_dtype(a.dtype)
        if a.size == 0:
            return self._row_major(a, dtype).reshape(a.shape), self.cp.zeros((*batch, k), dtype=np.int32)
        x = self._column_major(a, dtype)
        ipiv, info = self.kernels.getrf(x)
        self.kernels.check_info("getrf", info)
        lu = self.cp.swapaxes(x, -1, -2).reshape(*batch, m, n)
        return lu, (ipiv - 1).reshape(*batch, k)

    def lu_pivots_to_permutation(self, piv: Any, m: int) -> Any:
        *batch, k = piv.shape
        count = math.prod(batch)
        if count == 0 or k == 0:
            out = self.cp.empty((*batch, m), dtype=np.int32)
            out[...] = self.cp.arange(m, dtype=np.int32)
            return out
        return self.kernels.pivots_to_permutation(piv.reshape(count, k), m).reshape(*batch, m)

    def qr(self, a: Any, mode: str) -> Any:
        if mode not in ("reduced", "complete", "r", "raw"):
            raise ValueError(f"unrecognised qr mode {mode!r}")
        cp = self.cp
        *batch, m, n = a.shape
        k = min(m, n)
        dtype = _solver_dtype(a.dtype)
        if a.size == 0:
            return self._qr_empty(tuple(batch), m, n, mode, dtype)
        x = self._column_major(a, dtype)  # A, m x n, column-major
        tau, info = self.kernels.geqrf(x)
        self.kernels.check_info("geqrf", info)
        if mode == "raw":  # numpy's (h, tau): h is the (n, m) transpose of LAPACK's output
            return x.reshape(*batch, n, m), tau.reshape(*batch, k)
        rows = m if mode == "complete" else k
        r = cp.triu(cp.swapaxes(x, -1, -2)[:, :rows, :])  # a new array, made before orgqr overwrites x
        if mode == "r":
            return r.reshape(*batch, rows, n)
        if mode == "complete" and m > n:
            q = cp.empty((x.shape[0], m, m), dtype=dtype)
            q[:, :n, :] = x
            info = self.kernels.orgqr(q, m, k, tau)
        else:
            q = x
            info = self.kernels.orgqr(x, k, k, tau)
        self.kernels.check_info("orgqr", info)
        cols = q.shape[1] if mode == "complete" and m > n else k
        q = cp.swapaxes(q[:, :cols, :], -1, -2)
        return q.reshape(*batch, m, cols), r.reshape(*batch, rows, n)

    def _qr_empty(self, batch: tuple, m: int, n: int, mode: str, dtype: Any) -> Any:
        cp, k = self.cp, min(m, n)
        if mode == "raw":
            return cp.zeros((*batch, n, m), dtype=dtype), cp.zeros((*batch, k), dtype=dtype)
        if mode == "r":
            return cp.zeros((*batch, k, n), dtype=dtype)
        if mode == "complete":
            return self._eye(batch, m, dtype), cp.zeros((*batch, m, n), dtype=dtype)
        return cp.zeros((*batch, m, k), dtype=dtype), cp.zeros((*batch, k, n), dtype=dtype)

    def _svd(self, a: Any, job: str) -> tuple[Any, Any, Any]:
        """(u, s, vh) with u, vh None for job "N". gesvd needs rows >= columns: for m >= n it
        factors A (a transposing copy); for m < n it factors A^T, which is the plain copy of ``a``
        read column-major, and A = conj(V_B) S U_B^T gives u = (V_B^H)^T and vh = U_B^T: these are
        exactly the kernel's column-major buffers read row-major, so no further copy is needed."""
        cp = self.cp
        *batch, m, n = a.shape
        k = min(m, n)
        dtype = _solver_dtype(a.dtype)
        if a.size == 0:
            s = cp.zeros((*batch, k), dtype=_real(dtype))
            if job == "N":
                return None, s, None
            if job == "A":
                return self._eye(tuple(batch), m, dtype), s, self._eye(tuple(batch), n, dtype)
            return cp.zeros((*batch, m, k), dtype=dtype), s, cp.zeros((*batch, k, n), dtype=dtype)
        if m >= n:
            s, ub, vtb, info = self.kernels.gesvd(self._column_major(a, dtype), job)
            u = None if ub is None else cp.swapaxes(ub, -1, -2)
            vh = None if vtb is None else cp.swapaxes(vtb, -1, -2)
        else:
            s, ub, vtb, info = self.kernels.gesvd(self._row_major(a, dtype), job)
            u, vh = vtb, ub
        self.kernels.check_info("gesvd", info)
        s = s.reshape(*batch, k)
        if job == "N":
            return None, s, None
        return u.reshape(*batch, m, u.shape[-1]), s, vh.reshape(*batch, vh.shape[-2], n)

    def svd(self, a: Any, full_matrices: bool) -> tuple[Any, Any, Any]:
        return self._svd(a, "A" if full_matrices else "S")

    def svdvals(self, a: Any) -> Any:
        return self._svd(a, "N")[1]

    def _eigh(self, a: Any, lower: bool, vectors: bool) -> tuple[Any, Any]:
        *batch, n, _ = a.shape
        dtype = _solver_dtype(a.dtype)
        if a.size == 0:
            w = self.cp.zeros((*batch, n), dtype=_real(dtype))
            return w, (self._eye(tuple(batch), n, dtype) if vectors else None)
        x = self._column_major(a, dtype)  # A itself column-major: the triangles keep their names
        w, info = self.kernels.syevd(x, lower, vectors)
        self.kernels.check_info("syevd", info)
        v = self.cp.swapaxes(x, -1, -2).reshape(*batch, n, n) if vectors else None
        return w.reshape(*batch, n), v

    def eigh(self, a: Any, lower: bool) -> tuple[Any, Any]:
        return self._eigh(a, lower, True)

    def eigvalsh(self, a: Any, lower: bool) -> Any:
        return self._eigh(a, lower, False)[0]

    def cholesky(self, a: Any, upper: bool) -> Any:
        """Always cuSOLVER's upper-triangle form (the batched routine's tested path): for the lower
        factor, the plain copy read column-major is A^T = conj(A), whose upper triangle is A's lower
        one and whose factor U' gives L = U'^T (the copy read row-major); for the upper factor, the
        transposing copy is A itself and U = U'."""
        cp = self.cp
        *batch, n, _ = a.shape
        dtype = _solver_dtype(a.dtype)
        if a.size == 0:
            return cp.zeros(a.shape, dtype=dtype)
        x = self._column_major(a, dtype) if upper else self._row_major(a, dtype)
        info = self.kernels.potrf_upper(x)
        self.kernels.check_info("potrf", info)
        factor = cp.triu(cp.swapaxes(x, -1, -2)) if upper else cp.tril(x)
        failed = (info != 0).reshape(-1, 1, 1)
        factor = cp.where(failed, np.asarray(np.nan, dtype=dtype)[()], factor)  # a host scalar: no transfer
        return factor.reshape(*batch, n, n)

    def solve_triangular(self, a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        cp = self.cp
        dtype = _solver_dtype(a.dtype, b.dtype)
        n = a.shape[-1]
        if a.ndim < 2 or a.shape[-2] != n:
            raise ValueError(f"solve_triangular needs square matrices (..., n, n), got shape {tuple(a.shape)}")
        vector = b.ndim == 1
        bm = b.reshape(b.shape[0], 1) if vector else b
        if bm.shape[-2] != n:
            raise ValueError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} are incompatible")
        batch = tuple(np.broadcast_shapes(tuple(a.shape[:-2]), tuple(bm.shape[:-2])))
        k = bm.shape[-1]
        count = math.prod(batch)
        if dtype.kind != "c" and trans == 2:
            trans = 1
        if count == 0 or n == 0 or k == 0:
            out = cp.zeros((*batch, n, k), dtype=dtype)
            return out[..., 0] if vector else out
        if math.prod(a.shape[:-2]) == 1:  # one matrix for the whole batch: fold the batch into columns
            a3 = a.reshape(1, n, n)
        else:
            a3 = cp.broadcast_to(a, (*batch, n, n)).reshape(count, n, n)
        m_buf, lower_m, trans_m = self._triangular_operand(a3, dtype, lower, trans)
        x = cp.empty((*batch, k, n), dtype=dtype)  # B column-major, one copy; the solve overwrites it
        x[...] = cp.swapaxes(bm, -1, -2)
        x = x.reshape(count, k, n)
        self.kernels.trsm(m_buf, x, lower_m, trans_m, unit_diagonal)
        out = cp.swapaxes(x, -1, -2).reshape(*batch, n, k)
        return out[..., 0] if vector else out

    def triangular_product(self, a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        """One batched matmul (cuBLAS) of the masked triangle: no host round trip, no synchronisation."""
        from .numpy_kernels import masked_triangular_product

        dtype = _solver_dtype(a.dtype, b.dtype)
        return masked_triangular_product(self.cp, a.astype(dtype, copy=False), b.astype(dtype, copy=False),
                                         left=left, lower=lower, trans=trans, unit_diagonal=unit_diagonal)

    def _triangular_operand(self, a3: Any, dtype: Any, lower: bool, trans: int) -> tuple[Any, bool, int]:
        """A column-major buffer of a matrix M and (lower, trans) for op(M) = op_trans(A), without
        a copy where possible (trsm only reads M): if ``a3``'s transpose is C-contiguous (e.g. an
        LU or Cholesky factor from this backend) M = A; otherwise M = A^T, the array read
        column-major, with the triangle and the transposition flipped; A^H needs M = A (complex)."""
        cp = self.cp
        at = cp.swapaxes(a3, -1, -2)
        if at.flags.c_contiguous and a3.dtype == dtype:
            return at, lower, trans
        if trans == 2:
            return cp.ascontiguousarray(at.astype(dtype, copy=False)), lower, 2
        return cp.ascontiguousarray(a3.astype(dtype, copy=False)), not lower, 1 - trans
