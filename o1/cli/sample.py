"""Sampling from a trained workdir: `o1 generate`, `caption`, `dub`, `visualize`, `animate`
and `extend`, and the sampling flags `o1 eval` shares.

A sampling flag that is not given takes the workdir config's `sample` section (o1.config's
SampleConfig); the options are checked by `o1.sampler.FlowOptions` / `TextOptions`, whose
RequestError `o1.cli.main` prints as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import time


class SampleDefaults(argparse.HelpFormatter):
    """Help in which each sampling flag names its default in the `sample` config section.
    The config is imported only when help is printed, so building the parser stays cheap."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        from o1.config import SampleConfig

        if action.dest not in {f.name for f in dataclasses.fields(SampleConfig)}:
            return action.help
        value = getattr(SampleConfig(), action.dest)
        shown = f"{value:g}" if isinstance(value, float) else value
        return f"{action.help} (default: the workdir's sample.{action.dest}, normally {shown})"


def prompt_at(text: str) -> tuple[float, str]:
    """SECONDS:PROMPT of `--at`."""
    seconds, _, prompt = text.partition(":")
    try:
        at = float(seconds)
    except ValueError:
        at = math.nan
    if not (math.isfinite(at) and at > 0 and prompt.strip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SECONDS:PROMPT with SECONDS > 0, e.g. 4:'a blue square'")
    return at, prompt


def trained_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", required=True, help="run directory with a trained model")
    p.add_argument("--checkpoint", type=int, default=None,
                   help="transformer checkpoint step (default: the latest)")


def sampling_flags(p: argparse.ArgumentParser, flow: bool = True) -> None:
    """--workdir, --checkpoint, --seed and, with `flow`, the flow options (every default
    None: the workdir's `sample` section fills it in)."""
    trained_model(p)
    p.add_argument("--seed", type=int, help="sampling seed")
    if not flow:
        return
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--solver",
                   help="ODE solver: euler, or heun, which calls the model twice a step")
    p.add_argument("--shift", type=float,
                   help="noise-level grid shift; > 1 spends more steps at high noise")
    p.add_argument("--cfg-video", type=float, help="guidance scale on video, 1 = none")
    p.add_argument("--cfg-audio", type=float, help="guidance scale on audio, 1 = none")


def checks(args: argparse.Namespace):
    """The workdir's request checks (`o1.serve.checks.Checks`): its config and text tokenizer,
    read before the model loads so that bad options and a bad workdir are refused at once."""
    from o1.serve.checks import Checks

    return Checks(args.workdir)


def flow_options(args: argparse.Namespace, check):
    """The flow flags given, the rest from the workdir's `sample` section; RequestError names
    a bad one."""
    return check.flow(steps=args.steps, solver=args.solver, shift=args.shift,
                      cfg_video=args.cfg_video, cfg_audio=args.cfg_audio)


def _pipeline(args: argparse.Namespace):
    from o1.serve.pipeline import Pipeline

    return Pipeline(args.workdir, args.checkpoint).load()


def _input(path: str, what: str = "input") -> str:
    import pathlib

    from o1.sampler import RequestError

    if not pathlib.Path(path).is_file():
        raise RequestError(f"{path}: no such file (the {what})")
    return path


def _wrote(clip, path: str) -> None:
    clip.write(path)
    print(f"wrote {path}: {clip.seconds:.2f} s, {clip.frames.shape[2]}x{clip.frames.shape[1]} "
          f"at {clip.fps} fps, audio {clip.sample_rate} Hz")


def _prompted_request(args: argparse.Namespace):
    """(the workdir's checks, flow options, seed) of a task that makes a clip from a prompt,
    with the prompt and --seconds checked against the workdir."""
    check = checks(args)
    flow, seed = flow_options(args, check), check.seed(args.seed)
    check.prompt(args.prompt)
    if args.seconds is not None:
        check.seconds(args.seconds)
    return check, flow, seed


def _generate(args: argparse.Namespace) -> None:
    from o1.serve.checks import check_output
    from o1.serve.pipeline import format_profile

    if args.stream or args.at:
        return _stream(args)
    out = check_output(args.out)
    _, flow, seed = _prompted_request(args)
    pipe = _pipeline(args)
    if args.profile:  # compile every program first, so the timed run is the steady state
        pipe.generate(args.prompt, args.seconds, flow, seed).write(out)
    start = time.perf_counter()
    clip = pipe.generate(args.prompt, args.seconds, flow, seed)
    _wrote(clip, out)
    wall = time.perf_counter() - start
    if args.profile:
        print(format_profile(clip.timings, clip.seconds, wall))


