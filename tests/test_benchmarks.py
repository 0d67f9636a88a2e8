"""Every benchmark answers `o1 bench NAME --help`, and runs through `o1 bench` on tiny inputs
and appends its table.

The runs are slow (half a minute of compiling) and about the benchmarks, not the product: run
them with `uv run --locked pytest -m slow`."""

import pytest

from o1 import cli
from o1.cli import bench


@pytest.mark.parametrize("name", bench.names())
def test_every_benchmark_answers_help_as_o1_bench(name, capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["bench", name, "--help"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: o1 bench {name} ")


@pytest.mark.slow
def test_benchmarks_print_and_append_their_tables(trained_workdir, tmp_path, capsys):
    out = tmp_path / "BENCHMARKS.md"
    runs = [
        ["train_step", "--configs", "tiny", "--steps", "1"],
        ["scaling", "--config", "tiny", "--seconds", "1", "--widths", "--steps", "1",
         "train.batch_size=8"],  # the 8 fake test devices split the rows
        ["tokenizer_speed", "--workdir", str(trained_workdir), "--clips", "2", "--batch", "2"],
        ["sampling", "--workdir", str(trained_workdir), "--seconds", "3", "--steps", "2"],
        ["context_use", "--workdir", str(trained_workdir), "--clips", "1", "--levels", "0.5"],
        ["train_loop", "--workdir", str(trained_workdir), "--seconds", "1", "--workers", "0",
         "--ceiling-steps", "20"],
        ["compile_time", "--config", "tiny", "--layers", "1", "2"],
    ]
    for run in runs:
        assert cli.main(["bench", run[0], *run[1:], "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmarks")
    for title in ("## Training step", "## Scaling", "## Tokenizers", "## Sampling",
                  "## Context use", "## Training loop", "## Compile time"):
        assert text.count(title) == 1
    assert "| tiny | " in text and "| clip 1 s | 17 |" in text
    assert "| video encode |" in text and "| 3.00 | 2 |" in text
    assert "| 2 | 0.50 | " in text  # context use at checkpoint 2, noise 0.5
    loop_table = text.split("## Training loop")[1].split("\n## ")[0]
    assert loop_table.count("| tiny | ") == 2 and "% | " in loop_table  # ceiling, loop / bare
    compile_table = text.split("## Compile time")[1]
    assert "| 1 | " in compile_table and "| 2 | " in compile_table
    assert "`o1 bench train_step --configs tiny --steps 1 --out" in text
    assert "## Sampling" in capsys.readouterr().out
