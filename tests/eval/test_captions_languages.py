"""Captions in every language: they name every word of the world, read back to their objects,
and tell their language; the parser reads hand-written captions too."""

import functools
import re

import numpy as np
import pytest

from o1.avshapes import generator, world
from o1.config import COLOURS, SHAPES
from o1.eval import captions

OTHER_LANGUAGES = ("it", "pt", "zh")


@functools.cache
def _draws(language):
    """(objects, caption) of 1 to 4 objects, half of them all of one speed, on every
    background."""
    out = []
    for seed in range(1600):
        rng = np.random.default_rng(seed)
        colours = rng.permutation(list(COLOURS))[:1 + seed % 4]
        one_speed = world.SPEEDS[int(rng.integers(2))] if (seed // 4) % 2 else None
        objects = [{"colour": str(c), "shape": SHAPES[int(rng.integers(3))],
                    "speed": one_speed or world.SPEEDS[int(rng.integers(2))]} for c in colours]
        background = sorted(world.BACKGROUNDS)[(seed // 8) % 4]
        out.append((objects, generator.caption(objects, background, rng, language)))
    return out


def _contains(text, phrase):
    """Whether `phrase` occurs in `text` as whole words (a run of characters in Chinese)."""
    return f" {' '.join(captions.words(phrase))} " in f" {' '.join(captions.words(text))} "


@pytest.mark.parametrize("language", world.LANGUAGES)
def test_captions_read_back_to_their_objects(language):
    wrong = [(text, captions.parse_caption(text)) for objects, text in _draws(language)
             if captions.parse_caption(text) != {"objects": objects, "count": len(objects)}
             or captions.parse_caption(text, language) != captions.parse_caption(text)]
    assert not wrong


@pytest.mark.parametrize("language", world.LANGUAGES)
def test_detect_language_of_generated_captions(language):
    detected = {captions.detect_language(text) for _, text in _draws(language)}
    assert detected == {language}


def _phrases(language):
    """Every colour, shape, speed and count word or phrase a caption in `language` uses."""
    if language == "en":
        return [*COLOURS, *world.NUMBER_WORDS.values(),
                *(w for table in (world.SHAPE_WORDS, world.SPEED_ADJECTIVES, world.SPEED_ADVERBS)
                  for options in table.values() for w in options)]
    lex = world.LEXICONS[language]
    unit = "个" if language == "zh" else ""  # Chinese counts with a measure word
    return [*(f for forms in lex.colours.values() for f in forms.split("/")),
            *(n.word for nouns in lex.shapes.values() for n in nouns),
            *(f for options in lex.speed_adjectives.values() for forms in options
              for f in forms.split("/")),
            *(a for options in lex.speed_adverbs.values() for a in options),
            *(f + unit for forms in lex.numbers.values() for f in forms.split("/")),
            *(n.word for n in lex.group_nouns)]


@pytest.mark.parametrize("language", world.LANGUAGES)
def test_every_word_of_the_world_is_used(language):
    texts = [text for _, text in _draws(language)]
    unused = [p for p in _phrases(language) if not any(_contains(t, p) for t in texts)]
    assert not unused


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_several_objects_are_counted_in_words(language):
    lex = world.LEXICONS[language]
    unit = "个" if language == "zh" else ""
    for objects, text in _draws(language):
        if len(objects) > 1:
            forms = lex.numbers[len(objects)].split("/")
            assert any(_contains(text, f + unit) for f in forms), text


def _template_patterns(grammar, lex):
    """Regexes, by kind, for the captions each template of `grammar` writes: every field is
    one of the words or phrases the language has for it."""

    def either(options):
        return "(?:" + "|".join(re.escape(o) for o in sorted(options, key=len, reverse=True)) + ")"

    def fill(template, fields):
        parts = re.split(r"\{(\w+)\}", template)
        return "".join(re.escape(p) if i % 2 == 0 else fields[p] for i, p in enumerate(parts))

    def forms(words):
        return [f for w in words for f in w.split("/")]

    adjectives = either(forms(a for options in lex.speed_adjectives.values() for a in options))
    numbers = either(forms(w for n, w in lex.numbers.items() if n > 1))
    fields = {
        "article": either(forms([lex.numbers[1]])),
        "noun": either(n.word for nouns in lex.shapes.values() for n in nouns),
        "colour": either(forms(lex.colours.values())),
        "speed": adjectives, "all_speed": adjectives, "count": numbers, "all_count": numbers,
        "adverb": either(a for options in lex.speed_adverbs.values() for a in options),
        "verb": either(v for pair in grammar.verbs for v in pair),
        "place": "(?:" + "|".join(fill(p, {"bg": either(lex.backgrounds.values())})
                                  for p in grammar.places) + ")",
        "group": either(n.word for n in lex.group_nouns),
        "each": either(grammar.each.split("/")), "all": either(grammar.all.split("/")),
    }
    fields["phrase"] = "(?:" + "|".join(fill(t, fields) for t in grammar.phrases) + ")"
    fields["bare"] = "(?:" + "|".join(fill(t, fields) for t in grammar.bare) + ")"
    clause = fill(grammar.clause, fields)
    fields["clauses"] = f"{clause}(?:{re.escape(grammar.clause_separator)}{clause})+"

    def listed(item):
        return (f"{item}(?:{re.escape(grammar.separator)}{item})*"
                f"{re.escape(grammar.conjunction)}{item}")

    return {
        "single": [re.compile(fill(t, fields)) for t in grammar.single],
        "several": [re.compile(fill(t, {**fields, "listed": listed(fields["phrase"])}))
                    for t in grammar.several],
        "shared": [re.compile(fill(t, {**fields, "listed": listed(fields["bare"])}))
                   for t in grammar.shared],
    }


@pytest.mark.parametrize("language", OTHER_LANGUAGES)
def test_every_template_is_used(language):
    """Each caption is written by exactly one template of its kind (one object; several, each
    at its own speed; several of one speed, named once), and every template writes some of
    the draws, which all read back (see above)."""
    grammar = generator._GRAMMARS[language]
    patterns = _template_patterns(grammar, world.LEXICONS[language])
    used = {kind: [0] * len(p) for kind, p in patterns.items()}
    for objects, text in _draws(language):
        kinds = ("single",) if len(objects) == 1 else ("several", "shared")
        writers = [(kind, i) for kind in kinds for i, p in enumerate(patterns[kind])
                   if p.fullmatch(text)]
        assert len(writers) == 1, (text, writers)
        kind, i = writers[0]
        assert kind != "shared" or len({o["speed"] for o in objects}) == 1, text
        used[kind][i] += 1
    unused = [getattr(grammar, kind)[i] for kind, counts in used.items()
              for i, n in enumerate(counts) if n == 0]
    assert not unused


@pytest.mark.parametrize("text, language, objects, count", [
    ("一个红色的圆在盒子里快速弹跳", "zh", [("red", "circle", "fast")], 1),
    ("两个物体：一个慢速的蓝色方块和一个快速的黄色三角形", "zh",
     [("blue", "square", "slow"), ("yellow", "triangle", "fast")], 2),
    ("三个缓慢的图形：一个青色球、一个品红色正方形和一个绿色三角", "zh",
     [("cyan", "circle", "slow"), ("magenta", "square", "slow"), ("green", "triangle", "slow")],
     3),
    ("Una palla rossa lenta rimbalza nella scatola.", "it", [("red", "circle", "slow")], 1),
    ("due forme veloci, una palla gialla e un blocco blu, rimbalzano", "it",
     [("yellow", "circle", "fast"), ("blue", "square", "fast")], 2),
    ("Un triangolo verde che si muove a tutta velocità e un disco ciano che va piano: due "
     "oggetti", "it", [("green", "triangle", "fast"), ("cyan", "circle", "slow")], 2),
    ("Três objetos: um círculo vermelho que se move devagar, uma bola azul rápida e um "
     "triângulo verde lento.", "pt",
     [("red", "circle", "slow"), ("blue", "circle", "fast"), ("green", "triangle", "slow")], 3),
    ("uma bola amarela e um bloco ciano quicam na caixa; os dois são vagarosos", "pt",
     [("yellow", "circle", "slow"), ("cyan", "square", "slow")], 2),
])
def test_parse_hand_written_captions(text, language, objects, count):
    expected = {"objects": [{"colour": c, "shape": s, "speed": v} for c, s, v in objects],
                "count": count}
    assert captions.detect_language(text) == language
    assert captions.parse_caption(text) == expected
    assert captions.parse_caption(text, language) == expected


def test_detect_language_of_text_without_caption_words_is_english():
    assert captions.detect_language("") == "en"
    assert captions.detect_language("42 !?") == "en"
    assert captions.detect_language("red red red") == "en"
    assert captions.detect_language("uma") == "pt" and captions.detect_language("una") == "it"


def test_parse_caption_names_the_known_languages_for_an_unknown_one():
    with pytest.raises(ValueError, match="'fr'.*en, it, pt, zh"):
        captions.parse_caption("un cercle rouge", "fr")


def test_words_of_accented_and_chinese_text():
    assert captions.words("C'è una palla ROSSA: três bolas, velocità!") == [
        "c", "è", "una", "palla", "rossa", "três", "bolas", "velocità"]
    assert captions.words("一个红色的圆，slow-moving") == [
        "一", "个", "红", "色", "的", "圆", "slow-moving"]
    # Plain English splits as it always has (the BLEU and CIDEr-D scores depend on it).
    for _, text in _draws("en"):
        assert captions.words(text) == re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())
    assert captions.words("A red-ish, 2x_fast ball!") == ["a", "red-ish", "2x", "fast", "ball"]


def test_chinese_captions_score_bleu_by_character():
    draws = _draws("zh")[:20]
    refs = [text for _, text in draws]
    scores = captions.caption_scores(refs, refs, [o for o, _ in draws], "zh")
    assert scores["bleu4"] == pytest.approx(100.0)
    assert scores["colour"] == scores["shape"] == scores["speed"] == scores["count"] == 1.0


@pytest.mark.parametrize("every_language", [True, False])
def test_the_untagged_caption_is_judged_against_the_first_language(every_language):
    from o1 import configs
    from o1.eval import evaluate

    config = configs.get("quickstart", ["data.height=32", "data.width=32",
                                        "text.languages=[en,it,pt,zh]",
                                        f"data.every_language={str(every_language).lower()}"])
    seen = set()
    for i in range(12):
        clip = generator.generate(config, "test", i)
        seen.add(clip.metadata["language"])
        reference = evaluate.reference_in(clip, "en")
        assert captions.detect_language(reference) == "en"
        if clip.metadata["language"] == "en":
            assert reference == clip.caption
        elif every_language:
            assert reference == clip.metadata["captions"]["en"]
        else:
            assert reference == evaluate.prompt_in(clip, "en")
        said = captions.parse_caption(reference, "en")["objects"]
        assert sorted((o["colour"], o["shape"]) for o in said) == sorted(
            (o["colour"], o["shape"]) for o in clip.metadata["objects"])
    assert len(seen) > 1  # clips in other languages than English were met
