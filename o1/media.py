"""Reading and writing video files with sound, for the model's inputs and outputs.

`read_media` decodes any container FFmpeg (through PyAV) can open into RGB frames and a
mono waveform that share one time axis: audio sample 0 plays with video frame 0. It reads a
file as a player presents it: the picture turned (and mirrored) as its display matrix or
`rotate` tag asks, the sound downmixed to mono by ITU-R BS.775 and clipped at full scale. It
can also bring a clip to a fixed frame rate, frame size and sample rate on the way in.
`levels`, `is_silent` and `loudness` (ITU-R BS.1770) measure a waveform.

Reading streams: frames and samples are retimed, aligned and resampled as they are decoded,
so `read_media(..., seconds=s)` decodes only the start of a file and `iter_media` walks an
hour-long file in fixed-size clips without holding it; both give exactly `read_media`'s
frames and samples.
`write_mp4` writes the model's output as an H.264 + AAC MP4 that browsers play;
`StreamWriter` writes it piece by piece, as it is made, into a fragmented MP4 (or MPEG-TS)
that plays, and reads with `read_media`, while it grows.

Every failure that comes from the file rather than from the caller is raised as
`MediaError`, which names the file, so a data pipeline can log and skip bad inputs.

The module is long (about 1,400 lines): it is the one place that talks to PyAV, reading and
writing share its container handling and `MediaError`, and most of its length is the
streaming reading clock that keeps frame k at source time k / fps with the audio aligned to
it. The sound levels at its end could stand alone; they sit here beside the decoder whose
output they measure.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fractions
import io
import itertools
import math
import os
import pathlib
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # PyAV and soxr load with the first read or write, not with MediaError
    import av

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
    import av

    videos = [s for s in container.streams.video
              if not s.disposition & av.stream.Disposition.attached_pic]
    audios = container.streams.audio
    return (videos[0] if videos else None), (audios[0] if audios else None)


@contextlib.contextmanager
def _av_errors(path: pathlib.Path, action: str, hint: str = _READ_HINT) -> Iterator[None]:
    """Re-raises FFmpeg's errors as MediaError naming `path`."""
    import av

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

    A fragmented MP4 that is still being written (`StreamWriter`'s) is described as far as
    its whole fragments go.

    Raises:
        MediaError: The file cannot be opened or is truncated.
    """
    import av

    path = pathlib.Path(path)
    with _av_errors(path, "opening"), _open_input(path, _fragments_end(path)) as container:
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
    import av

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
    video, sound = _add_streams(out, rate, frames.shape[1], frames.shape[2],
                                None if audio is None else sample_rate, crf)
    cuts = None
    if audio is not None:
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
        cuts = [round(i * sample_rate / rate) for i in range(len(frames))] + [len(audio)]
    _mux_frames(out, video, sound, frames, 0, audio, cuts)
    out.mux(video.encode(None))
    if audio is not None:
        out.mux(sound.encode(None))


def _add_streams(out, rate: fractions.Fraction, height: int, width: int,
                 sample_rate: int | None, crf: int, x264_params: str = "mbtree=0"
                 ) -> tuple[av.VideoStream, av.AudioStream | None]:
    """Adds the H.264 stream (and a mono AAC one if `sample_rate`) to `out`."""
    # The same frames must give the same bytes. x264's frame threads make its decisions
    # depend on timing, and its macroblock tree (the lookahead's estimate of how much each
    # block is referenced) reads outside the picture on small frames, so a 32x32 clip came
    # out differently from one call to the next; without it x264 falls back to plain
    # per-frame rate control, a few percent larger at the same quality.
    video = out.add_stream("libx264", rate=rate, options={
        "crf": str(crf), "threads": "1", "x264-params": x264_params})
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    sound = None
    if sample_rate is not None:
        sound = out.add_stream("aac", rate=sample_rate, layout="mono")
        # FFmpeg's default leaves audible artefacts at low sample rates; it caps this
        # request at the most AAC can carry for the rate.
        sound.bit_rate = 128_000
    return video, sound


def _mux_frames(out, video, sound, frames, first: int, audio, cuts, keyframe: bool = False
                ) -> None:
    """Encodes and muxes frames numbered from `first`, each followed by its sound.

    Sample k of the sound plays at k / sample_rate; `cuts` [len(frames) + 1] are the sample
    numbers at which the frames start (the last where the sound ends) and `audio` starts at
    cuts[0], so the muxer gets both streams in step and never has to buffer a whole stream.
    `keyframe` starts the frames with a keyframe.
    """
    import av

    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = first + i  # in units of 1 / rate, the codec's time base
        if keyframe and i == 0:
            frame.pict_type = av.video.frame.PictureType.I
        out.mux(video.encode(frame))
        if audio is not None and cuts[i] < cuts[i + 1]:
            chunk = av.AudioFrame.from_ndarray(
                audio[None, cuts[i] - cuts[0]:cuts[i + 1] - cuts[0]], format="flt",
                layout="mono")
            chunk.sample_rate, chunk.pts = sound.codec_context.sample_rate, cuts[i]
            out.mux(sound.encode(chunk))


class StreamWriter:
    """Writes a clip as it is made, into a file that plays while it grows.

    Each `append` adds a piece of picture with the sound that plays with it (one step of the
    model: 4 frames and 4000 samples at 16 fps and 16 kHz); another process can read and
    play the file meanwhile. A `.mp4` path gets a fragmented MP4 (H.264 + AAC, as
    `write_mp4` encodes them but without B-frames, each append starting a fragment with a
    keyframe), a `.ts` path MPEG-TS. The same appends give the same bytes. A finished file
    reads with `read_media` like any other, and so does one still being written: an `.mp4`
    up to its last whole fragment even when a reader catches one half written (a `.ts`
    caught part way through a packet raises MediaError; read it again).

    How far the file lags, once `append` returns: a `.mp4` holds the frames of every append
    but the last (but the last two when each append is a single frame), and their sound but
    for at most its last 3071 samples (0.19 s at 16 kHz); the next `append` or `close`
    writes the rest. The AAC encoder holds that much back: the 1024-sample frame it is
    filling, one frame it codes late and its 1024-sample priming. A fragment is written
    when the keyframe that starts the next append reaches the muxer, which passes each
    packet on when the next one comes. The first waits for the encoder's first sound (2048
    samples in), so nothing can be read before then. A `.ts` is written packet by packet: it
    holds every frame but at most the last, and the sound but at most its last 4095
    samples (the muxer holds one more AAC frame).

    The file is written in place, not under a temporary name: it is meant to be read as it
    grows. Whatever happens, it is a valid stream of what it holds: leaving the `with` block
    on an exception closes it with everything appended, and a process killed part way leaves
    the whole fragments written so far, which `read_media` reads. A writer that is closed
    before any `append` leaves a file without frames.

    Args:
        path: Where to write; must end in .mp4 or .ts. A file there is replaced.
        fps: Frames per second.
        height, width: Frame size in pixels; both even (yuv420p).
        sample_rate: Samples per second of the sound; one of `AAC_SAMPLE_RATES`.
        crf: x264 constant rate factor, as for `write_mp4`.

    Attributes:
        path: The file, as a pathlib.Path.

    Raises:
        ValueError: An argument is out of range.
        MediaError: The file cannot be created.
    """

    # Both: pass each packet on as soon as the next one comes, rather than waiting for the
    # other stream to catch up (the AAC encoder runs 2048 samples and more behind), and
    # write it to disk at once. MP4: cut a fragment at every keyframe, and write the header
    # with the first fragment (delay_moov) so that it can give the AAC priming as an edit
    # list; without one a fragmented track starts at 0 and the sound plays 1024 samples
    # late. TS: start the clock at 1.4 s, as FFmpeg's own TS files do, so the priming
    # before the first frame does not wrap round to a time 26 hours on.
    _PASS_ON = {"max_interleave_delta": "1", "flush_packets": "1"}
    _OPTIONS = {".mp4": ("mp4", {"movflags": "frag_keyframe+empty_moov+delay_moov"
                                             "+default_base_moof", **_PASS_ON}),
                ".ts": ("mpegts", {"output_ts_offset": "1.4", **_PASS_ON})}

    def __init__(self, path: str | os.PathLike, fps: float, height: int, width: int,
                 sample_rate: int, *, crf: int = 18):
        import av

        self.path = pathlib.Path(path)
        if self.path.suffix.lower() not in self._OPTIONS:
            raise ValueError(f"path must end in .mp4 (fragmented MP4) or .ts (MPEG-TS), got "
                             f"{self.path.name!r}")
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        for name, size in (("height", height), ("width", width)):
            if not (isinstance(size, int | np.integer) and size > 0 and size % 2 == 0):
                raise ValueError(f"{name} must be a positive even number of pixels for "
                                 f"yuv420p video, got {size}; crop or pad the frames to an "
                                 f"even size")
        if sample_rate not in AAC_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {AAC_SAMPLE_RATES}, got "
                             f"{sample_rate}; resample the audio first")
        self._fps, self._size, self._sample_rate = fps, (height, width), sample_rate
        self._rate = fractions.Fraction(fps).limit_denominator(1001)
        self._frames = 0
        self._out = None
        container, options = self._OPTIONS[self.path.suffix.lower()]
        with _av_errors(self.path, "creating", "check the directory exists and is writable"):
            out = av.open(str(self.path), "w", format=container, options=options)
            try:
                # x264 hands each frame out as it comes in only without B-frames (with them
                # it holds 4 back) and told the frame rate is constant (else it holds one to
                # learn its duration); the frames are numbered, so the rate is constant.
                self._video, self._sound = _add_streams(out, self._rate, height, width,
                                                        sample_rate, crf,
                                                        "mbtree=0:bframes=0:force-cfr=1")
                out.start_encoding()  # creates the file, so a bad path fails here
            except BaseException:
                out.close()
                raise
        self._out = out

    @property
    def frames_written(self) -> int:
        """Frames appended so far (the file lags them as the class docstring says)."""
        return self._frames

    @property
    def seconds(self) -> float:
        """Seconds appended so far: frames_written / fps."""
        return self._frames / self._fps

    def _samples_before(self, frame: int) -> int:
        """Sample number at which frame number `frame` starts."""
        return round(frame * self._sample_rate / self._rate)

    def append(self, frames: np.ndarray, audio: np.ndarray) -> None:
        """Encodes a piece of the clip and writes it as far as the codecs let out.

        Args:
            frames: uint8 [n, height, width, 3] RGB frames.
            audio: float [m] mono sound that plays with them, in [-1, 1] (clipped), where
                m = n * sample_rate / fps; when that is not whole, the frames' share of the
                clip's sound: round(end * sample_rate / fps) - round(start * sample_rate /
                fps) for the frames numbered [start, end).

        Raises:
            ValueError: The frames or sound do not fit the writer (nothing is written).
            MediaError: FFmpeg failed to write.
        """
        if self._out is None:
            raise ValueError(f"{self.path}: the StreamWriter is closed; open a new one")
        _check_clip(frames, self._fps, audio, self._sample_rate)
        if audio is None:
            raise ValueError("audio must be a 1-D float array (mono) of the frames' sound, "
                             "got None; pass silence (np.zeros) for a silent piece")
        if frames.shape[1:3] != self._size:
            raise ValueError(f"frames must be [n, {self._size[0]}, {self._size[1]}, 3] as "
                             f"the writer was opened, got {frames.shape}; resize them")
        start, end = self._frames, self._frames + len(frames)
        cuts = [self._samples_before(i) for i in range(start, end + 1)]
        if len(audio) != cuts[-1] - cuts[0]:
            raise ValueError(f"audio must have {cuts[-1] - cuts[0]} samples for "
                             f"{len(frames)} frames at {self._fps} fps and "
                             f"{self._sample_rate} Hz, got {len(audio)}; cut or pad it to "
                             f"the frames' duration")
        audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
        with _av_errors(self.path, "writing", "check the disk has space"):
            # The keyframe closes the fragment before it and lets a player start here.
            _mux_frames(self._out, self._video, self._sound, frames, start, audio, cuts,
                        keyframe=True)
        self._frames = end

    def close(self) -> None:
        """Writes what the codecs hold and finishes the file; later calls do nothing.

        Raises:
            MediaError: FFmpeg failed to write.
        """
        out, self._out = self._out, None
        if out is None:
            return
        with _av_errors(self.path, "finishing", "check the disk has space"):
            try:
                out.mux(self._video.encode(None))
                out.mux(self._sound.encode(None))
            finally:
                out.close()

    def __enter__(self) -> StreamWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
            return
        # The error that ended the block says more than one from finishing the file.
        with contextlib.suppress(MediaError):
            self.close()


def read_audio(path: str | os.PathLike, sample_rate: int, seconds: float | None = None
               ) -> np.ndarray:
    """The sound of a file: float32 [N] mono in [-1, 1] at `sample_rate`, from its first
    sample; only its first `seconds` when given.

    Any file FFmpeg decodes may hold it: wav, mp3, m4a, flac, ogg, or a video, whose first
    audio track is read and whose picture is not. Channels are downmixed as `read_media`
    downmixes; the padding encoders add after the last sample (the header says where the sound
    ends) is cut.

    Raises:
      MediaError: naming the file, when it has no audio track or cannot be decoded.
    """
    import av

    path = pathlib.Path(path)
    hint = "the file may be corrupt, truncated or not a sound file; re-encode it"
    chunks, native, have, end = [], 0, 0, None
    with _av_errors(path, "decoding", hint), av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(path, "has no audio track", "give a sound file or a video with sound")
        stream = container.streams.audio[0]
        if stream.duration:
            end = float(stream.duration * stream.time_base)
        planar = av.AudioResampler(format="fltp")  # the decoder's channels, as planes
        for frame in container.decode(stream):
            native = native or frame.sample_rate
            for chunk in planar.resample(frame):
                chunks.append(_to_mono(chunk))
                have += len(chunks[-1])
            # A little past the end, so the resampler's filter sees what follows it.
            if seconds is not None and have > (seconds + 0.1) * native:
                break
        chunks += [_to_mono(chunk) for chunk in planar.resample(None)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if end is not None:
        audio = audio[:round(end * native)]
    if not len(audio):
        raise MediaError(path, "has an audio track with no decodable samples", hint)
    audio = resample(audio, native, sample_rate)
    if seconds is not None:
        audio = audio[:round(seconds * sample_rate)]
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    """float32 mono [N] at `rate` -> at `to`: as given when the rates agree, else soxr's high
    quality resampling clipped to [-1, 1] (its filter can overshoot a full-scale sound)."""
    if rate == to:
        return audio
    import soxr

    return np.clip(soxr.resample(audio, rate, to, quality="HQ"), -1.0, 1.0).astype(np.float32)


def read_media(
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    sample_rate: int | None = None,
    require_audio: bool = True,
    seconds: float | None = None,
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
        seconds: If given, read only the start of the file: the frames shown during its
            first `seconds` (ceil(seconds * fps) of them with `fps`) and the sound that plays
            with them, up to where the last frame ends. Decoding stops there, so the time and
            memory it takes do not grow with the file; the result is the first frames and
            samples of the whole file's.

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
    _check_args(fps, size, seconds)
    with _av_errors(path, "decoding"), _Reader(path, fps, size, sample_rate, require_audio,
                                                 seconds) as reader:
        # Frames are stacked a few hundred at a time: thousands of small arrays held between
        # the decoder's short-lived full-size pictures leave the heap too fragmented to
        # shrink (a whole 5-minute 480p read peaked at 0.5 to 1.6 GB this way, not 0.3).
        pieces = []
        while images := reader.video.take(256):
            pieces.append(np.stack(images))
        frames = np.concatenate(pieces)
        del pieces
        audio = reader.sound.take(None) if reader.sound else None
        return Clip(frames, reader.video.rate, audio, None if audio is None else reader.sound.rate)


def iter_media(
    path: str | os.PathLike,
    *,
    fps: float,
    size: tuple[int, int] | None,
    sample_rate: int | None,
    require_audio: bool = True,
    frames: int,
) -> Iterator[Clip]:
    """Decodes a video file as consecutive clips of `frames` frames, in bounded memory.

    The file is decoded as it is read, and no more than about one clip of frames and sound is
    held at a time, however long the file. The clips are `read_media`'s with the same
    arguments, cut into pieces: clip k holds its frames [k F, (k + 1) F) and its samples
    [round(k F r / fps), round((k + 1) F r / fps)), for F = `frames` and r the sample rate.
    Joined, they are `read_media`'s clip up to the end of the last whole piece.

    A last piece of fewer than `frames` frames is dropped. Where the sound ends before the
    picture, as `read_media`'s can by a few samples, the last clips' audio is that much short
    (or empty); pad it if a fixed length is needed.

    Args:
        path, fps, size, sample_rate, require_audio: As for `read_media`.
        frames: Frames per clip.

    Yields:
        Clips of `frames` frames at `fps`.

    Raises:
        MediaError: As `read_media`; a problem found part way through the file is raised
            after the clips before it have been yielded.
    """
    path = pathlib.Path(path)
    _check_args(fps, size, None)
    if fps is None:
        raise ValueError("iter_media needs fps: clips of a fixed number of frames need a "
                         "fixed frame rate")
    if not (isinstance(frames, int) and frames > 0):
        raise ValueError(f"frames must be a positive integer, got {frames}")
    return _iter_media(path, fps, size, sample_rate, require_audio, frames)


def _iter_media(path, fps, size, sample_rate, require_audio, frames) -> Iterator[Clip]:
    with _av_errors(path, "decoding"), _Reader(path, fps, size, sample_rate, require_audio,
                                                 None) as reader:
        rate = reader.sound.rate if reader.sound else None
        for k in itertools.count():
            images = reader.video.take(frames)
            if len(images) < frames:
                return
            audio = None
            if rate is not None:
                audio = reader.sound.take(round((k + 1) * frames * rate / fps)
                                          - round(k * frames * rate / fps))
            yield Clip(np.stack(images), float(fps), audio,
                       None if audio is None else rate)


def _check_args(fps, size, seconds) -> None:
    """Raises ValueError naming a reading argument out of range."""
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if size is not None and not (len(size) == 2 and min(size) > 0):
        raise ValueError(f"size must be (height, width) with both positive, got {size}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")


class _Reader:
    """A file open for one pass of reading: its video and its sound, each decoded on demand.

    The sound is read through a second demuxer of the same file, so that neither stream waits
    in memory for the other however the file interleaves them (some put seconds of one stream
    before the other's); packets of the other stream are read and dropped.

    Attributes:
        video: The video stream's `_Video`.
        sound: The audio stream's `_Sound`, or None if the file has no audio stream.
    """

    def __init__(self, path, fps, size, sample_rate, require_audio, seconds):
        self._args = path, fps, size, sample_rate, require_audio, seconds
        self._files = contextlib.ExitStack()

    def __enter__(self) -> _Reader:
        path, fps, size, sample_rate, require_audio, seconds = self._args
        with self._files as files:
            # Both demuxers read the same bytes of a file that is still growing.
            end = _fragments_end(path)
            # A cut-off file can look like one missing a stream; this names the real cause.
            container = files.enter_context(_open_input(path, end))
            video, audio = _streams(container)
            if video is None:
                raise MediaError(path, "has no video stream", "only video files can be read")
            if audio is None and require_audio:
                raise MediaError(path, "has no audio stream",
                                 "pass require_audio=False to accept silent video")
            self.video = _Video(path, container, video, fps, size, seconds)
            self.sound = None
            if audio is not None:
                container = files.enter_context(_open_input(path, end))
                self.sound = _Sound(path, container, _streams(container)[1], self.video,
                                    sample_rate, require_audio)
            self._files = files.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._files.close()


class _Video:
    """A video stream's frames as they are decoded, resampled in time to `fps` if given.

    Output frame k shows the source frame on screen at start + k / fps: the latest one whose
    time is at or before it. It is handed out once a later source frame settles which that is
    and the file is known to last past it; how many frames there are is known only at the end,
    where the last source frame lasts the mean frame interval. So a frame or two wait, never
    the file.

    Stream facts are read here, while the file is open: PyAV's Stream objects point into the
    demuxer's memory, which closing the container frees, and reading them afterwards returns
    whatever was allocated there since.

    Attributes:
        ready: Output frames decoded and not yet taken.
        start: Time of the first frame on the file's clock (seconds), once decoded.
        latest: Time of the latest decoded frame.
        done: No frames will be added to `ready`.
        end: When the last frame stops showing, on the file's clock; None until the end of
            the stream, and None if the read stopped at `seconds`.
        stop: Seconds after `start` at which the clip stops, once done, if `seconds` was given.
        rate: Frames per second of the output (without `fps`, known once done).
    """

    def __init__(self, path, container, stream, fps, size, seconds):
        stream.thread_type = "AUTO"
        clock = _Clock.of(stream)
        self._path, self._fps, self._size, self._seconds = path, fps, size, seconds
        self._decoded = container.decode(stream)
        self._tag_turns = _tag_turns(stream.metadata)
        self._average_rate = clock.average_rate
        self._nominal = float(clock.average_rate or clock.guessed_rate or 25)
        # Half a tick of slack: a frame whose timestamp rounds to the target time counts as
        # shown.
        self._slack = float(clock.time_base) / 2 if clock.time_base else 1e-6
        self._limit = math.inf
        if seconds is not None and fps is not None:
            self._limit = max(1, math.ceil(seconds * fps - 1e-9))
        self._count = 0  # source frames decoded
        self._emitted = 0  # output frames made
        self._recent = []  # (time, image) of source frames the next outputs may still show
        self.ready = collections.deque()
        self.start = self.latest = self.end = self.stop = None
        self.done = False
        self.rate = None if fps is None else float(fps)

    def take(self, n: int | None) -> list[np.ndarray]:
        """The next `n` output frames (all the rest if None); fewer only at the end."""
        while (n is None or len(self.ready) < n) and self.pull():
            pass
        return [self.ready.popleft() for _ in range(len(self.ready) if n is None
                                                    else min(n, len(self.ready)))]

    def pull(self) -> bool:
        """Decodes one more source frame; False once the stream (or `seconds`) is done."""
        if self.done:
            return False
        frame = next(self._decoded, None)
        if frame is None:
            self._finish()
            return False
        # Fall back to frame counting where a container leaves timestamps out; frames leave
        # the decoder in display order, and a time that goes back (a broken file) is held.
        t = frame.time
        if self.latest is not None:
            t = self.latest + 1 / self._nominal if t is None else max(t, self.latest)
        elif t is None:
            t = 0.0
        if self.start is None:
            self.start = t
        if self._fps is None and self._seconds is not None and self._count \
                and t >= self.start + self._seconds - self._slack:
            self.stop, self.done = t - self.start, True
            self.rate = float(self._average_rate or self._count / self.stop)
            return False
        self.latest = t
        self._count += 1
        image = _to_rgb(frame, self._size, self._tag_turns)
        if self._fps is None:
            self.ready.append(image)
            return True
        self._recent.append((t, image))
        # However the file goes on, it lasts past t, so it has at least this many frames.
        self._emit(min(self._limit, math.floor((t - self.start + self._slack) * self._fps)),
                   before=t)
        if self._emitted >= self._limit:
            self.stop, self.done = self._emitted / self._fps, True
        return True

    def _emit(self, count: int, before: float) -> None:
        """Makes output frames up to `count` whose time is before `before`."""
        while self._emitted < count:
            target = self.start + self._emitted / self._fps + self._slack
            if target >= before:
                return
            shown = len(self._recent) - 1
            while shown > 0 and self._recent[shown][0] > target:
                shown -= 1
            self.ready.append(self._recent[shown][1])
            self._emitted += 1
            del self._recent[:shown]  # later outputs show this frame or a later one

    def _finish(self) -> None:
        """At the end of the stream: the last frame's duration, and the frames it settles."""
        self.done = True
        if not self._count:
            raise MediaError(self._path, "has no decodable video frames", _READ_HINT)
        # The last frame lasts one average interval; container timestamps are rounded (to
        # milliseconds in Matroska), and the mean interval cancels that rounding.
        interval = (self.latest - self.start) / (self._count - 1) if self._count > 1 else 0.0
        if not interval > 0:  # one frame, or all stamped alike
            interval = 1 / self._nominal
        self.end = self.latest + interval
        if self._fps is None:
            self.rate = float(self._average_rate or self._count / (self.end - self.start))
            if self._seconds is not None:
                self.stop = self.end - self.start
            return
        count = max(1, math.floor((self.end - self.start + self._slack) * self._fps))
        self._emit(min(count, self._limit), before=math.inf)
        if self._seconds is not None:
            self.stop = self._emitted / self._fps


class _Sound:
    """An audio stream as mono samples on its video's clock, resampled, as it is decoded.

    Sample 0 plays with the first video frame: a gap before the sound is filled with silence,
    sound before the picture is cut. The end is cut where the stream's header ends it, and
    audio that outruns the video by less than one codec frame (encoder padding) is cut at the
    video's end. Samples are fed to the resampler only once no later decision can cut them,
    which the video decides by how far it has been decoded; the resampler streams, so the
    output is the same whatever the pieces it was fed in.

    Attributes:
        rate: Samples per second of the output (None for a stream with no samples).
    """

    # Decoded sound read past a clip's end when `seconds` stops the read: the resampler's
    # filter looks ahead a few milliseconds, and with this much the samples up to the end are
    # those of a read of the whole file.
    _LOOKAHEAD = 0.1

    def __init__(self, path, container, stream, video: _Video, sample_rate, require_audio):
        import av

        clock = _Clock.of(stream)
        self._path, self._video, self._require = path, video, require_audio
        self._decoded = container.decode(stream)
        self._header_end, self._header_rate = clock.end, clock.sample_rate
        # Keep the decoder's sample format and channels for the downmix.
        self._resampler = av.AudioResampler(format="fltp")
        self._wanted = sample_rate
        self._native = 0  # the decoded sample rate
        self._samples = 0  # decoded so far
        self._frame_size = 0  # most samples the decoder returned at once
        self._first = None  # time of the first sample, once a frame's timestamp gives it
        self._pending = []  # mono samples decoded before they could be placed on the clock
        self._drop = None  # decoded samples still to drop before the first frame, once placed
        self._placed = collections.deque()  # placed samples waiting to be fed
        self._end = 0  # samples placed on the video clock: sample 0 with the first frame
        self._fed = 0  # of those, fed to the resampler
        self._stream = None  # the soxr resampler, when the rates differ
        self._out = collections.deque()
        self._out_len = self._made = 0
        self._exhausted = self._finished = self._empty = False

    @property
    def rate(self) -> int | None:
        """The output's sample rate; None for a stream without samples, which raises
        MediaError instead when the read requires sound."""
        while not self._native and not self._exhausted:
            self._decode_one()
        if self._exhausted and not self._samples and not self._finished:
            self._finish()
        return None if self._empty else self._wanted or self._native or self._header_rate

    def take(self, n: int | None) -> np.ndarray | None:
        """The next `n` samples (all the rest if None); fewer only at the end. None if the
        stream has no samples and the read does not require them."""
        while not self._finished and (n is None or self._out_len < n):
            self._advance()
        if self._empty:
            return None
        n = self._out_len if n is None else min(n, self._out_len)
        self._out_len -= n
        return _take(self._out, n)

    def _advance(self) -> None:
        """Makes some progress: feeds what may be fed, or decodes more, or waits on the
        video, or ends the stream."""
        video = self._video
        if video._seconds is not None and not video.done:
            while video.pull():  # a clip cut at `seconds` ends where its frames do
                pass
            return
        if self._drop is None:
            if self._exhausted:
                self._finish()
            else:
                self._decode_one()
            return
        limit, final = self._limit()
        if self._fed < min(self._end, limit):
            self._feed(min(self._end, limit))
        elif self._exhausted or (final and self._end >= limit):
            self._finish()
        elif self._end < limit or video.done:
            self._decode_one()
        else:
            video.pull()

    def _limit(self) -> tuple[float, bool]:
        """How far along the video clock samples may be fed now, and whether no more ever
        will be (the read stopped at `seconds`)."""
        video, rate = self._video, self._native
        limit = math.inf
        if self._header_end is not None:
            limit = round((self._header_end - video.start) * rate)
        if video.done and video.end is None:
            return min(limit, round((video.stop + self._LOOKAHEAD) * rate)), True
        if video.done:
            return min(limit, round((video.end - video.start) * rate)), False
        return min(limit, round((video.latest - video.start) * rate)), False

    def _decode_one(self) -> None:
        """Decodes one audio frame (or finds the end) and places what it can."""
        frame = next(self._decoded, None)
        if frame is None:
            chunks, self._exhausted = self._resampler.resample(None), True
        else:
            self._native = self._native or frame.sample_rate
            if self._first is None and frame.time is not None and self._native:
                # Decoders already drop the encoder's priming samples when the container
                # records them (MP4 edit lists, Matroska CodecDelay) and stamp the first frame
                # they keep; a frame without a stamp is dated from the next one.
                self._first = frame.time - self._samples / self._native
            self._samples += frame.samples
            self._frame_size = max(self._frame_size, frame.samples)
            chunks = self._resampler.resample(frame)
        self._pending += [_to_mono(chunk) for chunk in chunks]
        self._place()

    def _place(self) -> None:
        """Moves decoded samples onto the video clock once their start is known."""
        if self._drop is None:
            waited = sum(map(len, self._pending))
            # Sound with no timestamps (10 s in) starts with the video.
            if self._first is None and not self._exhausted and waited < 10 * self._native:
                return
            while self._video.start is None and self._video.pull():
                pass
            if not self._native:
                self._native = self._header_rate
                if not self._native and self._samples:
                    raise MediaError(self._path, "has an audio stream with no sample rate",
                                     _READ_HINT)
                if not self._native:
                    return
            first = self._video.start if self._first is None else self._first
            # A gap between the first sound and the first frame is real and kept as silence.
            offset = round((first - self._video.start) * self._native)
            if offset > 0:
                self._placed.append(np.zeros(offset, np.float32))
                self._end += offset
            self._drop = max(0, -offset)
        for samples in self._pending:
            cut = min(self._drop, len(samples))
            self._drop -= cut
            if cut < len(samples):
                self._placed.append(samples[cut:])
                self._end += len(samples) - cut
        self._pending = []

    def _feed(self, upto: int) -> None:
        """Resamples placed samples up to `upto` into the output."""
        samples = _take(self._placed, upto - self._fed)
        self._fed = upto
        self._resample(samples.astype(np.float32, copy=False))

    def _resample(self, samples: np.ndarray | None) -> None:
        """Resamples (None: flushes) into the output, clipped to full scale."""
        rate = self._wanted or self._native
        if rate != self._native and self._stream is None:
            import soxr

            self._stream = soxr.ResampleStream(self._native, rate, 1, dtype="float32",
                                               quality="HQ")
        if self._stream is not None:
            samples = self._stream.resample_chunk(
                np.zeros(0, np.float32) if samples is None else samples, last=samples is None)
        elif samples is None:
            return
        if self._video.stop is not None:  # a clip cut at `seconds` ends with its frames
            samples = samples[:max(0, round(self._video.stop * rate) - self._made)]
        self._made += len(samples)
        if len(samples):
            self._out.append(np.clip(samples, -1.0, 1.0).astype(np.float32))
            self._out_len += len(samples)

    def _finish(self) -> None:
        """At the end of the stream (or of a clip cut at `seconds`): cuts and flushes."""
        self._finished = True
        video = self._video
        if not self._samples:
            if self._require:
                raise MediaError(self._path, "has an audio stream with no decodable samples",
                                 _READ_HINT)
            self._empty = True
            return
        self._place()
        rate = self._native
        end = self._end
        if self._header_end is not None:
            end = max(0, min(end, round((self._header_end - video.start) * rate)))
        # Encoders pad the last frame with silence and many containers do not record how
        # much, so audio that outruns the video by less than one codec frame is cut at the
        # video end; the video is decoded as far as it takes to know.
        while not video.done and round((video.latest - video.start) * rate) < end:
            video.pull()
        if video.done and video.end is not None:
            video_samples = round((video.end - video.start) * rate)
            if video_samples < end < video_samples + self._frame_size:
                end = video_samples
        if video.stop is not None:
            end = min(end, round((video.stop + self._LOOKAHEAD) * rate))
        end = max(end, self._fed)
        if end > self._fed:
            self._feed(end)
        self._resample(None)
        if not self._made:
            stop = video.end if video.end is not None else video.start + video.stop
            raise MediaError(self._path, f"has no audio during its video ({video.start:.3f} s "
                             f"to {stop:.3f} s on the file's clock)",
                             "its sound and picture do not overlap; re-encode it or skip it")


@contextlib.contextmanager
def _open_input(path: pathlib.Path, end: int | None) -> Iterator[av.container.InputContainer]:
    """Opens a file for decoding, checked for truncation; only its first `end` bytes (the
    whole fragments `_fragments_end` found) when `end` is given."""
    import av

    if end is None:
        with av.open(str(path)) as container:
            _check_complete(path, container, path.stat().st_size)
            yield container
        return
    with path.open("rb") as file, av.open(_Prefix(file, end)) as container:
        _check_complete(path, container, end)
        yield container


class _Prefix(io.RawIOBase):
    """The first `size` bytes of an open binary file, as a read-only file of that size."""

    def __init__(self, file, size: int):
        self._file, self._size = file, size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self._size - self._file.tell()))
        return self._file.readinto(memoryview(buffer)[:n])

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            offset, whence = self._size + offset, io.SEEK_SET
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()


