"""Caption decisions read against a reference (teacher forcing).

The model reads a clip and a reference caption of it; at each colour and shape word of the
caption it is asked, given the clip and the caption before that word, which colour or shape
comes next. Of a caption naming several objects, two kinds of decision are asked of the clip:

  binding  an object's second attribute word, given its first: its shape after "a red", its
           colour after "un cerchio" (the attribute of the object just named)
  next     the first attribute word of the second and later objects (an object not yet named)

The first object's first word is the model's free choice of which object to name first, so
it is not scored. A decision is right when the words of the reference's value (every form and
synonym of that colour or shape in the language, by the piece each starts with) together take
more probability than those of any other value. Free-running captions (`captions`) vary a lot
between training seeds; these shares are read at fixed positions of fixed text, so they tell
where a caption's attributes come apart (binding an attribute to its object, or choosing the
next object) with far less noise.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from o1.avshapes import world

KINDS = ("colour", "shape")
SHARES = ("binding", "next")
COLUMNS = (*SHARES, "binding_n", "next_n")


def attribute_forms(language: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per kind ('colour', 'shape'), each value's words in `language` (every form)."""
    if language == "en":
        return {"colour": {c: (c,) for c in world.COLOURS},
                "shape": {s: tuple(w) for s, w in world.SHAPE_WORDS.items()}}
    lexicon = world.LEXICONS[language]
    return {"colour": {c: tuple(f.split("/")) for c, f in lexicon.colours.items()},
            "shape": {s: tuple(n.word for n in nouns) for s, nouns in lexicon.shapes.items()}}


def attribute_words(caption: str, language: str) -> list[tuple[int, str, str]]:
    """(character offset, kind, value) of each colour and shape word of `caption`, in order;
    the longest word wins where words overlap (品红色 over 红色)."""
    forms = attribute_forms(language)
    entries = sorted(((w, kind, value) for kind, table in forms.items()
                      for value, words in table.items() for w in words),
                     key=lambda e: -len(e[0]))
    taken = np.zeros(len(caption), bool)
    found = []
    for word, kind, value in entries:
        # Chinese is written without spaces; elsewhere a word stands between non-letters.
        pattern = re.escape(word) if language == "zh" else (
            rf"(?<![^\W_]){re.escape(word)}(?![^\W_])")
        for m in re.finditer(pattern, caption.lower()):
            if not taken[m.start():m.end()].any():
                taken[m.start():m.end()] = True
                found.append((m.start(), kind, value))
    return sorted(found)


def decisions(caption: str, language: str, pieces: Sequence[str],
              first_pieces: dict[str, dict[str, set[int]]], ids: Sequence[int],
              logp: np.ndarray) -> dict[str, list[bool]]:
    """The binding and next decisions of one reference caption, each right or wrong.

    Args:
      caption: the reference caption, as the tokenizer reads it (NFKC).
      language: its language.
      pieces: its SentencePiece pieces (without bos, tag or eos); `ids` their ids.
      first_pieces: per kind and value, the ids a word of that value starts with.
      logp: [len(ids), V] log-probabilities of each id given the ones before (row j is the
        distribution of ids[j]).

    Returns {'binding': [...], 'next': [...]}; a caption whose pieces do not spell it, or
    whose attribute words do not come in (colour, shape) pairs, gives none.
    """
    out: dict[str, list[bool]] = {"binding": [], "next": []}
    if "".join(pieces).replace("\u2581", " ").strip() != caption.strip():
        return out
    # Where each piece starts in the caption (the first piece holds the word-start mark).
    starts, at = [], len(caption) - len(caption.lstrip()) - 1
    for piece in pieces:
        starts.append(at)
        at += len(piece)
    words = attribute_words(caption, language)
    if len(words) < 4 or len(words) % 2 or any(
            {words[k][1], words[k + 1][1]} != set(KINDS) for k in range(0, len(words), 2)):
        return out
    for k, (offset, kind, value) in enumerate(words):
        if k == 0:
            continue
        j = max(i for i, s in enumerate(starts) if s <= offset)
        if j >= len(ids) - 1:
            break  # cut with the caption (the last id is eos)
        if ids[j] not in first_pieces[kind][value]:
            continue  # the word starts inside a piece of the word before: no decision of its own
        mass = {v: np.logaddexp.reduce(logp[j, sorted(p)]) for v, p in first_pieces[kind].items()}
        out["binding" if k % 2 else "next"].append(max(mass, key=mass.get) == value)
    return out


def first_pieces(language: str, encode: Callable[[str], list[str]],
                 piece_id: Callable[[str], int]) -> dict[str, dict[str, set[int]]]:
    """Per kind and value, the ids of the pieces its words start with in `language`, as
    `encode` (text -> pieces) writes a word after a space (Latin scripts) or after another
    word (Chinese); a lone word-start mark is skipped."""
    out: dict[str, dict[str, set[int]]] = {}
    for kind, table in attribute_forms(language).items():
        out[kind] = {}
        for value, words in table.items():
            ids = set()
            for w in words:
                pieces = [p for p in encode(unicodedata.normalize("NFKC", w)) if p != "\u2581"]
                ids.add(piece_id(pieces[0].lstrip("\u2581")) if language == "zh"
                        else piece_id(pieces[0]))
            out[kind][value] = ids
    return out


def shares(marks: Sequence[dict[str, list[bool]]]) -> dict[str, float]:
    """The share right of each kind of decision over many captions, and how many there were."""
    out = {}
    for kind in SHARES:
        flat = [m for row in marks for m in row[kind]]
        out[kind] = float(np.mean(flat)) if flat else float("nan")
        out[f"{kind}_n"] = len(flat)
    return out
