"""A picture of a clip's sound on the video's time axis, so a person can see the sync.

    picture, sync = sync_picture(clip.frames, clip.audio, config)
    PIL.Image.fromarray(picture).save("sync.png")

    growing = StreamPicture(config.data.sample_rate)   # a stream's sound, redrawn as it grows
    for chunk in stream:
        growing.add(chunk.audio, chunk.prompt)
        PIL.Image.fromarray(growing.draw()).save("sound.png")

Top: log-mel spectrogram; bottom: waveform; both share one time axis in seconds. Cyan lines
are the visual bounces `o1.avshapes.analysis` finds in the frames, orange lines the sound onsets
it finds in the waveform, so a bounce with its sound shows as the two lines together.

Axes: T frames, N samples, F mel bands, S spectrogram frames.
"""

from __future__ import annotations

import librosa
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from o1.avshapes import analysis
from o1.config import Config

WIDTH = 960  # pixels
LEFT, RIGHT = 44, 12  # margins around the plot area
HEADER, SPECTRUM, WAVE, AXIS = 22, 150, 80, 22  # panel heights
BACKGROUND = (255, 255, 255)
INK = (40, 40, 40)
BOUNCE = (0, 170, 210)  # visual bounces
ONSET = (240, 120, 0)  # sound onsets
WAVE_INK = (70, 90, 130)
PROMPT = (0, 150, 60)  # where a stream's prompt changed
# Colour map anchors for the spectrogram, from quiet to loud.
_MAP = np.array([[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]],
                np.float32)


def sync_summary(bounces: list[float], onsets: list[float], fps: float) -> dict:
    """How many bounces have an onset within one video frame, and the median offset."""
    median, share, count = analysis.sync_stats([(bounces, onsets)], fps)
    return {"bounces": count, "onsets": len(onsets),
            "bounces_in_sync": round(share * count) if count else 0,
            "median_offset_ms": median if count and len(onsets) else None}


def describe(sync: dict) -> str:
    """One line of `sync_summary`'s numbers for people."""
    text = (f"{sync['bounces']} visual bounces (cyan), {sync['onsets']} sound onsets (orange)")
    if sync["bounces"] and sync["onsets"]:
        text += (f"; {sync['bounces_in_sync']} of {sync['bounces']} bounces have an onset "
                 f"within one frame, median offset {sync['median_offset_ms']:.0f} ms")
    return text


def sync_picture(frames: np.ndarray, audio: np.ndarray, config: Config
                 ) -> tuple[np.ndarray, dict]:
    """uint8 [H, WIDTH, 3] picture of the sound of `frames` and `audio` (the model's fps and
    sample rate), and `sync_summary` of what the analysis found."""
    d = config.data
    video = analysis.analyze_video(frames, d.fps, d.object_size)
    sound = analysis.analyze_audio(audio, d.sample_rate, config.audio.hop)
    sync = sync_summary(video["bounce_times"], sound["onset_times"], d.fps)
    seconds = max(len(frames) / d.fps, 1e-3)

    height = HEADER + SPECTRUM + WAVE + AXIS
    image = Image.new("RGB", (WIDTH, height), BACKGROUND)
    plot = WIDTH - LEFT - RIGHT
    image.paste(Image.fromarray(_spectrogram(audio, d.sample_rate)).resize(
        (plot, SPECTRUM), Image.Resampling.BILINEAR), (LEFT, HEADER))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    _waveform(draw, audio, HEADER + SPECTRUM, plot)

    def x_of(t: float) -> int:
        return LEFT + round(min(max(t / seconds, 0.0), 1.0) * (plot - 1))

    top, bottom = HEADER, HEADER + SPECTRUM + WAVE
    for t in video["bounce_times"]:
        draw.line([(x_of(t), top), (x_of(t), bottom)], fill=BOUNCE, width=2)
    for t in sound["onset_times"]:
        x = x_of(t)
        draw.line([(x, HEADER + SPECTRUM), (x, bottom)], fill=ONSET, width=2)
        draw.polygon([(x - 5, HEADER + SPECTRUM), (x + 5, HEADER + SPECTRUM),
                      (x, HEADER + SPECTRUM + 8)], fill=ONSET)
    draw.rectangle([LEFT, top, LEFT + plot - 1, bottom], outline=INK)
    draw.text((LEFT, 5), describe(sync), fill=INK, font=font)
    draw.text((4, HEADER + 4), "mel", fill=INK, font=font)
    draw.text((4, HEADER + SPECTRUM + 4), "wave", fill=INK, font=font)
    step = _tick_step(seconds)
    for i in range(int(seconds / step + 1e-9) + 1):
        x = x_of(i * step)
        draw.line([(x, bottom), (x, bottom + 4)], fill=INK)
        draw.text((x - 8, bottom + 6), f"{i * step:g}s", fill=INK, font=font)
    return np.asarray(image), sync


