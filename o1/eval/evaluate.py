"""`o1 eval`: how well a trained workdir does every task, judged from pixels and samples.

The AV-Shapes clips of a split are regenerated from the workdir's config (the generator is
deterministic, so these are the dataset's clips byte for byte). For each clip:

  ground truth     the clip itself: the judge's ceiling (it must score ~1 here, or it is wrong)
  tokenizers       the clip through the video and audio VAEs (encode, decode, vocoder): the
                   ceiling of anything the transformer generates in their latents
  text_to_av       `generate` from the clip's caption, judged against the caption's objects
  image_to_video   `animate` from the clip's first frame and caption; also how close its frame
                   0 is to the image ('frame0_psnr', dB) beside the tokenizers' round trip of
                   that image ('frame0_psnr_roundtrip', the most frame 0 can keep), and whether
                   the objects of the image are the ones that move on ('i2v_object_kept')
  video_to_audio   `dub` of the clip's silent video (no prompt): the sound's colours and sync
  audio_to_video   `visualize` of the clip's sound (no prompt, as dub): the picture's bounces
                   against the given sound's onsets (sync, and its shuffled floor), and its
                   colours and count against the clip's objects, which the tones name (every
                   object of 99.5% of quickstart test clips sounds; shape is not in the sound
                   and speed only loosely, so they are not judged)
  video_to_caption `caption` of the clip: attribute accuracy, BLEU-4 and CIDEr-D against the
                   reference caption (whose own row is the captioning ceiling). No language
                   is asked for, so the model writes in the first of `text.languages`, and
                   the reference is the clip's caption in that language (`reference_in`)

With `languages` (`o1 eval --lang en it ...`), text_to_av and video_to_caption also run once
per language on the same clips with the same seeds: the prompt is the clip's caption written
afresh in that language (`prompt_in`), the caption is asked for in it and judged against that
prompt, its reference. Their rows are named `text_to_av [it]`, `video_to_caption [it]`, and so
on, beside the ceiling `ground truth [it]` of the references themselves.

Sync rows also carry the shuffled floor (bounces of one clip against the onsets of another).
Every video row has the centroid jumps across video-latent boundaries against those inside a
latent ('jump_ratio', ~1 for real motion, see `judge.score_clip`).

With `seeds` > 1 every task samples each clip that many times (seed s of clip i is
`seed + i + SEED_STRIDE * s`); a row is the mean of its per-seed rows (kept in the report as
'per_seed'), and the dub row adds 'dub_agreement': the share of the video's bounces on which
every seed's sound has an onset within one frame (its shuffled floor pairs one clip's bounces
with another's dubs; the ground truth and tokenizers rows carry it for their own sound).

The report is printed as tables and saved as JSON; a few generated clips are kept as mp4.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
import unicodedata
from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from o1 import media
from o1.avshapes import generator, world
from o1.eval import captions, decisions, judge
from o1.eval import tokenizers as tok_eval
from o1.sampler import FlowOptions, TextOptions, seed_of
from o1.serve.checks import Checks
from o1.serve.pipeline import Pipeline, RequestError

# Separates the stream `prompt_in` draws from the generator's own draws of the clip.
PROMPT_STREAM = 1_000
SAMPLES_KEPT = 4  # generated clips per task written under <workdir>/eval/samples/
VIDEO_TASKS = ("text_to_av", "image_to_video")
SAMPLED_TASKS = (*VIDEO_TASKS, "video_to_audio", "audio_to_video")
# What a row does not judge: the dub keeps the true video (and so its motion); the sound
# given to visualize is the true one (its colours score nothing made) and names neither
# shape nor speed.
NOT_JUDGED = {"video_to_audio": (*judge.ATTRIBUTES, "jump_boundary_px", "jump_inside_px",
                                 "jump_ratio"),
              "audio_to_video": ("shape", "speed", "audio_colour")}
# Seed s of clip i is seed + i + SEED_STRIDE * s: seed 0 is the single-seed run's, and the
# seeds of two clips never meet below this many clips.
SEED_STRIDE = 1_000_000


def prompt_in(clip: generator.Example, language: str) -> str:
    """The caption of an AV-Shapes clip written in `language`, drawn from the clip's id and
    the language (the same for every run), independent of the dataset's own caption."""
    meta = clip.metadata
    rng = np.random.default_rng([meta["seed"], world.SPLIT_IDS[meta["split"]], meta["index"],
                                 PROMPT_STREAM, world.LANGUAGES.index(language)])
    return generator.caption(meta["objects"], meta["background"], rng, language)


