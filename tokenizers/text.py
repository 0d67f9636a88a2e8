"""The text tokenizer: SentencePiece trained on a dataset's captions.

Ids 0-3 are pad, bos, eos and unk; ids 4 and 5 are the markers that open and close a media
segment in the unified sequence (docs/design.md, "One sequence, many tasks"). They are reserved in
the SentencePiece model itself, so any tool that loads `text_tokenizer.model` agrees on them.

A tokenizer trained on captions in several languages also reserves one tag a language (`<en>`,
`<it>`, ... from id 6 on), and every caption it encodes starts with its language's tag right
after bos: the tag says which language a prompt is in, and asks for a caption in it. The word
list beside the model then keeps each word's languages, which tell a prompt's language when
none is named. Chinese, written without spaces, gets no learned piece across two characters;
its frequent dictionary words are pieces of their own instead (`chinese_words`).
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

import sentencepiece as spm

from o1.sequence import BOS_ID, EOS_ID, MEDIA_END_ID, MEDIA_START_ID, PAD_ID, UNK_ID

# The pieces of the media markers; SentencePiece must give them the sequence's ids.
MEDIA_START, MEDIA_END = "<media>", "</media>"
FILENAME = "text_tokenizer.model"
# The words of the training captions, one a line, beside the model: a prompt word outside
# them is one the model never read, even where SentencePiece can spell it from pieces. With
# several languages a line is the word, a tab and its languages (space-separated).
WORDS_FILENAME = "text_words.txt"
_TAG = re.compile(r"<([a-z]{2,3})>")


def language_tag(language: str) -> str:
    """The piece that marks a caption in `language` (ISO 639-1), e.g. `<it>`."""
    return f"<{language}>"

log = logging.getLogger(__name__)


class TextTokenizer:
    """Encodes captions to ids and back.

    Args:
      model: a path to a SentencePiece model file, or its bytes.
    """

    def __init__(self, model: str | os.PathLike | bytes):
        self._sp = spm.SentencePieceProcessor()
        if isinstance(model, bytes):
            self._sp.LoadFromSerializedProto(model)
        else:
            path = pathlib.Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"no text tokenizer at {path}; train one with "
                                        "`o1 tokenizers train`")
            self._sp.Load(str(path))
        if self._sp.PieceToId(MEDIA_START) != MEDIA_START_ID:
            raise ValueError(f"{model!r} is not an o1 text tokenizer (no {MEDIA_START} at id "
                             f"{MEDIA_START_ID})")
        # The language tags, in id order (none for a tokenizer of one language).
        pieces = (self._sp.IdToPiece(i) for i in range(MEDIA_END_ID + 1, self.vocab_size))
        tags = [m.group(1) for m in map(_TAG.fullmatch, pieces) if m]
        self.languages: tuple[str, ...] = tuple(tags)
        words = None if isinstance(model, bytes) else path.with_name(WORDS_FILENAME)
        # word -> its languages; None for a tokenizer saved without its word list: then only
        # spelling is checked.
        self.words: dict[str, frozenset[str]] | None = None
        if words is not None and words.is_file():
            self.words = {}
            for line in words.read_text("utf-8").splitlines():
                word, _, langs = line.partition("\t")
                self.words[word] = frozenset(langs.split())

    def unknown_words(self, text: str, language: str | None = None) -> list[str]:
        """The words of `text` (in order, once each) that the training captions (those in
        `language`, when named) never had, or, without a word list, that SentencePiece can
        only write as unk."""
        unknown = []
        for word in dict.fromkeys(words_of(text)):
            if self.words is None:
                missing = UNK_ID in self._sp.EncodeAsIds(word)
            else:
                missing = word not in self.words or bool(
                    language and self.languages and language not in self.words[word])
            if missing:
                unknown.append(word)
        return unknown

    def detect(self, text: str) -> str | None:
        """The language of `text`: of this tokenizer's languages, the one whose training
        captions had the most of its words (the first on a tie); None for a tokenizer of one
        language, or one without a word list."""
        if not self.languages or self.words is None:
            return None
        found = dict.fromkeys(self.languages, 0)
        for word in words_of(text):
            for lang in self.words.get(word, ()):
                found[lang] = found.get(lang, 0) + 1
        return max(self.languages, key=lambda lang: found[lang])

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    def tag_id(self, language: str) -> int:
        """The id of `language`'s tag.

        Raises:
          ValueError: this tokenizer has no tag for `language`.
        """
        if language not in self.languages:
            known = list(self.languages) or "one language, without tags"
            raise ValueError(f"this text tokenizer has no language {language!r}; it was "
                             f"trained on {known} (text.languages)")
        return self._sp.PieceToId(language_tag(language))

    def encode(self, text: str, *, bos: bool = True, eos: bool = True,
               language: str | None = None) -> list[int]:
        """Ids of `text`, optionally framed by bos/eos; a tokenizer of several languages puts
        the tag of `language` (by default the detected one, `detect`) first."""
        ids = self._sp.EncodeAsIds(text)
        if self.languages:
            ids = [self.tag_id(language or self.detect(text)), *ids]
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def pieces(self, text: str) -> list[str]:
        """The SentencePiece pieces `encode` writes `text` with (no bos, tag or eos)."""
        return self._sp.EncodeAsPieces(text)

    def piece_id(self, piece: str) -> int:
        """The id of `piece` (UNK_ID for a piece this tokenizer lacks)."""
        return self._sp.PieceToId(piece)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; pad, bos, eos, media markers and language tags are dropped."""
        special = {PAD_ID, BOS_ID, EOS_ID, MEDIA_START_ID, MEDIA_END_ID,
                   *(self.tag_id(lang) for lang in self.languages)}
        return self._sp.DecodeIds([int(i) for i in ids if int(i) not in special])