class StreamPicture:
    """The sound of a stream so far, redrawn as it grows: log-mel spectrogram over waveform on
    one time axis from 0 s, a green line and the prompt where the prompt changed.

    Unlike `sync_picture` it looks for no bounces or onsets (a pass over every frame made so
    far at each redraw): `add` costs the spectrogram of its own samples, `draw` a reduction of
    the columns so far to the picture's width.

    Args:
      sample_rate: of the audio added.
    """

    N_FFT, COLUMNS_PER_SECOND = 1024, 100

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.hop = max(1, sample_rate // self.COLUMNS_PER_SECOND)
        self.prompts: list[tuple[float, str]] = []  # (seconds, prompt) of every change
        self._audio = np.zeros(0, np.float32)  # N: every sample so far
        # samples not yet under a finished column; the stream's start is padded with half a
        # window of silence, so column s is centred on sample s * hop as in `_spectrogram`
        self._tail = np.zeros(self.N_FFT // 2, np.float32)
        self._mel: list[np.ndarray] = []  # power mel [F, S] of each add

    @property
    def seconds(self) -> float:
        return len(self._audio) / self.sample_rate

    def add(self, audio: np.ndarray, prompt: str | None = None) -> None:
        """Appends mono `audio` [N], made with `prompt`."""
        audio = np.nan_to_num(np.asarray(audio, np.float32).ravel())
        if prompt is not None and (not self.prompts or self.prompts[-1][1] != prompt):
            self.prompts.append((self.seconds, prompt))
        self._audio = np.concatenate([self._audio, audio])
        tail = np.concatenate([self._tail, audio])
        columns = (len(tail) - self.N_FFT) // self.hop + 1 if len(tail) >= self.N_FFT else 0
        if columns > 0:
            self._mel.append(_mel(tail[:(columns - 1) * self.hop + self.N_FFT],
                                  self.sample_rate, self.hop, center=False))
            tail = tail[columns * self.hop:]
        self._tail = tail

    def draw(self) -> np.ndarray:
        """uint8 [H, WIDTH, 3] picture of the sound so far."""
        seconds = max(self.seconds, 1e-3)
        plot = WIDTH - LEFT - RIGHT
        height = HEADER + SPECTRUM + WAVE + AXIS
        image = Image.new("RGB", (WIDTH, height), BACKGROUND)
        if self._mel:
            mel = np.concatenate(self._mel, axis=1)
            # the columns end half a window before the sound does
            width = max(1, round(plot * min(1.0, mel.shape[1] * self.hop / self.sample_rate
                                             / seconds)))
            if mel.shape[1] > width:  # mean power per pixel column: the resize below is small
                edges = np.linspace(0, mel.shape[1], width + 1).astype(int)
                mel = np.add.reduceat(mel, edges[:-1], axis=1) / np.diff(edges)[None]
            image.paste(Image.fromarray(_colour(mel)).resize(
                (width, SPECTRUM), Image.Resampling.BILINEAR), (LEFT, HEADER))
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default()
        _waveform(draw, self._audio, HEADER + SPECTRUM, plot)
        top, bottom = HEADER, HEADER + SPECTRUM + WAVE
        for i, (at, prompt) in enumerate(self.prompts):
            x = LEFT + round(min(at / seconds, 1.0) * (plot - 1))
            if i:
                draw.line([(x, top), (x, bottom)], fill=PROMPT, width=2)
            label = prompt if len(prompt) <= 40 else prompt[:39] + "…"
            box = draw.textbbox((x + 4, HEADER + 4), label, font=font)
            draw.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=BACKGROUND)
            draw.text((x + 4, HEADER + 4), label, fill=PROMPT if i else INK, font=font)
        draw.rectangle([LEFT, top, LEFT + plot - 1, bottom], outline=INK)
        draw.text((LEFT, 5), f"{self.seconds:.1f} s of sound so far (mel + waveform); green: "
                  "the prompt changed", fill=INK, font=font)
        draw.text((4, HEADER + 4), "mel", fill=INK, font=font)
        draw.text((4, HEADER + SPECTRUM + 4), "wave", fill=INK, font=font)
        step = _tick_step(seconds)
        for i in range(int(seconds / step + 1e-9) + 1):
            x = LEFT + round(min(i * step / seconds, 1.0) * (plot - 1))
            draw.line([(x, bottom), (x, bottom + 4)], fill=INK)
            draw.text((x - 8, bottom + 6), f"{i * step:g}s", fill=INK, font=font)
        return np.asarray(image)


def _spectrogram(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """uint8 [F, S, 3] log-mel spectrogram, low frequencies at the bottom."""
    wave = np.nan_to_num(np.asarray(audio, np.float32).ravel())
    if len(wave) < 2:
        wave = np.zeros(2048, np.float32)
    return _colour(_mel(wave, sample_rate, max(1, sample_rate // 200)))


def _mel(wave: np.ndarray, sample_rate: int, hop: int, center: bool = True) -> np.ndarray:
    """Power mel spectrogram [F, S] of the pictures."""
    return librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_fft=StreamPicture.N_FFT,
                                          hop_length=hop, n_mels=96, center=center)


def _colour(mel: np.ndarray) -> np.ndarray:
    """uint8 [F, S, 3]: power mel [F, S] in dB below its loudest, coloured, low at the bottom."""
    db = librosa.power_to_db(mel, ref=max(float(mel.max()), 1e-10), top_db=70.0)
    level = (db + 70.0) / 70.0  # 0 quiet .. 1 loud
    stops = np.linspace(0.0, 1.0, len(_MAP))
    rgb = np.stack([np.interp(level, stops, _MAP[:, c]) for c in range(3)], -1)
    return rgb[::-1].astype(np.uint8)


def _waveform(draw: ImageDraw.ImageDraw, audio: np.ndarray, top: int, plot: int) -> None:
    """Per-column min and max of the waveform, in the panel starting at `top`."""
    wave = np.nan_to_num(np.asarray(audio, np.float32).ravel())
    middle, half = top + WAVE // 2, WAVE // 2 - 3
    draw.line([(LEFT, middle), (LEFT + plot - 1, middle)], fill=(200, 200, 200))
    if len(wave) == 0:
        return
    peak = max(float(np.abs(wave).max()), 1e-6)
    edges = np.linspace(0, len(wave), plot + 1).astype(int)
    for x in range(plot):
        part = wave[edges[x]:max(edges[x + 1], edges[x] + 1)]
        lo, hi = float(part.min()) / peak, float(part.max()) / peak
        draw.line([(LEFT + x, middle - round(hi * half)), (LEFT + x, middle - round(lo * half))],
                  fill=WAVE_INK)


def _tick_step(seconds: float) -> float:
    """Seconds between labelled ticks: about 8 to 16 of them."""
    for step in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0):
        if seconds / step <= 16:
            return step
    return 20.0
