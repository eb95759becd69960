"""Paired (source, target) data for encoder-decoder models: a synthetic translation task whose best
possible loss is known exactly.

The task
--------
Vocabulary of V ids (`DataConfig.synthetic_vocab`): id 0 (BOS) starts every target, ids 1..V-1 are
words. A source sentence is `seq_len` words drawn independently and uniformly. Its translation is
the source passed word by word through a fixed noisy channel built from a seed
(`DataConfig.synthetic_language_seed`): word x becomes its dictionary word perm(x) with probability
1 - eps_x, and otherwise a uniformly random word (perm(x) included); eps_x is drawn once per word in
[noise/2, 3*noise/2] (`DataConfig.translation_noise` = noise), so some words are noisier than others.

The floor
---------
Given the whole source, target word t depends only on source word t, so the Bayes-optimal
conditional loss of a target token is the channel's entropy at that word:
    h(x) = -p log p - (V-2) q log q,   q = eps_x / (V-1),  p = 1 - eps_x + q,
and the expected floor is mean_x h(x) over the uniform source (`entropy_floor`, exact, no sampling).
`floor_of(batch)` is the realised mean -log P(target_t | source_t) of a batch, the number a perfect
model scores on exactly those rows.

Rows
----
A batch row is the source then the target row, concatenated: [src (S) | BOS, tgt_1..tgt_S] of
2S + 1 int32 ids (S = seq_len). One array per batch keeps the batch stream, its per-process row
selection, sharding, gradient accumulation and resume exactly as for decoder-only data;
`split_rows` cuts it back into (src [B, S], tgt [B, S+1]). Row i of a split is a pure function of
(channel seed, split, data seed, i): random access, so resuming continues with the next batch.
Splits are disjoint streams (train 0, validation 1, test 2); held-out splits ignore the data seed.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from lm.data import synthetic as syn
from lm.data.dataset import Dataset

BOS_ID = 0
SHARDS = {"train": 0, "validation": 1, "test": 2}
_SRC, _COIN, _NOISE = 0x5C0, 0xC014, 0x4015E  # salts of the three random streams of a row


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """The translation task: vocabulary, channel noise and the seed of the channel's tables."""

    vocab: int
    """Ids in [0, vocab): 0 is BOS, 1..vocab-1 are words (at least 2 words)."""
    noise: float
    """Mean probability that a word is replaced by a uniformly random word, in [0, 0.5]."""
    seed: int
    """Seed of the dictionary permutation and the per-word noise levels."""

    def validate(self) -> "ChannelSpec":
        if self.vocab < 3:
            raise ValueError(f"the translation task needs vocab >= 3 (BOS + 2 words), got synthetic_vocab="
                             f"{self.vocab}; raise data.synthetic_vocab")
        if not 0.0 <= self.noise <= 0.5:
            raise ValueError(f"translation_noise={self.noise} is outside [0, 0.5]; pick e.g. 0.1")
        return self


