"""Caption metrics for AV-Shapes: captions read back into attributes, BLEU-4 and CIDEr-D.

`parse_caption` inverts the grammar of `avshapes.caption` in each of `world.LANGUAGES` (colour
word + shape word, speed adjectives or adverb phrases, a speed shared by all the objects), so
a generated caption is scored on the same attributes as a generated clip
(`judge.attribute_scores`); `detect_language` tells which grammar to read. n-gram overlap with
the reference is corpus BLEU-4 (sacrebleu) and CIDEr-D (`cider_d`, written here from its
definition).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import sacrebleu

from o1.avshapes import world
from o1.config import COLOURS
from o1.eval.judge import ATTRIBUTES, REPEATED, SEVERAL, attribute_scores

_SHAPE_OF_WORD = {w: s for s, options in world.SHAPE_WORDS.items() for w in options}
_SPEED_OF_ADJECTIVE = {w: s for s, options in world.SPEED_ADJECTIVES.items()
                       for w in options}
_SPEED_OF_ADVERB = {tuple(p.split()): s for s, phrases in world.SPEED_ADVERBS.items()
                    for p in phrases}
_NUMBER = {w: n for n, w in world.NUMBER_WORDS.items()}
_GROUP_NOUNS = ("shapes", "objects")
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK unified and compatibility ideographs


def words(text: str) -> list[str]:
    """Lower-case words of a caption; hyphenated words stay whole, punctuation is dropped.

    Letters of any alphabet count (perché, três). Chinese is written without spaces, so each
    CJK character is a word of its own, as BLEU's Chinese tokenizer has it.
    """
    spaced = re.sub(f"([{_CJK}])", r" \1 ", text.lower())
    return re.findall(r"[^\W_]+(?:-[^\W_]+)*", spaced)


def _phrase_table(language: str) -> dict[tuple[str, ...], tuple[str, object]]:
    """(kind, value) of each phrase a caption in `language` may use, by its words.

    Kinds: 'colour', 'shape' and 'speed' with their English names; 'number' (2 to 4: the
    indefinite article is no count) and 'group' (a plural noun for all the objects), which end
    the stretch an object's speed is looked for in; 'particle', the Chinese 的 that links a
    modifier to its noun.
    """
    lexicon = world.LEXICONS[language]
    entries = [("colour", c, f) for c, forms in lexicon.colours.items() for f in forms.split("/")]
    entries += [("shape", s, n.word) for s, nouns in lexicon.shapes.items() for n in nouns]
    entries += [("speed", s, f) for s, adjectives in lexicon.speed_adjectives.items()
                for a in adjectives for f in a.split("/")]
    entries += [("speed", s, a) for s, adverbs in lexicon.speed_adverbs.items() for a in adverbs]
    entries += [("group", None, g.word) for g in lexicon.group_nouns]
    # Chinese counts with the measure word 个 (两个; a bare 三 starts 三角, triangle).
    unit = "个" if language == "zh" else ""
    entries += [("number", n, f + unit) for n, forms in lexicon.numbers.items() if n > 1
                for f in forms.split("/")]
    if language == "zh":
        entries.append(("particle", None, "的"))
    return {tuple(words(phrase)): (kind, value) for kind, value, phrase in entries}


_TABLES = {language: _phrase_table(language) for language in world.LEXICONS}
# Italian and Portuguese put the colour after the noun (una palla rossa), Chinese before (红色的球).
_NOUN_FIRST = {"it": True, "pt": True, "zh": False}
# Words of each language's templates that the other languages lack, so that a caption with
# few colour and shape words still reads as its language.
_FUNCTION_WORDS = {
    "en": ("an", "the", "and", "is", "there", "that", "moving", "box", "shapes", "objects",
           "bounce", "bounces", "around"),
    "it": ("che", "nella", "scatola", "si", "muove", "rimbalza", "rimbalzano", "sfondo", "ci",
           "sono", "è", "solo"),
    "pt": ("que", "na", "numa", "caixa", "se", "move", "quica", "quicam", "fundo", "há", "são",
           "apenas"),
}


def _vocabulary(language: str) -> set[str]:
    """The words that mark a caption as Latin-script `language`."""
    if language == "en":
        phrases = [*world.COLOURS, *world.BACKGROUNDS, *world.NUMBER_WORDS.values(),
                   *(w for table in (world.SHAPE_WORDS, world.SPEED_ADJECTIVES,
                                     world.SPEED_ADVERBS) for options in table.values()
                     for w in options)]
    else:
        lexicon = world.LEXICONS[language]
        phrases = [" ".join(phrase) for phrase in _TABLES[language]]
        phrases += [*lexicon.backgrounds.values(), *lexicon.numbers[1].split("/")]
    return {w for phrase in phrases for w in words(phrase)} | set(_FUNCTION_WORDS[language])


_VOCABULARY = {language: _vocabulary(language) for language in world.LANGUAGES
               if language in _FUNCTION_WORDS}


def detect_language(text: str) -> str:
    """The language of a caption, one of `world.LANGUAGES`.

    Any CJK character makes it Chinese. Otherwise it is whichever of English, Italian and
    Portuguese has the most of the caption's words among its caption words (colours, shapes,
    speeds, numbers, backgrounds and a few function words such as "the", "nella", "numa"); a
    tie goes to the earlier in `world.LANGUAGES`, so text with no such word reads as English.
    """
    if re.search(f"[{_CJK}]", text):
        return "zh"
    tokens = words(text)
    hits = {language: sum(t in vocabulary for t in tokens)
            for language, vocabulary in _VOCABULARY.items()}
    return max(hits, key=hits.get)


def parse_caption(text: str, language: str | None = None) -> dict:
    """Reads objects and their count back from a caption in the grammar of `avshapes.caption`.

    Args:
      text: the caption.
      language: one of `world.LANGUAGES`; None detects it (`detect_language`).

    Returns:
      dict with 'objects' (dicts with 'colour', 'shape', 'speed' -- English names, speed None
      when unsaid) and 'count' (int).

    Raises:
      ValueError: for a language not in `world.LANGUAGES`.
    """
    language = detect_language(text) if language is None else language
    if language == "en":
        return _parse_english(text)
    if language not in _TABLES:
        raise ValueError(f"unknown caption language {language!r}; known: "
                         f"{', '.join(world.LANGUAGES)}")
    return _parse_with_table(text, _TABLES[language], _NOUN_FIRST[language])


def _parse_english(text: str) -> dict:
    """`parse_caption` of an English caption.

    An object is a colour word directly followed by a shape word. Its speed comes from an
    adjective just before ("quick red ball"), or "moving <adverb phrase>" just after ("red ball
    moving at high speed"), or else from a shared "<count> <adjective> shapes/objects". The
    count is the first number word, or else the number of objects.
    """
    w = words(text)
    objects = []
    for i in range(len(w) - 1):
        if w[i] not in COLOURS or w[i + 1] not in _SHAPE_OF_WORD:
            continue
        speed = _SPEED_OF_ADJECTIVE.get(w[i - 1]) if i > 0 else None
        if speed is None and i + 2 < len(w) and w[i + 2] == "moving":
            for phrase, s in _SPEED_OF_ADVERB.items():
                if tuple(w[i + 3:i + 3 + len(phrase)]) == phrase:
                    speed = s
        objects.append({"colour": w[i], "shape": _SHAPE_OF_WORD[w[i + 1]], "speed": speed})
    shared = next((_SPEED_OF_ADJECTIVE[w[i]] for i in range(len(w) - 1)
                   if w[i] in _SPEED_OF_ADJECTIVE and w[i + 1] in _GROUP_NOUNS), None)
    for o in objects:
        if o["speed"] is None:
            o["speed"] = shared
    count = next((_NUMBER[x] for x in w if x in _NUMBER), len(objects))
    return {"objects": objects, "count": count}


def _parse_with_table(text: str, table: dict[tuple[str, ...], tuple[str, object]],
                      noun_first: bool) -> dict:
    """`parse_caption` of an Italian, Portuguese or Chinese caption.

    The caption's words become phrases of `table` (longest match first). An object is a shape
    directly followed by a colour (`noun_first`) or a colour, maybe 的, then a shape. Its speed
    is a speed with 的 just before it (快速的红色圆), or else the first speed after it and before
    the next object, a number or a group noun (una palla rossa che si muove piano); a speed no
    object took is shared by all of those without one (due forme veloci: ...). The count is the
    first number (two to four), or else the number of objects.
    """
    w = words(text)
    longest = max(len(phrase) for phrase in table)
    tokens: list[tuple[str | None, object]] = []
    i = 0
    while i < len(w):
        n = next((n for n in range(min(longest, len(w) - i), 0, -1)
                  if tuple(w[i:i + n]) in table), 0)
        tokens.append(table[tuple(w[i:i + n])] if n else (None, w[i]))
        i += max(n, 1)
    kinds = [kind for kind, _ in tokens]
    first_kind, second_kind = ("shape", "colour") if noun_first else ("colour", "shape")
    starts, ends, objects = [], [], []
    for i, (kind, value) in enumerate(tokens):
        j = i + 2 if kinds[i + 1:i + 2] == ["particle"] else i + 1
        if kind == first_kind and kinds[j:j + 1] == [second_kind]:
            named = {kind: value, second_kind: tokens[j][1]}
            objects.append({"colour": named["colour"], "shape": named["shape"], "speed": None})
            starts.append(i)
            ends.append(j + 1)
    taken = set()  # token indices of the speeds objects took
    for o, start in enumerate(starts):
        if kinds[max(0, start - 2):start] == ["speed", "particle"]:
            objects[o]["speed"] = tokens[start - 2][1]
            taken.add(start - 2)
            starts[o] = start - 2
    for o, obj in enumerate(objects):
        if obj["speed"] is not None:
            continue
        for j in range(ends[o], starts[o + 1] if o + 1 < len(objects) else len(tokens)):
            if kinds[j] in ("number", "group"):
                break
            if kinds[j] == "speed":
                obj["speed"] = tokens[j][1]
                taken.add(j)
                break
    shared = next((value for j, (kind, value) in enumerate(tokens)
                   if kind == "speed" and j not in taken), None)
    for obj in objects:
        obj["speed"] = obj["speed"] or shared
    count = next((value for kind, value in tokens if kind == "number"), len(objects))
    return {"objects": objects, "count": count}


def _ngrams(tokens: Sequence[str], max_n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, max_n + 1)
                   for i in range(len(tokens) - n + 1))


def cider_d(candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4,
            sigma: float = 6.0) -> float:
    """CIDEr-D of candidate captions, one per clip, each against that clip's references.

    As defined by Vedantam et al. 2015 with the coco-caption CIDEr-D changes: for n = 1..4, a
    sentence is a vector of n-gram counts times idf = log(clips / document frequency), the
    document frequency of an n-gram being the number of clips whose references contain it.
    The candidate's weights are clipped to the reference's (min(g_cand, g_ref) * g_ref over
    |g_cand| |g_ref|), the similarity is multiplied by exp(-(l_cand - l_ref)^2 / (2 sigma^2))
    with l the length in words, averaged over references and over n, and scaled by 10; the
    corpus score is the mean over clips. Words come from `words()` (lower case, punctuation
    dropped, as coco-caption's tokenizer does). A candidate identical to its single reference
    scores 10 if it has at least 4 words (else the missing n-gram orders score 0) and its
    n-grams are not in every clip's references (idf 0). It matched pycocoevalcap's Cider (its
    CIDEr-D) to 1e-15 on 300 AV-Shapes captions, with one and with two references per clip.
    """
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    if not candidates:
        return float("nan")
    refs = [[_ngrams(words(r), max_n) for r in group] for group in references]
    ref_lengths = [[len(words(r)) for r in group] for group in references]
    df: Counter = Counter()
    for group in refs:
        df.update(set().union(*[set(c) for c in group]))
    log_clips = math.log(len(references))

    def vector(counts: Counter) -> tuple[list[dict], np.ndarray]:
        vec: list[dict] = [{} for _ in range(max_n)]
        for gram, tf in counts.items():
            vec[len(gram) - 1][gram] = tf * (log_clips - math.log(max(1.0, df[gram])))
        norms = np.array([math.sqrt(sum(v * v for v in g.values())) for g in vec])
        return vec, norms

    total = 0.0
    for cand, group, lengths in zip(candidates, refs, ref_lengths, strict=True):
        cand_words = words(cand)
        c_vec, c_norm = vector(_ngrams(cand_words, max_n))
        score = 0.0
        for r_counts, r_len in zip(group, lengths, strict=True):
            r_vec, r_norm = vector(r_counts)
            penalty = math.exp(-((len(cand_words) - r_len) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                if c_norm[n] == 0 or r_norm[n] == 0:
                    continue
                overlap = sum(min(v, r_vec[n].get(g, 0.0)) * r_vec[n].get(g, 0.0)
                              for g, v in c_vec[n].items())
                score += overlap / (c_norm[n] * r_norm[n]) * penalty
        total += 10.0 * score / max_n / max(1, len(group))
    return float(total / len(candidates))


def caption_scores(candidates: Sequence[str], references: Sequence[str | Sequence[str]],
                   objects_list: Sequence[Sequence[Mapping]], language: str | None = None
                   ) -> dict:
    """Attribute accuracy and n-gram scores of captions, one candidate per clip.

    Args:
      candidates: the captions to judge.
      references: per clip a reference caption, or a list of them.
      objects_list: per clip the true objects (dicts with 'colour', 'shape', 'speed').
      language: the candidates' language for `parse_caption`; None detects each one's.

    Returns:
      dict with the share of clips whose parsed candidate gets right 'colour' (the set of
      colours named), 'shape' and 'speed' (every true colour named with its shape / speed),
      'count'; 'colour_several' and 'shape_several', those two over the clips of more than
      one object only, and 'repeated', the share of those whose candidate names one object
      (colour and shape) twice (each nan when there is none); 'bleu4' (sacrebleu corpus
      BLEU-4, 0..100, with its default tokenizer, or its Chinese one, a word per character,
      when a reference holds Chinese), 'cider_d' (0..10, see `cider_d`) and 'clips'. The n-gram
      scores read candidates and references in NFKC form, as the text tokenizer writes
      captions (a full-width "：" is ":").
    """
    if not len(candidates) == len(references) == len(objects_list):
        raise ValueError(f"need one reference and one object list per candidate, got "
                         f"{len(candidates)}, {len(references)}, {len(objects_list)}")
    candidates = [unicodedata.normalize("NFKC", c) for c in candidates]
    groups = [[unicodedata.normalize("NFKC", r)] if isinstance(r, str)
              else [unicodedata.normalize("NFKC", x) for x in r] for r in references]
    out: dict[str, float] = {}
    rows = []
    for cand, objects in zip(candidates, objects_list, strict=True):
        parsed = parse_caption(cand, language)
        named = [(o["colour"], o["shape"]) for o in parsed["objects"]]
        rows.append({**attribute_scores(parsed["objects"], parsed["count"], objects),
                     REPEATED: float(len(set(named)) < len(named))})
    for key in ATTRIBUTES:
        out[key] = float(np.mean([r[key] for r in rows])) if rows else float("nan")
    # Two objects are where a caption goes wrong most: the second named as the first.
    several = [r for r, objects in zip(rows, objects_list, strict=True) if len(objects) > 1]
    for key in (*SEVERAL, REPEATED):
        per_clip = key.removesuffix("_several")  # the per-clip score it averages
        out[key] = float(np.mean([r[per_clip] for r in several])) if several else float("nan")
    if candidates:
        streams = max(len(g) for g in groups)
        # sacrebleu takes reference streams of equal length; a clip with fewer references
        # repeats its first one, which does not change BLEU's clipped counts.
        ref_streams = [[g[j] if j < len(g) else g[0] for g in groups] for j in range(streams)]
        # The default tokenizer splits at spaces, which Chinese does not have.
        chinese = any(re.search(f"[{_CJK}]", r) for g in groups for r in g)
        out["bleu4"] = float(sacrebleu.corpus_bleu(list(candidates), ref_streams,
                                                   tokenize="zh" if chinese else None).score)
    else:
        out["bleu4"] = float("nan")
    out["cider_d"] = cider_d(candidates, groups)
    out["clips"] = len(candidates)
    return out