def _check_complete(path: pathlib.Path, container, size: int) -> None:
    """Raises MediaError if the container's index points past `size`, the end of the file
    (or of the part of it read).

    MP4 and MOV files carry an index of every packet; when such a file was cut short
    (an interrupted copy) the demuxer reports a normal end of file at the cut, and the
    clip would silently lose its tail.
    """
    boxes = [box for box in _iso_boxes(path) if box[1] < size]
    if boxes and boxes[-1][2] > size:
        raise MediaError(path, f"is truncated: a top-level MP4 box ends past the end of the "
                         f"file ({size} bytes)", "the copy is incomplete; fetch or write it again")
    for stream in container.streams:
        if any(entry.pos + entry.size > size for entry in stream.index_entries):
            raise MediaError(path, f"is truncated: its index lists {stream.type} data past "
                             f"the end of the file ({size} bytes)",
                             "the copy is incomplete; fetch or write it again")


def _iso_boxes(path: pathlib.Path, within: tuple[int, int] | None = None
               ) -> list[tuple[bytes, int, int]]:
    """The boxes of an MP4/MOV file as (type, start, end), at its top level or `within`
    the bytes [start, end) of a box; empty if the file is not one.

    A cut through the header can leave a readable but partial index (one track, a few
    packets), which the index check cannot see; the box sizes still tell: the last box
    ends past the end of the file. A box that runs to the end of the file (size 0) ends
    the list there, and one with an impossible size (under 8 bytes) ends it as if cut.
    """
    size = path.stat().st_size
    boxes = []
    with path.open("rb") as f:
        if within is None:
            if f.read(12)[4:8] != b"ftyp":
                return boxes
            within = (0, size)
        offset, stop = within[0], min(within[1], size)
        while offset + 8 <= stop:
            f.seek(offset)
            header = f.read(16)
            kind, box_size = header[4:8], int.from_bytes(header[:4], "big")
            if box_size == 1 and len(header) == 16:  # 64-bit size follows the type
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:  # the box runs to the end of the file
                box_size = size - offset
            if box_size < 8:
                boxes.append((kind, offset, math.inf))
                break
            boxes.append((kind, offset, offset + box_size))
            offset += box_size
    return boxes


