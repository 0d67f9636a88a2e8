"""The AV-Shapes world: what can appear in a clip, how it sounds, and the words for it.

Everything else about AV-Shapes reads these tables: the generator (`o1.avshapes.generator`),
the measurements of a clip (`o1.avshapes.analysis`), the judge (`o1.eval.judge`) and the
caption reader (`o1.eval.captions`). This module imports nothing from o1, so the config can
validate colour and shape names against it.
"""

from __future__ import annotations

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

# Words a caption may use for each attribute; colour names are always used verbatim.
SHAPE_WORDS = {"circle": ("circle", "ball", "disc"), "square": ("square", "block"),
               "triangle": ("triangle",)}
SPEED_ADJECTIVES = {"slow": ("slow", "slow-moving", "unhurried"),
                    "fast": ("fast", "quick", "speedy", "fast-moving")}
SPEED_ADVERBS = {"slow": ("slowly", "lazily", "at a slow pace"),
                 "fast": ("quickly", "rapidly", "at high speed")}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
