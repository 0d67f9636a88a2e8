"""`o1 eval`: how well a trained workdir does every task, judged from pixels and samples.

The AV-Shapes clips of a split are regenerated from the workdir's config (the generator is
deterministic, so these are the dataset's clips byte for byte). For each clip:

  ground truth     the clip itself: the judge's ceiling (it must score ~1 here, or it is wrong)
  tokenizers       the clip through the video and audio VAEs (encode, decode, vocoder): the
                   ceiling of anything the transformer generates in their latents
  text_to_av       `generate` from the clip's caption, judged against the caption's objects
  image_to_video   `animate` from the clip's first frame and caption
  video_to_audio   `dub` of the clip's silent video (no prompt): the sound's colours and sync
  video_to_caption `caption` of the clip: attribute accuracy, BLEU-4 and CIDEr-D against the
                   reference caption (whose own row is the captioning ceiling)

Sync rows also carry the shuffled floor (bounces of one clip against the onsets of another).
The report is printed as a table and saved as JSON; a few generated clips are kept as mp4.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time

import numpy as np
from tqdm import tqdm

from o1 import media
from o1.avshapes import generator, world
from o1.eval import captions, judge
from o1.sampler import FlowOptions, seed_of
from o1.serve.pipeline import Pipeline, RequestError

SAMPLES_KEPT = 4  # generated clips per task written under <workdir>/eval/samples/
VIDEO_TASKS = ("text_to_av", "image_to_video")


def evaluate(workdir: str | os.PathLike, split: str = "test", num: int = 50,
             out: str | os.PathLike | None = None, flow: FlowOptions | None = None,
             seed: int | None = None, progress: bool = True, step: int | None = None) -> dict:
    """Runs every task on `num` clips of `split` with the transformer checkpoint `step`
    (default: the latest) and judges them; returns the report and writes it as JSON to `out`
    (default `<workdir>/eval/report.json`). Clip i is sampled with `seed + i`; `flow` and
    `seed` default to the workdir config's `sample` section."""
    if split not in world.SPLIT_IDS:  # the cheap checks first, before the model loads
        raise RequestError(f"--split must be one of {list(world.SPLIT_IDS)}, got {split!r}")
    if num < 1:
        raise RequestError(f"--num must be >= 1, got {num}")
    pipe = Pipeline(workdir, step)
    pipe.truncate_prompts = True  # reference captions are cut as in training
    config = pipe.config
    flow = flow or FlowOptions.of(config.sample)
    seed = seed_of(config.sample, seed)
    if split == "holdout" and not config.data.holdout:
        raise RequestError("this workdir's config has no holdout pairs; use --split test")
    workdir = pathlib.Path(workdir)
    out = pathlib.Path(out) if out else workdir / "eval" / "report.json"
    samples = workdir / "eval" / "samples"
    samples.mkdir(parents=True, exist_ok=True)

    scores: dict[str, list[dict]] = {name: [] for name in (
        "ground truth", "tokenizers", *VIDEO_TASKS, "video_to_audio")}
    tok = pipe.tokenizers
    written, references, truths = [], [], []
    start = time.perf_counter()
    for i in tqdm(range(num), desc=f"eval {split}", unit="clip", disable=not progress):
        clip = generator.generate(config, split, i)
        objects = clip.metadata["objects"]
        references.append(clip.caption)
        truths.append(objects)
        scores["ground truth"].append(judge.score_clip(clip.video, clip.audio, config, objects))
        scores["tokenizers"].append(judge.score_clip(
            tok.decode_video(tok.encode_video(clip.video[None]))[0],
            tok.decode_audio(tok.encode_audio(clip.audio[None]))[0], config, objects))
        made = {
            "text_to_av": pipe.generate(clip.caption, flow=flow, seed=seed + i),
            "image_to_video": pipe.animate(clip.video[0], clip.caption, flow=flow,
                                           seed=seed + i),
            "video_to_audio": pipe.dub(media.Clip(clip.video, config.data.fps, None, None),
                                       flow=flow, seed=seed + i),
        }
        for task, result in made.items():
            scores[task].append(judge.score_clip(result.frames, result.audio, config, objects))
            if i < SAMPLES_KEPT:
                result.write(samples / f"{task}_{clip.metadata['id']}.mp4")
        written.append(pipe.caption(media.Clip(clip.video, config.data.fps, clip.audio,
                                                 config.data.sample_rate), seed=seed + i))
    fps = config.data.fps
    rows = {name: judge.aggregate(values, fps) for name, values in scores.items()}
    for attribute in judge.ATTRIBUTES:  # the dub keeps the true video: no video row there
        rows["video_to_audio"].pop(attribute, None)
    caption_rows = {
        "ground truth": captions.caption_scores(references, references, truths),
        "video_to_caption": captions.caption_scores(written, references, truths),
    }
    report = {
        "workdir": str(workdir), "checkpoint": pipe.step, "split": split, "clips": num,
        "flow": dataclasses.asdict(flow), "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows, "captions": caption_rows,
        "examples": [{"reference": r, "caption": c} for r, c in
                     zip(references[:8], written[:8], strict=False)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(_plain(report), indent=2, allow_nan=False))
    os.replace(tmp, out)
    return report


def _plain(value):
    """`value` with numpy scalars as Python numbers and nan/inf as null (strict JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_report(report: dict) -> str:
    head = (f"AV-Shapes judge: {report['clips']} {report['split']} clips, checkpoint "
            f"{report['checkpoint']}, {report['flow']['steps']} {report['flow']['solver']} "
            f"steps, guidance video {report['flow']['cfg_video']:g} / audio "
            f"{report['flow']['cfg_audio']:g}")
    return "\n".join([head, "", "media", judge.format_table(report["rows"]), "",
                      "captions", judge.format_table(report["captions"])])