# Han characters (CJK unified ideographs and extension A): written without spaces, each one
# counts as a word.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff"


def words_of(text: str) -> list[str]:
    """The words of `text` as the vocabulary counts them: lower-cased runs of letters and
    digits, Unicode-normalised (NFKC), so "Red," and "red" are one word; each Han character
    is a word of its own."""
    return re.findall(rf"[{_HAN}]|[^\W{_HAN}]+", unicodedata.normalize("NFKC", text).lower())


def write_words(captions: Iterable[str], out: str | os.PathLike,
                languages: Sequence[str] | None = None) -> None:
    """Writes the sorted words of `captions` to `out` atomically; with `languages` (one a
    caption), each word with the languages whose captions had it."""
    out = pathlib.Path(out)
    found: dict[str, set[str]] = {}
    for i, caption in enumerate(captions):
        for w in words_of(caption):
            found.setdefault(w, set())
            if languages is not None:
                found[w].add(languages[i])
    lines = [w if languages is None else f"{w}\t{' '.join(sorted(found[w]))}"
             for w in sorted(found)]
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", "utf-8")
    os.replace(tmp, out)


# Marks, in the training text only, the boundary between two Han characters: SentencePiece makes
# no piece across it, so the pieces it learns never span Chinese words (a colour would otherwise
# be a different token in each phrase it ends: 红色的, 红色圆形). Encoding never sees the mark.
_HAN_BREAK = "\u2063"
_BETWEEN_HAN = re.compile(rf"(?<=[{_HAN}])(?=[{_HAN}])")
_HAN_RUN = re.compile(rf"[{_HAN}]+")


def chinese_words(captions: Iterable[str], most: int) -> list[str]:
    """The Chinese words of two or more characters in `captions` (jieba's dictionary
    segmentation, without its guesses at words the dictionary lacks) seen at least twice, the
    `most` most frequent of them, sorted.

    The tokenizer makes each one a piece of its own, so a Chinese colour or shape is one token
    (红色, 三角形) as most English ones are, not characters of which the last (色, 形) is the
    same for every colour or shape."""
    counts: dict[str, int] = {}
    runs = [run for caption in captions for run in _HAN_RUN.findall(caption)]
    if not runs:
        return []
    import jieba  # only captions with Chinese need it; its dictionary loads in ~1 s

    jieba.setLogLevel(logging.WARNING)
    for run in runs:
        for word in jieba.cut(run, HMM=False):
            if len(word) > 1:
                counts[word] = counts.get(word, 0) + 1
    frequent = sorted((w for w in counts if counts[w] > 1), key=lambda w: (-counts[w], w))
    return sorted(frequent[:most])


def _train_bytes(captions: Sequence[str], vocab_size: int, model_type: str,
                 symbols: Sequence[str]) -> bytes:
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=(_BETWEEN_HAN.sub(_HAN_BREAK, c) for c in captions),
        pretokenization_delimiter=_HAN_BREAK, model_writer=buffer, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        user_defined_symbols=[MEDIA_START, MEDIA_END, *symbols], character_coverage=1.0,
        hard_vocab_limit=True, num_threads=2, minloglevel=2)
    return buffer.getvalue()


def train(captions: Iterable[str], vocab_size: int, model_type: str,
          out: str | os.PathLike, languages: Sequence[str] | None = None) -> TextTokenizer:
    """Trains on `captions` and writes the model to `out` atomically.

    `languages`: each caption's language. When they are more than one language, the model
    reserves a tag for each (in alphabetical order of their codes) and the word list keeps
    each word's languages. Every character of every caption is kept (`character_coverage` 1), so
    a script such as Chinese, with many rare characters, is never written as unk, and the
    frequent Chinese words are pieces of their own (`chinese_words`), up to a quarter of them.

    When the captions cannot support `vocab_size` pieces, the size is lowered to the largest
    they support, with a warning, instead of failing.
    """
    captions = list(captions)
    if languages is not None and len(languages) != len(captions):
        raise ValueError(f"{len(languages)} languages for {len(captions)} captions")
    kept = [i for i, c in enumerate(captions) if c.strip()]
    captions = [captions[i] for i in kept]
    languages = None if languages is None else [languages[i] for i in kept]
    if not captions:
        raise ValueError("no captions to train the text tokenizer on")
    several = languages is not None and len(set(languages)) > 1
    tags = [language_tag(lang) for lang in sorted(set(languages))] if several else []
    symbols = [*tags, *chinese_words(captions, most=vocab_size // 4)]
    try:
        model = _train_bytes(captions, vocab_size, model_type, symbols)
    except RuntimeError as e:
        limit = re.search(r"value <= (\d+)", str(e))
        if not limit:
            raise
        lowered = int(limit.group(1))
        log.warning("text.vocab_size=%d is more than the captions support; using %d",
                    vocab_size, lowered)
        model = _train_bytes(captions, lowered, model_type, symbols)
    out = pathlib.Path(out)
    write_words(captions, out.with_name(WORDS_FILENAME), languages if several else None)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(model)
    os.replace(tmp, out)
    return TextTokenizer(out)
