"""`o1 judge`: an AV-Shapes clip judged window by window against its prompt, so that drift
over a long clip shows."""

from __future__ import annotations

import argparse

from o1.cli.sample import prompt_at

WINDOW_S = 10.0


def _objects(prompt: str, field: str) -> list[dict]:
    from o1.eval.captions import parse_caption
    from o1.sampler import RequestError

    objects = parse_caption(prompt)["objects"]
    if not objects:
        raise RequestError(f"{prompt!r} names no object to judge; name a colour then a shape, "
                           f"e.g. 'a red circle bouncing fast'", field)
    return objects


def _judge(args: argparse.Namespace) -> None:
    import pathlib

    import numpy as np

    from o1 import configs, media
    from o1.eval import judge, windows
    from o1.sampler import RequestError

    if not pathlib.Path(args.clip).is_file():
        raise RequestError(f"{args.clip}: no such file (the clip to judge)")
    if args.window < windows.MIN_WINDOW_S:
        raise RequestError(f"must be at least {windows.MIN_WINDOW_S:g} s, got {args.window:g}",
                           "window")
    if args.json and not pathlib.Path(args.json).resolve().parent.is_dir():
        raise RequestError(f"{args.json}: its folder does not exist", "json")
    times = [t for t, _ in args.at]
    if len(set(times)) < len(times):
        raise RequestError(f"gives one time twice: {sorted(times)}", "at")
    # What the clip should show from each time on, checked before the clip is decoded.
    changes = [(0.0, _objects(args.prompt, "prompt"))]
    changes += sorted((t, _objects(p, "at")) for t, p in args.at)
    if args.workdir:
        from o1.serve.checks import load_config

        config = load_config(args.workdir)
    else:
        config = configs.get(args.config)
    d = config.data
    clip = media.read_media(args.clip, fps=d.fps, size=(d.height, d.width),
                            sample_rate=d.sample_rate, require_audio=False)
    seconds = len(clip.frames) / d.fps
    wave = (clip.audio if clip.audio is not None
            else np.zeros(round(seconds * d.sample_rate), np.float32))
    late = [t for t in times if t >= seconds]
    if late:
        raise RequestError(f"{late[0]:g} is past the end of {args.clip} ({seconds:.2f} s)",
                           "at")
    spans = windows.window_spans(seconds, args.window, times)
    if not spans:
        raise RequestError(f"{args.clip} is {seconds:.2f} s long; judging needs at least "
                           f"{windows.MIN_WINDOW_S:g} s")

    def asked(start: float, end: float) -> list[dict]:
        return next(objs for at, objs in reversed(changes) if at <= start + 1e-9)

    rows = windows.judge_windows(clip.frames, wave, config, asked, spans=spans,
                                 progress=True)
    print(windows.format_windows(rows))
    if args.json:
        report = {"clip": args.clip, "seconds": seconds, "window": args.window,
                  "prompts": [{"from": 0.0, "prompt": args.prompt}]
                  + [{"from": t, "prompt": p} for t, p in sorted(args.at)],
                  "windows": rows, "drift": windows.drift(rows)}
        print(f"wrote {judge.write_report(report, args.json)}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "judge", help="judge an AV-Shapes clip window by window against its prompt "
                      "(colour, count, shape, sound, sync and its drift over a long clip)",
        description="Read an mp4 at the config's frame rate, size and sample rate, cut it "
                    "into windows and judge each against the objects its prompt names, from "
                    "pixels and samples: colour, object count, shape, speed, the colours the "
                    "tones name, and audio-video sync with its chance floor (the window's "
                    "onsets rotated by half the window). Clips of a minute or more end with "
                    "the sync of the first 30 s against the last.")
    p.add_argument("clip", metavar="CLIP.mp4", help="the clip to judge")
    p.add_argument("--prompt", required=True,
                   help="what the clip shows from its start, e.g. 'a red circle bouncing fast'")
    p.add_argument("--at", type=prompt_at, action="append", default=[], metavar="SECONDS:PROMPT",
                   help="from SECONDS on the clip shows PROMPT; windows are cut there too "
                        "(repeatable)")
    p.add_argument("--window", type=float, default=WINDOW_S, metavar="SECONDS",
                   help=f"seconds per window; the last may be shorter (default: {WINDOW_S:g})")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--workdir", metavar="W",
                        help="take the clip geometry from this trained workdir")
    source.add_argument("--config", default="quickstart", metavar="NAME",
                        help="else from this named config (default: quickstart)")
    p.add_argument("--json", metavar="OUT", help="also write the windows' scores as JSON")
    p.set_defaults(func=_judge)
