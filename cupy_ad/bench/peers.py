"""JAX and PyTorch as peers: each in a process of its own, timing one case at a time when asked, and
the comparison of their tangents with ours (singular/eigen-vector signs aligned)."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import numpy as np

import cupy_ad as ad

from .cases import OPS, as_tuple, inputs, jax_function, torch_function
from . import directions, jit_rows
from .timing import median_and_fastest_seconds, median_seconds


def aligned(reference: list[np.ndarray], values: list[np.ndarray], tangents: list[np.ndarray],
             align: str) -> list[np.ndarray]:
    """Peer tangents with each singular/eigen-vector column's sign matched to ours."""
    if align != "columns":
        return tangents
    out = list(tangents)
    vectors = [i for i, v in enumerate(values) if v.ndim >= 2]
    for i in vectors:
        signs = np.sign(np.sum(reference[i] * values[i], axis=-2, keepdims=True))
        out[i] = tangents[i] * signs
        if i == 2:  # svd's Vh: rows pair with U's columns
            signs_u = np.sign(np.sum(reference[0] * values[0], axis=-2, keepdims=True))
            out[i] = tangents[i] * np.swapaxes(signs_u, -1, -2)
    return out


def max_relative_difference(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs):
        scale = max(float(np.max(np.abs(b), initial=0.0)), 1e-300)
        worst = max(worst, float(np.max(np.abs(a - b), initial=0.0)) / scale)
    return worst


def peer_worker(system: str, out_dir: str, min_time: float) -> int:
    """Serve ``system``'s timings: for each line ``[index, case]`` on stdin (a jvp case ``[name, shape,
    dtype]`` or a row of the directions or jit suite ``[suite, row, quick]``), time the case, write
    ``{index}.npz`` (its answer: outputs and tangents, or the row's arrays) and ``{index}.json``
    (milliseconds) to out_dir and answer ``done``; an empty line ends. Answers ``missing`` when the
    system is not installed."""
    try:
        if system == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
        else:
            import torch
    except ImportError:
        print("missing", flush=True)
        return 0
    for line in sys.stdin:
        if not line.strip():
            break
        index, case = json.loads(line)
        ms, arrays = (_time_row if case[0] in SUITES else _time_jvp)(system, case, min_time)
        np.savez(os.path.join(out_dir, f"{index}.npz"), *[np.asarray(a) for a in arrays])
        with open(os.path.join(out_dir, f"{index}.json"), "w") as fh:
            json.dump(ms, fh)
        print("done", flush=True)
    return 0


def _time_jvp(system: str, case: list, min_time: float) -> tuple[float, list]:
    """Milliseconds of the peer's jvp of one decomposition case, and its outputs then tangents."""
    name, shape, dtype = case
    a_np, t_np = inputs(OPS[name], tuple(shape), dtype)
    if system == "jax":
        import jax

        jitted = jax.jit(lambda x, dx, f=jax_function(name): jax.jvp(f, (x,), (dx,)))
        x, dx = jax.numpy.asarray(a_np), jax.numpy.asarray(t_np)
        ms = 1e3 * median_seconds(lambda: jax.block_until_ready(jitted(x, dx)), lambda: None, min_time)
        values, tangents = jitted(x, dx)
    else:
        import torch

        f = torch_function(name)
        x, dx = torch.from_numpy(a_np), torch.from_numpy(t_np)
        ms = 1e3 * median_seconds(lambda: torch.func.jvp(f, (x,), (dx,)), lambda: None, min_time)
        values, tangents = torch.func.jvp(f, (x,), (dx,))
    return ms, [*as_tuple(values), *as_tuple(tangents)]


SUITES = {"directions": directions, "jit": jit_rows}  # the suites of rows: their module


def _time_row(system: str, case: list, min_time: float) -> tuple[list, list]:
    """Milliseconds (median, fastest) of the peer's version of one row of a suite of rows, and its answer."""
    suite, name, quick = case
    timed, answer = SUITES[suite].peer_call(system, name, quick)
    return [1e3 * s for s in median_and_fastest_seconds(timed, lambda: None, min_time)], answer()


class Peer:
    """A peer system (JAX or PyTorch) in a process of its own, so that no thread pool of one system
    slows another, timing one case at a time when asked: the cases of all systems interleave, and a
    drift of the machine's speed during the run does not favour whichever system ran first.

    A case with no answer after ``timeout`` seconds is recorded as None and the worker is restarted for
    the next case; ``failure`` then says why: ``deadlocked`` when the worker used under a tenth of a
    CPU while it was waited for (JAX 0.10.2 on the jvp of a batch of 4096 QRs on 2 cores: jaxlib's
    ``ParallelBatchMap`` runs the batch of each LAPACK call as tasks on XLA's two-thread pool, and two
    such calls (the jvp's dorgqr and dtrsm) running at once on its two threads each wait for tasks the
    other's thread would have to run; gdb shows every thread in a futex wait), ``timed out`` when it
    was busy, ``hung`` where the CPU time cannot be read (not Linux); ``failed`` when the worker answered
    something else (an error, or it exited while computing), ``exited`` when it had exited before the case.
    """

    def __init__(self, system: str, out_dir: str, timeout: float, min_time: float):
        self.system, self.out_dir, self.timeout, self.min_time = system, out_dir, timeout, min_time
        self.process: subprocess.Popen | None = None
        self.installed = True
        self.failure = ""

    def _cpu_seconds(self) -> float | None:
        """The worker's CPU time so far (user + system), from /proc; None where there is none."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def _start(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(ad.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        command = [sys.executable, "-m", "cupy_ad", "bench", "--worker", self.system, "--out", self.out_dir,
                   "--min-time", str(self.min_time)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def time(self, index: int, case: tuple) -> tuple[float, list] | None:
        """(ms, the answer's arrays) of one case, or None (no answer in time, or not installed)."""
        if not self.installed:
            return None
        if self.process is None:
            self._start()
        try:
            self.process.stdin.write(json.dumps([index, list(case)]) + "\n")
            self.process.stdin.flush()
        except OSError:  # the worker died after its last case: a fresh one takes the next
            print(f"\n{self.system}: the worker had exited before {case}: skipped", file=sys.stderr)
            self.failure = "exited"
            self.close()
            return None
        cpu_before = self._cpu_seconds()
        answered = select.select([self.process.stdout], [], [], self.timeout)[0]
        answer = self.process.stdout.readline().strip() if answered else ""
        if not answered:
            cpu_after = self._cpu_seconds()
            self.failure = ("hung" if cpu_before is None or cpu_after is None else
                            "deadlocked" if cpu_after - cpu_before < 0.1 * self.timeout else "timed out")
        if answer == "missing":
            print(f"{self.system} not installed: no {self.system} column", file=sys.stderr)
            self.installed = False
            self.close()
            return None
        if answer != "done":
            if answered:  # (an error or an exit: not a failure of an earlier case)
                self.failure = "failed"
            why = f"no result after {self.timeout:.0f} s" if not answered else f"the worker answered {answer!r}"
            print(f"\n{self.system}: {why} for {case}: skipped", file=sys.stderr)
            self.close()
            return None
        with open(os.path.join(self.out_dir, f"{index}.json")) as fh:
            ms = json.load(fh)
        with np.load(os.path.join(self.out_dir, f"{index}.npz")) as data:
            return ms, [data[f"arr_{k}"] for k in range(len(data.files))]

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