def _stream(args: argparse.Namespace) -> None:
    """`o1 generate --stream OUT` (or `--at`): the clip written as it is made."""
    import numpy as np
    from tqdm import tqdm

    from o1 import media
    from o1.sampler import RequestError
    from o1.serve.checks import check_output

    if args.profile:
        raise RequestError("--profile times `o1 generate --out`; a stream reports its own "
                           "first-chunk time and real-time factor", "profile")
    out = check_output(args.stream or args.out, "stream" if args.stream else "out",
                       stream=bool(args.stream))
    check, flow, seed = _prompted_request(args)
    schedule = [(0.0, args.prompt), *sorted(args.at)]
    for _, prompt in schedule[1:]:
        try:
            check.prompt(prompt)
        except RequestError as e:
            raise RequestError(e.message, "at" if e.field == "prompt" else e.field,
                               sentence=e.sentence) from None
    pipe = _pipeline(args)
    seconds = args.seconds if args.seconds is not None else pipe.clip_seconds
    stream = pipe.stream(schedule, seconds, flow, seed)
    d = pipe.config.data
    writer = (media.StreamWriter(out, d.fps, d.height, d.width, d.sample_rate)
              if args.stream else None)
    pieces = []  # the chunks of an --out clip, written when it is whole
    bar = tqdm(total=round(seconds * d.fps), unit="frame", desc="stream")
    try:
        with writer or contextlib.nullcontext():
            for chunk in stream:
                if writer:
                    writer.append(chunk.frames, chunk.audio)
                else:
                    pieces.append(chunk)
                bar.update(len(chunk.frames))
                made = (chunk.start + len(chunk.frames)) / d.fps
                bar.set_postfix(realtime=f"{made / max(chunk.made_at, 1e-9):.2f}x")
    except KeyboardInterrupt:
        bar.close()
        print(f"stopped: {out} holds what was made" if writer else
              f"stopped: nothing written to {out}")
        return
    bar.close()
    if not writer:
        frames = np.concatenate([p.frames for p in pieces])
        audio = np.concatenate([p.audio for p in pieces])
        _wrote(media.Clip(frames, d.fps, audio, d.sample_rate), str(out))
        return
    print(f"wrote {out}: {writer.seconds:.2f} s streamed, first picture and sound after "
          f"{stream.timings['first_chunk']:.2f} s, real-time factor "
          f"{writer.seconds / stream.timings['total']:.2f}")


def _caption(args: argparse.Namespace) -> None:
    import json

    from o1.serve.pipeline import check_video_file, read_clip

    path = _input(args.input, "video to caption")
    check_video_file(path, field="input")
    check = checks(args)
    options = check.text_options(max_tokens=args.max_tokens, temperature=args.temperature,
                                 top_p=args.top_p, beams=args.beams)
    check.language_tag(args.lang)
    seed = check.seed(args.seed)
    pipe = _pipeline(args)
    # The caption describes the first model clip; nothing after it is decoded.
    clip = read_clip(path, pipe.config, seconds=pipe.clip_seconds)
    text = pipe.caption(clip, options, seed, args.lang)
    if args.json:
        print(json.dumps({"file": path, "caption": text, "seconds": round(clip.seconds, 4),
                          "checkpoint": pipe.step}))
    else:
        print(text)


def _video_request(args: argparse.Namespace, what: str):
    """(input path, output path, checks, flow options, seed) of a task that reads a video and
    takes an optional prompt: the files checked from their headers before the workdir is read
    (an image is refused at once), then the rest against the workdir."""
    from o1.serve.checks import check_output, check_video_file

    path, out = _input(args.input, what), check_output(args.out)
    check_video_file(path, field="input")
    check = checks(args)
    check.video(path, "input")
    flow, seed = flow_options(args, check), check.seed(args.seed)
    check.prompt(args.prompt, required=False)
    return path, out, check, flow, seed


def _dub(args: argparse.Namespace) -> None:
    from o1.serve.pipeline import read_clip

    path, out, _, flow, seed = _video_request(args, "video to dub")
    pipe = _pipeline(args)
    _wrote(pipe.dub(read_clip(path, pipe.config), args.prompt, flow, seed), out)


def _visualize(args: argparse.Namespace) -> None:
    import pathlib

    from o1.serve.checks import check_audio_file, check_output
    from o1.serve.pipeline import read_audio

    path, out = _input(args.input, "sound to make a video for"), check_output(args.out)
    check_audio_file(path, field="input")
    check = checks(args)
    check.audio(path, "input")
    flow, seed = flow_options(args, check), check.seed(args.seed)
    check.prompt(args.prompt, required=False)
    if args.seconds is not None:
        check.seconds(args.seconds)
    # The sound is decoded before the model loads: a silent one is refused without it.
    sound = read_audio(path, check.config, args.seconds)
    check.sound(sound.audio, args.seconds, "input", pathlib.Path(path).name)
    pipe = _pipeline(args)
    _wrote(pipe.visualize(sound, args.prompt, args.seconds, flow, seed), out)


def _animate(args: argparse.Namespace) -> None:
    from o1.serve.checks import check_image_file, check_output
    from o1.serve.pipeline import read_image

    path, out = _input(args.image, "image to animate"), check_output(args.out)
    check_image_file(path, "image")
    _, flow, seed = _prompted_request(args)
    pipe = _pipeline(args)
    image = read_image(path, pipe.config)
    _wrote(pipe.animate(image, args.prompt, args.seconds, flow, seed), out)


