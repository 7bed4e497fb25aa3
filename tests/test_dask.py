"""The dask backend: jvp of Dask arrays gives lazy Dask arrays equal to the NumPy backend's results on
the same data, on the threaded scheduler and on a 2-process LocalCluster."""
from __future__ import annotations

import numpy as np
import optree
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import array_api_compat.dask.array  # noqa: E402
import array_api_compat.numpy  # noqa: E402
import dask  # noqa: E402
from dask.callbacks import Callback  # noqa: E402

import cupy_ad as ad  # noqa: E402
from cupy_ad.backends import _BY_TYPE, backend_of, dask_backend  # noqa: E402
from cupy_ad.backends.numpy_backend import NumpyBackend  # noqa: E402
from cupy_ad.values import strip  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(params=["threads", "distributed"])
def compute(request):
    """Compute a list of Dask arrays on the scheduler under test."""
    if request.param == "threads":
        return lambda values: dask.compute(*values, scheduler="threads")
    return _on_cluster(request.getfixturevalue("client"))


def _on_cluster(client):
    """Compute on the cluster; a stuck cluster (e.g. a worker that died) fails instead of hanging."""
    return lambda values: tuple(future.result(timeout=120) for future in client.compute(list(values)))


def _pair(shape, seed, symmetric=False, chunks=None):
    """A NumPy primal and tangent, and the same data as Dask arrays."""
    rng = np.random.default_rng(seed)
    a, t = rng.standard_normal(shape), rng.standard_normal(shape)
    if symmetric:
        a, t = a + np.swapaxes(a, -1, -2), t + np.swapaxes(t, -1, -2)
    chunks = chunks or (max(1, shape[0] // 3), *shape[1:])
    return a, t, da.from_array(a, chunks=chunks), da.from_array(t, chunks=chunks)


def _leaves(tree):
    return list(tree) if isinstance(tree, tuple) else [tree]


def _same_as_numpy(f, a, t, a_dask, t_dask, compute, fix=None):
    """jvp on Dask arrays is lazy and equals jvp on NumPy arrays; ``fix(got, want)`` first aligns a gauge
    the two computations may choose differently (signs of the SVD's vectors)."""
    out, dout = ad.jvp(f, (a_dask,), (t_dask,))
    ref, dref = ad.jvp(f, (a,), (t,))
    lazy = [x for x in _leaves(out) + _leaves(dout) if not isinstance(x, ad.Zero)]
    assert all(isinstance(x, da.Array) for x in lazy)
    values = iter(compute(lazy))
    got = [x if isinstance(x, ad.Zero) else next(values) for x in _leaves(out) + _leaves(dout)]
    want = _leaves(ref) + _leaves(dref)
    if fix is not None:
        got, want = fix(got, want)
    for g, w in zip(got, want):
        if isinstance(w, ad.Zero):
            assert isinstance(g, ad.Zero)
            continue
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def _ns(x):
    """Our namespace of x's backend: for duals inside jvp and for raw arrays (finite differences)."""
    return ad.namespace(backend_of(strip(x)))


def test_elementwise_and_reductions(compute):
    a, t, a_dask, t_dask = _pair((12, 5), 0)

    def f(x):
        xp = _ns(x)
        y = xp.exp(xp.sin(x)) * x + xp.mean(x ** 2, axis=0) - xp.cumulative_sum(x, axis=1)
        return xp.stack([xp.max(y, axis=1), xp.sum(xp.tanh(y), axis=1), xp.linalg.vector_norm(x, axis=1)])

    _same_as_numpy(f, a, t, a_dask, t_dask, compute)


SQUARE = {
    "eigh": (lambda x: tuple(_ns(x).linalg.eigh(x)), True),
    "eigvalsh": (lambda x: _ns(x).linalg.eigvalsh(x), True),
    "svd": (lambda x: tuple(_ns(x).linalg.svd(x)), False),
    "svdvals": (lambda x: _ns(x).linalg.svdvals(x), False),
    "qr": (lambda x: tuple(_ns(x).linalg.qr(x)), False),
    "qr_r": (lambda x: _ns(x).linalg.qr(x, mode="r"), False),
    "lu_factor": (lambda x: tuple(_ns(x).linalg.lu_factor(x)), False),
    "lu": (lambda x: tuple(_ns(x).linalg.lu(x)), False),
    "cholesky": (lambda x: _ns(x).linalg.cholesky(x @ _ns(x).matrix_transpose(x) + 4 * _ns(x).eye(4)), False),
    "slogdet": (lambda x: tuple(_ns(x).linalg.slogdet(x)), False),
    "solve_triangular": (lambda x: _ns(x).linalg.solve_triangular(x + 4 * _ns(x).eye(4), x, lower=True), False),
    "triangular_product": (lambda x: _ns(x).linalg.triangular_product(x, x, left=False, lower=False), False),
    "solve": (lambda x: _ns(x).linalg.solve(x, x[..., :2]), False),
}

ON_CLUSTER = ("eigh", "svd", "lu_factor")  # the threaded scheduler runs them all; the cluster the same graphs


@pytest.mark.parametrize("name", SQUARE)
def test_batched_decompositions(name):
    f, symmetric = SQUARE[name]
    # matrix axes split in two: the backend rechunks them (each matrix must be whole)
    a, t, a_dask, t_dask = _pair((2, 7, 4, 4), 1, symmetric, chunks=(1, 3, 2, 4))
    _same_as_numpy(f, a, t, a_dask, t_dask, lambda values: dask.compute(*values, scheduler="threads"))


@pytest.mark.parametrize("name", SQUARE)
def test_batched_primals(name):
    """Without jvp every kernel runs per block through the chunk backend, lazily."""
    f, symmetric = SQUARE[name]
    a, _, a_dask, _ = _pair((7, 4, 4), 1, symmetric, chunks=(3, 2, 4))
    out = _leaves(f(a_dask))
    assert all(isinstance(x, da.Array) for x in out)
    for got, want in zip(dask.compute(*out, scheduler="threads"), _leaves(f(a))):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ON_CLUSTER)
def test_batched_decompositions_on_a_cluster(name, client):
    f, symmetric = SQUARE[name]
    a, t, a_dask, t_dask = _pair((9, 4, 4), 1, symmetric)
    _same_as_numpy(f, a, t, a_dask, t_dask, _on_cluster(client))


def test_batched_jvp_is_one_task_per_block():
    """The decompositions' rules run per block: one task per block runs eigh's whole jvp."""
    a, t, a_dask, t_dask = _pair((40, 3, 3), 2, True, chunks=(10, 3, 3))
    (w, v), (dw, dv) = ad.jvp(lambda x: tuple(_ns(x).linalg.eigh(x)), (a_dask,), (t_dask,))
    graph = dict(dv.__dask_graph__())
    assert len(graph) == 4 * 4  # primal and tangent blocks, the per-block jvp, its picked output


def test_vmap_fold_keeps_the_batch_chunks():
    """vmap of a solve with one shared triangle folds the examples' columns into one right-hand side (a
    reshape merging the batch with each example's columns): the batch keeps its chunks also where those
    columns are chunked (Dask's own reshape split 4 batch chunks into 16: 153 tasks, not 45), and the jvp
    is the NumPy backend's."""
    rng = np.random.default_rng(4)
    a = np.triu(rng.standard_normal((4, 4))) + 4 * np.eye(4)
    b, t = rng.standard_normal((40, 4, 3)), rng.standard_normal((40, 4, 3))
    a_dask = da.from_array(a, chunks=(4, 4))
    b_dask, t_dask = (da.from_array(v, chunks=(10, 4, 1)) for v in (b, t))

    def solve(shared):
        return lambda x: ad.vmap(lambda column: ad.linalg.solve_triangular(shared, column, lower=False))(x)

    out, dout = ad.jvp(solve(a_dask), (b_dask,), (t_dask,))
    assert out.chunks[0] == dout.chunks[0] == (10,) * 4
    assert len(dict(out.__dask_graph__())) <= 50
    want, dwant = ad.jvp(solve(a), (b,), (t,))
    got, dgot = dask.compute(out, dout, scheduler="threads")
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(dgot, dwant, rtol=1e-12)
    reshape = dask_backend.dask_namespace(NumpyBackend()).reshape  # the fold's: (n, examples, columns) merged
    columns = da.moveaxis(b_dask, 0, 1)
    np.testing.assert_array_equal(reshape(columns, (4, 120)).compute(), np.moveaxis(b, 0, 1).reshape(4, 120))
    assert reshape(columns, (4, 120)).chunks == ((4,), (30,) * 4)
    # axes of one entry on either side do not hide a merge (review10: a 1 among the new axes did)
    assert reshape(columns, (4, 1, 120)).chunks == ((4,), (1,), (30,) * 4)
    assert reshape(columns[None], (1, 4, 120, 1)).chunks == ((1,), (4,), (30,) * 4, (1,))
    assert reshape(columns, (4, -1)).chunks == ((4,), (30,) * 4)  # an inferred size too (matmul's fold writes -1)
    with dask.config.set({"array.chunk-size": "900B"}):  # blocks of 4 x 30 entries too large: Dask's split
        assert len(reshape(columns, (4, 120)).chunks[1]) == 16


def _column_signs(got, want):
    """The SVD of Dask's TSQR picks its own signs of U's columns: flip to NumPy's."""
    return np.sign(np.real(np.sum(np.conj(got) * want, axis=0)))


def _fix_svd(got, want):
    u, s, vh, du, ds, dvh = got
    sign = _column_signs(u, want[0])
    return [u * sign, s, sign[:, None] * vh, du * sign, ds, sign[:, None] * dvh], want


class _TaskSizes(Callback):
    """The largest result of any task but the final gathering of the outputs."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        if (key[0] if isinstance(key, tuple) else key).startswith("finalize"):
            return
        parts = result if isinstance(result, tuple) else (result,)
        self.largest = max(self.largest, sum(getattr(p, "nbytes", 0) for p in parts))


TALL = {
    "qr": (lambda x: tuple(_ns(x).linalg.qr(x)), None),  # (LAPACK's signs, as NumPy: no fix)
    "svd": (lambda x: tuple(_ns(x).linalg.svd(x, full_matrices=False)), _fix_svd),
    "svdvals": (lambda x: _ns(x).linalg.svdvals(x), None),
}


@pytest.mark.parametrize("name", TALL)
def test_tall_skinny(name, compute):
    f, fix = TALL[name]
    a, t, a_dask, t_dask = _pair((600, 5), 3, chunks=(100, 5))
    _same_as_numpy(f, a, t, a_dask, t_dask, compute, fix)


@pytest.mark.parametrize("name", TALL)
def test_tall_skinny_is_never_gathered(name):
    """No task holds more than about one row chunk (the final gathering of the outputs aside)."""
    a, t, a_dask, t_dask = _pair((1200, 5), 3, chunks=(100, 5))
    _, dout = ad.jvp(TALL[name][0], (a_dask,), (t_dask,))
    sizes = _TaskSizes()
    with sizes:
        dask.compute(_leaves(dout), scheduler="sync")
    assert sizes.largest <= 2 * 100 * 5 * 8 < a.nbytes


class _LiveBytes(Callback):
    """The most bytes of task results held at once by the scheduler (its cache)."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        held = [part for value in state["cache"].values() for part in (value if isinstance(value, tuple) else (value,))]
        self.peak = max(self.peak, sum(getattr(part, "nbytes", 0) for part in held))


@pytest.mark.parametrize("differentiate", [True, False])
@pytest.mark.parametrize("name", ["qr", "svd"])
def test_tall_skinny_streams(name, differentiate):
    """Storing Q (U) and dQ (dU) block by block holds a few row blocks at a time, not the matrix: pass 2
    recomputes each input block after the n x n reduction instead of keeping pass 1's."""
    rows, blocks = 100, 12
    rng = da.random.default_rng(10)
    a, t = (rng.standard_normal((rows * blocks, 5), chunks=(rows, 5)) for _ in range(2))
    f = TALL[name][0]
    out, dout = ad.jvp(f, (a,), (t,)) if differentiate else (f(a), None)
    tall = [out[0], dout[0]] if differentiate else [out[0]]
    targets = [np.empty(x.shape) for x in tall]
    live = _LiveBytes()
    with live:
        da.store(tall, targets, scheduler="sync")
    assert live.peak <= 4 * rows * 5 * 8  # (a, dA, Q, dQ blocks of one row chunk)
    a, t = dask.compute(a, t)
    out, dout = ad.jvp(f, (a,), (t,))
    for got, want in zip(targets, (out[0], dout[0])):
        sign = _column_signs(got, want) if name == "svd" else 1
        np.testing.assert_allclose(got * sign, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("shape, rows", [((40, 6), 20), ((40, 6), 13), ((40, 6), 4), ((6, 6), 2), ((2, 1), 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_tall_skinny_qr_signs_are_numpys(shape, rows, dtype):
    """Q and R (mode "r" too) and their tangents are NumPy's, signs included, whatever the row chunks (fewer
    rows than columns, a square matrix whose last column LAPACK does not reflect)."""
    a, t, _, _ = _pair(shape, 15)
    if dtype is np.complex128:
        a, t = a + 1j * t[::-1], t - 1j * a
    a_dask, t_dask = (da.from_array(x, chunks=(rows, shape[1])) for x in (a, t))
    _same_as_numpy(TALL["qr"][0], a, t, a_dask, t_dask, lambda v: dask.compute(*v))
    np.testing.assert_allclose(_ns(a_dask).linalg.qr(a_dask, mode="r").compute(), np.linalg.qr(a, mode="r"),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", TALL)
def test_tall_skinny_of_slices(name):
    """A primal and tangent sliced from one Dask array (the second pass re-reads its blocks through
    Dask's clone, which leaves a slice reading its source's original keys): the NumPy backend's result."""
    a, t, _, _ = _pair((300, 8), 14)
    both = da.from_array(np.concatenate([a[:, :4], t[:, 4:]], axis=1), chunks=(60, 8))
    f, fix = TALL[name]
    _same_as_numpy(f, a[:, :4], t[:, 4:], both[:, :4], both[:, 4:], lambda v: dask.compute(*v), fix)


def test_tall_skinny_complex_and_rank_deficient():
    """Complex input (R's real diagonal kept), and an exactly zero column: NaN tangents, as on NumPy."""
    a, t, a_dask, t_dask = _pair((400, 4), 11, chunks=(100, 4))
    z = a + 1j * t[::-1]
    _same_as_numpy(TALL["qr"][0], z, t + 1j * a, da.from_array(z, chunks=(100, 4)),
                   da.from_array(t + 1j * a, chunks=(100, 4)), lambda v: dask.compute(*v))
    a[:, 2] = 0  # Q's columns from the third on are then any completion: compare where the NaNs are
    _, tangents = ad.jvp(TALL["qr"][0], (da.from_array(a, chunks=(100, 4)),), (t_dask,))
    for got, want in zip(dask.compute(*tangents), ad.jvp(TALL["qr"][0], (a,), (t,))[1]):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.isnan(want).any()


@pytest.mark.filterwarnings("error::numpy.exceptions.ComplexWarning")
@pytest.mark.parametrize("name", ["eigh", "svd", "svdvals", "lu_factor", "slogdet"])
def test_complex_batches_with_real_outputs_do_not_warn(name):
    """Real or integer outputs of complex blocks (eigenvalues, singular values, pivots, log|det|): their
    metas are made without casting a complex meta to them (NumPy's ComplexWarning, here an error)."""
    f, _ = SQUARE[name]
    a, t, _, _ = _pair((6, 4, 4), 13)
    a, t = a + 1j * t[::-1], t + 1j * a
    if name == "eigh":
        a, t = a + np.conj(np.swapaxes(a, -1, -2)), t + np.conj(np.swapaxes(t, -1, -2))
    _same_as_numpy(f, a, t, da.from_array(a, chunks=(2, 4, 4)), da.from_array(t, chunks=(2, 4, 4)),
                   lambda values: dask.compute(*values, scheduler="threads"))
    tall = a.reshape(24, 4)
    _same_as_numpy(TALL["svdvals"][0], tall, t.reshape(24, 4), da.from_array(tall, chunks=(8, 4)),
                   da.from_array(t.reshape(24, 4), chunks=(8, 4)), lambda values: dask.compute(*values))


def test_finite_differences():
    def f(x):
        xp = _ns(x)
        w, v = xp.linalg.eigh(x + xp.matrix_transpose(x))
        return xp.sum(v[..., :, :1] * w[..., None, :], axis=-1), xp.linalg.svdvals(x)

    rng = np.random.default_rng(4)
    x = da.from_array(rng.standard_normal((6, 4, 4)), chunks=(2, 4, 4))
    ad.check_jvp(f, (x,))
    tall = da.from_array(rng.standard_normal((300, 4)), chunks=(60, 4))
    # |R|: finite differences run on one chunk (LAPACK's signs), the jvp on TSQR (its own signs)
    ad.check_jvp(lambda y: _ns(y).abs(_ns(y).linalg.qr(y, mode="r")), (tall,))


def test_scan_carries_dask_arrays(compute):
    a, t, a_dask, t_dask = _pair((5, 4), 5)

    def f(xs):
        xp = _ns(xs)

        def step(c, x):
            c = xp.sin(c) * x + c
            return c, xp.sum(c ** 2)

        return ad.scan(step, xp.ones_like(xs[0]), xs)

    _same_as_numpy(f, a, t, a_dask, t_dask, compute)



def test_jit_constants_and_scan_steps_of_dask_arrays():
    """(review18) jit's constant outputs (a result of closed-over arrays alone) and the steps of a scan over a jit
    body (a carry whose tangent the program returns as a symbolic zero: a zero array kept for it; the carries
    copied after the steps) took the namespace of a Dask array by ``__array_namespace__``, which it lacks: an
    AttributeError on every call."""
    xp = ad.namespace("dask")
    w, xs, c0 = da.ones(3, chunks=3), da.arange(6.0, chunks=6).reshape(3, 2), da.ones(2, chunks=2)
    assert np.array_equal(ad.jit(lambda x: (x, xp.tanh(w)))(c0)[1].compute(), np.tanh(np.ones(3)))

    def body(c, x):
        return x * 2.0, c

    jitted, loop = ad.jit(body), lambda step: lambda c: ad.scan(step, c, xs)  # noqa: E731
    for _ in range(3):
        got, want = ad.jvp(loop(jitted), (c0,), (c0,)), ad.jvp(loop(body), (c0,), (c0,))
        for g, v in zip(optree.tree_leaves(got), optree.tree_leaves(want)):
            assert isinstance(g, da.Array) and np.array_equal(g.compute(), v.compute())


def test_namespace_and_default_backend():
    ns = ad.namespace("dask")
    assert ns.backend is backend_of(da.ones(3))
    assert ad.namespace(da) is ns and ad.namespace(array_api_compat.dask.array) is ns
    assert ns.backend.name == "dask" and not ns.backend.host_branching
    ad.set_backend("dask")
    try:
        assert ad.namespace().backend is ns.backend
        out, dout = ad.jvp(lambda x: ns.sum(ns.exp(x)), (1.5,), (1.0,))
        assert isinstance(dout, da.Array) and np.isclose(dout.compute(), np.exp(1.5))
    finally:
        ad.set_backend("numpy")


def test_nested_jvp():
    a, t, a_dask, t_dask = _pair((6, 3, 3), 6, True)
    inner = lambda x: ad.jvp(lambda y: _ns(y).linalg.eigvalsh(y), (x,), (x,))[1]  # noqa: E731
    _same_as_numpy(inner, a, t, a_dask, t_dask, lambda values: dask.compute(*values))


def test_inputs_are_not_mutated():
    a, t, a_dask, t_dask = _pair((6, 3, 3), 7, True)
    keys, chunks = set(a_dask.__dask_graph__()), a_dask.chunks
    ad.jvp(lambda x: tuple(_ns(x).linalg.eigh(x)), (a_dask,), (t_dask,))
    assert set(a_dask.__dask_graph__()) == keys and a_dask.chunks == chunks
    np.testing.assert_array_equal(a_dask.compute(), a)
    tall = da.from_array(a.reshape(18, 3), chunks=(6, 3))  # the tall-skinny path clones the inputs' graphs
    keys = set(tall.__dask_graph__())
    ad.jvp(TALL["qr"][0], (tall,), (tall,))
    assert set(tall.__dask_graph__()) == keys
    np.testing.assert_array_equal(tall.compute(), a.reshape(18, 3))


def test_errors():
    a, t, a_dask, t_dask = _pair((6, 3, 3), 8, chunks=(2, 2, 3))
    with pytest.raises(TypeError, match=r"primals\[0\] is dask, primals\[1\] is numpy"):
        ad.jvp(lambda x, y: x @ y, (a_dask, a), (t_dask, t))
    with pytest.raises(ValueError, match="cannot rechunk.*over array.chunk-size.*supported: batches"):
        with dask.config.set({"array.chunk-size": "64B"}):
            ad.jvp(lambda x: tuple(_ns(x).linalg.eigh(x)), (a_dask,), (t_dask,))
    tall = da.from_array(a.reshape(18, 3), chunks=(6, 3))
    with pytest.raises(ValueError, match="'complete'.*supported"):
        ad.linalg.qr(tall, mode="complete")
    with pytest.raises(ValueError, match="full_matrices=True.*supported"):
        ad.linalg.svd(tall)
    unknown = tall[tall[:, 0] > -10]  # a Dask mask: rows of unknown number
    with pytest.raises(ValueError, match="unknown chunk sizes.*supported"):
        ad.linalg.qr(unknown)
    odd = da.from_array(a.view(StandInChunk), chunks=(2, 3, 3), asarray=False)  # chunks of an unknown library
    with pytest.raises(TypeError, match="NumPy or CuPy chunks.*test_dask.StandInChunk"):
        ad.jvp(lambda x: x * 2, (odd,), (odd,))


class StandInChunk(np.ndarray):
    """A chunk type standing in for CuPy's arrays: operations on it give it back, and, as CuPy does, it
    refuses to be mixed with NumPy arrays, so a NumPy constant that reaches one of its blocks raises.
    (Dask dispatches on the module name ``cupy``; this type reaches cupy_ad's own dispatch instead.)"""

    def __getitem__(self, key):  # 0-d arrays, not NumPy scalars, as CuPy gives
        return _to_stand_in(super().__getitem__(key))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _to_stand_in(getattr(ufunc, method)(*_from_stand_in(inputs), **_from_stand_in(kwargs)))

    def __array_function__(self, func, types, args, kwargs):
        return _to_stand_in(func(*_from_stand_in(args), **_from_stand_in(kwargs)))


def _from_stand_in(value):
    """Plain NumPy arrays for the stand-in's; TypeError for a NumPy array among them (NumPy scalars pass,
    as CuPy takes them)."""
    if type(value) is np.ndarray:
        raise TypeError(f"a NumPy array {value.shape} mixed into a stand-in (CuPy-like) block")
    if isinstance(value, StandInChunk):
        return value.view(np.ndarray)
    if isinstance(value, (list, tuple)):
        return type(value)(_from_stand_in(v) for v in value)
    if isinstance(value, dict):
        return {k: _from_stand_in(v) for k, v in value.items()}
    return value


def _to_stand_in(value):
    """Stand-in arrays for NumPy's results, NumPy scalars included (CuPy's reductions give 0-d arrays)."""
    if type(value) is np.ndarray or isinstance(value, np.generic):
        return np.asarray(value).view(StandInChunk)
    if isinstance(value, tuple):
        parts = [_to_stand_in(v) for v in value]
        return type(value)(*parts) if hasattr(value, "_fields") else tuple(parts)
    if isinstance(value, list):
        return [_to_stand_in(v) for v in value]
    return value


class _StandInNamespace:
    """The stand-in's array namespace (as CuPy's): array_api_compat's NumPy functions taking and giving
    stand-in arrays; asarray also converts NumPy arrays (as ``cupy.asarray`` copies them to the device)."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if name == "linalg":
            return _StandInNamespace(value)
        if not callable(value) or isinstance(value, type):
            return value

        def call(*args, **kwargs):
            if name == "asarray":  # converts NumPy arrays
                args = tuple(a.view(StandInChunk) if type(a) is np.ndarray else a for a in args)
            return _to_stand_in(value(*_from_stand_in(args), **_from_stand_in(kwargs)))

        return call


KERNEL_CALLS = []  # module level: Dask may pickle the backend into its graph


class StandInBackend(NumpyBackend):
    """The backend of stand-in chunks: the NumPy backend's kernels on the stand-in's data, refusing NumPy
    arrays as arguments (as CuPy's kernels would)."""

    name = "stand_in"
    xp = _StandInNamespace(array_api_compat.numpy)

    def from_numpy(self, a):
        return np.array(a).view(StandInChunk)

    def to_numpy(self, x):
        return np.asarray(x.view(np.ndarray))


def _stand_in_kernel(name):
    def kernel(self, *args, **kwargs):
        KERNEL_CALLS.append(name)
        return _to_stand_in(getattr(NumpyBackend, name)(self, *_from_stand_in(args), **kwargs))

    return kernel


for _name in ("lu_factor", "lu_pivots_to_permutation", "lu_tangent_batch", "qr", "svd", "svdvals", "eigh", "eigvalsh",
              "cholesky", "cholesky_tangent", "qr_tangent", "solve_triangular", "triangular_product"):
    setattr(StandInBackend, _name, _stand_in_kernel(_name))


@pytest.fixture
def stand_in(monkeypatch):
    """Register the stand-in chunk type; returns a function making Dask arrays of stand-in chunks."""
    monkeypatch.setattr(dask_backend, "_CHUNK_LIBRARIES", (*dask_backend._CHUNK_LIBRARIES, __name__.split(".")[0]))
    monkeypatch.setitem(_BY_TYPE, StandInChunk, StandInBackend())
    KERNEL_CALLS.clear()
    return lambda a, chunks: da.from_array(StandInBackend().from_numpy(a), chunks=chunks, asarray=False)


def test_stand_in_refuses_numpy(stand_in):
    """The stand-in can tell: a NumPy-chunked constant (array_api_compat's own eye) mixed into its blocks raises."""
    x = stand_in(np.ones((4, 4)), (2, 4))
    with pytest.raises(TypeError, match="mixed into a stand-in"):
        (x + array_api_compat.dask.array.eye(4)).compute(scheduler="sync")
    with pytest.raises(TypeError, match="mixed into a stand-in"):
        StandInChunk.__add__(x.compute(scheduler="sync"), np.ones(4))
    assert type((x + ad.namespace(backend_of(x)).eye(4)).compute(scheduler="sync")) is StandInChunk


def _stand_in_same_as_numpy(f, a, t, stand_in, chunks, fix=None):
    a_dask, t_dask = stand_in(a, chunks), stand_in(t, chunks)
    out, dout = ad.jvp(f, (a_dask,), (t_dask,))
    lazy = [x for x in _leaves(out) + _leaves(dout) if isinstance(x, da.Array)]
    assert all(type(x._meta) is StandInChunk for x in lazy)
    computed = dask.compute(*lazy, scheduler="threads")
    assert all(type(x) is StandInChunk for x in computed)
    _same_as_numpy(f, a, t, a_dask, t_dask, lambda values: [x.view(np.ndarray) for x in computed], fix)


def _creation_and_elementwise(x):
    xp = _ns(x)
    n = x.shape[-1]
    y = xp.exp(xp.sin(x)) * x + xp.eye(n) + xp.ones((n,)) - xp.asarray(0.5) * xp.full((n, n), 2.0)
    y = xp.where(y > 0, y, xp.zeros_like(y)) + xp.linspace(0, 1, n) * xp.astype(xp.arange(n), x.dtype)
    return xp.stack([xp.max(y, axis=-1), xp.sum(xp.tanh(y), axis=-1), xp.linalg.vector_norm(xp.tril(y), axis=-1)])


@pytest.mark.parametrize("name", ["creation_and_elementwise", *SQUARE])
def test_stand_in_chunks_batched(name, stand_in):
    """Every constant on the graph and in the per-block rules is made as a stand-in array: no NumPy array
    meets a CuPy-like block (a mix would raise), and the results equal the NumPy backend's."""
    f, symmetric = (_creation_and_elementwise, False) if name not in SQUARE else SQUARE[name]
    a, t, _, _ = _pair((6, 4, 4), 12, symmetric)
    _stand_in_same_as_numpy(f, a, t, stand_in, (2, 4, 4))


@pytest.mark.parametrize("name", TALL)
def test_stand_in_chunks_tall_skinny(name, stand_in):
    f, fix = TALL[name]
    a, t, _, _ = _pair((300, 4), 13)
    _stand_in_same_as_numpy(f, a, t, stand_in, (75, 4), fix)


def test_stand_in_chunks_scan_and_check_jvp(stand_in):
    a, t, _, _ = _pair((5, 4), 14)

    def f(xs):
        xp = _ns(xs)
        return ad.scan(lambda c, x: (xp.sin(c) * x + c, xp.sum(c ** 2)), xp.ones_like(xs[0]), xs)

    _stand_in_same_as_numpy(f, a, t, stand_in, (2, 4))
    with pytest.raises(TypeError, match=r"primals\[0\] is dask\[stand_in\], tangents\[0\] is dask"):
        ad.jvp(f, (stand_in(a, (2, 4)),), (da.from_array(t, chunks=(2, 4)),))  # chunk types mixed
    ad.check_jvp(lambda x: _ns(x).linalg.eigvalsh(x + _ns(x).matrix_transpose(x)), (stand_in(a[:4], (2, 4)),))


def test_kernels_run_on_the_chunk_backend(stand_in):
    """Each block goes to the backend of the chunk type (CuPy's for CuPy chunks): one eigh per block."""
    a, _, _, _ = _pair((6, 3, 3), 9, True)
    w, v = ad.linalg.eigh(stand_in(a, (2, 3, 3)))
    np.testing.assert_allclose(w.compute(scheduler="sync").view(np.ndarray), np.linalg.eigvalsh(a), rtol=1e-12,
                               atol=1e-12)
    assert KERNEL_CALLS == ["eigh"] * 3


def test_example_runs(client, capsys):
    """examples/dask_batch.py with tiny sizes, on this module's cluster."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "dask_batch.py"
    spec = importlib.util.spec_from_file_location("dask_batch", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with client.as_current():  # the progress bar uses the current client
        seconds = example.run(client, batch=40, n=4, chunk=10, show_progress=True)
    assert seconds > 0 and "largest |dw|" in capsys.readouterr().out
