"""The showcase examples/ising_trg.py, small: bond dimension 8, 10 steps, against finite differences of
the same program (first order) and Richardson finite differences of its jvp (second order), in the
disordered phase, near and in the ordered phase."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import cupy_ad as ad

_spec = importlib.util.spec_from_file_location("ising_trg", Path(__file__).parents[1] / "examples" / "ising_trg.py")
ising_trg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ising_trg)

CHI, STEPS = 8, 10


def log_z(beta):
    return ising_trg.log_z_per_site(beta, chi=CHI, steps=STEPS)


@pytest.mark.parametrize("beta", [0.4, 0.5, 0.6])
def test_energy_and_specific_heat_match_finite_differences(backend, beta):
    b = backend.asarray(np.float64(beta))
    one = backend.asarray(np.float64(1.0))

    def at(x):
        return backend.asarray(np.float64(x))

    def first(x):
        return float(backend.to_numpy(ad.jvp(log_z, (at(x),), (one,))[1]))

    value, slope = ad.jvp(log_z, (b,), (one,))
    assert float(backend.to_numpy(value)) == pytest.approx(float(backend.to_numpy(log_z(b))), rel=1e-14)
    h = 1e-5
    fd = (float(backend.to_numpy(log_z(at(beta + h)))) - float(backend.to_numpy(log_z(at(beta - h))))) / (2 * h)
    assert float(backend.to_numpy(slope)) == pytest.approx(fd, rel=1e-8)
    second = ad.jvp(lambda x: ad.jvp(log_z, (x,), (one,))[1], (b,), (one,))[1]
    h = 1e-3
    central = lambda step: (first(beta + step) - first(beta - step)) / (2 * step)  # noqa: E731
    richardson = (4 * central(h / 2) - central(h)) / 3
    assert float(backend.to_numpy(second)) == pytest.approx(richardson, rel=1e-7)


def test_close_to_onsager():
    """The small TRG is already close to the exact solution away from the critical point."""
    for beta in (0.5,):
        _, u, c = ising_trg.energy_and_specific_heat(np.asarray(beta), chi=CHI, steps=STEPS)
        _, u_exact, c_exact = ising_trg.onsager(beta)
        assert u == pytest.approx(u_exact, rel=1e-3) and c == pytest.approx(c_exact, rel=2e-2)


def test_plain_svd_split_stays_finite_at_protected_doublets():
    """The same TRG with a plain svd (S^1/2 by hand) in the ordered phase: its kept spectrum is Z2
    doublets whose first-order splittings coincide to rounding. Dividing by them (issue 13) gave
    9e22 at 14 steps; with the mixing 0 there, the slope matches finite differences up to the
    cancellation of near-degenerate neighbours' 1 / gap terms (about eps / gap)."""
    def f(x):
        return ising_trg.log_z_per_site(x, chi=CHI, steps=14, split="svd")

    beta, h = 0.6, 1e-6
    slope = float(ad.jvp(f, (np.asarray(beta),), (np.asarray(1.0),))[1])
    fd = (float(f(np.asarray(beta + h))) - float(f(np.asarray(beta - h)))) / (2 * h)
    assert slope == pytest.approx(fd, rel=1e-6)
