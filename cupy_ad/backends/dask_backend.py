"""Dask backend: lazy task graphs over chunks of NumPy or CuPy arrays.

The namespace is array_api_compat's ``dask.array``: elementwise functions, reductions and
manipulation build Dask's own graph nodes, and nothing is computed until the user asks.
The kernels run per block through the chunk's own backend (NumPy or CuPy):

- batched matrices (leading batch axes chunked, each matrix whole in one chunk; matrix axes that
  are chunked are rechunked if one matrix fits in ``array.chunk-size``): one task per block;
- tall-skinny 2-D matrices (m >= n, rows chunked; the columns are put in one chunk): ``qr`` and ``svd``
  through Dask's TSQR (``dask.array.linalg.qr`` / ``svd``); the triangular kernels keep the tall
  operand's rows (or columns, for a left product) chunked, so the JVP rules only gather n x n pieces.

Anything else (one large matrix chunked along both axes) raises a ValueError saying what is
supported. ``host_branching`` is False: rules never read values on the host to choose a path,
so a ``jvp`` stays one lazy graph. The decompositions' rules run per block instead
(:meth:`DaskBackend.matrix_rule`): on a worker the values are there, and each block takes the
cheap path where its matrices allow (as the NumPy backend does in one process).
"""
from __future__ import annotations

import functools
import math
import types
from typing import Any, Callable

import array_api_compat.dask.array as compat_dask
import dask
import dask.array as da
import numpy as np
from dask.array.utils import meta_from_array

from .base import Backend
from .dask_tsqr import tsqr, tsqr_jvp, typed_meta

_CHUNK_LIBRARIES = ("numpy", "cupy")

SUPPORTED = ("supported: batches of matrices (chunk the leading batch axes, each matrix in one chunk) and "
             "tall-skinny qr / svd / svdvals of one 2-D matrix (m >= n, rows chunked, columns in one chunk)")


def chunk_backend(x: Any) -> Backend:
    """The backend of the chunks of the Dask array ``x`` (NumPy or CuPy); TypeError for any other."""
    meta = x._meta
    library = type(meta).__module__.split(".")[0]
    if library not in _CHUNK_LIBRARIES:
        raise TypeError(f"the dask backend runs Dask arrays of NumPy or CuPy chunks; this one has chunks of type "
                        f"{type(meta).__module__}.{type(meta).__name__}")
    from . import backend_of

    return backend_of(meta)


#: The primitives whose primal and JVP rule run on a tall-skinny matrix without gathering it.
TALL_SKINNY = ("qr", "qr_r", "svd", "svdvals")


def is_tall_skinny(a: Any) -> bool:
    """One 2-D matrix, m >= n, rows in several chunks: Dask's TSQR case (columns are put in one chunk)."""
    return a.ndim == 2 and a.shape[0] >= a.shape[1] and a.numblocks[0] > 1


def _whole(x: Any, axes: tuple[int, ...], what: str) -> Any:
    """``x`` with each of ``axes`` in one chunk (rechunked if needed: then Dask resizes the batch axes'
    chunks, and other matrix axes keep theirs)."""
    axes = tuple(ax % x.ndim for ax in axes)
    if all(len(x.chunks[ax]) == 1 for ax in axes):
        return x
    piece = math.prod(x.shape[ax] for ax in axes) * x.dtype.itemsize
    limit = dask.utils.parse_bytes(dask.config.get("array.chunk-size"))
    why = "unknown chunk sizes" if math.isnan(piece) else \
        f"one piece is {piece} bytes, over array.chunk-size = {limit}" if piece > limit else None
    if why:
        raise ValueError(f"{what} needs axes {axes} of the Dask array (shape {x.shape}, chunks {x.chunks}) in one "
                         f"chunk, and cannot rechunk them ({why}); {SUPPORTED}")
    batch_sizes = {ax: "auto" for ax in range(x.ndim - 2) if ax not in axes}  # Dask keeps blocks moderate
    return x.rechunk({**batch_sizes, **{ax: -1 for ax in axes}})


def _empty_batch(x: Any, core: int) -> np.ndarray:
    """A NumPy stand-in for ``x`` with an empty batch: (0, *core shape), to read outputs' shapes and dtypes."""
    return np.empty((0, *x.shape[x.ndim - core:]), dtype=x.dtype)