def reference_in(clip: generator.Example, language: str) -> str:
    """The caption of an AV-Shapes clip in `language`: its own when it is in that language,
    else the one its metadata keeps for that language (`data.every_language`), else
    `prompt_in`'s."""
    meta = clip.metadata
    if meta.get("language", language) == language:
        return clip.caption
    return meta.get("captions", {}).get(language) or prompt_in(clip, language)


def evaluate(workdir: str | os.PathLike, split: str = "test", num: int = 50,
             out: str | os.PathLike | None = None, flow: FlowOptions | None = None,
             seed: int | None = None, progress: bool = True, step: int | None = None,
             seeds: int = 1, languages: Sequence[str] = (), text: TextOptions | None = None
             ) -> dict:
    """Runs every task on `num` clips of `split` with the transformer checkpoint `step`
    (default: the latest) and judges them; returns the report and writes it as JSON to `out`
    (default `<workdir>/eval/report.json`). Clip i is sampled `seeds` times, with
    `seed + i + SEED_STRIDE * s` for s < `seeds`; `flow` and `seed` default to the workdir
    config's `sample` section, and so does `text`, how captions are decoded (its max_tokens
    then the config's sequence.max_text_len). With `languages`, text_to_av and
    video_to_caption run again in each (see the module docstring)."""
    if split not in world.SPLIT_IDS:  # the cheap checks first, before the model loads
        raise RequestError(f"--split must be one of {list(world.SPLIT_IDS)}, got {split!r}")
    if num < 1:
        raise RequestError(f"--num must be >= 1, got {num}")
    if seeds < 1:
        raise RequestError(f"--seeds must be >= 1, got {seeds}")
    check = Checks(workdir)
    for language in languages:
        check.language_tag(language)
    text = text or check.caption_options()
    pipe = Pipeline(workdir, step)
    pipe.truncate_prompts = True  # reference captions are cut as in training
    config = pipe.config
    flow = flow or FlowOptions.of(config.sample)
    seed = seed_of(config.sample, seed)
    try:  # the largest seed is checked now, not after minutes of sampling
        seed_of(config.sample, seed + num - 1 + SEED_STRIDE * (seeds - 1))
    except RequestError as e:
        raise RequestError(f"--seed {seed} with --num {num} and --seeds {seeds} reaches a seed "
                           f"out of range ({e}); use a smaller --seed or fewer --seeds") from None
    if split == "holdout" and not config.data.holdout:
        raise RequestError("this workdir's config has no holdout pairs; use --split test")
    workdir = pathlib.Path(workdir)
    out = pathlib.Path(out) if out else workdir / "eval" / "report.json"
    samples = workdir / "eval" / "samples"
    samples.mkdir(parents=True, exist_ok=True)

    truth_scores: dict[str, list[dict]] = {"ground truth": [], "tokenizers": []}
    # made[task][s][i]: the score of seed s's sample of clip i
    made: dict[str, list[list[dict]]] = {t: [[] for _ in range(seeds)] for t in SAMPLED_TASKS}
    tok = pipe.tokenizers
    written: list[list[str]] = [[] for _ in range(seeds)]
    references, truths = [], []
    default_language = config.text.languages[0]  # what `caption` writes when none is asked
    # per language: the prompts, and per seed the text_to_av scores and captions written
    prompts: dict[str, list[str]] = {lang: [] for lang in languages}
    made_in = {lang: [[] for _ in range(seeds)] for lang in languages}
    written_in = {lang: [[] for _ in range(seeds)] for lang in languages}
    # per language the caption decisions of each clip's reference (`decisions`)
    read = {lang: [] for lang in (languages or [default_language])}
    sp = tok.text
    first = {lang: decisions.first_pieces(lang, sp.pieces, sp.piece_id) for lang in read}
    start = time.perf_counter()
    for i in tqdm(range(num), desc=f"eval {split}", unit="clip", disable=not progress):
        clip = generator.generate(config, split, i)
        objects = clip.metadata["objects"]
        image = clip.video[0]
        references.append(reference_in(clip, default_language))
        truths.append(objects)
        # The VAE is causal, so frame 0 of the clip's round trip is the round trip of its first
        # frame alone: what animate's context keeps of the image at best.
        round_trip = tok.decode_video(tok.encode_video(clip.video[None]))[0]
        truth = judge.score_clip(clip.video, clip.audio, config, objects)
        coded = judge.score_clip(round_trip, tok.decode_audio(tok.encode_audio(
            clip.audio[None]))[0], config, objects)
        # Ceilings of image_to_video's i2v_object_kept: the image, then the clip's own frames.
        truth["i2v_object_kept"] = judge.object_kept(image, clip.video[1:], config)
        coded["i2v_object_kept"] = judge.object_kept(image, round_trip[1:], config)
        truth_scores["ground truth"].append(truth)
        truth_scores["tokenizers"].append(coded)
        for s in range(seeds):
            seed_i = seed + i + SEED_STRIDE * s
            results = {
                "text_to_av": pipe.generate(clip.caption, flow=flow, seed=seed_i),
                "image_to_video": pipe.animate(image, clip.caption, flow=flow, seed=seed_i),
                "video_to_audio": pipe.dub(media.Clip(clip.video, config.data.fps, None, None),
                                           flow=flow, seed=seed_i),
                "audio_to_video": pipe.visualize(media.Clip(
                    clip.video[:0], config.data.fps, clip.audio, config.data.sample_rate),
                    flow=flow, seed=seed_i),
            }
            for task, result in results.items():
                # the picture made for a sound against that sound
                sound = clip.audio if task == "audio_to_video" else result.audio
                score = judge.score_clip(result.frames, sound, config, objects)
                if task == "image_to_video":
                    score["frame0_psnr"] = tok_eval.psnr(image, result.frames[0])
                    score["frame0_psnr_roundtrip"] = tok_eval.psnr(image, round_trip[0])
                    score["i2v_object_kept"] = judge.object_kept(image, result.frames[1:],
                                                                 config)
                made[task][s].append(score)
                if i < SAMPLES_KEPT and s == 0:
                    result.write(samples / f"{task}_{clip.metadata['id']}.mp4")
            whole = media.Clip(clip.video, config.data.fps, clip.audio, config.data.sample_rate)
            written[s].append(pipe.caption(whole, text, seed=seed_i))
            if s == 0:
                said = {lang: unicodedata.normalize("NFKC", prompt_in(clip, lang) if languages
                                                    else references[-1]) for lang in read}
                for lang, (ids, logp) in pipe.read_captions(whole, said).items():
                    read[lang].append(decisions.decisions(
                        said[lang], lang, sp.pieces(said[lang]), first[lang], ids, logp))
            for lang in languages:
                if s == 0:
                    prompts[lang].append(prompt_in(clip, lang))
                said = pipe.generate(prompts[lang][-1], flow=flow, seed=seed_i)
                made_in[lang][s].append(judge.score_clip(said.frames, said.audio, config,
                                                         objects))
                written_in[lang][s].append(pipe.caption(whole, text, seed_i, lang))
    fps = config.data.fps
    rows = {name: judge.aggregate(values, fps) for name, values in truth_scores.items()}
    per_seed = {task: [judge.aggregate(values, fps) for values in made[task]]
                for task in SAMPLED_TASKS}
    for task, keys in NOT_JUDGED.items():
        for row in per_seed[task]:
            for key in keys:
                row.pop(key, None)
    rows.update({task: mean_rows(per_seed[task]) for task in SAMPLED_TASKS})
    for lang in languages:
        rows[f"text_to_av [{lang}]"] = mean_rows([judge.aggregate(values, fps)
                                                  for values in made_in[lang]])
    if seeds > 1:
        bounces = [score["bounce_times"] for score in truth_scores["ground truth"]]
        for name, scores in truth_scores.items():
            rows[name].update(judge.onset_agreement(
                bounces, [[score["onset_times"]] for score in scores], fps))
        rows["video_to_audio"].update(judge.onset_agreement(
            bounces, [[made["video_to_audio"][s][i]["onset_times"] for s in range(seeds)]
                      for i in range(num)], fps))
    caption_rows = {
        "ground truth": captions.caption_scores(references, references, truths,
                                               default_language),
        "video_to_caption": mean_rows([captions.caption_scores(w, references, truths,
                                                               default_language)
                                       for w in written]),
    }
    for lang in languages:
        caption_rows[f"ground truth [{lang}]"] = captions.caption_scores(
            prompts[lang], prompts[lang], truths, lang)
        caption_rows[f"video_to_caption [{lang}]"] = mean_rows([
            captions.caption_scores(w, prompts[lang], truths, lang) for w in written_in[lang]])
    report = {
        "workdir": str(workdir), "checkpoint": pipe.step, "split": split, "clips": num,
        "flow": dataclasses.asdict(flow), "text": dataclasses.asdict(text), "seed": seed,
        "seeds": seeds,
        "languages": list(languages),
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows, "captions": caption_rows,
        "decisions": {f"video_to_caption [{lang}]": decisions.shares(marks)
                      for lang, marks in read.items()},
        "examples": [{"reference": r, "caption": c} for r, c in
                     zip(references[:8], written[0][:8], strict=False)],
    }
    if seeds > 1:
        report["per_seed"] = per_seed
    judge.write_report(report, out)
    return report


