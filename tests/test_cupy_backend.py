"""The CuPy backend.

On every machine: ``import cupy_ad`` never imports CuPy, and the backend's layout logic (copies,
A vs A^T, triangles, pivots, QR modes, SVD of wide matrices, broadcasting of triangular solves,
empty inputs) runs on NumPy with LAPACK stand-ins that honour the cuSOLVER kernels' contract
(column-major in-place buffers, 1-based pivots, C-contiguity asserted) and is compared with the
NumPy backend. With a GPU (collected only then): the real kernels against NumPy, no host
synchronisation in any decomposition's jvp, no overwritten inputs, two streams, and
``cupyx.errstate(linalg="raise")``.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg.blas as blas
import scipy.linalg.lapack as lapack
from hypothesis import given, settings
from hypothesis import strategies as st

from cupy_ad.backends.cupy_backend import CupyBackend
from cupy_ad.backends.numpy_backend import NumpyBackend

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
SHAPES = [(4, 4), (6, 3), (3, 6), (1, 1), (2, 3, 5, 5), (3, 6, 4), (2, 4, 7), (0, 3, 3), (3, 0), (0, 4), (2, 0, 0)]


def _tol(dtype):
    return dict(rtol=2e-4, atol=2e-4) if np.dtype(dtype).char in "fF" else dict(rtol=1e-10, atol=1e-10)


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


def _lapack(name, dtype, complex_name=None):
    prefix = {"f": "s", "d": "d", "F": "c", "D": "z"}[np.dtype(dtype).char]
    return getattr(lapack, prefix + (complex_name if complex_name and prefix in "cz" else name))


class FakeKernels:
    """cupy_ad.backends.cusolver's contract on NumPy buffers, with LAPACK/BLAS doing the work.

    Buffers are C-contiguous (batch, cols, rows) arrays holding column-major matrices; the kernels
    write in place, pivots are 1-based, destroyed inputs are filled with NaN and the batched
    Cholesky's unused triangle with garbage, so that the backend cannot rely on them."""

    def __init__(self):
        self.infos = []

    @staticmethod
    def _buffer(x):
        assert x.flags.c_contiguous and x.ndim == 3, "kernels take C-contiguous (batch, cols, rows) buffers"

    def check_info(self, routine, info):
        self.infos.append((routine, info.copy()))

    def getrf(self, x):
        self._buffer(x)
        batch, n, m = x.shape
        ipiv, info = np.empty((batch, min(m, n)), np.int32), np.empty(batch, np.int32)
        for b in range(batch):
            lu, piv, info[b] = _lapack("getrf", x.dtype)(x[b].T)
            x[b], ipiv[b] = lu.T, piv + 1
        return ipiv, info

    def geqrf(self, x):
        self._buffer(x)
        batch, n, m = x.shape
        tau, info = np.empty((batch, min(m, n)), x.dtype), np.empty(batch, np.int32)
        for b in range(batch):
            qr, tau[b], _, info[b] = _lapack("geqrf", x.dtype)(x[b].T)
            x[b] = qr.T
        return tau, info

    def orgqr(self, q, ncols, k, tau):
        self._buffer(q)
        info = np.empty(q.shape[0], np.int32)
        for b in range(q.shape[0]):
            out, _, info[b] = _lapack("orgqr", q.dtype, "ungqr")(q[b, :ncols, :].T, tau[b, :k])
            q[b, :ncols, :] = out.T
        return info

    def gesvd(self, x, job):
        self._buffer(x)
        batch, n, m = x.shape
        assert m >= n
        ucols = m if job == "A" else n
        s = np.empty((batch, n), x.real.dtype)
        u = np.empty((batch, ucols, m), x.dtype) if job != "N" else None
        vt = np.empty((batch, n, n), x.dtype) if job != "N" else None
        info = np.empty(batch, np.int32)
        for b in range(batch):
            ub, s[b], vtb, info[b] = _lapack("gesvd", x.dtype)(x[b].T, compute_uv=int(job != "N"),
                                                               full_matrices=int(job == "A"))
            if job != "N":
                u[b], vt[b] = ub.T, vtb.T
        x[...] = np.nan
        return s, u, vt, info

    def syevd(self, x, lower, vectors):
        self._buffer(x)
        batch, n, _ = x.shape
        w, info = np.empty((batch, n), x.real.dtype), np.empty(batch, np.int32)
        for b in range(batch):
            w[b], v, info[b] = _lapack("syevd", x.dtype, "heevd")(x[b].T, compute_v=int(vectors), lower=int(lower))
            x[b] = v.T if vectors else np.nan
        return w, info

    def potrf_upper(self, x):
        self._buffer(x)
        batch, n, _ = x.shape
        info = np.empty(batch, np.int32)
        below = np.tril_indices(n, -1)
        for b in range(batch):
            c, info[b] = _lapack("potrf", x.dtype)(x[b].T, lower=0, clean=0)
            c[below] = 7.0
            x[b] = c.T
        return info

    def trsm(self, a, b, lower, trans, unit_diagonal):
        self._buffer(a)
        self._buffer(b)
        batch_a, n, _ = a.shape
        batch, k, _ = b.shape
        fn = getattr(blas, {"f": "s", "d": "d", "F": "c", "D": "z"}[a.dtype.char] + "trsm")
        opts = dict(side=0, lower=int(lower), trans_a=trans, diag=int(unit_diagonal))
        if batch_a == 1:
            rhs = b.reshape(batch * k, n)
            rhs[...] = fn(1.0, a[0].T, rhs.T, **opts).T
        else:
            assert batch_a == batch
            for i in range(batch):
                b[i] = fn(1.0, a[i].T, b[i].T, **opts).T

    def pivots_to_permutation(self, piv, m):
        assert piv.ndim == 2
        return NumpyBackend().lu_pivots_to_permutation(piv, m)


