"""`o1 data build folder`: a user's own videos become the same dataset format, split by source
file, with every file left out (and why) in a saved report; and the dataset trains a model."""

import fractions
import json
import unicodedata

import av
import numpy as np
import pytest

from o1 import media
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


def _clips(data) -> dict[str, dict]:
    """Every clip of every split, by id, with its split."""
    out = {}
    for split in datasets.load_builder(data).info.splits:
        source = datasets.data_source(data, split)
        for i in range(len(source)):
            ex = datasets.decode(source[i])
            out[ex["id"]] = {**ex, "split": split}
    return out


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

    clips = _clips(tmp_path / "ds")
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
    mute = [ex for ex in _clips(tmp_path / "ds").values()
            if ex["metadata"]["source"] == "mute.mp4"]
    assert len(mute) == 1 and mute[0]["metadata"]["silent"]
    assert not mute[0]["audio"].any()


def test_one_video_builds_train_only_and_says_so(tmp_path, user_folder, capsys):
    src, _ = user_folder
    captions = tmp_path / "captions.csv"
    captions.write_text('file,caption\nc.webm,"a grey, brightening clip"\n')
    out = tmp_path / "ds"
    assert main(["data", "build", "folder", "--src", str(src), "--captions", str(captions),
                 "--out", str(out), "--config", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert "1 clips from 1 videos" in printed and "a.mp4: no caption" in printed
    assert "only 1 usable video, so all its clips are in train" in printed
    assert f"report: {out}/report.json" in printed
    ex = datasets.decode(datasets.data_source(out, "train")[0])
    assert ex["caption"] == "a grey, brightening clip"
    # Export picks the split there is when none is named.
    assert main(["data", "export", "--data", str(out), "--num", "1",
                 "--out", str(tmp_path / "watch")]) == 0
    assert "wrote 1 train clips" in capsys.readouterr().out


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


def test_out_must_not_overlap_src_nor_overwrite_a_non_dataset(tmp_path, user_folder,
                                                              tiny_config):
    src, captions = user_folder
    with pytest.raises(datasets.DatasetError, match="overlap"):
        folder.build_folder(tiny_config, src, captions, src / "ds")
    mine = tmp_path / "my files"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(datasets.DatasetError, match="holds none"):
        folder.build_folder(tiny_config, src, captions, mine, overwrite=True)
    assert (mine / "keep.txt").read_text() == "mine"


def test_an_interrupted_build_leaves_the_old_dataset_whole(tmp_path, user_folder, tiny_config,
                                                          monkeypatch):
    src, _ = user_folder
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"file": "sub/b.mkv", "caption": "b"}\n'
                        '{"file": "c.webm", "caption": "c"}\n')
    out = tmp_path / "ds"
    folder.build_folder(tiny_config, src, captions, out, val_share=0)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    pieces = folder._pieces

    def interrupted(config, path, allow_silent):
        if path.name == "c.webm":
            raise KeyboardInterrupt  # Ctrl-C while the second file decodes
        return pieces(config, path, allow_silent)

    monkeypatch.setattr(folder, "_pieces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        folder.build_folder(tiny_config, src, captions, out, overwrite=True, val_share=0.5)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert datasets.load_builder(out).info.splits.keys() == {"train"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captions.jsonl", "ds"]


@pytest.mark.parametrize("n, val, test", [(0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 1, 0),
                                          (10, 1, 1), (25, 3, 3)])
def test_plan_splits_counts(n, val, test):
    names = [f"v{i}.mp4" for i in range(n)]
    order, num_val, num_test = folder.plan_splits(names, 0, 0.1, 0.1)
    assert (num_val, num_test) == (val, test) and sorted(order) == sorted(names)
    assert folder.plan_splits(names, 0, 0.1, 0.1)[0] == order  # the same seed, the same order
    # Adding a file keeps the order of the others.
    more = folder.plan_splits([*names, "new.mp4"], 0, 0.1, 0.1)[0]
    assert [name for name in more if name != "new.mp4"] == order
    with pytest.raises(datasets.DatasetError, match="--val-share"):
        folder.plan_splits(names, 0, 0.6, 0.5)


