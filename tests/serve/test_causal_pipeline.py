"""Every task of the Python pipeline on a frame-causal model (the quickstart's layout): the
clips come out whole, progress counts one pass a latent step, and a seed fixes the output."""

import pathlib
import shutil

import numpy as np
import pytest

from o1 import configs, media
from o1.avshapes import generator
from o1.sampler import FlowOptions
from o1.serve.pipeline import Pipeline

CAUSAL = ["sequence.media_attention=causal", "sequence.clean_past=0.5",
          "sequence.step_noise=0.5", "model.media_locality=[0.0,0.5,1.0,2.0]"]


@pytest.fixture(scope="module")
def causal_pipeline(tmp_path_factory, tiny_workdir):
    from o1.train import trainer

    workdir = pathlib.Path(shutil.copytree(tiny_workdir, tmp_path_factory.mktemp("causal") / "w"))
    config = configs.get("tiny", ["train.steps=2", "train.eval_every=100",
                                  "train.peak_flops=1e12", *CAUSAL])
    trainer.train(workdir, config, progress=False)
    return Pipeline(workdir)


def test_every_task_runs_frame_causal(causal_pipeline):
    pipe = causal_pipeline
    config = pipe.config
    assert pipe.sampler.builder.causal
    flow = FlowOptions(steps=2)
    clip = generator.generate(config, "test", 0)
    given = media.Clip(clip.video, config.data.fps, clip.audio, config.data.sample_rate)
    ticks = []
    made = pipe.generate("a red circle", seconds=3.0, flow=flow, seed=1,
                         progress=lambda done, total: ticks.append((done, total)))
    frames = round(3.0 * config.data.fps)
    assert made.frames.shape[0] == frames and len(made.audio) == frames * pipe.spf
    # one window and one continuation window, a pass per latent step each generates (a
    # continuation's given steps join the cache without denoising)
    t = config.num_video_latents
    context = pipe._context(pipe.clip_frames)[0]
    assert ticks[-1] == (t + t - context,) * 2
    assert [done for done, _ in ticks] == list(range(1, 2 * t - context + 1))
    again = pipe.generate("a red circle", seconds=3.0, flow=flow, seed=1)
    np.testing.assert_array_equal(made.frames, again.frames)
    np.testing.assert_array_equal(made.audio, again.audio)

    dubbed = pipe.dub(media.Clip(clip.video, config.data.fps, None, None), flow=flow, seed=0)
    np.testing.assert_array_equal(dubbed.frames, clip.video)
    assert len(dubbed.audio) == len(clip.video) * pipe.spf and np.abs(dubbed.audio).max() > 0

    seen = pipe.visualize(given, flow=flow, seed=0)
    assert len(seen.frames) == len(clip.video)
    np.testing.assert_array_equal(seen.audio, clip.audio)

    animated = pipe.animate(clip.video[0], "a red circle", flow=flow, seed=0)
    assert animated.frames.shape == clip.video.shape

    longer = pipe.extend(given, seconds=1.0, flow=flow, seed=0)
    assert len(longer.frames) == len(clip.video) + config.data.fps
    np.testing.assert_array_equal(longer.frames[:len(clip.video)], clip.video)

    assert isinstance(pipe.caption(given), str)


def test_a_frame_causal_stream_makes_only_the_new_steps_of_each_window(causal_pipeline,
                                                                       monkeypatch):
    from o1.serve.stream import Stream

    pipe = causal_pipeline
    windows = []  # (given steps, last step made) of each window
    window = Stream._window

    def spy(self, ids, frames, audio_z, context, last, w):
        windows.append((context, last))
        return window(self, ids, frames, audio_z, context, last, w)

    monkeypatch.setattr(Stream, "_window", spy)
    chunks = list(pipe.stream("a red circle", seconds=3.0, flow=FlowOptions(steps=2), seed=0,
                              hop=1))
    t, t_down = pipe.config.num_video_latents, pipe.config.video_vae.t_down
    # the first window stops after its first step; each later one adds one step
    assert windows[0] == (0, 0)
    assert all(last == context for context, last in windows[1:])
    assert max(context for context, _ in windows) == t - 1
    sizes = [len(c.frames) for c in chunks]
    assert sizes[0] == 1 and set(sizes[1:-1]) == {t_down} and sum(sizes) == 48
    assert all(len(c.audio) == len(c.frames) * pipe.spf for c in chunks)