@pytest.fixture
def fake():
    return CupyBackend(cp=np, kernels=FakeKernels(), xp=None)


REF = NumpyBackend()


def _unchanged(fn, *arrays):
    copies = [a.copy() for a in arrays]
    out = fn(*arrays)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)
    return out


def _aligned(x, ref):
    """``x`` with each column multiplied by the unit phase that best aligns it with ``ref``'s."""
    inner = np.sum(np.conj(x) * ref, axis=-2, keepdims=True)
    phase = inner / np.where(np.abs(inner) == 0, 1, np.abs(inner))
    return x * phase


def _fortran(a):
    return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)


def test_import_cupy_ad_never_imports_cupy():
    code = ("import sys, cupy_ad, cupy_ad.backends.cupy_backend; import cupy_ad.linalg; "
            "cupy_ad.namespace('numpy'); print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cupy', 'cupyx', 'cupy_backends')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_kernel_has_a_native_cupy_version():
    """A kernel left to Backend's generic path would copy through the host (a synchronisation)."""
    from cupy_ad.backends.base import Backend

    generic = {"to_numpy", "from_numpy", "synchronize", "via_numpy", "matrix_rule", "tall_skinny",
               "in_place_form", "replay_form", "replay_scalar", "dense", "dense_result",  # (jit's hooks; the
               # base's answers: no reuse, fn, the number, no dense forms)
               "unit_rows", "zeros",  # (the base's xp.eye and xp.zeros run on the device)
               "writable"}  # (CuPy's views are writable: the base's answer, x)
    kernels = [n for n, v in vars(Backend).items() if callable(v) and not n.startswith("_") and n not in generic]
    assert len(kernels) >= 9
    assert [n for n in kernels if getattr(CupyBackend, n) is getattr(Backend, n)] == []


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_lu_factor_matches_scipy(fake, shape, dtype):
    a = _random(shape, dtype, 1)
    lu, piv = _unchanged(fake.lu_factor, a)
    k = min(shape[-2:])
    assert lu.shape == shape and piv.shape == (*shape[:-2], k) and piv.dtype == np.int32
    if a.size:
        ref_lu, ref_piv = REF.lu_factor(a)
        np.testing.assert_array_equal(piv, ref_piv)
        np.testing.assert_allclose(lu, ref_lu, **_tol(dtype))
    perm = fake.lu_pivots_to_permutation(piv, shape[-2])
    assert perm.shape == (*shape[:-2], shape[-2]) and perm.dtype == np.int32
    if a.size:
        np.testing.assert_array_equal(perm, REF.lu_pivots_to_permutation(piv, shape[-2]))


@pytest.mark.parametrize("mode", ["reduced", "complete", "r", "raw"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qr_matches_numpy(fake, shape, dtype, mode):
    a = _random(shape, dtype, 2)
    out = _unchanged(lambda x: fake.qr(x, mode), a)
    ref = np.linalg.qr(a, mode=mode)
    outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
    for o, r in zip(outs, refs):
        assert o.shape == r.shape and o.dtype == r.dtype, (o.shape, r.shape, o.dtype, r.dtype)
        if a.size:
            np.testing.assert_allclose(o, r, **_tol(dtype))
    if mode == "complete" and a.size == 0:
        np.testing.assert_array_equal(out[0], np.broadcast_to(np.eye(shape[-2]), out[0].shape))


def test_qr_rejects_unknown_mode(fake):
    with pytest.raises(ValueError, match="mode"):
        fake.qr(np.eye(3), "economic")


@pytest.mark.parametrize("full_matrices", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_svd_matches_numpy(fake, shape, dtype, full_matrices):
    a = _random(shape, dtype, 3)
    u, s, vh = _unchanged(lambda x: fake.svd(x, full_matrices), a)
    ref_u, ref_s, ref_vh = np.linalg.svd(a, full_matrices=full_matrices)
    for o, r in ((u, ref_u), (s, ref_s), (vh, ref_vh)):
        assert o.shape == r.shape and o.dtype == r.dtype
    np.testing.assert_allclose(fake.svdvals(a), ref_s, **_tol(dtype))
    if not a.size:
        return
    tol = _tol(dtype)
    np.testing.assert_allclose(s, ref_s, **tol)
    k = s.shape[-1]
    uk = u[..., :k]
    np.testing.assert_allclose(_aligned(uk, ref_u[..., :k]), ref_u[..., :k], **tol)
    vk = np.conj(np.swapaxes(vh[..., :k, :], -1, -2))
    ref_vk = np.conj(np.swapaxes(ref_vh[..., :k, :], -1, -2))
    np.testing.assert_allclose(_aligned(vk, ref_vk), ref_vk, **tol)
    np.testing.assert_allclose((uk * s[..., None, :]) @ vh[..., :k, :], a, **tol)
    for q in (u, vh):  # unitary, also the completed columns in full mode
        eye = np.eye(q.shape[-1] if q is u else q.shape[-2])
        gram = np.conj(np.swapaxes(q, -1, -2)) @ q if q is u else q @ np.conj(np.swapaxes(q, -1, -2))
        np.testing.assert_allclose(gram, np.broadcast_to(eye, gram.shape), **tol)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 4), (1, 1), (2, 3, 5, 5), (0, 3, 3), (0, 0)])
def test_eigh_reads_one_triangle_as_numpy(fake, shape, dtype, lower):
    a = _random(shape, dtype, 4)  # not Hermitian: only one triangle may be read
    w, v = _unchanged(lambda x: fake.eigh(x, lower), a)
    ref_w, ref_v = np.linalg.eigh(a, UPLO="L" if lower else "U")
    assert w.shape == ref_w.shape and w.dtype == ref_w.dtype and v.shape == ref_v.shape and v.dtype == ref_v.dtype
    np.testing.assert_allclose(fake.eigvalsh(a, lower), ref_w, **_tol(dtype))
    if a.size:
        np.testing.assert_allclose(w, ref_w, **_tol(dtype))
        np.testing.assert_allclose(_aligned(v, ref_v), ref_v, **_tol(dtype))


def _hermitian_pd(shape, dtype, seed=5):
    a = _random(shape, dtype, seed).astype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)
    n = shape[-1]
    spd = a @ np.conj(np.swapaxes(a, -1, -2)) + n * np.eye(n)
    garbage = _random(shape, dtype, seed + 1) * 100  # in the triangle that must not be read
    return spd.astype(dtype), garbage


