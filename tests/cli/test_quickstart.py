"""`o1 quickstart` with the tiny config end to end: every artifact, the skip on a rerun, the
refusal of another config, and a run killed mid-training continuing from its checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

from o1 import cli
from o1.cli import quickstart
from o1.serve.pipeline import RequestError, committed_steps

ARGS = ["--config", "tiny", "--no-serve", "--eval-num", "1", "train.steps=24",
        "train.checkpoint_every=4", "train.eval_every=1000", "train.log_every=4"]


def _committed(workdir) -> list[int]:
    try:
        return committed_steps(workdir)
    except RequestError:  # none yet
        return []


def test_quickstart_end_to_end_resumes_after_a_kill_and_skips_when_done(tmp_path, capsys):
    workdir = tmp_path / "qs"
    command = [sys.executable, "-m", "o1.cli", "quickstart", "--workdir", str(workdir), *ARGS]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and \
                not any(s >= 8 for s in _committed(workdir)):
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)  # no chance to save: only committed steps survive
        proc.wait()
    first = (tmp_path / "first.log").read_text()
    killed_at = _committed(workdir)
    assert proc.returncode == -signal.SIGKILL, first
    assert killed_at and 8 <= killed_at[-1] < 24, (killed_at, first)
    record = json.loads((workdir / quickstart.RECORD).read_text())
    assert set(record["stages"]) == {"dataset", "tokenizers", "latents"}

    assert cli.main(["quickstart", "--workdir", str(workdir), *ARGS]) == 0
    second = capsys.readouterr()
    out = second.out + second.err
    for i, stage in enumerate(("dataset", "tokenizers", "latents"), 1):
        assert f"[{i}/5] {stage}: done (" in out and "skipped" in out
    assert f"resuming at step {killed_at[-1]}" in out, out  # the last committed checkpoint
    assert "AV-Shapes judge: 1 test clips" in out and "quickstart stages:" in out
    assert "peak memory" in out

    for artifact in ("avshapes", "config.json", "text_tokenizer.model", "latents",
                     "video_vae/latent_stats.json", "audio_vae/latent_stats.json",
                     "checkpoints/24", "metrics.jsonl", "eval/report.json", "eval/samples"):
        assert (workdir / artifact).exists(), artifact
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text()
             .splitlines() if json.loads(line).get("stage") == "train"]
    assert steps[-1] == 24 and min(steps) <= 8 < max(steps)
    record = json.loads((workdir / quickstart.RECORD).read_text())
    assert set(record["stages"]) == set(quickstart.STAGES)

    report = (workdir / "eval" / "report.json").stat().st_mtime
    start = time.perf_counter()
    assert cli.main(["quickstart", "--workdir", str(workdir), *ARGS]) == 0
    third = capsys.readouterr().out
    assert third.count("skipped") == 5 and time.perf_counter() - start < 30
    assert "AV-Shapes judge: 1 test clips" in third  # the finished eval's table again
    assert (workdir / "eval" / "report.json").stat().st_mtime == report

    assert cli.main(["quickstart", "--workdir", str(workdir), *ARGS, "train.steps=30"]) == 2
    assert "another config (train.steps: 24 -> 30)" in capsys.readouterr().err
    assert os.path.exists(workdir / "checkpoints" / "24")

