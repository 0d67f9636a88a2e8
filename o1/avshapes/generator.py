"""AV-Shapes: coloured shapes bounce in a box, and every wall bounce makes a tone.

The world is exact, so later stages can measure quality without pretrained judges:

* 1 to `max_objects` objects, each a (colour, shape, speed). Colours have distinct hues and each
  colour sets the pitch of the object's tone; the shape sets its waveform (circle -> sine,
  square -> square, triangle -> triangle).
* Motion is stepped per video frame. When a step would cross a wall the object is placed
  touching that wall on that frame and its velocity is mirrored (speed is kept: elastic).
  So a bounce happens *on* a frame: at time `frame / fps`, audio sample
  `frame * samples_per_frame`, and the tone burst's first (loudest) sample is that sample.
* Each clip is generated from its own RNG seeded by (seed, split, index), so a clip's bytes
  depend only on those three numbers and the config, never on generation order.

Axes: T frames, H x W pixels, N audio samples.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from o1.avshapes.world import (
    BACKGROUNDS,
    COLOURS,
    HALF_EXTENT,
    LANGUAGES,
    LEXICONS,
    NUMBER_WORDS,
    PITCH_HZ,
    SHAPE_WORDS,
    SHAPES,
    SPEED_ADJECTIVES,
    SPEED_ADVERBS,
    SPEED_BOX_PER_S,
    SPEEDS,
    SPLIT_IDS,
    SUPERSAMPLE,
    TONE_AMPLITUDE,
    WAVEFORMS,
    Lexicon,
    agree,
)
from o1.config import Config, ConfigError


@dataclasses.dataclass(frozen=True)
class Example:
    """One generated example."""

    video: np.ndarray  # uint8 [T, H, W, 3]
    audio: np.ndarray  # float32 [N], N = T * samples_per_frame
    caption: str
    metadata: dict[str, Any]


# A clip's captions in the languages other than its own draw from generators of their own
# (keyed by this and the language's place in `text.languages`): the clip's bytes stay the same.
_LANGUAGE_STREAM = 1


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def allowed_pairs(config: Config, split: str) -> list[tuple[str, str]]:
    """Colour+shape pairs objects of `split` may take; held-out pairs only occur in `holdout`."""
    held = config.data.holdout_pairs
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    if split == "holdout":
        if not held:
            raise ValueError("the holdout split needs data.holdout pairs, e.g. "
                             "data.holdout='[red triangle]'")
        return pairs
    return [p for p in pairs if p not in held]


def _sample_objects(config: Config, split: str, rng: np.random.Generator) -> list[dict]:
    d = config.data
    count = int(rng.integers(d.min_objects, d.max_objects + 1))
    pairs = allowed_pairs(config, split)
    held = sorted(d.holdout_pairs)
    chosen: list[tuple[str, str]] = []
    if split == "holdout":
        # Every holdout clip shows at least one held-out pair.
        chosen.append(held[int(rng.integers(len(held)))])
    while len(chosen) < count:
        # Distinct colours keep captions unambiguous and pitches distinct.
        options = [p for p in pairs if p[0] not in {c for c, _ in chosen}]
        chosen.append(options[int(rng.integers(len(options)))])
    order = rng.permutation(len(chosen))
    objects = []
    radius = d.object_size * min(d.height, d.width) / 2
    for i in order:
        colour, shape = chosen[i]
        speed = SPEEDS[int(rng.integers(len(SPEEDS)))]
        objects.append({
            "colour": colour, "shape": shape, "speed": speed,
            "rgb": list(COLOURS[colour]), "pitch_hz": PITCH_HZ[colour],
            "waveform": WAVEFORMS[shape],
            "half_extent_px": float(radius * HALF_EXTENT[shape] * rng.uniform(0.9, 1.1)),
        })
    return objects


def _simulate(config: Config, objects: list[dict], rng: np.random.Generator
              ) -> tuple[np.ndarray, list[dict]]:
    """Returns centre positions float64 [T, O, 2] as (x, y) pixels, and the bounce events."""
    d = config.data
    steps = config.num_frames
    size = np.array([d.width, d.height], np.float64)
    positions = np.zeros((steps, len(objects), 2))
    events = []
    for o, obj in enumerate(objects):
        e = obj["half_extent_px"]
        lo, hi = np.array([e, e]), size - e
        pos = rng.uniform(lo + 1, hi - 1)
        # Directions at least 15 degrees off the axes, so objects visit both wall pairs.
        angle = rng.uniform(np.radians(15), np.radians(75)) + np.pi / 2 * rng.integers(4)
        speed_px = SPEED_BOX_PER_S[obj["speed"]] * min(d.width, d.height) / d.fps
        vel = speed_px * np.array([np.cos(angle), np.sin(angle)])
        positions[0, o] = pos
        for frame in range(1, steps):
            pos = pos + vel
            for axis, (low_wall, high_wall) in enumerate((("left", "right"), ("top", "bottom"))):
                wall = None
                if pos[axis] <= lo[axis]:
                    pos[axis], wall = lo[axis], low_wall
                elif pos[axis] >= hi[axis]:
                    pos[axis], wall = hi[axis], high_wall
                if wall is not None:
                    vel[axis] = -vel[axis]
                    events.append({
                        "object": o, "wall": wall, "frame": frame,
                        "time": frame / d.fps, "sample": frame * d.samples_per_frame,
                    })
            positions[frame, o] = pos
    events.sort(key=lambda ev: (ev["frame"], ev["object"], ev["wall"]))
    return positions, events


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, e: float) -> np.ndarray:
    """True where the offset (dx, dy) from the centre lies inside a shape of half-extent e."""
    if shape == "circle":
        return dx * dx + dy * dy <= e * e
    if shape == "square":
        return (np.abs(dx) <= e) & (np.abs(dy) <= e)
    # Isosceles triangle filling its bounding box: apex at the top, base at the bottom.
    return (dy <= e) & (np.abs(dx) <= (dy + e) / 2)


def render(config: Config, objects: list[dict], positions: np.ndarray,
           background: tuple[int, int, int]) -> np.ndarray:
    """Draws anti-aliased objects over the background: uint8 [T, H, W, 3]."""
    d = config.data
    s = SUPERSAMPLE
    # Pixel (r, c) covers [c, c + 1) x [r, r + 1); sample it at s x s sub-pixel centres.
    sub = (np.arange(s) + 0.5) / s
    ys = (np.arange(d.height)[:, None] + sub[None, :]).reshape(-1)  # [H*s]
    xs = (np.arange(d.width)[:, None] + sub[None, :]).reshape(-1)  # [W*s]
    frames = np.empty((len(positions), d.height, d.width, 3), np.uint8)
    bg = np.asarray(background, np.float32)
    for t, frame_pos in enumerate(positions):
        canvas = np.broadcast_to(bg, (d.height, d.width, 3)).copy()
        for obj, (cx, cy) in zip(objects, frame_pos, strict=True):
            mask = _shape_mask(obj["shape"], xs[None, :] - cx, ys[:, None] - cy,
                               obj["half_extent_px"])  # [H*s, W*s]
            cover = mask.reshape(d.height, s, d.width, s).mean(axis=(1, 3))[..., None]
            canvas = canvas * (1 - cover) + np.asarray(obj["rgb"], np.float32) * cover
        frames[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return frames


def tone(waveform: str, pitch_hz: float, num_samples: int, sample_rate: int) -> np.ndarray:
    """A decaying burst whose first sample is its peak, so the onset sample is unambiguous."""
    t = np.arange(num_samples) / sample_rate
    phase = (pitch_hz * t) % 1.0  # cycles; 0 = peak of every waveform below
    if waveform == "sine":
        wave = np.cos(2 * np.pi * phase)
    elif waveform == "square":
        wave = np.where(phase < 0.5, 1.0, -1.0)
    elif waveform == "triangle":
        wave = 1.0 - 4.0 * np.minimum(phase, 1.0 - phase)
    else:
        raise ValueError(f"unknown waveform {waveform!r}")
    envelope = np.exp(-t / (num_samples / sample_rate / 4))
    # A short linear fade at the end avoids a click where the burst is cut.
    fade = min(num_samples, max(1, sample_rate // 200))
    envelope[-fade:] *= np.linspace(1.0, 0.0, fade)
    return (TONE_AMPLITUDE * wave * envelope).astype(np.float32)


def synthesize(config: Config, objects: list[dict], events: list[dict],
               rng: np.random.Generator) -> np.ndarray:
    """The waveform float32 [N]: background noise plus a tone burst per bouncing object."""
    d = config.data
    n = config.num_samples
    audio = np.zeros(n, np.float64)
    if d.noise_level > 0:
        audio += rng.normal(0.0, d.noise_level, n)
    burst = max(1, round(d.tone_seconds * d.sample_rate))
    # A corner hit touches two walls on one frame; it still sounds one tone.
    for o, sample in sorted({(ev["object"], ev["sample"]) for ev in events}):
        obj = objects[o]
        wave = tone(obj["waveform"], obj["pitch_hz"], burst, d.sample_rate)[: n - sample]
        audio[sample: sample + len(wave)] += wave
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def _object_phrase(obj: dict, rng: np.random.Generator, with_speed: bool = True) -> str:
    shape = _pick(rng, SHAPE_WORDS[obj["shape"]])
    if not with_speed:
        return f"{obj['colour']} {shape}"
    if rng.random() < 0.5:
        return f"{_pick(rng, SPEED_ADJECTIVES[obj['speed']])} {obj['colour']} {shape}"
    return f"{obj['colour']} {shape} moving {_pick(rng, SPEED_ADVERBS[obj['speed']])}"


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(objects: list[dict], background: str, rng: np.random.Generator,
            language: str = "en") -> str:
    """A templated description naming the colour, shape and speed of every object.

    Args:
      objects: dicts with 'colour', 'shape' and 'speed'.
      background: a BACKGROUNDS key.
      rng: draws the template and the words.
      language: one of LANGUAGES. English draws from `rng` as it did before there were other
        languages, so the same rng still gives the same caption.

    Raises:
      ValueError: for a language not in LANGUAGES.
    """
    if language == "en":
        return _caption_english(objects, background, rng)
    if language not in _GRAMMARS:
        raise ValueError(f"unknown caption language {language!r}; known: {', '.join(LANGUAGES)}")
    return _caption_from_lexicon(_GRAMMARS[language], LEXICONS[language], objects, background,
                                 rng)


def _caption_english(objects: list[dict], background: str, rng: np.random.Generator) -> str:
    verb = _pick(rng, ("bounces around", "bounces off the walls", "moves around",
                       "ricochets around", "drifts and bounces around"))
    place = _pick(rng, ("in the box", "inside the frame", f"in a dark {background} box",
                        f"against {_article(background)} background", "in a closed box"))
    if len(objects) == 1:
        phrase = _article(_object_phrase(objects[0], rng))
        return _pick(rng, (
            f"{phrase} {verb} {place}",
            f"{place}, {phrase} {verb}",
            f"{phrase}, beeping at every wall it hits",
            f"one {_object_phrase(objects[0], rng)} {verb} {place}",
            f"there is {phrase} that {verb} {place}",
        ))
    count = NUMBER_WORDS[len(objects)]
    speeds = {o["speed"] for o in objects}
    if len(speeds) == 1 and rng.random() < 0.4:
        # The shared speed named once: "two fast shapes, a red circle and a blue square, ...".
        speed = _pick(rng, SPEED_ADJECTIVES[speeds.pop()])
        parts = [_article(_object_phrase(o, rng, with_speed=False)) for o in objects]
        listed = ", ".join(parts[:-1]) + " and " + parts[-1]
        return _pick(rng, (f"{count} {speed} shapes, {listed}, bounce around {place}",
                           f"{listed}: {count} {speed} objects {place}"))
    parts = [_article(_object_phrase(o, rng)) for o in objects]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1]
    return _pick(rng, (
        f"{listed} bounce around {place}",
        f"{count} shapes {place}: {listed}",
        f"{count} objects {place}, {listed}, each beeping when it hits a wall",
        f"{listed} bounce off the walls {place}",
    ))


@dataclasses.dataclass(frozen=True)
class _Grammar:
    """How captions in a language other than English are put together from its `Lexicon`.

    Templates are `str.format` strings. An object's fields are `article`, `noun`, `colour`,
    `speed` (an adjective) and `adverb`, agreeing with the noun. A caption's fields are, for one
    object, `phrase` (the object with its speed), `bare` (without it), `adverb`, `verb` and
    `place`; for several, `listed` (their phrases), `clauses` (one per object, at its own
    speed), `count`, `group` (a plural noun for them), `each`, `verb` and `place`; and where
    one speed is named for all, `listed` holds the bare objects and `speed` (agreeing with
    `group`), `adverb`, `all`, `all_count` and `all_speed` (agreeing with the objects
    themselves: "tutte e due lente" for two balls) name it.
    """

    phrases: tuple[str, ...]  # an object with its speed
    bare: tuple[str, ...]  # an object without its speed
    clause: str  # an object that does `verb` at its speed: `bare`, `adverb`, `verb`
    verbs: tuple[tuple[str, str], ...]  # (singular, plural)
    places: tuple[str, ...]  # "{bg}" is the background's name
    single: tuple[str, ...]  # captions of one object
    several: tuple[str, ...]  # captions of several objects, each with its own speed
    shared: tuple[str, ...]  # captions of several objects of one speed, named once
    separator: str  # between listed objects but the last two
    conjunction: str  # between the last two listed objects
    clause_separator: str  # between clauses
    each: str = ""  # "each one", agreeing with `group` (see `world.agree`)
    all: str = ""  # "all" or "the", agreeing with the objects


_GRAMMARS = {
    "it": _Grammar(
        phrases=("{article} {noun} {colour} {speed}",
                 "{article} {noun} {colour} che si muove {adverb}"),
        bare=("{article} {noun} {colour}",),
        clause="{bare} {verb} {adverb}",
        verbs=(("rimbalza", "rimbalzano"),
               ("rimbalza contro le pareti", "rimbalzano contro le pareti"),
               ("rimbalza qua e là", "rimbalzano qua e là"),
               ("va avanti e indietro", "vanno avanti e indietro")),
        places=("nella scatola", "dentro l'inquadratura", "in una scatola scura color {bg}",
                "su uno sfondo color {bg}", "in una scatola chiusa"),
        single=("{phrase} {verb} {place}",
                "{place} {verb} {phrase}",
                "{phrase}, con un bip a ogni parete che tocca",
                "solo {phrase} {verb} {place}",
                "c'è {phrase} {place}",
                "{bare} {verb} {adverb} {place}"),
        several=("{count} {group} {place}: {listed}",
                 "{listed}: {count} {group} che {verb} {place}",
                 "{place} {verb} {count} {group}: {listed}",
                 "ci sono {count} {group} {place}: {listed}, e {each} suona quando tocca una "
                 "parete",
                 "{place} ci sono {count} {group}: {clauses}"),
        shared=("{count} {group} {speed}, {listed}, {verb} {place}",
                "{listed}: {count} {group} {speed} {place}",
                "{listed} {verb} {place}, {all} e {all_count} {all_speed}"),
        separator=", ", conjunction=" e ", clause_separator="; ",
        each="ognuno/ognuna", all="tutti/tutte",
    ),
    "pt": _Grammar(
        phrases=("{article} {noun} {colour} {speed}",
                 "{article} {noun} {colour} que se move {adverb}"),
        bare=("{article} {noun} {colour}",),
        clause="{bare} {verb} {adverb}",
        verbs=(("quica", "quicam"), ("ricocheteia", "ricocheteiam"),
               ("bate nas paredes", "batem nas paredes"), ("vai e volta", "vão e voltam")),
        places=("na caixa", "dentro do quadro", "numa caixa escura cor de {bg}",
                "sobre um fundo cor de {bg}", "numa caixa fechada"),
        single=("{phrase} {verb} {place}",
                "{place}, {phrase} {verb}",
                "{phrase}, apitando a cada parede em que bate",
                "apenas {phrase} {verb} {place}",
                "há {phrase} {place}",
                "{bare} {verb} {adverb} {place}"),
        several=("{count} {group} {place}: {listed}",
                 "{listed}: {count} {group} que {verb} {place}",
                 "{place} {verb} {count} {group}: {listed}",
                 "há {count} {group} {place}: {listed}, e {each} apita quando bate numa parede",
                 "{place} há {count} {group}: {clauses}"),
        shared=("{count} {group} {speed}, {listed}, {verb} {place}",
                "{listed}: {count} {group} {speed} {place}",
                "{listed} {verb} {place}; {all} {all_count} são {all_speed}"),
        separator=", ", conjunction=" e ", clause_separator="; ",
        each="cada um/cada uma", all="os/as",
    ),
    # No spaces; a number counts with the measure word 个, and modifiers come before the noun.
    "zh": _Grammar(
        phrases=("一个{speed}的{colour}{noun}",),
        bare=("一个{colour}的{noun}", "一个{colour}{noun}"),
        clause="{bare}{adverb}{verb}",
        verbs=tuple((v, v) for v in ("弹跳", "来回弹跳", "四处弹跳", "来回移动", "弹来弹去")),
        places=("在盒子里", "在画面中", "在{bg}的盒子里", "在{bg}的背景上", "在封闭的盒子里"),
        single=("{phrase}{place}{verb}",
                "{bare}{place}{adverb}{verb}",
                "{place}，{bare}正{adverb}{verb}",
                "{place}有{phrase}，每次碰到墙壁就会发出声音",
                "只有{phrase}{place}{verb}"),
        several=("{count}个{group}{place}{verb}：{listed}",
                 "{place}有{count}个{group}：{listed}",
                 "{listed}，{count}个{group}{place}{verb}",
                 "{place}有{count}个{group}：{clauses}"),
        shared=("{count}个{speed}的{group}：{listed}，{place}{verb}",
                "{listed}，{count}个{group}都{place}{adverb}{verb}",
                "{place}有{count}个{speed}的{group}：{listed}"),
        separator="、", conjunction="和", clause_separator="，",
    ),
}


def _object_words(lexicon: Lexicon, obj: dict, rng: np.random.Generator) -> dict[str, str]:
    """An object's template fields, each agreeing with the noun drawn for its shape."""
    noun = _pick(rng, lexicon.shapes[obj["shape"]])
    return {"article": agree(lexicon.numbers[1], noun.gender), "noun": noun.word,
            "colour": agree(lexicon.colours[obj["colour"]], noun.gender),
            "speed": agree(_pick(rng, lexicon.speed_adjectives[obj["speed"]]), noun.gender),
            "adverb": _pick(rng, lexicon.speed_adverbs[obj["speed"]]), "gender": noun.gender}


