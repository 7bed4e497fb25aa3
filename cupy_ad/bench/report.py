"""The benchmark's table and figure."""
from __future__ import annotations

import os
import time
from typing import Any

COLUMNS = ["op", "shape", "dtype", "primal_ms", "ours_ms", "jax_ms", "torch_ms", "ours_over_primal",
           "ours_over_best_peer", "extra_memory_inputs", "jax_agrees", "torch_agrees"]
DIRECTION_COLUMNS = ["row", "ours_ms", "ours_alone_ms", "baseline", "baseline_ms", "jax_ms", "torch_ms", "ours_over_baseline",
                     "ours_over_jax", "fastest_ours_over_baseline", "fastest_ours_over_jax", "memory_over_output",
                     "targets", "jax_agrees", "torch_agrees"]


def format_table(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "NO"
        if isinstance(value, float):
            return f"{value:.3f}" if value < 100 else f"{value:.1f}"
        return str(value)

    table = [columns] + [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["| " + " | ".join(v.rjust(w) for v, w in zip(r, widths)) + " |" for r in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = sorted({r["op"] for r in rows})
    columns = min(3, len(ops))
    lines = -(-len(ops) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.4 * lines), squeeze=False)
    for ax in axes.flat[len(ops):]:
        ax.set_visible(False)
    for ax, op in zip(axes.flat, ops):
        square = [r for r in rows if r["op"] == op and r["shape"].count("x") == 1 and r["dtype"] == "float64"]
        n = [int(r["shape"].split("x")[0]) for r in square]
        for key, label in (("primal_ms", "primal"), ("ours_ms", "cupy_ad jvp"), ("jax_ms", "JAX jvp (jit)"),
                           ("torch_ms", "PyTorch jvp")):
            if square and key in square[0]:
                ax.loglog(n, [r[key] if isinstance(r[key], float) else float("nan") for r in square], marker="o",
                          label=label)
        ax.set_title(f"{op} (float64)")
        ax.set_xlabel("n")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine(backend: Any) -> str:
    """The machine in a few words, for the figure's title."""
    import platform

    if backend.name == "cupy":
        import cupy

        return cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
    return f"{os.cpu_count()} CPUs ({platform.machine()}), {time.strftime('%Y-%m-%d')}"

