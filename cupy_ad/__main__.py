"""``python -m cupy_ad [demo|bench]``: the demo (default) and the benchmark."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cupy_ad", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="jvp of a few composite functions, checked against finite differences")
    demo.add_argument("--backend", help="numpy, cupy or array_api_strict (default: cupy with a GPU, else numpy)")
    sub.add_parser("bench", help="time primal and jvp per decomposition (options: bench --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        return _bench(rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command in (None, "demo"):
        from .cli_demo import run_demo

        return run_demo(getattr(args, "backend", None))
    parser.error(f"unknown command {args.command}")
    return 2


def _bench(argv: list[str]) -> int:
    """The benchmark lives in the source tree's profiling/ folder (it is not installed)."""
    profiling = Path(__file__).resolve().parent.parent / "profiling"
    if not (profiling / "bench.py").exists():
        print("python -m cupy_ad bench needs a source checkout (profiling/bench.py)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(profiling))
    import bench

    return bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
