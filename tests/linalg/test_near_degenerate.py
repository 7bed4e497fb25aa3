"""Issue 13, item 1(a): plain svd / eigh at near-degenerate values that are not a cluster.

Returning U, S, V (or V, w) separately, the exact in-pair rotation is ~|P| / gap, and an invariant
output (here the projector on the pair, the truncation U_2 S_2 V_2^H) cancels terms of that size:
its first-order error is ~eps / gap, a floor no rule for the separate factors can beat (clustering
wider trades it for errors in truncations through the pair; README, "Repeated eigenvalues"). These
tests pin that floor across relative gaps 1e-15 .. 1e-1 (exact at a cluster, gap <= ~32 eps).
"""
from __future__ import annotations

import numpy as np
import pytest

import cupy_ad as ad
from test_degenerate import direction, hermitian_with, with_singular_values
from test_symmetry_protected import relative_error

EPS = float(np.finfo(np.float64).eps)
GAPS = [0.0, 1e-15, 1e-13, 1e-11, 1e-9, 1e-7, 1e-5, 1e-3, 1e-1]


def floor(gap):
    """the bound (errors against Richardson central differences; the outputs are smooth: the pair is
    whole): Richardson's own error, and 10 eps / gap above the cluster tolerance"""
    return 5e-10 + (10 * EPS / gap if gap > 32 * EPS else 0.0)


@pytest.mark.parametrize("gap", GAPS)
def test_svd_truncation_error_stays_at_the_floor(backend, gap):
    a = with_singular_values([1.0, 1.0 - gap, 0.3, 0.1], 5, 4, np.float64, seed=1)

    def f(m):
        u, s, vh = ad.linalg.svd(m, full_matrices=False)
        return (u[..., :, :2] * s[..., None, :2]) @ vh[..., :2, :]

    assert relative_error(backend, f, a, direction((5, 4), np.float64, 11), h=1e-3) <= floor(gap)


@pytest.mark.parametrize("gap", GAPS)
def test_eigh_projector_error_stays_at_the_floor(backend, gap):
    a = hermitian_with([0.1, 0.3, 1.0 - gap, 1.0], np.float64, seed=1)
    da = direction((4, 4), np.float64, 11)

    def f(m):
        _, v = ad.linalg.eigh(m)
        return v[..., :, 2:] @ v[..., :, 2:].mT

    assert relative_error(backend, f, a, da + da.T, h=1e-3) <= floor(gap)
