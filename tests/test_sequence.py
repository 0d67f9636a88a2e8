"""Sequence builder: task layouts, positions, loss masks, packing and the attention mask."""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest

from o1 import configs, sequence
from o1.batch import EXAMPLE_KEYS
from o1.config import TASKS
from o1.sequence import (
    AUDIO,
    BOS_ID,
    EOS_ID,
    MEDIA_END_ID,
    MEDIA_START_ID,
    TEXT,
    VIDEO,
    SequenceBuilder,
)

CONDITIONED = ("text_to_av", "video_to_audio", "audio_to_video", "image_to_video",
               "continuation")


def with_sequence(config, **changes):
    return dataclasses.replace(config, sequence=dataclasses.replace(config.sequence, **changes))


def make_example(config, seed=0, caption_len=6):
    """A cached example with random latents and a caption of `caption_len` ids (bos .. eos)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(6, config.text.vocab_size, caption_len - 2)
    return {
        "id": f"clip{seed}",
        "text_ids": np.array([BOS_ID, *words, EOS_ID], np.int32),
        "video_latents": rng.normal(size=(config.num_video_latents, *config.latent_grid,
                                          config.video_vae.channels)).astype(np.float32),
        "audio_latents": rng.normal(size=(config.num_audio_latents,
                                          config.audio.channels)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def config(tiny_config):
    return with_sequence(tiny_config, caption_dropout=0.0)


@pytest.fixture(scope="module")
def builder(config):
    return SequenceBuilder(config)


def blocks_of(built):
    """The example's segments as (first index, last index + 1) per block id."""
    return [tuple(np.flatnonzero(built["block"] == b)[[0, -1]] + [0, 1])
            for b in range(built["block"].max() + 1)]


# ----------------------------------------------------------------------------------------------
# Attention mask
# ----------------------------------------------------------------------------------------------


def test_mask_on_a_hand_written_row():
    # Example 1: text (2) | media (2) | text (1); example 2: text (1) | media (1); padding (1).
    seg = np.array([1, 1, 1, 1, 1, 2, 2, 0])
    block = np.array([0, 0, 1, 1, 2, 3, 4, -1])
    mod = np.array([TEXT, TEXT, VIDEO, AUDIO, TEXT, TEXT, AUDIO, TEXT])
    want = np.array([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],  # media sees its whole block, including later tokens
        [1, 1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0, 0],  # the caption after the media sees it
        [0, 0, 0, 0, 0, 1, 0, 0],  # nothing crosses examples
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0, 0, 1],  # padding sees only itself
    ], bool)
    np.testing.assert_array_equal(sequence.attention_mask(seg, block, mod), want)
    assert sequence.visible_keys(seg, block, mod) == want.sum() - 1


def test_mask_of_packed_examples(builder, config):
    rng = np.random.default_rng(0)
    examples = [builder.build(make_example(config, i), task, rng)
                for i, task in enumerate(["video_to_caption", "image_to_video"])]
    seq_len = sum(len(ex["tokens"]) for ex in examples) + 5
    row = builder.pack(examples, seq_len)
    seg, block, mod = row["segment_ids"], row["block"], row["modality"]
    mask = sequence.attention_mask(seg, block, mod)
    q, k = np.meshgrid(np.arange(seq_len), np.arange(seq_len), indexing="ij")
    text_q = (mod == TEXT)[:, None] & (seg != 0)[:, None]
    assert not (mask & text_q & (k > q)).any()  # text never sees its future
    assert not (mask & (seg[:, None] != seg[None, :])).any()  # nor another example, nor padding
    media = np.flatnonzero(mod != TEXT)
    for i in media:  # media sees its whole block and everything before it in its example
        same = seg == seg[i]
        assert (mask[i] == (same & ((block == block[i]) | (np.arange(seq_len) < i)))).all()
    (start, end), _, (cap_start, cap_end) = blocks_of(examples[0])
    assert mask[cap_start:cap_end, :cap_start].all()  # the caption sees the media before it
    pad = np.flatnonzero(seg == 0)
    np.testing.assert_array_equal(mask[pad], np.eye(seq_len, dtype=bool)[pad])
    assert sequence.visible_keys(seg, block, mod) == mask.sum() - len(pad)

    batch = builder.batch([examples, examples[:1]], seq_len)
    masks = sequence.attention_mask(batch["segment_ids"], batch["block"], batch["modality"])
    assert masks.shape == (2, seq_len, seq_len)
    assert sequence.visible_keys(batch["segment_ids"], batch["block"], batch["modality"]) == (
        masks.sum() - (batch["segment_ids"] == 0).sum())