@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 4), (1, 1), (3, 5, 5), (2, 1, 3, 3), (0, 2, 2), (0, 0)])
def test_cholesky_matches_numpy(fake, shape, dtype, upper):
    spd, garbage = _hermitian_pd(shape, dtype)
    a = np.triu(spd) + np.tril(garbage, -1) if upper else np.tril(spd) + np.triu(garbage, 1)
    c = _unchanged(lambda x: fake.cholesky(x, upper), a)
    ref = np.linalg.cholesky(spd, upper=upper)
    assert c.shape == ref.shape and c.dtype == ref.dtype
    np.testing.assert_allclose(c, ref, **_tol(dtype))


def test_cholesky_failure_gives_nan_for_that_matrix_only(fake):
    spd, _ = _hermitian_pd((3, 4, 4), np.float64)
    spd[1] = -np.eye(4)
    c = fake.cholesky(spd, False)
    assert np.isnan(c[1]).all() and np.isfinite(c[[0, 2]]).all()
    np.testing.assert_allclose(c[0], np.linalg.cholesky(spd[0]))


def _triangular(shape, dtype, lower, seed=6):
    a = _random(shape, dtype, seed)
    n = shape[-1]
    return a + (3 * n) * np.eye(n, dtype=dtype)  # well conditioned in both triangles