# ---------------------------------------------------------------------------------------------
# Media as users have it: rotated phone video, 5.1 sound, an all-zero track, a spreadsheet's
# CSV with a byte-order mark, a macOS (NFD) name, a repeated line and an ambiguous name.
# ---------------------------------------------------------------------------------------------

FPS, SR = 16, 16_000
TONE = 0.25  # amplitude of the 440 Hz tone of normal.mp4: -15.05 dBFS RMS
CAFE = unicodedata.normalize("NFC", "café.mp4")
LONG_CAPTION = " ".join(["word"] * 30)  # 32+ tokens: over the tiny config's 24


def _frames(seconds, h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, h, w, 3), np.uint8)
    return np.repeat(base, round(seconds * FPS), 0)


def _tone(seconds, amplitude=TONE):
    return (amplitude * np.sin(2 * np.pi * 440 * np.arange(round(seconds * SR)) / SR)
            ).astype(np.float32)


def _rotate_90(path):
    """Sets the video track's display matrix (tkhd) to a quarter turn, as phones record."""
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0: the matrix is 36 bytes from byte 48 of the box
    matrix = (0, 1 << 16, 0, (-1 << 16) & 0xFFFFFFFF, 0, 0, 0, 0, 1 << 30)
    data[tkhd + 44:tkhd + 80] = b"".join(v.to_bytes(4, "big") for v in matrix)
    path.write_bytes(bytes(data))


