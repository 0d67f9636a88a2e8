"""The bad-input corpus: every request a user can get wrong, through the CLI and the Python
API, is refused with one line that names the input, before any model loads (the studio's
share of the corpus is in test_studio.py)."""

import math
import time

import av
import numpy as np
import pytest
from PIL import Image

from o1 import media
from o1.cli import main
from o1.media import Clip
from o1.sampler import FlowOptions, RequestError, TextOptions
from o1.serve import pipeline
from o1.serve.checks import Checks
from o1.serve.pipeline import Pipeline

LIMIT_S = 3.0  # a refusal comes before anything slow: no model load, no decoding


@pytest.fixture(scope="module")
def files(tmp_path_factory, trained_workdir):
    """Media a user might give by mistake."""
    d = tmp_path_factory.mktemp("bad")
    clip = d / "clip.mp4"
    media.write_mp4(clip, np.zeros((20, 32, 32, 3), np.uint8), 16, np.zeros(20 * 1000, np.float32),
                    16000)
    still = d / "still.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(still)
    notes = d / "notes.mp4"
    notes.write_text("not a video at all\n" * 20)
    truncated = d / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:2000])
    long = d / "long.mp4"  # over sample.max_seconds (60 s)
    media.write_mp4(long, np.zeros((62 * 16, 32, 32, 3), np.uint8), 16)
    sound = d / "sound.m4a"  # audio only
    with av.open(str(sound), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    tone = d / "tone.wav"
    _write_wav(tone, 0.5 * np.sin(np.arange(16000) / 3.0), 16000)
    long_tone = d / "long.wav"  # over sample.max_seconds
    _write_wav(long_tone, 0.5 * np.sin(np.arange(62 * 16000) / 3.0), 16000)
    folder = d / "folder.mp4"
    folder.mkdir()
    untrained = tmp_path_factory.mktemp("untrained")
    return {"clip": clip, "still": still, "notes": notes, "truncated": truncated,
            "long": long, "sound": sound, "tone": tone, "long_tone": long_tone, "dir": d,
            "folder": folder, "untrained": untrained}


def _write_wav(path, audio, rate):
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((audio * 32767).astype("<i2").tobytes())


def _cases(w, f):
    """(name, argv, words the one line must hold) for the CLI."""
    out = ["--out", str(f["dir"] / "x.mp4")]
    gen = ["generate", "--workdir", w, "--prompt", "a red circle"]
    cap = ["caption", "--workdir", w, str(f["clip"])]
    dub = ["dub", "--workdir", w, *out]
    ext = ["extend", "--workdir", w, str(f["clip"]), *out]
    ani = ["animate", "--workdir", w, "--prompt", "a red circle", *out]
    vis = ["visualize", "--workdir", w, *out]
    return [
        ("empty prompt", ["generate", "--workdir", w, "--prompt", "", *out], "--prompt is empty"),
        ("blank prompt", ["generate", "--workdir", w, "--prompt", " \t ", *out],
         "--prompt is empty"),
        ("prompt too long in characters",
         ["generate", "--workdir", w, "--prompt", "red " * 300, *out], "1200 characters"),
        ("prompt too long in tokens",
         ["generate", "--workdir", w, "--prompt", "a red circle " * 20, *out], "tokens"),
        ("Chinese prompt", ["generate", "--workdir", w, "--prompt", "一个红色的圆", *out],
         "6 words this model never read in training: '一', '个', '红', '色', '的', '圆'; it "
         "reads English"),
        ("Italian prompt",
         ["generate", "--workdir", w, "--prompt", "un cerchio rosso che rimbalza", *out],
         "'un', 'cerchio', 'rosso', 'che', 'rimbalza'"),
        ("Portuguese prompt",
         ["generate", "--workdir", w, "--prompt", "um círculo vermelho quicando", *out],
         "'círculo'"),
        ("unknown English word", ["generate", "--workdir", w, "--prompt",
                                  "a red circle zigzagging", *out], "'zigzagging'"),
        ("zero seconds", [*gen, "--seconds", "0", *out], "--seconds must be between"),
        ("negative seconds", [*gen, "--seconds", "-1", *out], "--seconds must be between"),
        ("nan seconds", [*gen, "--seconds", "nan", *out], "got nan"),
        ("infinite seconds", [*gen, "--seconds", "inf", *out], "got inf"),
        ("seconds over the limit", [*gen, "--seconds", "61", *out], "(sample.max_seconds)"),
        ("zero steps", [*gen, "--steps", "0", *out], "--steps must be a whole number from 1"),
        ("a million steps", [*gen, "--steps", "1000000", *out], "from 1 to 100"),
        ("fractional steps", [*gen, "--steps", "2.5", *out], "invalid int value: '2.5'"),
        ("nan guidance", [*gen, "--cfg-video", "nan", *out], "--cfg-video must be from 0"),
        ("infinite guidance", [*gen, "--cfg-audio", "inf", *out], "--cfg-audio must be"),
        ("negative guidance", [*gen, "--cfg-video", "-1", *out], "got -1"),
        ("guidance over the limit", [*gen, "--cfg-audio", "1000", *out], "max_guidance"),
        ("negative seed", [*gen, "--seed", "-1", *out], "--seed must be a whole number"),
        ("huge seed", [*gen, "--seed", "1180591620717411303424", *out], "2147483647"),
        ("unknown solver", [*gen, "--solver", "rk4", *out], "--solver must be one of"),
        ("zero shift", [*gen, "--shift", "0", *out], "--shift must be a finite number > 0"),
        ("zero top-p", [*cap, "--top-p", "0"], "--top-p must be in (0, 1]"),
        ("negative temperature", [*cap, "--temperature", "-1"], "--temperature must be"),
        ("zero caption tokens", [*cap, "--max-tokens", "0"], "--max-tokens must be >= 1"),
        ("zero beams", [*cap, "--beams", "0"], "--beams must be a whole number from 1 to 16"),
        ("beams at a temperature", [*cap, "--beams", "4", "--temperature", "0.5"],
         "--beams 4 is beam search, which decodes at temperature 0, got temperature 0.5"),
        ("caption in a language not trained", [*cap, "--lang", "fr"],
         "--lang is 'fr'; this model writes English (en)"),
        ("output not mp4", [*gen, "--out", str(f["dir"] / "x.avi")], "name it *.mp4"),
        ("output folder missing", [*gen, "--out", str(f["dir"] / "no" / "x.mp4")],
         "does not exist"),
        ("output is a folder", [*gen, "--out", str(f["folder"])], "is a folder"),
        ("missing input", ["caption", "--workdir", w, str(f["dir"] / "nope.mp4")],
         "no such file"),
        ("caption an image", ["caption", "--workdir", w, str(f["still"])],
         "still.png is an image"),
        ("dub an image", [*dub, str(f["still"])], "still.png is an image"),
        ("extend an image", ["extend", "--workdir", w, str(f["still"]), "--seconds", "1", *out],
         "still.png is an image"),
        ("caption a text file", ["caption", "--workdir", w, str(f["notes"])], "notes.mp4"),
        ("caption a truncated mp4", ["caption", "--workdir", w, str(f["truncated"])],
         "truncated.mp4"),
        ("dub audio only", [*dub, str(f["sound"])], "sound.m4a has no video stream"),
        ("dub a video over the limit", [*dub, str(f["long"])], "long.mp4 is 62.0 s long"),
        ("animate audio only", [*ani, "--image", str(f["sound"])], "sound.m4a has no picture"),
        ("visualize a missing sound", [*vis, str(f["dir"] / "none.wav")], "no such file"),
        ("visualize an image", [*vis, str(f["still"])], "still.png has no audio track"),
        ("visualize a video without sound", [*vis, str(f["long"])],
         "long.mp4 has no audio track"),
        ("visualize a text file", [*vis, str(f["notes"])], "notes.mp4"),
        ("visualize a truncated mp4", [*vis, str(f["truncated"])], "truncated.mp4"),
        ("visualize a silent sound", [*vis, str(f["sound"])],
         "sound.m4a is silent (it never peaks above -90 dBFS): there is nothing to make a "
         "video for"),
        ("visualize a sound over the limit", [*vis, str(f["long_tone"])],
         "long.wav is 62.0 s long; sounds up to 60 s"),
        ("visualize past the sound's end", [*vis, str(f["tone"]), "--seconds", "2"],
         "--seconds is 2, but the sound is 1.00 s long"),
        ("visualize zero seconds", [*vis, str(f["tone"]), "--seconds", "0"],
         "--seconds must be between"),
        ("visualize with unknown words", [*vis, str(f["tone"]), "--prompt", "a zigzag"],
         "'zigzag'"),
        ("animate a missing image", [*ani, "--image", str(f["dir"] / "none.png")],
         "no such file"),
        ("extend by zero", [*ext, "--seconds", "0"], "--seconds must be between"),
        ("extend past the limit", [*ext, "--seconds", "100"], "--seconds must be between"),
        ("missing workdir", ["generate", "--workdir", str(f["dir"] / "none"), "--prompt", "a",
                             *out], "does not exist"),
        ("workdir without a model", ["generate", "--workdir", str(f["untrained"]),
                                     "--prompt", "a", *out], "has no trained model"),
        ("checkpoint not there", [*gen, "--checkpoint", "999", *out], "has no checkpoint 999"),
        ("missing flag", ["generate", "--workdir", w, *out], "required: --prompt"),
    ]


def test_cli_refuses_the_corpus_in_one_line_before_the_model_loads(trained_workdir, files,
                                                                   capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was checked")

    monkeypatch.setattr(pipeline, "load_model", no_model)
    main(["generate", "--workdir", str(trained_workdir), "--prompt", "", "--out", "x.mp4"])
    capsys.readouterr()  # the first call pays the imports
    cases = _cases(str(trained_workdir), files)
    assert len(cases) >= 40
    rows = []
    for name, argv, words in cases:
        start = time.perf_counter()
        try:
            code = main(argv)
        except SystemExit as e:  # argparse exits
            code = e.code
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        rows.append((name, code, seconds))
        assert code == 2, (name, err)
        assert len(lines) == 1 and lines[0].startswith("o1: error: "), (name, err)
        assert words in lines[0], (name, words, err)
        assert seconds < LIMIT_S, (name, seconds)
    assert not (files["dir"] / "x.mp4").exists()  # nothing half-written
    print("\n".join(f"{n:<32} exit {c}  {s * 1e3:6.0f} ms" for n, c, s in rows))


def test_python_api_refuses_before_the_model_loads(trained_workdir, files):
    start = time.perf_counter()
    pipe = Pipeline(trained_workdir)
    frames = np.zeros((33, 32, 32, 3), np.uint8)
    clip = Clip(frames, 16.0, np.zeros(33 * 1000, np.float32), 16000)

    def tone(n):
        return (0.5 * np.sin(np.arange(n) / 3.0)).astype(np.float32)
    cases = [
        (lambda: pipe.generate(""), "prompt is empty"),
        (lambda: pipe.generate(None), "prompt is empty"),
        (lambda: pipe.generate(42), "prompt must be text"),
        (lambda: pipe.generate("一个红色的圆"), "never read in training"),
        (lambda: pipe.generate("a red circle", seconds=math.nan), "seconds must be between"),
        (lambda: pipe.generate("a red circle", seconds=True), "seconds must be between"),
        (lambda: pipe.generate("a red circle", flow=FlowOptions(steps=10**6)),
         "steps must be a whole number from 1 to 100"),
        (lambda: pipe.generate("a red circle", seed=-1), "seed must be"),
        (lambda: pipe.generate("a red circle", seed=2**70), "seed must be"),
        (lambda: FlowOptions(cfg_video=math.nan), "cfg_video must be"),
        (lambda: FlowOptions(solver="rk4"), "solver must be one of"),
        (lambda: TextOptions(top_p=0), "top_p must be in"),
        (lambda: pipe.caption("clip.mp4"), "video must be a Clip"),
        (lambda: pipe.caption(clip, TextOptions(temperature=-1)), "temperature"),
        (lambda: pipe.caption(clip, language="zh"), "lang is 'zh'; this model writes English"),
        (lambda: pipe.dub(Clip(frames[:0], 16.0, None, 16000)), "video must be a Clip"),
        (lambda: pipe.dub(Clip(np.zeros((62 * 16, 32, 32, 3), np.uint8), 16.0, None, 16000)),
         "video must be between"),
        (lambda: pipe.animate(frames[0, :16], "a red circle"), "image is (16, 32, 3)"),
        (lambda: pipe.visualize("tone.wav"), "sound must be a Clip with audio"),
        (lambda: pipe.visualize(Clip(frames, 16.0, None, None)),
         "sound must be a Clip with audio"),
        (lambda: pipe.visualize(Clip(frames, 16.0, np.zeros((2, 16000), np.float32), 16000)),
         "sound audio must be finite mono samples [N], got shape (2, 16000)"),
        (lambda: pipe.visualize(Clip(frames[:0], 16.0, np.zeros(16000, np.float32), 16000)),
         "sound is silent"),
        (lambda: pipe.visualize(Clip(frames[:0], 16.0, tone(61 * 16000), 16000)),
         "sound is 61.00 s long; sounds up to 60 s"),
        (lambda: pipe.visualize(Clip(frames[:0], 16.0, tone(16000), 16000), seconds=1.5),
         "seconds is 1.5, but the sound is 1.00 s long"),
        (lambda: pipe.visualize(clip, "一个红色的圆"), "never read in training"),
        (lambda: pipe.extend(clip, 100.0), "seconds must be between"),
        (lambda: pipe.extend(clip, 59.5), "would make the clip 61.56 s long"),
        (lambda: Pipeline(trained_workdir, step=999), "has no checkpoint 999"),
        (lambda: Checks(files["untrained"]), "has no trained model"),
    ]
    for call, words in cases:
        with pytest.raises(RequestError) as caught:
            call()
        assert words in str(caught.value), (words, str(caught.value))
    assert not pipe.loaded
    assert time.perf_counter() - start < LIMIT_S * 2


def test_limits_come_from_the_config_and_are_named(trained_workdir):
    checks = Checks(trained_workdir)
    with pytest.raises(RequestError) as caught:
        checks.flow(steps=101)
    e = caught.value
    assert e.field == "steps" and e.named(lambda f: "--" + f).startswith("--steps must be")
    pipe = Pipeline(trained_workdir, limits={"max_steps": 200, "max_seconds": 5})
    assert pipe.checks.flow(steps=150).steps == 150
    with pytest.raises(RequestError, match=r"between 0.0625 \(one frame\) and 5 seconds"):
        pipe.generate("a red circle", seconds=6)
    with pytest.raises(RequestError, match="max_steps must be >= 1"):
        Pipeline(trained_workdir, limits={"max_steps": 0})


def test_a_workdir_without_a_word_list_still_refuses_what_it_cannot_spell(trained_workdir,
                                                                          tmp_path):
    import shutil

    from o1.tokenizers import text as text_lib

    workdir = shutil.copytree(trained_workdir, tmp_path / "w")
    (workdir / text_lib.WORDS_FILENAME).unlink()
    checks = Checks(workdir)
    assert checks.prompt("a red circle zigzagging") is not None  # spelt from pieces
    with pytest.raises(RequestError, match="'一', '个', '红', '色', '的', '圆'"):
        checks.prompt("a red 一个红色的圆")
