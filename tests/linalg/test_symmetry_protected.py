"""Issue 13: first-order tangents of svd/eigh at symmetry-protected multiplets.

A = diag(B, B) perturbed by dA = diag(dB, dB) keeps every value an exact doublet (a Z2 symmetry), so
the first-order splittings mu of a doublet coincide too, computed apart only by rounding. Outputs
invariant under rotations within multiplets (the truncation U_k S_k V_k^H at a gap, spectral
projectors) must match central finite differences to ~1e-9, also with other doublets close by
(the basis of a doublet, hence its mu, is then resolved only to eps / gap).
"""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad
from cupy_ad.linalg._matrix import mH


def z2_pair(values, dtype, seed, hermitian=False):
    rng = np.random.default_rng(seed)
    n = len(values)
    complex_ = np.issubdtype(dtype, np.complexfloating)

    def unitary():
        z = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
        return np.linalg.qr(z)[0]

    q = unitary()
    b = (q * values) @ np.conj(q.T) if hermitian else (q * values) @ np.conj(unitary().T)
    db = rng.standard_normal((n, n)) + (1j * rng.standard_normal((n, n)) if complex_ else 0)
    if hermitian:
        db = db + np.conj(db.T)
    z = np.zeros((n, n))
    a, da = np.block([[b, z], [z, b]]), np.block([[db, z], [z, db]])
    n = 2 * n  # a generic basis: no structural zeros the decomposition could keep exactly
    q1 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    q2 = q1 if hermitian else np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (q1 @ a @ q2.T).astype(dtype), (q1 @ da @ q2.T).astype(dtype)


def relative_error(backend, f, a, da, h=2e-4):
    """jvp against Richardson-extrapolated central differences (error O(h^4), rounding eps / h)."""
    _, tangent = ad.jvp(f, (backend.asarray(a),), (backend.asarray(da),))
    central = lambda t: (backend.to_numpy(f(backend.asarray(a + t * da)))  # noqa: E731
                         - backend.to_numpy(f(backend.asarray(a - t * da)))) / (2 * t)
    fd = (4 * central(h / 2) - central(h)) / 3
    return np.abs(backend.to_numpy(tangent) - fd).max() / np.abs(fd).max()


# the second doublet at a relative distance gap below the first; the cut (k = 4) under it
GAPS = [0.0, 1e-15, 1e-6, 2e-3, 1e-1, 0.5]


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_svd_truncation_and_projectors(backend, dtype, gap):
    ns = backend.ns
    a, da = z2_pair([1.0, 1.0 - gap, 0.25, 0.1], dtype, seed=1)

    def f(m):
        u, s, vh = ad.linalg.svd(m)
        uk = u[..., :4]
        trunc = ns.matmul(uk * ns.expand_dims(s[..., :4], axis=-2), vh[..., :4, :])
        return ns.concat([trunc, ns.matmul(uk, mH(uk)), ns.matmul(mH(vh[..., :4, :]), vh[..., :4, :])], axis=-1)

    assert relative_error(backend, f, a, da) < 1e-9


@pytest.mark.parametrize("gap", GAPS)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_eigh_projectors(backend, dtype, gap):
    ns = backend.ns
    a, da = z2_pair([1.0, 1.0 - gap, 0.25, -0.3], dtype, seed=2, hermitian=True)

    def f(m):
        w, v = ad.linalg.eigh(m)
        top = v[..., 4:]  # the two upper doublets
        return ns.concat([ns.matmul(top, mH(top)), ns.matmul(v * ns.expand_dims(ns.exp(w), axis=-2), mH(v))], axis=-1)

    assert relative_error(backend, f, a, da) < 1e-9
