"""Tests for o1.media: round trips, audio/video sync, conversion and errors.

Every clip is generated here, either by write_mp4 or by PyAV directly for the
containers write_mp4 does not produce.
"""

import fractions
import pickle

import av
import numpy as np
import pytest

from o1 import media

SR = 16_000


def smooth_frames(count: int, height: int, width: int) -> np.ndarray:
    """uint8 [count, height, width, 3] moving colour gradients."""
    t = np.arange(count)[:, None, None] / count
    y = np.arange(height)[None, :, None] / height
    x = np.arange(width)[None, None, :] / width
    channels = np.broadcast_arrays(
        128 + 60 * np.sin(2 * np.pi * (x + t)),
        128 + 60 * np.cos(2 * np.pi * (y - t)),
        128 + 60 * np.sin(np.pi * (x + y)) + 0 * t,
    )
    return np.stack(channels, axis=-1).astype(np.uint8)


def tone_burst(length: int, rate: int, onset: float, seconds: float = 0.1) -> np.ndarray:
    """float32 [length] silence with a 1 kHz burst from `onset` s, starting at its peak."""
    audio = np.zeros(length, np.float32)
    start = round(onset * rate)
    k = np.arange(round(seconds * rate))
    audio[start:start + len(k)] = 0.5 * np.cos(2 * np.pi * 1000 * k / rate)
    return audio


def onset_of(audio: np.ndarray) -> int:
    """Index of the first sample louder than half the burst's amplitude."""
    return int(np.argmax(np.abs(audio) > 0.25))


def write_with_pyav(path, frames, times, audio=None, rate=None, codecs=("libx264", "aac"),
                    audio_start=0.0):
    """Writes frames shown at `times` seconds (millisecond clock) plus mono audio from
    `audio_start` seconds."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codecs[0], rate=25)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        video.codec_context.time_base = fractions.Fraction(1, 1000)
        if codecs[0].startswith("libvpx"):
            video.options = {"crf": "4", "b": "0", "deadline": "realtime"}
        if audio is not None:  # every stream must exist before the first packet is muxed
            sound = out.add_stream(codecs[1], rate=rate, layout="mono")
        for image, time in zip(frames, times, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(time * 1000), fractions.Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            fmt = sound.codec_context.format.name.rstrip("p")  # packed twin of the planar one
            samples = audio[None] if fmt == "flt" else (audio[None] * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, round(audio_start * rate)
            frame.time_base = fractions.Fraction(1, rate)
            out.mux(sound.encode(frame))
            out.mux(sound.encode(None))


def test_video_round_trip(tmp_path):
    frames = smooth_frames(33, 64, 64)
    clip = media.read_media(media.write_mp4(tmp_path / "a.mp4", frames, 16),
                            require_audio=False)
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    assert clip.fps == 16 and clip.seconds == pytest.approx(33 / 16)
    # Measured 2.04 at crf 18 (1.74 even losslessly: 4:2:0 chroma subsampling).
    assert np.abs(clip.frames.astype(int) - frames).mean() < 2.5


def test_audio_round_trip(tmp_path):
    n = round(33 / 16 * SR)
    t = np.arange(n) / SR
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t + 1))
    audio = audio.astype(np.float32)
    path = media.write_mp4(tmp_path / "a.mp4", smooth_frames(33, 16, 16), 16, audio, SR)
    clip = media.read_media(path)
    assert clip.sample_rate == SR and clip.audio.dtype == np.float32
    assert abs(len(clip.audio) - n) <= 1024
    assert abs(len(clip.audio) / SR - clip.seconds) <= 1024 / SR
    common = min(n, len(clip.audio))
    error = clip.audio[:common] - audio[:common]
    # Measured 0.0077 relative RMS error at the AAC bit rate write_mp4 asks for.
    assert np.sqrt(np.mean(error**2) / np.mean(audio**2)) < 0.012


def test_audio_stays_in_sync(tmp_path):
    audio = tone_burst(33_000, SR, onset=0.75)
    path = media.write_mp4(tmp_path / "a.mp4", smooth_frames(33, 16, 16), 16, audio, SR)
    clip = media.read_media(path)
    # Measured exactly 0: the decoder drops AAC's 1024 priming samples via the edit list.
    assert abs(onset_of(clip.audio) - round(0.75 * SR)) <= 16
    assert np.abs(clip.audio[:round(0.74 * SR)]).max() < 0.01


def coded_frames(count: int) -> np.ndarray:
    """uint8 [count, 48, 80, 3]: grey centre whose level encodes the frame index, red sides."""
    frames = np.zeros((count, 48, 80, 3), np.uint8)
    frames[..., 0] = 255
    frames[:, :, 16:64] = (20 + 4 * np.arange(count))[:, None, None, None]
    return frames


def frame_index(frame: np.ndarray) -> float:
    """Inverse of coded_frames' encoding for a decoded (cropped) frame."""
    return (frame.astype(float).mean() - 20) / 4


