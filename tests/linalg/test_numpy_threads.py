"""Batches of small matrices split over threads on NumPy (``numpy_threads``): the same results as
NumPy's gufunc on the whole batch, bit for bit, whatever the split; no split where it cannot pay or
the caller runs in a worker thread; errors of any block reach the caller."""
import threading

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.backends import backend_named, numpy_threads


@pytest.fixture
def split_always(monkeypatch):
    """Every batch of two matrices or more split over 2 threads (3 for odd block sizes)."""
    monkeypatch.setattr(numpy_threads, "MIN_WORK", 0)

    def with_threads(n: int) -> None:
        monkeypatch.setenv("CUPY_AD_NUM_THREADS", str(n))
    with_threads(2)
    return with_threads


def _symmetric(rng, shape):
    x = rng.standard_normal(shape)
    return x + np.swapaxes(x, -1, -2)


def _same(got, expected):
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)



def _shape_recorder():
    """(shapes, record): ``record`` as a decompose that returns its block, noting each block's shape."""
    shapes = []

    def record(block):
        shapes.append(block.shape)
        return block
    return shapes, record

@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("shape", [(7, 5, 5), (2, 3, 4, 4), (5, 6, 3), (3, 3, 6)])
def test_split_batches_match_numpy_bit_for_bit(split_always, threads, shape):
    split_always(threads)
    b = backend_named("numpy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    # (SVD of small real square matrices: the compiled kernel where Numba is installed, its one-thread result)
    split_always(1)
    one_thread = b.svd(x, False) if shape[-1] == shape[-2] else tuple(np.linalg.svd(x, full_matrices=False))
    split_always(threads)
    _same(b.svd(x, False), one_thread)
    _same(b.svd(x, True), one_thread if shape[-1] == shape[-2] else tuple(np.linalg.svd(x, full_matrices=True)))
    _same(b.svd(x * 1j, False), tuple(np.linalg.svd(x * 1j, full_matrices=False)))  # (complex: NumPy's gufunc)
    _same(b.svdvals(x), np.linalg.svd(x, compute_uv=False))
    # (QR of stacks of small real matrices: the compiled kernel where Numba is installed, its one-thread result)
    split_always(1)
    one_thread = b.qr(x, "reduced"), b.qr(x, "r")
    split_always(threads)
    _same(b.qr(x, "reduced"), one_thread[0])
    _same(b.qr(x, "r"), one_thread[1])
    for got, want in zip(one_thread, (tuple(np.linalg.qr(x, mode="reduced")), np.linalg.qr(x, mode="r"))):
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-14)  # (NumPy's to rounding, its signs included)
    if shape[-1] == shape[-2]:
        s = _symmetric(rng, shape)
        for lower, uplo in ((True, "L"), (False, "U")):
            # (eigh of small real matrices: the compiled kernel where Numba is installed, its one-thread result)
            split_always(1)
            one_thread = b.eigh(s, lower)
            split_always(threads)
            _same(b.eigh(s, lower), one_thread)
            _same(b.eigh(s * 1j, lower), tuple(np.linalg.eigh(s * 1j, UPLO=uplo)))  # (complex: NumPy's gufunc)
            _same(b.eigvalsh(s, lower), np.linalg.eigvalsh(s, UPLO=uplo))
        spd = s @ np.swapaxes(s, -1, -2) + np.eye(shape[-1])
        _same(b.cholesky(spd, False), np.linalg.cholesky(spd))
        _same(b.cholesky(spd, True), np.linalg.cholesky(spd, upper=True))
        t = np.swapaxes(s, -1, -2)[..., ::-1, :]  # a strided view: the same values as a copy
        _same(b.eigh(t, True), b.eigh(np.ascontiguousarray(t), True))


def test_the_blocks_are_contiguous_runs_of_the_batch(split_always):
    seen = []

    def record(block):
        seen.append(block[:, 0, 0].copy())
        return block * 2.0

    x = np.arange(23 * 4, dtype=np.float64).reshape(23, 2, 2)
    np.testing.assert_array_equal(numpy_threads.split_batch(record, x), x * 2.0)
    assert sorted(len(block) for block in seen) == [2] + [3] * 7  # (RUNS_PER_THREAD = 4 runs a thread)
    for block in seen:
        np.testing.assert_array_equal(np.diff(block), 4.0)  # (each block a run of consecutive matrices)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), x[:, 0, 0])


def test_no_split_where_it_cannot_pay(monkeypatch):
    shapes, record = _shape_recorder()
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "2")
    small = np.zeros((8, 4, 4))  # below MIN_WORK
    large = np.zeros((4096, numpy_threads.MAX_N + 1, 2))  # a side above MAX_N
    numpy_threads.split_batch(record, small)
    numpy_threads.split_batch(record, large)
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "1")
    numpy_threads.split_batch(record, np.zeros((4096, 8, 8)))
    assert shapes == [(8, 4, 4), large.shape, (4096, 8, 8)]


def test_no_split_inside_a_worker_thread(split_always):
    shapes, record = _shape_recorder()
    worker = threading.Thread(target=numpy_threads.split_batch, args=(record, np.zeros((6, 3, 3))))
    worker.start()
    worker.join()
    assert shapes == [(6, 3, 3)]


def test_an_error_in_any_block_reaches_the_caller(split_always):
    spd = np.broadcast_to(np.eye(3), (6, 3, 3)).copy()
    spd[5] = -np.eye(3)  # in the last block, run by the pool
    with pytest.raises(np.linalg.LinAlgError):
        backend_named("numpy").cholesky(spd, False)


