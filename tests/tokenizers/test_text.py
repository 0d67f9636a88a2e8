"""The SentencePiece text tokenizer."""

import logging
import re

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


_SEVERAL = [("a red circle bounces fast", "en"), ("two slow shapes in the box", "en"),
            ("un cerchio rosso rimbalza veloce", "it"), ("due forme lente nella scatola", "it"),
            ("um círculo vermelho quica rápido", "pt"), ("duas formas lentas na caixa", "pt"),
            ("一个红色的圆快速弹跳", "zh"), ("两个慢速的形状在盒子里", "zh")]


def test_several_languages_get_tags_their_own_words_and_round_trips(tmp_path):
    captions = [c for c, _ in _SEVERAL] * 5
    languages = [lang for _, lang in _SEVERAL] * 5
    tok = text.train(captions, 200, "unigram", tmp_path / text.FILENAME, languages)
    assert tok.languages == ("en", "it", "pt", "zh")
    tags = [tok.tag_id(lang) for lang in tok.languages]
    assert tags == list(range(text.MEDIA_END_ID + 1, text.MEDIA_END_ID + 5))
    for caption, lang in _SEVERAL:
        assert tok.detect(caption) == lang
        ids = tok.encode(caption)
        assert ids[:2] == [text.BOS_ID, tok.tag_id(lang)] and ids[-1] == text.EOS_ID
        assert text.UNK_ID not in ids  # every character is kept, Chinese included
        assert tok.decode(ids) == caption
        assert tok.unknown_words(caption, lang) == []
    assert tok.encode("rosso", language="pt")[1] == tok.tag_id("pt")
    # A word of another language is unknown in this one; a language never seen is refused.
    assert tok.unknown_words("un cerchio vermelho", "it") == ["vermelho"]
    assert tok.unknown_words("un cercle rouge", tok.detect("un cercle rouge")) == [
        "cercle", "rouge"]
    assert text.words_of("一个红色的圆, Red!") == ["一", "个", "红", "色", "的", "圆", "red"]
    with pytest.raises(ValueError, match="no language 'fr'"):
        tok.tag_id("fr")
    again = text.TextTokenizer(tmp_path / text.FILENAME)
    assert again.languages == tok.languages and again.encode(captions[2]) == tok.encode(
        captions[2])


def test_chinese_words_are_pieces_and_phrases_never_are(tmp_path):
    # Templated captions repeat whole phrases, which unspaced Chinese would make into pieces.
    captions = [f"{where}一个{colour}的{shape}{verb}" for where in ("在盒子里", "在画面中")
                for colour in ("红色", "蓝色", "绿色") for shape in ("圆", "正方形", "三角形")
                for verb in ("快速弹跳", "慢慢移动")] * 4
    words = text.chinese_words(captions, most=100)
    assert {"一个", "红色", "蓝色", "绿色", "正方形", "三角形", "快速", "弹跳"} <= set(words)
    assert not {"一个红色", "红色的", "的圆", "盒子里"} & set(words)
    tok = text.train(captions + ["a red circle"] * 8, 120, "unigram", tmp_path / text.FILENAME,
                     ["zh"] * len(captions) + ["en"] * 8)
    pieces = [tok.decode([i]) for i in range(tok.vocab_size)]
    assert [p for p in pieces if len(re.findall("[\u4e00-\u9fff]", p)) > 1
            and p not in words] == []
    for caption, pieces in [("一个红色的圆", ["一个", "红色", "的", "圆"]),
                            ("在画面中一个绿色的三角形慢慢移动",
                             ["在", "画面", "中", "一个", "绿色", "的", "三角形", "慢慢", "移动"])]:
        ids = tok.encode(caption)
        assert [p for i in ids[2:-1] if (p := tok.decode([i]))] == pieces  # besides "▁"
        assert tok.decode(ids) == caption


def test_chinese_words_come_from_the_dictionary_and_are_capped():
    # Seen once, or outside jieba's dictionary (its guesses at unknown words are off): no word.
    assert text.chinese_words(["红色的圆", "红色的方块", "方块"], most=10) == ["方块", "红色"]
    assert text.chinese_words(["蓝圆快跳", "青方慢移"] * 3, most=10) == []  # HMM: 蓝圆快, 青方
    assert text.chinese_words(["a red circle"] * 3, most=10) == []
    many = ["红色"] * 4 + ["蓝色"] * 3 + ["绿色"] * 2
    assert text.chinese_words(many, most=2) == ["红色", "蓝色"]  # the most frequent


def test_one_language_has_no_tags(tmp_path, captions):
    tok = text.train(captions, 64, "unigram", tmp_path / text.FILENAME, ["en"] * len(captions))
    assert tok.languages == () and tok.detect(captions[0]) is None
    (tmp_path / "plain").mkdir()
    plain = text.train(captions, 64, "unigram", tmp_path / "plain" / text.FILENAME)
    assert [tok.encode(c, language="en") for c in captions] == [plain.encode(c) for c in captions]
    assert (tmp_path / text.WORDS_FILENAME).read_text() == (
        tmp_path / "plain" / text.WORDS_FILENAME).read_text()
