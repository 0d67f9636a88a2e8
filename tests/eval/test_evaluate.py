"""`o1 eval` end to end on a trained tiny workdir: every row, the JSON report, the CLI."""

import json

import numpy as np

from o1 import cli
from o1.eval import evaluate
from o1.sampler import FlowOptions


def test_eval_judges_every_task_next_to_the_ground_truth(trained_workdir, tmp_path, capsys):
    out = tmp_path / "report.json"
    report = evaluate.evaluate(trained_workdir, "test", 2, out, FlowOptions(steps=2),
                               progress=False)
    saved = json.loads(out.read_text())
    assert saved["rows"].keys() == report["rows"].keys() == {
        "ground truth", "tokenizers", "text_to_av", "image_to_video", "video_to_audio"}
    truth = report["rows"]["ground truth"]
    assert truth["clips"] == 2 and truth["bounces"] > 0
    # the round trip through the tokenizers judges the same clips (a few steps of VAE
    # training do not keep them recognizable, so only its shape is checked here)
    assert report["rows"]["tokenizers"]["clips"] == 2 and "colour" in report["rows"]["tokenizers"]
    for row in ("text_to_av", "image_to_video"):
        for key in ("colour", "shape", "count", "speed", "sync_hit"):
            assert key in report["rows"][row]
    assert "colour" not in report["rows"]["video_to_audio"]  # the dub keeps the true video
    captions = report["captions"]
    assert abs(captions["ground truth"]["bleu4"] - 100.0) < 1e-9
    assert np.isfinite(captions["video_to_caption"]["cider_d"])
    assert len(list((trained_workdir / "eval" / "samples").glob("*.mp4"))) == 6
    text = evaluate.format_report(report)
    assert "ground truth" in text and "video_to_caption" in text

    code = cli.main(["eval", "--workdir", str(trained_workdir), "--num", "1", "--steps", "1",
                     "--split", "validation", "--checkpoint", "2",
                     "--out", str(tmp_path / "cli.json")])
    assert code == 0 and "captions" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli.json").read_text())["checkpoint"] == 2
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--checkpoint", "7"])
    assert code == 2 and "no checkpoint 7; its committed checkpoints are 2" in (
        capsys.readouterr().err)
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--split", "nope"])
    assert code == 2 and "--split must be one of" in capsys.readouterr().err
