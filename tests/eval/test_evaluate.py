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
        "ground truth", "tokenizers", "text_to_av", "image_to_video", "video_to_audio",
        "audio_to_video"}
    truth = report["rows"]["ground truth"]
    assert truth["clips"] == 2 and truth["bounces"] > 0
    # the round trip through the tokenizers judges the same clips (a few steps of VAE
    # training do not keep them recognizable, so only its shape is checked here)
    assert report["rows"]["tokenizers"]["clips"] == 2 and "colour" in report["rows"]["tokenizers"]
    for row in ("text_to_av", "image_to_video"):
        for key in ("colour", "shape", "count", "speed", "sync_hit", "jump_ratio"):
            assert key in report["rows"][row]
    # the dub keeps the true video: no video measures there, and one seed has no agreement
    assert not {"colour", "jump_ratio", "dub_agreement"} & report["rows"]["video_to_audio"].keys()
    assert 0.9 <= truth["jump_ratio"] <= 1.1 and truth["i2v_object_kept"] == 1.0
    animated = report["rows"]["image_to_video"]
    # frame 0 of the tokenizers' round trip is at most as far from the image as a sample's
    # (the tiny tokenizers trained 8 steps: only the order is checked)
    assert 0 < animated["frame0_psnr"] <= animated["frame0_psnr_roundtrip"] + 1.0
    assert 0.0 <= animated["i2v_object_kept"] <= 1.0 or np.isnan(animated["i2v_object_kept"])
    assert "per_seed" not in saved and saved["seeds"] == 1
    # the picture made for a sound: its colours, count and bounces against that sound, not the
    # shape it cannot name, nor the sound's own colours (the true ones)
    visualized = report["rows"]["audio_to_video"]
    assert {"colour", "count", "sync_hit", "sync_hit_shuffled", "jump_ratio"} <= visualized.keys()
    assert not {"shape", "speed", "audio_colour"} & visualized.keys()
    assert visualized["bounces"] >= 0 and visualized["clips"] == 2
    captions = report["captions"]
    assert abs(captions["ground truth"]["bleu4"] - 100.0) < 1e-9
    assert np.isfinite(captions["video_to_caption"]["cider_d"])
    assert len(list((trained_workdir / "eval" / "samples").glob("*.mp4"))) == 8
    text = evaluate.format_report(report)
    assert "ground truth" in text and "video_to_caption" in text and "captions, greedy" in text
    assert "consistency" in text and "frame0_psnr_roundtrip" in text
    assert "per seed" not in text

    assert saved["text"]["beams"] == 1  # how captions were decoded: the sample section's

    code = cli.main(["eval", "--workdir", str(trained_workdir), "--num", "1", "--steps", "1",
                     "--split", "validation", "--checkpoint", "2", "--seeds", "2",
                     "--beams", "3", "--out", str(tmp_path / "cli.json")])
    printed = capsys.readouterr().out
    assert code == 0 and "captions, by beam search, 3 beams" in printed
    assert "video_to_audio seed 1" in printed
    saved = json.loads((tmp_path / "cli.json").read_text())
    assert saved["checkpoint"] == 2 and saved["seeds"] == 2 and saved["text"]["beams"] == 3
    assert [len(rows) for rows in saved["per_seed"].values()] == [2, 2, 2, 2]
    dub = saved["rows"]["video_to_audio"]
    assert "dub_agreement" in dub and "dub_agreement_shuffled" in dub  # null: one clip
    assert dub["bounces"] == sum(r["bounces"] for r in saved["per_seed"]["video_to_audio"])
    # the ceilings: the clip's own sound, and its round trip, as the only "seed"
    assert saved["rows"]["ground truth"]["dub_agreement"] == saved["rows"]["ground truth"][
        "sync_hit"]
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--checkpoint", "7"])
    assert code == 2 and "no checkpoint 7; its committed checkpoints are 2" in (
        capsys.readouterr().err)
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--split", "nope"])
    assert code == 2 and "--split must be one of" in capsys.readouterr().err
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--beams", "0"])
    assert code == 2 and "--beams must be a whole number from 1 to 16" in (
        capsys.readouterr().err)
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--seeds", "0"])
    assert code == 2 and "--seeds must be >= 1, got 0" in capsys.readouterr().err
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--seeds", "3000"])
    assert code == 2 and "use a smaller --seed or fewer --seeds" in capsys.readouterr().err


def test_mean_rows_averages_seeds_and_sums_bounces():
    rows = [{"colour": 1.0, "sync_median_ms": float("inf"), "jump_ratio": float("nan"),
             "clips": 3, "bounces": 4},
            {"colour": 0.5, "sync_median_ms": float("inf"), "jump_ratio": 1.5, "clips": 3,
             "bounces": 2}]
    assert evaluate.mean_rows(rows) == {"colour": 0.75, "sync_median_ms": float("inf"),
                                        "jump_ratio": 1.5, "clips": 3, "bounces": 6}
    assert np.isnan(evaluate.mean_rows([{"sync_hit": float("nan")}])["sync_hit"])


def test_eval_in_named_languages_adds_their_rows_on_the_same_clips(trained_workdir, tmp_path,
                                                                   capsys):
    report = evaluate.evaluate(trained_workdir, "validation", 1, tmp_path / "r.json",
                               FlowOptions(steps=1), progress=False, languages=["en"])
    assert report["languages"] == ["en"]
    assert report["rows"]["text_to_av [en]"]["clips"] == 1
    assert {"colour", "shape", "sync_hit"} <= report["rows"]["text_to_av [en]"].keys()
    captions = report["captions"]
    assert abs(captions["ground truth [en]"]["bleu4"] - 100.0) < 1e-9
    assert captions["video_to_caption [en]"]["clips"] == 1
    assert "text_to_av [en]" in evaluate.format_report(report)
    # The reference's caption decisions, read per language asked for: one binding decision
    # an object and one next-object decision an object after the first, of a clip of several.
    assert report["decisions"].keys() == {"video_to_caption [en]"}
    read = report["decisions"]["video_to_caption [en]"]
    assert "caption decisions" in evaluate.format_report(report)
    # The prompt is the clip's caption written afresh, naming the clip's objects.
    from o1 import config as config_lib
    from o1.avshapes import generator
    from o1.eval.captions import parse_caption
    config = config_lib.load(trained_workdir / "config.json")
    clip = generator.generate(config, "validation", 0)
    several = len(clip.metadata["objects"]) > 1
    assert (read["binding_n"], read["next_n"]) == ((len(clip.metadata["objects"]),
                                                   len(clip.metadata["objects"]) - 1)
                                                  if several else (0, 0))
    for language in ("en", "it", "zh"):
        said = parse_caption(evaluate.prompt_in(clip, language), language)["objects"]
        assert sorted(o["colour"] for o in said) == sorted(
            o["colour"] for o in clip.metadata["objects"])
    code = cli.main(["eval", "--workdir", str(trained_workdir), "--lang", "it"])
    assert code == 2 and "--lang is 'it'; this model writes English (en)" in (
        capsys.readouterr().err)