# ----------------------------------------------------------------------------------------------
# Layout and positions
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", configs.NAMES)
def test_audio_and_video_of_the_same_instant_share_a_time(name):
    config = configs.get(name)
    built = SequenceBuilder(config).build(make_example(config), "text_to_av",
                                          np.random.default_rng(0))
    media = built["modality"] != TEXT
    time, row, col = built["positions"][media].T
    mod = built["modality"][media]
    offset = time[0]
    d, t_down, k = config.data, config.video_vae.t_down, config.latent_ratio
    audio_rate = Fraction(d.sample_rate, config.audio.hop * config.audio.a_down)
    rows, cols = config.token_grid
    per_frame = rows * cols
    at = 0
    for i in range(config.num_video_latents):
        first_frame = 0 if i == 0 else 1 + t_down * (i - 1)
        frame_time = Fraction(first_frame, d.fps) * audio_rate  # seconds -> audio latents
        assert frame_time.denominator == 1
        video = slice(at, at + per_frame)
        assert (mod[video] == VIDEO).all() and (time[video] - offset == frame_time).all()
        np.testing.assert_array_equal(row[video], np.repeat(np.arange(rows), cols))
        np.testing.assert_array_equal(col[video], np.tile(np.arange(cols), rows))
        n_audio = 1 if i == 0 else k
        audio = slice(at + per_frame, at + per_frame + n_audio)
        assert (mod[audio] == AUDIO).all()
        assert (row[audio] == rows).all() and (col[audio] == 0).all()
        # The first audio latent of the step starts exactly when the video latent does.
        assert time[audio][0] == time[video][0]
        at = audio.stop
    assert at == config.num_media_tokens
    audio_time = time[mod == AUDIO] - offset
    np.testing.assert_array_equal(audio_time, np.arange(config.num_audio_latents))
    # Audio latent j covers exactly the samples of video frame j (r_a == fps in both configs).
    assert config.audio.hop * config.audio.a_down == d.samples_per_frame


@pytest.mark.parametrize("task", TASKS)
def test_task_layouts_noise_and_losses(builder, config, task):
    example = make_example(config)
    caption = example["text_ids"]
    built = builder.build(example, task, np.random.default_rng(1))
    n = len(built["tokens"])
    assert all(len(v) == n for v in built.values())
    assert n <= config.max_example_len
    assert (built["task"] == TASKS.index(task)).all()
    segments = blocks_of(built)
    assert len(segments) == (3 if task == "video_to_caption" else 2)
    (s0, e0), (s1, e1) = segments[:2]
    first = built["tokens"][s0:e0]
    if task in CONDITIONED:
        np.testing.assert_array_equal(first, [*caption, MEDIA_START_ID])
    else:
        np.testing.assert_array_equal(first, [MEDIA_START_ID])
    assert (built["modality"][s1:e1] != TEXT).all() and (built["tokens"][s1:e1] == 0).all()
    assert (built["modality"][:s1] == TEXT).all() and (built["modality"][e1:] == TEXT).all()

    # Text positions advance all axes together, continuing past the previous segment's time.
    pos = built["positions"]
    text = built["modality"] == TEXT
    assert (pos[text] == pos[text][:, :1]).all()
    np.testing.assert_array_equal(pos[s0:e0, 0], np.arange(e0 - s0))
    assert pos[s1, 0] == e0 - s0
    if task == "video_to_caption":
        s2, e2 = segments[2]
        np.testing.assert_array_equal(pos[s2:e2, 0], pos[s1:e1, 0].max() + 1 + np.arange(e2 - s2))
        np.testing.assert_array_equal(built["tokens"][s2:e2], [MEDIA_END_ID, *caption])

    # Which media tokens are noised, and the flow loss on exactly those.
    mod, noise = built["modality"][s1:e1], built["noise"][s1:e1]
    noised = noise > 0
    step_of = np.repeat(np.arange(config.num_video_latents),
                        [np.prod(config.token_grid) + (1 if i == 0 else config.latent_ratio)
                         for i in range(config.num_video_latents)])
    if task in ("text_to_av", "unconditional"):
        assert noised.all()
    elif task == "video_to_caption":
        assert not noised.any()
    elif task == "video_to_audio":
        np.testing.assert_array_equal(noised, mod == AUDIO)
    elif task == "audio_to_video":
        np.testing.assert_array_equal(noised, mod == VIDEO)
    elif task == "image_to_video":
        np.testing.assert_array_equal(noised, ~((mod == VIDEO) & (step_of == 0)))
    elif task == "continuation":
        clean_steps = step_of[~noised].max() + 1
        assert 1 <= clean_steps <= config.num_video_latents - 1
        np.testing.assert_array_equal(noised, step_of >= clean_steps)
    assert len(np.unique(noise[noised])) <= 1  # one noise level per example
    np.testing.assert_array_equal(built["media_loss"], built["noise"] > 0)
    assert (built["noise"][text] == 0).all() and (built["media"][text] == 0).all()

    # Cross-entropy only on the caption of video_to_caption, for predictions of bos .. eos.
    lossed = built["text_loss"] > 0
    if task == "video_to_caption":
        s2, e2 = segments[2]
        np.testing.assert_array_equal(np.flatnonzero(lossed), np.arange(s2, e2 - 1))
        np.testing.assert_array_equal(built["targets"][lossed], caption)
    else:
        assert not lossed.any()


