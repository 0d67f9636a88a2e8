"""`o1 bench NAME [args ...]`: runs the benchmark o1.benchmarks.NAME (benchmarks/NAME.py in
the source), which prints a table and appends it to BENCHMARKS.md."""

from __future__ import annotations

import argparse


def names() -> list[str]:
    """Every benchmark: the modules of o1.benchmarks but its shared `report`."""
    import pkgutil

    from o1 import benchmarks

    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__)
                  if m.name != "report")


def _bench(args: argparse.Namespace) -> None:
    import importlib

    importlib.import_module(f"o1.benchmarks.{args.name}").main(args.args)


def add_commands(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="run a benchmark; tables go to BENCHMARKS.md",
        description="Runs the benchmark NAME (o1.benchmarks.NAME) with the arguments after NAME "
                    "(see `o1 bench NAME --help`): it prints a table and appends it to "
                    "BENCHMARKS.md with the date, the machine and the command.")
    bench.add_argument("name", choices=names(), help="which benchmark")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    bench.set_defaults(func=_bench)