CONTAINERS = [("clip.mkv", ("libx264", "aac"), 44_100)]
if {"libvpx-vp9", "libopus"} <= av.codecs_available:
    CONTAINERS.append(("clip.webm", ("libvpx-vp9", "libopus"), 48_000))  # Opus has no 44.1k


@pytest.mark.parametrize(("name", "codecs", "rate"), CONTAINERS)
def test_converts_rate_size_and_sample_rate(tmp_path, name, codecs, rate):
    path = tmp_path / name
    audio = tone_burst(2 * rate, rate, onset=0.75)
    write_with_pyav(path, coded_frames(50), np.arange(50) / 25, audio, rate, codecs)
    clip = media.read_media(path, fps=16, size=(32, 32), sample_rate=SR)
    assert clip.frames.shape == (32, 32, 32, 3)
    assert clip.fps == 16 and clip.seconds == pytest.approx(2.0, abs=1 / 16)
    # Frame k shows the source frame on screen at k / 16 s.
    expected = np.floor(np.arange(32) * 25 / 16)
    # Neighbouring source frames are 1 apart; measured errors are at most 0.25.
    np.testing.assert_allclose([frame_index(f) for f in clip.frames], expected, atol=0.4)
    # The centre crop drops the red sides entirely.
    assert np.abs(clip.frames[..., 0].astype(int) - clip.frames[..., 1]).max() <= 6
    assert clip.sample_rate == SR
    assert abs(len(clip.audio) - 2 * SR) <= 1024 * SR / rate
    assert abs(onset_of(clip.audio) - round(0.75 * SR)) <= 16


def test_variable_frame_rate_is_sampled_and_held(tmp_path):
    path = tmp_path / "vfr.mkv"
    times = [0.0, 0.04, 0.1, 0.11, 0.3, 0.55, 0.6]
    write_with_pyav(path, coded_frames(len(times)), times)
    clip = media.read_media(path, fps=20, require_audio=False)
    # The mean frame interval, 0.1 s, is the last frame's display time: 0.7 s in all.
    assert len(clip.frames) == 14
    shown = [np.searchsorted(times, k / 20, side="right") - 1 for k in range(14)]
    np.testing.assert_allclose([frame_index(f[:, 16:64]) for f in clip.frames], shown,
                               atol=0.4)
    native = media.read_media(path, require_audio=False)
    assert len(native.frames) == len(times)


class GuardedStream:
    """A stream of a GuardedContainer: reading it once the container is closed fails."""

    def __init__(self, stream, owner):
        object.__setattr__(self, "_stream", stream)
        object.__setattr__(self, "_owner", owner)

    def __getattr__(self, name):
        assert not self._owner.closed, f"stream.{name} read after its container closed"
        return getattr(self._stream, name)

    def __setattr__(self, name, value):
        assert not self._owner.closed, f"stream.{name} set after its container closed"
        setattr(self._stream, name, value)


class GuardedStreams(list):
    """A container's streams, listed and by type, as container.streams offers them."""

    @property
    def video(self):
        return [s for s in self if s._stream.type == "video"]

    @property
    def audio(self):
        return [s for s in self if s._stream.type == "audio"]


class GuardedContainer:
    """An input container whose streams refuse to be read after it is closed.

    PyAV's Stream objects point into memory the demuxer frees when the container closes,
    and nothing stops a read afterwards: it returns whatever has since been allocated
    there. With other threads busy that gave garbage time bases and durations (1 or
    400,000 frames, empty audio) only some of the time; this makes such a read fail always.
    """

    def __init__(self, container):
        self._container, self.closed = container, False
        self.streams = GuardedStreams(GuardedStream(s, self) for s in container.streams)

    def __getattr__(self, name):
        return getattr(self._container, name)

    def decode(self, *streams):
        return self._container.decode(*(s._stream for s in streams))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._container.close()
        self.closed = True


