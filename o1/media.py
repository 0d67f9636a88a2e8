"""Reading and writing video files with sound, for the model's inputs and outputs.

`read_media` decodes any container FFmpeg (through PyAV) can open into RGB frames and a
mono waveform that share one time axis: audio sample 0 plays with video frame 0. It reads a
file as a player presents it: the picture turned (and mirrored) as its display matrix or
`rotate` tag asks, the sound downmixed to mono by ITU-R BS.775 and clipped at full scale. It
can also bring a clip to a fixed frame rate, frame size and sample rate on the way in.
`levels`, `is_silent` and `loudness` (ITU-R BS.1770) measure a waveform.
`write_mp4` writes the model's output as an H.264 + AAC MP4 that browsers play.

Every failure that comes from the file rather than from the caller is raised as
`MediaError`, which names the file, so a data pipeline can log and skip bad inputs.

The module is longer than most (about 520 lines): it is the one place that talks to PyAV,
reading and writing share its container handling and `MediaError`, and most of its length is
the reading clock that keeps frame k at source time k / fps with the audio aligned to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import math
import os
import pathlib
import time
import uuid
from collections.abc import Iterator

import av
import librosa
import numpy as np

# Sample rates the AAC bitstream can signal; FFmpeg's encoder rejects the others.
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000,
                    64000, 88200, 96000)

_READ_HINT = "the file may be corrupt, truncated or not a media file; re-encode or skip it"


class MediaError(ValueError):
    """A media file could not be read or written.

    Args:
        path: The file concerned.
        reason: What went wrong.
        hint: What the caller can do about it.
    """

    def __init__(self, path: str | os.PathLike, reason: str, hint: str = ""):
        # Keep the parts in `args` so the error survives pickling across worker processes.
        super().__init__(str(path), reason, hint)
        self.path, self.reason, self.hint = str(path), reason, hint

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f" ({self.hint})" if self.hint else "")


@dataclasses.dataclass(eq=False)
class Clip:
    """Frames and sound on one time axis: a decoded file or a generated clip.

    Attributes:
        frames: uint8 [T, H, W, 3] RGB frames.
        fps: Frames per second of `frames`.
        audio: float32 [N] mono waveform in [-1, 1] starting with frame 0, or None if there is
            no sound (a file without an audio stream).
        sample_rate: Samples per second of `audio`, or None with it.
        timings: Seconds each stage that made the clip took (decode, sample, mux, ...).
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None
    sample_rate: int | None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Seconds of video: T / fps."""
        return len(self.frames) / self.fps

    def write(self, path: str | os.PathLike) -> pathlib.Path:
        """Writes an H.264 + AAC mp4 (atomically) and records the time as `mux`."""
        start = time.perf_counter()
        out = write_mp4(path, self.frames, self.fps, self.audio, self.sample_rate)
        self.timings["mux"] = time.perf_counter() - start
        return out


def _streams(container) -> tuple[av.VideoStream | None, av.AudioStream | None]:
    """The first video stream that is not cover art, and the first audio stream."""
    videos = [s for s in container.streams.video
              if not s.disposition & av.stream.Disposition.attached_pic]
    audios = container.streams.audio
    return (videos[0] if videos else None), (audios[0] if audios else None)


@contextlib.contextmanager
def _av_errors(path: pathlib.Path, action: str, hint: str = _READ_HINT) -> Iterator[None]:
    """Re-raises FFmpeg's errors as MediaError naming `path`."""
    try:
        yield
    except av.error.FFmpegError as err:
        raise MediaError(path, f"{action} failed: {err.strerror or err}", hint) from err


