"""The text tokenizer: SentencePiece trained on a dataset's captions.

Ids 0-3 are pad, bos, eos and unk; ids 4 and 5 are the markers that open and close a media
segment in the unified sequence (docs/design.md, "One sequence, many tasks"). They are reserved in
the SentencePiece model itself, so any tool that loads `text_tokenizer.model` agrees on them.
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
# them is one the model never read, even where SentencePiece can spell it from pieces.
WORDS_FILENAME = "text_words.txt"

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
        words = None if isinstance(model, bytes) else path.with_name(WORDS_FILENAME)
        # None for a tokenizer saved without its word list: then only spelling is checked.
        self.words = frozenset(words.read_text("utf-8").split()) \
            if words is not None and words.is_file() else None

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` (in order, once each) that the training captions never had, or,
        without a word list, that SentencePiece can only write as unk."""
        unknown = []
        for word in dict.fromkeys(words_of(text)):
            if (word not in self.words) if self.words is not None else \
                    UNK_ID in self._sp.EncodeAsIds(word):
                unknown.append(word)
        return unknown

    @property
    def vocab_size(self) -> int:
        return self._sp.GetPieceSize()

    def encode(self, text: str, *, bos: bool = True, eos: bool = True) -> list[int]:
        """Ids of `text`, optionally framed by bos/eos."""
        ids = self._sp.EncodeAsIds(text)
        return ([BOS_ID] if bos else []) + ids + ([EOS_ID] if eos else [])

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids`; pad, bos, eos and media markers are dropped."""
        special = {PAD_ID, BOS_ID, EOS_ID, MEDIA_START_ID, MEDIA_END_ID}
        return self._sp.DecodeIds([int(i) for i in ids if int(i) not in special])


def words_of(text: str) -> list[str]:
    """The words of `text` as the vocabulary counts them: lower-cased runs of letters and
    digits, Unicode-normalised (NFKC), so "Red," and "red" are one word."""
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


def write_words(captions: Iterable[str], out: str | os.PathLike) -> None:
    """Writes the sorted words of `captions` to `out` atomically."""
    out = pathlib.Path(out)
    words = sorted({w for caption in captions for w in words_of(caption)})
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(words) + "\n", "utf-8")
    os.replace(tmp, out)


def _train_bytes(captions: Sequence[str], vocab_size: int, model_type: str) -> bytes:
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(captions), model_writer=buffer, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        user_defined_symbols=[MEDIA_START, MEDIA_END], character_coverage=1.0,
        hard_vocab_limit=True, num_threads=2, minloglevel=2)
    return buffer.getvalue()


def train(captions: Iterable[str], vocab_size: int, model_type: str,
          out: str | os.PathLike) -> TextTokenizer:
    """Trains on `captions` and writes the model to `out` atomically.

    When the captions cannot support `vocab_size` pieces, the size is lowered to the largest
    they support, with a warning, instead of failing.
    """
    captions = [c for c in captions if c.strip()]
    if not captions:
        raise ValueError("no captions to train the text tokenizer on")
    try:
        model = _train_bytes(captions, vocab_size, model_type)
    except RuntimeError as e:
        limit = re.search(r"value <= (\d+)", str(e))
        if not limit:
            raise
        lowered = int(limit.group(1))
        log.warning("text.vocab_size=%d is more than the captions support; using %d",
                    vocab_size, lowered)
        model = _train_bytes(captions, lowered, model_type)
    out = pathlib.Path(out)
    write_words(captions, out.with_name(WORDS_FILENAME))
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(model)
    os.replace(tmp, out)
    return TextTokenizer(out)
