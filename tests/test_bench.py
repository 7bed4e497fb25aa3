"""The benchmark's command line runs: every op, the scan row, the CSV, --breakdown, and --peers (the
peer columns appear when JAX / PyTorch are installed and are left out, with a message, when not)."""
from __future__ import annotations

import csv
import importlib.util

import cupy_ad.__main__ as cli


def test_bench_runs_every_op_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    status = cli.main(["bench", "--sizes", "4", "--dtypes", "float64", "--batch", "3", "--breakdown",
                       "--min-time", "0.001", "--csv", str(out)])
    assert status == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["op"] for r in rows} == {"lu_factor", "qr", "svd", "eigh", "cholesky", "scan"}
    assert {r["shape"] for r in rows} == {"4x4", "3x16x16"}
    for r in rows:
        assert float(r["ours_ms"]) > 0 and float(r["primal_ms"]) > 0 and float(r["extra_memory_inputs"]) >= 0
    printed = capsys.readouterr().out
    assert "scan 4x4 float64:" in printed and "kernels" in printed and "us per bind" in printed


def test_bench_with_peers(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    status = cli.main(["bench", "--ops", "svd", "--sizes", "4", "--dtypes", "float64", "--batch", "0", "--peers",
                       "--repeat", "2", "--min-time", "0.001", "--case-timeout", "120", "--csv", str(out)])
    assert status == 0  # (1 would mean a JVP disagreeing with a peer's)
    row, = list(csv.DictReader(open(out)))
    errors = capsys.readouterr().err
    for system, module in (("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec(module) is None:
            assert f"{system} not installed" in errors and not row[f"{system}_ms"]
        else:
            assert float(row[f"{system}_ms"]) > 0 and row[f"{system}_agrees"] == "True"
