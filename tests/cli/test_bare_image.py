"""`o1 train` on an accelerator image that has JAX and the data pipeline but none of the media
libraries: the commands that train and inspect never import PyAV, librosa or gradio."""

import subprocess
import sys

from o1 import checkpoint

# Runs `python -m o1.cli ARGS` in a Python where the media libraries (and what only they
# bring: soundfile, soxr, numba) cannot be imported, as on an image that lacks them.
_BARE = """
import importlib.abc, runpy, sys

MISSING = {"av", "librosa", "gradio", "soundfile", "soxr", "numba"}

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
try:
    import av  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    sys.exit("the import blocker let PyAV through")
sys.argv = ["o1", *sys.argv[1:]]
runpy.run_module("o1.cli", run_name="__main__")
"""


def _o1(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BARE, *args], capture_output=True, text=True,
                          timeout=timeout)


def test_train_runs_without_the_media_libraries(fresh_workdir):
    help_ = _o1("train", "--help", timeout=120)
    assert help_.returncode == 0, help_.stderr[-3000:]
    assert "--workdir" in help_.stdout

    for command in (["config", "show", "--config", "large"], ["bench", "train_step", "--help"],
                    ["bench", "compile_time", "--help"]):
        done = _o1(*command, timeout=120)
        assert done.returncode == 0, (command, done.stderr[-3000:])

    trained = _o1("train", "--workdir", str(fresh_workdir), "--config", "tiny",
                  "train.steps=2", "train.eval_every=100", "train.peak_flops=1e12",
                  timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "trained 2 steps" in trained.stdout, trained.stdout
    assert checkpoint.committed_steps(fresh_workdir / "checkpoints") == [2]