def _write_51(path, seconds, centre):
    """An AAC 5.1 mp4 whose sound is `centre` on the centre channel alone."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        sound = out.add_stream("aac", rate=SR, layout="5.1")
        for image in _frames(seconds, 32, 32, seed=3):
            out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(video.encode(None))
        channels = np.zeros((6, len(centre)), np.float32)
        channels[2] = centre  # FL FR FC LFE BL BR
        size = sound.codec_context.frame_size
        for start in range(0, len(centre), size):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(channels[:, start:start + size]), format="fltp",
                layout="5.1")
            frame.sample_rate, frame.pts = SR, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory, tiny_config):
    """Built once with --allow-silent and shares of 0.25: (src, dataset dir, report)."""
    root = tmp_path_factory.mktemp("phone")
    src = root / "videos"
    (src / "x").mkdir(parents=True)
    (src / "y").mkdir()
    media.write_mp4(src / "normal.mp4", _frames(4.5, 32, 32), FPS, _tone(4.5), SR)
    landscape = np.zeros((round(2.2 * FPS), 32, 64, 3), np.uint8)
    landscape[:, :, :32] = 255  # left half white: after the quarter turn, one half on top
    media.write_mp4(src / "rotated.mp4", landscape, FPS, _tone(2.2), SR)
    _rotate_90(src / "rotated.mp4")
    _write_51(src / "surround.mp4", 2.2, _tone(2.2, 0.5))
    media.write_mp4(src / "zeros.mp4", _frames(2.2, 32, 32, 1), FPS, np.zeros(round(2.2 * SR),
                                                                           np.float32), SR)
    media.write_mp4(src / CAFE, _frames(2.2, 32, 32, 2), FPS, _tone(2.2), SR)
    media.write_mp4(src / "twice.mp4", _frames(2.2, 32, 32, 4), FPS, _tone(2.2), SR)
    for side in ("x", "y"):
        media.write_mp4(src / side / "dup.mp4", _frames(2.2, 32, 32, 5), FPS, _tone(2.2), SR)
    captions = root / "captions.csv"
    rows = [("normal.mp4", "a normal clip"), ("rotated.mp4", "a phone held upright"),
            ("surround.mp4", "a film with 5.1 sound"), ("zeros.mp4", "a muted track"),
            (unicodedata.normalize("NFD", CAFE), LONG_CAPTION),
            ("normal.mp4", "a normal clip"),  # the same line again: harmless, used once
            ("twice.mp4", "one caption"), ("twice.mp4", "another caption"),
            ("dup.mp4", "which one?")]
    # A spreadsheet's "CSV UTF-8": a byte-order mark, CRLF line ends.
    captions.write_text("file,caption\r\n" + "".join(f'{f},"{c}"\r\n' for f, c in rows),
                        encoding="utf-8-sig", newline="")
    out = root / "ds"
    report = folder.build_folder(tiny_config, src, captions, out, allow_silent=True,
                                 val_share=0.25, test_share=0.25)
    return src, out, report


def test_splits_hold_whole_videos_and_follow_the_seed(phone_folder, tiny_config):
    _, out, report = phone_folder
    clips = _clips(out)
    split_of = {}
    for ex in clips.values():
        split_of.setdefault(ex["metadata"]["source"], set()).add(ex["split"])
    assert all(len(s) == 1 for s in split_of.values()), split_of  # no video in two splits
    assert set(split_of) == {"normal.mp4", "rotated.mp4", "surround.mp4", "zeros.mp4", CAFE}
    # 5 usable videos at shares of 0.25: one each in validation and test, three in train.
    splits = report.splits()
    assert {k: len(v["files"]) for k, v in splits.items()} == {
        "validation": 1, "test": 1, "train": 3}
    for split, info in splits.items():
        assert {name for name in info["files"]} == {n for n, s in split_of.items()
                                                     if s == {split}}
        assert info["clips"] == sum(1 for ex in clips.values() if ex["split"] == split)
    assert report.files["normal.mp4"].clips == 2
    order, _, _ = folder.plan_splits(sorted(split_of), tiny_config.seed, 0.25, 0.25)
    assert splits["validation"]["files"] == order[:1] and splits["test"]["files"] == order[1:2]
    assert folder.plan_splits(sorted(split_of), tiny_config.seed + 1, 0.25, 0.25)[0] != order


def test_captions_from_a_spreadsheet_and_what_is_reported(phone_folder):
    _, out, report = phone_folder
    clips = _clips(out)
    by_source = {ex["metadata"]["source"]: ex for ex in clips.values()}
    assert by_source[CAFE]["caption"] == LONG_CAPTION  # the NFD key found the NFC name
    assert by_source["rotated.mp4"]["caption"] == "a phone held upright"  # no BOM in "file"
    assert report.ambiguous == [{"caption": "dup.mp4", "line": 10,
                                 "matches": ["x/dup.mp4", "y/dup.mp4"]}]
    assert report.duplicates == [{"file": "normal.mp4", "lines": [2, 7], "kept": True},
                                 {"file": "twice.mp4", "lines": [8, 9], "kept": False}]
    assert report.missing_media == [] and "twice.mp4" not in report.files
    assert report.long_captions == [{"file": CAFE, "words": 30}]
    summary = report.summary()
    assert "caption for dup.mp4 (line 10) is ambiguous: it names x/dup.mp4 and y/dup.mp4" \
        in summary
    assert "twice.mp4 has 2 captions (lines 8, 9): different texts" in summary
    assert f"caption of {CAFE} has 30 words" in summary

    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(report.to_json()))
    assert set(saved["files"]) == {"normal.mp4", "rotated.mp4", "surround.mp4", "zeros.mp4",
                                   CAFE}
    assert saved["files"]["normal.mp4"]["split"] in saved["splits"]
    assert {d["file"] for d in saved["duplicates"]} == {"normal.mp4", "twice.mp4"}
    assert saved["uncaptioned"] == ["x/dup.mp4", "y/dup.mp4"]


def test_an_all_zero_track_is_silent(phone_folder, tiny_config):
    src, out, report = phone_folder
    zeros = [ex for ex in _clips(out).values() if ex["metadata"]["source"] == "zeros.mp4"]
    assert zeros and all(ex["metadata"]["silent"] for ex in zeros)
    assert report.files["zeros.mp4"].silent == "its audio track is silent (peak under -90 dBFS)"
    assert report.files["zeros.mp4"].rms_dbfs is None
    assert not any(ex["metadata"]["silent"] for ex in _clips(out).values()
                   if ex["metadata"]["source"] == "normal.mp4")
    # Without --allow-silent it is left out, as a file without an audio stream is.
    source = folder.Source(src / "zeros.mp4", "zeros.mp4", "x")
    with pytest.raises(folder._Skip, match=r"dBFS\); --allow-silent keeps it"):
        list(folder._decode(tiny_config, source, 2.2, allow_silent=False))


def test_sound_levels_per_file(phone_folder):
    _, _, report = phone_folder
    # A sine of amplitude A has an RMS of A / sqrt(2); AAC keeps the level within a few 0.1 dB,
    # and its quantisation noise lifts the peak by about half a dB.
    assert report.files["normal.mp4"].rms_dbfs == pytest.approx(20 * np.log10(TONE / 2 ** .5),
                                                                abs=0.5)
    assert report.files["normal.mp4"].peak_dbfs == pytest.approx(20 * np.log10(TONE), abs=1)
    # Loudness from the clips agrees with BS.1770 over the whole tone.
    assert report.files["normal.mp4"].loudness_lufs == pytest.approx(
        media.loudness(_tone(4.5), SR), abs=0.5)
    assert report.files["normal.mp4"].clipped == 0


def test_rotated_video_is_upright(phone_folder):
    _, out, _ = phone_folder
    rotated = next(ex for ex in _clips(out).values()
                   if ex["metadata"]["source"] == "rotated.mp4")
    luma = rotated["video"][0].astype(float).mean(-1)  # [32, 32]
    # Stored landscape with its left half white, shown a quarter turn round: the centre crop
    # of the upright picture is white on one half of the rows and black on the other.
    assert abs(luma[:12].mean() - luma[-12:].mean()) > 200, luma[::4, ::4]
    assert abs(luma[:, :12].mean() - luma[:, -12:].mean()) < 30, luma[::4, ::4]


def test_surround_sound_is_downmixed_by_bs775(phone_folder):
    _, _, report = phone_folder
    # BS.775 keeps the centre at -3 dB in the downmix: 0.354 for this tone of 0.5, -12.04 dBFS
    # RMS; an average of the six channels would leave 1/6 of it (-24.6 dBFS).
    assert report.files["surround.mp4"].rms_dbfs == pytest.approx(
        20 * np.log10(0.5 / 2 ** .5 / 2 ** .5), abs=0.5)



def _trains_with_validation(workdir) -> None:
    """`o1 train` for two steps on the workdir's latents; validation ran on held-out videos."""
    # The overrides of conftest's trained_workdir, so a full run reuses its compiled step.
    assert main(["train", "--workdir", str(workdir), "train.steps=2", "train.eval_every=100",
                 "train.peak_flops=1e12"]) == 0
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert any(row["stage"] == "val" and row["step"] == 2 for row in rows), rows


