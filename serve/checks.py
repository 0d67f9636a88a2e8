"""Every check of a request, made before a model loads, the same for the CLI, the studio and
the Python API (`Pipeline` runs them too).

    checks = Checks("runs/quickstart")  # reads config.json and the text tokenizer only
    ids = checks.prompt("a fast red circle bounces")
    frames = checks.seconds(2.0)
    flow = checks.flow(steps=20)

A refusal is a `RequestError` naming the field (`prompt`, `steps`, `seconds`, ...), which the
CLI shows as its flag and the studio as the label on the page; no message holds a path the
user did not give. The limits of a request (`max_steps`, `max_seconds`, `max_guidance`,
`max_prompt_chars`) are the workdir config's `sample` section.
"""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np

from o1 import checkpoint, media
from o1 import config as config_lib
from o1.config import Config
from o1.sampler import FlowOptions, RequestError, TextOptions, seed_of
from o1.tokenizers import text as text_lib


def committed_steps(workdir: str | os.PathLike) -> list[int]:
    """The committed transformer checkpoints of `workdir`, oldest first, or RequestError."""
    directory = pathlib.Path(workdir) / "checkpoints"
    steps = checkpoint.committed_steps(directory)
    if not steps or not (directory / "config.json").exists():
        raise RequestError(f"{workdir} has no trained model (no committed checkpoint in "
                           f"{directory}); train one with `o1 train --workdir {workdir}`")
    return steps


def load_config(workdir: str | os.PathLike) -> Config:
    """The config of `workdir`'s transformer, read without loading it (its `sample` section
    holds the sampling defaults and limits), or RequestError."""
    if not pathlib.Path(workdir).is_dir():
        raise RequestError(f"workdir {workdir} does not exist")
    committed_steps(workdir)
    return config_lib.load(pathlib.Path(workdir) / "checkpoints" / "config.json")


def check_video_file(path: str | os.PathLike, max_seconds: float | None = None,
                     image_hint: str = "animate an image with `o1 animate --image`",
                     field: str | None = None) -> None:
    """Refuses, from the container's header alone (nothing decoded, no model loaded), what a
    task that reads a video cannot use: an image, a file without a video stream, or one longer
    than `max_seconds`. `image_hint` says where an image belongs. Raises RequestError naming
    the file by its name (never the folder it was uploaded to)."""
    name = pathlib.Path(path).name
    info = _probe(path, field)
    if info["format"].endswith("_pipe") or info["format"] == "image2":
        raise RequestError(f"{name} is an image, not a video; give a video here, or "
                           f"{image_hint}", field, sentence=True)
    if not info["has_video"]:
        raise RequestError(f"{name} has no video stream; give a video file (mp4, webm, mov)",
                           field, sentence=True)
    if max_seconds is not None and (info["duration"] or 0) > max_seconds + 1:
        raise RequestError(f"{name} is {info['duration']:.1f} s long; videos up to "
                           f"{max_seconds:g} s are taken here (sample.max_seconds); cut it",
                           field, sentence=True)


def check_audio_file(path: str | os.PathLike, max_seconds: float | None = None,
                     field: str | None = None) -> None:
    """Refuses, from the container's header alone, what a task that reads a sound cannot use:
    a file that is missing or not media, one without an audio track (an image, a silent
    video), or one longer than `max_seconds`. Any file FFmpeg decodes may hold the sound (wav,
    mp3, m4a, flac, or a video's track). Raises RequestError naming the file by its name."""
    name = pathlib.Path(path).name
    info = _probe(path, field)
    if not info["has_audio"]:
        raise RequestError(f"{name} has no audio track; give a sound file (wav, mp3, m4a, "
                           f"flac) or a video with sound", field, sentence=True)
    if max_seconds is not None and (info["duration"] or 0) > max_seconds + 1:
        raise RequestError(f"{name} is {info['duration']:.1f} s long; sounds up to "
                           f"{max_seconds:g} s are taken here (sample.max_seconds); cut it",
                           field, sentence=True)