def _caption_from_lexicon(grammar: _Grammar, lexicon: Lexicon, objects: list[dict],
                          background: str, rng: np.random.Generator) -> str:
    """`caption` in the language of `grammar` and `lexicon`."""
    singular, plural = _pick(rng, grammar.verbs)
    place = _pick(rng, grammar.places).format(bg=lexicon.backgrounds[background])
    fields = [_object_words(lexicon, o, rng) for o in objects]
    bare = [_pick(rng, grammar.bare).format(**f) for f in fields]
    if len(objects) == 1:
        return _pick(rng, grammar.single).format(
            phrase=_pick(rng, grammar.phrases).format(**fields[0]), bare=bare[0],
            adverb=fields[0]["adverb"], verb=singular, place=place)

    def listed(parts: list[str]) -> str:
        return grammar.separator.join(parts[:-1]) + grammar.conjunction + parts[-1]

    group = _pick(rng, lexicon.group_nouns)
    count = len(objects)
    common = {"count": agree(lexicon.numbers[count], group.gender, plural=True),
              "group": group.word, "each": agree(grammar.each, group.gender), "verb": plural,
              "place": place}
    speeds = {o["speed"] for o in objects}
    if len(speeds) == 1 and rng.random() < 0.4:
        speed = speeds.pop()
        adjective = _pick(rng, lexicon.speed_adjectives[speed])
        # A word for mixed genders together is masculine; feminine only when all are.
        gender = "f" if all(f["gender"] == "f" for f in fields) else "m"
        return _pick(rng, grammar.shared).format(
            listed=listed(bare), speed=agree(adjective, group.gender, plural=True),
            adverb=_pick(rng, lexicon.speed_adverbs[speed]),
            all=agree(grammar.all, gender, plural=True),
            all_count=agree(lexicon.numbers[count], gender, plural=True),
            all_speed=agree(adjective, gender, plural=True), **common)
    phrases = [_pick(rng, grammar.phrases).format(**f) for f in fields]
    clauses = grammar.clause_separator.join(
        grammar.clause.format(bare=b, adverb=f["adverb"], verb=singular)
        for b, f in zip(bare, fields, strict=True))
    return _pick(rng, grammar.several).format(listed=listed(phrases), clauses=clauses,
                                              **common)


