"""The command line: the benchmark runs every op, the scan row, the CSV, --breakdown and --peers (the
peer columns appear when JAX / PyTorch are installed and are left out, with a message, when not);
its --help shows the defaults; --plot without matplotlib stops before the run and names the extra;
the demo passes its checks and times medians after a warm-up; the directions suite runs every row,
with the issue's targets, and its peers agree with ours; so does the jit suite."""
from __future__ import annotations

import csv
import importlib.util
import sys
import time

import pytest

import cupy_ad.__main__ as cli
from cupy_ad import cli_demo
from cupy_ad.bench import jit_rows
from cupy_ad.bench.directions import ROWS
from cupy_ad.bench.timing import median_and_fastest_seconds, median_seconds


def test_bench_runs_every_op_and_writes_csv(tmp_path, capsys):
    out, figure = tmp_path / "bench.csv", tmp_path / "bench.png"
    plot = ["--plot", str(figure)] if importlib.util.find_spec("matplotlib") else []  # matplotlib: the bench extra
    status = cli.main(["bench", "--sizes", "4", "--dtypes", "float64", "--batch", "3", "--breakdown",
                       "--min-time", "0.001", "--csv", str(out), *plot])
    assert status == 0
    assert not plot or figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out)))
    assert {r["op"] for r in rows} == {"lu_factor", "qr", "svd", "eigh", "cholesky", "scan"}
    assert {r["shape"] for r in rows} == {"4x4", "3x16x16"}
    for r in rows:
        assert float(r["ours_ms"]) > 0 and float(r["primal_ms"]) > 0 and float(r["extra_memory_inputs"]) >= 0
    printed = capsys.readouterr().out
    assert "scan 4x4 float64:" in printed and "kernels" in printed and "us per bind" in printed


