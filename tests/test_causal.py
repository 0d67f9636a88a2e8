"""Frame-causal media (`sequence.media_attention="causal"`): a latent time step never sees a
later one, in training and in KV-cached step-by-step sampling; the cached sampler equals the
whole-row reference; every task runs through the causal path."""

import jax
import numpy as np
import pytest

from o1 import configs
from o1.model import new_model
from o1.sampler import FlowOptions, MediaRequest, Sampler, TextOptions, denoising_passes
from o1.sequence import AUDIO, VIDEO, SequenceBuilder, random_example
from tests.test_model import copy_row, make_forward


@pytest.fixture(scope="module")
def config():
    return configs.get("tiny", ["sequence.media_attention=causal",
                                "sequence.caption_dropout=0.0"])


@pytest.fixture(scope="module")
def builder(config):
    return SequenceBuilder(config)


@pytest.fixture(scope="module")
def sampler(config):
    return Sampler(config, new_model(config, seed=3))


def test_each_latent_step_is_a_block_of_its_own(config, builder):
    built = builder.build(random_example(config, 0), "video_to_caption",
                          np.random.default_rng(0))
    media = built["modality"] != 0
    steps = builder.latent_step
    # [<media>] is block 0, latent step i block 1 + i, the caption after them block 1 + t.
    np.testing.assert_array_equal(built["block"][media], 1 + steps)
    assert built["block"][0] == 0 and set(built["block"][~media][1:]) == {1 + builder.t}
    for i in range(builder.t):
        start, end = builder.step_span(i)
        assert (steps[start:end] == i).all() and end - start > 0
        # each step holds the video patches of its latent frame and its audio latents
        assert set(built["modality"][1 + start:1 + end]) == {VIDEO, AUDIO}


def test_clean_past_keeps_the_first_steps_clean_and_unlossed(config):
    b = SequenceBuilder(configs.get("tiny", ["sequence.media_attention=causal",
                                             "sequence.clean_past=1.0"]))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        built = b.build(random_example(config, 0), "video_to_audio", rng)
        media = built["modality"] != 0
        step, lossed = b.latent_step, built["media_loss"][media] > 0
        c = step[lossed].min()
        assert 1 <= c < b.t
        seen.add(int(c))
        # lossed: exactly the audio of steps >= c; everything else is clean context
        np.testing.assert_array_equal(lossed, (step >= c) & (built["modality"][media] == AUDIO))
        assert (built["noise"][media][~lossed] == 0).all()
    assert len(seen) > 2  # c is drawn, not fixed


