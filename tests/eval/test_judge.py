"""The AV-Shapes judge: ~1 on ground truth, chance on shuffled sync, 0 on garbage; captions."""

import json
import math

import numpy as np
import pytest

from o1 import configs
from o1.avshapes import analysis, generator, world
from o1.eval import captions, judge

NUM_GROUND_TRUTH = 200  # quickstart test clips; most of the file's run time


@pytest.fixture(scope="module")
def quickstart():
    """The geometry the analysis was tuned on: 64x64 clips with objects of 0.22. The
    32x32 quickstart with objects of 0.35 scores 0.975-0.99 on 200 ground-truth clips (two
    large objects overlap for most of a clip in a few of them), recorded in the README."""
    return configs.get("quickstart", ["data.height=64", "data.width=64",
                                      "data.object_size=0.22"])


@pytest.fixture(scope="module")
def ground_truth(quickstart):
    """(clip, score) for quickstart test clips, judged against their own metadata."""
    clips = [generator.generate(quickstart, "test", i) for i in range(NUM_GROUND_TRUTH)]
    return [(c, judge.score_clip(c.video, c.audio, quickstart, c.metadata["objects"]))
            for c in clips]


def _truth(clip):
    return [{k: o[k] for k in ("colour", "shape", "speed")} for o in clip.metadata["objects"]]


def test_ground_truth_scores_every_attribute(ground_truth, quickstart):
    report = judge.aggregate([s for _, s in ground_truth], quickstart.data.fps)
    for key in (*judge.ATTRIBUTES, "audio_colour"):
        assert report[key] >= 0.99, (key, report)
    assert report["clips"] == NUM_GROUND_TRUTH


def test_ground_truth_detections_match_metadata(ground_truth):
    """Beyond 0/1 scores: the detected objects are the metadata's objects."""
    wrong = [(c.metadata["id"], s["detected"], _truth(c)) for c, s in ground_truth
             if sorted(s["detected"], key=str) != sorted(_truth(c), key=str)]
    assert len(wrong) <= 0.01 * len(ground_truth), wrong


def test_visual_bounces_are_the_simulated_bounces(ground_truth, quickstart):
    last = quickstart.num_frames - 1
    found = correct = visible = recalled = 0
    for clip, score in ground_truth:
        frames = {b["frame"] for b in clip.metadata["bounces"]}
        seen = {round(t * quickstart.data.fps) for t in score["bounce_times"]}
        found += len(seen)
        correct += len(seen & frames)
        # A bounce on the last frame cannot be seen turning back.
        visible += len(frames - {last})
        recalled += len((frames - {last}) & seen)
    assert correct >= 0.99 * found, (correct, found)
    assert recalled >= 0.9 * visible, (recalled, visible)


def test_sync_of_ground_truth_beats_the_shuffled_floor(ground_truth, quickstart):
    d = quickstart.data
    report = judge.aggregate([s for _, s in ground_truth], d.fps)
    assert report["bounces"] >= 2 * NUM_GROUND_TRUTH
    assert report["sync_hit"] >= 0.99
    # Onsets land within one onset hop of the bounce sample.
    assert report["sync_median_ms"] <= 1000 * quickstart.audio.hop / d.sample_rate + 1e-6
    assert report["sync_hit_shuffled"] < 0.6
    assert report["sync_hit"] - report["sync_hit_shuffled"] > 0.4
    assert report["sync_median_ms_shuffled"] > 1000 / d.fps


def test_tiny_clips_score_every_attribute():
    config = configs.get("tiny")
    scores = [judge.score_clip(c.video, c.audio, config, c.metadata["objects"])
              for c in (generator.generate(config, "test", i) for i in range(24))]
    report = judge.aggregate(scores, config.data.fps)
    for key in (*judge.ATTRIBUTES, "audio_colour", "sync_hit"):
        assert report[key] >= 0.99, (key, report)