def probe(path: str | os.PathLike) -> dict:
    """Describes a file's streams from its header, without decoding.

    The one exception is the picture's orientation, which FFmpeg hands on with the decoded
    frames: the first frame is decoded to read it.

    Returns:
        A dict with format (FFmpeg's demuxer names, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or
        "png_pipe"), has_video, has_audio, duration (seconds), fps, width and height (of the
        picture as a player shows it, which `read_media` returns), rotation (degrees a player
        turns the stored picture clockwise: 0, 90, 180 or 270; a phone held upright records
        90), mirrored (whether it is mirrored left to right before the turn) and
        sample_rate; fields about a missing stream, or unknown to the container, are None.

    Raises:
        MediaError: The file cannot be opened or is truncated.
    """
    path = pathlib.Path(path)
    with _av_errors(path, "opening"), av.open(str(path)) as container:
        _check_complete(path, container)
        video, audio = _streams(container)
        width = height = turns = mirrored = None
        if video is not None:
            width, height = video.codec_context.width, video.codec_context.height
            turns, mirrored = _tag_turns(video.metadata), False
            # FFmpeg hands the display matrix on with each decoded frame, not in the header
            # PyAV exposes; a first frame that does not decode leaves the tag's answer.
            with contextlib.suppress(av.error.FFmpegError, StopIteration):
                turns, mirrored = _display_turns(next(container.decode(video)), turns)
            if turns % 2:
                width, height = height, width
        return {
            "format": container.format.name,
            "has_video": video is not None,
            "has_audio": audio is not None,
            "duration": container.duration / av.time_base if container.duration else None,
            "fps": float(video.average_rate) if video and video.average_rate else None,
            "width": width,
            "height": height,
            "rotation": 90 * turns if video else None,
            "mirrored": mirrored,
            "sample_rate": audio.codec_context.sample_rate if audio else None,
        }