class Channel:
    """The fixed tables of a ChannelSpec: perm [V] (word -> dictionary word), eps [V] (noise per word)."""

    def __init__(self, spec: ChannelSpec):
        self.spec = spec.validate()
        v = spec.vocab
        keys = syn.random_bits(syn.stream_key(spec.seed, 0xD1C7), np.zeros(1, np.uint64), 2 * v)[0]
        words = np.arange(1, v)
        self.perm = np.concatenate([[BOS_ID], words[np.argsort(keys[1:v], kind="stable")]]).astype(np.int32)
        u = _unit(keys[v:])
        self.eps = np.where(np.arange(v) == BOS_ID, 0.0, spec.noise * (0.5 + u))

    def log_prob(self, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
        """log P(tgt | src) elementwise, for word ids of the same shape (float64)."""
        q = self.eps[src] / (self.spec.vocab - 1)
        hit = tgt == self.perm[src]
        p = np.where(hit, 1.0 - self.eps[src] + q, q)
        return np.log(p)

    def entropy(self) -> np.ndarray:
        """h(x) in nats for every id x (0 for BOS): the conditional entropy of the channel's output."""
        words = self.spec.vocab - 1
        q = self.eps / words
        p = 1.0 - self.eps + q
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -p * np.log(p) - (words - 1) * np.where(q > 0, q * np.log(q), 0.0)
        return np.where(np.arange(self.spec.vocab) == BOS_ID, 0.0, h)

    def sample(self, seed: int, shard: int, rows: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(src [n, length], tgt [n, length]) int32 word ids of rows `rows` of stream (seed, shard)."""
        rows = np.asarray(rows, dtype=np.uint64)
        words = self.spec.vocab - 1

        def bits(salt: int) -> np.ndarray:
            return syn.random_bits(syn.stream_key(self.spec.seed, seed, shard, salt), rows, length)

        src = (1 + bits(_SRC) % np.uint64(words)).astype(np.int32)
        noisy = _unit(bits(_COIN)) < self.eps[src]
        random_word = (1 + bits(_NOISE) % np.uint64(words)).astype(np.int32)
        return src, np.where(noisy, random_word, self.perm[src]).astype(np.int32)


def _unit(bits: np.ndarray) -> np.ndarray:
    """float64 uniforms in (0, 1) from uint64 hashes."""
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


@functools.lru_cache(maxsize=8)
def channel(spec: ChannelSpec) -> Channel:
    return Channel(spec)


class TranslationDataset(Dataset):
    """One split of the synthetic translation task; rows are [src (S) | BOS, tgt (S)]."""

    def __init__(self, spec: ChannelSpec, split: str, src_len: int):
        if split not in SHARDS:
            raise ValueError(f"split {split!r} is not a translation split; use one of {list(SHARDS)}")
        self.channel = channel(spec)
        self.split = split
        self.shard = SHARDS[split]
        self.src_len = src_len
        self.vocab_size = spec.vocab
        self.eos_id = None
        self.shuffled = self.shard == 0
        self.name = f"translation(V={spec.vocab},noise={spec.noise:g},seed={spec.seed})/{split}"

    @property
    def entropy_floor(self) -> float:
        """Expected Bayes-optimal loss per target token (exact): the mean of h over source words."""
        return float(np.mean(self.channel.entropy()[1:]))

    def rows(self, indices: np.ndarray, length: int, seed: int) -> np.ndarray:
        """int32 [n, src_len + length]: source then BOS + the length - 1 target words."""
        if length != self.src_len + 1:
            raise ValueError(f"{self.name} makes targets of seq_len={self.src_len} (+1 for BOS); "
                             f"asked for rows of {length} target tokens")
        src, tgt = self.channel.sample(seed if self.shuffled else 0, self.shard, indices, self.src_len)
        bos = np.full((len(src), 1), BOS_ID, np.int32)
        return np.concatenate([src, bos, tgt], axis=1)

    def floor_of(self, rows: np.ndarray) -> float:
        """Realised mean -log P(tgt_t | src_t) over the target tokens of rows [..., 2S+1]."""
        rows = np.asarray(rows).reshape(-1, np.shape(rows)[-1])
        src, tgt = split_rows(rows, self.src_len)
        return float(-np.mean(self.channel.log_prob(src, tgt[:, 1:])))


def split_rows(rows, src_len: int):
    """(src [B, src_len], tgt [B, T+1]) from concatenated rows [B, src_len + T + 1] (numpy or jax)."""
    return rows[:, :src_len], rows[:, src_len:]


def build_translation(cfg, split: str, vocab_size_hint: int | None) -> TranslationDataset:
    """The translation split of a DataConfig with source 'translation' (validated)."""
    spec = ChannelSpec(vocab=int(cfg.synthetic_vocab), noise=float(cfg.translation_noise),
                       seed=int(cfg.synthetic_language_seed)).validate()
    if vocab_size_hint is not None and vocab_size_hint < spec.vocab:
        raise ValueError(f"the model's vocab_size={vocab_size_hint} is below the translation task's "
                         f"{spec.vocab} ids; raise model.vocab_size to >= {spec.vocab}")
    return TranslationDataset(spec, split, cfg.seq_len)