def test_stream_headers_are_read_before_the_file_is_closed(tmp_path, monkeypatch):
    path = media.write_mp4(tmp_path / "a.mp4", smooth_frames(33, 32, 32), 16,
                           tone_burst(33_000, SR, onset=0.75), SR)
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: GuardedContainer(real_open(*a, **k)))
    clip = media.read_media(path, fps=16)
    assert len(clip.frames) == 33 and clip.fps == 16
    assert abs(len(clip.audio) - 33_000) <= 1024
    assert abs(onset_of(clip.audio) - round(0.75 * SR)) <= 16


def test_audio_that_never_plays_with_the_video_raises(tmp_path):
    # Video from 10 s, sound from 0 to 1 s: aligned to the first frame nothing is left,
    # which must be an error naming the file rather than a clip with empty audio.
    path = tmp_path / "apart.mkv"
    write_with_pyav(path, coded_frames(10), 10 + np.arange(10) / 25,
                    tone_burst(44_100, 44_100, onset=0.5), 44_100)
    with pytest.raises(media.MediaError, match="apart.mkv: has no audio during its video"):
        media.read_media(path)


def test_unreadable_files_raise_media_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(20_000))
    for path in (junk, tmp_path / "missing.mp4"):
        with pytest.raises(media.MediaError, match=f"{path.name}: decoding failed"):
            media.read_media(path)
    with pytest.raises(media.MediaError, match="junk.mp4") as caught:
        media.probe(junk)
    # Worker processes hand errors back pickled.
    assert str(pickle.loads(pickle.dumps(caught.value))) == str(caught.value)


@pytest.mark.parametrize("kept", [0.1, 0.5, 0.9, 0.999])
def test_truncated_mp4_raises_media_error(tmp_path, kept):
    good = media.write_mp4(tmp_path / "good.mp4", smooth_frames(33, 64, 64), 16,
                           tone_burst(33_000, SR, 0.5), SR)
    cut = tmp_path / "cut.mp4"
    data = good.read_bytes()
    cut.write_bytes(data[: int(len(data) * kept)])
    # A cut through the header fails to open; a later one is caught by the index check,
    # without which about a third of cut points decoded "fine", just short.
    with pytest.raises(media.MediaError, match=r"cut\.mp4: (decoding failed|is truncated)"):
        media.read_media(cut)


def test_video_only_file(tmp_path):
    path = media.write_mp4(tmp_path / "silent.mp4", smooth_frames(4, 16, 16), 16)
    with pytest.raises(media.MediaError, match="silent.mp4.*no audio"):
        media.read_media(path)
    clip = media.read_media(path, require_audio=False)
    assert clip.audio is None and clip.sample_rate is None and len(clip.frames) == 4
    assert media.probe(path)["has_audio"] is False


def test_write_rejects_bad_clips_and_leaves_nothing(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="even"):
        media.write_mp4(tmp_path / "odd.mp4", np.zeros((2, 16, 15, 3), np.uint8), 16)
    with pytest.raises(ValueError, match="sample_rate"):
        media.write_mp4(tmp_path / "a.mp4", np.zeros((2, 16, 16, 3), np.uint8), 16,
                        np.zeros(100, np.float32))
    assert list(tmp_path.iterdir()) == []

    # A failure after encoding started keeps the file that was there and no temporary.
    target = media.write_mp4(tmp_path / "keep.mp4", smooth_frames(2, 16, 16), 16)
    before = target.read_bytes()
    encode = media._encode

    def encode_then_fail(out, *args):
        encode(out, *args)
        raise OSError("disk full")

    monkeypatch.setattr(media, "_encode", encode_then_fail)
    with pytest.raises(OSError, match="disk full"):
        media.write_mp4(target, smooth_frames(4, 16, 16), 16)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == before


def sine(seconds: float, rate: int, freq: float = 997.0, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(seconds * rate)) / rate)


