"""The AV-Shapes judge: scores clips against what they should show, from the measurements
of `o1.avshapes.analysis` (no neural nets).

Clip scores (`score_clip`) are 0/1 per attribute plus the share of onsets naming a requested
colour; `aggregate` averages them over clips and adds audio-video sync: each visual bounce
against its nearest onset, and the same for a shuffled pairing of clips as the chance floor.
A clip's centroid jumps across video-latent boundaries against those inside a latent give its
'jump_ratio' (~1 for real motion), a row's is the median over clips. Beside them:
`object_kept` (an animated image goes on with its objects) and `onset_agreement` (several
dubs of one video all sound at its bounces).
Captions are judged in `o1.eval.captions`, with the same attribute scores.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from o1.avshapes.analysis import (
    analyze_audio,
    analyze_video,
    jump_stats,
    latent_jumps,
    sync_offsets,
    sync_stats,
)
from o1.config import Config

ATTRIBUTES = ("colour", "shape", "count", "speed")
# Caption accuracy of colour and shape over the clips of more than one object only
# (`captions.caption_scores`).
SEVERAL = ("colour_several", "shape_several")
# The share of those clips whose caption names one object (its colour and shape) twice, the
# way a caption most often goes wrong there ("a green square and a green square").
REPEATED = "repeated"
# Per-clip scores a task may add (`object_kept`, the first-frame PSNRs): averaged by
# `aggregate` over the clips that have them.
EXTRA_MEANS = ("i2v_object_kept", "frame0_psnr", "frame0_psnr_roundtrip")


# ---------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------


def attribute_scores(found: Sequence[Mapping], count: int, objects: Sequence[Mapping]
                      ) -> dict[str, float]:
    """0/1 per attribute of found objects (colour, shape, speed) against requested ones.

    'colour' needs the same set of colours, none found twice (two entries, or one whose
    'pieces', the blobs it is drawn as, is more than 1); 'shape' and 'speed' need every
    requested colour found with its shape / speed; 'count' compares `count`.
    """
    by_colour = {o["colour"]: o for o in found}
    wanted = [o["colour"] for o in objects]
    once = len(found) == len(set(by_colour)) and all(o.get("pieces", 1) == 1 for o in found)
    return {
        "colour": float(set(by_colour) == set(wanted) and once),
        "shape": float(all(c in by_colour and by_colour[c].get("shape") == o["shape"]
                           for c, o in zip(wanted, objects, strict=True))),
        "count": float(count == len(objects)),
        "speed": float(all(c in by_colour and by_colour[c].get("speed") == o["speed"]
                           for c, o in zip(wanted, objects, strict=True))),
    }


def score_clip(frames: np.ndarray, wave: np.ndarray, config: Config,
               objects: Sequence[Mapping]) -> dict:
    """Scores one clip against the objects it should show.

    Args:
      frames: [T, H, W, 3] RGB in 0..255.
      wave: [N] mono audio.
      config: gives data.fps, data.sample_rate, data.object_size, audio.hop and
        video_vae.t_down.
      objects: requested objects, dicts with 'colour', 'shape', 'speed' (e.g.
        metadata["objects"], or what a prompt asked for).

    Returns:
      dict of 0/1 floats 'colour' (the colours seen are the requested ones, each as one
      object), 'shape' and 'speed' (every requested colour seen, with its shape / speed
      class), 'count' (the objects a viewer counts, connected components whatever their
      colour, are as many as requested); the float 'audio_colour' (share of onsets whose pitch
      names a requested colour, nan without onsets); the centroid jumps in pixels
      'jump_boundary_px', 'jump_inside_px' (medians across video-latent boundaries and inside
      latents, every object's steps pooled) and 'jump_ratio' (their ratio, ~1 for real
      motion; `analysis.jump_stats`: nan inside and for the ratio when t_down is 1); and the
      facts 'object_count', 'bounce_times', 'onset_times' (seconds), 'onset_colours' (per
      onset the colour its pitch names, or None) and 'detected' (the objects seen,
      colour/shape/speed), all JSON-serializable.
    """
    d = config.data
    video = analyze_video(frames, d.fps, d.object_size)
    audio = analyze_audio(wave, d.sample_rate, config.audio.hop)
    scores = attribute_scores(video["objects"], video["object_count"], objects)
    wanted = {o["colour"] for o in objects}
    named = audio["colours"]
    scores["audio_colour"] = (sum(c in wanted for c in named) / len(named) if named
                              else float("nan"))
    boundary, inside = latent_jumps([o["track"] for o in video["objects"]],
                                    config.video_vae.t_down)
    scores["jump_boundary_px"], scores["jump_inside_px"], scores["jump_ratio"] = jump_stats(
        boundary, inside)
    scores["object_count"] = video["object_count"]
    scores["bounce_times"] = video["bounce_times"]
    scores["onset_times"] = audio["onset_times"]
    scores["onset_colours"] = named
    scores["detected"] = [{k: o[k] for k in ("colour", "shape", "speed")}
                          for o in video["objects"]]
    return scores


def object_kept(image: np.ndarray, frames: np.ndarray, config: Config) -> float:
    """Whether an animation goes on with the objects of its first frame.

    Args:
      image: [H, W, 3] the given first frame, RGB in 0..255.
      frames: [T, H, W, 3] the frames made after it (the generated clip without frame 0).
      config: gives data.fps and data.object_size.

    Returns:
      1.0 when the colours of the objects seen in `image` are the colours of the objects
      tracked over `frames`, 0.0 when one is lost, changes or is added; nan when `image`
      shows no object.
    """
    d = config.data
    given = {o["colour"] for o in analyze_video(np.asarray(image)[None], d.fps,
                                                d.object_size)["objects"]}
    if not given:
        return float("nan")
    tracked = {o["colour"] for o in analyze_video(frames, d.fps, d.object_size)["objects"]}
    return float(given == tracked)


def onset_agreement(bounce_times: Sequence[Sequence[float]],
                    onset_times: Sequence[Sequence[Sequence[float]]], fps: float) -> dict:
    """How well several sounds made for the same videos agree on its bounces.

    Args:
      bounce_times: per clip, the seconds of its visual bounces.
      onset_times: per clip, per seed, the seconds of that sound's onsets.
      fps: video frame rate; an onset within one frame of a bounce is on it.

    Returns:
      dict with 'dub_agreement' (share of bounces on which every seed's sound has an onset;
      nan without bounces) and 'dub_agreement_shuffled' (the same for the bounces of clip i
      against the sounds of clip (i + 1) % n: the chance floor, nan for fewer than 2 clips).
    """
    def share(pairs) -> float:
        hits = [np.all([np.abs(sync_offsets(bounces, o)) <= 1.0 / fps + 1e-9 for o in seeds],
                       axis=0) for bounces, seeds in pairs if len(bounces)]
        hits = np.concatenate(hits or [np.zeros(0, bool)])
        return float(hits.mean()) if len(hits) else float("nan")

    n = len(bounce_times)
    if len(onset_times) != n:
        raise ValueError(f"onset_times has {len(onset_times)} clips; bounce_times has {n}")
    return {"dub_agreement": share(zip(bounce_times, onset_times, strict=True)),
            "dub_agreement_shuffled": share(
                (bounce_times[i], onset_times[(i + 1) % n]) for i in range(n))
            if n >= 2 else float("nan")}


def aggregate(scores: Sequence[Mapping], fps: float) -> dict:
    """Means of `score_clip` results over clips, plus audio-video sync.

    Returns:
      dict with the nan-ignoring mean of 'colour', 'shape', 'count', 'speed', 'audio_colour'
      (nan when no clip has a value); 'sync_median_ms' (median |offset| of every bounce to its
      nearest onset, inf when most bounces have no onset in their clip) and 'sync_hit' (share
      of bounces with an onset within one video frame); the same two for a shuffled pairing,
      bounces of clip i against onsets of clip (i + 1) % n, as the chance floor
      ('sync_median_ms_shuffled', 'sync_hit_shuffled'; nan for fewer than 2 clips); the
      median over clips of each clip's 'jump_boundary_px', 'jump_inside_px' and 'jump_ratio'
      (clips where it is nan left out, nan when all are); the mean of each of `EXTRA_MEANS`
      the scores have; 'clips' and 'bounces' (counts).
    """
    out: dict[str, float] = {}
    extras = [k for k in EXTRA_MEANS if any(k in s for s in scores)]
    for key in (*ATTRIBUTES, "audio_colour", *extras):
        values = np.array([s.get(key, np.nan) for s in scores], np.float64)
        values = values[np.isfinite(values)]
        out[key] = float(values.mean()) if len(values) else float("nan")
    n = len(scores)
    pairs = [(s["bounce_times"], s["onset_times"]) for s in scores]
    out["sync_median_ms"], out["sync_hit"], bounces = sync_stats(pairs, fps)
    shuffled = [(scores[i]["bounce_times"], scores[(i + 1) % n]["onset_times"])
                for i in range(n)]
    if n >= 2:
        out["sync_median_ms_shuffled"], out["sync_hit_shuffled"], _ = sync_stats(shuffled, fps)
    else:
        out["sync_median_ms_shuffled"] = out["sync_hit_shuffled"] = float("nan")
    # Each clip first: one median of every clip's jumps would mix fast and slow objects, which
    # squeezes the ratio of a jumping video towards 1 (1.5 against 2.4 on the jumps of ten
    # clips in tests/eval/test_judge.py).
    for key in ("jump_boundary_px", "jump_inside_px", "jump_ratio"):
        values = np.array([s.get(key, np.nan) for s in scores], np.float64)
        values = values[~np.isnan(values)]
        out[key] = float(np.median(values)) if len(values) else float("nan")
    out["clips"], out["bounces"] = n, bounces
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def plain(value):
    """`value` with numpy scalars as Python numbers and nan/inf as None, for strict JSON."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(report: Mapping, out: str | os.PathLike) -> pathlib.Path:
    """Writes `report` as strict JSON (`plain`) to `out` atomically, its folder made; returns
    the path."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(plain(report), indent=2, allow_nan=False))
    os.replace(tmp, out)
    return out


# What holds together over time and with the given inputs: `o1 eval` shows these in a table
# of their own, so neither table is wider than a terminal.
CONSISTENCY_COLUMNS = ("jump_ratio", "jump_boundary_px", "jump_inside_px", "dub_agreement",
                       "dub_agreement_shuffled", "frame0_psnr", "frame0_psnr_roundtrip",
                       "i2v_object_kept")
SYNC_COLUMNS = ("sync_hit", "sync_median_ms", "sync_hit_shuffled", "sync_median_ms_shuffled")
COLUMNS = (*ATTRIBUTES, *SEVERAL, REPEATED, "audio_colour", *SYNC_COLUMNS,
           *CONSISTENCY_COLUMNS, "bleu4", "cider_d", "clips", "bounces")


def cell(key: str, value) -> str:
    """A metric as `format_table` writes it: its digits by kind, "-" for a missing one."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(float(value))
        digits = (1 if "_ms" in key or "psnr" in key or key == "bleu4" else
                  2 if key.endswith("_px") or key == "jump_ratio" else 3)
        return f"{value:.{digits}f}"
    return str(value)


def format_table(report: Mapping[str, Mapping], columns: Sequence[str] | None = None) -> str:
    """A text table: one row per entry of `report` (e.g. 'ground truth', 'text_to_av'), one
    column per metric any row has (known metrics first, in a fixed order), '-' where a row
    lacks one. Given `columns`, only those metrics, in that order, and only the rows that
    have one of them."""
    if columns is not None:
        report = {name: row for name, row in report.items() if any(k in row for k in columns)}
        keys = [k for k in columns if any(k in row for row in report.values())]
    else:
        keys = [k for k in COLUMNS if any(k in row for row in report.values())]
        keys += sorted({k for row in report.values() for k in row} - set(keys))
    header = ["", *keys]
    body = [[name, *[cell(k, row.get(k)) for k in keys]] for name, row in report.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                       for i, c in enumerate(r)) for r in [header, *body]]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)