def write_mp4(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
) -> pathlib.Path:
    """Writes an H.264 (yuv420p) MP4, with a mono AAC track if `audio` is given.

    The file appears complete or not at all: it is written next to `path` under a
    temporary name and renamed into place.

    Args:
        path: Where to write.
        frames: uint8 [T, H, W, 3] RGB frames; H and W must be even.
        fps: Frames per second.
        audio: Float [N] mono waveform; values outside [-1, 1] are clipped.
        sample_rate: Samples per second of `audio`; one of `AAC_SAMPLE_RATES`.
        crf: x264 constant rate factor; lower is better quality, 18 is near lossless.

    Returns:
        `path` as a pathlib.Path.

    Raises:
        ValueError: The arguments are not a valid clip.
        MediaError: FFmpeg failed to write the file.
    """
    path = pathlib.Path(path)
    _check_clip(frames, fps, audio, sample_rate)
    # A hidden name in the same directory, so os.replace is an atomic rename.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with _av_errors(path, "writing", "check the directory exists and is writable"):
            # faststart puts the index first so browsers can play while downloading.
            with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
                _encode(out, frames, fps, audio, sample_rate, crf)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_clip(frames, fps, audio, sample_rate) -> None:
    """Raises ValueError saying what is wrong with write_mp4's arguments."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array, got {getattr(frames, 'dtype', frames)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames must have shape [T, H, W, 3] with T, H, W > 0, "
                         f"got {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame height and width must be even for yuv420p video, got "
                         f"{height}x{width}; crop or pad the frames to an even size")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if audio is None:
        return
    if not isinstance(audio, np.ndarray) or audio.ndim != 1 or audio.dtype.kind != "f":
        raise ValueError(f"audio must be a 1-D float array (mono), got "
                         f"{getattr(audio, 'shape', type(audio))}")
    if not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    if sample_rate not in AAC_SAMPLE_RATES:
        raise ValueError(f"sample_rate must be one of {AAC_SAMPLE_RATES} when audio is given, "
                         f"got {sample_rate}; resample the audio first")


def _encode(out, frames, fps, audio, sample_rate, crf) -> None:
    """Encodes the validated clip into the open output container `out`."""
    rate = fractions.Fraction(fps).limit_denominator(1001)
    # The same frames must give the same bytes. x264's frame threads make its decisions
    # depend on timing, and its macroblock tree (the lookahead's estimate of how much each
    # block is referenced) reads outside the picture on small frames, so a 32x32 clip came
    # out differently from one call to the next; without it x264 falls back to plain
    # per-frame rate control, a few percent larger at the same quality.
    video = out.add_stream("libx264", rate=rate, options={
        "crf": str(crf), "threads": "1", "x264-params": "mbtree=0"})
    video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    if audio is not None:
        sound = out.add_stream("aac", rate=sample_rate, layout="mono")
        # FFmpeg's default leaves audible artefacts at low sample rates; it caps this
        # request at the most AAC can carry for the rate.
        sound.bit_rate = 128_000
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
        # Sample k of the audio plays at k / sample_rate; split it at the frame times so
        # the muxer gets both streams in step and never has to buffer a whole stream.
        cuts = [round(i * sample_rate / rate) for i in range(len(frames))] + [len(audio)]
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i  # in units of 1 / rate, the codec's time base
        out.mux(video.encode(frame))
        if audio is not None and cuts[i] < cuts[i + 1]:
            chunk = av.AudioFrame.from_ndarray(audio[None, cuts[i]:cuts[i + 1]], format="flt",
                                               layout="mono")
            chunk.sample_rate, chunk.pts = sample_rate, cuts[i]
            out.mux(sound.encode(chunk))
    out.mux(video.encode(None))
    if audio is not None:
        out.mux(sound.encode(None))


def read_media(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    sample_rate: int | None = None,
    require_audio: bool = True,
) -> Clip:
    """Decodes a video file and its sound onto one time axis starting at the first frame.

    Args:
        path: Any file FFmpeg can demux and decode (mp4, mkv, webm, mov, ...).
        fps: If given, resample the video in time: output frame k is the latest source
            frame shown at or before k / fps (so variable frame rates work), and there are
            floor(source duration * fps) frames, at least 1. Otherwise keep every frame.
        size: If given, (H, W) to centre-crop to that aspect ratio and then resize to.
        sample_rate: If given, resample the audio to this rate.
        require_audio: Raise if the file has no audio; otherwise return audio=None.

    Returns:
        A Clip with uint8 [T, H, W, 3] frames as a player shows them (turned and mirrored by
        the display matrix or `rotate` tag, before the crop) and float32 [N] mono audio,
        where N covers the audio stream's own duration (padding the encoder added at the end
        removed). Several channels are downmixed as BS.775's stereo downmix halved:
        (L + R) / 2 + 0.707 C + 0.354 (each surround), LFE dropped. Samples beyond full
        scale (float decoders and resampling give some) are clipped to [-1, 1], as a player
        clips them.

    Raises:
        MediaError: The file cannot be decoded, is truncated, has no video, or lacks
            required audio.
    """
    path = pathlib.Path(path)
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if size is not None and not (len(size) == 2 and min(size) > 0):
        raise ValueError(f"size must be (height, width) with both positive, got {size}")
    with _av_errors(path, "decoding"), av.open(str(path)) as container:
        # A cut-off file can look like one missing a stream; name the real cause first.
        _check_complete(path, container)
        video, audio = _streams(container)
        if video is None:
            raise MediaError(path, "has no video stream", "only video files can be read")
        if audio is None and require_audio:
            raise MediaError(path, "has no audio stream",
                             "pass require_audio=False to accept silent video")
        decoded = _decode(container, video, audio, size)
        # Copy out the header facts used below while the file is open: PyAV's Stream
        # objects point into the demuxer's memory, which closing the container frees,
        # and reading them afterwards returns whatever was allocated there since.
        video_clock = _Clock.of(video)
        audio_clock = _Clock.of(audio) if audio is not None else None
    if not decoded.images:
        raise MediaError(path, "has no decodable video frames", _READ_HINT)

    frames, out_fps, start, end = _retime(video_clock, decoded.times, decoded.images, fps)
    waveform = None
    if decoded.sounds:
        native_rate = decoded.sound_rate or audio_clock.sample_rate
        if not native_rate:
            raise MediaError(path, "has an audio stream with no sample rate", _READ_HINT)
        waveform = _align_audio(np.concatenate(decoded.sounds), native_rate,
                                decoded.sound_start, decoded.sound_frame, audio_clock,
                                start, end)
        if not len(waveform):
            raise MediaError(path, f"has no audio during its video ({start:.3f} s to "
                             f"{end:.3f} s on the file's clock)",
                             "its sound and picture do not overlap; re-encode it or skip it")
        if sample_rate is not None and sample_rate != native_rate:
            waveform = librosa.resample(waveform, orig_sr=native_rate, target_sr=sample_rate)
        else:
            sample_rate = native_rate
        # Resampling can overshoot full scale slightly at sharp edges.
        waveform = np.clip(waveform, -1.0, 1.0).astype(np.float32)
    elif require_audio:
        raise MediaError(path, "has an audio stream with no decodable samples", _READ_HINT)
    else:
        sample_rate = None
    return Clip(frames, out_fps, waveform, sample_rate)


def _check_complete(path: pathlib.Path, container) -> None:
    """Raises MediaError if the container's index points past the end of the file.

    MP4 and MOV files carry an index of every packet; when such a file was cut short
    (an interrupted copy) the demuxer reports a normal end of file at the cut, and the
    clip would silently lose its tail.
    """
    size = path.stat().st_size
    if _iso_box_past_end(path, size):
        raise MediaError(path, f"is truncated: a top-level MP4 box ends past the end of the "
                         f"file ({size} bytes)", "the copy is incomplete; fetch or write it again")
    for stream in container.streams:
        if any(entry.pos + entry.size > size for entry in stream.index_entries):
            raise MediaError(path, f"is truncated: its index lists {stream.type} data past "
                             f"the end of the file ({size} bytes)",
                             "the copy is incomplete; fetch or write it again")


def _iso_box_past_end(path: pathlib.Path, size: int) -> bool:
    """True if an MP4/MOV file's top-level boxes claim more bytes than the file has.

    A cut through the header can leave a readable but partial index (one track, a few
    packets), which the index check cannot see; the box sizes still tell.
    """
    with path.open("rb") as f:
        if f.read(12)[4:8] != b"ftyp":
            return False
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size = int.from_bytes(header[:4], "big")
            if box_size == 1 and len(header) == 16:  # 64-bit size follows the type
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:  # the box runs to the end of the file
                return False
            if box_size < 8:
                return True
            offset += box_size
        return offset > size


@dataclasses.dataclass(frozen=True)
class _Clock:
    """A stream's timing as its header gives it, as plain values; None where unknown.

    Attributes:
        time_base: Seconds per timestamp tick.
        average_rate: Average frames per second (video).
        guessed_rate: FFmpeg's guess at the frame rate (video).
        end: Seconds at which the stream ends: start time plus duration.
        sample_rate: Samples per second (audio).
    """

    time_base: fractions.Fraction | None = None
    average_rate: fractions.Fraction | None = None
    guessed_rate: fractions.Fraction | None = None
    end: float | None = None
    sample_rate: int | None = None

    @classmethod
    def of(cls, stream) -> _Clock:
        """Reads `stream`'s header; call it only while its container is open."""

        def positive(value):
            return value if value is not None and value > 0 else None

        time_base = positive(stream.time_base)
        duration = positive(stream.duration)
        end = None
        if time_base and duration:
            end = float(((stream.start_time or 0) + duration) * time_base)
        video = stream.type == "video"
        return cls(
            time_base=time_base,
            average_rate=positive(stream.average_rate) if video else None,
            guessed_rate=positive(stream.guessed_rate) if video else None,
            end=end,
            sample_rate=positive(stream.codec_context.sample_rate) if not video else None,
        )


