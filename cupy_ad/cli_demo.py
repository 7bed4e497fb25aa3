"""The demo: ``jvp`` of composite functions on the default backend, checked against finite differences."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import cupy_ad as ad
from cupy_ad.bench.timing import median_seconds
from cupy_ad.testing import max_relative_error, random_tangents


def _mlp(w1: Any, w2: Any, x: Any) -> Any:
    xp = w1.__array_namespace__()
    return xp.sum(xp.log1p(xp.exp(w2 @ xp.tanh(w1 @ x))))


def _gp_log_likelihood(points: Any, y: Any, scale: Any) -> Any:
    """log N(y | 0, K) with K = exp(-|p_i - p_j|^2 / scale^2) + 0.1 I, by Cholesky."""
    xp = points.__array_namespace__()
    diff = points[:, None, :] - points[None, :, :]
    k = xp.exp(-xp.sum(diff * diff, axis=-1) / (scale * scale)) + 0.1 * xp.eye(points.shape[0])
    chol = ad.linalg.cholesky(k)
    alpha = ad.linalg.solve_triangular(chol, y, lower=True)
    return -0.5 * xp.sum(alpha * alpha) - xp.sum(xp.log(xp.linalg.diagonal(chol)))


def _top_eigenvalue(a: Any) -> Any:
    return ad.linalg.eigvalsh(a + a.mT)[..., -1]


def _nuclear_norm(a: Any) -> Any:
    xp = a.__array_namespace__()
    return xp.sum(ad.linalg.svd(a, full_matrices=False).S, axis=-1)


def _qr_log_volume(a: Any) -> Any:
    xp = a.__array_namespace__()
    return xp.sum(xp.log(xp.abs(xp.linalg.diagonal(ad.linalg.qr(a).R))), axis=-1)


def _lu_log_det(a: Any) -> Any:
    xp = a.__array_namespace__()
    lu, _ = ad.linalg.lu_factor(a)
    return xp.sum(xp.log(xp.abs(xp.linalg.diagonal(lu))), axis=-1)


def _rnn(w: Any, h0: Any, xs: Any) -> Any:
    """A tanh RNN over a sequence by ``ad.scan``; returns the sum of its outputs."""
    xp = w.__array_namespace__()
    h, ys = ad.scan(lambda h, x: (xp.tanh(w @ h + x),) * 2, h0, xs)
    return xp.sum(ys) + xp.sum(h)


def _solve_inv_slogdet(a: Any, b: Any) -> Any:
    return ad.linalg.slogdet(a).logabsdet + (ad.linalg.inv(a) @ ad.linalg.solve(a, b))[0, 0]


def _cases(backend: Any) -> list[tuple[str, Callable, tuple]]:
    rng = np.random.default_rng(0)

    def arr(*shape: int) -> Any:
        return backend.from_numpy(rng.standard_normal(shape))

    spd = rng.standard_normal((64, 64))
    return [
        ("mlp softplus(W2 tanh(W1 x))", _mlp, (arr(64, 32), arr(16, 64), arr(32, 8))),
        ("GP log-likelihood (cholesky)", _gp_log_likelihood,
         (arr(48, 2), arr(48), backend.from_numpy(np.asarray(1.3)))),
        ("top eigenvalue (eigh)", _top_eigenvalue, (arr(8, 32, 32),)),
        ("nuclear norm (svd)", _nuclear_norm, (arr(48, 32),)),
        ("log volume (qr)", _qr_log_volume, (arr(64, 48),)),
        ("log|det| (lu_factor)", _lu_log_det, (backend.from_numpy(spd + 8 * np.eye(64)),)),
        ("tanh RNN, 50 steps (scan)", _rnn, (arr(16, 16) / 4, arr(16), arr(50, 16))),
        ("solve + inv + slogdet", _solve_inv_slogdet, (backend.from_numpy(spd + 8 * np.eye(64)), arr(64, 3))),
    ]


def _median_ms(fn: Callable[[], Any], backend: Any) -> float:
    """Median milliseconds of repeated calls (at least 15, and 0.2 s) after 5 warm-up calls: the first
    calls pay for imports and caches, and single calls on a shared machine vary by tens of percent."""
    return 1e3 * median_seconds(fn, backend.synchronize, 0.2, warmup_calls=5, min_calls=15)


def run_demo(backend_name: str | None = None) -> int:
    if backend_name:
        ad.set_backend(backend_name)
    backend = ad.default_backend()
    print(f"cupy_ad {ad.__version__} demo on backend {backend.name}\n")
    header = f"{'function':34} {'shape':>14} {'dtype':>8} {'rel.err vs FD':>14} {'primal ms':>10} {'jvp ms':>9}"
    print(header)
    print("-" * len(header))
    failures = 0
    for name, fn, primals in _cases(backend):
        tangents = random_tangents(primals, seed=1)
        error = max_relative_error(fn, primals, tangents)
        primal_ms = _median_ms(lambda: fn(*primals), backend)
        jvp_ms = _median_ms(lambda: ad.jvp(fn, primals, tangents), backend)
        ok = error < 1e-6
        failures += not ok
        shape = "x".join(map(str, primals[0].shape))
        print(f"{name:34} {shape:>14} {str(primals[0].dtype).rsplit('.', 1)[-1]:>8} {error:14.2e} "
              f"{primal_ms:10.3f} {jvp_ms:9.3f}{'' if ok else '  FAIL'}")
    print(f"\n{'all checks passed' if not failures else f'{failures} check(s) FAILED'}")
    return 1 if failures else 0