def test_a_wrong_request_fails_the_attributes_it_gets_wrong(ground_truth, quickstart):
    clip = next(c for c, _ in ground_truth if len(c.metadata["objects"]) == 2)
    truth = _truth(clip)
    other_shape = dict(truth[0], shape=next(s for s in ("circle", "square", "triangle")
                                            if s != truth[0]["shape"]))
    other_speed = dict(truth[0], speed="fast" if truth[0]["speed"] == "slow" else "slow")
    unused = [c for c in world.PITCH_HZ if c not in {o["colour"] for o in truth}]
    cases = {
        "shape": [other_shape, truth[1]],
        "speed": [other_speed, truth[1]],
        "count": truth + [dict(truth[0], colour=unused[0])],
        "audio": [dict(o, colour=c) for o, c in zip(truth, unused, strict=False)],
    }
    score = {name: judge.score_clip(clip.video, clip.audio, quickstart, objects)
             for name, objects in cases.items()}
    assert score["shape"]["shape"] == 0 and score["shape"]["colour"] == 1
    assert score["shape"]["speed"] == 1
    assert score["speed"]["speed"] == 0 and score["speed"]["shape"] == 1
    assert score["count"]["count"] == 0 and score["count"]["colour"] == 0
    assert score["audio"]["audio_colour"] == 0 and score["audio"]["colour"] == 0


@pytest.mark.parametrize("video", ["zeros", "white", "noise"])
@pytest.mark.parametrize("audio", ["silent", "noise", "short"])
def test_garbage_scores_zero_without_errors(quickstart, video, audio):
    d = quickstart.data
    rng = np.random.default_rng(0)
    shape = (quickstart.num_frames, d.height, d.width, 3)
    frames = {"zeros": np.zeros(shape, np.uint8), "white": np.full(shape, 255, np.uint8),
              "noise": rng.integers(0, 256, shape, dtype=np.uint8)}[video]
    wave = {"silent": np.zeros(quickstart.num_samples, np.float32),
            "noise": rng.normal(0, 0.3, quickstart.num_samples).astype(np.float32),
            "short": np.zeros(10, np.float32)}[audio]
    objects = [{"colour": "red", "shape": "circle", "speed": "slow"}]
    score = judge.score_clip(frames, wave, quickstart, objects)
    assert [score[k] for k in judge.ATTRIBUTES] == [0.0] * 4
    assert score["detected"] == [] and score["bounce_times"] == []
    if audio == "noise":
        # Noise has onsets, but no tone to name a colour.
        assert score["onset_times"] and score["audio_colour"] == 0.0
    else:
        assert score["onset_times"] == [] and math.isnan(score["audio_colour"])
    json.dumps(score)
    report = judge.aggregate([score, score], d.fps)
    assert report["colour"] == 0.0 and report["bounces"] == 0
    assert math.isnan(report["sync_hit"]) and math.isnan(report["sync_hit_shuffled"])
    assert "nan" in judge.format_table({"garbage": report})


def test_analyze_video_rejects_frames_of_the_wrong_rank_and_takes_empty_ones():
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        analysis.analyze_video(np.zeros((4, 8, 8)), fps=16)
    assert analysis.analyze_video(np.zeros((0, 8, 8, 3)), fps=16)["count"] == 0


def test_sync_offsets_and_shuffled_pairing():
    offsets = analysis.sync_offsets([0.5, 1.0, 1.9], [0.52, 0.9, 1.2])
    np.testing.assert_allclose(offsets, [0.02, -0.1, -0.7])
    assert np.all(np.isinf(analysis.sync_offsets([0.5, 1.0], [])))
    assert analysis.sync_offsets([], [0.5]).shape == (0,)
    scores = [{"colour": 1.0, "shape": 1.0, "count": 1.0, "speed": 0.0, "audio_colour": a,
               "bounce_times": b, "onset_times": o}
              for a, b, o in ((1.0, [0.5], [0.5]), (float("nan"), [1.5], [1.5]))]
    report = judge.aggregate(scores, fps=16)
    assert report["audio_colour"] == 1.0  # nan clips are left out
    assert report["speed"] == 0.0
    assert report["sync_hit"] == 1.0 and report["sync_median_ms"] == 0.0
    assert report["sync_hit_shuffled"] == 0.0 and report["sync_median_ms_shuffled"] == 1000.0