def _whole_cores(arrays: list[Any], cores: list[int], what: str) -> list[Any]:
    """``arrays`` with their last ``cores[i]`` axes each in one chunk (see :func:`_whole`)."""
    return [_whole(x, tuple(range(-core, 0)), what) for x, core in zip(arrays, cores)]


def _per_matrix(func: Callable, arrays: list[Any], cores: list[int], outputs: list[Any]) -> tuple:
    """``func`` on each block of ``arrays`` (their last ``cores[i]`` axes whole, leading batch axes
    chunked and broadcast); ``outputs`` are NumPy examples of ``func``'s outputs for an empty batch
    (a leading 0 axis), giving each output's core shape and dtype. Returns Dask arrays."""
    nbatch = max(x.ndim - core for x, core in zip(arrays, cores))
    batch = tuple(f"b{i}" for i in range(nbatch))
    pairs = []
    for i, (x, core) in enumerate(zip(arrays, cores)):
        pairs += [x, batch[nbatch - (x.ndim - core):] + tuple(f"c{i}_{j}" for j in range(core))]
    meta = arrays[0]._meta
    blocks = da.blockwise(func, batch, *pairs, concatenate=True, meta=np.empty((0,) * nbatch, dtype=object))
    results = []
    for i, example in enumerate(outputs):
        core = example.shape[1:]
        results.append(blocks.map_blocks(
            _output_of_block, i, new_axis=list(range(nbatch, nbatch + len(core))),
            chunks=blocks.chunks + tuple((c,) for c in core),
            meta=typed_meta(meta, nbatch + len(core), dtype=example.dtype)))
    return tuple(results)


def _output_of_block(outputs: tuple, i: int) -> Any:
    return outputs[i]


def _has_data(t: Any) -> bool:
    return hasattr(t, "__array_namespace__")


def _namespace_of(block: Any) -> Any:
    """The raw namespace of one block (on a worker)."""
    from . import backend_of

    return backend_of(block).xp


def _numpy_backend() -> Backend:
    from . import backend_named

    return backend_named("numpy")


def _take_along_axis(x: Any, indices: Any, /, *, axis: int = -1) -> Any:
    """The array API's take_along_axis (array_api_compat's Dask namespace lacks it): per block, with
    ``axis`` whole in both arrays and the other axes broadcast."""
    axis %= x.ndim
    backend = chunk_backend(x)
    x = _whole(x, (axis,), "take_along_axis")
    indices = _whole(indices, (axis,), "take_along_axis")
    index = [f"d{i}" for i in range(x.ndim)]
    index_x, index_i = tuple(index[:axis] + ["taken"] + index[axis + 1:]), tuple(index)
    return da.blockwise(lambda values, where: backend.xp.take_along_axis(values, where, axis=axis), index_i,
                        x, index_x, indices, index_i, concatenate=True, meta=x._meta)


