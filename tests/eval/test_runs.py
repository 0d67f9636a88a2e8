"""`o1 eval-runs`: several runs' eval reports as mean, spread and paired language gaps."""

import json
import math

import pytest

from o1 import cli
from o1.eval import runs
from o1.sampler import RequestError


def _report(en: float, it: float, sync: float = 0.5, clips: int = 100) -> dict:
    """An `o1 eval` report as evaluate writes it, with a few rows."""
    media = {"colour": en, "shape": 0.2, "sync_hit": sync, "sync_median_ms": 78.1,
             "clips": clips, "bounces": 200}
    return {
        "workdir": "w", "checkpoint": 1000, "split": "test", "clips": clips,
        "flow": {"steps": 12, "solver": "euler"}, "seed": 0, "seeds": 1,
        "languages": ["en", "it"], "seconds": 1.0,
        "rows": {"text_to_av": dict(media),
                 "text_to_av [en]": dict(media),
                 "text_to_av [it]": {**media, "colour": it, "sync_hit": None}},
        "captions": {"ground truth [it]": {"colour": 1.0, "shape": 1.0, "bleu4": 100.0},
                     "video_to_caption [en]": {"colour": 0.6, "bleu4": 20.0},
                     "video_to_caption [it]": {"colour": 0.5, "bleu4": 18.0}},
    }


def test_runs_are_averaged_and_each_language_is_paired_with_the_first_run_by_run():
    reports = [_report(0.6, 0.5), _report(0.3, 0.3), _report(0.45, 0.4)]
    combined = runs.combine(reports)
    assert combined["runs"] == 3 and combined["languages"] == ["en", "it"]
    colour = combined["rows"]["text_to_av [en]"]["colour"]
    assert colour["mean"] == pytest.approx(0.45) and colour["sd"] == pytest.approx(0.15)
    assert "clips" not in combined["rows"]["text_to_av"]
    # the run-by-run differences (-0.1, 0, -0.05) are far tighter than either language's spread
    gap = combined["gaps"]["text_to_av [it]"]["colour"]
    assert gap["runs"] == pytest.approx([-0.1, 0.0, -0.05])
    assert gap["mean"] == pytest.approx(-0.05) and gap["sd"] == pytest.approx(0.05)
    assert gap["se"] == pytest.approx(0.05 / math.sqrt(3))
    # a metric a language's row left empty has no gap; BLEU is never compared across languages
    assert "sync_hit" not in combined["gaps"]["text_to_av [it]"]
    assert combined["gaps"]["video_to_caption [it]"]["colour"]["mean"] == pytest.approx(-0.1)
    assert "bleu4" not in combined["gaps"]["video_to_caption [it]"]
    assert "ground truth [it]" not in combined["gaps"]
    text = runs.format_combined(combined)
    assert "0.450±0.150" in text and "-0.050±0.050 (0.029)" in text


def test_a_metric_only_some_reports_have_is_averaged_over_those_and_counted():
    # a report judged before a metric existed lacks it, even as the first one read
    old, new = _report(0.6, 0.5), _report(0.3, 0.3)
    new["captions"]["video_to_caption [en]"]["repeated"] = 0.2
    new["captions"]["video_to_caption [it]"]["repeated"] = 0.5
    combined = runs.combine([old, new, new])
    repeated = combined["captions"]["video_to_caption [en]"]["repeated"]
    assert repeated["mean"] == pytest.approx(0.2) and repeated["n"] == 2
    assert combined["captions"]["video_to_caption [en]"]["colour"]["n"] == 3
    assert combined["gaps"]["video_to_caption [it]"]["repeated"]["n"] == 2
    text = runs.format_combined(combined)
    assert "0.200±0.000 [2]" in text and "+0.300±0.000 (0.000) [2]" in text
    assert "0.600±0.000 [" not in text  # every run has colour: no count


