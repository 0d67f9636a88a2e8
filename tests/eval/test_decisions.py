"""Caption decisions read against a reference: every attribute word of every template is
found and paired with its object, and a decision is right exactly when the reference's value
takes the most probability."""

import unicodedata

import numpy as np
import pytest

from o1.avshapes import generator, world
from o1.config import COLOURS, SHAPES
from o1.eval import decisions
from o1.tokenizers import text


def _several(language, n=300):
    """(objects, caption) of 2 to 4 objects of distinct colours, half of one speed."""
    out = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        colours = rng.permutation(list(COLOURS))[:2 + seed % 3]
        one = world.SPEEDS[seed % 2] if (seed // 2) % 2 else None
        objects = [{"colour": str(c), "shape": SHAPES[int(rng.integers(3))],
                    "speed": one or world.SPEEDS[int(rng.integers(2))]} for c in colours]
        background = sorted(world.BACKGROUNDS)[seed % 4]
        # NFKC, as the tokenizer reads it (a full-width "，" is ",")
        out.append((objects, unicodedata.normalize(
            "NFKC", generator.caption(objects, background, rng, language))))
    return out


@pytest.mark.parametrize("language", world.LANGUAGES)
def test_attribute_words_pair_every_object_in_order(language):
    for objects, caption in _several(language):
        words = decisions.attribute_words(caption, language)
        pairs = [{kind: value for _, kind, value in words[k:k + 2]}
                 for k in range(0, len(words), 2)]
        assert pairs == [{"colour": o["colour"], "shape": o["shape"]} for o in objects], caption
        assert [o for o, _, _ in words] == sorted(o for o, _, _ in words)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    pairs = [(lang, c) for lang in world.LANGUAGES for _, c in _several(lang, 200)]
    out = tmp_path_factory.mktemp("tok") / text.FILENAME
    return text.train([c for _, c in pairs], 400, "unigram", out, [lang for lang, _ in pairs])


@pytest.mark.parametrize("language", world.LANGUAGES)
def test_a_decision_is_right_when_its_value_takes_the_most_probability(tokenizer, language):
    first = decisions.first_pieces(language, tokenizer.pieces, tokenizer.piece_id)
    value_of = {i: (kind, value) for kind, table in first.items()
                for value, ids in table.items() for i in ids}
    for objects, caption in _several(language, 40):
        pieces = tokenizer.pieces(caption)
        ids = [tokenizer.piece_id(p) for p in pieces] + [text.EOS_ID]
        vocab = tokenizer.vocab_size
        right = np.full((len(ids), vocab), -30.0)
        right[np.arange(len(ids)), ids] = 0.0
        marks = decisions.decisions(caption, language, pieces, first, ids, right)
        # Every object but the first has a next decision, every object a binding one, unless
        # its word starts inside the piece before (not in these captions).
        assert marks["binding"] == [True] * len(objects), caption
        assert marks["next"] == [True] * (len(objects) - 1), caption
        wrong = np.full((len(ids), vocab), -30.0)
        for j, i in enumerate(ids):
            if i in value_of:  # every other value of that kind beats this one
                kind, value = value_of[i]
                for other, others in first[kind].items():
                    wrong[j, sorted(others)] = -1.0 if other != value else -40.0
        marks = decisions.decisions(caption, language, pieces, first, ids, wrong)
        assert marks["binding"] == [False] * len(objects)
        assert marks["next"] == [False] * (len(objects) - 1)
    assert decisions.shares([marks, {"binding": [True], "next": []}]) == {
        "binding": 1 / (len(objects) + 1), "binding_n": len(objects) + 1,
        "next": 0.0, "next_n": len(objects) - 1}


def test_a_caption_of_one_object_or_cut_short_has_no_decisions_past_its_end(tokenizer):
    first = decisions.first_pieces("en", tokenizer.pieces, tokenizer.piece_id)
    caption = "a red circle bounces around in the box"
    pieces = tokenizer.pieces(caption)
    ids = [tokenizer.piece_id(p) for p in pieces] + [text.EOS_ID]
    logp = np.zeros((len(ids), tokenizer.vocab_size))
    assert decisions.decisions(caption, "en", pieces, first, ids, logp) == {
        "binding": [], "next": []}
    caption = "a red circle and a blue square bounce around in the box"
    pieces = tokenizer.pieces(caption)
    ids = [tokenizer.piece_id(p) for p in pieces] + [text.EOS_ID]
    cut = ids[:pieces.index("\u2581and") if "\u2581and" in pieces else 4] + [text.EOS_ID]
    logp = np.zeros((len(cut), tokenizer.vocab_size))
    marks = decisions.decisions(caption, "en", pieces, first, cut, logp)
    assert len(marks["binding"]) == 1 and marks["next"] == []