def mean_rows(rows: list[dict]) -> dict:
    """The per-seed rows of one task as one row: the mean of each metric over the seeds that
    have a finite value (nan when none has; inf when the finite ones are all inf), 'bounces'
    summed and 'clips' as it is."""
    out = {}
    for key in rows[0]:
        values = np.array([row[key] for row in rows], np.float64)
        if key == "clips":
            out[key] = rows[0][key]
        elif key == "bounces":
            out[key] = int(values.sum())
        else:
            kept = values[~np.isnan(values)]
            out[key] = float(kept.mean()) if len(kept) else float("nan")
    return out


def format_report(report: dict) -> str:
    """The report as text: the media rows in two tables (what is shown and heard; what holds
    together over time and with the given inputs), the sync of each seed when there are
    several, and the captions."""
    seeds = report.get("seeds", 1)
    head = (f"AV-Shapes judge: {report['clips']} {report['split']} clips, checkpoint "
            f"{report['checkpoint']}, {report['flow']['steps']} {report['flow']['solver']} "
            f"steps, guidance video {report['flow']['cfg_video']:g} / audio "
            f"{report['flow']['cfg_audio']:g}, {seeds} seed{'s' if seeds > 1 else ''} a clip")
    rows = report["rows"]
    media_columns = [k for k in judge.COLUMNS if k not in judge.CONSISTENCY_COLUMNS]
    parts = [head, "", "media", judge.format_table(rows, media_columns), "",
             "consistency", judge.format_table(rows, judge.CONSISTENCY_COLUMNS)]
    if "per_seed" in report:
        by_seed = {f"{task} seed {s}": row for task, task_rows in report["per_seed"].items()
                   for s, row in enumerate(task_rows)}
        parts += ["", "sync per seed", judge.format_table(
            by_seed, ("audio_colour", *judge.SYNC_COLUMNS, "bounces"))]
    text = report.get("text") or {}
    decoded = (f"by beam search, {text['beams']} beams" if text.get("beams", 1) > 1
               else "greedy" if not text.get("temperature") else
               f"sampled at temperature {text['temperature']:g}")
    parts += ["", f"captions, {decoded}", judge.format_table(report["captions"])]
    if report.get("decisions"):
        parts += ["", "caption decisions, reading the reference (shares right: an object's "
                  "second attribute given its first; the next object's first)",
                  judge.format_table(report["decisions"], decisions.COLUMNS)]
    return "\n".join(parts)