def test_levels_and_silence():
    level = media.levels(sine(1.0, SR, amplitude=0.5))
    assert level["peak_dbfs"] == pytest.approx(-6.02, abs=0.01)
    assert level["rms_dbfs"] == pytest.approx(-9.03, abs=0.01)
    assert level["clipped"] == 0.0
    assert media.levels(np.clip(sine(1.0, SR, amplitude=2.0), -1, 1))["clipped"] > 0.5
    assert media.levels(np.zeros(10))["peak_dbfs"] == -np.inf
    assert media.is_silent(np.zeros(100)) and media.is_silent(np.zeros(0))
    assert media.is_silent(None)
    # One step of 16-bit audio (-90.3 dBFS) is silence; two steps (-84.3 dBFS) is not.
    assert media.is_silent(np.full(100, 1 / 32768))
    assert not media.is_silent(np.full(100, 2 / 32768))
    assert media.is_silent(np.full(100, 2 / 32768), threshold_dbfs=-80)


def test_k_weighting_matches_bs1770_table():
    # ITU-R BS.1770-4, tables 1 and 2: the two stages at 48 kHz.
    (b1, a1), (b2, a2) = media._k_weighting(48_000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285],
                               atol=1e-12)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-12)
    np.testing.assert_allclose(b2, [1.0, -2.0, 1.0])
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-12)


@pytest.mark.parametrize("rate", [48_000, 44_100, 16_000])
def test_loudness_of_a_full_scale_sine(rate):
    # BS.1770: a 0 dBFS 997 Hz sine in one front channel reads -3.01 LKFS. Measured -3.010
    # at 48 kHz, -3.008 at 44.1 kHz, -2.970 at 16 kHz (the bilinear transform's warping).
    assert media.loudness(sine(5.0, rate), rate) == pytest.approx(-3.01, abs=0.05)
    # 20 dB down reads 20 LU less.
    assert media.loudness(sine(5.0, rate, amplitude=0.1), rate) == pytest.approx(-23.01,
                                                                                  abs=0.05)


def test_loudness_gates_out_silence():
    tone = sine(10.0, 48_000)
    # Ungated, half silence would read 3 dB lower; the gates keep only the blocks with sound
    # (measured -3.08: a few 400 ms blocks straddle the edge).
    gated = media.loudness(np.concatenate([tone, np.zeros_like(tone)]), 48_000)
    assert gated == pytest.approx(-3.01, abs=0.1)
    assert media.loudness(np.zeros(48_000), 48_000) == -np.inf
    with pytest.raises(ValueError, match="400 ms"):
        media.loudness(np.zeros(1000), 48_000)


def quadrants(height: int = 32, width: int = 48) -> np.ndarray:
    """uint8 [height, width, 3], a different colour in each quarter: no turn or mirror of it
    looks the same."""
    image = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    image[:h, :w], image[:h, w:] = (255, 0, 0), (0, 255, 0)
    image[h:, :w], image[h:, w:] = (0, 0, 255), (255, 255, 255)
    return image


def write_turned(path, image, count=3, degrees=None, hflip=False, tag=None):
    """`count` copies of `image` with a display matrix (PyAV: `degrees` counter-clockwise,
    then `hflip`) or a `rotate` tag."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        if degrees is not None:
            video.set_display_rotation(degrees, hflip=hflip)
        if tag is not None:
            video.metadata["rotate"] = tag
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def set_tkhd_matrix(path, matrix):
    """Writes a track header's display matrix (as a phone records it) into an mp4."""
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    # Version 0: after the version and flags, times, track id, duration, layer, group and
    # volume, the matrix is 36 bytes at 44 past the box's type (48 past its start).
    assert data[tkhd + 4] == 0
    data[tkhd + 44:tkhd + 80] = b"".join((v & 0xFFFFFFFF).to_bytes(4, "big") for v in matrix)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("degrees", "hflip", "shown", "rotation"), [
    (90, False, lambda im: np.rot90(im, 1), 270),
    (-90, False, lambda im: np.rot90(im, -1), 90),
    (180, False, lambda im: im[::-1, ::-1], 180),
    (0, True, lambda im: im[:, ::-1], 0),
    (90, True, lambda im: np.rot90(im, 1)[:, ::-1], 90),
])
def test_frames_come_out_as_a_player_shows_them(tmp_path, degrees, hflip, shown, rotation):
    image = quadrants()
    path = write_turned(tmp_path / "turned.mp4", image, degrees=degrees, hflip=hflip)
    expected = shown(image)
    clip = media.read_media(path, require_audio=False)
    assert clip.frames.shape == (3, *expected.shape)
    # Measured at most 2.2 (chroma subsampling at the colour edges); a wrong turn is ~100.
    for frame in clip.frames:
        assert np.abs(frame.astype(int) - expected).mean() < 5
    info = media.probe(path)
    assert (info["height"], info["width"]) == expected.shape[:2]
    assert info["rotation"] == rotation and info["mirrored"] == hflip


