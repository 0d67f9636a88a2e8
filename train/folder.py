"""A user's folder of videos with sound, cut into clips of the config's geometry.

Each video is decoded at the config's fps, centre-cropped and resized to its frame size, its
audio resampled to its sample rate, and cut into back-to-back clips of T frames (and the
T * sample_rate / fps samples that play with them). Files that cannot be used are reported by
name with the reason and skipped; the build goes on. Captions come from a JSONL or CSV file
keyed by the video's path relative to `--src` (or its bare file name when that is unique).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from o1 import media
from o1.config import Config
from o1.train import datasets

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv",
                  ".flv", ".ts", ".wmv", ".3gp"}


@dataclasses.dataclass
class FolderReport:
    """What a folder build used and what it left out, by name."""

    num_files: int = 0
    num_clips: int = 0
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    silent: list[str] = dataclasses.field(default_factory=list)
    uncaptioned: list[str] = dataclasses.field(default_factory=list)
    missing_media: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.num_clips} clips from {self.num_files} videos"]
        for name, reason in self.skipped:
            lines.append(f"  skipped {name}: {reason}")
        for name in self.silent:
            lines.append(f"  kept {name} with silent audio (it has no audio stream)")
        for name in self.uncaptioned:
            lines.append(f"  skipped {name}: no caption for it in the captions file")
        for name in self.missing_media:
            lines.append(f"  caption for {name} has no matching video in --src")
        return "\n".join(lines)


def read_captions(path: str | os.PathLike) -> dict[str, str]:
    """File name -> caption, from JSONL (`{"file": ..., "caption": ...}`) or CSV (file,caption).

    Raises:
      DatasetError: the file is missing, malformed, or has an empty or duplicate entry.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise datasets.DatasetError(f"captions file {path} does not exist")
    entries: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
                raise datasets.DatasetError(
                    f"{path}: a CSV captions file needs a header with columns file,caption; "
                    f"found {reader.fieldnames}")
            entries = [(n + 2, row) for n, row in enumerate(reader)]
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise datasets.DatasetError(
                    f"{path}:{n}: not valid JSON ({e.msg}); each line must look like "
                    '{"file": "clip.mp4", "caption": "..."}') from None
    captions: dict[str, str] = {}
    for n, entry in entries:
        name, text = entry.get("file"), entry.get("caption")
        if not isinstance(name, str) or not name or not isinstance(text, str) or not text.strip():
            raise datasets.DatasetError(
                f"{path}:{n}: each entry needs a non-empty 'file' and 'caption', got {entry}")
        if name in captions:
            raise datasets.DatasetError(f"{path}:{n}: a second caption for {name!r}")
        captions[name] = text.strip()
    if not captions:
        raise datasets.DatasetError(f"captions file {path} has no entries")
    return captions


def _match_captions(videos: list[pathlib.Path], src: pathlib.Path, captions: dict[str, str],
                    report: FolderReport) -> list[tuple[pathlib.Path, str]]:
    by_base: dict[str, list[pathlib.Path]] = {}
    for v in videos:
        by_base.setdefault(v.name, []).append(v)
    matched: dict[pathlib.Path, str] = {}
    for name, text in captions.items():
        exact = src / name
        if exact in videos:
            matched[exact] = text
        elif len(by_base.get(name, [])) == 1:
            matched[by_base[name][0]] = text
        else:
            report.missing_media.append(name)
    report.uncaptioned = [str(v.relative_to(src)) for v in videos if v not in matched]
    return [(v, matched[v]) for v in videos if v in matched]


def cut_clips(config: Config, clip: media.Clip) -> Iterator[tuple[float, np.ndarray, np.ndarray]]:
    """Back-to-back clips of a decoded video: (start seconds, video [T,H,W,3], audio [N])."""
    t, n = config.num_frames, config.num_samples
    audio = clip.audio
    if audio is None:
        audio = np.zeros(len(clip.frames) * config.data.samples_per_frame, np.float32)
    for c in range(len(clip.frames) // t):
        piece = audio[c * n:(c + 1) * n]
        # Decoded audio can end a few samples before the last frame does; pad with silence.
        piece = np.pad(piece, (0, n - len(piece)))
        yield c * t / config.data.fps, clip.frames[c * t:(c + 1) * t], piece.astype(np.float32)


def _examples(config: Config, items: list[tuple[pathlib.Path, str]], src: pathlib.Path,
              allow_silent: bool, report: FolderReport) -> Iterator[tuple[str, dict]]:
    d = config.data
    for path, text in tqdm(items, desc="decode videos", unit="file"):
        name = str(path.relative_to(src))
        try:
            clip = media.read_media(path, fps=d.fps, size=(d.height, d.width),
                                    sample_rate=d.sample_rate, require_audio=not allow_silent)
        except media.MediaError as e:
            report.skipped.append((name, e.reason))
            continue
        if len(clip.frames) < config.num_frames:
            report.skipped.append((name, f"shorter than one clip ({clip.seconds:.2f} s < "
                                         f"{config.num_frames / d.fps:.2f} s)"))
            continue
        if clip.audio is None:
            report.silent.append(name)
        report.num_files += 1
        stem = name.replace(os.sep, "__")
        for start, video, audio in cut_clips(config, clip):
            clip_id = f"{stem}@{start:.3f}"
            metadata = {
                "id": clip_id, "source": name, "start_time": start, "silent": clip.audio is None,
                "fps": d.fps, "sample_rate": d.sample_rate, "height": d.height, "width": d.width,
                "num_frames": config.num_frames, "num_samples": config.num_samples,
            }
            report.num_clips += 1
            yield clip_id, {"id": clip_id, "video": video, "audio": audio, "caption": text,
                            "metadata": json.dumps(metadata)}
    if report.num_clips == 0:
        raise datasets.DatasetError(
            "no usable clips in --src; nothing was written:\n" + report.summary())


def build_folder(config: Config, src: str | os.PathLike, captions_file: str | os.PathLike,
                 out: str | os.PathLike, *, allow_silent: bool = False,
                 overwrite: bool = False) -> FolderReport:
    """Builds a dataset at `out` from the videos in `src`; returns what was used and skipped."""
    src = pathlib.Path(src)
    if not src.is_dir():
        raise datasets.DatasetError(f"--src {src} is not a directory")
    captions = read_captions(captions_file)
    report = FolderReport()
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    captions_path = pathlib.Path(captions_file).resolve()
    for p in files:
        if p.suffix.lower() not in VIDEO_SUFFIXES and p.resolve() != captions_path:
            report.skipped.append((str(p.relative_to(src)),
                                   f"not a video file extension ({p.suffix or 'none'})"))
    items = _match_captions(videos, src, captions, report)
    datasets.build(
        lambda d: datasets.MediaFolder(
            o1_config=config, data_dir=d,
            examples=lambda: _examples(config, items, src, allow_silent, report)),
        out, overwrite)
    return report
