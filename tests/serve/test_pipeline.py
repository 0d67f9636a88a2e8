"""Every task of a trained (tiny) workdir, from Python and from the CLI, and every bad input
giving one clear error line."""

import json
import shutil

import numpy as np
import pytest

from o1 import cli, media
from o1.media import Clip
from o1.sampler import FlowOptions
from o1.serve.pipeline import Pipeline, RequestError, read_audio, read_clip

FLOW = FlowOptions(steps=2)


@pytest.fixture(scope="module")
def pipe(trained_workdir):
    return Pipeline(trained_workdir)


@pytest.fixture(scope="module")
def clip_file(pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "generated.mp4"
    pipe.generate("a red circle bounces", flow=FLOW, seed=1).write(path)
    return path


def test_generate_writes_h264_aac_of_the_clip_length_and_seeds_fix_it(pipe, tmp_path):
    c = pipe.config
    a = pipe.generate("a red circle bounces", flow=FLOW, seed=3)
    b = pipe.generate("a red circle bounces", flow=FLOW, seed=3)
    other = pipe.generate("a red circle bounces", flow=FLOW, seed=4)
    assert a.frames.shape == (c.num_frames, c.data.height, c.data.width, 3)
    assert a.audio.shape == (c.num_samples,)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(a.audio, other.audio)
    for stage in ("prefix", "step_0", "step_1", "vae_decode", "waveform"):
        assert a.timings[stage] > 0
    path = a.write(tmp_path / "a.mp4")
    # The same seed gives the same file, byte for byte, also after other clips were written.
    pipe.generate("a blue square", seconds=3.0, flow=FLOW, seed=9).write(tmp_path / "o.mp4")
    assert b.write(tmp_path / "b.mp4").read_bytes() == path.read_bytes()
    info = media.probe(path)
    assert info["has_video"] and info["has_audio"] and info["fps"] == c.data.fps
    back = media.read_media(path)
    assert len(back.frames) == c.num_frames and back.sample_rate == c.data.sample_rate


def test_longer_clips_are_continued_window_by_window(pipe):
    clip = pipe.generate("a blue square", seconds=3.5, flow=FLOW)
    frames = round(3.5 * pipe.fps)
    assert clip.frames.shape[0] == frames and clip.audio.shape == (frames * pipe.spf,)
    short = pipe.generate("a blue square", seconds=0.5, flow=FLOW)
    assert short.frames.shape[0] == 8


def test_progress_counts_every_denoising_step_of_every_window(pipe, clip_file):
    calls = []
    pipe.generate("a blue square", seconds=3.5, flow=FLOW,
                  progress=lambda done, total: calls.append((done, total)))
    windows = 1 + pipe.continuation_windows(pipe.clip_frames, round(3.5 * pipe.fps))
    assert windows > 1
    assert calls == [(i, 2 * windows) for i in range(1, 2 * windows + 1)]
    calls.clear()
    clip = read_clip(clip_file, pipe.config)
    pipe.extend(clip, 1.5, flow=FLOW, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] == len(calls)
    calls.clear()
    pipe.dub(clip, flow=FLOW, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (2, 2)


def test_extend_keeps_the_input_and_adds_the_seconds(pipe, clip_file):
    clip = read_clip(clip_file, pipe.config)
    longer = pipe.extend(clip, 1.5, flow=FLOW)
    assert len(longer.frames) == len(clip.frames) + 24
    np.testing.assert_array_equal(longer.frames[:len(clip.frames)], clip.frames)
    np.testing.assert_array_equal(longer.audio[:len(clip.audio)], clip.audio)


def test_dub_keeps_the_frames_and_makes_their_sound(pipe, clip_file):
    clip = read_clip(clip_file, pipe.config)
    long = media.Clip(np.concatenate([clip.frames] * 2), clip.fps, None, None)
    dubbed = pipe.dub(long, flow=FLOW)
    np.testing.assert_array_equal(dubbed.frames, long.frames)
    assert dubbed.audio.shape == (len(long.frames) * pipe.spf,) and np.abs(dubbed.audio).max() > 0


def write_sound(path, channels, rate):
    """float [C, N] as a sound file of the kind its suffix names (wav, flac, m4a, mp3)."""
    import av

    codec = {".wav": "pcm_s16le", ".flac": "flac", ".m4a": "aac", ".mp3": "libmp3lame"}
    layout = {1: "mono", 2: "stereo"}[len(channels)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec[path.suffix], rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.asarray(channels, np.float32), format="fltp",
                                           layout=layout)
        frame.sample_rate, frame.pts = rate, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def tones(seconds, rate, pitch=440.0):
    """A tone in bursts, like bounces: float [N]."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * pitch * t) * (t % 0.5 < 0.1)).astype(np.float32)


def test_read_audio_gives_the_sound_of_any_file_in_mono_at_the_models_rate(pipe, clip_file,
                                                                           tmp_path):
    rate = pipe.sample_rate
    left = tones(1.5, 44100)
    reads = {}
    for suffix in (".wav", ".flac", ".m4a", ".mp3"):
        sound = read_audio(write_sound(tmp_path / f"s{suffix}", [left, 0 * left], 44100),
                           pipe.config)
        assert sound.sample_rate == rate and sound.audio.dtype == np.float32, suffix
        assert len(sound.frames) == 0 and sound.audio.ndim == 1, suffix
        reads[suffix] = sound.audio
    # As long as the sound, whatever padding the codec added.
    t = np.arange(round(1.5 * rate)) / rate
    assert {len(audio) for audio in reads.values()} == {len(t)}
    # Lossless: the tone at the model's rate, stereo downmixed as read_media does, (L + R) / 2.
    want = 0.25 * np.sin(2 * np.pi * 440 * t) * (t % 0.5 < 0.1)
    for suffix in (".wav", ".flac"):
        edges = np.abs(np.diff(t % 0.5 < 0.1, prepend=0)).astype(bool)
        near_edge = np.convolve(edges, np.ones(64), "same") > 0  # the resampler's ringing
        np.testing.assert_allclose(reads[suffix][~near_edge], want[~near_edge], atol=1e-4)
    for suffix in (".m4a", ".mp3"):  # lossy
        assert np.corrcoef(reads[suffix], want)[0, 1] > 0.99, suffix
    assert len(read_audio(tmp_path / "s.wav", pipe.config, seconds=1.0).audio) == rate
    # A video's sound track, as read_clip reads it with its frames.
    video = read_clip(clip_file, pipe.config)
    track = read_audio(clip_file, pipe.config)
    assert 0 <= len(track.audio) - len(video.audio) < 1024  # read_clip cuts at the picture's end
    np.testing.assert_allclose(track.audio[:len(video.audio)], video.audio, atol=1e-6)
    assert len(pipe.visualize(track, flow=FLOW).frames) == len(video.frames)


def test_visualize_makes_a_video_for_the_sound_and_keeps_it_as_the_audio(pipe, tmp_path):
    c = pipe.config
    sound = read_audio(write_sound(tmp_path / "s.wav", [tones(3.3, 16000)] * 2, 16000), c)
    calls = []
    clip = pipe.visualize(sound, flow=FLOW, seed=2,
                          progress=lambda done, total: calls.append((done, total)))
    frames = round(3.3 * pipe.fps)  # 52.8 frames: the sound is padded to 53
    assert frames > pipe.clip_frames  # two windows
    assert clip.frames.shape == (frames, c.data.height, c.data.width, 3)
    assert clip.audio.shape == (frames * pipe.spf,) and clip.sample_rate == c.data.sample_rate
    np.testing.assert_array_equal(clip.audio[:len(sound.audio)], sound.audio)
    assert not clip.audio[len(sound.audio):].any()
    assert calls == [(i, 4) for i in range(1, 5)]
    again = pipe.visualize(sound, flow=FLOW, seed=2)
    np.testing.assert_array_equal(again.frames, clip.frames)
    other = pipe.visualize(Clip(sound.frames, sound.fps, tones(3.3, 16000, 880.0), 16000),
                           flow=FLOW, seed=2)
    assert not np.array_equal(other.frames, clip.frames)  # the video follows the sound
    # A sound at another rate is resampled; `seconds` takes its start; a video's frames are
    # not used.
    def sine(rate):
        return (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * rate) / rate)).astype(np.float32)

    first = pipe.visualize(Clip(clip.frames, clip.fps, sine(32000), 32000), seconds=1.0,
                           flow=FLOW, seed=2)
    assert first.frames.shape[0] == 16 and first.audio.shape == (16 * pipe.spf,)
    # Equal but for the resampler's first few samples, where the sound starts abruptly.
    np.testing.assert_allclose(first.audio[50:], sine(16000)[50:16 * pipe.spf], atol=1e-4)
    assert first.write(tmp_path / "v.mp4") and media.probe(tmp_path / "v.mp4")["has_audio"]


def test_animate_and_caption(pipe, clip_file):
    clip = read_clip(clip_file, pipe.config)
    animated = pipe.animate(clip.frames[0], "a green triangle", flow=FLOW)
    assert animated.frames.shape == clip.frames.shape
    text = pipe.caption(clip)
    assert isinstance(text, str)
    assert pipe.caption(clip) == text  # greedy: deterministic


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_tasks_write_their_outputs(trained_workdir, clip_file, tmp_path, capsys):
    common = ["--workdir", trained_workdir, "--steps", "2"]
    code, out, err = _run(capsys, "generate", *common, "--prompt", "a red circle",
                          "--out", tmp_path / "g.mp4", "--profile")
    assert code == 0, err
    assert "real-time factor" in out and "denoising pass 2" in out and "mp4 mux" in out
    assert media.probe(tmp_path / "g.mp4")["has_audio"]
    # The same command again, after other clips were made: the same file, byte for byte.
    code, _, err = _run(capsys, "generate", *common, "--prompt", "a red circle",
                        "--out", tmp_path / "g2.mp4")
    assert code == 0, err
    assert (tmp_path / "g2.mp4").read_bytes() == (tmp_path / "g.mp4").read_bytes()
    code, out, err = _run(capsys, "caption", "--workdir", trained_workdir, clip_file, "--json")
    assert code == 0, err
    assert set(json.loads(out)) >= {"caption", "file"}
    for argv in (["dub", *common, clip_file, "--out", tmp_path / "d.mp4"],
                 ["extend", *common, clip_file, "--seconds", "1", "--out", tmp_path / "e.mp4"]):
        code, out, err = _run(capsys, *argv)
        assert code == 0 and "wrote" in out, err
    image = tmp_path / "first.png"
    frame = media.read_media(clip_file).frames[0]
    _write_png(image, frame)
    code, out, err = _run(capsys, "animate", *common, "--image", image, "--prompt", "a ball",
                          "--out", tmp_path / "a.mp4")
    assert code == 0, err


def test_cli_visualize_writes_the_sound_with_its_video_and_seeds_fix_it(trained_workdir,
                                                                       clip_file, tmp_path,
                                                                       capsys):
    sound = write_sound(tmp_path / "bounces.m4a", [tones(2.5, 22050)] * 2, 22050)
    common = ["visualize", "--workdir", trained_workdir, "--steps", "2", "--seed", "5"]
    code, out, err = _run(capsys, *common, sound, "--out", tmp_path / "a.mp4")
    assert code == 0 and "wrote" in out, err
    clip = media.read_media(tmp_path / "a.mp4")
    assert len(clip.frames) == 40 and clip.sample_rate == 16000
    # The sound survives the AAC round trip: its bursts are where they were.
    given = read_audio(sound, Pipeline(trained_workdir).config).audio
    envelope = [np.abs(a[:40000]).reshape(40, 1000).max(1) for a in (given, clip.audio)]
    assert np.corrcoef(*envelope)[0, 1] > 0.95
    # A video's sound track; its picture is not used. Then the first command again, after
    # other clips were made: the same file, byte for byte.
    code, out, err = _run(capsys, *common, clip_file, "--seconds", "1", "--prompt",
                          "a red circle", "--out", tmp_path / "b.mp4")
    assert code == 0 and len(media.read_media(tmp_path / "b.mp4").frames) == 16, err
    code, out, err = _run(capsys, *common, sound, "--out", tmp_path / "c.mp4")
    assert code == 0, err
    assert (tmp_path / "c.mp4").read_bytes() == (tmp_path / "a.mp4").read_bytes()


def _write_png(path, frame):
    import av

    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_bad_inputs_give_one_clear_error_line(trained_workdir, tiny_workdir, clip_file, tmp_path,
                                              capsys):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(clip_file.read_bytes()[: 2000])
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 20)
    long_prompt = " ".join(["red circle square triangle"] * 20)
    w = ["--workdir", trained_workdir]
    out = ["--out", tmp_path / "x.mp4"]
    cases = {
        "missing file": (["caption", *w, tmp_path / "nope.mp4"], "no such file"),
        "truncated mp4": (["caption", *w, corrupt], "corrupt.mp4"),
        "not a media file": (["dub", *w, text, *out], "notes.mp4"),
        "empty prompt": (["generate", *w, "--prompt", "  ", *out], "--prompt is empty"),
        "over-long prompt": (["generate", *w, "--prompt", long_prompt, *out], "shorten it"),
        "zero seconds": (["generate", *w, "--prompt", "a ball", "--seconds", "0", *out],
                         "--seconds must be between"),
        "too many seconds": (["extend", *w, clip_file, "--seconds", "1000", *out],
                             "--seconds must be between"),
        "no trained model": (["generate", "--workdir", tiny_workdir, "--prompt", "a ball",
                              *out], "has no trained model"),
        "no workdir": (["generate", "--workdir", tmp_path / "none", "--prompt", "a", *out],
                       "does not exist"),
        "not an mp4 name": (["generate", *w, "--prompt", "a ball", "--out",
                             tmp_path / "x.avi"], "name it *.mp4"),
        "bad steps": (["generate", *w, "--prompt", "a ball", "--steps", "0", *out],
                      "--steps must be a whole number from 1 to 100"),
        "bad solver": (["dub", *w, clip_file, "--solver", "rk4", *out],
                       "--solver must be one of euler, heun, got 'rk4'"),
        "bad guidance": (["generate", *w, "--prompt", "a ball", "--cfg-audio", "nan", *out],
                         "--cfg-audio must be from 0 to 20"),
        "bad seed": (["extend", *w, clip_file, "--seconds", "1", "--seed", "-1", *out],
                     "--seed must be a whole number from 0 to 2147483647, got -1"),
        "bad top-p": (["caption", *w, clip_file, "--top-p", "0"], "--top-p must be in (0, 1]"),
        "image unreadable": (["animate", *w, "--image", text, "--prompt", "a", *out],
                             "notes.mp4"),
    }
    for name, (argv, words) in cases.items():
        code, _, err = _run(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("o1: error:") and words in lines[0], (
            name, err)
    assert not (tmp_path / "x.mp4").exists()  # nothing half-written


def test_sampling_defaults_come_from_the_workdirs_sample_section(trained_workdir, tmp_path,
                                                                  capsys):
    workdir = shutil.copytree(trained_workdir, tmp_path / "w")
    path = workdir / "checkpoints" / "config.json"
    config = json.loads(path.read_text())
    config.setdefault("sample", {})["steps"] = 3
    path.write_text(json.dumps(config))
    argv = ["generate", "--workdir", workdir, "--prompt", "a red circle", "--out",
            tmp_path / "g.mp4", "--profile"]
    code, out, err = _run(capsys, *argv)
    assert code == 0 and "(3 passes," in out, err
    code, out, err = _run(capsys, *argv, "--steps", "2")  # a flag given wins
    assert code == 0 and "(2 passes," in out, err


def test_pipeline_refuses_a_workdir_without_a_model(tiny_workdir):
    with pytest.raises(RequestError, match="o1 train --workdir"):
        Pipeline(tiny_workdir)