def test_continuation_keeps_between_one_and_all_but_one_steps_clean(builder, config):
    media = builder.build(make_example(config), "continuation", np.random.default_rng(0))[
        "modality"] != TEXT
    clean_video = set()
    for seed in range(60):
        built = builder.build(make_example(config), "continuation", np.random.default_rng(seed))
        clean = (built["noise"] == 0) & media
        clean_video.add(int((clean & (built["modality"] == VIDEO)).sum()))
    per_frame = int(np.prod(config.token_grid))
    assert clean_video == {per_frame * c for c in range(1, config.num_video_latents)}


def test_targets_are_next_tokens_of_the_same_segment(builder, config):
    built = builder.build(make_example(config), "video_to_caption", np.random.default_rng(0))
    for start, end in blocks_of(built):
        tokens, targets = built["tokens"][start:end], built["targets"][start:end]
        np.testing.assert_array_equal(targets[:-1], tokens[1:])
        assert targets[-1] == 0


@pytest.mark.parametrize("task", TASKS)
def test_caption_dropout(tiny_config, task):
    example = make_example(tiny_config)
    for p in (0.0, 1.0):
        builder = SequenceBuilder(with_sequence(tiny_config, caption_dropout=p))
        for seed in range(3):
            built = builder.build(example, task, np.random.default_rng(seed))
            first = built["tokens"][built["block"] == 0]
            dropped = len(first) == 1
            assert dropped == (task not in CONDITIONED or p == 1.0)
            if task == "video_to_caption":  # the caption target is never dropped
                assert built["text_loss"].sum() == len(example["text_ids"])


def test_long_captions_are_cut_keeping_bos_and_eos(builder, config):
    max_len = config.sequence.max_text_len
    example = make_example(config, caption_len=max_len + 9)
    for task in TASKS:
        built = builder.build(example, task, np.random.default_rng(0))
        assert len(built["tokens"]) <= config.max_example_len
        caption = built["tokens"][built["block"] == (2 if task == "video_to_caption" else 0)]
        caption = caption[(caption != MEDIA_START_ID) & (caption != MEDIA_END_ID)]
        if task in CONDITIONED or task == "video_to_caption":
            assert len(caption) == max_len
            assert caption[0] == BOS_ID and caption[-1] == EOS_ID
            np.testing.assert_array_equal(caption[:-1], example["text_ids"][:max_len - 1])
    built = builder.build(example, "video_to_caption", np.random.default_rng(0))
    assert len(built["tokens"]) == config.max_example_len


def test_noise_levels_are_in_the_open_unit_interval(tiny_config):
    for mean, shift in [(0.0, 1.0), (-30.0, 1.0), (30.0, 1.0), (0.0, 3.0), (0.0, 0.2)]:
        builder = SequenceBuilder(with_sequence(tiny_config, noise_mean=mean, noise_shift=shift))
        rng = np.random.default_rng(0)
        levels = np.array([builder.noise_level(rng) for _ in range(200)])
        assert (levels > 0).all() and (levels <= 1).all()
        built = builder.build(make_example(tiny_config), "text_to_av", rng)
        assert (built["noise"][built["modality"] != TEXT] > 0).all()
    # A shift above 1 moves levels towards noise.
    rng = np.random.default_rng(0)
    plain = [SequenceBuilder(tiny_config).noise_level(rng) for _ in range(500)]
    rng = np.random.default_rng(0)
    shifted = [SequenceBuilder(with_sequence(tiny_config, noise_shift=3.0)).noise_level(rng)
               for _ in range(500)]
    assert np.mean(shifted) > np.mean(plain) + 0.1


