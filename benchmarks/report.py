"""What every benchmark shares: its command line, the machine it ran on, and appending its
table to BENCHMARKS.md with the date, the machine and the command that produced it.

    args = parse(parser, argv, __file__)
    table = Table(["config", "step s", "MFU"])
    table.add(["quickstart", "1.952", "41.5%"])
    publish("Training step", table, args, note="MFU against a matmul peak measured in the run")
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import shlex
import sys
from collections.abc import Sequence

_SOURCE = pathlib.Path(__file__).resolve().parents[1]
# Tables go to the source checkout's BENCHMARKS.md; installed from a wheel, the benchmarks
# have no checkout and write to the current directory's.
BENCHMARKS = (_SOURCE if (_SOURCE / "pyproject.toml").exists() else pathlib.Path()) \
    / "BENCHMARKS.md"
HEADER = """# Benchmarks

Every section was appended by a benchmark (`o1 bench NAME`),
with the date, the machine and the command that produced it. Figures are measured, never
estimated; ratios (MFU, real-time factor) are taken within one run. The GPU section holds
only figures measured on a real GPU.
"""


class Table:
    """A markdown table built row by row."""

    def __init__(self, columns: list[str]):
        self.columns, self.rows = columns, []

    def add(self, row: list) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"row of {len(row)} cells for {len(self.columns)} columns")
        self.rows.append([str(cell) for cell in row])

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


def machine() -> str:
    """One line about this machine: CPU, cores, memory, accelerator, jax."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        memory = ""
    devices = jax.devices()
    accel = f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})"
    return (f"{cpu}, {os.cpu_count()} cores{memory}; devices {accel}; jax {jax.__version__}, "
            f"Python {platform.python_version()}")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, source: str
          ) -> argparse.Namespace:
    """Parses a benchmark's arguments (`argv`, default the command line) with `--out` added.
    `source` is the benchmark's file; `args.command` is how `o1 bench` runs it again."""
    name = pathlib.Path(source).stem
    parser.prog = f"o1 bench {name}"
    parser.add_argument("--out", type=pathlib.Path, default=BENCHMARKS,
                        help=f"markdown file to append the table to (default: {BENCHMARKS})")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command = shlex.join(["o1", "bench", name, *argv])
    return args


def publish(title: str, table: Table, args: argparse.Namespace, note: str = "") -> str:
    """Prints the table and appends it as a section to `args.out` with `args.command` (both
    from `parse`); returns the section."""
    path = args.out
    section = (f"\n## {title}\n\n{datetime.date.today().isoformat()} · {machine()}\n\n"
               f"`{args.command}`\n\n{table.markdown()}\n" + (f"\n{note}\n" if note else ""))
    print(section)
    if not path.exists():
        path.write_text(HEADER)
    with path.open("a") as f:
        f.write(section)
    print(f"(appended to {path})")
    return section
