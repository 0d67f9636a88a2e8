"""The sampler on a randomly initialized tiny model: cached paths equal the uncached
reference, seeds fix outputs, and prompts of one bucket share one compiled program."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from o1 import configs
from o1.config import ConfigError, SampleConfig
from o1.model import new_model
from o1.sampler import (
    FlowOptions,
    MediaRequest,
    RequestError,
    Sampler,
    TextOptions,
    buckets,
    seed_of,
    text_inputs,
)
from o1.sequence import AUDIO, EOS_ID, PAD_ID, VIDEO, random_example


@pytest.fixture(scope="module")
def sampler():
    config = configs.get("tiny")
    return Sampler(config, new_model(config, seed=3))


def _requests(sampler, caption_len=8):
    ex = random_example(sampler.config, seed=1, caption_len=caption_len)
    b = sampler.builder
    return [MediaRequest(ex["text_ids"], ex["video_latents"], ex["audio_latents"],
                         b.noised_mask("text_to_av")),
            MediaRequest(ex["text_ids"], ex["video_latents"], ex["audio_latents"],
                         b.noised_mask("image_to_video")),
            MediaRequest(None, ex["video_latents"], ex["audio_latents"],
                         b.noised_mask("video_to_audio"))], ex


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_kv_cached_prefix_gives_the_samples_of_the_whole_row(sampler, solver):
    requests, _ = _requests(sampler)
    options = FlowOptions(steps=3, solver=solver, cfg_video=2.5, cfg_audio=4.0)
    cached = sampler.sample_media(requests, options, jax.random.key(0))
    whole = sampler.sample_media(requests, options, jax.random.key(0), cached=False)
    assert np.abs(cached).max() > 0.5  # real samples, not zeros
    np.testing.assert_allclose(cached, whole, atol=2e-5, rtol=0)


def test_fixed_seed_gives_identical_samples_and_keeps_the_context(sampler):
    requests, ex = _requests(sampler)
    options = FlowOptions(steps=2)
    a = sampler.sample_media(requests, options, jax.random.key(7))
    b = sampler.sample_media(requests, options, jax.random.key(7))
    c = sampler.sample_media(requests, options, jax.random.key(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # Context tokens come back exactly as given: the first video latent of image_to_video,
    # all the video of video_to_audio.
    video, _ = sampler.builder.unpack_media(a[1])
    np.testing.assert_array_equal(video[0], ex["video_latents"][0])
    assert not np.allclose(video[1:], ex["video_latents"][1:])
    video, audio = sampler.builder.unpack_media(a[2])
    np.testing.assert_array_equal(video, ex["video_latents"])
    assert not np.allclose(audio, ex["audio_latents"])
    # Feature slots past a token's width stay zero.
    modality = sampler.builder.media_segment(ex["video_latents"], ex["audio_latents"],
                                             requests[0].noised, 1.0, 0)["modality"]
    assert np.all(a[0][modality == AUDIO, sampler.config.audio.channels:] == 0)
    assert np.all(a[0][modality == VIDEO, sampler.config.video_token_dim:] == 0)


def test_guidance_scale_one_equals_the_conditional_pass_alone(sampler):
    requests, _ = _requests(sampler)
    plain = FlowOptions(steps=2, cfg_video=1.0, cfg_audio=1.0)
    assert not plain.guided
    a = sampler.sample_media(requests[:1], plain, jax.random.key(0))
    b = sampler.sample_media(requests[:1], FlowOptions(steps=2, cfg_video=3.0, cfg_audio=1.0),
                             jax.random.key(0))
    video = sampler.builder.media_segment(requests[0].video, requests[0].audio,
                                          requests[0].noised, 1.0, 0)["modality"] == VIDEO
    audio_gap = np.abs(a[0][~video] - b[0][~video]).max()  # scale 1 either way
    video_gap = np.abs(a[0][video] - b[0][video]).max()  # guided vs not
    assert audio_gap < 2e-6 and video_gap > 50 * max(audio_gap, 1e-7)


def test_second_call_in_a_bucket_pays_no_compilation(sampler):
    short, _ = _requests(sampler, caption_len=4)
    longer, _ = _requests(sampler, caption_len=7)  # prefixes of 5 and 8 ids: both bucket 8
    assert sampler.buckets[0] == 8 and buckets(configs.get("quickstart")) == (8, 16, 32, 64)
    options = FlowOptions(steps=2)
    sampler.sample_media(short[:1], options, jax.random.key(0))
    sizes = (sampler._denoise._cache_size(), sampler._prefill._cache_size())
    sampler.sample_media(longer[:1], options, jax.random.key(1))
    assert (sampler._denoise._cache_size(), sampler._prefill._cache_size()) == sizes


def test_over_long_caption_is_refused(sampler):
    requests, _ = _requests(sampler, caption_len=sampler.config.sequence.max_text_len + 1)
    with pytest.raises(ValueError, match="max_text_len"):
        sampler.sample_media(requests[:1], FlowOptions(steps=1), jax.random.key(0))


@pytest.mark.parametrize("options", [TextOptions(max_tokens=12),
                                     TextOptions(max_tokens=12, temperature=1.3, top_p=0.8)],
                         ids=["greedy", "top_p"])
def test_cached_and_uncached_text_decoding_give_the_same_tokens(sampler, options):
    ex = random_example(sampler.config, seed=2)
    prefixes = [sampler.caption_prefix(ex["video_latents"], ex["audio_latents"]),
                sampler.caption_prefix(-ex["video_latents"], ex["audio_latents"])]
    cached = sampler.decode_text(prefixes, options, jax.random.key(5))
    whole = sampler.decode_text(prefixes, options, jax.random.key(5), cached=False)
    assert cached.shape == (2, 12)
    np.testing.assert_array_equal(cached, whole)
    again = sampler.decode_text(prefixes, options, jax.random.key(5))
    np.testing.assert_array_equal(cached, again)


def test_decoding_stops_at_eos_and_top_p_near_zero_is_greedy(sampler):
    ex = random_example(sampler.config, seed=4)
    prefix = [sampler.caption_prefix(ex["video_latents"], ex["audio_latents"])]
    greedy = sampler.decode_text(prefix, TextOptions(max_tokens=16), jax.random.key(0))
    nucleus = sampler.decode_text(prefix, TextOptions(max_tokens=16, temperature=2.0,
                                                      top_p=1e-6), jax.random.key(0))
    np.testing.assert_array_equal(greedy, nucleus)
    sampled = sampler.decode_text(prefix * 8, TextOptions(max_tokens=16, temperature=3.0),
                                  jax.random.key(1))
    for row in sampled:
        ends = np.flatnonzero(row == EOS_ID)
        if len(ends):  # everything after the first eos is padding
            assert np.all(row[ends[0] + 1:] == PAD_ID)
        assert not np.any(row[: ends[0] if len(ends) else None] == PAD_ID)


def test_decoded_text_stays_within_the_tokenizers_ids(sampler):
    ex = random_example(sampler.config, seed=5)
    prefix = [sampler.caption_prefix(ex["video_latents"], ex["audio_latents"])] * 8
    options = TextOptions(max_tokens=16, temperature=5.0)
    unbounded = sampler.decode_text(prefix, options, jax.random.key(2))
    assert unbounded.max() >= 12  # a random model does write the high ids
    small = Sampler(sampler.config, nnx.merge(sampler.graphdef, sampler.params), text_vocab=12)
    assert small.decode_text(prefix, options, jax.random.key(2)).max() < 12


def _caption_log_probs(sampler, prefix, captions):
    """Each caption's log-probability under the model, read from one pass over the whole row
    (no cache), over the ids decoding may write."""
    model = nnx.merge(sampler.graphdef, sampler.params)
    g = max(len(c) for c in captions)
    ids = np.array([list(c) + [PAD_ID] * (g - len(c)) for c in captions], np.int32)
    rows = {k: np.repeat(np.asarray(v)[None], len(captions), 0) for k, v in prefix.items()}
    rows["segment_ids"] = np.ones_like(rows["tokens"])
    n = rows["tokens"].shape[1]
    written = text_inputs(jax.numpy.asarray(ids), rows["positions"][:, -1, 0] + 1,
                          rows["block"][:, -1:], rows["media"].shape[-1])
    full = {k: np.concatenate([rows[k], np.asarray(written[k], rows[k].dtype)], 1) for k in rows}
    logits = model(full).logits[:, n - 1: n - 1 + g]  # [C, g, V]: the ids' distributions
    c, _, v = logits.shape
    logp = np.asarray(jax.nn.log_softmax(sampler._allowed(logits.reshape(c * g, v)), -1))
    logp = logp.reshape(c, g, v)
    return np.array([sum(logp[i, j, t] for j, t in enumerate(c)) for i, c in enumerate(captions)])


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_beam_search_as_wide_as_every_caption_finds_the_most_likely_per_id(seed):
    config = configs.get("tiny")
    # Ids under 8 that text may hold: eos (2), unk (3), 6 and 7; with 3 ids at most there
    # are 1 + 3 + 9 * 4 = 40 captions (the last ones cut at max_tokens), fewer than the beams.
    small = Sampler(config, new_model(config, seed=seed), text_vocab=8)
    ex = random_example(config, seed=6)
    prefix = small.caption_prefix(ex["video_latents"], ex["audio_latents"])
    words = (3, 6, 7)
    captions = [(EOS_ID,)] + [(a, EOS_ID) for a in words] + [
        (a, b, c) for a in words for b in words for c in (EOS_ID,) + words]
    per_id = _caption_log_probs(small, prefix, captions) / np.array([len(c) for c in captions])
    ended = np.array([c[-1] == EOS_ID for c in captions])
    found = small.decode_text([prefix], TextOptions(max_tokens=3, beams=64),
                              jax.random.key(0))[0]
    written = tuple(int(t) for t in found if t != PAD_ID)
    assert written in captions and written[-1] == EOS_ID  # a cut caption only when none ends
    best = per_id[ended].max()
    assert per_id[captions.index(written)] == pytest.approx(best, abs=1e-5)


def test_beam_search_decodes_each_row_as_it_would_alone(sampler):
    ex = random_example(sampler.config, seed=2)
    # Two text ids after bos (where a language tag goes) that this model continues apart.
    prefixes = [sampler.caption_prefix(ex["video_latents"], ex["audio_latents"], tag=tag)
                for tag in (10, 30)]
    options = TextOptions(max_tokens=12, beams=3)
    both = sampler.decode_text(prefixes, options, jax.random.key(0))
    assert both.shape == (2, 12)
    assert not np.array_equal(both[0], both[1])
    greedy = sampler.decode_text(prefixes, TextOptions(max_tokens=12), jax.random.key(0))
    assert not np.array_equal(both, greedy)
    for prefix, row in zip(prefixes, both, strict=True):
        np.testing.assert_array_equal(sampler.decode_text([prefix], options,
                                                          jax.random.key(1))[0], row)
        ends = np.flatnonzero(row == EOS_ID)
        if len(ends):  # everything after the first eos is padding
            assert np.all(row[ends[0] + 1:] == PAD_ID)


def test_beam_search_at_a_temperature_is_refused_naming_the_fix():
    with pytest.raises(RequestError, match=r"^beams 4 is beam search, which decodes at "
                                           r"temperature 0, got temperature 0.7; ask for 1 beam"):
        TextOptions(beams=4, temperature=0.7)
    with pytest.raises(ConfigError, match=r"^sample.beams 2 is beam search"):
        SampleConfig(beams=2, temperature=1.0)
    with pytest.raises(RequestError, match="from 1 to 16"):
        TextOptions.of(SampleConfig(), beams=17)


@pytest.mark.parametrize("options, bad", [
    (FlowOptions, {"steps": 0}), (FlowOptions, {"steps": 2.5}), (FlowOptions, {"steps": True}),
    (FlowOptions, {"solver": "rk4"}), (FlowOptions, {"shift": 0.0}),
    (FlowOptions, {"cfg_video": -1.0}), (FlowOptions, {"cfg_audio": float("nan")}),
    (FlowOptions, {"cfg_video": "3"}), (TextOptions, {"max_tokens": 0}),
    (TextOptions, {"temperature": -1.0}), (TextOptions, {"top_p": 0.0}),
    (TextOptions, {"beams": 0}), (TextOptions, {"beams": 2.5}),
])
def test_a_bad_option_raises_a_request_error_that_names_it(options, bad):
    ((name, value),) = bad.items()
    with pytest.raises(RequestError, match=rf"^{name} must be .*, got {re.escape(repr(value))}$"):
        options(**bad)


def test_options_default_to_the_sample_section_and_take_what_is_given():
    sample = SampleConfig()
    assert FlowOptions() == FlowOptions.of(sample)
    assert TextOptions() == TextOptions.of(sample)
    custom = dataclasses.replace(sample, steps=20, cfg_audio=1.0, top_p=0.9)
    flow = FlowOptions.of(custom, steps=None, cfg_video=2)
    assert (flow.steps, flow.cfg_video, flow.cfg_audio) == (20, 2.0, 1.0)
    assert isinstance(flow.cfg_video, float)
    assert TextOptions.of(custom, max_tokens=8.0) == TextOptions(8, 0.0, 0.9)
    assert isinstance(FlowOptions(steps=12.0).steps, int)  # a web form's 12.0
    assert seed_of(custom, None) == 0 and seed_of(custom, 7.0) == 7
    with pytest.raises(RequestError, match="seed must be a whole number from 0 to 2147483647"):
        seed_of(custom, 2**31)


def test_grid_runs_from_noise_to_clean():
    grid = FlowOptions(steps=4, shift=3.0).grid()
    assert grid[0] == 1.0 and grid[-1] == 0.0 and np.all(np.diff(grid) < 0)


def test_a_language_tag_ends_the_captioning_prefix_as_training_writes_it(sampler):
    from o1.sequence import BOS_ID, MEDIA_END_ID

    ex = random_example(sampler.config, seed=3)
    plain = sampler.caption_prefix(ex["video_latents"], ex["audio_latents"])
    tagged = sampler.caption_prefix(ex["video_latents"], ex["audio_latents"], tag=7)
    assert list(plain["tokens"][-2:]) == [MEDIA_END_ID, BOS_ID]
    assert list(tagged["tokens"][-3:]) == [MEDIA_END_ID, BOS_ID, 7]
    for key in plain:  # the same prefix, one text token longer, on the next position
        np.testing.assert_array_equal(tagged[key][:-1], plain[key], err_msg=key)
    assert tagged["positions"][-1, 0] == plain["positions"][-1, 0] + 1
    assert tagged["block"][-1] == plain["block"][-1]
    # Training lays a tagged caption out the same way: [</media>, bos, tag, ...] in one block.
    builder = sampler.builder
    caption = np.array([BOS_ID, 7, 9, 2], np.int32)
    built = builder.build({**ex, "text_ids": caption}, "video_to_caption",
                          np.random.default_rng(0))
    n = len(tagged["tokens"])
    for key in ("tokens", "positions", "block", "modality"):
        np.testing.assert_array_equal(built[key][:n], tagged[key], err_msg=key)


def test_reading_a_greedy_caption_back_ranks_each_of_its_ids_first(sampler):
    ex = random_example(sampler.config, seed=2)
    prefix = sampler.caption_prefix(ex["video_latents"], ex["audio_latents"])
    ids = sampler.decode_text([prefix], TextOptions(max_tokens=10), jax.random.key(0))[0]
    ids = ids[ids != PAD_ID]
    logp = sampler.read_text(prefix, ids)
    assert logp.shape == (len(ids), sampler.config.text.vocab_size)
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(np.argmax(sampler._allowed(jnp.asarray(logp)), -1), ids)
    with pytest.raises(ValueError, match="1 to"):
        sampler.read_text(prefix, np.zeros(sampler.config.sequence.max_text_len + 1, np.int32))