def test_phone_clips_are_turned_before_the_crop(tmp_path):
    # Phones held upright store a landscape picture and a quarter turn clockwise in the
    # track header: {0, 1, -1, 0} in 16.16.
    image = quadrants()
    path = write_turned(tmp_path / "phone.mp4", image)
    set_tkhd_matrix(path, (0, 1 << 16, 0, -1 << 16, 0, 0, 0, 0, 1 << 30))
    upright = np.rot90(image, -1)  # 48 high, 32 wide
    info = media.probe(path)
    assert (info["rotation"], info["width"], info["height"]) == (90, 32, 48)
    # A portrait size of the same shape is a pure resize: each corner keeps its colour.
    clip = media.read_media(path, size=(24, 16), require_audio=False)
    assert clip.frames.shape == (3, 24, 16, 3)
    for (y, x) in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert np.abs(clip.frames[0, y, x].astype(int) - upright[y, x]).max() < 40


def test_a_rotate_tag_turns_the_picture(tmp_path):
    # Older phones and FFmpeg wrote `rotate=90` (clockwise) as a stream tag; Matroska keeps it.
    image = quadrants()
    path = write_turned(tmp_path / "tagged.mkv", image, tag="90")
    clip = media.read_media(path, require_audio=False)
    assert np.abs(clip.frames[0].astype(int) - np.rot90(image, -1)).mean() < 5
    assert media.probe(path)["rotation"] == 90