SOLVE_CASES = [((4, 4), (4,)), ((4, 4), (4, 3)), ((3, 4, 4), (3, 4, 2)), ((3, 4, 4), (4, 2)),
               ((4, 4), (2, 3, 4, 2)), ((1, 4, 4), (3, 4, 1)), ((2, 1, 3, 3), (4, 3, 2)), ((3, 4, 4), (4,)),
               ((1, 1), (1, 5)), ((0, 3, 3), (3, 2)), ((3, 3), (3, 0)), ((0, 0), (0,))]


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("trans", [0, 1, 2])
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("a_shape, b_shape", SOLVE_CASES)
def test_solve_triangular_matches_scipy(fake, a_shape, b_shape, dtype, lower, trans, order):
    a = _triangular(a_shape, dtype, lower)
    a = _fortran(a) if order == "F" else a
    b = _random(b_shape, dtype, 7)
    for unit in (False, True):
        x = _unchanged(lambda p, q: fake.solve_triangular(p, q, lower=lower, trans=trans, unit_diagonal=unit), a, b)
        if a.size == 0 or b.size == 0:
            batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2] if len(b_shape) > 1 else ())
            assert x.shape == (*batch, *b_shape[-2 if len(b_shape) > 1 else -1:])
            continue
        ref = REF.solve_triangular(a, b, lower=lower, trans=trans, unit_diagonal=unit)
        assert x.shape == ref.shape and x.dtype == ref.dtype
        np.testing.assert_allclose(x, ref, **_tol(dtype))


def test_solve_triangular_mixed_dtypes_and_validation(fake):
    a = _triangular((3, 3), np.float32, True)
    b = _random((3, 2), np.complex128, 8)
    x = fake.solve_triangular(a, b, lower=True, trans=0, unit_diagonal=False)
    ref = REF.solve_triangular(a, b, lower=True, trans=0, unit_diagonal=False)
    assert x.dtype == ref.dtype == np.complex128
    np.testing.assert_allclose(x, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="incompatible"):
        fake.solve_triangular(a, np.ones((4, 2)), lower=True, trans=0, unit_diagonal=False)
    with pytest.raises(ValueError, match="square"):
        fake.solve_triangular(np.ones((3, 4)), np.ones((4, 2)), lower=True, trans=0, unit_diagonal=False)