def _extend(args: argparse.Namespace) -> None:
    from o1.serve.pipeline import read_clip

    path, out, check, flow, seed = _video_request(args, "clip to extend")
    check.seconds(args.seconds)
    pipe = _pipeline(args)
    clip = read_clip(path, pipe.config)
    _wrote(pipe.extend(clip, args.seconds, args.prompt, flow, seed), out)


def add_commands(commands: argparse._SubParsersAction) -> None:
    gen = commands.add_parser(
        "generate", help="text -> video with sound (mp4)", formatter_class=SampleDefaults,
        description="Sample a clip with native sound from a prompt. Clips longer than the "
                    "model's clip length are continued window by window. With --stream the "
                    "clip is written as it is made, over a rolling window whose cost per "
                    "second stays flat however long it runs (--seconds up to the workdir's "
                    "sample.max_seconds).")
    gen.add_argument("--prompt", required=True, help="what the clip shows")
    where = gen.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="mp4 file to write when the clip is done")
    where.add_argument("--stream", metavar="OUT",
                       help="fragmented .mp4 or MPEG-TS .ts file written latent step by latent "
                            "step, playable while it grows (Ctrl-C stops it, the file valid)")
    gen.add_argument("--at", type=prompt_at, action="append", default=[],
                     metavar="SECONDS:PROMPT",
                     help="from SECONDS on, the clip follows PROMPT (repeatable); made as a "
                          "stream, the past kept as made")
    gen.add_argument("--seconds", type=float, default=None,
                     help="length in seconds (default: one model clip)")
    gen.add_argument("--profile", action="store_true",
                     help="compile first, then print the time of every stage and the "
                          "real-time factor")
    sampling_flags(gen)
    gen.set_defaults(func=_generate)

    cap = commands.add_parser("caption", help="video -> caption", formatter_class=SampleDefaults,
                              description="Describe a video (its first model clip of frames).")
    cap.add_argument("input", help="video file")
    cap.add_argument("--json", action="store_true", help="print a JSON object")
    cap.add_argument("--max-tokens", type=int, help="longest caption in tokens")
    cap.add_argument("--temperature", type=float, help="sampling temperature, 0 = greedy")
    cap.add_argument("--top-p", type=float, help="nucleus mass")
    cap.add_argument("--beams", type=int, help="partial captions kept while decoding (beam "
                                               "search at temperature 0; 1 = one id at a time)")
    cap.add_argument("--lang", help="the caption's language, one of the model's text.languages "
                                    "(default: the first)")
    sampling_flags(cap, flow=False)
    cap.set_defaults(func=_caption)

    dub = commands.add_parser("dub", help="silent video -> video with generated sound",
                              formatter_class=SampleDefaults,
                              description="Generate the sound of a video (any length up to "
                                          "a minute; the output is at the model's frame size "
                                          "and rate).")
    dub.add_argument("input", help="video file (its own sound, if any, is replaced)")
    dub.add_argument("--out", required=True, help="mp4 file to write")
    dub.add_argument("--prompt", default=None, help="optional description to guide the sound")
    sampling_flags(dub)
    dub.set_defaults(func=_dub)

    vis = commands.add_parser("visualize", help="sound -> video made for it, with that sound",
                              formatter_class=SampleDefaults,
                              description="Make a video for a sound (any length up to a "
                                          "minute, in windows of one model clip); the sound "
                                          "is kept as the clip's audio, at the model's "
                                          "sample rate and in mono.")
    vis.add_argument("input", help="sound file (wav, mp3, m4a, flac, ...) or a video whose "
                                   "sound to use (its picture is not)")
    vis.add_argument("--out", required=True, help="mp4 file to write")
    vis.add_argument("--prompt", default=None, help="optional description to guide the video")
    vis.add_argument("--seconds", type=float, default=None,
                     help="use only the sound's first seconds (default: all of it)")
    sampling_flags(vis)
    vis.set_defaults(func=_visualize)

    ani = commands.add_parser("animate", help="image + prompt -> video with sound",
                              formatter_class=SampleDefaults,
                              description="Make a clip whose first frame is the image.")
    ani.add_argument("--image", required=True, help="first frame (png, jpg, ...)")
    ani.add_argument("--prompt", required=True, help="what happens")
    ani.add_argument("--out", required=True, help="mp4 file to write")
    ani.add_argument("--seconds", type=float, default=None,
                     help="length in seconds (default: one model clip)")
    sampling_flags(ani)
    ani.set_defaults(func=_animate)

    ext = commands.add_parser("extend", help="clip -> the same clip continued",
                              formatter_class=SampleDefaults,
                              description="Continue a clip's video and sound.")
    ext.add_argument("input", help="video file to continue")
    ext.add_argument("--seconds", type=float, required=True, help="seconds to add")
    ext.add_argument("--out", required=True, help="mp4 file to write")
    ext.add_argument("--prompt", default=None, help="optional description to guide it")
    sampling_flags(ext)
    ext.set_defaults(func=_extend)