def _fragments_end(path: pathlib.Path) -> int | None:
    """Where the whole fragments of a fragmented MP4 that is being written end; None for
    any other file (a finished fragmented MP4 included), which is read whole.

    A fragmented MP4 (a `moov` box declaring fragments, then `moof` + `mdat` pairs) can be
    read while it grows, and its end may cut a fragment a writer has not finished: the file
    is read up to the last whole fragment instead. FFmpeg ends a finished one with an
    `mfra` box, and it is read as any other file, with its truncation checks.
    """
    try:
        size = path.stat().st_size
        boxes = _iso_boxes(path)
    except OSError:  # FFmpeg's error on opening the file names the cause
        return None
    whole = [box for box in boxes if box[2] <= size]
    moov = [box for box in whole if box[0] == b"moov"]
    if not moov or (boxes[-1][0] == b"mfra" and boxes[-1] in whole):
        return None
    if not any(kind == b"moof" for kind, _, _ in whole) and not any(
            kind == b"mvex" for kind, _, _ in _iso_boxes(path, (moov[0][1] + 8, moov[0][2]))):
        return None
    if whole[-1][0] == b"moof":  # its samples are in the mdat that follows, still to come
        whole.pop()
    return whole[-1][2]


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
    import av

    for data in frame.side_data:
        if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            a, b, _, c, d = (int(v) for v in np.frombuffer(bytes(data), np.int32)[:5])
            mirrored = a * d - b * c < 0
            if mirrored:  # undo a mirror of p, leaving a pure rotation
                a, b = -a, -b
            return round(math.degrees(math.atan2(b, a)) / 90) % 4, mirrored
    return tag_turns, False


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None, tag_turns: int = 0
            ) -> np.ndarray:
    """Converts a decoded frame to uint8 [H, W, 3] RGB as a player shows it (turned and
    mirrored by its display matrix or `rotate` tag), centre-cropped and resized to size."""
    import av

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


def _take(chunks: collections.deque, n: int) -> np.ndarray:
    """The first `n` samples of a deque of float32 chunks, taken off it (a chunk cut in two
    leaves its rest at the front)."""
    pieces = []
    while n:
        piece = chunks.popleft()
        if len(piece) > n:
            chunks.appendleft(piece[n:])
            piece = piece[:n]
        pieces.append(piece)
        n -= len(piece)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