def _reshape(x: Any, /, shape: tuple[int, ...], *, copy: bool | None = None) -> Any:
    """The array API's reshape, where axes that merge into one keep the first one's chunks: the later ones
    are put in one chunk first, where the blocks stay within ``array.chunk-size``. Dask's own reshape
    splits the first axis's chunks instead, to keep the blocks' size: the batch of the vmap fold (its
    examples' columns merged into one right-hand side) came back in several times as many chunks."""
    shape = tuple(shape)
    if shape.count(-1) == 1 and 0 not in shape and all(isinstance(n, int) for n in x.shape):  # (inferred size)
        shape = tuple(math.prod(x.shape) // -math.prod(shape) if n == -1 else n for n in shape)
    later = [ax for ax in _merged_later_axes(x.shape, shape) if len(x.chunks[ax]) > 1]
    if later:
        block = math.prod(n if ax in later else max(chunks) for ax, (n, chunks) in enumerate(zip(x.shape, x.chunks)))
        if block * x.dtype.itemsize <= dask.utils.parse_bytes(dask.config.get("array.chunk-size")):
            x = x.rechunk({ax: -1 for ax in later})
    return compat_dask.reshape(x, shape, copy=copy)


def _merged_later_axes(before: tuple, after: tuple) -> list[int]:
    """The axes of shape ``before`` that a reshape to ``after`` merges into an earlier axis of more than one
    entry (axes of one entry, on either side, do not count); none where sizes are unknown or zero."""
    if not all(isinstance(n, int) and n > 0 for n in before + after) or math.prod(before) != math.prod(after):
        return []
    axes = [ax for ax, n in enumerate(before) if n > 1]
    targets = [n for n in after if n > 1]
    later = []
    i = j = 0
    while i < len(axes):
        group, size, first, target = [axes[i]], before[axes[i]], j, targets[j]
        while size != target:
            if size < target:
                i += 1
                group.append(axes[i])
                size *= before[axes[i]]
            else:
                j += 1
                target *= targets[j]
        if j == first:  # the axes of group make one axis of after
            later += group[1:]
        i, j = i + 1, j + 1
    return later


def _creation_functions(chunks: Backend) -> dict[str, Callable]:
    """The array API's creation functions over Dask arrays whose chunks are ``chunks``' arrays (NumPy's, or
    CuPy's on a GPU), so that a constant never mixes another array type into a block: Dask's ``meta``
    (zeros, ones, empty, full: each block is made by the chunk library), ``like`` (arange; eye from two
    aranges), the chunk namespace's own ``asarray`` (then one chunk), and linspace converted per block.
    The ``*_like`` functions, tril and triu already follow their input's chunk type."""
    example = chunks.xp.empty((0,))

    def meta(ndim: int, dtype: Any) -> Any:
        return meta_from_array(example, ndim, dtype=dtype)

    def filled(name: str) -> Callable:
        def make(shape: Any, *args: Any, dtype: Any = None, device: Any = None) -> Any:
            plain = getattr(compat_dask, name)(shape, *args, dtype=dtype, device=device)  # (lazy: the dtype)
            return getattr(compat_dask, name)(shape, *args, dtype=plain.dtype, meta=meta(plain.ndim, plain.dtype))
        make.__name__ = name
        return make

    def arange(start: Any, /, stop: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None) -> Any:
        return compat_dask.arange(start, stop, step, dtype=dtype, device=device, like=example)

    def eye(n_rows: int, n_cols: int | None = None, /, *, k: int = 0, dtype: Any = None, device: Any = None) -> Any:
        rows = arange(n_rows)[:, None]
        cols = arange(n_rows if n_cols is None else n_cols)[None, :]
        return compat_dask.astype(cols - rows == k, compat_dask.float64 if dtype is None else dtype)

    def asarray(obj: Any, /, *, dtype: Any = None, device: Any = None, copy: bool | None = None) -> Any:
        if isinstance(obj, da.Array):
            return compat_dask.asarray(obj, dtype=dtype, device=device, copy=copy)
        value = chunks.xp.asarray(obj, dtype=dtype)
        return da.from_array(value, chunks=value.shape, asarray=False)

    def linspace(*args: Any, **kwargs: Any) -> Any:
        plain = compat_dask.linspace(*args, **kwargs)
        return plain.map_blocks(chunks.xp.asarray, meta=meta(plain.ndim, plain.dtype))

    return {"zeros": filled("zeros"), "ones": filled("ones"), "empty": filled("empty"), "full": filled("full"),
            "arange": arange, "eye": eye, "asarray": asarray, "linspace": linspace}


def dask_namespace(chunks: Backend) -> types.ModuleType:
    """array_api_compat's Dask namespace for chunks of ``chunks``' type, completed with what the array API
    has and it lacks (take_along_axis), its creation functions making chunks of that type, and a reshape
    that keeps a merged batch axis's chunks."""
    namespace = types.ModuleType(f"cupy_ad.backends.dask_backend.namespace[{chunks.name}]")
    namespace.__dict__.update({k: v for k, v in vars(compat_dask).items() if not k.startswith("__")})
    namespace.__name__ = "array_api_compat.dask.array"
    namespace.take_along_axis = _take_along_axis
    namespace.reshape = _reshape
    namespace.__dict__.update(_creation_functions(chunks))
    return namespace


def _thin_only(name: str, params: dict) -> None:
    """ValueError for the complete factors of a tall-skinny matrix (qr mode "complete", svd with
    full_matrices=True)."""
    if params.get("mode") == "complete" or params.get("full_matrices"):
        asked = "qr mode 'complete'" if name.startswith("qr") else "svd with full_matrices=True"
        raise ValueError(f"{asked} of a tall-skinny Dask array would build an m x m factor; {SUPPORTED} "
                         "(qr modes 'reduced' and 'r', svd with full_matrices=False)")


def _tall_skinny_rule(name: str, rule: Callable, a: da.Array, t: da.Array, params: dict) -> tuple:
    """The JVP of a tall-skinny qr, qr_r, svd or svdvals, streamed (see dask_tsqr): QR's rule on the
    Dask graph, then the rule ``name`` on R (n x n) for svd (U = Q U_R) and svdvals."""
    _thin_only(name, params)
    a = _whole(a, (1,), name)
    small = None if name in ("qr", "qr_r") else functools.partial(_as_tuples, rule, params)
    outs, douts = tsqr_jvp(a, t.rechunk(a.chunks), need_q=name in ("qr", "svd"), small=small)
    return (outs, douts) if len(outs) > 1 else (outs[0], douts[0])


def _as_tuples(rule: Callable, params: dict, primals: list, tangents: list) -> tuple[tuple, tuple]:
    """A JVP rule's (outputs, tangents), each a tuple even for one output."""
    out, dout = rule(primals, tangents, **params)
    return (out, dout) if isinstance(out, tuple) else ((out,), (dout,))


_BY_CHUNKS: dict[Backend, "DaskBackend"] = {}


def for_chunks(chunks: Backend) -> "DaskBackend":
    """The Dask backend of arrays with chunks of ``chunks``' type (one per chunk backend)."""
    if chunks not in _BY_CHUNKS:
        _BY_CHUNKS[chunks] = DaskBackend(chunks)
    return _BY_CHUNKS[chunks]


class DaskBackend(Backend):
    """Dask arrays whose chunks are arrays of the backend ``chunks``: named "dask" for NumPy chunks,
    "dask[cupy]" for CuPy's; its namespace creates constants of that chunk type."""

    host_branching = False

    def __init__(self, chunks: Backend) -> None:
        self.chunks = chunks
        self.name = "dask" if chunks.name == "numpy" else f"dask[{chunks.name}]"
        self.xp = dask_namespace(chunks)

    def to_numpy(self, x: Any) -> np.ndarray:
        return chunk_backend(x).to_numpy(x.compute()) if isinstance(x, da.Array) else np.asarray(x)

    def from_numpy(self, a: Any) -> Any:
        value = self.chunks.from_numpy(np.asarray(a))
        return da.from_array(value, chunks=value.shape, asarray=False)

    def _kernel(self, kernel: str, arrays: list[Any], cores: list[int], **params: Any) -> Any:
        """The chunk backend's ``kernel`` per block (see :func:`_per_matrix`); a tuple when it returns one."""
        backend = chunk_backend(arrays[0])
        arrays = _whole_cores(arrays, cores, kernel)
        examples = getattr(_numpy_backend(), kernel)(*(_empty_batch(x, c) for x, c in zip(arrays, cores)), **params)
        single = not isinstance(examples, tuple)

        def run(*blocks: Any) -> tuple:
            out = getattr(backend, kernel)(*blocks, **params)
            return (out,) if single else tuple(out)

        out = _per_matrix(run, arrays, cores, [examples] if single else list(examples))
        return out[0] if single else out

    def tall_skinny(self, a: Any) -> bool:
        return isinstance(a, da.Array) and is_tall_skinny(a)

    def matrix_rule(self, name: str, rule: Callable, primals: list, tangents: list, params: dict) -> tuple:
        """The JVP rule of decomposition ``name`` (one matrix argument), run per block on the chunk backend
        (batched matrices, raw Dask arrays); on the graph otherwise (tall-skinny TSQR, nested jvp)."""
        (a,), (da_,) = primals, tangents
        if not (isinstance(a, da.Array) and isinstance(da_, da.Array)):
            return rule(primals, tangents, **params)
        if name in TALL_SKINNY and is_tall_skinny(a):
            return _tall_skinny_rule(name, rule, a, da_, params)
        a, da_ = _whole_cores([a, da_], [2, 2], rule.__module__.rsplit(".", 1)[-1])
        numpy_a = _empty_batch(a, 2)
        out, dout = rule([numpy_a], [numpy_a], **params)
        single = not isinstance(out, tuple)
        outs, douts = ((out,), (dout,)) if single else (tuple(out), tuple(dout))
        # A tangent without data is the rules' symbolic zero (shape and dtype): kept for integer outputs,
        # made concrete per block for inexact ones.
        carried = [_has_data(t) or np.dtype(t.dtype).kind in "fc" for t in douts]

        def run(block: Any, tangent: Any) -> tuple:
            values, derivatives = rule([block], [tangent], **params)
            if single:
                values, derivatives = (values,), (derivatives,)
            xp = _namespace_of(block)
            filled = [t if _has_data(t) else xp.zeros(t.shape, dtype=t.dtype)
                      for t, keep in zip(derivatives, carried) if keep]
            return (*values, *filled)

        examples = [*outs, *(np.empty(t.shape, t.dtype) for t, keep in zip(douts, carried) if keep)]
        results = iter(_per_matrix(run, [a, da_], [2, 2], examples))
        values = [next(results) for _ in outs]
        derivatives = [next(results) if keep else type(t).like(v) for v, t, keep in zip(values, douts, carried)]
        return (values[0], derivatives[0]) if single else (tuple(values), tuple(derivatives))

    # Kernels.
    def lu_factor(self, a: Any) -> tuple[Any, Any]:
        return self._kernel("lu_factor", [a], [2])

    def lu_pivots_to_permutation(self, piv: Any, m: int) -> Any:
        return self._kernel("lu_pivots_to_permutation", [piv], [1], m=m)

    def qr(self, a: Any, mode: str) -> Any:
        if is_tall_skinny(a):
            _thin_only("qr", {"mode": mode})
            out = tsqr(_whole(a, (1,), "qr"), need_q=mode != "r")
            return out[0] if mode == "r" else out
        return self._kernel("qr", [a], [2], mode=mode)

    def svd(self, a: Any, full_matrices: bool) -> tuple[Any, Any, Any]:
        if is_tall_skinny(a):  # A = Q R, R = U_R S V^H: U = Q U_R
            _thin_only("svd", {"full_matrices": full_matrices})
            return tsqr(_whole(a, (1,), "svd"), need_q=True, kernel="svd", full_matrices=False)
        return self._kernel("svd", [a], [2], full_matrices=full_matrices)

    def svdvals(self, a: Any) -> Any:
        if is_tall_skinny(a):  # the singular values of R (n x n)
            return tsqr(_whole(a, (1,), "svdvals"), need_q=False, kernel="svdvals")[0]
        return self._kernel("svdvals", [a], [2])

    def eigh(self, a: Any, lower: bool) -> tuple[Any, Any]:
        return self._kernel("eigh", [a], [2], lower=lower)

    def eigvalsh(self, a: Any, lower: bool) -> Any:
        return self._kernel("eigvalsh", [a], [2], lower=lower)

    def cholesky(self, a: Any, upper: bool) -> Any:
        return self._kernel("cholesky", [a], [2], upper=upper)

    def solve_triangular(self, a: Any, b: Any, *, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        return self._triangular("solve_triangular", a, b, left=True, lower=lower, trans=trans,
                                unit_diagonal=unit_diagonal)

    def triangular_product(self, a: Any, b: Any, *, left: bool, lower: bool, trans: int, unit_diagonal: bool) -> Any:
        return self._triangular("triangular_product", a, b, left=left, lower=lower, trans=trans,
                                unit_diagonal=unit_diagonal)

    def _triangular(self, kernel: str, a: Any, b: Any, *, left: bool, **params: Any) -> Any:
        """A triangular kernel of an (..., n, n) triangle ``a`` and ``b`` (..., n, k) for a left operation
        or (..., k, n) for a right one: b's k axis keeps its chunks (the columns, or rows, of b are
        independent), so a tall operand is never gathered; the other axes are taken whole."""
        if b.ndim == 1:  # a vector right-hand side: one column
            return self._triangular(kernel, a, b[:, None], left=left, **params)[..., 0]
        if kernel == "triangular_product":
            params["left"] = left
        backend = chunk_backend(a)
        a = _whole(a, (-2, -1), kernel)
        b = _whole(b, (-2 if left else -1,), kernel)
        example = getattr(_numpy_backend(), kernel)(_empty_batch(a, 2), _empty_batch(b, 2), **params)
        nbatch = max(a.ndim, b.ndim) - 2
        batch = tuple(f"b{i}" for i in range(nbatch))
        core_b = ("j", "k") if left else ("k", "j")
        return da.blockwise(lambda x, y: getattr(backend, kernel)(x, y, **params),
                            batch + (("i", "k") if left else ("k", "i")), a, batch[nbatch - (a.ndim - 2):] + ("i", "j"),
                            b, batch[nbatch - (b.ndim - 2):] + core_b, concatenate=True,
                            meta=typed_meta(a._meta, nbatch + 2, dtype=example.dtype))

