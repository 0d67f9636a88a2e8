"""AV-Shapes: determinism, sample-exact tone onsets, wall contact, captions, held-out pairs."""

import json

import numpy as np
import pytest

from o1 import configs
from o1.avshapes import generator, world
from o1.config import COLOURS, SHAPES

SPLITS = ("train", "validation", "test", "holdout")


@pytest.fixture(scope="module")
def silent_config():
    """Tiny geometry without background noise, so every non-zero sample comes from a tone."""
    return configs.get("tiny", ["data.noise_level=0"])


def _clips(config, n, splits=SPLITS):
    return [generator.generate(config, s, i) for s in splits for i in range(n)]


def test_same_seed_same_bytes(tiny_config):
    a = generator.generate(tiny_config, "train", 7)
    b = generator.generate(tiny_config, "train", 7)
    assert a.video.tobytes() == b.video.tobytes()
    assert a.audio.tobytes() == b.audio.tobytes()
    assert a.caption == b.caption
    assert json.dumps(a.metadata) == json.dumps(b.metadata)
    c = generator.generate(tiny_config, "train", 7, seed=1)
    assert a.video.tobytes() != c.video.tobytes()


def test_clip_geometry(tiny_config):
    clip = generator.generate(tiny_config, "train", 0)
    d = tiny_config.data
    assert clip.video.shape == (tiny_config.num_frames, d.height, d.width, 3)
    assert clip.video.dtype == np.uint8
    assert (tiny_config.num_frames - 1) % tiny_config.video_vae.t_down == 0
    assert clip.audio.shape == (tiny_config.num_frames * d.sample_rate // d.fps,)
    assert clip.audio.dtype == np.float32
    assert np.abs(clip.audio).max() <= 1.0


def test_every_bounce_starts_its_tone_on_its_exact_sample(silent_config):
    d = silent_config.data
    burst = round(d.tone_seconds * d.sample_rate)
    checked = 0
    for clip in _clips(silent_config, 12):
        events = clip.metadata["bounces"]
        event_samples = {ev["sample"] for ev in events}
        audio = clip.audio
        # No sound without a bounce: outside each bounce's burst the waveform is silent.
        sounding = np.zeros(len(audio), bool)
        for start in event_samples:
            sounding[start:start + burst] = True
        assert events and not audio[~sounding].any()
        for ev in events:
            assert ev["sample"] == ev["frame"] * d.samples_per_frame
            assert ev["time"] == pytest.approx(ev["frame"] / d.fps, abs=0)
            s = ev["sample"]
            if any(0 < s - other < burst for other in event_samples):
                continue  # an earlier tone still sounds; the isolated onsets prove timing
            assert audio[s - 1] == 0, "sound before the bounce"
            objects = {e["object"] for e in events if e["sample"] == s}
            assert audio[s] == pytest.approx(world.TONE_AMPLITUDE * len(objects), rel=1e-6)
            if len(objects) > 1:
                continue
            obj = clip.metadata["objects"][ev["object"]]
            spectrum = np.abs(np.fft.rfft(audio[s:s + burst], n=16 * burst))
            peak_hz = np.argmax(spectrum) * d.sample_rate / (16 * burst)
            assert peak_hz == pytest.approx(obj["pitch_hz"], rel=0.03)
            checked += 1
    assert checked >= 40


def _edge_coverage(frame, wall, rows, cols, bg, rgb):
    """How much of the object's colour the wall's edge pixels show (0 = background, 1 = object)."""
    edge = {"left": frame[rows, 0], "right": frame[rows, -1],
            "top": frame[0, cols], "bottom": frame[-1, cols]}[wall].astype(np.float32)
    direction = np.asarray(rgb, np.float32) - bg
    return float(((edge - bg) @ direction / (direction @ direction)).max())


def _gap(positions, event, e, d, frame):
    """Pixels between the bouncing object's edge and the wall it hits, on `frame`."""
    x, y = positions[frame, event["object"]]
    return {"left": x - e, "right": d.width - (x + e), "top": y - e,
            "bottom": d.height - (y + e)}[event["wall"]]


def test_object_touches_the_wall_on_the_bounce_frame(tiny_config):
    d = tiny_config.data
    checked = 0
    for clip in _clips(tiny_config, 8):
        positions = np.asarray(clip.metadata["positions"])  # [T, O, 2]
        bg = np.asarray(clip.metadata["background_rgb"], np.float32)
        for ev in clip.metadata["bounces"]:
            obj = clip.metadata["objects"][ev["object"]]
            e = obj["half_extent_px"]

            assert _gap(positions, ev, e, d, ev["frame"]) == pytest.approx(0, abs=1e-3)
            assert _gap(positions, ev, e, d, ev["frame"] - 1) > 0
            # The object's colour reaches the wall's edge pixels on that very frame.
            x, y = positions[ev["frame"], ev["object"]]
            rows = slice(max(0, int(y - e)), int(np.ceil(y + e)))
            cols = slice(max(0, int(x - e)), int(np.ceil(x + e)))
            now = _edge_coverage(clip.video[ev["frame"]], ev["wall"], rows, cols, bg, obj["rgb"])
            assert now > 0.2
            checked += 1
    assert checked >= 30


def test_captions_name_every_attribute_of_every_object(tiny_config):
    speed_words = {s: world.SPEED_ADJECTIVES[s] + world.SPEED_ADVERBS[s]
                   for s in ("slow", "fast")}
    captions = set()
    for clip in _clips(tiny_config, 25):
        text = clip.caption
        captions.add(text)
        for obj in clip.metadata["objects"]:
            assert obj["colour"] in text
            assert any(w in text for w in world.SHAPE_WORDS[obj["shape"]]), text
            assert any(w in text for w in speed_words[obj["speed"]]), text
    assert len(captions) == 100  # templates, synonyms and word order vary


def test_palette_colours_are_far_apart():
    rgb = np.asarray(list(COLOURS.values()), np.float32)
    dist = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1))
    assert len(COLOURS) >= 6
    assert dist[~np.eye(len(rgb), dtype=bool)].min() > 100
    for bg in world.BACKGROUNDS.values():
        assert np.sqrt(((rgb - np.asarray(bg)) ** 2).sum(-1)).min() > 150


def test_held_out_pairs_only_in_holdout_split():
    config = configs.get("quickstart", ["data.height=32", "data.width=32"])
    held = config.data.holdout_pairs
    assert len(held) == 2
    for split in ("train", "validation", "test"):
        for i in range(150 if split == "train" else 30):
            objects = generator.generate(config, split, i).metadata["objects"]
            assert not {(o["colour"], o["shape"]) for o in objects} & held
    for i in range(30):
        objects = generator.generate(config, "holdout", i).metadata["objects"]
        assert {(o["colour"], o["shape"]) for o in objects} & held
    seen = {(o["colour"], o["shape"]) for i in range(150)
            for o in generator.generate(config, "train", i).metadata["objects"]}
    assert len(seen) == len(COLOURS) * len(SHAPES) - 2
