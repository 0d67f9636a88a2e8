"""`o1 eval-runs`: several `o1 eval` reports of one configuration as one.

A model trained at the quickstart's budget scores differently from one training seed to the
next by more than one report's clips can show, so a comparison between configurations, or
between the languages of one model, is read from several runs. Given the reports of runs that
were judged alike (the same split, clips, sampling seeds, flow and languages), this gives each
row's metrics as the mean over the runs and their standard deviation, and, for a report made
with `--lang`, each language's difference to the first language, taken run by run on the
same clips and seeds (so what the runs share cancels), with its mean, standard deviation and
standard error (sd / sqrt(runs)).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np

from o1.eval import decisions, judge
from o1.sampler import RequestError

# What two reports must share to be averaged: they judged the same thing (and decoded the
# captions alike, `decoding`).
SAME = ("split", "clips", "seed", "seeds", "flow", "languages")
# How captions were decoded in a report judged before reports recorded it.
_GREEDY = {"temperature": 0.0, "top_p": 1.0, "beams": 1}
# The metrics whose language gaps are reported: what a prompt or a caption gets right, and
# the sound's timing. BLEU and CIDEr-D are left out: their n-grams are words in one language
# and characters in Chinese, so they do not compare across languages.
GAP_METRICS = (*judge.ATTRIBUTES, *judge.SEVERAL, judge.REPEATED, "audio_colour", "sync_hit",
               *decisions.SHARES)
_TAGGED = re.compile(r"^(?P<task>.+) \[(?P<lang>[^\]]+)\]$")


def read(path: str | os.PathLike) -> dict:
    """The `o1 eval` report at `path`: a report JSON, or a workdir (its eval/report.json)."""
    path = pathlib.Path(path)
    file = path / "eval" / "report.json" if path.is_dir() else path
    if not file.is_file():
        raise RequestError(f"{path} is neither an `o1 eval` report nor a workdir with "
                           f"eval/report.json; run `o1 eval --workdir {path}` first")
    try:
        report = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(f"{file} is not a readable `o1 eval` report ({e})") from None
    if not isinstance(report, dict) or not {"rows", "captions", *SAME} <= report.keys():
        raise RequestError(f"{file} is not an `o1 eval` report (it lacks rows, captions or "
                           f"one of {', '.join(SAME)}); rerun `o1 eval` on its workdir")
    report["path"] = str(file)
    return report


def decoding(report: dict) -> dict:
    """How a report's captions were decoded: temperature, top_p and beams (`o1 eval
    --beams`); greedy for a report judged before reports recorded it."""
    text = report.get("text") or {}
    return {key: text.get(key, value) for key, value in _GREEDY.items()}


def _judged(report: dict) -> dict:
    """What a report judged (`SAME`) and how it decoded captions ('text')."""
    return {**{key: report[key] for key in SAME}, "text": decoding(report)}


def combine(reports: Sequence[dict]) -> dict:
    """The mean and spread over `reports` (see the module docstring).

    Returns:
      dict with 'runs' (their count), 'paths', what they share (`SAME` and 'text'), 'rows' and
      'captions' ({row: {metric: {'mean', 'sd', 'n'}}}, sd nan for one run; a metric a run
      lacks or left nan is averaged over the n runs that have it) and 'gaps'
      ({'text_to_av [it]': {metric: {'mean', 'sd', 'se', 'n', 'runs'}}} for every language row
      but the first language's, its metric minus the first language's, per run).

    Raises:
      RequestError: no reports, or two that were not judged alike (named, with the field).
    """
    if not reports:
        raise RequestError("needs at least one `o1 eval` report")
    first, judged = reports[0], _judged(reports[0])
    for report in reports[1:]:
        for key, value in _judged(report).items():
            if value != judged[key]:
                raise RequestError(
                    f"{report.get('path', 'a report')} was judged with {key} = {value!r} "
                    f"and {first.get('path', 'the first')} with {judged[key]!r}; runs are "
                    f"compared on the same clips and seeds: rerun `o1 eval` with the same "
                    f"options on each")
    out = {"runs": len(reports), "paths": [r.get("path") for r in reports], **judged,
           "gaps": {}}
    languages = first["languages"]
    # caption decisions: only where every report has them (reports judged before they were not)
    for table in ("rows", "captions", "decisions"):
        names = [name for name in first.get(table, {})
                 if all(name in r.get(table, {}) for r in reports)]
        out[table] = {name: _spread([r[table][name] for r in reports]) for name in names}
        for name in names:
            match = _TAGGED.match(name)
            # the references' own rows score 1 in every language: no gap to show
            if not match or match["task"] == "ground truth" or not languages \
                    or match["lang"] == languages[0]:
                continue
            base = f"{match['task']} [{languages[0]}]"
            if base not in names:
                continue
            gaps = {}
            for metric in GAP_METRICS:
                per_run = [_number(r[table][name].get(metric)) - _number(
                    r[table][base].get(metric)) for r in reports]
                per_run = [g for g in per_run if math.isfinite(g)]
                if per_run:
                    stats = _stats(per_run)
                    gaps[metric] = {**stats, "se": stats["sd"] / math.sqrt(len(per_run)),
                                    "runs": per_run}
            if gaps:  # a caption row's gaps join those of its decisions
                out["gaps"].setdefault(name, {}).update(gaps)
    return out


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else math.nan


def _spread(rows: Sequence[dict]) -> dict:
    out = {}
    for key in dict.fromkeys(k for row in rows for k in row):  # every run's, in order
        if key in ("clips", "bounces"):
            continue
        values = [v for v in (_number(row.get(key)) for row in rows) if math.isfinite(v)]
        if values:
            out[key] = _stats(values)
    return out


def _stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (nan for one value) and how many values."""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return {"mean": float(np.mean(values)), "sd": sd, "n": len(values)}


def _cells(table: dict[str, dict], keys: Sequence[str], runs: int
           ) -> dict[str, dict[str, str]]:
    """Rows of 'mean ± sd' strings for `judge.format_table`, in its number format, with
    "[n]" after a metric that only n of the `runs` reports had."""
    def cell(key, stat):
        text = judge.cell(key, stat["mean"])
        if math.isfinite(stat["sd"]):
            text += f"±{judge.cell(key, stat['sd'])}"
        return text + (f" [{stat['n']}]" if stat["n"] < runs else "")
    return {name: {k: cell(k, row[k]) for k in keys if k in row} for name, row in table.items()}


def format_combined(combined: dict) -> str:
    """The combined report as text: the media and caption tables as mean±sd over the runs,
    then each language's gap to the first language as mean±sd (se) over the runs."""
    runs = combined["runs"]
    head = (f"{runs} runs, each judged on {combined['clips']} {combined['split']} clips, "
            f"{combined['seeds']} seed{'s' if combined['seeds'] > 1 else ''} a clip: mean±sd "
            f"over the runs ([n]: over the n runs whose reports have that metric)")
    media = [k for k in judge.COLUMNS if k not in judge.CONSISTENCY_COLUMNS
             and k not in ("clips", "bounces")]
    parts = [head, "", "media",
             judge.format_table(_cells(combined["rows"], media, runs), media),
             "", "captions", judge.format_table(
                 _cells(combined["captions"], [*judge.ATTRIBUTES, *judge.SEVERAL,
                                               judge.REPEATED, "bleu4", "cider_d"], runs))]
    if combined["decisions"]:
        parts += ["", "caption decisions, reading the reference",
                  judge.format_table(_cells(combined["decisions"], decisions.SHARES, runs))]
    if combined["gaps"]:
        first = combined["languages"][0]
        rows = {}
        for name, gaps in combined["gaps"].items():
            rows[name] = {}
            for metric, g in gaps.items():
                text = f"{g['mean']:+.3f}"
                if math.isfinite(g["sd"]):
                    text += f"±{g['sd']:.3f} ({g['se']:.3f})"
                rows[name][metric] = text + (f" [{g['n']}]" if g["n"] < runs else "")
        parts += ["", f"minus [{first}], run by run: mean±sd (standard error)",
                  judge.format_table(rows, GAP_METRICS)]
    return "\n".join(parts)
