"""What every benchmark shares: the machine it ran on, and appending its table to
BENCHMARKS.md with the date, the machine and the command that produced it.

    table = Table(["config", "step s", "MFU"])
    table.add(["quickstart", "1.952", "41.5%"])
    publish("Training step", table, note="MFU against a matmul peak measured in the same run")
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import shlex
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADER = """# Benchmarks

Every section was appended by a benchmark (`python -m benchmarks.NAME` or `o1 bench NAME`),
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


def add_arguments(parser) -> None:
    """`--out`: the markdown file a benchmark appends to."""
    parser.add_argument("--out", type=pathlib.Path, default=BENCHMARKS,
                        help=f"markdown file to append the table to (default: {BENCHMARKS.name} "
                             "at the repository root)")


def publish(title: str, table: Table, note: str = "", path: pathlib.Path = BENCHMARKS) -> str:
    """Prints the table and appends it as a section to `path`; returns the section."""
    command = "python -m " + " ".join(
        [f"benchmarks.{pathlib.Path(sys.argv[0]).stem}"] + [shlex.quote(a) for a in sys.argv[1:]])
    section = (f"\n## {title}\n\n{datetime.date.today().isoformat()} · {machine()}\n\n"
               f"`{command}`\n\n{table.markdown()}\n" + (f"\n{note}\n" if note else ""))
    print(section)
    if not path.exists():
        path.write_text(HEADER)
    with path.open("a") as f:
        f.write(section)
    print(f"(appended to {path})")
    return section
