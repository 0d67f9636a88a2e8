"""Streams of a trained (tiny) workdir: every latent step handed out whole with its sound,
the prompt switched by a schedule or mid-stream, a stop, bad requests refused before the model
loads, and `o1 generate --stream` writing a file that reads back."""

import numpy as np
import pytest

from o1 import cli, media
from o1.sampler import FlowOptions
from o1.serve.pipeline import Pipeline, RequestError

FLOW = FlowOptions(steps=2)


@pytest.fixture(scope="module")
def pipe(trained_workdir):
    return Pipeline(trained_workdir)


def _check_chunks(pipe, chunks, frames):
    t_down = pipe.config.video_vae.t_down
    sizes = [len(c.frames) for c in chunks]
    assert sizes[0] == 1 and set(sizes[1:-1]) == {t_down} and sum(sizes) == frames
    assert [c.step for c in chunks] == list(range(len(chunks)))
    assert [c.start for c in chunks] == list(np.cumsum([0] + sizes[:-1]))
    for c in chunks:
        assert c.frames.dtype == np.uint8 and len(c.audio) == len(c.frames) * pipe.spf
        assert np.isfinite(c.audio).all()
    assert np.abs(np.concatenate([c.audio for c in chunks])).max() > 0
    made = [c.made_at for c in chunks]
    assert made == sorted(made)


def test_a_stream_hands_out_every_latent_step_with_its_sound_and_a_seed_fixes_it(pipe):
    stream = pipe.stream("a red circle bounces", seconds=5.0, flow=FLOW, seed=3, hop=2)
    chunks = list(stream)
    _check_chunks(pipe, chunks, round(5.0 * pipe.fps))
    assert stream.timings["first_chunk"] <= stream.timings["total"]
    again = list(pipe.stream("a red circle bounces", seconds=5.0, flow=FLOW, seed=3, hop=2))
    for a, b in zip(chunks, again, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.audio, b.audio)


def test_a_schedule_switches_the_prompt_where_it_says(pipe, monkeypatch):
    from o1.serve.stream import Stream

    fps, t_down = pipe.fps, pipe.config.video_vae.t_down
    given = []  # (prompt ids, given latent steps) of each window
    window = Stream._window

    def spy(self, ids, frames, audio_z, context, last, w):
        given.append((len(ids), context))
        return window(self, ids, frames, audio_z, context, last, w)

    monkeypatch.setattr(Stream, "_window", spy)
    chunks = list(pipe.stream([(0, "a red circle bounces"), (3.0, "a blue square bounces")],
                              seconds=7.0, flow=FLOW, seed=0, hop=3))
    # the window at the switch keeps sample.stream_switch_steps of the past, the next the usual
    contexts = [context for _, context in given]
    assert contexts[0] == 0 and pipe.config.sample.stream_switch_steps in contexts[1:]
    assert contexts[-1] == pipe.config.num_video_latents - 3
    _check_chunks(pipe, chunks, round(7.0 * fps))
    switch = next(c.start for c in chunks if c.prompt == "a blue square bounces")
    # a window starts at the switch: its first step is the first whole step from 3 s on
    assert round(3.0 * fps) <= switch < round(3.0 * fps) + t_down
    assert all(c.prompt == "a red circle bounces" for c in chunks if c.start < switch)
    assert all(c.prompt == "a blue square bounces" for c in chunks if c.start >= switch)


def test_set_prompt_steers_the_windows_after_it_and_stop_ends_the_stream(pipe):
    stream = pipe.stream("a red circle bounces", seconds=None, flow=FLOW, seed=0, hop=2)
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 3:
            with pytest.raises(RequestError, match="prompt"):
                stream.set_prompt("")
            stream.set_prompt("a blue square bounces")
        if chunk.prompt == "a blue square bounces" and len(chunks) >= 20:
            stream.stop()
    total = sum(len(c.frames) for c in chunks)
    _check_chunks(pipe, chunks, total)
    prompts = [c.prompt for c in chunks]
    first_new = prompts.index("a blue square bounces")
    assert set(prompts[:first_new]) == {"a red circle bounces"}
    assert set(prompts[first_new:]) == {"a blue square bounces"}


@pytest.mark.parametrize("kwargs, match", [
    ({"hop": 0}, "hop must be 1 to"),
    ({"prompt": [(1.0, "a red circle")]}, "schedule must start at 0 s"),
    ({"prompt": [(0, "a red circle"), (2.0, "a blue square"), (1.0, "a red circle")]},
     "times must increase"),
    ({"prompt": [(0, "a red circle"), (2.0, "")]}, "prompt"),
    ({"seconds": 1e6}, "sample.max_seconds"),
])
def test_a_bad_stream_is_refused_before_the_model_loads(trained_workdir, kwargs, match):
    pipe = Pipeline(trained_workdir)
    kwargs = {"prompt": "a red circle", "seconds": 3.0, **kwargs}
    with pytest.raises(RequestError, match=match):
        pipe.stream(kwargs.pop("prompt"), flow=FLOW, **kwargs)
    assert not pipe.loaded


@pytest.mark.parametrize("flag, suffix, says", [
    ("--stream", ".ts", "first picture and sound after"),
    ("--stream", ".mp4", "first picture and sound after"),
    ("--out", ".mp4", "wrote"),  # --at makes a stream, written when whole
])
def test_generate_stream_writes_a_file_of_the_length_asked(trained_workdir, tmp_path, flag,
                                                           suffix, says, capsys):
    out = tmp_path / f"stream{suffix}"
    assert cli.main(["generate", "--workdir", str(trained_workdir), "--prompt", "a red circle",
                     flag, str(out), "--seconds", "3", "--steps", "2",
                     "--at", "1.5:a blue square"]) == 0
    assert says in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    clip = media.read_media(out)
    assert len(clip.frames) == 48 and clip.audio is not None
    assert abs(len(clip.audio) / clip.sample_rate - 3.0) < 0.1


def test_generate_stream_refuses_a_bad_at_prompt_and_output(trained_workdir, tmp_path, capsys):
    base = ["generate", "--workdir", str(trained_workdir), "--prompt", "a red circle"]
    assert cli.main([*base, "--stream", str(tmp_path / "s.mp4"), "--at",
                     "1:a purple zebra"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--at" in err and "zebra" in err
    assert cli.main([*base, "--stream", str(tmp_path / "s.avi")]) == 2
    assert "*.mp4 or *.ts" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