@dataclasses.dataclass
class _Decoded:
    """What one pass over a file yields.

    Attributes:
        times: Presentation time in seconds of each video frame, NaN where unknown.
        images: uint8 [H, W, 3] RGB image of each video frame.
        sounds: float32 [n] mono chunks of audio, in decoding order.
        sound_start: Presentation time in seconds of the first audio sample, or None if
            no audio frame carried a timestamp.
        sound_frame: Most samples the audio decoder returned at once.
        sound_rate: Sample rate of the decoded audio (0 if none was decoded).
    """

    times: list[float] = dataclasses.field(default_factory=list)
    images: list[np.ndarray] = dataclasses.field(default_factory=list)
    sounds: list[np.ndarray] = dataclasses.field(default_factory=list)
    sound_start: float | None = None
    sound_frame: int = 0
    sound_rate: int = 0


def _decode(container, video, audio, size) -> _Decoded:
    """Decodes the video (and audio, if not None) streams in one pass over the file."""
    streams = [s for s in (video, audio) if s is not None]
    video.thread_type = "AUTO"
    tag_turns = _tag_turns(video.metadata)
    # Keep the decoder's sample format and channels for the downmix.
    resampler = av.AudioResampler(format="fltp")
    decoded = _Decoded()
    sound_samples = 0  # decoded so far, to date the first sample from a later timestamp
    for frame in container.decode(*streams):
        if isinstance(frame, av.VideoFrame):
            decoded.times.append(math.nan if frame.time is None else frame.time)
            decoded.images.append(_to_rgb(frame, size, tag_turns))
            continue
        decoded.sound_rate = decoded.sound_rate or frame.sample_rate
        if decoded.sound_start is None and frame.time is not None and decoded.sound_rate:
            decoded.sound_start = frame.time - sound_samples / decoded.sound_rate
        sound_samples += frame.samples
        decoded.sound_frame = max(decoded.sound_frame, frame.samples)
        decoded.sounds += [_to_mono(f) for f in resampler.resample(frame)]
    if audio is not None:
        decoded.sounds += [_to_mono(f) for f in resampler.resample(None)]
    return decoded