def check_image_file(path: str | os.PathLike, field: str | None = None) -> None:
    """Refuses, from its header, a file that holds no picture (audio only, not media)."""
    info = _probe(path, field)
    if not info["has_video"]:
        raise RequestError(f"{pathlib.Path(path).name} has no picture; give an image "
                           f"(png, jpg) or a video whose first frame to use", field,
                           sentence=True)


def _probe(path, field) -> dict:
    """media.probe, with a file that cannot be read refused by its name."""
    name = pathlib.Path(path).name
    if not pathlib.Path(path).is_file():
        raise RequestError(f"{path}: no such file", field, sentence=True)
    try:
        return media.probe(path)
    except media.MediaError as e:
        raise RequestError(f"{name} {e.reason}" + (f" ({e.hint})" if e.hint else ""),
                           field, sentence=True) from None


def check_output(path: str | os.PathLike, field: str = "out", stream: bool = False
                 ) -> pathlib.Path:
    """An mp4 path (or, for a `stream`, .mp4 or MPEG-TS .ts) whose folder exists, or
    RequestError."""
    out = pathlib.Path(path)
    if stream and out.suffix.lower() not in (".mp4", ".ts"):
        raise RequestError(f"{path}: streams are written as fragmented mp4 or MPEG-TS; name "
                           "it *.mp4 or *.ts", field)
    if not stream and out.suffix.lower() != ".mp4":
        raise RequestError(f"{path}: outputs are H.264 + AAC mp4 files; name it *.mp4", field)
    if not out.parent.is_dir():
        raise RequestError(f"{path}: the folder {out.parent} does not exist", field)
    if out.is_dir():
        raise RequestError(f"{path} is a folder; name an mp4 file", field)
    return out


