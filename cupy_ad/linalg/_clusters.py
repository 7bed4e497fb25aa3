"""Clusters of numerically repeated eigenvalues / singular values, for the degenerate JVP rules.

Derivation: a cluster is a maximal run of sorted values whose neighbouring gaps are within a
tolerance (chained transitively, so a run may be wider than the tolerance). The rules need, per
cluster k, a unitary Q_k diagonalising a small Hermitian block M_kk (first-order degenerate
perturbation theory, e.g. Kato 1995, "Perturbation theory for linear operators", II.2; Sakurai,
"Modern quantum mechanics", 5.2). All clusters of all batch elements are handled by ONE batched
eigh of the block-diagonal matrix  M o C + diag(label * s),  C_ij = [label_i == label_j], with a
shift s > 2 max_k ||M_kk||_2 (bounded by the largest absolute row sum): the spectrum of cluster k
then lies in [k s - s/2, k s + s/2], so the ascending eigenvalues come out cluster by cluster in
the clusters' own order and the eigenvectors are block diagonal (rounding leakage outside a
block, about eps * n * s, is masked to 0). Everything is computed on raw arrays with masks: no
branch depends on the data. Only :func:`take_degenerate_path` and :func:`run_degenerate_path` read
values on the host (never on CuPy or Dask: see ``Backend.host_branching``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from ..values import Batched, Recorded, Zero, host_int, strip
from ..namespace import reshape, take, where
from ..namespace._rules import xp_of
from ._matrix import backend_of_matrix

#: Tests set this to run the branch-free degenerate path even where no cluster exists (as CuPy does).
FORCE_BRANCH_FREE = False


def resolution(n: int, eps: float) -> float:
    """The relative spread, max(32, sqrt(n)) eps, below which computed eigenvalues or singular
    values (times the largest in magnitude) are taken to coincide, or a singular value to be zero.

    LAPACK's symmetric eigensolvers and SVDs are accurate to a modest multiple of eps ||A||: an
    exactly repeated value comes out split by a few eps ||A|| as a rule, but measured on
    Q diag(w) Q^T with w in {-2, ..., 2} (n = 14, 10000 matrices) syevd split one by 17 eps max|w|
    with OpenBLAS's Haswell kernels (14.5 with others): a floor of 16 sent such matrices down the
    ordinary path (eigenvector tangents ~1e14). (gesdd without vectors, svdvals' primal, splits
    repeated singular values by up to 24 eps s_max there and 33 on Q1 diag(s) Q2^T, s in {1, 2, 3},
    n = 6..16; but the rules take their clusters from the values of the SVD with vectors, split by
    at most 8 by gesdd, 10 by the compiled kernel, on both.) A tolerance growing like n eps ||A||
    would, in float32, merge distinct neighbours of random matrices of a few hundred rows and give
    them the degenerate (one-sided) derivative where the ordinary one is right; sqrt(n) grows slowly
    enough not to.
    """
    return max(32.0, n ** 0.5) * eps


class Clusters(NamedTuple):
    """Cluster structure of sorted values (..., n), all raw arrays (constants: no tangent)."""

    labels: Any  # (..., n) int: 0, 1, ... in the order of the values
    same: Any  # (..., n, n) bool: i and j in the same cluster
    single: Any  # (..., n) bool: a cluster of size 1
    count: Any  # (..., 1, 1) float: number of clusters (bounds the shift's size)


def find_clusters(values: Any, tol: Any) -> Clusters:
    """Clusters of sorted (ascending or descending) ``values`` (..., n): runs with gaps <= ``tol``.

    ``tol`` broadcasts against (..., 1). A gap equal to the tolerance joins (so 0 == 0 joins at
    tol = 0: the zero matrix is one cluster).
    """
    v = strip(values)
    xp = xp_of(v)
    n = v.shape[-1]
    gaps = xp.abs(v[..., 1:] - v[..., :-1])
    first = xp.ones((*v.shape[:-1], 1), dtype=xp.bool)
    starts = xp.concat([first, gaps > tol], axis=-1) if n else first[..., :0]
    labels = xp.cumulative_sum(xp.astype(starts, xp.int64), axis=-1) - 1
    same = xp.expand_dims(labels, axis=-1) == xp.expand_dims(labels, axis=-2)
    single = xp.sum(xp.astype(same, xp.int64), axis=-1) == 1
    count = xp.astype(xp.max(labels, axis=-1, keepdims=True) + 1, v.dtype) if n else xp.ones_like(v[..., :1])
    return Clusters(labels, same, single, xp.expand_dims(count, axis=-1))


def joined_neighbours(values: Any, tol: Any) -> Any:
    """Raw bool (..., n - 1): neighbours of sorted ``values`` in one cluster (as :func:`find_clusters`
    joins them). Some is True exactly when some cluster has more than one value: the O(n) test a
    rule runs before paying for :func:`find_clusters`' O(n^2) structure."""
    v = strip(values)
    xp = xp_of(v)
    return ~(xp.abs(v[..., 1:] - v[..., :-1]) > tol)