def generate(config: Config, split: str, index: int, seed: int | None = None) -> Example:
    """Generates clip `index` of `split`; the same arguments always give the same bytes."""
    seed = config.seed if seed is None else seed
    rng = clip_rng(seed, split, index)
    objects = _sample_objects(config, split, rng)
    bg_name = _pick(rng, sorted(BACKGROUNDS))
    positions, events = _simulate(config, objects, rng)
    video = render(config, objects, positions, BACKGROUNDS[bg_name])
    audio = synthesize(config, objects, events, rng)
    language = caption_language(config, rng)
    text = caption(objects, bg_name, rng, language)
    d = config.data
    metadata = {
        "id": f"{split}_{index:06d}", "split": split, "index": index, "seed": seed,
        "fps": d.fps, "sample_rate": d.sample_rate, "height": d.height, "width": d.width,
        "num_frames": config.num_frames, "num_samples": config.num_samples,
        "background": bg_name, "background_rgb": list(BACKGROUNDS[bg_name]),
        "objects": objects,
        # positions[t][o] = [x, y] of object o's centre in pixels on frame t
        "positions": np.round(positions, 4).tolist(),
        "bounces": events,
        "language": language,
    }
    if len(config.text.languages) > 1 and d.every_language:
        metadata["captions"] = {
            lang: text if lang == language else caption(
                objects, bg_name, np.random.default_rng([seed, SPLIT_IDS[split], index,
                                                         _LANGUAGE_STREAM, i]), lang)
            for i, lang in enumerate(config.text.languages)}
    return Example(video=video, audio=audio, caption=text, metadata=metadata)


def check_languages(config: Config) -> None:
    """Raises ConfigError when `text.languages` names a language AV-Shapes has no captions
    in."""
    unknown = [lang for lang in config.text.languages if lang not in LANGUAGES]
    if unknown:
        raise ConfigError(f"AV-Shapes has no captions in {unknown}; text.languages may name "
                          f"{', '.join(LANGUAGES)}")


def caption_language(config: Config, rng: np.random.Generator) -> str:
    """The language of a clip's caption, drawn from `config.language_p` (no draw when
    `text.languages` has one language, so such clips are those of a one-language world)."""
    check_languages(config)
    if len(config.text.languages) == 1:
        return config.text.languages[0]
    p = config.language_p
    return config.text.languages[int(rng.choice(len(p), p=list(p.values())))]