@pytest.mark.parametrize("task", ["text_to_av", "image_to_video", "continuation",
                                  "video_to_audio"])
def test_step_noise_draws_one_level_per_latent_time_step(tiny_config, task):
    """sequence.step_noise=1: the tokens of one latent time step (its video and its audio)
    share a level, each step its own; which tokens are noised and lossed does not change."""
    example = make_example(tiny_config)
    stepped = SequenceBuilder(with_sequence(tiny_config, step_noise=1.0))
    built = stepped.build(example, task, np.random.default_rng(1))
    plain = SequenceBuilder(tiny_config).build(example, task, np.random.default_rng(1))
    np.testing.assert_array_equal(built["media_loss"], plain["media_loss"])
    np.testing.assert_array_equal(built["noise"] > 0, plain["noise"] > 0)
    media = built["modality"] != TEXT
    noised = built["media_loss"][media] > 0
    level, step = built["noise"][media][noised], stepped.latent_step[noised]
    per_step = {int(s): set(level[step == s].tolist()) for s in np.unique(step)}
    assert all(len(levels) == 1 for levels in per_step.values())
    assert len({levels.pop() for levels in per_step.values()}) == len(per_step) >= 2
    assert ((level > 0) & (level <= 1)).all()
    # step_noise=0 (the default) draws nothing more: every other config's sequences stay
    none = SequenceBuilder(with_sequence(tiny_config, step_noise=0.0))
    again = none.build(example, task, np.random.default_rng(1))
    for key in EXAMPLE_KEYS:
        np.testing.assert_array_equal(again[key], plain[key])


def test_media_features_round_trip_to_the_latents(builder, config):
    example = make_example(config)
    built = builder.build(example, "video_to_audio", np.random.default_rng(0))
    media = built["modality"] != TEXT
    feats, mod = built["media"][media], built["modality"][media]
    time, row, col = built["positions"][media].T
    # Un-patchify by hand from the documented layout: (p_row, p_col, C) features per patch.
    p, c = config.sequence.video_patch, config.video_vae.channels
    video = np.full(example["video_latents"].shape, np.nan, np.float32)
    frame_of_time = {tt: i for i, tt in enumerate(np.unique(time[mod == VIDEO]))}
    for f, tt, r, cc in zip(feats[mod == VIDEO], time[mod == VIDEO], row[mod == VIDEO],
                            col[mod == VIDEO], strict=True):
        video[frame_of_time[tt], r * p:(r + 1) * p, cc * p:(cc + 1) * p] = f[:p * p * c].reshape(
            p, p, c)
        assert (f[p * p * c:] == 0).all()
    np.testing.assert_array_equal(video, example["video_latents"])
    audio = feats[mod == AUDIO]
    np.testing.assert_array_equal(audio[:, :config.audio.channels], example["audio_latents"])
    assert (audio[:, config.audio.channels:] == 0).all()
    v, a = builder.unpack_media(feats)
    np.testing.assert_array_equal(v, example["video_latents"])
    np.testing.assert_array_equal(a, example["audio_latents"])