def test_integer_input_is_promoted(fake):
    a = np.array([[4, 1], [1, 3]])
    np.testing.assert_allclose(fake.eigvalsh(a, True), np.linalg.eigvalsh(a))
    assert fake.lu_factor(a)[0].dtype == np.float64


@settings(max_examples=15, deadline=None)
@given(batch=st.lists(st.integers(0, 3), max_size=2), m=st.integers(0, 6), n=st.integers(0, 6),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_property_shapes(batch, m, n, dtype, seed):
    backend = CupyBackend(cp=np, kernels=FakeKernels(), xp=None)
    a = _random((*batch, m, n), dtype, seed)
    lu, piv = backend.lu_factor(a)
    q, r = backend.qr(a, "reduced")
    u, s, vh = backend.svd(a, False)
    assert lu.shape == a.shape and piv.shape == (*batch, min(m, n))
    tol = _tol(dtype)
    if a.size:
        np.testing.assert_allclose(q @ r, a, **tol)
        np.testing.assert_allclose((u * s[..., None, :]) @ vh, a, **tol)
        assert np.all(np.diff(s, axis=-1) <= tol["atol"])  # descending
        np.testing.assert_array_equal(piv, REF.lu_factor(a)[1])


# ---------------------------------------------------------------------------------------------
# With a GPU only (these tests are not collected without one).
def _gpu_present() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CuPy or no GPU
        return False


def _cupy_importable() -> bool:
    try:
        import cupy  # noqa: F401

        return True
    except Exception:  # noqa: BLE001
        return False


if _cupy_importable():
    def test_cupy_modules_import_without_touching_the_device():
        import cupy_ad.backends.cusolver as kernels

        assert callable(kernels.getrf) and callable(kernels.check_info)


if _gpu_present():
    import warnings

    import cupy
    import cupyx

    import cupy_ad as ad

    class _OnDevice:
        """The real CuPy backend behind the fake's interface: NumPy in, NumPy out; checks that the
        device inputs are unchanged after each call."""

        def __init__(self):
            self.backend = CupyBackend()

        def __getattr__(self, name):
            fn = getattr(self.backend, name)

            def call(*args, **kwargs):
                dev = [cupy.asarray(x) if isinstance(x, np.ndarray) else x for x in args]
                copies = [x.copy() for x in dev if isinstance(x, cupy.ndarray)]
                out = fn(*dev, **kwargs)
                for x, c in zip([x for x in dev if isinstance(x, cupy.ndarray)], copies):
                    assert bool(cupy.all((x == c) | (cupy.isnan(x) & cupy.isnan(c)))), "input overwritten"
                if isinstance(out, tuple):
                    return tuple(cupy.asnumpy(o) for o in out)
                return cupy.asnumpy(out)

            return call

    @pytest.fixture
    def gpu():
        return _OnDevice()

    # The fake's comparisons again, on the real kernels, plus shapes that take the looped paths
    # (batches of matrices too large for the batched routines).
    GPU_SHAPES = SHAPES + [(2, 40, 40), (2, 45, 33), (2, 33, 45)]

    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", GPU_SHAPES + [(2, 300, 300)])
    def test_gpu_lu_factor(gpu, shape, dtype):
        test_lu_factor_matches_scipy(gpu, shape, dtype)

    @pytest.mark.parametrize("mode", ["reduced", "complete", "r", "raw"])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", GPU_SHAPES)
    def test_gpu_qr(gpu, shape, dtype, mode):
        """Up to the Householder sign convention (checked separately: R's diagonal is real, as the
        qr rule assumes): shapes, Q R = A, Q unitary, |R| and Q's leading columns as NumPy's."""
        a = _random(shape, dtype, 2)
        out = gpu.qr(a, mode)
        ref = np.linalg.qr(a, mode=mode)
        outs, refs = (out, ref) if isinstance(out, tuple) else ((out,), (ref,))
        for o, r in zip(outs, refs):
            assert o.shape == r.shape and o.dtype == r.dtype
        if not a.size:
            return
        tol, k = _tol(dtype), min(shape[-2:])
        r = np.triu(np.swapaxes(out[0], -1, -2)[..., :k, :]) if mode == "raw" else outs[-1][..., :k, :]
        ref_r = np.linalg.qr(a, mode="r")
        np.testing.assert_allclose(np.abs(r), np.abs(ref_r), **tol)
        np.testing.assert_array_equal(np.imag(np.diagonal(r, axis1=-2, axis2=-1)), 0)
        if mode in ("reduced", "complete"):
            q = out[0]
            np.testing.assert_allclose(q @ out[1], a, **tol)
            gram = np.conj(np.swapaxes(q, -1, -2)) @ q
            np.testing.assert_allclose(gram, np.broadcast_to(np.eye(q.shape[-1]), gram.shape), **tol)
            np.testing.assert_allclose(_aligned(q[..., :k], ref[0][..., :k]), ref[0][..., :k], **tol)

    @pytest.mark.parametrize("full_matrices", [False, True])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", GPU_SHAPES)
    def test_gpu_svd(gpu, shape, dtype, full_matrices):
        test_svd_matches_numpy(gpu, shape, dtype, full_matrices)

    @pytest.mark.parametrize("lower", [True, False])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", [(4, 4), (1, 1), (2, 3, 5, 5), (0, 3, 3), (3, 40, 40), (2, 60, 60)])
    def test_gpu_eigh(gpu, shape, dtype, lower):
        test_eigh_reads_one_triangle_as_numpy(gpu, shape, dtype, lower)

    @pytest.mark.parametrize("upper", [False, True])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("shape", [(4, 4), (1, 1), (3, 5, 5), (0, 2, 2), (2, 300, 300), (300, 300)])
    def test_gpu_cholesky(gpu, shape, dtype, upper):
        test_cholesky_matches_numpy(gpu, shape, dtype, upper)

    @pytest.mark.parametrize("order", ["C", "F"])
    @pytest.mark.parametrize("trans", [0, 1, 2])
    @pytest.mark.parametrize("lower", [True, False])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("a_shape, b_shape", SOLVE_CASES + [((2, 150, 150), (2, 150, 3))])
    def test_gpu_solve_triangular(gpu, a_shape, b_shape, dtype, lower, trans, order):
        test_solve_triangular_matches_scipy(gpu, a_shape, b_shape, dtype, lower, trans, order)

    def test_gpu_cholesky_failure_is_nan_and_errstate_raises(gpu):
        test_cholesky_failure_gives_nan_for_that_matrix_only(gpu)
        bad = cupy.asarray(-np.eye(3))
        with cupyx.errstate(linalg="raise"):
            with pytest.raises(np.linalg.LinAlgError):
                ad.linalg.cholesky(bad)
            with pytest.raises(np.linalg.LinAlgError):
                ad.linalg.lu_factor(cupy.zeros((2, 3, 3)))
        assert bool(cupy.isnan(ad.linalg.cholesky(bad)).all())

    def test_gpu_primal_matches_cupy():
        import cupyx.scipy.linalg

        a = cupy.asarray(_random((40, 30), np.float64, 9))
        lu, piv = ad.linalg.lu_factor(a[:30])
        ref_lu, ref_piv = cupyx.scipy.linalg.lu_factor(a[:30], check_finite=False)
        cupy.testing.assert_allclose(lu, ref_lu, rtol=1e-12, atol=1e-12)
        cupy.testing.assert_array_equal(piv, ref_piv)
        cupy.testing.assert_allclose(ad.linalg.svdvals(a), cupy.linalg.svd(a, compute_uv=False), rtol=1e-12)
        cupy.testing.assert_allclose(ad.linalg.eigvalsh(a[:30]), cupy.linalg.eigvalsh(a[:30]), rtol=1e-10, atol=1e-12)
        r, ref_r = ad.linalg.qr(a).R, cupy.linalg.qr(a)[1]
        cupy.testing.assert_allclose(cupy.abs(r), cupy.abs(ref_r), rtol=1e-10, atol=1e-12)

    def _jvp_cases():
        L, ns = ad.linalg, ad.namespace("cupy")

        def gram(x):  # Hermitian positive definite; the dual value stays on the left of operators
            return x @ ns.conj(ns.matrix_transpose(x)) + 6 * cupy.eye(6)

        return {
            "lu_factor": lambda x: L.lu_factor(x),
            "lu": lambda x: L.lu(x),
            "qr": lambda x: L.qr(x),
            "qr_complete_tall": lambda x: L.qr(x[..., :, :4], mode="complete"),
            "qr_r": lambda x: L.qr(x, mode="r"),
            "svd": lambda x: L.svd(x, full_matrices=False),
            "svd_wide": lambda x: L.svd(x[..., :4, :], full_matrices=False),
            "svdvals": lambda x: L.svdvals(x),
            "eigh": lambda x: L.eigh(x),
            "eigvalsh": lambda x: L.eigvalsh(x, UPLO="U"),
            "cholesky": lambda x: L.cholesky(gram(x)),
            "cholesky_upper": lambda x: L.cholesky(gram(x), upper=True),
            "solve_triangular": lambda x: L.solve_triangular(x + 6 * cupy.eye(6), x[..., :2], lower=True),
            "solve": lambda x: L.solve(x, x[..., :2]),
            "inv": lambda x: L.inv(x),
            "det": lambda x: L.det(x),
            "slogdet": lambda x: L.slogdet(x),
        }

    _GAUGE_FREE = ("qr", "qr_complete_tall", "qr_r", "svdvals", "eigvalsh", "cholesky", "cholesky_upper",
                   "solve_triangular", "solve", "inv", "det", "slogdet")

    @pytest.mark.parametrize("batch", [(), (3,)])
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("name", list(_jvp_cases()))
    def test_gpu_jvp_never_synchronises(name, dtype, batch):
        f = _jvp_cases()[name]
        a = cupy.asarray(_random((*batch, 6, 6), dtype, 10))
        t = cupy.asarray(_random((*batch, 6, 6), dtype, 11))
        a_copy, t_copy = a.copy(), t.copy()
        cupy.cuda.get_current_stream().synchronize()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # allow_synchronize is deprecated in CuPy, still the tool for this
            with cupyx.allow_synchronize(False):
                ad.jvp(f, (a,), (t,))
        cupy.testing.assert_array_equal(a, a_copy)
        cupy.testing.assert_array_equal(t, t_copy)
        if dtype in (np.float64, np.complex128) and name in _GAUGE_FREE:  # values, also off the no-sync path
            ad.check_jvp(f, (a,), (t,))

    def test_gpu_two_streams_concurrently():
        f = _jvp_cases()["svd"]
        g = _jvp_cases()["solve"]
        inputs = [tuple(cupy.asarray(_random((4, 6, 6), np.float64, s)) for s in (i, i + 50)) for i in range(2)]
        expected = [(cupy.asnumpy(ad.jvp(f, (a,), (t,))[1][1]), cupy.asnumpy(ad.jvp(g, (a,), (t,))[1]))
                    for a, t in inputs]
        cupy.cuda.Device().synchronize()  # the inputs were made on the default stream
        streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(2)]
        results = [[], []]
        for _ in range(3):  # interleave launches on the two streams
            for i, (stream, (a, t)) in enumerate(zip(streams, inputs)):
                with stream:
                    results[i].append((ad.jvp(f, (a,), (t,))[1][1], ad.jvp(g, (a,), (t,))[1]))
        for stream in streams:
            stream.synchronize()
        for i in range(2):
            for ds, dx in results[i]:
                np.testing.assert_allclose(cupy.asnumpy(ds), expected[i][0], rtol=1e-10, atol=1e-12)
                np.testing.assert_allclose(cupy.asnumpy(dx), expected[i][1], rtol=1e-10, atol=1e-12)
