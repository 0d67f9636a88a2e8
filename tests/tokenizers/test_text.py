"""The SentencePiece text tokenizer."""

import logging

import pytest

from o1.avshapes import generator
from o1.tokenizers import text


@pytest.fixture(scope="module")
def captions(tiny_config):
    return [generator.generate(tiny_config, "train", i).caption for i in range(60)]


def test_round_trip_and_reserved_ids(tmp_path, captions):
    tok = text.train(captions, 64, "unigram", tmp_path / text.FILENAME)
    for caption in captions[:10]:
        ids = tok.encode(caption)
        assert ids[0] == text.BOS_ID and ids[-1] == text.EOS_ID
        assert text.UNK_ID not in ids
        assert tok.decode(ids) == caption
    again = text.TextTokenizer(tmp_path / text.FILENAME)
    assert again.encode(captions[0]) == tok.encode(captions[0])
    assert again.decode([text.MEDIA_START_ID, *tok.encode("a red circle"),
                         text.MEDIA_END_ID, text.PAD_ID]) == "a red circle"
    assert tok.vocab_size == 64


def test_vocabulary_too_large_is_lowered_with_a_warning(tmp_path, captions, caplog):
    with caplog.at_level(logging.WARNING):
        tok = text.train(captions, 5000, "bpe", tmp_path / "t.model")
    assert "more than the captions support" in caplog.text
    assert 16 < tok.vocab_size < 5000
    assert tok.decode(tok.encode(captions[3])) == captions[3]


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match="no captions"):
        text.train(["  ", ""], 64, "unigram", tmp_path / "t.model")
    with pytest.raises(FileNotFoundError, match="o1 tokenizers train"):
        text.TextTokenizer(tmp_path / "missing.model")
