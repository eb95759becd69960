"""Sentencepiece trained in-process (BPE and unigram), saved and loaded back; the byte tokenizer."""

import random

import numpy as np
import pytest

from lm.data import tokenizer as tok

WORDS = ["the", "cat", "sat", "on", "a", "mat", "über", "naïve", "façade", "日本語", "данные", "λόγος",
         "🙂", "tab\there", "x=1;", "  spaced  "]
UNICODE_SAMPLES = [
    "Grüße aus Köln — naïve façade", "日本語のテキスト、句読点。", "Ελληνικά και русский",
    "emoji 🙂🚀 and ZWJ 👩‍💻", "  leading and trailing  ", "lines\nand\n\nblank\r\nlines\n",
    "tabs\tand\u00a0nbsp", "combining e\u0301 vs é", "",
]


SYLLABLES = ["ka", "lo", "mi", "ne", "su", "tor", "bre", "ü", "ç", "ö", "日", "本", "д", "λ"]


def word(rng):
    if rng.random() < 0.5:
        return rng.choice(WORDS)
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4)))


def corpus(n=400, seed=0):
    rng = random.Random(seed)
    return [" ".join(word(rng) for _ in range(rng.randint(3, 30))) +
            ("\n" if rng.random() < 0.5 else "") for _ in range(n)]


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trips_unicode(tmp_path, model_type):
    path = str(tmp_path / f"{model_type}.model")
    t = tok.train_sentencepiece(corpus(), 400, model_type, path)
    assert t.vocab_size == 400 and t.eos_id == 1
    for text in UNICODE_SAMPLES + ["unseen: ☃ Ω ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]:       # byte fallback covers unseen chars
        ids = t.encode(text)
        assert all(0 <= i < 400 for i in ids)
        assert t.decode(ids) == text
    again = tok.load_tokenizer(path)
    text = " ".join(corpus(5, seed=1))
    assert again.encode(text) == t.encode(text)
    assert again.vocab_size == 400


def test_small_vocab_without_byte_fallback_round_trips_seen_characters():
    t = tok.train_sentencepiece(corpus(), 120, "bpe")
    for text in corpus(20, seed=2):
        assert t.decode(t.encode(text)) == text


def test_byte_tokenizer_round_trips_anything():
    t = tok.load_tokenizer("byte")
    assert t.vocab_size == 257 and t.eos_id == 256
    for text in UNICODE_SAMPLES:
        assert t.decode(t.encode(text)) == text


def test_encode_documents_packs_with_eos():
    t = tok.ByteTokenizer()
    flat = tok.encode_documents(t, ["ab", "", "c"])
    np.testing.assert_array_equal(flat, [97, 98, 256, 256, 99, 256])


def test_vocabulary_larger_than_the_corpus_supports_is_a_clear_error():
    with pytest.raises(ValueError, match="larger than this corpus supports"):
        tok.train_sentencepiece(["tiny corpus, few words"] * 3, 5000, "bpe")


def test_empty_corpus_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        tok.train_sentencepiece(["", "  \n"], 300)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sentencepiece model"):
        tok.load_tokenizer(str(tmp_path / "nope.model"))
