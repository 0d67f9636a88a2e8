"""The AV-Shapes judge over a long clip, window by window, so that drift over minutes shows.

`judge_windows` cuts a clip into consecutive windows (or given spans) and scores each with
`judge.score_clip` against what that stretch should show, which may change mid-clip;
`format_windows` prints one row per window, and when the windows cover at least a minute a
line comparing the sync of the first 30 s with the last (`drift`).

Sync in a window is each visual bounce against its nearest onset (`analysis.sync_stats`). Its
chance floor is the same window's onsets rotated by half the window (an onset at t moves to
(t + L/2) mod L): the same bounces and the same onset rate, paired at an unrelated phase, so a
clip of one window has a floor too and no other window's motion enters it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from o1.avshapes.analysis import sync_offsets, sync_stats
from o1.config import Config
from o1.eval.judge import ATTRIBUTES, format_table, score_clip

MIN_WINDOW_S = 1.0  # a window or tail shorter than this is not judged
DRIFT_S = 30.0  # `drift` compares the first and the last this many seconds

# What a stretch of the clip should show: one list of objects for the whole clip, or a
# function of a window's (start, end) seconds giving that window's.
Objects = Sequence[Mapping] | Callable[[float, float], Sequence[Mapping]]

# Columns of `format_windows`, in order.
COLUMNS = ("asked", "colour", "count", "object_count", "shape", "speed", "audio_colour",
           "tones", "sync_hit", "sync_hit_floor", "sync_median_ms", "bounces")


def window_spans(seconds: float, window: float = 10.0, cuts: Sequence[float] = ()
                 ) -> list[tuple[float, float]]:
    """Consecutive windows of `window` seconds over [0, `seconds`), starting afresh at each
    of `cuts` (where what the clip should show changes). A window ends early at the next cut
    or the clip's end; one shorter than `MIN_WINDOW_S` is dropped.

    Returns:
      [(start_s, end_s), ...] in time order.
    """
    if window < MIN_WINDOW_S:
        raise ValueError(f"window must be at least {MIN_WINDOW_S:g} s, got {window:g}")
    if any(not 0 < c < seconds for c in cuts):
        raise ValueError(f"cuts must lie inside the clip's 0..{seconds:g} s, got {list(cuts)}")
    bounds = [0.0, *sorted(set(cuts)), float(seconds)]
    spans = []
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        k = 0
        while end - (begin + k * window) >= MIN_WINDOW_S - 1e-9:
            spans.append((begin + k * window, min(begin + (k + 1) * window, end)))
            k += 1
    return spans


def judge_windows(frames: np.ndarray, wave: np.ndarray, config: Config, objects: Objects,
                  window: float = 10.0, spans: Sequence[tuple[float, float]] | None = None,
                  progress: bool = False) -> list[dict]:
    """Scores a long clip window by window.

    Args:
      frames: uint8 [T, H, W, 3] RGB, at config.data.fps.
      wave: float [N] mono audio at config.data.sample_rate, starting with frame 0.
      config: as for `judge.score_clip` (data.fps, data.sample_rate, data.object_size,
        audio.hop, video_vae.t_down).
      objects: what the clip should show, dicts with 'colour', 'shape', 'speed' (as
        `captions.parse_caption` reads a prompt; a speed of None is not judged): one list for
        every window, or a function of a window's (start_s, end_s) giving its list, for a
        clip whose prompt changes (cut the windows where it changes, see `window_spans`).
      window: seconds per window when `spans` is None (`window_spans`: the last may be
        shorter, a tail under `MIN_WINDOW_S` is dropped).
      spans: explicit [(start_s, end_s), ...] inside the clip, judged as given.
      progress: show a progress bar over the windows.

    Returns:
      per window a dict: 'start', 'end' (seconds, on frame boundaries); 'asked' (its objects);
      the 0/1 'colour', 'shape', 'speed' (None when a requested speed is None) and 'count' of
      `score_clip` with 'object_count' (blobs, median over frames); 'audio_colour' (share of
      onsets whose pitch names a requested colour, nan without onsets) and 'tones' (colour ->
      onsets whose pitch names it, most first); 'sync_hit' (share of visual bounces with an
      onset within one frame), 'sync_hit_floor' (the same against the window's onsets rotated
      by half the window: the chance floor), 'sync_median_ms' (median |bounce - nearest onset|)
      and 'bounces' (nan, nan, 0 without bounces); 'onsets'; 'bounce_times' and 'onset_times'
      (seconds from the clip's start) and 'detected' (`score_clip`). JSON-serializable but for
      nan (see `judge.plain`).
    """
    frames, wave = np.asarray(frames), np.asarray(wave).ravel()
    d = config.data
    seconds = len(frames) / d.fps
    spans = window_spans(seconds, window) if spans is None else spans
    rows = []
    for start, end in tqdm(spans, desc="windows", unit="window", disable=not progress):
        if not 0 <= start < end <= seconds + 1e-9:
            raise ValueError(f"span ({start:g}, {end:g}) is not inside the clip's "
                             f"0..{seconds:g} s")
        f0, f1 = round(start * d.fps), round(end * d.fps)
        if f1 - f0 < 2:
            raise ValueError(f"span ({start:g}, {end:g}) holds fewer than 2 frames")
        t0, length = f0 / d.fps, (f1 - f0) / d.fps
        asked = objects(start, end) if callable(objects) else objects
        score = score_clip(frames[f0:f1],
                           wave[round(t0 * d.sample_rate):round(f1 / d.fps * d.sample_rate)],
                           config, asked)
        bounces, onsets = score["bounce_times"], score["onset_times"]
        median_ms, hit, count = sync_stats([(bounces, onsets)], d.fps)
        rotated = np.mod(np.asarray(onsets) + length / 2, length)
        _, floor, _ = sync_stats([(bounces, rotated)], d.fps)
        row = {"start": t0, "end": f1 / d.fps,
               "asked": [{k: o.get(k) for k in ("colour", "shape", "speed")} for o in asked]}
        row.update({k: score[k] for k in (*ATTRIBUTES, "object_count", "audio_colour")})
        if any(o.get("speed") is None for o in asked):
            row["speed"] = None
        row.update({
            "tones": dict(Counter(c for c in score["onset_colours"] if c).most_common()),
            "sync_hit": hit, "sync_hit_floor": floor, "sync_median_ms": median_ms,
            "bounces": count, "onsets": len(onsets),
            "bounce_times": [t0 + t for t in bounces], "onset_times": [t0 + t for t in onsets],
            "detected": score["detected"],
        })
        rows.append(row)
    return rows


def drift(rows: Sequence[Mapping], seconds: float = DRIFT_S) -> dict | None:
    """Sync of the windows in the clip's first `seconds` against those in its last.

    A window belongs to a stretch when its middle does. None when the windows span less
    than 2 * `seconds`.

    Returns:
      dict with 'seconds'; 'first_sync_hit', 'last_sync_hit' (share of the stretch's bounces
      with an onset within one frame) and 'sync_hit_change_points' (last - first, in
      percentage points); 'first_sync_median_ms', 'last_sync_median_ms' (median |offset|
      over the stretch's bounces) and 'sync_median_change_ms'; 'first_bounces',
      'last_bounces'. nan where a stretch has no bounces.
    """
    if not rows:
        return None
    begin, end = min(r["start"] for r in rows), max(r["end"] for r in rows)
    if end - begin < 2 * seconds - 1e-9:
        return None
    out: dict[str, float] = {"seconds": seconds}
    for name, keep in (("first", lambda mid: mid < begin + seconds),
                       ("last", lambda mid: mid > end - seconds)):
        part = [r for r in rows if keep((r["start"] + r["end"]) / 2)]
        bounces = sum(r["bounces"] for r in part)
        offsets = np.concatenate([np.abs(sync_offsets(r["bounce_times"], r["onset_times"]))
                                  for r in part] or [np.zeros(0)])
        out[f"{name}_sync_hit"] = (sum(r["sync_hit"] * r["bounces"] for r in part if
                                       r["bounces"]) / bounces if bounces else float("nan"))
        out[f"{name}_sync_median_ms"] = (float(np.median(offsets)) * 1000.0 if len(offsets)
                                         else float("nan"))
        out[f"{name}_bounces"] = bounces
    out["sync_hit_change_points"] = 100.0 * (out["last_sync_hit"] - out["first_sync_hit"])
    out["sync_median_change_ms"] = out["last_sync_median_ms"] - out["first_sync_median_ms"]
    return out


def format_windows(rows: Sequence[Mapping]) -> str:
    """A text table, one row per window (`COLUMNS`; '-' for a speed the prompt does not name
    and for no tones), and when the windows span at least 2 * `DRIFT_S` a line comparing
    the sync of the first and last `DRIFT_S` seconds (`drift`)."""
    table = {}
    for r in rows:
        cells = {k: r[k] for k in COLUMNS if k in r}
        cells["asked"] = "+".join(f"{o['colour']} {o['shape']}" for o in r["asked"])
        cells["tones"] = " ".join(f"{c}:{n}" for c, n in r["tones"].items()) or None
        table[f"{r['start']:.1f}-{r['end']:.1f} s"] = cells
    text = format_table(table, COLUMNS)
    change = drift(rows)
    if change is not None:
        s = f"{change['seconds']:g} s"
        text += (f"\nfirst {s} against last {s}: sync {change['first_sync_hit']:.3f} -> "
                 f"{change['last_sync_hit']:.3f} ({change['sync_hit_change_points']:+.1f} "
                 f"points), median |offset| {change['first_sync_median_ms']:.1f} -> "
                 f"{change['last_sync_median_ms']:.1f} ms "
                 f"({change['sync_median_change_ms']:+.1f} ms), over "
                 f"{change['first_bounces']} and {change['last_bounces']} bounces")
    return text
