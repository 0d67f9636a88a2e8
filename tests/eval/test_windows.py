"""The AV-Shapes judge window by window: ~1 on a minute of ground truth, a prompt that changes
mid-clip judged per span, the table with its drift line, and `o1 judge` on an mp4."""

import json

import numpy as np
import pytest

from o1 import configs
from o1.avshapes import generator
from o1.cli import main
from o1.eval import windows


def _truth(clip) -> list[dict]:
    return [{k: o[k] for k in ("colour", "shape", "speed")} for o in clip.metadata["objects"]]


@pytest.fixture(scope="module")
def minute():
    """A minute of one simulated clip (not clips joined), and its windows judged."""
    config = configs.get("tiny", ["data.seconds=60"])
    clip = generator.generate(config, "test", 0)
    return config, clip, windows.judge_windows(clip.video, clip.audio, config, _truth(clip))


@pytest.fixture(scope="module")
def two_prompts():
    """20 s: 10 s of one clip, then 10 s of a clip whose colours are all different."""
    config = configs.get("tiny", ["data.seconds=10"])
    first = generator.generate(config, "test", 0)
    colours = {o["colour"] for o in first.metadata["objects"]}
    second = next(c for c in (generator.generate(config, "test", i) for i in range(1, 50))
                  if not colours & {o["colour"] for o in c.metadata["objects"]})
    frames = 10 * config.data.fps
    samples = frames * config.data.samples_per_frame
    video = np.concatenate([first.video[:frames], second.video[:frames]])
    audio = np.concatenate([first.audio[:samples], second.audio[:samples]])
    return config, first, second, video, audio


def test_window_spans_cut_at_changes_and_drop_short_tails():
    assert windows.window_spans(25.0, 10.0) == [(0, 10), (10, 20), (20, 25)]
    assert windows.window_spans(20.5, 10.0) == [(0, 10), (10, 20)]
    assert windows.window_spans(25.0, 10.0, [4.0]) == [(0, 4), (4, 14), (14, 24), (24, 25)]
    assert windows.window_spans(10.0, 10.0, [9.5]) == [(0, 9.5)]
    with pytest.raises(ValueError, match="inside the clip"):
        windows.window_spans(10.0, 10.0, [12.0])


def test_a_minute_of_ground_truth_scores_every_window(minute):
    config, clip, rows = minute
    d = config.data
    assert [(r["start"], r["end"]) for r in rows] == [(10.0 * i, 10.0 * (i + 1))
                                                      for i in range(6)]
    colours = {o["colour"] for o in clip.metadata["objects"]}
    for r in rows:
        for key in ("colour", "shape", "speed", "count", "audio_colour"):
            assert r[key] == 1, (key, r)
        assert r["object_count"] == len(clip.metadata["objects"])
        assert set(r["tones"]) == colours
        assert r["bounces"] >= 10
        assert r["sync_hit"] >= 0.95, r
        # Onsets land within one onset hop of the bounce sample.
        assert r["sync_median_ms"] <= 1000 * config.audio.hop / d.sample_rate + 1e-6
        assert r["sync_hit_floor"] < 0.6 and r["sync_hit"] - r["sync_hit_floor"] > 0.4, r
        assert all(r["start"] <= t < r["end"] for t in r["bounce_times"] + r["onset_times"])


def test_the_table_has_a_row_per_window_and_compares_the_first_and_last_30_s(minute):
    _, _, rows = minute
    lines = windows.format_windows(rows).splitlines()
    assert len(lines) == 2 + len(rows) + 1
    assert lines[2].startswith("0.0-10.0 s") and lines[-2].startswith("50.0-60.0 s")
    assert "sync_hit_floor" in lines[0]
    assert lines[-1].startswith("first 30 s against last 30 s: sync 1.000 -> 1.000 "
                                "(+0.0 points)")
    change = windows.drift(rows)
    assert change["first_bounces"] == sum(r["bounces"] for r in rows[:3])
    assert change["sync_median_change_ms"] == pytest.approx(0.0, abs=1e-9)
    # Under a minute, no drift line.
    assert windows.drift(rows[:5]) is None
    assert len(windows.format_windows(rows[:5]).splitlines()) == 2 + 5


def test_a_prompt_that_changes_is_judged_per_span(two_prompts):
    config, first, second, video, audio = two_prompts

    def asked(start, end):
        return _truth(first if start < 10 else second)

    spans = [(0.0, 10.0), (10.0, 20.0)]
    rows = windows.judge_windows(video, audio, config, asked, spans=spans)
    assert [r["colour"] for r in rows] == [1, 1]
    assert [r["audio_colour"] for r in rows] == [1, 1]
    assert [set(r["tones"]) for r in rows] == [{o["colour"] for o in c.metadata["objects"]}
                                               for c in (first, second)]
    # Judged against the first prompt throughout, the second half fails.
    wrong = windows.judge_windows(video, audio, config, _truth(first), spans=spans)
    assert [r["colour"] for r in wrong] == [1, 0]
    assert wrong[1]["audio_colour"] == 0


def test_o1_judge_reads_an_mp4_with_a_change_of_prompt(two_prompts, tmp_path, capsys):
    from o1 import media

    config, first, second, video, audio = two_prompts
    path = media.write_mp4(tmp_path / "clip.mp4", video, config.data.fps, audio,
                           config.data.sample_rate)
    out = tmp_path / "windows.json"
    assert main(["judge", str(path), "--prompt", first.caption, "--at", f"10:{second.caption}",
                 "--config", "tiny", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0.0-10.0 s" in printed and "10.0-20.0 s" in printed
    report = json.loads(out.read_text())
    assert [(w["start"], w["end"]) for w in report["windows"]] == [(0, 10), (10, 20)]
    assert [w["colour"] for w in report["windows"]] == [1, 1]
    assert report["prompts"][1] == {"from": 10.0, "prompt": second.caption}
    assert report["drift"] is None
    # The first prompt alone: the second half is another colour.
    assert main(["judge", str(path), "--prompt", first.caption, "--config", "tiny",
                 "--json", str(out)]) == 0
    assert [w["colour"] for w in json.loads(out.read_text())["windows"]] == [1, 0]


@pytest.mark.parametrize("case", ["missing", "no object", "bad at", "at past the end"])
def test_o1_judge_refuses_in_one_line(case, two_prompts, tmp_path, capsys):
    config, _, _, video, audio = two_prompts
    path = tmp_path / "clip.mp4"
    if case != "missing":
        from o1 import media

        media.write_mp4(path, video[:32], config.data.fps,
                        audio[:32 * config.data.samples_per_frame], config.data.sample_rate)
    args = {"missing": ["--prompt", "a red circle"],
            "no object": ["--prompt", "something bouncing"],
            "bad at": ["--prompt", "a red circle", "--at", "soon:a blue square"],
            "at past the end": ["--prompt", "a red circle", "--at", "9:a blue square"]}[case]
    try:
        code = main(["judge", str(path), *args, "--config", "tiny"])
    except SystemExit as e:  # argparse refuses a malformed flag before the command runs
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("o1: error:") and err.count("\n") == 1, err
    assert {"missing": "no such file", "no object": "--prompt", "bad at": "--at",
            "at past the end": "--at 9 is past the end"}[case] in err
