"""A user's folder of videos with sound, cut into clips of the config's geometry and split into
train, validation and test by source file.

Each video is decoded at the config's fps, centre-cropped and resized to its frame size, its
audio resampled to its sample rate, and cut into back-to-back clips of T frames (and the
T * sample_rate / fps samples that play with them). Captions come from a JSONL or CSV file
(UTF-8, with or without a byte-order mark) keyed by the video's path relative to `--src`, or
by its bare file name when that names one file; names are compared in Unicode NFC, so a key
typed on macOS (NFD) finds its file.

Splits hold whole files, so validation and test measure videos the model never saw: the files
are ordered by a hash of (config seed, path), validation takes the first of them, test the
next and train the rest (`plan_splits`). A file that turns out unusable while decoding hands
its place to the next one in that order.

Nothing the user gave is dropped without a word: files that cannot be used, captions without
a video, ambiguous or repeated caption keys, silent tracks and captions longer than the model
reads are listed in the build's report, which is printed and saved as `report.json` in the
dataset directory, with each file's split, clip count and sound level.

The module is longer than most (about 550 lines) because the report is the point of it: each
step (captions, matching, splits, decoding) records what it left out there, and the report's
fields and wording sit beside the steps that fill them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import unicodedata
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from o1 import media
from o1.config import Config
from o1.train import datasets

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ogv",
                  ".flv", ".ts", ".wmv", ".3gp"}
REPORT_FILE = "report.json"  # in the dataset directory, beside the TFDS folder
SPLITS = ("validation", "test", "train")  # the order splits take files in


@dataclasses.dataclass
class FileResult:
    """What one used file gave: its split, clips and sound (levels of the clips' audio, as
    `o1.media.levels` and `o1.media.loudness` measure them; None when silent)."""

    split: str
    clips: int = 0
    silent: str | None = None  # why its clips are silent (no audio stream, an all-zero track)
    rms_dbfs: float | None = None
    peak_dbfs: float | None = None
    clipped: float = 0.0  # share of samples at full scale
    # BS.1770 loudness of each clip, energy-averaged over the clips above its -70 LUFS gate:
    # the whole file is never in memory, so the clips stand in for the standard's 400 ms blocks.
    loudness_lufs: float | None = None
    error: str | None = None  # a decoding error after some clips, which are kept
    _power: float = 0.0  # sum of squared samples so far
    _samples: int = 0
    _clipped: float = 0.0  # samples at full scale so far
    _loud: list[float] = dataclasses.field(default_factory=list)  # mean square per loud clip

    def add(self, audio: np.ndarray, sample_rate: int) -> None:
        self.clips += 1
        if self.silent:
            return
        lv = media.levels(audio)
        self._power += 10 ** (lv["rms_dbfs"] / 10) * len(audio)
        self._samples += len(audio)
        self._clipped += lv["clipped"] * len(audio)
        self.clipped = round(self._clipped / self._samples, 6)
        self.rms_dbfs = _db(10 * math.log10(self._power / self._samples))
        self.peak_dbfs = _db(max(self.peak_dbfs or -math.inf, lv["peak_dbfs"]))
        lufs = media.loudness(audio, sample_rate)
        if lufs > -70:
            self._loud.append(10 ** (lufs / 10))
            self.loudness_lufs = _db(10 * math.log10(sum(self._loud) / len(self._loud)))

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("_")}


def _db(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None


@dataclasses.dataclass
class FolderReport:
    """What a folder build used and what it left out, by name."""

    seed: int = 0
    max_text_len: int = 0  # the config's sequence.max_text_len, which long_captions refer to
    files: dict[str, FileResult] = dataclasses.field(default_factory=dict)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    uncaptioned: list[str] = dataclasses.field(default_factory=list)
    missing_media: list[str] = dataclasses.field(default_factory=list)  # keys with no video
    ambiguous: list[dict] = dataclasses.field(default_factory=list)  # {caption, line, matches}
    duplicates: list[dict] = dataclasses.field(default_factory=list)  # {file, lines, kept}
    long_captions: list[dict] = dataclasses.field(default_factory=list)  # {file, words}
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def num_files(self) -> int:
        return len(self.files)

    @property
    def num_clips(self) -> int:
        return sum(f.clips for f in self.files.values())

    @property
    def silent(self) -> list[str]:
        """Files kept with silent audio (under --allow-silent)."""
        return [name for name, f in self.files.items() if f.silent]

    def splits(self) -> dict[str, dict]:
        """Per split present: its files and clip count."""
        out = {}
        for split in SPLITS:
            names = sorted(n for n, f in self.files.items() if f.split == split)
            if names:
                out[split] = {"files": names,
                              "clips": sum(self.files[n].clips for n in names)}
        return out

    def summary(self) -> str:
        present = self.splits()
        splits = ", ".join(f"{name} {present[name]['clips']} clips from "
                           f"{len(present[name]['files'])} videos"
                           for name in ("train", "validation", "test") if name in present)
        lines = [f"{self.num_clips} clips from {self.num_files} videos ({splits}; split by "
                 f"source file with seed {self.seed})"]
        for name, reason in self.skipped:
            lines.append(f"  skipped {name}: {reason}")
        for name, f in self.files.items():
            if f.silent:
                lines.append(f"  kept {name} with silent audio: {f.silent}")
            if f.error:
                lines.append(f"  kept {f.clips} clips of {name}, then: {f.error}")
        for name in self.uncaptioned:
            lines.append(f"  skipped {name}: no caption for it in the captions file")
        for name in self.missing_media:
            lines.append(f"  caption for {name} has no matching video in --src")
        for a in self.ambiguous:
            lines.append(f"  caption for {a['caption']} (line {a['line']}) is ambiguous: it "
                         f"names {' and '.join(a['matches'])}; key it by the path relative to "
                         f"--src")
        for d in self.duplicates:
            lines.append(f"  {d['file']} has {len(d['lines'])} captions (lines "
                         f"{', '.join(map(str, d['lines']))}): "
                         + ("the same text, used once" if d["kept"] else
                            "different texts, so the file is left out; keep one of them"))
        for c in self.long_captions:
            lines.append(f"  caption of {c['file']} has {c['words']} words, so at least "
                         f"{c['words'] + 2} tokens with bos and eos: training cuts it to "
                         f"sequence.max_text_len = {self.max_text_len}")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "clips": self.num_clips, "videos": self.num_files, "seed": self.seed,
            "splits": self.splits(),
            "files": {name: f.to_json() for name, f in sorted(self.files.items())},
            "skipped": [{"file": n, "reason": r} for n, r in self.skipped],
            "uncaptioned": self.uncaptioned, "missing_media": self.missing_media,
            "ambiguous": self.ambiguous, "duplicates": self.duplicates,
            "long_captions": self.long_captions, "max_text_len": self.max_text_len,
            "notes": self.notes,
        }

    def save(self, directory: str | os.PathLike) -> pathlib.Path:
        """Writes `report.json` into `directory` atomically."""
        path = pathlib.Path(directory) / REPORT_FILE
        tmp = path.with_name(f".{REPORT_FILE}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, ensure_ascii=False))
        os.replace(tmp, path)
        return path


# ---------------------------------------------------------------------------------------------
# Captions: reading, and matching them to files.
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Caption:
    key: str  # the file name as given, in NFC
    text: str
    line: int  # where it ends in the captions file


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def read_captions(path: str | os.PathLike) -> list[Caption]:
    """Every entry of a JSONL (`{"file": ..., "caption": ...}`) or CSV (file,caption) file.

    A byte-order mark (spreadsheets write one) is ignored; a key may appear more than once
    (`match_captions` decides what a repeat means).

    Raises:
      DatasetError: the file is missing, malformed, or has an empty entry.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise datasets.DatasetError(f"captions file {path} does not exist")
    entries: list[tuple[int, dict]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
                raise datasets.DatasetError(
                    f"{path}: a CSV captions file needs a header with columns file,caption; "
                    f"found {reader.fieldnames}")
            entries = [(reader.line_num, row) for row in reader]
    else:
        text = path.read_text(encoding="utf-8-sig")
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise datasets.DatasetError(
                    f"{path}:{n}: not valid JSON ({e.msg}); each line must look like "
                    '{"file": "clip.mp4", "caption": "..."}') from None
    captions = []
    for n, entry in entries:
        name, text = entry.get("file"), entry.get("caption")
        if not isinstance(name, str) or not name.strip() or not isinstance(text, str) \
                or not text.strip():
            raise datasets.DatasetError(
                f"{path}:{n}: each entry needs a non-empty 'file' and 'caption', got {entry}")
        captions.append(Caption(_nfc(name.strip()).removeprefix("./"), text.strip(), n))
    if not captions:
        raise datasets.DatasetError(f"captions file {path} has no entries")
    return captions


@dataclasses.dataclass(frozen=True)
class Source:
    path: pathlib.Path
    name: str  # path relative to --src, '/'-separated, NFC
    caption: str


def match_captions(videos: list[pathlib.Path], src: pathlib.Path, captions: list[Caption],
                   report: FolderReport) -> list[Source]:
    """The captioned videos, in `videos`' order. A key is a path relative to `src` or a bare
    file name that names one file; a file given several different captions is left out."""
    names = {v: _nfc(v.relative_to(src).as_posix()) for v in videos}
    by_name = {name: v for v, name in names.items()}
    by_base: dict[str, list[pathlib.Path]] = {}
    for v, name in names.items():
        by_base.setdefault(name.rsplit("/", 1)[-1], []).append(v)
    given: dict[pathlib.Path, list[Caption]] = {}
    for c in captions:
        hits = [by_name[c.key]] if c.key in by_name else by_base.get(c.key, [])
        if len(hits) == 1:
            given.setdefault(hits[0], []).append(c)
        elif hits:
            report.ambiguous.append({"caption": c.key, "line": c.line,
                                     "matches": sorted(names[v] for v in hits)})
        else:
            report.missing_media.append(c.key)
    sources = []
    for v in videos:
        entries = given.get(v)
        if not entries:
            report.uncaptioned.append(names[v])
            continue
        distinct = {c.text for c in entries}
        if len(entries) > 1:
            report.duplicates.append({"file": names[v], "lines": [c.line for c in entries],
                                      "kept": len(distinct) == 1})
        if len(distinct) == 1:
            sources.append(Source(v, names[v], entries[0].text))
    return sources


def long_captions(sources: list[Source], max_text_len: int) -> list[dict]:
    """Captions that training will certainly cut to `max_text_len` tokens.

    The text tokenizer is trained later, on these captions, so its counts are unknown here;
    but SentencePiece never joins two words into one piece, so a caption of W words is at
    least W + 2 tokens with bos and eos. Captions near the limit may be cut too; `o1 data
    encode` counts them exactly.
    """
    return [{"file": s.name, "words": len(s.caption.split())} for s in sources
            if len(s.caption.split()) + 2 > max_text_len]


# ---------------------------------------------------------------------------------------------
# Splits.
# ---------------------------------------------------------------------------------------------

def plan_splits(names: list[str], seed: int, val_share: float, test_share: float
                ) -> tuple[list[str], int, int]:
    """The order splits take files in, and how many validation and test take (train: the rest).

    Files are ordered by a hash of (seed, name), so a seed gives the same splits every time and
    adding files moves no old file from one split to another unless the counts change.
    Validation takes round(val_share * n) files, at least one when n >= 2 and val_share > 0;
    test takes round(test_share * n); train keeps at least one (test gives way first).
    """
    for flag, share in (("--val-share", val_share), ("--test-share", test_share)):
        if not 0 <= share < 1:
            raise datasets.DatasetError(f"{flag} must be in [0, 1), got {share}")
    if val_share + test_share >= 1:
        raise datasets.DatasetError(f"--val-share + --test-share must be below 1 so train keeps "
                                    f"files, got {val_share} + {test_share}")
    n = len(names)
    num_val, num_test = int(val_share * n + 0.5), int(test_share * n + 0.5)
    if val_share > 0 and n >= 2:
        num_val = max(num_val, 1)
    excess = max(0, num_val + num_test - max(n - 1, 0))
    give = min(excess, num_test)
    num_test, num_val = num_test - give, num_val - (excess - give)
    order = sorted(names, key=lambda name: hashlib.sha256(f"{seed}/{name}".encode()).hexdigest())
    return order, max(num_val, 0), num_test


# ---------------------------------------------------------------------------------------------
# Decoding.
# ---------------------------------------------------------------------------------------------

class _Skip(Exception):
    """A file left out before any of its clips was written; the message says why."""


def _pieces(config: Config, path: pathlib.Path, allow_silent: bool
            ) -> Iterator[tuple[float, np.ndarray, np.ndarray | None]]:
    """Back-to-back clips of one file, decoded as they are read: (start seconds, video
    [T, H, W, 3], audio [N] or None when the file has no sound)."""
    d, n = config.data, config.num_samples
    for k, clip in enumerate(media.iter_media(
            path, fps=d.fps, size=(d.height, d.width), sample_rate=d.sample_rate,
            require_audio=not allow_silent, frames=config.num_frames)):
        audio = clip.audio
        if audio is not None:
            # The sound can end a few samples before the picture; pad with silence.
            audio = np.pad(audio, (0, n - len(audio))).astype(np.float32)
        yield k * config.num_frames / d.fps, clip.frames, audio


def _decode(config: Config, source: Source, seconds: float | None, allow_silent: bool
            ) -> Iterator[tuple[float, np.ndarray, np.ndarray, str | None]]:
    """(start, video, audio, why the file is silent or None) per clip of one file.

    Whether a track is silent is known only at its end; the clips are read once while none
    has sound, and the file is read again from the start when sound comes after silent clips
    (or when a silent file is kept), so no more than one clip is held in memory.

    Raises:
      _Skip: the file gives no clip, or its track is silent and `allow_silent` is off.
      media.MediaError: decoding failed.
    """
    pieces = _pieces(config, source.path, allow_silent)
    leading = 0  # clips before the first one with sound
    first = audio = None
    for first in pieces:
        audio = first[2]
        if not media.is_silent(audio):
            break
        leading += 1
    else:
        if not leading:
            length = f"{seconds:.2f} s < " if seconds else ""
            raise _Skip(f"shorter than one clip ({length}{config.num_frames / config.data.fps:.2f}"
                        " s)")
        why = "it has no audio stream" if audio is None else \
            f"its audio track is silent (peak under {media.SILENCE_DBFS:g} dBFS)"
        if not allow_silent:
            raise _Skip(f"{why}; --allow-silent keeps it with silent audio")
        for start, video, _ in _pieces(config, source.path, allow_silent):
            yield start, video, np.zeros(config.num_samples, np.float32), why
        return
    if leading:
        pieces.close()
        pieces = _pieces(config, source.path, allow_silent)
    else:
        yield *first, None
    for start, video, audio in pieces:
        yield start, video, audio, None


class _EmptySplit(Exception):
    """A split found no usable file left to take; the build starts again with the files now
    known to be usable."""


class _Build:
    """One pass over the files, which TFDS asks for split by split in `SPLITS` order."""

    def __init__(self, config: Config, sources: list[Source], seconds: dict[str, float | None],
                 counts: dict[str, int | None], allow_silent: bool, report: FolderReport):
        self.config, self.sources, self.seconds = config, sources, seconds
        self.counts, self.allow_silent, self.report = counts, allow_silent, report
        self.next = 0  # the next source to take
        self.bar = tqdm(total=len(sources), desc="decode videos", unit="file")

    def splits(self) -> dict[str, Iterator[tuple[str, dict]]]:
        return {split: self._examples(split, self.counts[split]) for split in SPLITS
                if self.counts[split] != 0}

    def _examples(self, split: str, want: int | None) -> Iterator[tuple[str, dict]]:
        used = 0
        while self.next < len(self.sources) and (want is None or used < want):
            source = self.sources[self.next]
            self.next += 1
            used += yield from self._file(split, source)
            self.bar.update()
        if not used:
            raise _EmptySplit(split)

    def _file(self, split: str, source: Source) -> Iterator[tuple[str, dict]]:
        """Yields the clips of one file; returns 1 if it gave any, else 0 (it is skipped)."""
        d = self.config.data
        result = FileResult(split)
        stem = source.name.replace("/", "__")
        try:
            for start, video, audio, silent in _decode(self.config, source,
                                                       self.seconds[source.name],
                                                       self.allow_silent):
                clip_id = f"{stem}@{start:.3f}"
                metadata = {
                    "id": clip_id, "source": source.name, "start_time": start,
                    "silent": silent is not None, "fps": d.fps, "sample_rate": d.sample_rate,
                    "height": d.height, "width": d.width, "num_frames": self.config.num_frames,
                    "num_samples": self.config.num_samples,
                }
                result.silent = silent
                result.add(audio, d.sample_rate)
                yield clip_id, {"id": clip_id, "video": video, "audio": audio,
                                "caption": source.caption, "metadata": json.dumps(metadata)}
        except (_Skip, media.MediaError) as e:
            reason = e.reason if isinstance(e, media.MediaError) else str(e)
            if not result.clips:
                self.report.skipped.append((source.name, reason))
                return 0
            result.error = reason
        self.report.files[source.name] = result
        return 1


# ---------------------------------------------------------------------------------------------
# The build.
# ---------------------------------------------------------------------------------------------

def _check_header(path: pathlib.Path, config: Config, allow_silent: bool) -> float | None:
    """The file's duration from its header, or _Skip / MediaError if it cannot give a clip."""
    info = media.probe(path)
    if not info["has_video"]:
        raise _Skip("has no video stream")
    if not info["has_audio"] and not allow_silent:
        raise _Skip("has no audio stream; --allow-silent keeps it with silent audio")
    clip, duration = config.num_frames / config.data.fps, info["duration"]
    # A frame of slack: the decoder, not the header, has the last word on borderline files.
    if duration is not None and duration < clip - 1 / config.data.fps:
        raise _Skip(f"shorter than one clip ({duration:.2f} s < {clip:.2f} s)")
    return duration


def _check_out(src: pathlib.Path, out: pathlib.Path, overwrite: bool) -> None:
    src, out = src.resolve(), out.resolve()
    if out == src or out.is_relative_to(src) or src.is_relative_to(out):
        raise datasets.DatasetError(f"--out {out} and --src {src} overlap; write the dataset "
                                    "outside the folder of videos")
    datasets.check_out(out, overwrite)  # before any video is read


def build_folder(config: Config, src: str | os.PathLike, captions_file: str | os.PathLike,
                 out: str | os.PathLike, *, allow_silent: bool = False, overwrite: bool = False,
                 val_share: float = 0.1, test_share: float = 0.1) -> FolderReport:
    """Builds a dataset at `out` from the videos in `src`; returns what was used and skipped.

    The dataset appears at `out` complete, with `report.json`, or not at all.

    Args:
      config: its geometry makes the clips; its seed orders the files for the splits.
      src: the folder of videos, searched recursively.
      captions_file: JSONL or CSV of file names and captions (see `read_captions`).
      out: the dataset directory to create.
      allow_silent: keep videos without sound (no audio stream, or an all-zero track) with
        silent audio and `"silent": true` in their clips' metadata.
      overwrite: replace the dataset at `out`.
      val_share, test_share: the shares of the usable videos that validation and test hold.

    Raises:
      DatasetError: bad arguments or captions, or no usable clip; nothing is written.
    """
    src, out = pathlib.Path(src), pathlib.Path(out)
    if not src.is_dir():
        raise datasets.DatasetError(f"--src {src} is not a directory")
    plan_splits([], config.seed, val_share, test_share)  # refuse bad shares before decoding
    _check_out(src, out, overwrite)
    captions = read_captions(captions_file)
    report = FolderReport(seed=config.seed, max_text_len=config.sequence.max_text_len)
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    captions_path = pathlib.Path(captions_file).resolve()
    for p in files:
        if p.suffix.lower() not in VIDEO_SUFFIXES and p.resolve() != captions_path:
            report.skipped.append((_nfc(p.relative_to(src).as_posix()),
                                   f"not a video file extension ({p.suffix or 'none'})"))
    sources, seconds = [], {}
    for source in match_captions(videos, src, captions, report):
        try:
            seconds[source.name] = _check_header(source.path, config, allow_silent)
            sources.append(source)
        except (_Skip, media.MediaError) as e:
            report.skipped.append((source.name, getattr(e, "reason", str(e))))
    report.long_captions = long_captions(sources, config.sequence.max_text_len)

    while True:
        order, num_val, num_test = plan_splits([s.name for s in sources], config.seed,
                                               val_share, test_share)
        by_name = {s.name: s for s in sources}
        ordered = [by_name[name] for name in order]
        if not ordered:
            raise datasets.DatasetError(
                "no usable clips in --src; nothing was written:\n" + report.summary())
        report.files, report.notes = {}, []
        if num_val == 0:
            one = len(ordered) == 1
            report.notes.append(
                ("only 1 usable video, so all its clips are in train" if one else
                 "--val-share 0, so every usable video is in train")
                + ": there is no validation split, which `o1 train` needs (clips of one video "
                "never go to two splits; " + ("add a video" if one else "raise --val-share")
                + ")")
        build = _Build(config, ordered, seconds,
                       {"validation": num_val, "test": num_test, "train": None},
                       allow_silent, report)
        try:
            datasets.build(lambda d, build=build: datasets.MediaFolder(
                o1_config=config, data_dir=d, splits=build.splits),
                out, overwrite, finish=report.save)
            break
        except _EmptySplit:
            # Files that proved unusable only when decoded (now in report.skipped) left a split
            # without files: plan again over the files that gave clips, reading each again.
            sources = [s for s in ordered if s.name in report.files]
        finally:
            build.bar.close()
    return report