class Checks:
    """The checks of requests to one workdir, from its config and text tokenizer alone.

    Args:
      workdir: a run directory with a trained transformer.
      config: its config, when already read.
    """

    def __init__(self, workdir: str | os.PathLike, config: Config | None = None):
        self.workdir = pathlib.Path(workdir)
        self.config = config or load_config(workdir)
        try:
            self.text = text_lib.TextTokenizer(self.workdir / text_lib.FILENAME)
        except FileNotFoundError as e:
            raise RequestError(str(e)) from None
        self.sample = self.config.sample
        self.fps = self.config.data.fps

    def prompt(self, prompt: str | None, required: bool = True, reference: bool = False
               ) -> np.ndarray | None:
        """Caption ids (bos .. eos) of a prompt, or None for an optional one left empty.

        Refused: an empty required prompt, one over `sample.max_prompt_chars` characters, one
        with words the training captions never had (they are named, with the languages the
        model reads), and one over `sequence.max_text_len` tokens. A `reference` caption (a
        dataset's, in evaluation) is taken as training takes it: its words are not checked
        and the caller cuts it to length."""
        if prompt is not None and not isinstance(prompt, str):
            raise RequestError(f"must be text, got {type(prompt).__name__}", "prompt")
        if prompt is None or not prompt.strip():
            if required:
                raise RequestError("is empty; describe the clip, e.g. 'a red circle bouncing "
                                   "fast'", "prompt")
            return None
        limit = self.sample.max_prompt_chars
        if len(prompt) > limit:
            raise RequestError(f"is {len(prompt)} characters; this model takes at most {limit} "
                               f"(sample.max_prompt_chars)", "prompt")
        language = self.text.detect(prompt)
        unknown = [] if reference else self.text.unknown_words(prompt, language)
        if unknown:
            shown = ", ".join(repr(w) for w in unknown[:8]) + (", ..." if len(unknown) > 8
                                                                else "")
            raise RequestError(
                f"has {len(unknown)} word{'s' * (len(unknown) > 1)} this model never read in "
                f"training: {shown}; it reads {_languages(self.config.text.languages)} with "
                f"the words of its training captions", "prompt")
        ids = np.array(self.text.encode(prompt.strip(), language=language), np.int32)
        limit = self.config.sequence.max_text_len
        if len(ids) > limit and not reference:
            raise RequestError(f"is {len(ids)} tokens (with bos and eos); this model reads at "
                               f"most {limit} (sequence.max_text_len); shorten it", "prompt")
        return ids

    def language_tag(self, language: str | None) -> int | None:
        """The tag id that asks for a caption in `language` (None: the first of
        `text.languages`); None for a model of one language, which writes only that one.

        Refused: a language the model was not trained to write."""
        languages = self.config.text.languages
        if language is not None and language not in languages:
            raise RequestError(f"is {language!r}; this model writes {_languages(languages)} "
                               f"({', '.join(languages)})", "lang")
        if not self.text.languages:
            return None
        return self.text.tag_id(language or languages[0])

    def seconds(self, seconds, field: str = "seconds") -> int:
        """Frames of `seconds` of video, from one frame to `sample.max_seconds`."""
        most = self.sample.max_seconds
        number = isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
        if not (number and math.isfinite(seconds) and 1 / self.fps <= seconds <= most):
            raise RequestError(f"must be between {1 / self.fps:.4g} (one frame) and {most:g} "
                               f"seconds (sample.max_seconds), got {seconds}", field)
        return max(1, round(seconds * self.fps))

    def flow(self, **given) -> FlowOptions:
        """Flow options: those `given` that are not None, the `sample` section's for the rest,
        all within its limits."""
        return FlowOptions.of(self.sample, **given)

    def text_options(self, **given) -> TextOptions:
        """Caption options, likewise."""
        return TextOptions.of(self.sample, **given)

    def caption_options(self, **given) -> TextOptions:
        """Caption options for captions as long as training's: at most
        sequence.max_text_len tokens unless `given` says otherwise."""
        if given.get("max_tokens") is None:
            given["max_tokens"] = self.config.sequence.max_text_len
        return self.text_options(**given)

    def seed(self, seed) -> int:
        """`seed`, or the `sample` section's when None."""
        return seed_of(self.sample, seed)

    def video(self, path: str | os.PathLike, field: str,
              image_hint: str = "animate an image with `o1 animate --image`") -> None:
        """A video to read (`check_video_file`, up to `sample.max_seconds`)."""
        check_video_file(path, self.sample.max_seconds, image_hint, field)

    def audio(self, path: str | os.PathLike, field: str) -> None:
        """A sound to read (`check_audio_file`, up to `sample.max_seconds`)."""
        check_audio_file(path, self.sample.max_seconds, field)

    def sound(self, audio: np.ndarray, seconds: float | None = None, field: str = "sound",
              name: str | None = None) -> int:
        """Frames of video to make for a sound (float32 [N] mono at `data.sample_rate`): its
        first `seconds`, or all of it to the nearest frame (at least one).

        Refused: `seconds` out of range or longer than the sound, and a sound (the part
        taken) that is silent, since there is nothing to make a video for, or longer than
        `sample.max_seconds`. `name`: the file the sound came from, named in the refusal."""
        rate, spf = self.config.data.sample_rate, self.config.data.samples_per_frame
        if seconds is not None:
            frames = self.seconds(seconds)
            if frames > max(1, round(len(audio) / spf)):
                raise RequestError(f"is {seconds:g}, but the sound is {len(audio) / rate:.2f} "
                                   f"s long; ask for at most that, or leave it out for the "
                                   f"whole sound", "seconds")
            audio = audio[:frames * spf]
        who = f"{name} " if name else ""
        if media.is_silent(audio):
            raise RequestError(
                f"{who}is silent (it never peaks above {media.SILENCE_DBFS:g} dBFS): there is "
                f"nothing to make a video for; give a sound with something in it, or make a "
                f"clip from a prompt alone (generate)", field, sentence=bool(name))
        most = self.sample.max_seconds
        if len(audio) / rate > most:
            raise RequestError(f"{who}is {len(audio) / rate:.2f} s long; sounds up to {most:g} "
                               f"s are taken here (sample.max_seconds); cut it", field,
                               sentence=bool(name))
        return max(1, round(len(audio) / spf))


def _languages(codes) -> str:
    names = {"en": "English", "it": "Italian", "pt": "Portuguese", "zh": "Chinese"}
    return ", ".join(names.get(c, c) for c in codes)