def test_analyze_audio_names_each_colour_by_its_tone(quickstart):
    d = quickstart.data
    wave = np.zeros(len(world.PITCH_HZ) * d.sample_rate // 4, np.float32)
    for i, hz in enumerate(world.PITCH_HZ.values()):
        burst = generator.tone("triangle", hz, round(d.tone_seconds * d.sample_rate),
                              d.sample_rate)
        start = i * d.sample_rate // 4 + d.sample_rate // 8
        wave[start:start + len(burst)] += burst
    audio = analysis.analyze_audio(wave, d.sample_rate, quickstart.audio.hop)
    assert audio["colours"] == list(world.PITCH_HZ)
    starts = [(i + 0.5) / 4 for i in range(len(world.PITCH_HZ))]
    np.testing.assert_allclose(audio["onset_times"], starts,
                               atol=quickstart.audio.hop / d.sample_rate + 1e-9)
    assert analysis.colour_of_pitch(world.PITCH_HZ["red"] * 2 ** (1.5 / 12)) is None


def test_parse_caption_recovers_every_template(ground_truth):
    # Four objects reach the count words and templates two objects never use.
    config = configs.get("tiny", ["data.max_objects=4"])
    clips = [c for c, _ in ground_truth] + [
        generator.generate(config, split, i) for split in ("train", "holdout")
        for i in range(120)]
    wrong = []
    for clip in clips:
        parsed = captions.parse_caption(clip.caption)
        if parsed != {"objects": _truth(clip), "count": len(clip.metadata["objects"])}:
            wrong.append((clip.caption, parsed))
    assert not wrong


def test_parse_caption_examples():
    parsed = captions.parse_caption("two quick shapes, a red ball and a blue block, bounce around "
                                 "in the box")
    assert parsed == {"count": 2, "objects": [
        {"colour": "red", "shape": "circle", "speed": "fast"},
        {"colour": "blue", "shape": "square", "speed": "fast"}]}
    parsed = captions.parse_caption("A green triangle moving at a slow pace, beeping at every wall "
                                 "it hits")
    assert parsed == {"count": 1, "objects": [
        {"colour": "green", "shape": "triangle", "speed": "slow"}]}
    assert captions.parse_caption("") == {"objects": [], "count": 0}
    assert captions.parse_caption("red red red") == {"objects": [], "count": 0}


def test_caption_scores_of_references_and_of_wrong_captions(ground_truth):
    refs = [c.caption for c, _ in ground_truth]
    truths = [_truth(c) for c, _ in ground_truth]
    perfect = captions.caption_scores(refs, refs, truths)
    for key in judge.ATTRIBUTES:
        assert perfect[key] == 1.0
    assert perfect["bleu4"] == pytest.approx(100.0)
    assert perfect["cider_d"] == pytest.approx(10.0)
    shifted = refs[1:] + refs[:1]  # each clip gets its neighbour's caption
    wrong = captions.caption_scores(shifted, refs, truths)
    assert wrong["colour"] < 0.3
    assert wrong["bleu4"] < 30.0
    assert wrong["cider_d"] < 2.0
    assert "cider_d" in judge.format_table({"ground truth": perfect, "shifted": wrong})


def test_cider_d_by_hand():
    """Two clips 'a b c d' and 'e f g h': every n-gram has idf log 2, so for a candidate 'a b c'
    of the first the n-gram cosines are 3 / (sqrt(3) 2), 2 / (sqrt(2) sqrt(3)), 1 / sqrt(2)
    and 0, and the length penalty is exp(-1 / 72)."""
    refs = [["a b c d"], ["e f g h"]]
    assert captions.cider_d(["a b c d", "e f g h"], refs) == pytest.approx(10.0)
    cosines = [3 / (math.sqrt(3) * 2), 2 / (math.sqrt(2) * math.sqrt(3)), 1 / math.sqrt(2), 0]
    expected = (10 * math.exp(-1 / 72) * sum(cosines) / 4 + 10.0) / 2
    assert captions.cider_d(["a b c", "E, f g h."], refs) == pytest.approx(expected)
    # Only 1- and 2-grams: the 3- and 4-gram terms are 0 even for an exact match.
    assert captions.cider_d(["a b", "c d"], [["a b"], ["c d"]]) == pytest.approx(5.0)
    # Repeating a word does not buy more than the reference has (clipping).
    assert captions.cider_d(["a a b c d", "e f g h"], refs) < 10.0


def test_format_table_lines_up_rows_and_columns():
    table = judge.format_table({
        "ground truth": {"colour": 1.0, "sync_median_ms": 15.625, "clips": 50},
        "text_to_av": {"colour": 0.25, "bleu4": float("nan")},
    })
    lines = table.splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[0].split() == ["colour", "sync_median_ms", "bleu4", "clips"]
    assert lines[2].split() == ["ground", "truth", "1.000", "15.6", "-", "50"]
    assert lines[3].split() == ["text_to_av", "0.250", "-", "nan", "-"]


# ---------------------------------------------------------------------------------------------
# What a viewer sees: objects as blobs, motion across latents, dubs, animated images
# ---------------------------------------------------------------------------------------------


def _render(config, clip, positions, objects=None):
    """The clip's frames drawn again, its objects at `positions` [T, O, 2]."""
    m = clip.metadata
    return generator.render(config, objects or m["objects"], np.asarray(positions),
                            tuple(m["background_rgb"]))


def test_object_count_is_the_blobs_a_viewer_counts(ground_truth):
    wrong = [(c.metadata["id"], s["object_count"]) for c, s in ground_truth
             if s["object_count"] != len(c.metadata["objects"])]
    assert len(wrong) <= 0.01 * len(ground_truth), wrong


def test_a_duplicated_object_counts_two_and_fails_count_and_colour(ground_truth, quickstart):
    """The object drawn a second time, point-mirrored through the frame's centre, on every
    frame: one colour, two blobs."""
    d = quickstart.data
    singles = [c for c, _ in ground_truth if len(c.metadata["objects"]) == 1][:4]
    assert len(singles) == 4
    for clip in singles:
        positions = np.asarray(clip.metadata["positions"], np.float64)  # [T, 1, 2]
        mirrored = np.array([d.width, d.height]) - positions
        objects = clip.metadata["objects"]
        video = _render(quickstart, clip, np.concatenate([positions, mirrored], 1),
                        objects + objects)
        twice = judge.score_clip(video, clip.audio, quickstart, objects)
        once = judge.score_clip(_render(quickstart, clip, positions), clip.audio, quickstart,
                                objects)
        assert (once["object_count"], once["count"], once["colour"]) == (1, 1.0, 1.0)
        assert (twice["object_count"], twice["count"], twice["colour"]) == (2, 0.0, 0.0), (
            clip.metadata["id"])
        # Asking for two objects of that colour does not make them pass: colours are unique.
        assert judge.score_clip(video, clip.audio, quickstart, objects * 2)["colour"] == 0.0


def test_latent_boundaries_follow_the_causal_layout():
    # t_down 4: latent 0 is frame 0, latent 1 frames 1-4, latent 2 frames 5-8.
    np.testing.assert_array_equal(analysis.latent_boundaries(9, 4),
                                  [1, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(analysis.latent_boundaries(5, 2), [1, 0, 1, 0])
    assert analysis.latent_boundaries(5, 1).all()
    with pytest.raises(ValueError, match="video_vae.t_down"):
        analysis.latent_boundaries(5, 0)
    # With t_down 1 nothing is inside a latent: no inside median, no ratio.
    track = [[float(t), 0.0] for t in range(5)]
    boundary, inside = analysis.latent_jumps([track, [None] * 5], 1)
    np.testing.assert_allclose(boundary, [1.0] * 4)
    assert len(inside) == 0
    b, i, ratio = analysis.jump_stats(boundary, inside)
    assert b == 1.0 and math.isnan(i) and math.isnan(ratio)
    assert math.isinf(analysis.jump_stats([2.0], [0.0])[2])
    assert math.isnan(analysis.jump_stats([0.0], [0.0])[2])


def test_jump_ratio_is_one_on_ground_truth_and_catches_latent_jumps(ground_truth, quickstart):
    """Each latent's frames offset by a tenth of the frame on every other latent: the
    objects jump at every boundary, as a generator smooth only inside a latent makes them."""
    t_down = quickstart.video_vae.t_down
    truth = judge.aggregate([s for _, s in ground_truth], quickstart.data.fps)
    assert 0.95 <= truth["jump_ratio"] <= 1.05, truth
    clips = [c for c, _ in ground_truth[:10]]
    latent = np.array([0, *(1 + np.arange(quickstart.num_frames - 1) // t_down)])
    offset = 0.1 * quickstart.data.width * np.array([1.0, 1.0]) / math.sqrt(2)
    jumpy = []
    for clip in clips:
        positions = np.asarray(clip.metadata["positions"], np.float64)
        positions = positions + (latent % 2)[:, None, None] * offset
        jumpy.append(judge.score_clip(_render(quickstart, clip, positions), clip.audio,
                                      quickstart, clip.metadata["objects"]))
    report = judge.aggregate(jumpy, quickstart.data.fps)
    assert report["jump_ratio"] > 2.0, report
    # Inside a latent the motion is the true one.
    assert report["jump_inside_px"] == pytest.approx(truth["jump_inside_px"], rel=0.1)


def test_onset_agreement_of_the_true_sound_and_of_another_clips(ground_truth, quickstart):
    fps = quickstart.data.fps
    bounces = [s["bounce_times"] for _, s in ground_truth]
    onsets = [s["onset_times"] for _, s in ground_truth]
    n = len(onsets)
    true = judge.onset_agreement(bounces, [[o, o, o] for o in onsets], fps)
    assert true["dub_agreement"] >= 0.99
    assert true["dub_agreement_shuffled"] < 0.4
    # One seed of three dubbing with another clip's sound breaks the agreement.
    one_off = judge.onset_agreement(
        bounces, [[onsets[i], onsets[(i + 2) % n], onsets[i]] for i in range(n)], fps)
    assert one_off["dub_agreement"] < 0.4
    others = judge.onset_agreement(bounces, [[onsets[(i + 2) % n]] * 2 for i in range(n)], fps)
    assert others["dub_agreement"] < 0.4
    # A single seed's agreement is its sync hit rate.
    single = judge.onset_agreement(bounces, [[o] for o in onsets], fps)
    assert single["dub_agreement"] == judge.aggregate([s for _, s in ground_truth],
                                                      fps)["sync_hit"]
    assert math.isnan(judge.onset_agreement(bounces[:1], [[onsets[0]]], fps)[
        "dub_agreement_shuffled"])
    with pytest.raises(ValueError, match="onset_times has 1 clips"):
        judge.onset_agreement(bounces[:2], [[onsets[0]]], fps)


def test_object_kept_on_ground_truth_and_on_a_changed_object(ground_truth, quickstart):
    clips = [c for c, _ in ground_truth[:50]]
    kept = [judge.object_kept(c.video[0], c.video[1:], quickstart) for c in clips]
    # An object under another on frame 0 is not seen there (test_000020 here; 1 clip in 100).
    assert np.mean(kept) >= 0.98
    swapped = 0
    for clip in clips[:10]:
        other = next(c for c in clips if {o["colour"] for o in c.metadata["objects"]}.isdisjoint(
            {o["colour"] for o in clip.metadata["objects"]}))
        assert judge.object_kept(clip.video[0], other.video[1:], quickstart) == 0.0
        swapped += 1
    assert swapped == 10
    empty = np.zeros_like(clips[0].video[0])
    assert math.isnan(judge.object_kept(empty, clips[0].video[1:], quickstart))


def test_consistency_columns_get_a_table_of_their_own():
    rows = {"ground truth": {"colour": 1.0, "jump_ratio": 1.0123, "jump_boundary_px": 2.3,
                             "frame0_psnr": 31.25}}
    lines = judge.format_table({**rows, "dub": {"sync_hit": 1.0}},
                               judge.CONSISTENCY_COLUMNS).splitlines()
    assert len(lines) == 3  # a row with none of the columns is left out
    assert lines[0].split() == ["jump_ratio", "jump_boundary_px", "frame0_psnr"]
    assert lines[2].split() == ["ground", "truth", "1.01", "2.30", "31.2"]
    assert judge.format_table(rows).splitlines()[0].split() == [
        "colour", "jump_ratio", "jump_boundary_px", "frame0_psnr"]


def test_caption_scores_of_clips_of_several_objects_on_their_own():
    one = [{"colour": "red", "shape": "circle", "speed": "slow"}]
    two = [{"colour": "green", "shape": "square", "speed": "fast"},
           {"colour": "blue", "shape": "triangle", "speed": "slow"}]
    written = ["a slow red ball", "a fast green square and a fast green square"]
    scores = captions.caption_scores(written, written, [one, two], "en")
    assert scores["colour"] == scores["shape"] == 0.5
    # the second object named as the first: every clip of two objects is wrong
    assert scores["colour_several"] == scores["shape_several"] == 0.0
    assert scores["repeated"] == 1.0
    both = captions.caption_scores(["a green square and a blue triangle"], [written[1]], [two],
                                   "en")
    assert both["shape_several"] == 1.0 and both["repeated"] == 0.0
    alone = captions.caption_scores(written[:1], written[:1], [one], "en")
    assert alone["shape"] == 1.0 and math.isnan(alone["shape_several"])
    assert math.isnan(alone["repeated"])
    assert "shape_several" in judge.format_table({"video_to_caption": scores})
