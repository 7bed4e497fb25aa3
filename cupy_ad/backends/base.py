"""The interface every backend offers."""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Callable

import numpy

#: The ufuncs (by name) that the arithmetic operators of NumPy and CuPy arrays call: a compiled
#: program's buffer reuse and fusion treat an operator as its ufunc (the same kernel).
OPERATOR_UFUNC_NAMES = {operator.add: "add", operator.sub: "subtract", operator.mul: "multiply",
                        operator.truediv: "true_divide", operator.neg: "negative"}


def strided_copy(x: Any, empty: Callable, as_strided: Callable) -> Any:
    """A copy of the NumPy or CuPy array ``x`` with x's strides (their order, signs and gaps: its buffer spans
    what x's entries do); the entries of a broadcast axis (stride 0) each their own, outermost; where other
    entries may share memory (sliding_window_view's), a copy in C order: a write into one entry reaches no other."""
    itemsize = x.itemsize
    if x.flags.c_contiguous or x.size == 0 or any(s % itemsize for s in x.strides):
        return x.copy()
    steps = [s // itemsize for s in x.strides]
    if _entries_may_share_memory(steps, x.shape):
        return x.copy()
    first = sum(s * (n - 1) for s, n in zip(steps, x.shape) if s < 0)  # the lowest entry's offset from x's first
    span = sum(abs(s) * (n - 1) for s, n in zip(steps, x.shape)) + 1
    for k, n in enumerate(x.shape):
        if steps[k] == 0 and n > 1:
            steps[k], span = span, span * n
    out = as_strided(empty(span, dtype=x.dtype)[-first:], x.shape, tuple(s * itemsize for s in steps))
    out[...] = x
    return out


def _entries_may_share_memory(steps: list, shape: tuple) -> bool:
    """Whether two entries of a layout (``steps`` in items; a broadcast axis's 0 aside) lie in one place: yes where
    they outnumber the places they span (sliding_window_view's); no where each axis, by increasing step, steps past
    all the entries that the axes below it reach; else their places are marked and counted (axes that interleave,
    as as_strided's may, can still keep them apart; signs aside, which move no two entries together)."""
    axes = sorted((abs(s), n) for s, n in zip(steps, shape) if s and n > 1)
    entries, places = math.prod(n for _, n in axes), sum(step * (n - 1) for step, n in axes) + 1
    if entries > places:
        return True
    reach = 0
    for step, n in axes:
        if step <= reach:
            marks = numpy.zeros(places, dtype=bool)  # a byte per place: fewer marked than entries where two share
            numpy.lib.stride_tricks.as_strided(marks, [n for _, n in axes], [step for step, _ in axes])[...] = True
            return numpy.count_nonzero(marks) < entries
        reach += step * (n - 1)
    return False


class Backend:
    """One array library: its array-API namespace and the kernels the standard lacks.

    Subclasses set ``name`` and ``xp`` and implement ``to_numpy``/``from_numpy``. The kernels
    below run on NumPy through ``to_numpy``/``from_numpy`` (the generic path) unless a subclass
    overrides them with native calls. Every kernel accepts leading batch dimensions and never
    writes into its arguments.
    """

    name: str
    xp: Any
    #: Whether rules may read array values on the host to pick a cheaper path (NumPy: yes; CuPy never
    #: synchronises, Dask keeps its graph lazy: both run the branch-free paths).
    host_branching = True

    def to_numpy(self, x: Any) -> Any:
        raise NotImplementedError

    def from_numpy(self, a: Any) -> Any:
        raise NotImplementedError

    def may_share_memory(self, a: Any, b: Any) -> bool:
        """Whether the arrays ``a`` and ``b`` may share memory (whether a reshape returned a view or a copy);
        False where arrays have no memory of their own to share (Dask's graphs)."""
        return False

    def layout(self, x: Any) -> Any:
        """How the array ``x`` lies in memory, as far as it decides whether a reshape is a view (its strides;
        None where arrays have none)."""
        return None

    def copy_in_layout(self, x: Any) -> Any:
        """A copy of ``x`` laid out in memory as ``x`` is, where arrays have strides (``strided_copy``), so that
        a reshape of it is a view or a copy as one of ``x`` is (NumPy's rule: ``x[key] = v``, ``x += y``
        keep x's layout); here a copy in the backend's order."""
        return self.xp.asarray(x, copy=True)

    def synchronize(self) -> None:
        """Wait for queued device work (timing only; a no-op on the CPU)."""

    def via_numpy(self, kernel: str, *arrays: Any, **params: Any) -> Any:
        """Run the NumPy backend's ``kernel`` on copies of ``arrays`` and bring the results back."""
        from . import backend_named

        numpy_backend = backend_named("numpy")
        out = getattr(numpy_backend, kernel)(*(self.to_numpy(a) for a in arrays), **params)
        if isinstance(out, tuple):
            return tuple(self.from_numpy(o) for o in out)
        return self.from_numpy(out)

    def in_place_form(self, fn: Any) -> Any:
        """For a compiled program's buffer reuse: a function ``g(*args, out=buffer)`` computing ``fn(*args)``
        into ``buffer`` (an elementwise function with one output), or None."""
        return None

    def fusible_form(self, fn: Any) -> Any:
        """For a compiled program's fusion: the elementwise kernel (one output) that ``fn`` calls, in the
        form ``fuse`` can trace, or None (then ``fn`` is never fused)."""
        return None

    def fuse(self, function: Callable) -> Callable | None:
        """One kernel computing ``function`` (a chain of ``fusible_form`` calls on arrays), or None where
        the backend has no fusion (then each call stays its own kernel)."""
        return None

    def replay_form(self, fn: Any, args: list, dense: bool = False) -> Any:
        """For a compiled program: a function computing ``fn``'s result bit for bit from arguments like
        ``args`` (the recording's), called the same way, with less Python around the kernel; else ``fn``.
        ``dense``: every array among the arguments is ``dense`` at every replay (the program's own results
        that ``dense_result`` vouches for, inputs it checks on entry), which may allow a faster form."""
        return fn

    def replay_scalar(self, fn: Any, args: list, position: int) -> Any:
        """For a compiled program: the Python number ``args[position]`` (a constant of the step ``fn(*args)``)
        in a form the step computes the same result from with less work per call, or that number."""
        return args[position]

    @staticmethod
    def dense(x: Any) -> bool:
        """Whether ``x`` has the memory layout some steps have a faster form for (``replay_form``'s ``dense``):
        a compiled program checks its inputs on entry (else it runs the forms that check per call)."""
        return False

    def dense_result(self, fn: Any, args: list) -> bool:
        """Whether the result of ``fn`` on arguments like ``args`` is a new array that is ``dense`` whatever
        their memory layout."""
        return False

    def tall_skinny(self, a: Any) -> bool:
        """Whether ``a`` is one tall matrix with its rows spread out (Dask chunks), so that rules factor it
        with QR first and decompose only the small R."""
        return False

    def matrix_rule(self, name: str, rule: Any, primals: list, tangents: list, params: dict) -> tuple:
        """Run the JVP ``rule`` of decomposition ``name`` (one matrix argument); Dask runs it per block."""
        return rule(primals, tangents, **params)

    def zeros(self, shape: tuple, dtype: Any, device: Any = None) -> Any:
        """``xp.zeros(shape, dtype=dtype, device=device)`` (no device: the default)."""
        if device is None:
            return self.xp.zeros(shape, dtype=dtype)
        return self.xp.zeros(shape, dtype=dtype, device=device)

    def unit_rows(self, rows: int, columns: int, offset: int, dtype: Any) -> Any:
        """``xp.eye(rows, columns, k=-offset)``: ones where row = column + offset (a block of the standard
        basis, for ``jacfwd``); read-only (a backend may return a view of a smaller buffer)."""
        return self.xp.eye(rows, columns, k=-offset, dtype=dtype)

    def writable(self, x: Any) -> Any:
        """``x``, or a copy of it where ``x`` is a read-only view (``unit_rows``' view leaking into a
        Jacobian): a result handed to the user is an array the user may write, as eager code gives."""
        return x

    # Kernels (LAPACK names in brackets).
    def lu_factor(self, a: Any) -> tuple[Any, Any]:
        """(lu, piv) of a (..., m, n) matrix as ``scipy.linalg.lu_factor``: 0-based int32 pivots [getrf]."""
        return self.via_numpy("lu_factor", a)

    def lu_pivots_to_permutation(self, piv: Any, m: int) -> Any:
        """The row permutation ``perm`` (..., m) of getrf's 0-based pivots ``piv`` (..., k): applying the
        row interchanges i <-> piv[i] for i = 0..k-1 to the rows of an m-row matrix A gives A[perm]
        (so P A = A[..., perm, :] = L U). int32 [laswp on an index vector]."""
        return self.via_numpy("lu_pivots_to_permutation", piv, m=m)

    def qr(self, a: Any, mode: str) -> Any:
        """``(q, r)``, or ``r`` for mode "r", as ``numpy.linalg.qr`` [geqrf + orgqr/ungqr]."""
        return self.via_numpy("qr", a, mode=mode)

    def svd(self, a: Any, full_matrices: bool) -> tuple[Any, Any, Any]:
        """``(u, s, vh)`` as ``numpy.linalg.svd``, singular values descending [gesvd/gesdd]."""
        return self.via_numpy("svd", a, full_matrices=full_matrices)

    def svdvals(self, a: Any) -> Any:
        return self.via_numpy("svdvals", a)

    def eigh(self, a: Any, lower: bool) -> tuple[Any, Any]:
        """``(w, v)`` of a Hermitian matrix read from one triangle, w ascending [syevd/heevd]."""
        return self.via_numpy("eigh", a, lower=lower)

    def eigvalsh(self, a: Any, lower: bool) -> Any:
        return self.via_numpy("eigvalsh", a, lower=lower)

    def cholesky(self, a: Any, upper: bool) -> Any:
        """The Cholesky factor read from the lower (or upper) triangle [potrf]."""
        return self.via_numpy("cholesky", a, upper=upper)

    def solve_triangular(self, a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        """op(a) x = b with op = identity, transpose or conjugate transpose (trans 0, 1, 2) [trsm]."""
        return self.via_numpy("solve_triangular", a, b, lower=lower, trans=trans, unit_diagonal=unit_diagonal)

    def triangular_product(self, a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        """op(T) @ b (``left``) or b @ op(T), T the lower (upper) triangle of a (..., n, n) (its diagonal
        taken as ones when ``unit_diagonal``; the other triangle is never read), op by ``trans`` as in
        ``solve_triangular``; batch dimensions broadcast [trmm]."""
        return self.via_numpy("triangular_product", a, b, left=left, lower=lower, trans=trans,
                              unit_diagonal=unit_diagonal)

    def special(self, name: str, *args: Any) -> Any:
        """``scipy.special.<name>`` elementwise on arrays and Python scalars (here: through NumPy)."""
        from . import backend_named

        host = [a if isinstance(a, numbers.Number) else self.to_numpy(a) for a in args]
        return self.from_numpy(backend_named("numpy").special(name, *host))

    def __repr__(self) -> str:
        return f"<cupy_ad backend {self.name}>"
