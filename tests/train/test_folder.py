"""`o1 data build folder`: a user's own videos become the same dataset format."""

import fractions

import av
import numpy as np
import pytest

from o1.cli import main
from o1.train import datasets, folder

TONE_AT = 1.0  # seconds: a.mp4 has a click here, to check audio stays in sync


def _write(path, seconds, fps, size, sample_rate=None, vcodec="libx264", acodec="aac",
           tone_at=None):
    """A clip whose brightness encodes time (grey = 10 + 40 * seconds) and optional sound."""
    h, w = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = None
        if sample_rate:
            sound = out.add_stream(acodec, rate=sample_rate, layout="mono")
        for i in range(round(seconds * fps)):
            img = np.full((h, w, 3), 10 + 40 * i / fps, np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode(None))
        if sound is not None:
            wave = 0.01 * np.sin(np.arange(int(seconds * sample_rate)) * 0.05)
            if tone_at is not None:
                s = int(tone_at * sample_rate)
                wave[s:s + sample_rate // 20] += 0.6 * np.sin(
                    2 * np.pi * 500 * np.arange(sample_rate // 20) / sample_rate)
            fmt = sound.codec_context.format.name
            frame_size = sound.codec_context.frame_size or 1024
            for start in range(0, len(wave), frame_size):
                chunk = wave[start:start + frame_size].astype(np.float32)[None]
                if fmt.startswith("s16"):
                    chunk = (chunk * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = fractions.Fraction(1, sample_rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    src = tmp_path_factory.mktemp("videos")
    _write(src / "a.mp4", 4.5, 25, (48, 64), 44_100, tone_at=TONE_AT)
    _write(src / "sub" / "b.mkv", 2.5, 30, (40, 40), 22_050, acodec="flac")
    _write(src / "c.webm", 2.3, 12, (32, 48), 48_000, vcodec="libvpx", acodec="libopus")
    _write(src / "mute.mp4", 2.5, 16, (32, 32))
    _write(src / "nocap.mp4", 2.5, 16, (32, 32), 16_000)
    (src / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (src / "notes.txt").write_text("not a video")
    captions = src.parent / "captions.jsonl"
    captions.write_text("\n".join(
        f'{{"file": "{name}", "caption": "clip {name}"}}'
        for name in ("a.mp4", "sub/b.mkv", "c.webm", "mute.mp4", "broken.mp4", "ghost.mp4")))
    return src, captions


def test_builds_valid_files_and_reports_the_rest_by_name(tmp_path, user_folder, tiny_config):
    src, captions = user_folder
    report = folder.build_folder(tiny_config, src, captions, tmp_path / "ds")
    skipped = dict(report.skipped)
    assert set(skipped) == {"broken.mp4", "mute.mp4", "notes.txt"}
    assert "audio" in skipped["mute.mp4"]
    assert report.missing_media == ["ghost.mp4"]
    assert report.uncaptioned == ["nocap.mp4"]
    assert report.num_files == 3
    assert report.num_clips == 4  # a.mp4 (4.5 s) holds two 2.06 s clips; b and c one each
    summary = report.summary()
    for name in ("broken.mp4", "mute.mp4", "ghost.mp4", "nocap.mp4"):
        assert name in summary

    source = datasets.data_source(tmp_path / "ds", "train")
    clips = {ex["id"]: ex for ex in (datasets.decode(source[i]) for i in range(len(source)))}
    assert len(clips) == 4
    t, n = tiny_config.num_frames, tiny_config.num_samples
    for ex in clips.values():
        assert ex["video"].shape == (t, 32, 32, 3)
        assert ex["audio"].shape == (n,)
        assert ex["caption"] == f"clip {ex['metadata']['source']}"
    # Frame k of the second clip of a.mp4 shows source time 2.0625 + k / 16.
    second = next(ex for ex in clips.values()
                  if ex["metadata"]["source"] == "a.mp4" and ex["metadata"]["start_time"] > 0)
    assert second["metadata"]["start_time"] == pytest.approx(t / 16)
    grey = second["video"][:, 16, 16, 0].astype(float)
    expected = 10 + 40 * (np.floor((t / 16 + np.arange(t) / 16) * 25 + 1e-6) / 25)
    np.testing.assert_allclose(grey, expected, atol=4)
    # The click at 1.0 s lands on sample 16000 of the first clip (resampled 44.1 -> 16 kHz).
    first = next(ex for ex in clips.values()
                 if ex["metadata"]["source"] == "a.mp4" and ex["metadata"]["start_time"] == 0)
    onset = np.flatnonzero(np.abs(first["audio"]) > 0.3)[0]
    assert abs(onset - TONE_AT * 16_000) <= 16  # 1 ms


def test_allow_silent_keeps_videos_without_sound(tmp_path, user_folder, tiny_config):
    src, captions = user_folder
    report = folder.build_folder(tiny_config, src, captions, tmp_path / "ds", allow_silent=True)
    assert report.silent == ["mute.mp4"]
    assert "mute.mp4" not in dict(report.skipped)
    source = datasets.data_source(tmp_path / "ds", "train")
    mute = [datasets.decode(source[i]) for i in range(len(source))]
    mute = [ex for ex in mute if ex["metadata"]["source"] == "mute.mp4"]
    assert len(mute) == 1 and mute[0]["metadata"]["silent"]
    assert not mute[0]["audio"].any()


def test_csv_captions_and_cli(tmp_path, user_folder, capsys):
    src, _ = user_folder
    captions = tmp_path / "captions.csv"
    captions.write_text('file,caption\nc.webm,"a grey, brightening clip"\n')
    assert main(["data", "build", "folder", "--src", str(src), "--captions", str(captions),
                 "--out", str(tmp_path / "ds"), "--config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "1 clips from 1 videos" in out and "a.mp4: no caption" in out
    ex = datasets.decode(datasets.data_source(tmp_path / "ds", "train")[0])
    assert ex["caption"] == "a grey, brightening clip"


def test_nothing_usable_fails_and_writes_nothing(tmp_path, user_folder, tiny_config):
    src, _ = user_folder
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"file": "broken.mp4", "caption": "x"}\n')
    with pytest.raises(datasets.DatasetError, match="broken.mp4"):
        folder.build_folder(tiny_config, src, captions, tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.jsonl"]


def test_malformed_captions_name_the_line(tmp_path, user_folder, tiny_config):
    src, _ = user_folder
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"file": "a.mp4", "caption": "ok"}\n{"file": "b.mkv", caption}\n')
    with pytest.raises(datasets.DatasetError, match=r"captions.jsonl:2: not valid JSON"):
        folder.build_folder(tiny_config, src, captions, tmp_path / "ds")
    captions.write_text('{"file": "a.mp4", "caption": "  "}\n')
    with pytest.raises(datasets.DatasetError, match="non-empty"):
        folder.build_folder(tiny_config, src, captions, tmp_path / "ds")
