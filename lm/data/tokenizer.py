"""Tokenizers: sentencepiece (BPE or unigram) trained in-process, and a byte-level fallback.

`train_sentencepiece(texts, vocab_size, ...)` trains from any iterator of documents, with identity
normalisation and no whitespace folding, so that decode(encode(text)) == text. When the vocabulary
has room for the 256 byte pieces (vocab_size >= 259 + distinct characters + 8), `byte_fallback`
turns any character unseen in training into its UTF-8 bytes, so every Unicode string round-trips;
a smaller vocabulary keeps every character of the training text (character_coverage=1.0) and maps
unseen ones to unk. One exception is sentencepiece's own: U+2581 ('▁', its whitespace marker) in
the input decodes as a space.

`ByteTokenizer` needs no training: ids 0-255 are UTF-8 bytes and 256 is end-of-document.
`load_tokenizer(path)` gives back either kind ('byte' names the byte tokenizer).

Ids: unk = 0, eos = 1 (the document separator the pipeline inserts); no bos or pad ids.
"""

from __future__ import annotations

import io
import os
import re
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

from lm.io import atomic_write_bytes

BYTE = "byte"
"""Value of DataConfig.tokenizer that selects the byte-level tokenizer."""
MAX_PIECE_CHARS = 4000
"""Documents are fed to the trainer in lines of at most this many characters (its limit is 4192 bytes)."""


class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...
    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as ids 0-255, end-of-document 256: vocab_size 257, exact on any text."""

    vocab_size = 257
    eos_id = 256
    kind = BYTE

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class SentencePieceTokenizer:
    """A trained sentencepiece model (loaded from a file or from its serialised proto)."""

    def __init__(self, model_proto: bytes, path: str | None = None):
        import sentencepiece as spm

        self.model_proto = model_proto
        self.path = path
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = int(self._sp.get_piece_size())
        self.eos_id = int(self._sp.eos_id())
        if self.eos_id < 0:
            raise ValueError(f"sentencepiece model {path or ''} has no eos piece; train it with eos_id set "
                             "(train_sentencepiece does)")
        self.kind = "sentencepiece"

    @classmethod
    def load(cls, path: str) -> "SentencePieceTokenizer":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no sentencepiece model at {path!r}; point data.tokenizer at an "
                                    "existing .model file, or leave it None to train one beside the data")
        with open(path, "rb") as f:
            return cls(f.read(), path)

    def save(self, path: str) -> str:
        atomic_write_bytes(path, self.model_proto)
        self.path = path
        return path

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts), num_threads=min(4, os.cpu_count() or 1))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))


def _lines(texts: Iterable[str], max_chars: int) -> Iterator[str]:
    """Cut documents into trainer-sized pieces, keeping their newlines, up to max_chars in all."""
    seen = 0
    for text in texts:
        for line in text.splitlines(keepends=True):
            for i in range(0, len(line), MAX_PIECE_CHARS):
                piece = line[i:i + MAX_PIECE_CHARS]
                yield piece
                seen += len(piece)
                if seen >= max_chars:
                    return


def train_sentencepiece(texts: Iterable[str], vocab_size: int, model_type: str = "bpe",
                        path: str | None = None, *, max_chars: int = 20_000_000,
                        byte_fallback: bool | None = None) -> SentencePieceTokenizer:
    """Train a sentencepiece model of exactly `vocab_size` pieces from documents `texts` (the first
    `max_chars` characters); save it to `path` if given. byte_fallback None = when it fits."""
    import sentencepiece as spm

    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"tokenizer_type={model_type!r}; pick 'bpe' or 'unigram'")
    lines = list(_lines(texts, max_chars))
    if not any(line.strip() for line in lines):
        raise ValueError("the corpus is empty: no text to train a tokenizer on; check the data source "
                         "and its text feature")
    n_chars = len(set("".join(lines)))
    if byte_fallback is None:
        byte_fallback = vocab_size >= 259 + n_chars + 8
    writer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=writer, vocab_size=vocab_size,
            model_type=model_type, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, split_digits=False,
            byte_fallback=byte_fallback, character_coverage=1.0, unk_id=0, eos_id=1, bos_id=-1,
            pad_id=-1, user_defined_symbols=["\n"], max_sentence_length=4 * MAX_PIECE_CHARS + 16,
            num_threads=min(4, os.cpu_count() or 1), minloglevel=2, train_extremely_large_corpus=False)
    except RuntimeError as e:
        message = str(e)
        high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
        if high:
            raise ValueError(f"vocab_size={vocab_size} is larger than this corpus supports: a {model_type} "
                             f"model of it has at most {high.group(2)} pieces; lower the model's vocab_size "
                             f"to <= {high.group(2)} or train on more text") from None
        low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
        if low:
            raise ValueError(f"vocab_size={vocab_size} is smaller than the {low.group(2)} distinct "
                             f"characters (plus special pieces) of the corpus; raise vocab_size or use "
                             f"tokenizer='byte'") from None
        raise ValueError(f"sentencepiece training failed: {message}") from None
    tokenizer = SentencePieceTokenizer(writer.getvalue())
    if path:
        tokenizer.save(path)
    return tokenizer


def load_tokenizer(path: str) -> Tokenizer:
    """'byte' -> ByteTokenizer; anything else is a sentencepiece .model file."""
    if path == BYTE:
        return ByteTokenizer()
    return SentencePieceTokenizer.load(path)


def encode_documents(tokenizer: Tokenizer, texts: Iterable[str], *, batch: int = 1024,
                     dtype=None) -> np.ndarray:
    """One flat token array: each document's ids followed by eos (the packing format)."""
    dtype = dtype or (np.uint16 if tokenizer.vocab_size <= 65536 else np.int32)
    chunks: list[np.ndarray] = []
    pending: list[str] = []

    def flush() -> None:
        for ids in tokenizer.encode_batch(pending):
            chunks.append(np.asarray(list(ids) + [tokenizer.eos_id], dtype=dtype))
        pending.clear()

    for text in texts:
        pending.append(text)
        if len(pending) >= batch:
            flush()
    flush()
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)
