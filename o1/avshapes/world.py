"""The AV-Shapes world: what can appear in a clip, how it sounds, and the words for it.

Everything else about AV-Shapes reads these tables: the generator (`o1.avshapes.generator`),
the measurements of a clip (`o1.avshapes.analysis`), the judge (`o1.eval.judge`) and the
caption reader (`o1.eval.captions`). This module imports nothing from o1, so the config can
validate colour and shape names against it.

Captions come in `LANGUAGES`. English has its own tables below (SHAPE_WORDS ...; the dataset
and trained models depend on them as they are); every other language has one `Lexicon`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

SHAPES = ("circle", "square", "triangle")
SPEEDS = ("slow", "fast")
# Colour names and RGB values for AV-Shapes. Hues sit 60 degrees apart at full saturation and
# mid-to-high value, so they stay distinct after downsampling to 32x32 and against the dark,
# desaturated backgrounds below.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "yellow": (235, 220, 40),
    "green": (40, 200, 60),
    "cyan": (40, 215, 225),
    "blue": (50, 80, 240),
    "magenta": (225, 50, 220),
}

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2, "holdout": 3}

# Pitches 3+ semitones apart so a pitch tracker separates any two colours.
PITCH_HZ = {"red": 330.0, "yellow": 392.0, "green": 494.0, "cyan": 587.0, "blue": 698.0,
            "magenta": 880.0}
WAVEFORMS = {"circle": "sine", "square": "square", "triangle": "triangle"}
# Dark, low-saturation backgrounds, so every object colour stands out.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "charcoal": (30, 30, 34),
    "slate": (26, 34, 44),
    "umber": (42, 33, 28),
    "moss": (28, 38, 30),
}
# Box widths per second; slow objects bounce about once in a 2 s clip, fast ones several times.
SPEED_BOX_PER_S = {"slow": 0.55, "fast": 1.3}
# Half-size of each shape's bounding box relative to the object radius; squares are shrunk so
# the three shapes have similar areas.
HALF_EXTENT = {"circle": 1.0, "square": 0.87, "triangle": 1.0}
TONE_AMPLITUDE = 0.45
SUPERSAMPLE = 4  # sub-pixel samples per axis when rendering, for anti-aliased edges

# English words a caption may use for each attribute; colour names are always used verbatim.
SHAPE_WORDS = {"circle": ("circle", "ball", "disc"), "square": ("square", "block"),
               "triangle": ("triangle",)}
SPEED_ADJECTIVES = {"slow": ("slow", "slow-moving", "unhurried"),
                    "fast": ("fast", "quick", "speedy", "fast-moving")}
SPEED_ADVERBS = {"slow": ("slowly", "lazily", "at a slow pace"),
                 "fast": ("quickly", "rapidly", "at high speed")}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

LANGUAGES = ("en", "it", "pt", "zh")


class Noun(NamedTuple):
    """A noun and its grammatical gender, which the words next to it agree with."""

    word: str
    gender: str  # "m" or "f"; "" in Chinese, which has none


def agree(forms: str, gender: str, plural: bool = False) -> str:
    """The form of a word that agrees with a noun of `gender` (and number).

    Args:
      forms: the word's forms separated by "/": one (it never changes: "blu", Chinese
        words), two (masculine/feminine: "rosso/rossa") or four (masculine singular/feminine
        singular/masculine plural/feminine plural: "lento/lenta/lenti/lente").
      gender: "m", "f", or "" for a language without gender (taken as masculine).
      plural: whether the noun is plural; two-form words have one form for both numbers.
    """
    options = forms.split("/")
    feminine = gender == "f"
    if len(options) == 4:
        return options[2 * plural + feminine]
    return options[feminine] if len(options) == 2 else options[0]


@dataclasses.dataclass(frozen=True)
class Lexicon:
    """The words captions in one language other than English use for the world.

    Words that agree with a noun are written as their "/"-separated forms (see `agree`);
    nouns carry their gender.
    """

    colours: dict[str, str]  # COLOURS key -> the colour adjective, by gender
    shapes: dict[str, tuple[Noun, ...]]  # SHAPES entry -> the nouns a native speaker uses
    speed_adjectives: dict[str, tuple[str, ...]]  # SPEEDS entry -> adjectives, 4 forms
    speed_adverbs: dict[str, tuple[str, ...]]  # SPEEDS entry -> adverbs and adverb phrases
    # 1 is the indefinite article (un/una); 2-4 count objects, agreeing with what they count
    numbers: dict[int, str]
    group_nouns: tuple[Noun, ...]  # plural nouns for the objects together ("shapes")
    backgrounds: dict[str, str]  # BACKGROUNDS key -> its colour's name


ITALIAN = Lexicon(
    colours={"red": "rosso/rossa", "yellow": "giallo/gialla", "green": "verde",
             "cyan": "ciano", "blue": "blu", "magenta": "magenta"},
    shapes={"circle": (Noun("cerchio", "m"), Noun("palla", "f"), Noun("disco", "m")),
            "square": (Noun("quadrato", "m"), Noun("blocco", "m")),
            "triangle": (Noun("triangolo", "m"),)},
    speed_adjectives={"slow": ("lento/lenta/lenti/lente",),
                      "fast": ("veloce/veloce/veloci/veloci", "rapido/rapida/rapidi/rapide",
                               "svelto/svelta/svelti/svelte")},
    speed_adverbs={"slow": ("lentamente", "piano", "adagio", "con calma"),
                   "fast": ("velocemente", "rapidamente", "a tutta velocità",
                            "ad alta velocità")},
    numbers={1: "un/una", 2: "due", 3: "tre", 4: "quattro"},
    group_nouns=(Noun("forme", "f"), Noun("oggetti", "m"), Noun("figure", "f")),
    backgrounds={"charcoal": "antracite", "slate": "ardesia", "umber": "terra d'ombra",
                 "moss": "muschio"},
)

PORTUGUESE = Lexicon(
    colours={"red": "vermelho/vermelha", "yellow": "amarelo/amarela", "green": "verde",
             "cyan": "ciano", "blue": "azul", "magenta": "magenta"},
    shapes={"circle": (Noun("círculo", "m"), Noun("bola", "f"), Noun("disco", "m")),
            "square": (Noun("quadrado", "m"), Noun("bloco", "m")),
            "triangle": (Noun("triângulo", "m"),)},
    speed_adjectives={"slow": ("lento/lenta/lentos/lentas",
                               "vagaroso/vagarosa/vagarosos/vagarosas"),
                      "fast": ("rápido/rápida/rápidos/rápidas", "veloz/veloz/velozes/velozes",
                               "ligeiro/ligeira/ligeiros/ligeiras")},
    speed_adverbs={"slow": ("lentamente", "devagar", "devagarinho", "sem pressa"),
                   "fast": ("rapidamente", "depressa", "em alta velocidade",
                            "a toda velocidade")},
    numbers={1: "um/uma", 2: "dois/duas", 3: "três", 4: "quatro"},
    group_nouns=(Noun("formas", "f"), Noun("objetos", "m"), Noun("figuras", "f")),
    backgrounds={"charcoal": "carvão", "slate": "ardósia", "umber": "terra de sombra",
                 "moss": "musgo"},
)

# Chinese words do not inflect; a number takes the measure word 个 where a caption uses it.
CHINESE = Lexicon(
    colours={"red": "红色", "yellow": "黄色", "green": "绿色", "cyan": "青色", "blue": "蓝色",
             "magenta": "品红色"},
    shapes={"circle": (Noun("圆", ""), Noun("圆形", ""), Noun("球", "")),
            "square": (Noun("方块", ""), Noun("正方形", "")),
            "triangle": (Noun("三角形", ""), Noun("三角", ""))},
    speed_adjectives={"slow": ("慢速", "缓慢", "慢悠悠"), "fast": ("快速", "飞快", "高速")},
    speed_adverbs={"slow": ("缓慢地", "慢慢地", "慢悠悠地"),
                   "fast": ("快速地", "飞快地", "迅速地")},
    numbers={1: "一", 2: "两", 3: "三", 4: "四"},
    group_nouns=(Noun("物体", ""), Noun("图形", "")),
    # Background names keep clear of the colour words above ("苔绿色" would hold 绿色).
    backgrounds={"charcoal": "炭灰色", "slate": "石板灰色", "umber": "棕褐色", "moss": "苔藓色"},
)

LEXICONS: dict[str, Lexicon] = {"it": ITALIAN, "pt": PORTUGUESE, "zh": CHINESE}