def test_a_folder_dataset_encodes_and_trains(phone_folder, fresh_workdir, capsys):
    """The latent cache and `o1 train` on a folder dataset (tokenizers from AV-Shapes)."""
    _, data, _ = phone_folder
    assert main(["data", "encode", "--workdir", str(fresh_workdir), "--data", str(data),
                 "--overwrite"]) == 0
    printed = capsys.readouterr().out
    assert "'validation': 1" in printed and "'test': 1" in printed and "'train': 4" in printed
    # The 30-word caption is over the tiny config's 24 tokens: encode names it.
    assert "longer than sequence.max_text_len = 24 tokens" in printed
    assert "caf" in printed.split("longer than")[1]
    _trains_with_validation(fresh_workdir)


@pytest.mark.slow  # trains both VAEs and compiles the sampler: a minute or more on 2 cores
def test_a_folder_dataset_trains_and_captions(phone_folder, tmp_path, capsys):
    """Your own clips to a model that captions: tokenizers, latents, transformer, caption."""
    src, data, _ = phone_folder
    workdir = tmp_path / "run"
    # A few captions support fewer SentencePiece pieces than the tiny config's 64: the text
    # stage lowers the tokenizer's vocabulary, the transformer keeps 64 outputs, and the
    # caption never holds an id past the tokenizer's.
    assert main(["tokenizers", "train", "--workdir", str(workdir), "--data", str(data),
                 "video_vae.steps=2", "audio.steps=2",
                 "tokenizer_train.checkpoint_every=2"]) == 0
    assert main(["data", "encode", "--workdir", str(workdir), "--data", str(data)]) == 0
    _trains_with_validation(workdir)
    capsys.readouterr()
    assert main(["caption", "--workdir", str(workdir), "--json", str(src / "normal.mp4")]) == 0
    caption = json.loads(capsys.readouterr().out)
    assert caption["file"].endswith("normal.mp4") and isinstance(caption["caption"], str)