# The mono downmix, by FFmpeg's channel names: ITU-R BS.775's stereo downmix Lt = L + 0.707 C +
# 0.707 Ls, Rt = R + 0.707 C + 0.707 Rs, LFE dropped, then mono = (Lt + Rt) / 2. Stereo keeps
# its (L + R) / 2, a centre-only sound comes out at 0.707 of its level (as it plays from a
# stereo pair), and LFE and surrounds no longer dilute the dialogue as a plain average of six
# channels did (-15.6 dB for a centre-only sound). Back, side, height and other surrounds count
# as surrounds; centre ones at the back or top go to both sides like the front centre.
_MONO_WEIGHTS = {
    **dict.fromkeys(("FL", "FR", "FLC", "FRC", "DL", "DR", "WL", "WR"), 0.5),
    **dict.fromkeys(("FC", "BC", "TC", "TFC", "TBC", "BFC"), math.sqrt(0.5)),
    **dict.fromkeys(("BL", "BR", "SL", "SR", "SDL", "SDR", "TFL", "TFR", "TBL", "TBR", "TSL",
                     "TSR", "BFL", "BFR"), 0.5 * math.sqrt(0.5)),
    **dict.fromkeys(("LFE", "LFE2", "LFE3", "LFE1"), 0.0),
}