@pytest.mark.parametrize("task", ["text_to_av", "video_to_caption"])
def test_changing_step_j_never_changes_earlier_steps_in_training(config, builder, task):
    """The training forward pass: perturbing every media token of latent step j leaves the
    outputs of the prefix and of steps < j bit-identical, and moves every token of step j."""
    forward = make_forward(new_model(config, seed=0))
    example = builder.build(random_example(config, 0), task, np.random.default_rng(0))
    row = builder.pack([example], config.seq_len)
    row = {k: v[None] for k, v in row.items()}
    logits, velocity = forward(row)
    first = int(np.flatnonzero(row["modality"][0] != 0)[0])
    for j in (1, builder.t // 2, builder.t - 1):
        start, end = (first + s for s in builder.step_span(j))
        other = copy_row(row)
        other["media"][0, start:end] += 3.0
        logits2, velocity2 = forward(other)
        np.testing.assert_array_equal(velocity2[:start], velocity[:start])
        np.testing.assert_array_equal(logits2[:start], logits[:start])
        assert (np.abs(velocity2[start:end] - velocity[start:end]).max(-1) > 1e-6).all()
    if task == "video_to_caption":  # the caption after the media reads the last step
        caption = slice(int(np.flatnonzero(row["block"][0] == 1 + builder.t)[0]),
                        int((row["segment_ids"][0] > 0).sum()))
        assert np.abs(logits2[caption] - logits[caption]).max() > 1e-6


def _request(sampler, task, seed=1, caption=True):
    ex = random_example(sampler.config, seed=seed, caption_len=8)
    return MediaRequest(ex["text_ids"] if caption else None, ex["video_latents"],
                        ex["audio_latents"], sampler.builder.noised_mask(task, 2))


TASKS = ("text_to_av", "image_to_video", "video_to_audio", "audio_to_video", "continuation")


@pytest.mark.parametrize("solver, past_noise", [("euler", 0.0), ("heun", 0.0), ("euler", 0.2)])
def test_cached_step_by_step_sampling_equals_the_whole_row(sampler, solver, past_noise):
    requests = [_request(sampler, task) for task in TASKS]
    options = FlowOptions(steps=3, solver=solver, cfg_video=2.5, cfg_audio=4.0,
                          past_noise=past_noise)
    cached = sampler.sample_media(requests, options, jax.random.key(0))
    whole = sampler.sample_media(requests, options, jax.random.key(0), cached=False)
    assert np.abs(cached).max() > 0.5
    np.testing.assert_allclose(cached, whole, atol=2e-5, rtol=0)


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "whole_row"])
def test_a_later_step_never_changes_the_earlier_samples(sampler, cached):
    """Dub the same video twice, the second with latent step j's video changed: the sound of
    steps < j comes out identical, the sound from step j on does not."""
    b = sampler.builder
    a = _request(sampler, "video_to_audio")
    j = b.t // 2
    video = a.video.copy()
    video[j:] += 2.0
    changed = MediaRequest(a.caption, video, a.audio, a.noised)
    options = FlowOptions(steps=2)
    x = sampler.sample_media([a], options, jax.random.key(4), cached=cached)[0]
    y = sampler.sample_media([changed], options, jax.random.key(4), cached=cached)[0]
    start, _ = b.step_span(j)
    np.testing.assert_array_equal(x[:start], y[:start])
    assert np.abs(x[start:] - y[start:])[b._modality[start:] == AUDIO].max() > 1e-4


def test_each_latent_step_is_handed_out_when_finished(sampler):
    b = sampler.builder
    requests = [_request(sampler, "text_to_av")]
    options = FlowOptions(steps=2)
    calls = []
    final = sampler.sample_media(requests, options, jax.random.key(2),
                                 on_step=lambda stage, i: calls.append(stage))
    assert calls.count("step") == denoising_passes(sampler.config, options) == b.t
    seen = list(sampler.iter_media(requests, options, jax.random.key(2)))
    assert [i for i, _ in seen] == list(range(b.t))
    for i, x in seen:
        _, end = b.step_span(i)
        np.testing.assert_array_equal(x[:, :end], final[:, :end])  # done: as in the end
        if end < len(b.latent_step):
            assert not np.allclose(x[:, end:], final[:, end:])  # not yet sampled


def test_every_task_samples_through_the_causal_path(sampler):
    """Each task's context comes back as given, its generated tokens move, and captioning
    decodes the same with and without the cache."""
    b = sampler.builder
    requests = [_request(sampler, task, caption=task != "video_to_audio") for task in TASKS]
    out = sampler.sample_media(requests, FlowOptions(steps=2), jax.random.key(1))
    for req, x in zip(requests, out, strict=True):
        given = b.media_features(req.video, req.audio)
        np.testing.assert_array_equal(x[~req.noised], given[~req.noised])
        assert np.isfinite(x).all()
        assert np.abs(x[req.noised] - given[req.noised]).max() > 0.1
    ex = random_example(sampler.config, seed=2)
    prefix = [sampler.caption_prefix(ex["video_latents"], ex["audio_latents"])]
    options = TextOptions(max_tokens=8)
    np.testing.assert_array_equal(
        sampler.decode_text(prefix, options, jax.random.key(0)),
        sampler.decode_text(prefix, options, jax.random.key(0), cached=False))


def test_a_renoised_past_changes_the_steps_after_the_first_only(sampler):
    b = sampler.builder
    requests = [_request(sampler, "text_to_av")]
    clean = sampler.sample_media(requests, FlowOptions(steps=2), jax.random.key(3))[0]
    noisy = sampler.sample_media(requests, FlowOptions(steps=2, past_noise=0.3),
                                 jax.random.key(3))[0]
    _, first = b.step_span(0)
    np.testing.assert_array_equal(clean[:first], noisy[:first])
    assert np.abs(clean[first:] - noisy[first:]).max() > 1e-5  # bit-identical otherwise