def test_caption_decisions_are_averaged_and_their_gaps_join_the_captions_gaps():
    reports = [_report(0.6, 0.5), _report(0.3, 0.3)]
    for report, (en, it) in zip(reports, [(0.9, 0.7), (0.95, 0.85)], strict=True):
        report["decisions"] = {
            "video_to_caption [en]": {"binding": en, "next": 0.8, "binding_n": 120},
            "video_to_caption [it]": {"binding": it, "next": 0.8, "binding_n": 120}}
    combined = runs.combine(reports)
    binding = combined["decisions"]["video_to_caption [it]"]["binding"]
    assert binding["mean"] == pytest.approx(0.775)
    gaps = combined["gaps"]["video_to_caption [it]"]
    assert gaps["binding"]["runs"] == pytest.approx([-0.2, -0.1])
    assert gaps["colour"]["mean"] == pytest.approx(-0.1)  # the captions' own gap stays
    assert "caption decisions" in runs.format_combined(combined)
    # a report judged before decisions were read: none are combined
    combined = runs.combine([reports[0], _report(0.3, 0.3)])
    assert combined["decisions"] == {} and "binding" not in combined["gaps"][
        "video_to_caption [it]"]
    assert "caption decisions" not in runs.format_combined(combined)


def test_one_run_has_means_without_spread():
    combined = runs.combine([_report(0.6, 0.5)])
    assert combined["rows"]["text_to_av"]["colour"]["mean"] == pytest.approx(0.6)
    assert math.isnan(combined["rows"]["text_to_av"]["colour"]["sd"])
    assert "±" not in runs.format_combined(combined).split("minus [en]")[1].splitlines()[3]


def test_reports_judged_differently_are_refused_naming_the_field(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_report(0.6, 0.5)))
    b.write_text(json.dumps(_report(0.6, 0.5, clips=50)))
    with pytest.raises(RequestError, match=r"b\.json was judged with clips = 50 .* 100"):
        runs.combine([runs.read(a), runs.read(b)])
    with pytest.raises(RequestError, match="at least one"):
        runs.combine([])
    # A report judged before reports recorded the caption decoding was decoded greedily.
    beams = {**_report(0.6, 0.5), "text": {"max_tokens": 48, "temperature": 0.0,
                                           "top_p": 1.0, "beams": 8}}
    with pytest.raises(RequestError, match=r"judged with text = \{.*'beams': 8\}"):
        runs.combine([_report(0.6, 0.5), beams])
    greedy = {**_report(0.6, 0.5), "text": {"max_tokens": 48, "temperature": 0.0,
                                            "top_p": 1.0, "beams": 1}}
    assert runs.combine([_report(0.6, 0.5), greedy])["text"] == runs.decoding(greedy)


def test_a_workdir_is_read_through_its_eval_report_and_a_bad_path_is_named(tmp_path):
    work = tmp_path / "run"
    (work / "eval").mkdir(parents=True)
    (work / "eval" / "report.json").write_text(json.dumps(_report(0.6, 0.5)))
    assert runs.read(work)["path"] == str(work / "eval" / "report.json")
    with pytest.raises(RequestError, match="o1 eval --workdir .*missing"):
        runs.read(tmp_path / "missing")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(RequestError, match="broken.json is not a readable"):
        runs.read(broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": {}}))
    with pytest.raises(RequestError, match="other.json is not an `o1 eval` report"):
        runs.read(other)


def test_cli_prints_the_tables_and_saves_json(tmp_path, capsys):
    paths = []
    for i, (en, it) in enumerate([(0.6, 0.5), (0.3, 0.3)]):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(_report(en, it)))
    out = tmp_path / "sub" / "combined.json"
    assert cli.main(["eval-runs", *map(str, paths), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 runs, each judged on 100 test clips" in text and "minus [en]" in text
    saved = json.loads(out.read_text())
    assert saved["gaps"]["text_to_av [it]"]["colour"]["runs"] == pytest.approx([-0.1, 0.0])
    assert cli.main(["eval-runs", str(tmp_path / "nothing")]) == 2
    assert "nothing is neither" in capsys.readouterr().err