def infinite_diagonal(values: Any) -> Any:
    """Raw (n, n) for values (..., n): +inf on the diagonal, 0 elsewhere, in the values' dtype. Where no
    two values coincide (no cluster: :func:`take_degenerate_path` false), their gaps w_j - w_i are nonzero
    off the diagonal, and x / (gaps + this) is x / gaps there, bit for bit, and 0 on the diagonal (for
    finite x): the masked division of the general rules in one pass instead of four."""
    raw = strip(values)
    xp = xp_of(raw)
    return xp.where(xp.eye(raw.shape[-1], dtype=xp.bool), xp.asarray(float("inf"), dtype=raw.dtype),
                    xp.asarray(0.0, dtype=raw.dtype))


def take_degenerate_path(a: Any, clustered: Any) -> bool:
    """Whether a rule must run its degenerate path; ``clustered`` is a raw boolean array.

    Host backends (NumPy, array_api_strict and other generic ones) look at the data: the ordinary
    rule runs unchanged when nothing is clustered, so the distinct case costs only the O(n^2)
    cluster detection. CuPy never synchronises (nor does Dask compute): it always runs the branch-free
    degenerate path, whose singleton entries are selected (``where``) from the ordinary formula, bit for bit.
    """
    if FORCE_BRANCH_FREE or not backend_of_matrix(a).host_branching:
        return True
    return bool(xp_of(clustered).any(clustered))


def run_degenerate_path(a: Any, flags: Any, path: Callable[[Callable], tuple], ordinary: tuple) -> tuple | None:
    """A rule's degenerate path where the data need it: ``path(pick)`` computes its results (a tuple
    matching ``ordinary``, the rule's ordinary results) from inputs passed through ``pick``.

    ``flags`` (raw bool, (*batch, k)) marks the positions needing the path. CuPy (never
    synchronising) runs it on everything, branch-free (pick is the identity). Host backends return
    None when nothing is flagged, and for a batch where only some matrices are flagged run it on
    those alone (pick gathers them) and put the results back with a gather and a ``where``: one
    near-degenerate matrix does not make a whole batch pay for the path. An entry of ``ordinary``
    that is a ``Zero`` marks a result the caller does not use: it comes back as that Zero.
    """
    if FORCE_BRANCH_FREE or not backend_of_matrix(a).host_branching:
        return path(lambda x: x)
    xp = xp_of(flags)
    needs = xp.any(flags, axis=-1)
    if not bool(xp.any(needs)):
        return None
    if needs.ndim == 0 or bool(xp.all(needs)):
        return path(lambda x: x)
    batch = tuple(needs.shape)
    count = math.prod(batch)
    flat = xp.reshape(needs, (count,))
    chosen = xp.nonzero(flat)[0]

    def pick(x: Any) -> Any:
        core = tuple(x.shape[len(batch):])
        if type(x) is Zero:
            return Zero((chosen.shape[0], *core), x.dtype)
        return take(reshape(x, (count, *core)), chosen, axis=0)

    results = path(pick)
    position = xp.where(flat, xp.cumulative_sum(xp.astype(flat, xp.int64)) - 1, 0)  # row in the results
    merged = []
    for new, old in zip(results, ordinary):
        if new is None or type(old) is Zero:
            merged.append(None if new is None else old)
            continue
        core = tuple(old.shape[len(batch):])
        mask = xp.reshape(flat, (count, *(1,) * len(core)))
        merged.append(reshape(where(mask, take(new, position, axis=0), reshape(old, (count, *core))), old.shape))
    return tuple(merged)


