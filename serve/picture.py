"""A picture of a clip's sound on the video's time axis, so a person can see the sync.

    picture, sync = sync_picture(clip.frames, clip.audio, config)
    PIL.Image.fromarray(picture).save("sync.png")

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


def _spectrogram(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """uint8 [F, S, 3] log-mel spectrogram, low frequencies at the bottom."""
    wave = np.nan_to_num(np.asarray(audio, np.float32).ravel())
    if len(wave) < 2:
        wave = np.zeros(2048, np.float32)
    mel = librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_fft=1024,
                                         hop_length=max(1, sample_rate // 200), n_mels=96)
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
