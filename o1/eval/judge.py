"""The AV-Shapes judge: scores clips against what they should show, from the measurements
of `o1.avshapes.analysis` (no neural nets).

Clip scores (`score_clip`) are 0/1 per attribute plus the share of onsets naming a requested
colour; `aggregate` averages them over clips and adds audio-video sync: each visual bounce
against its nearest onset, and the same for a shuffled pairing of clips as the chance floor.
Captions are judged in `o1.eval.captions`, with the same attribute scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from o1.avshapes.analysis import analyze_audio, analyze_video, sync_stats
from o1.config import Config

ATTRIBUTES = ("colour", "shape", "count", "speed")


# ---------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------


def attribute_scores(found: Sequence[Mapping], count: int, objects: Sequence[Mapping]
                      ) -> dict[str, float]:
    """0/1 per attribute of found objects (colour, shape, speed) against requested ones.

    'colour' needs the same set of colours, none found twice; 'shape' and 'speed' need every
    requested colour found with its shape / speed; 'count' compares `count`.
    """
    by_colour = {o["colour"]: o for o in found}
    wanted = [o["colour"] for o in objects]
    return {
        "colour": float(set(by_colour) == set(wanted) and len(found) == len(set(by_colour))),
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
      config: gives data.fps, data.sample_rate, data.object_size and audio.hop.
      objects: requested objects, dicts with 'colour', 'shape', 'speed' (e.g.
        metadata["objects"], or what a prompt asked for).

    Returns:
      dict of 0/1 floats 'colour' (the colours seen are the requested ones), 'shape' and
      'speed' (every requested colour seen, with its shape / speed class), 'count'; the float
      'audio_colour' (share of onsets whose pitch names a requested colour, nan without
      onsets); and the facts 'bounce_times', 'onset_times' (seconds) and 'detected' (the
      objects seen, colour/shape/speed), all JSON-serializable.
    """
    d = config.data
    video = analyze_video(frames, d.fps, d.object_size)
    audio = analyze_audio(wave, d.sample_rate, config.audio.hop)
    scores = attribute_scores(video["objects"], video["count"], objects)
    wanted = {o["colour"] for o in objects}
    named = audio["colours"]
    scores["audio_colour"] = (sum(c in wanted for c in named) / len(named) if named
                              else float("nan"))
    scores["bounce_times"] = video["bounce_times"]
    scores["onset_times"] = audio["onset_times"]
    scores["detected"] = [{k: o[k] for k in ("colour", "shape", "speed")}
                          for o in video["objects"]]
    return scores


def aggregate(scores: Sequence[Mapping], fps: float) -> dict:
    """Means of `score_clip` results over clips, plus audio-video sync.

    Returns:
      dict with the nan-ignoring mean of 'colour', 'shape', 'count', 'speed', 'audio_colour'
      (nan when no clip has a value); 'sync_median_ms' (median |offset| of every bounce to its
      nearest onset, inf when most bounces have no onset in their clip) and 'sync_hit' (share
      of bounces with an onset within one video frame); the same two for a shuffled pairing,
      bounces of clip i against onsets of clip (i + 1) % n, as the chance floor
      ('sync_median_ms_shuffled', 'sync_hit_shuffled'; nan for fewer than 2 clips); 'clips'
      and 'bounces' (counts).
    """
    out: dict[str, float] = {}
    for key in (*ATTRIBUTES, "audio_colour"):
        values = np.array([s[key] for s in scores], np.float64)
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
    out["clips"], out["bounces"] = n, bounces
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

COLUMNS = (*ATTRIBUTES, "audio_colour", "sync_hit", "sync_median_ms", "sync_hit_shuffled",
           "sync_median_ms_shuffled", "bleu4", "cider_d", "clips", "bounces")


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return str(float(value))
        digits = 1 if "_ms" in key or key == "bleu4" else 3
        return f"{value:.{digits}f}"
    return str(value)


def format_table(report: Mapping[str, Mapping]) -> str:
    """A text table: one row per entry of `report` (e.g. 'ground truth', 'text_to_av'), one
    column per metric any row has (known metrics first, in a fixed order), '-' where a row
    lacks one."""
    keys = [k for k in COLUMNS if any(k in row for row in report.values())]
    keys += sorted({k for row in report.values() for k in row} - set(keys))
    header = ["", *keys]
    body = [[name, *[_cell(k, row.get(k)) for k in keys]] for name, row in report.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                       for i, c in enumerate(r)) for r in [header, *body]]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    return "\n".join(lines)