def concrete_tangent(x: Any, name: str) -> Any:
    """The raw array of a tangent-dependent matrix (under its duals) in the rule of ``name`` (eigh,
    eigvalsh, svd, svdvals). A value of vmap or of a linearize recording there (jacfwd's stacked
    directions, say) is refused: the degenerate path computes on the tangent's entries, as it must,
    since there the derivative is not linear in the tangent."""
    raw = strip(x)
    if type(raw) is Batched or type(raw) is Recorded:
        raise TypeError(f"{name} at repeated eigen/singular values under vmap, jacfwd or linearize: the "
                        "one-sided derivative there is not linear in the tangent and there is no Jacobian; "
                        "call jvp once per direction, or move the matrix off the repeated values")
    return raw


def splitting_resolution(values: Any, cl: Clusters, p: Any, scale: Any, n: int, name: str) -> Any:
    """Raw (..., n, n): below this, the first-order splittings mu_i, mu_j of two values of one cluster
    are not resolved, so their mixing c = T / (mu_j - mu_i) is not determined by the data.

    mu are the eigenvalues of the cluster block of P = V^H dA V (or its SVD analogue). Their rounding
    has two sources: the block eigensolver, about eps ``scale`` (``block_rotation``'s bound), and
    the cluster's basis, which the decomposition fixes only up to an angle eps max|v| / gap (Davis-Kahan /
    Wedin: gap = the distance from the value to the nearest value outside its cluster), so the block
    of P is off by that angle times max|P|. Symmetry-protected multiplets have mu equal in exact
    arithmetic and computed apart by exactly this rounding. Both terms are in the unit of mu (of dA).
    """
    v = strip(values)
    xp = xp_of(v)
    eps = float(xp.finfo(v.dtype).eps)
    big = xp.max(xp.abs(v), axis=-1, keepdims=True)
    dist = xp.abs(xp.expand_dims(v, axis=-1) - xp.expand_dims(v, axis=-2))
    dist = xp.where(cl.same, xp.full_like(dist, xp.inf), dist)
    gap = xp.min(xp.concat([dist, xp.expand_dims(xp.abs(v), axis=-2)], axis=-2), axis=-2)  # (..., n)
    p_max = xp.max(xp.abs(concrete_tangent(p, name)), axis=(-2, -1))[..., None]
    safe = xp.where(gap > 0, gap, xp.ones_like(gap))
    basis = xp.where(gap > 0, big / safe, xp.full_like(gap, 1 / eps))  # no gap: anything is noise
    per_value = resolution(n, eps) * (p_max * basis + xp.reshape(scale, scale.shape[:-1]))
    return xp.maximum(xp.expand_dims(per_value, axis=-1), xp.expand_dims(per_value, axis=-2))


