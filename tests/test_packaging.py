"""The wheel installs exactly one top-level package, and the `o1` command answers --help."""

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_wheel_has_exactly_one_top_level_package(tmp_path):
    src = tmp_path / "src"
    # Build from a copy so the check never writes build leftovers into the checkout.
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                    "--outdir", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("o1-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"o1"}
    for sub in ("tokenizers", "train", "serve", "configs"):
        assert f"o1/{sub}/__init__.py" in names
    assert "o1/train/avshapes.py" in names and "o1/configs/quickstart.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "o1 = o1.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.parametrize("command", [
    [], ["data"], ["data", "build"], ["data", "build", "avshapes"], ["data", "build", "folder"],
    ["data", "export"], ["data", "info"], ["config"], ["config", "show"], ["serve"],
    ["quickstart"], ["bench"],
])
def test_every_command_has_help(command):
    exe = shutil.which("o1") or pytest.fail("the o1 console script is not installed")
    result = subprocess.run([exe, *command, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: o1")