def test_bad_inputs_name_the_problem(builder, config):
    example = make_example(config)
    with pytest.raises(ValueError, match="unknown task 'dance'"):
        builder.build(example, "dance", np.random.default_rng(0))
    bad = dict(example, audio_latents=example["audio_latents"][:-1])
    with pytest.raises(ValueError, match=r"audio latents \(32, 4\)"):
        builder.build(bad, "text_to_av", np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------
# Sampling, packing, determinism
# ----------------------------------------------------------------------------------------------


def test_task_sampling_follows_the_weights(tiny_config):
    weights = dict(text_to_av=3.0, video_to_caption=1.0, video_to_audio=0.0,
                   audio_to_video=0.0, image_to_video=0.0, continuation=0.0, unconditional=0.0)
    builder = SequenceBuilder(with_sequence(tiny_config, **weights))
    rng = np.random.default_rng(0)
    drawn = [builder.sample_task(rng) for _ in range(2000)]
    assert set(drawn) == {"text_to_av", "video_to_caption"}
    assert abs(drawn.count("text_to_av") / len(drawn) - 0.75) < 0.05


def test_pack_offsets_blocks_and_pads(builder, config):
    rng = np.random.default_rng(0)
    a = builder.build(make_example(config, 0), "video_to_caption", rng)
    b = builder.build(make_example(config, 1), "text_to_av", rng)
    n_a, n_b = len(a["tokens"]), len(b["tokens"])
    row = builder.pack([a, b], n_a + n_b + 3)
    np.testing.assert_array_equal(row["segment_ids"], [1] * n_a + [2] * n_b + [0] * 3)
    np.testing.assert_array_equal(row["block"][:n_a], a["block"])
    np.testing.assert_array_equal(row["block"][n_a:n_a + n_b], b["block"] + 3)
    assert (row["block"][-3:] == sequence.PAD_BLOCK).all()
    for key in set(EXAMPLE_KEYS) - {"block"}:
        np.testing.assert_array_equal(row[key][n_a:n_a + n_b], b[key])
        assert (row[key][-3:] == 0).all()
    with pytest.raises(ValueError, match=rf"lengths \[{n_a}, {n_b}\]"):
        builder.pack([a, b], n_a + n_b - 1)
    batch = builder.batch([[a, b], [b], []], config.seq_len * 2)
    assert batch["media"].shape == (3, config.seq_len * 2, config.media_dim)
    assert batch["positions"].shape == (3, config.seq_len * 2, 3)
    assert (batch["segment_ids"][2] == 0).all()


def test_builds_are_deterministic_given_the_seed(builder, config):
    example = make_example(config)
    for task in TASKS:
        one = builder.build(example, task, np.random.default_rng(7))
        two = builder.build(example, task, np.random.default_rng(7))
        for key in one:
            np.testing.assert_array_equal(one[key], two[key])
    levels = {float(builder.build(example, "text_to_av", np.random.default_rng(s))["noise"][-1])
              for s in range(5)}
    assert len(levels) == 5


@pytest.mark.parametrize("overrides", [["data.fps=8"], ["data.fps=8", "video_vae.t_down=2"]])
def test_other_rate_pairings_keep_every_latent_once_and_aligned(overrides):
    # fps 8: two audio latents per frame (k = 8, 34 audio latents for 5 video latents).
    config = configs.get("tiny", overrides)
    built = SequenceBuilder(config).build(make_example(config), "text_to_av",
                                          np.random.default_rng(0))
    media = built["modality"] != TEXT
    mod, time = built["modality"][media], built["positions"][media][:, 0]
    assert media.sum() == config.num_media_tokens
    audio_time = time[mod == AUDIO] - time[0]
    np.testing.assert_array_equal(audio_time, np.arange(config.num_audio_latents))
    d = config.data
    per_audio = Fraction(config.audio.hop * config.audio.a_down, d.sample_rate)  # seconds
    video_starts = np.flatnonzero((mod == VIDEO) & (np.roll(mod, 1) != VIDEO))
    for i, at in enumerate(video_starts):
        frame = 0 if i == 0 else 1 + config.video_vae.t_down * (i - 1)
        assert time[at] - time[0] == Fraction(frame, d.fps) / per_audio
        # The audio right after a video latent starts at the same instant.
        after = at + config.token_grid[0] * config.token_grid[1]
        assert mod[after] == AUDIO and time[after] == time[at]


@pytest.mark.parametrize("overrides", [
    [], ["sequence.media_attention=causal", "sequence.step_noise=0.5", "sequence.clean_past=0.5"]])
def test_a_batch_laid_out_in_place_equals_the_built_examples_packed(overrides):
    config = configs.get("tiny", overrides)
    builder = SequenceBuilder(config)
    examples = [make_example(config, i) for i in range(14)]
    tasks = [TASKS[i % len(TASKS)] for i in range(14)]
    rng = np.random.default_rng(3)
    built = [builder.build(ex, task, rng) for ex, task in zip(examples, tasks, strict=True)]
    seq_len = 2 * max(len(b["tokens"]) for b in built) + 3
    rng = np.random.default_rng(3)  # the same draws again
    drawn = [(builder.prepare(ex), builder.draw(task, rng))
             for ex, task in zip(examples, tasks, strict=True)]
    want = builder.batch([built[i:i + 2] for i in range(0, 14, 2)], seq_len)
    got = builder.batch_drawn([drawn[i:i + 2] for i in range(0, 14, 2)], seq_len)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    with pytest.raises(ValueError, match="do not fit in a row of seq_len"):
        builder.batch_drawn([drawn[:3]], seq_len)
