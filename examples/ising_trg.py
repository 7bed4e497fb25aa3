"""Energy and specific heat of the 2-D Ising model by differentiating a tensor renormalisation group.

Levin & Nave's TRG (PRL 99, 120601 (2007)) coarse-grains the partition function Z of the square
lattice Ising model (J = 1): every step splits each tensor along a diagonal by a truncated SVD,
a = X Y^T with X = U_k S_k^1/2, Y = V_k S_k^1/2 (``xp.linalg.svd_split``), and contracts four
halves around each plaquette into the tensor of a lattice with half as many sites. ln Z per site
is a function of the inverse temperature beta written in array-API code; ``cupy_ad.jvp`` gives the
energy per site u = -d lnZ/d beta and nested ``jvp`` the specific heat C = beta^2 d^2 lnZ / d beta^2,
compared with Onsager's exact solution. Run ``python examples/ising_trg.py --plot`` (writes
examples/ising_trg.png); ``--backend cupy`` runs it on a GPU.

Why svd_split: the kept spectrum of these SVDs is made of multiplets (Z2 doublets in the ordered
phase) that stay degenerate under the change of beta. svd_split's derivative is the horizontal lift
of the pair (X, Y), which involves only s_i + s_j inside the kept block and the truncation gap, so
nothing divides by the splitting of a multiplet. ``--split svd`` runs the same program with a plain
``svd`` and S^1/2 taken by hand, for comparison: its energy is off by ~5e-6 in the ordered phase,
and its d^2 lnZ / d beta^2 is NaN at every beta (the rank-deficient SVDs' zero blocks, whose second
derivatives plain ``svd`` does not give; README, "Tensor networks").
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from array_api_compat import array_namespace

import cupy_ad as ad


def ising_tensor(beta):
    """T[u, r, d, l] = sum_s W[s, u] W[s, r] W[s, d] W[s, l], W W^T = exp(beta s s') (one spin per site)."""
    xp = array_namespace(beta)
    c, s = xp.sqrt(xp.cosh(beta)), xp.sqrt(xp.sinh(beta))
    w = xp.stack([xp.stack([c, s]), xp.stack([c, -s])])  # w[spin, leg]
    legs = [xp.reshape(w, shape) for shape in ((2, 2, 1, 1, 1), (2, 1, 2, 1, 1), (2, 1, 1, 2, 1), (2, 1, 1, 1, 2))]
    return xp.sum(legs[0] * legs[1] * legs[2] * legs[3], axis=0)


def make_split(name):
    """The truncated split m ~= X Y^T: ``svd_split`` (``ad.linalg.svd_split``, also ``xp.linalg.svd_split``
    of cupy_ad's namespace; it takes plain arrays too), or a plain ``svd`` with S^1/2 taken by hand."""
    def split(m, k):
        if name == "svd_split":
            return ad.linalg.svd_split(m, k)
        xp = array_namespace(m)
        u, s, vh = xp.linalg.svd(m, full_matrices=False)
        kept = s[:k] > 1e-12 * s[0]  # rank-deficient early steps: rounding noise is a zero
        root = xp.where(kept, xp.sqrt(xp.where(kept, s[:k], 1.0)), 0.0)
        return u[:, :k] * root, vh[:k, :].mT * root

    return split


def trg_step(t, chi, split):
    """One Levin-Nave step: T[u, r, d, l] (bond dimension D) to the tensor of the 45-degree rotated
    lattice with half the sites, bond dimension k = min(chi, D^2)."""
    xp = array_namespace(t)
    d = t.shape[0]
    k = min(chi, d * d)
    x1, y1 = split(xp.reshape(xp.permute_dims(t, (0, 3, 1, 2)), (d * d, d * d)), k)  # (u l) | (r d)
    x2, y2 = split(xp.reshape(t, (d * d, d * d)), k)  # (u r) | (d l)
    f1, f3, f2, f4 = (xp.reshape(f, (d, d, k)) for f in (x1, y1, x2, y2))
    # around a plaquette: F3[i, j, a] (up-left site), F4[m, i, b] (up-right), F1[m, n, c] (down-right),
    # F2[j, n, e] (down-left); the new legs a, b, c, e point up, right, down, left of the rotated lattice
    g = xp.tensordot(f3, f4, axes=([0], [1]))  # (j, a, m, b)
    h = xp.tensordot(f1, f2, axes=([1], [1]))  # (m, c, j, e)
    return xp.tensordot(g, h, axes=([0, 2], [2, 0]))  # (a, b, c, e)


def log_z_per_site(beta, chi=16, steps=20, split="svd_split"):
    """ln Z / N of the TRG with bond dimension ``chi`` after ``steps`` coarse-graining steps
    (2^steps sites per final tensor, closed by its trace)."""
    xp = array_namespace(beta)
    how = make_split(split)
    t = ising_tensor(beta)
    log_z, weight = 0.0, 1.0
    for _ in range(steps):
        norm = xp.sqrt(xp.sum(t * t))
        t = t / norm
        log_z = log_z + weight * xp.log(norm)
        t = trg_step(t, chi, how)
        weight /= 2
    d = t.shape[0]
    return log_z + weight * xp.log(xp.linalg.trace(xp.reshape(t, (d * d, d * d))))


def energy_and_specific_heat(beta, **kw):
    """(ln Z / N, u, C): u = -d lnZ/d beta by jvp, C = beta^2 d^2 lnZ/d beta^2 by nested jvp."""
    one = array_namespace(beta).ones_like(beta)

    def slope(b):
        return ad.jvp(lambda x: log_z_per_site(x, **kw), (b,), (one,))[1]

    (log_z, first), (_, second) = ad.jvp(lambda b: (log_z_per_site(b, **kw), slope(b)), (beta,), (one,))
    return float(log_z), -float(first), float(beta) ** 2 * float(second)


def onsager(beta):
    """Onsager's exact (ln Z / N, u, C) per site of the square lattice, J = 1 (reference only)."""
    from scipy.integrate import quad
    from scipy.special import ellipe, ellipk

    k = 2 * math.sinh(2 * beta) / math.cosh(2 * beta) ** 2
    m = k * k  # scipy's parameter is the modulus squared
    t2 = math.tanh(2 * beta) ** 2
    coth = 1 / math.tanh(2 * beta)
    kk, ee = ellipk(m), ellipe(m)
    u = -coth * (1 + (2 * t2 - 1) * (2 / math.pi) * kk)
    c = (4 / math.pi) * (beta * coth) ** 2 * (kk - ee - (1 - t2) * (math.pi / 2 + (2 * t2 - 1) * kk))
    integrand = lambda th: math.log((1 + math.sqrt(max(0.0, 1 - m * math.sin(th) ** 2))) / 2)  # noqa: E731
    log_z = math.log(2 * math.cosh(2 * beta)) + quad(integrand, 0, math.pi, limit=200)[0] / (2 * math.pi)
    return log_z, u, c


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chi", type=int, default=16, help="bond dimension (16 to 32)")
    parser.add_argument("--steps", type=int, default=20, help="coarse-graining steps (2^steps sites)")
    parser.add_argument("--points", type=int, default=31, help="number of beta values in [0.3, 0.6]")
    parser.add_argument("--split", choices=["svd_split", "svd"], default="svd_split")
    parser.add_argument("--backend", default="numpy", help="numpy, cupy or array_api_strict")
    parser.add_argument("--plot", action="store_true", help="write examples/ising_trg.png")
    args = parser.parse_args()
    xp = ad.namespace(args.backend).backend.xp
    betas = [0.3 + 0.3 * i / (args.points - 1) for i in range(args.points)]
    rows = []
    print(f"{'beta':>7} {'-u TRG':>13} {'-u exact':>13} {'C TRG':>12} {'C exact':>12}   seconds")
    for b in betas:
        start = time.perf_counter()
        _, u, c = energy_and_specific_heat(xp.asarray(b, dtype=xp.float64), chi=args.chi, steps=args.steps,
                                           split=args.split)
        _, u_exact, c_exact = onsager(b)
        rows.append((b, u, c, u_exact, c_exact))
        print(f"{b:7.4f} {-u:13.10f} {-u_exact:13.10f} {c:12.8f} {c_exact:12.8f}   {time.perf_counter() - start:.2f}")
    if args.plot:
        plot(rows, args, Path(__file__).with_suffix(".png"))


def plot(rows, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fine = [0.3 + 0.3 * i / 600 for i in range(601)]
    exact = [onsager(b) for b in fine]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    top.plot(fine, [-e[1] for e in exact], "k-", lw=1, label="Onsager (exact)")
    top.plot([r[0] for r in rows], [-r[1] for r in rows], "o", ms=4, label=f"TRG, jvp (chi = {args.chi})")
    top.set_ylabel("-u = d ln Z / d beta  (per site)")
    bottom.plot(fine, [e[2] for e in exact], "k-", lw=1, label="Onsager (exact)")
    bottom.plot([r[0] for r in rows], [r[2] for r in rows], "o", ms=4, label="TRG, nested jvp")
    bottom.set_ylabel("C = beta^2 d^2 ln Z / d beta^2")
    bottom.set_xlabel("beta (J = 1)")
    for ax in (top, bottom):
        ax.axvline(math.log(1 + math.sqrt(2)) / 2, color="0.7", ls=":", lw=1)
        ax.legend(frameon=False)
    fig.suptitle(f"2-D Ising model: TRG ({args.steps} steps, svd_split) differentiated by cupy_ad")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
