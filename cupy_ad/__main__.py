"""``python -m cupy_ad [demo|bench]``: the demo (default) and the benchmark."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cupy_ad", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="jvp of a few composite functions, checked against finite differences")
    demo.add_argument("--backend", help="numpy, cupy or array_api_strict (default: cupy with a GPU, else numpy)")
    sub.add_parser("bench", help="time primal and jvp per decomposition (options: bench --help)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        from .bench.cli import main as bench_main

        return bench_main(rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.command in (None, "demo"):
        from .cli_demo import run_demo

        return run_demo(getattr(args, "backend", None))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
