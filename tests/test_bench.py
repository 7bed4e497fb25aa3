"""The benchmark's command line runs (without peers): every op, the scan row, the CSV and --breakdown."""
from __future__ import annotations

import csv

import cupy_ad.__main__ as cli


def test_bench_runs_every_op_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    status = cli.main(["bench", "--sizes", "4", "--dtypes", "float64", "--batch", "3", "--breakdown", "--csv", str(out)])
    assert status == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["op"] for r in rows} == {"lu_factor", "qr", "svd", "eigh", "cholesky", "scan"}
    assert {r["shape"] for r in rows} == {"4x4", "3x16x16"}
    for r in rows:
        assert float(r["ours_ms"]) > 0 and float(r["primal_ms"]) > 0 and float(r["extra_memory_inputs"]) >= 0
    printed = capsys.readouterr().out
    assert "scan 4x4 float64:" in printed and "kernels" in printed and "us per bind" in printed