@pytest.mark.parametrize("name", ["eigh", "svd", "qr"])
def test_jvp_of_a_split_batch_equals_the_one_thread_jvp(split_always, name):
    rng = np.random.default_rng(3)
    x, t = _symmetric(rng, (9, 4, 4)), _symmetric(rng, (9, 4, 4))
    f = {"eigh": lambda a: tuple(ad.linalg.eigh(a)), "svd": lambda a: tuple(ad.linalg.svd(a, full_matrices=False)),
         "qr": lambda a: tuple(ad.linalg.qr(a))}[name]
    split = ad.jvp(f, (x,), (t,))
    jitted = ad.jit(lambda a, da: ad.jvp(f, (a,), (da,)))(x, t)
    split_always(1)
    alone = ad.jvp(f, (x,), (t,))
    for got in (split, jitted):
        for g, e in zip([*got[0], *got[1]], [*alone[0], *alone[1]]):
            np.testing.assert_array_equal(g, e)


def test_a_bad_thread_count_is_refused(monkeypatch):
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="CUPY_AD_NUM_THREADS"):
        numpy_threads.threads()


def test_a_call_that_would_not_split_never_reads_the_thread_count(monkeypatch):
    """A single matrix (or a batch too small to split) pays nothing for the threads: not even the
    setting is read, so a bad one does not break it (the split that would read it refuses it)."""
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "two")
    a = np.random.default_rng(0).standard_normal((16, 16))
    np.testing.assert_array_equal(numpy_threads.split_batch(np.linalg.qr, a)[0], np.linalg.qr(a)[0])


@pytest.fixture
def eight_cpus(monkeypatch, tmp_path):
    """A process that may run on 8 CPUs, its cgroup files under a fake mount (tmp_path/sys) and its own
    cgroups in a fake ``/proc/self/cgroup`` (tmp_path/proc, absent until written): the test writes
    them with the returned ``write(relative_path, text)`` (``proc``: the process's cgroups)."""
    monkeypatch.delenv("CUPY_AD_NUM_THREADS", raising=False)
    monkeypatch.setattr(numpy_threads.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(numpy_threads, "CGROUP_ROOT", str(tmp_path / "sys"))
    monkeypatch.setattr(numpy_threads, "OWN_CGROUP", str(tmp_path / "proc"))

    def write(relative_path: str, text: str) -> None:
        path = tmp_path / ("proc" if relative_path == "proc" else f"sys/{relative_path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return write


@pytest.mark.parametrize("files, expected", [
    ({}, 8),  # no cgroup files: the affinity
    ({"cpu.max": "max 100000\n"}, 8),  # v2 without a quota
    ({"cpu.max": "200000 100000\n"}, 2),  # v2: 2 CPUs
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu.max": "1600000 100000\n"}, 8),  # a quota above the affinity: the affinity
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 8),  # v1 without a quota
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # v1: 3 CPUs
    ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
])
def test_a_containers_cpu_quota_caps_the_threads(eight_cpus, files, expected):
    for path, text in files.items():
        eight_cpus(path, text)
    assert numpy_threads.threads() == expected


_V1 = "12:memory:/m\n4:cpu,cpuacct:/docker/c1\n0::/\n"  # (v1's cpu controller: /docker/c1)


@pytest.mark.parametrize("files, expected", [
    ({"proc": "0::/a/b\n", "a/b/cpu.max": "max 100000\n", "a/cpu.max": "150000 100000\n"}, 2),  # a parent's
    ({"proc": "0::/a/b\n", "a/b/cpu.max": "100000 100000\n", "a/cpu.max": "300000 100000\n"}, 1),  # the smallest
    ({"proc": "0::/a/b\n", "a/b/cpu.max": "max 100000\n", "cpu.max": "400000 100000\n"}, 4),  # a level absent
    ({"proc": "0::/a/b\n", "a/b/cpu.max": "max 100000\n", "a/cpu.max": "max 100000\n"}, 8),  # no quota on the path
    ({"proc": "0::/elsewhere\n", "a/cpu.max": "100000 100000\n"}, 8),  # another cgroup's quota
    ({"proc": _V1, "cpu/docker/c1/cpu.cfs_quota_us": "-1\n", "cpu/docker/c1/cpu.cfs_period_us": "100000\n",
      "cpu/docker/cpu.cfs_quota_us": "200000\n", "cpu/docker/cpu.cfs_period_us": "100000\n"}, 2),  # v1: a parent's
    # v1, a container without its own cgroup namespace: its cgroup is the mount's root, its path the host's
    ({"proc": _V1, "cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"proc": _V1, "cpu/m/cpu.cfs_quota_us": "100000\n", "cpu/m/cpu.cfs_period_us": "100000\n"}, 8),  # memory's path
])
def test_the_quota_of_the_processs_own_cgroup_and_its_parents_caps_the_threads(eight_cpus, files, expected):
    """The quota is read along the process's own cgroup path (``/proc/self/cgroup``) up to the root of the
    mount: only the root was read (a quota on the process's cgroup or a parent of it below the mount's
    root was missed)."""
    for path, text in files.items():
        eight_cpus(path, text)
    assert numpy_threads.threads() == expected


def test_the_thread_setting_overrides_the_cpu_quota(eight_cpus, monkeypatch):
    eight_cpus("cpu.max", "100000 100000\n")
    assert numpy_threads.threads() == 1
    monkeypatch.setenv("CUPY_AD_NUM_THREADS", "4")
    assert numpy_threads.threads() == 4