def block_rotation(m: Any, cl: Clusters, active: Any, name: str, descending: bool = False) -> tuple[Any, Any]:
    """Block-diagonal unitary R diagonalising the cluster blocks of Hermitian ``m`` (raw).

    ``active`` (..., n) bool marks positions whose cluster is rotated; R is exactly the identity
    elsewhere. Within a block the eigenvalues of m come ascending (descending if ``descending``).
    Returns (R, scale) with scale (..., 1, 1) the largest magnitude in the shifted matrix, which
    bounds the rounding error of the block eigenvalues (about eps * scale). ``name``: the rule's
    function, for :func:`concrete_tangent`'s error.
    """
    m = concrete_tangent(m, name)
    xp = xp_of(m)
    n = m.shape[-1]
    mask = cl.same & xp.expand_dims(active, axis=-1) & xp.expand_dims(active, axis=-2)
    zero = xp.zeros((), dtype=m.dtype)
    masked = xp.where(mask, m, zero)
    if descending:
        masked = -masked
    real_dtype = xp.real(masked).dtype if xp.isdtype(m.dtype, "complex floating") else m.dtype
    r = xp.max(xp.sum(xp.abs(masked), axis=-1), axis=-1, keepdims=True)  # >= every block's ||.||_2
    s = xp.where(r > 0, 2.5 * r, xp.ones_like(r))
    shift = xp.astype(cl.labels, real_dtype) * s  # (..., n)
    eye = xp.eye(n, dtype=m.dtype)
    if not FORCE_BRANCH_FREE and backend_of_matrix(m).host_branching and n >= BLOCKWISE_FROM:
        rot = _blockwise_rotation(masked, cl.same, active)
    else:
        shifted = masked + xp.astype(xp.expand_dims(shift, axis=-1), m.dtype) * eye
        _, q = backend_of_matrix(m).eigh(shifted, True)
        rot = xp.where(mask, q, eye)
    return rot, xp.expand_dims(s, axis=-1) * cl.count


#: From this size on, host backends diagonalise the cluster blocks one batched eigh per cluster size
#: (cost: the blocks' own, sum k^3) instead of one dense n x n eigh (as costly as the primal's).
BLOCKWISE_FROM = 64


def _blockwise_rotation(masked: Any, same: Any, active: Any) -> Any:
    """:func:`block_rotation`'s R on a host backend: clusters are contiguous runs of positions, so the
    active positions of clusters of size k, in order, form consecutive groups of k; their blocks are
    gathered into one (c, k, k) batch, diagonalised, and their eigenvectors scattered back (gathers
    on flattened indices: O(n^2) besides the eigh calls). One loop over the batch, on the host."""
    xp = xp_of(masked)
    n = masked.shape[-1]
    batch = tuple(masked.shape[:-2])
    count = math.prod(batch)
    flat_m = xp.reshape(masked, (count, n * n))
    flat_same = xp.reshape(same, (count, n, n))
    flat_active = xp.reshape(active, (count, n))
    sizes = xp.sum(xp.astype(flat_same, xp.int64), axis=-1)  # (count, n): size of each position's cluster
    out = []
    for b in range(count):
        rot = xp.eye(n, dtype=masked.dtype)
        for k in map(host_int, xp.unique_values(sizes[b, ...][flat_active[b, ...]])):
            members = flat_active[b, ...] & (sizes[b, ...] == k)
            idx = xp.reshape(xp.nonzero(members)[0], (-1, k))  # (c, k): one cluster a row
            block = xp.reshape(xp.take(flat_m[b, ...], xp.reshape(idx[:, :, None] * n + idx[:, None, :], (-1,))),
                               idx.shape + (k,))
            _, q = backend_of_matrix(masked).eigh(block, True)
            order = xp.cumulative_sum(xp.astype(members, xp.int64)) - 1  # place in the group, or -1
            order = xp.where(members, order, xp.zeros_like(order))
            within = order % k
            index = xp.expand_dims((order // k) * k * k + within * k, axis=-1) + xp.expand_dims(within, axis=-2)
            pairs = flat_same[b, ...] & xp.expand_dims(members, axis=-1) & xp.expand_dims(members, axis=-2)
            index = xp.where(pairs, index, xp.zeros_like(index))
            scattered = xp.reshape(xp.take(xp.reshape(q, (-1,)), xp.reshape(index, (-1,))), (n, n))
            rot = xp.where(pairs, scattered, rot)
        out.append(rot)
    return xp.reshape(xp.stack(out), (*batch, n, n))


__all__ = ["BLOCKWISE_FROM", "Clusters", "FORCE_BRANCH_FREE", "block_rotation", "concrete_tangent", "find_clusters", "joined_neighbours",
           "run_degenerate_path", "splitting_resolution", "take_degenerate_path"]
