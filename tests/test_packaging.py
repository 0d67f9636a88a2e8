"""The wheel holds every module under one top-level package, installs into a fresh
environment, and the `o1` command answers --help and --version."""

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pyproject_packages() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
               ["packages"])


def test_pyproject_lists_every_package():
    folders = {"o1": "o1", "tokenizers": "o1.tokenizers", "train": "o1.train",
               "serve": "o1.serve", "configs": "o1.configs", "benchmarks": "o1.benchmarks"}
    found = {".".join((package, *init.parent.relative_to(ROOT / folder).parts))
             for folder, package in folders.items()
             for init in (ROOT / folder).rglob("__init__.py")}
    assert found == _pyproject_packages()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    # Build from a copy so the check never writes build leftovers into the checkout.
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", ".*_cache", "runs"))
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation",
                    "--outdir", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True)
    (path,) = (tmp / "dist").glob("o1-*.whl")
    return path


def test_wheel_has_exactly_one_top_level_package_and_every_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"o1"}
    for package in _pyproject_packages():
        assert package.replace(".", "/") + "/__init__.py" in names
    modules = {n for n in names if n.endswith(".py")}
    for folder, package in (("o1", "o1"), ("tokenizers", "o1/tokenizers"),
                            ("train", "o1/train"), ("serve", "o1/serve"),
                            ("configs", "o1/configs"), ("benchmarks", "o1/benchmarks")):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{path.relative_to(ROOT / folder).as_posix()}" in modules
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "o1 = o1.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_installs_and_runs_in_a_fresh_environment(wheel, tmp_path):
    """Only the wheel is installed; the dependencies are borrowed from this environment's
    site-packages through a path file, which does not run this environment's editable hook,
    so every `o1` module comes from the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (pathlib.Path(site.stdout.strip()) / "o1_test_deps.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    modules = sorted(n[:-3].replace("/", ".").removesuffix(".__init__")
                     for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py"))
    script = ("import importlib, o1\n"
              f"assert o1.__file__.startswith({str(venv)!r}), o1.__file__\n"
              f"for m in {modules!r}:\n    importlib.import_module(m)\n")
    run = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    exe = venv / "bin" / "o1"
    for args in (["--help"], ["--version"]):
        run = subprocess.run([str(exe), *args], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == f"o1 {importlib.metadata.version('o1')}"


@pytest.mark.parametrize("command", [
    [], ["data"], ["data", "build"], ["data", "build", "avshapes"], ["data", "build", "folder"],
    ["data", "export"], ["data", "info"], ["data", "encode"], ["tokenizers"],
    ["tokenizers", "train"], ["tokenizers", "eval"], ["train"], ["generate"], ["caption"],
    ["dub"], ["animate"], ["extend"], ["eval"], ["judge"], ["config"], ["config", "show"],
    ["serve"], ["quickstart"], ["bench"],
])
def test_every_command_has_help(command):
    exe = shutil.which("o1") or pytest.fail("the o1 console script is not installed")
    result = subprocess.run([exe, *command, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: o1")