def test_bench_with_peers(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default CSV goes to the working directory, the peers run from anywhere
    status = cli.main(["bench", "--ops", "svd", "--sizes", "4", "--dtypes", "float64", "--batch", "0", "--peers",
                       "--repeat", "2", "--min-time", "0.001", "--case-timeout", "120"])
    assert status == 0  # (1 would mean a JVP disagreeing with a peer's)
    row, = list(csv.DictReader(open(tmp_path / "bench.csv")))
    errors = capsys.readouterr().err
    for system, module in (("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec(module) is None:
            assert f"{system} not installed" in errors and not row[f"{system}_ms"]
        else:
            assert float(row[f"{system}_ms"]) > 0 and row[f"{system}_agrees"] == "True"


def test_bench_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for shown in ("--sizes N [N ...] n of the n x n matrices (default: 16 128 512 1024)",
                  "(default: float64 float32)", "(0: none) (default: 4096)", "(default: bench.csv)",
                  "(default: lu_factor qr svd eigh cholesky scan)", "(default: 0.2)", "(default: 90.0)"):
        assert shown in text


def test_bench_plot_without_matplotlib_stops_before_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--plot", str(tmp_path / "b.png"), "--csv", str(tmp_path / "b.csv")])
    assert exit_.value.code == 2
    assert 'pip install "cupy-ad[bench]"' in capsys.readouterr().err
    assert not (tmp_path / "b.csv").exists()  # nothing was timed


def test_median_seconds_warms_up_then_takes_the_median():
    """The slow first calls (warm-up) do not reach the median; the minimum counts of calls hold."""
    durations = iter([0.05] * 5 + [0.0] * 1000)
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(durations))

    seconds = median_seconds(fn, lambda: None, 0.0, warmup_calls=5, min_calls=15)
    assert len(calls) == 20 and seconds < 0.01
    durations = iter([0.05] * 5 + [0.002, 0.0] * 10)
    median, fastest = median_and_fastest_seconds(fn, lambda: None, 0.0, warmup_calls=5, min_calls=15)
    assert fastest < 0.001 < median < 0.01
    calls.clear()
    median_seconds(lambda: calls.append(1), lambda: None, 0.02, warmup_calls=5, min_calls=15)
    assert len(calls) > 20  # 0.02 s of calls taking microseconds: more than the minimum


def test_demo_passes_its_checks(capsys, monkeypatch):
    fast = lambda fn, backend: 1e3 * median_seconds(fn, backend.synchronize, 0.0, min_calls=1)  # noqa: E731
    monkeypatch.setattr(cli_demo, "_median_ms", fast)
    assert cli.main(["demo"]) == 0
    printed = capsys.readouterr().out
    assert "all checks passed" in printed and "tanh RNN, 50 steps (scan)" in printed and "jvp ms" in printed


def test_bench_directions_suite_runs_every_row(tmp_path, capsys):
    out = tmp_path / "directions.csv"
    assert cli.main(["bench", "--suite", "directions", "--quick", "--min-time", "0.001", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["row"] for r in rows] == list(ROWS)
    for r in rows:
        assert float(r["ours_ms"]) > 0 and float(r["memory_over_output"]) > 0 and not r["jax_ms"]
        assert (r["row"] == "lu_jacobian") == (r["baseline_ms"] == "")  # lu's targets are JAX's time and memory
        bounds = ROWS[r["row"]].targets
        assert r["targets"].count(" <= ") == len(bounds) and ("baseline" in bounds) == bool(r["ours_over_baseline"])
    assert "vmap_small" in capsys.readouterr().out


def test_bench_directions_suite_with_peers(tmp_path, capsys):
    """The peers' answers agree with ours (a Jacobian; linearize's tangents with vector signs aligned)."""
    out = tmp_path / "directions.csv"
    assert cli.main(["bench", "--suite", "directions", "--rows", "lu_jacobian", "linearize_svd", "--quick",
                     "--peers", "--min-time", "0.001", "--csv", str(out), "--case-timeout", "120"]) == 0
    errors = capsys.readouterr().err
    for r in csv.DictReader(open(out)):
        for system, module in (("jax", "jax"), ("torch", "torch")):
            if importlib.util.find_spec(module) is None:
                assert f"{system} not installed" in errors and not r[f"{system}_ms"]
            else:
                assert float(r[f"{system}_ms"]) > 0 and r[f"{system}_agrees"] == "True"
        assert bool(r["ours_over_jax"]) == bool(importlib.util.find_spec("jax"))


def test_bench_jit_suite(tmp_path, capsys):
    """The jit suite's rows with their targets; JAX (when installed) agrees with ours (svd: vector signs
    aligned); a row of another suite is refused."""
    out = tmp_path / "jit.csv"
    names = ["svd_n16", "scan_rnn", "scan_jit_body", "kalman", "dispatch"]
    assert cli.main(["bench", "--suite", "jit", "--rows", *names, "--quick", "--peers", "--min-time", "0.001",
                     "--csv", str(out), "--case-timeout", "120"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert [r["row"] for r in rows] == names
    has_jax = bool(importlib.util.find_spec("jax"))
    for r in rows:
        assert float(r["ours_ms"]) > 0 and float(r["baseline_ms"]) > 0 and not r["torch_ms"]
        assert float(r["fastest_ours_over_baseline"]) > 0  # the ratio of the fastest calls beside the medians'
        assert bool(r["fastest_ours_over_jax"]) == (has_jax and r["row"] != "dispatch")
        if r["row"] != "dispatch":  # ours timed back to back too, as a peer is: the numerator of the peer's ratio
            assert float(r["ours_alone_ms"]) > 0
        if has_jax and r["row"] != "dispatch":
            assert float(r["ours_over_jax"]) == pytest.approx(float(r["ours_alone_ms"]) / float(r["jax_ms"]))
        bound, = jit_rows.ROWS[r["row"]].targets.values()
        assert r["targets"].count(f" <= {bound}") == 1
        if r["row"] != "dispatch":
            assert (r["jax_agrees"] == "True") == has_jax
    assert "not installed" in capsys.readouterr().err or has_jax
    with pytest.raises(SystemExit, match="not a row of the jit suite"):
        cli.main(["bench", "--suite", "jit", "--rows", "kalman", "vmap_small", "--quick"])


def test_bench_rows_need_a_suite_with_rows(capsys):
    """--rows under the jvp suite (which has none) is an error naming the suites that take rows."""
    with pytest.raises(SystemExit):
        cli.main(["bench", "--rows", "kalman"])
    error = capsys.readouterr().err
    assert "--suite directions or --suite jit" in error and "not of --suite jvp" in error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the worker's CPU time is read from /proc")
def test_a_peer_without_an_answer_is_told_deadlocked_or_timed_out(tmp_path):
    """A worker that waits without using the CPU (as JAX's deadlocked batched QR) is ``deadlocked``, one
    that computes past the timeout ``timed out``; both are restarted for the next case."""
    import subprocess

    from cupy_ad.bench.peers import Peer

    for body, expected in (("import time; time.sleep(60)", "deadlocked"),
                           ("import time\nend = time.time() + 60\nwhile time.time() < end: pass", "timed out")):
        peer = Peer("jax", str(tmp_path), timeout=0.5, min_time=0.01)
        peer.process = subprocess.Popen([sys.executable, "-c", body], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        time.sleep(0.3)  # (its start-up's CPU time before the wait)
        assert peer.time(0, ("jit", "qr_batch", True)) is None
        assert peer.failure == expected and peer.process is None and peer.installed



def test_a_peer_that_fails_is_told_failed_not_an_earlier_case_s_reason(tmp_path):
    """A worker that answers something else than ``done`` (an error, an exit) left ``failure`` as it was:
    empty, or an earlier case's ``deadlocked``, in the peer's cell."""
    import subprocess

    from cupy_ad.bench.peers import Peer

    peer = Peer("jax", str(tmp_path), timeout=5.0, min_time=0.01)
    for reason in ("", "deadlocked"):
        peer.failure = reason
        peer.process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline(); print('oops')"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert peer.time(0, ("jit", "qr_batch", True)) is None
        assert peer.failure == "failed" and peer.process is None and peer.installed