def write_channels(path, layout: str, channels: np.ndarray, rate: int = SR):
    """A short mp4 with float [C, N] sound in `layout` (FFmpeg's channel order) under a few
    plain frames."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=16)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout=layout)
        for i in range(round(channels.shape[1] / rate * 16)):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        size = sound.codec_context.frame_size
        for start in range(0, channels.shape[1], size):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(channels[:, start:start + size], np.float32),
                format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize(("layout", "channel", "gain"), [
    ("5.1", "FC", np.sqrt(0.5)),  # the centre at -3 dB, as a stereo pair plays it
    ("5.1", "FL", 0.5),  # a front side as in stereo
    ("5.1", "BR", 0.5 * np.sqrt(0.5)),  # a surround at -3 dB into its side
    # The mp4 keeps this layout as 6 unnamed channels, read as FFmpeg guesses them (5.1).
    ("5.1(side)", "SL", 0.5 * np.sqrt(0.5)),
    ("5.1", "LFE", 0.0),  # dropped
    ("stereo", "FL", 0.5),  # (L + R) / 2, as before
    ("mono", "FC", 1.0),
])
def test_surround_is_downmixed_by_bs775(tmp_path, layout, channel, gain):
    names = [c.name for c in av.AudioLayout(layout).channels]
    # 100 Hz: the LFE channel's band, which AAC keeps.
    tone = sine(1.0, SR, freq=100, amplitude=0.5)
    channels = np.zeros((len(names), len(tone)))
    channels[names.index(channel)] = tone
    clip = media.read_media(write_channels(tmp_path / "a.mp4", layout, channels))
    if gain == 0:
        assert media.is_silent(clip.audio), media.levels(clip.audio)
    else:
        # Measured within 0.3% of the gain (AAC at 128 kbit/s).
        assert rms(clip.audio) / rms(tone) == pytest.approx(gain, rel=0.02)


def test_over_full_scale_sound_is_clipped_as_a_player_clips_it(tmp_path):
    # AAC decodes to floats: a sine encoded at 1.5 comes back over full scale (FFmpeg's
    # encoder gives up to 1.51 in its first frames, then about 0.8). A player's output stage
    # clips it; scaling the whole track down would need its peak before the first chunk is
    # handed out, which a streaming read does not have.
    path = write_channels(tmp_path / "loud.mp4", "mono", sine(1.0, SR, 440, 1.5)[None])
    with av.open(str(path)) as container:
        decoded = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
    assert np.abs(decoded).max() > 1.2
    clip = media.read_media(path)
    assert np.abs(clip.audio).max() == 1.0
    assert media.levels(clip.audio)["clipped"] == pytest.approx(np.mean(np.abs(decoded) >= 1),
                                                                abs=0.002)
    # Resampling (which can overshoot on its own) gives the same bound.
    assert np.abs(media.read_media(path, sample_rate=8000).audio).max() == 1.0


@pytest.fixture
def count_decoded(monkeypatch):
    """A list that grows by one with each video frame decoded."""
    decoded = []
    to_rgb = media._to_rgb

    def counting(*args):
        decoded.append(1)
        return to_rgb(*args)

    monkeypatch.setattr(media, "_to_rgb", counting)
    return decoded


@pytest.mark.parametrize(("case", "fps", "sample_rate"), [
    # Picture from 0.3 s, sound at 22.05 kHz from 0.5 s: chunks of 6890.625 samples.
    ("offset", 16, None),
    # Frames at irregular times, sound resampled from 44.1 kHz.
    ("variable", 20, SR),
])
def test_iter_media_joins_up_to_read_media(tmp_path, count_decoded, case, fps, sample_rate):
    path = tmp_path / "clip.mkv"
    if case == "offset":
        times, rate, audio_start = 0.3 + np.arange(50) / 25, 22_050, 0.5
    else:
        steps = np.random.default_rng(0).choice([0.02, 0.04, 0.1], size=49)
        times, rate, audio_start = np.concatenate([[0.0], np.cumsum(steps)]), 44_100, 0.0
    write_with_pyav(path, coded_frames(50), times, tone_burst(3 * rate, rate, onset=0.75),
                    rate, audio_start=audio_start)
    kwargs = {"fps": fps, "size": (32, 32), "sample_rate": sample_rate}
    whole = media.read_media(path, **kwargs)
    rate = whole.sample_rate
    if case == "offset":
        # The 0.2 s before the sound starts is silence; its burst plays 0.95 s in.
        assert not whole.audio[:round(0.19 * rate)].any()
        assert abs(onset_of(whole.audio) - round(0.95 * rate)) <= 16
    chunks = list(media.iter_media(path, frames=5, **kwargs))
    assert len(chunks) == len(whole.frames) // 5 >= 4
    assert all(c.frames.shape == (5, 32, 32, 3) and c.fps == fps for c in chunks)
    bounds = [round(k * 5 * rate / fps) for k in range(len(chunks) + 1)]
    assert [len(c.audio) for c in chunks] == list(np.diff(bounds))
    assert all(c.sample_rate == rate for c in chunks)
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]),
                                  whole.frames[:5 * len(chunks)])
    np.testing.assert_array_equal(np.concatenate([c.audio for c in chunks]),
                                  whole.audio[:bounds[-1]])
    # Streaming: the first chunk comes after about its own frames are decoded.
    count_decoded.clear()
    next(media.iter_media(path, frames=5, **kwargs))
    assert len(count_decoded) <= 5 * 25 / fps + 3


def test_read_media_reads_only_the_first_seconds(tmp_path, count_decoded):
    audio = tone_burst(4 * SR, SR, onset=0.5) + tone_burst(4 * SR, SR, onset=1.5)
    path = media.write_mp4(tmp_path / "a.mp4", smooth_frames(100, 32, 32), 25, audio, SR)
    kwargs = {"fps": 16, "size": (16, 16), "sample_rate": 8000}
    whole = media.read_media(path, **kwargs)
    assert len(whole.frames) == 64 and len(count_decoded) == 100
    count_decoded.clear()
    part = media.read_media(path, seconds=2.06, **kwargs)
    # Every frame shown during the first 2.06 s (33 at 16 fps: the last from 2.0 s) and
    # the sound until it ends, 2.0625 s; decoding stops a few frames past them.
    assert len(part.frames) == 33 and len(part.audio) == round(33 / 16 * 8000)
    assert len(count_decoded) <= 2.06 * 25 + 4
    np.testing.assert_array_equal(part.frames, whole.frames[:33])
    # The resampler's filter reads a little past the end, as it does in the whole file.
    np.testing.assert_allclose(part.audio, whole.audio[:len(part.audio)], atol=1e-6)
    assert (part.fps, part.sample_rate) == (16, 8000)
    # Longer than the file: all of it, the sound up to the last frame's end.
    longer = media.read_media(path, seconds=60, **kwargs)
    np.testing.assert_array_equal(longer.frames, whole.frames)
    np.testing.assert_array_equal(longer.audio, whole.audio[:64 * 500])
    # Without fps: the source frames shown in the first 0.5 s, sound to the next one's start.
    native = media.read_media(path, seconds=0.5)
    assert len(native.frames) == 13 and native.fps == 25
    assert len(native.audio) == round(0.52 * SR)
    with pytest.raises(ValueError, match="seconds must be positive"):
        media.read_media(path, seconds=0)


def test_iter_media_checks_its_arguments(tmp_path):
    path = media.write_mp4(tmp_path / "a.mp4", smooth_frames(8, 16, 16), 16)
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        media.iter_media(path, fps=16, size=None, sample_rate=None, frames=0)
    with pytest.raises(ValueError, match="needs fps"):
        media.iter_media(path, fps=None, size=None, sample_rate=None, frames=4)
    with pytest.raises(media.MediaError, match="a.mp4.*no audio"):
        next(media.iter_media(path, fps=16, size=None, sample_rate=None, frames=4))
    clips = list(media.iter_media(path, fps=16, size=None, sample_rate=None,
                                  require_audio=False, frames=3))
    # 8 frames: two clips of 3, the last 2 dropped.
    assert [len(c.frames) for c in clips] == [3, 3] and clips[0].audio is None


# A step of the model's output: 4 frames and the 4000 samples that play with them.
STEP_FRAMES, STEP_SAMPLES = 4, 4000
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]], np.uint8)


def step(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Step k: frames of solid COLOURS[k], a 440 Hz tone at amplitude 0.1 (k + 1)."""
    frames = np.broadcast_to(COLOURS[k], (STEP_FRAMES, 32, 32, 3)).copy()
    t = np.arange(k * STEP_SAMPLES, (k + 1) * STEP_SAMPLES) / SR
    return frames, (0.1 * (k + 1) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def write_steps(path, count: int) -> None:
    with media.StreamWriter(path, 16, 32, 32, SR) as writer:
        for k in range(count):
            writer.append(*step(k))


def assert_steps(clip: media.Clip, steps: int, sound: int) -> None:
    """The clip starts with `steps` whole steps of colour and `sound` samples of their tone."""
    assert len(clip.frames) >= steps * STEP_FRAMES and len(clip.audio) >= sound
    for k in range(steps):
        shown = clip.frames[k * STEP_FRAMES:(k + 1) * STEP_FRAMES].reshape(-1, 3).mean(0)
        # Measured at most 2 levels off: x264 at crf 18 and the 4:2:0 colour planes.
        np.testing.assert_allclose(shown, COLOURS[k], atol=4)
    for k in range(sound // STEP_SAMPLES):
        heard = clip.audio[k * STEP_SAMPLES:(k + 1) * STEP_SAMPLES][500:-500]
        # Each step's own loudness (measured within 0.3%), so the sound is in its place.
        assert np.sqrt(np.mean(heard**2)) == pytest.approx(0.1 * (k + 1) / np.sqrt(2), rel=0.02)


def decoded_counts(path) -> tuple[int, int]:
    """(video frames, audio samples) a plain PyAV reader decodes from the file."""
    frames = samples = 0
    with av.open(str(path)) as container:
        assert container.streams.video and container.streams.audio
        for frame in container.decode(video=0, audio=0):
            frames += isinstance(frame, av.VideoFrame)
            samples += getattr(frame, "samples", 0)
    return frames, samples


@pytest.mark.parametrize("name", ["live.mp4", "live.ts"])
def test_stream_writer_file_plays_while_it_grows(tmp_path, name):
    path = tmp_path / name
    with media.StreamWriter(path, 16, 32, 32, SR) as writer:
        for k in range(len(COLOURS)):
            writer.append(*step(k))
            assert writer.frames_written == (k + 1) * STEP_FRAMES
            assert writer.seconds == (k + 1) * STEP_SAMPLES / SR
            if k == 0:
                continue  # an mp4 holds nothing until the second step starts a fragment
            # What the docstring promises: an mp4 holds every step but the last, with its
            # sound but the AAC encoder's 3071 samples; a TS every frame but one, and the
            # sound but 4095 samples.
            if name.endswith(".mp4"):
                least, sound = k * STEP_FRAMES, k * STEP_SAMPLES - 3071
            else:
                least, sound = writer.frames_written - 1, (k + 1) * STEP_SAMPLES - 4095
            frames, samples = decoded_counts(path)
            assert least <= frames <= writer.frames_written and samples > 0
            clip = media.read_media(path)
            assert least <= len(clip.frames) <= writer.frames_written
            assert_steps(clip, least // STEP_FRAMES, sound)
            assert media.probe(path)["has_audio"]


@pytest.mark.parametrize("name", ["done.mp4", "done.ts"])
def test_stream_writer_finished_file_has_both_streams_whole(tmp_path, name):
    path = tmp_path / name
    write_steps(path, len(COLOURS))
    frames, samples = decoded_counts(path)
    # A plain reader gets the encoder's padding to a whole AAC frame, and in a TS, which has
    # no way to mark them, the 1024 priming samples too (timed to play before the picture).
    assert frames == 16 and 0 <= samples - 16_000 < (1024 if path.suffix == ".mp4" else 2048)
    clip = media.read_media(path)
    assert len(clip.frames) == 16 and clip.fps == 16
    assert abs(len(clip.audio) - 16 * 1000) <= 1024
    assert_steps(clip, len(COLOURS), len(COLOURS) * STEP_SAMPLES - 1024)
    info = media.probe(path)
    assert (info["fps"], info["width"], info["height"], info["sample_rate"]) == (16, 32, 32, SR)
    # The same steps give the same bytes.
    write_steps(tmp_path / f"again{path.suffix}", len(COLOURS))
    assert (tmp_path / f"again{path.suffix}").read_bytes() == path.read_bytes()


def test_stream_writer_keeps_what_was_appended(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError, match="sampler died"):
        with media.StreamWriter(path, 16, 32, 32, SR) as writer:
            writer.append(*step(0))
            writer.append(*step(1))
            raise RuntimeError("sampler died")
    clip = media.read_media(path)
    assert len(clip.frames) == 8 and abs(len(clip.audio) - 8000) <= 1024
    assert_steps(clip, 2, 8000 - 1024)

    # A reader that catches a fragment half written reads the whole ones before it.
    write_steps(path, 3)
    data = path.read_bytes()
    boxes = media._iso_boxes(path)
    assert [kind for kind, _, _ in boxes[-3:]] == [b"moof", b"mdat", b"mfra"]
    moof, mdat = boxes[-3][1], boxes[-2][1]
    for cut, steps in [(moof + 10, 2), (mdat + 4, 2), (mdat + 40, 2), (boxes[-1][1], 3)]:
        path.write_bytes(data[:cut])
        clip = media.read_media(path)
        assert len(clip.frames) == steps * STEP_FRAMES
        assert_steps(clip, steps, steps * STEP_SAMPLES - 3071)
        assert media.probe(path)["width"] == 32


def test_stream_writer_rejects_bad_arguments(tmp_path):
    def opened(**changes):
        args = {"path": tmp_path / "a.mp4", "fps": 16, "height": 32, "width": 32,
                "sample_rate": SR} | changes
        return media.StreamWriter(**args)

    with pytest.raises(ValueError, match="height must be a positive even number.*got 31"):
        opened(height=31)
    with pytest.raises(ValueError, match="sample_rate must be one of .* got 22000; resample"):
        opened(sample_rate=22_000)
    with pytest.raises(ValueError, match=r"path must end in \.mp4 .* or \.ts"):
        opened(path=tmp_path / "a.mkv")
    with pytest.raises(ValueError, match="fps must be positive"):
        opened(fps=0)
    with pytest.raises(media.MediaError, match="missing/a.mp4: creating failed"):
        opened(path=tmp_path / "missing" / "a.mp4")
    assert list(tmp_path.iterdir()) == []

    frames, audio = step(0)
    with opened() as writer:
        with pytest.raises(ValueError, match="frames must be a uint8 array"):
            writer.append(frames.astype(np.float32), audio)
        with pytest.raises(ValueError, match=r"frames must be \[n, 32, 32, 3\].*got \(4, 16"):
            writer.append(frames[:, :16, :16], audio)
        with pytest.raises(ValueError, match="audio must have 4000 samples for 4 frames.*3999"):
            writer.append(frames, audio[:-1])
        with pytest.raises(ValueError, match="audio must be a 1-D float array"):
            writer.append(frames, audio[None])
        assert writer.frames_written == 0
        writer.append(frames, audio)  # nothing was written by the calls that failed
    with pytest.raises(ValueError, match="closed"):
        writer.append(frames, audio)
    clip = media.read_media(tmp_path / "a.mp4")
    assert len(clip.frames) == 4
