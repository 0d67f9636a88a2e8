"""Caption metrics for AV-Shapes: captions read back into attributes, BLEU-4 and CIDEr-D.

`parse_caption` inverts the grammar of `avshapes.caption` (colour word + shape word, speed
adjectives or adverb phrases, shared "<count> <speed> shapes"), so a generated caption is
scored on the same attributes as a generated clip (`judge.attribute_scores`). n-gram overlap
with the reference is corpus BLEU-4 (sacrebleu) and CIDEr-D (`cider_d`, written here from
its definition).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import sacrebleu

from o1.avshapes import world
from o1.config import COLOURS
from o1.eval.judge import ATTRIBUTES, attribute_scores

_SHAPE_OF_WORD = {w: s for s, options in world.SHAPE_WORDS.items() for w in options}
_SPEED_OF_ADJECTIVE = {w: s for s, options in world.SPEED_ADJECTIVES.items()
                       for w in options}
_SPEED_OF_ADVERB = {tuple(p.split()): s for s, phrases in world.SPEED_ADVERBS.items()
                    for p in phrases}
_NUMBER = {w: n for n, w in world.NUMBER_WORDS.items()}
_GROUP_NOUNS = ("shapes", "objects")


def words(text: str) -> list[str]:
    """Lower-case words of a caption; hyphenated words stay whole, punctuation is dropped."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def parse_caption(text: str) -> dict:
    """Reads objects and their count back from a caption in the grammar of `avshapes.caption`.

    An object is a colour word directly followed by a shape word. Its speed comes from an
    adjective just before ("quick red ball"), or "moving <adverb phrase>" just after ("red ball
    moving at high speed"), or else from a shared "<count> <adjective> shapes/objects". The
    count is the first number word, or else the number of objects.

    Returns:
      dict with 'objects' (dicts with 'colour', 'shape', 'speed' -- None when unsaid) and
      'count' (int).
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
                   objects_list: Sequence[Sequence[Mapping]]) -> dict:
    """Attribute accuracy and n-gram scores of captions, one candidate per clip.

    Args:
      candidates: the captions to judge.
      references: per clip a reference caption, or a list of them.
      objects_list: per clip the true objects (dicts with 'colour', 'shape', 'speed').

    Returns:
      dict with the share of clips whose parsed candidate gets right 'colour' (the set of
      colours named), 'shape' and 'speed' (every true colour named with its shape / speed),
      'count'; 'bleu4' (sacrebleu corpus BLEU-4 with its default tokenizer, 0..100),
      'cider_d' (0..10, see `cider_d`) and 'clips'.
    """
    if not len(candidates) == len(references) == len(objects_list):
        raise ValueError(f"need one reference and one object list per candidate, got "
                         f"{len(candidates)}, {len(references)}, {len(objects_list)}")
    groups = [[r] if isinstance(r, str) else list(r) for r in references]
    out: dict[str, float] = {}
    rows = []
    for cand, objects in zip(candidates, objects_list, strict=True):
        parsed = parse_caption(cand)
        rows.append(attribute_scores(parsed["objects"], parsed["count"], objects))
    for key in ATTRIBUTES:
        out[key] = float(np.mean([r[key] for r in rows])) if rows else float("nan")
    if candidates:
        streams = max(len(g) for g in groups)
        # sacrebleu takes reference streams of equal length; a clip with fewer references
        # repeats its first one, which does not change BLEU's clipped counts.
        ref_streams = [[g[j] if j < len(g) else g[0] for g in groups] for j in range(streams)]
        out["bleu4"] = float(sacrebleu.corpus_bleu(list(candidates), ref_streams).score)
    else:
        out["bleu4"] = float("nan")
    out["cider_d"] = cider_d(candidates, groups)
    out["clips"] = len(candidates)
    return out