# Layouts FFmpeg's own tools assume for a stream that gives only its channel count (an mp4
# can carry 5.1 with side surrounds that way), where the guess is safe.
_UNNAMED_LAYOUTS = {2: ("FL", "FR"), 6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
                    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR")}


def _to_mono(frame: av.AudioFrame) -> np.ndarray:
    """A planar float frame [C, n] downmixed to float32 [n] by its channels' names."""
    samples = frame.to_ndarray()
    names = tuple(c.name for c in frame.layout.channels)
    if len(names) == 1:
        return samples[0]
    if set(names) == {"NONE"}:
        names = _UNNAMED_LAYOUTS.get(len(names), names)
    weights = [_MONO_WEIGHTS.get(name) for name in names]
    if None in weights:  # channels with no known place: nothing to weigh them by
        return samples.mean(axis=0)
    return (np.asarray(weights, np.float32) @ samples).astype(np.float32)


def _tag_turns(metadata) -> int:
    """Clockwise quarter turns asked by a stream's `rotate` tag (older phones and FFmpeg)."""
    for key, value in metadata.items():
        if key.lower() == "rotate":
            with contextlib.suppress(ValueError):
                return round(float(value) / 90) % 4
    return 0


def _display_turns(frame: av.VideoFrame, tag_turns: int) -> tuple[int, bool]:
    """(clockwise quarter turns, mirrored first) that show `frame` as a player does.

    The display matrix (ISO 14496-12's, which FFmpeg attaches to each frame) maps a stored
    pixel (p, q) to the shown (a p + c q, b p + d q), y pointing down; a negative determinant
    mirrors. Angles between quarter turns are rounded to the nearest, as the picture is only
    ever turned by quarters here. Without a matrix, the stream's `rotate` tag decides.
    """
    for data in frame.side_data:
        if data.type == _DISPLAYMATRIX:
            a, b, _, c, d = (int(v) for v in np.frombuffer(bytes(data), np.int32)[:5])
            mirrored = a * d - b * c < 0
            if mirrored:  # undo a mirror of p, leaving a pure rotation
                a, b = -a, -b
            return round(math.degrees(math.atan2(b, a)) / 90) % 4, mirrored
    return tag_turns, False


_DISPLAYMATRIX = av.sidedata.sidedata.Type.DISPLAYMATRIX


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None, tag_turns: int = 0
            ) -> np.ndarray:
    """Converts a decoded frame to uint8 [H, W, 3] RGB as a player shows it (turned and
    mirrored by its display matrix or `rotate` tag), centre-cropped and resized to size."""
    image = frame.to_ndarray(format="rgb24")
    turns, mirrored = _display_turns(frame, tag_turns)
    if mirrored:
        image = image[:, ::-1]
    if turns:
        image = np.rot90(image, -turns)  # np.rot90 turns counter-clockwise
    if size is None:
        return np.ascontiguousarray(image)
    out_h, out_w = size
    h, w = image.shape[:2]
    # Cropping before resizing keeps the picture's proportions instead of stretching it.
    if w * out_h > h * out_w:
        keep = max(1, round(h * out_w / out_h))
        image = image[:, (w - keep) // 2:][:, :keep]
    else:
        keep = max(1, round(w * out_h / out_w))
        image = image[(h - keep) // 2:][:keep]
    if image.shape[:2] == (out_h, out_w):
        return np.ascontiguousarray(image)
    cropped = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    # AREA averages the source pixels under each output pixel, which avoids aliasing
    # when shrinking; it has no such benefit when enlarging.
    shrinking = out_h * out_w < image.shape[0] * image.shape[1]
    resized = cropped.reformat(width=out_w, height=out_h,
                               interpolation="AREA" if shrinking else "BICUBIC")
    return resized.to_ndarray()


def _retime(clock: _Clock, times, images, fps):
    """Orders decoded frames by time and, if fps is given, resamples them to that rate.

    Returns:
        (frames uint8 [T, H, W, 3], fps of frames, start and end of the source video in
        seconds on the stream's clock).
    """
    nominal = float(clock.average_rate or clock.guessed_rate or 25)
    # Fall back to frame counting where a container leaves timestamps out: a frame without
    # one follows the frame before it (frames leave the decoder in display order).
    filled = []
    for t in times:
        if math.isnan(t):
            t = filled[-1] + 1 / nominal if filled else 0.0
        filled.append(t)
    times = np.array(filled)
    order = np.argsort(times, kind="stable")
    times = times[order]
    start = times[0]
    # The last frame lasts one average interval; container timestamps are rounded (to
    # milliseconds in Matroska), and the mean interval cancels that rounding.
    interval = (times[-1] - start) / (len(times) - 1) if len(times) > 1 else 0.0
    if not interval > 0:  # one frame, or all stamped alike
        interval = 1 / nominal
    end = times[-1] + interval
    if fps is None:
        rate = float(clock.average_rate) if clock.average_rate else len(times) / (end - start)
        return np.stack([images[i] for i in order]), rate, start, end
    # Half a tick of slack: a frame whose timestamp rounds to the target time counts as shown.
    slack = float(clock.time_base) / 2 if clock.time_base else 1e-6
    count = max(1, math.floor((end - start + slack) * fps))
    targets = start + np.arange(count) / fps + slack
    picks = np.maximum(np.searchsorted(times, targets, side="right") - 1, 0)
    return np.stack([images[order[i]] for i in picks]), float(fps), start, end


def _align_audio(samples, rate, sound_start, frame_size, clock: _Clock, video_start,
                 video_end):
    """Puts decoded mono samples [n] on the video's clock and cuts encoder padding.

    `sound_start` is when the first sample plays, or None if the audio carried no
    timestamps, in which case it is taken to start with the video. `frame_size` is the
    largest number of samples the decoder returned at once, which bounds how much padding
    an encoder can have added. `clock` is the audio stream's.

    Returns:
        float32 [N] samples, sample 0 at the first video frame.
    """
    # Decoders already drop the encoder's priming samples when the container records them
    # (MP4 edit lists, Matroska CodecDelay), and stamp the first frame they keep; any gap
    # left between that and the first video frame is real and is kept as silence.
    if sound_start is None:
        sound_start = video_start
    offset = round((sound_start - video_start) * rate)
    samples = np.concatenate([np.zeros(offset, np.float32), samples]) if offset > 0 \
        else samples[-offset:]
    end = len(samples)
    if clock.end is not None:
        end = max(0, min(end, round((clock.end - video_start) * rate)))
    # Encoders pad the last frame with silence and many containers do not record how much,
    # so audio that outruns the video by less than one codec frame is cut at the video end.
    video_samples = round((video_end - video_start) * rate)
    if video_samples < end < video_samples + frame_size:
        end = video_samples
    return samples[:end]


# ---------------------------------------------------------------------------------------------
# Sound levels.
# ---------------------------------------------------------------------------------------------

# Peak level below which a track counts as silent: under one step of 16-bit audio (-90.3 dBFS),
# so dither and the decoder's rounding noise on a muted track are silence too.
SILENCE_DBFS = -90.0


def levels(audio: np.ndarray) -> dict[str, float]:
    """Peak and RMS level of a waveform, and how much of it sits at full scale.

    Args:
        audio: float [N] waveform with full scale at 1.0 (what `read_media` returns).

    Returns:
        A dict with peak_dbfs (20 log10 max |x|), rms_dbfs (10 log10 mean x^2, so a
        full-scale sine reads -3.01) and clipped (the fraction of samples at or beyond full
        scale; `read_media` clips its output, so clipped audio shows as flat tops at 1.0).
        The levels are -inf for an all-zero or empty waveform.
    """
    x = np.asarray(audio, np.float64)
    peak = float(np.abs(x).max(initial=0.0))
    power = float(np.mean(x * x)) if len(x) else 0.0
    with np.errstate(divide="ignore"):
        return {"peak_dbfs": float(20 * np.log10(peak)),
                "rms_dbfs": float(10 * np.log10(power)),
                "clipped": float(np.mean(np.abs(x) >= 1.0)) if len(x) else 0.0}


def is_silent(audio: np.ndarray | None, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """True if a waveform is missing, empty, or never peaks above `threshold_dbfs`."""
    if audio is None or not len(audio):
        return True
    return levels(audio)["peak_dbfs"] < threshold_dbfs


def loudness(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness of a mono waveform in LUFS, per ITU-R BS.1770-4.

    The waveform is K-weighted (a high shelf for the head, a high pass below 40 Hz), its mean
    square taken over 400 ms blocks every 100 ms, and blocks gated out below -70 LUFS and then
    below 10 LU under the loudness of the rest. It is measured as one front channel (weight 1):
    a full-scale 997 Hz sine reads -3.01 LUFS. Streaming platforms aim at about -14 LUFS.

    Args:
        audio: float [N] mono waveform, at least 400 ms long.
        sample_rate: Samples per second of `audio`.

    Returns:
        Loudness in LUFS; -inf when every block is under the absolute gate (silence).

    Raises:
        ValueError: The waveform is shorter than one 400 ms block.
    """
    from scipy import signal

    block, hop = round(0.4 * sample_rate), round(0.1 * sample_rate)
    if len(audio) < block:
        raise ValueError(f"loudness needs at least 400 ms of audio, got {len(audio)} samples "
                         f"at {sample_rate} Hz")
    (b_shelf, a_shelf), (b_pass, a_pass) = _k_weighting(sample_rate)
    weighted = signal.lfilter(b_pass, a_pass,
                              signal.lfilter(b_shelf, a_shelf, np.asarray(audio, np.float64)))
    energy = np.concatenate([[0.0], np.cumsum(weighted * weighted)])
    starts = np.arange(0, len(weighted) - block + 1, hop)
    power = (energy[starts + block] - energy[starts]) / block
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(power)
        kept = block_lufs > -70.0
        if not kept.any():
            return -math.inf
        relative = -0.691 + 10 * np.log10(power[kept].mean()) - 10.0
        kept &= block_lufs > relative
        return float(-0.691 + 10 * np.log10(power[kept].mean()))


def _k_weighting(rate: int) -> tuple[tuple[list[float], list[float]], ...]:
    """The two biquads of BS.1770's K-weighting at `rate`, as ((b, a) shelf, (b, a) high pass).

    BS.1770 tabulates the coefficients at 48 kHz only; these are its analogue prototypes
    (as libebur128 derives them) through the bilinear transform, which give the table's
    values at 48 kHz and the same response at any other rate.
    """
    gain_db, q, f0 = 3.999843853973347, 0.7071752369554196, 1681.974450955533
    k = math.tan(math.pi * f0 / rate)
    vh, a0 = 10 ** (gain_db / 20), 1 + k / q + k * k
    vb = vh ** 0.4996667741545416
    shelf = ([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0,
              (vh - vb * k / q + k * k) / a0],
             [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    q, f0 = 0.5003270373238773, 38.13547087602444
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    high_pass = ([1.0, -2.0, 1.0], [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return shelf, high_pass
