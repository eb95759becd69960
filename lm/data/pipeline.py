"""Text -> tokens -> packed sequences -> batches -> this process's rows -> sharded device arrays.

`build_dataset(cfg, split)` turns a DataConfig into a `Dataset`: one split of one source, already
tokenized and randomly addressable by row. A `BatchStream` cuts it into global batches of
`batch_size` rows of `seq_len + 1` tokens (inputs = [:, :-1], targets = [:, 1:]) and hands each
process its own rows. Batch `step` is a pure function of (dataset, seed, step), so the position in
the checkpoint is just the step: resuming continues with exactly the next batch.

Row r of global batch s is row index i = s * batch_size + r of the split:
- synthetic: sequence i of the language's stream (seed, shard) with shard 0 = train, 1 = validation,
  2 = test: disjoint, infinite streams. Held-out splits ignore the seed, so every run of a sweep is
  scored on the same sequences.
- text: each document's tokens then EOS, concatenated in the prepared order; chunk j is tokens
  [j*seq_len, j*seq_len + seq_len + 1) (every token is a target exactly once per epoch). The train
  split visits chunks in a fresh seeded permutation each epoch; held-out splits in order.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any, Iterator

import numpy as np

from lm.config import DataConfig
from lm.io import atomic_write_bytes
from lm.step_blocks import StepBlocks
from lm.data import synthetic as syn
from lm.data.dataset import Dataset, load_or_encode, writable

SYNTHETIC_SHARDS = {"train": 0, "validation": 1, "test": 2}


class SyntheticDataset(Dataset):
    def __init__(self, spec: syn.LanguageSpec, split: str, shard: int, seq_len: int):
        self.spec = spec
        self.language = syn.language(spec)
        self.split = split
        self.shard = shard
        self.seq_len = seq_len
        self.vocab_size = spec.vocab
        self.eos_id = None
        self.shuffled = shard == 0
        self.name = (f"synthetic(K={spec.states},V={spec.vocab},S={spec.successors},E={spec.emissions},"
                     f"zipf={spec.zipf:g},seed={spec.seed})/{split}")

    @property
    def entropy_floor(self) -> float:
        return self.language.entropy_floor(self.seq_len)

    def rows(self, indices: np.ndarray, length: int, seed: int) -> np.ndarray:
        return self.language.sample(seed if self.shuffled else 0, self.shard, indices, length)


class TokenDataset(Dataset):
    """A packed token stream (documents + EOS) held in memory or memory-mapped from a .npy."""

    def __init__(self, tokens: np.ndarray, *, name: str, split: str, vocab_size: int, eos_id: int,
                 shuffled: bool, tokenizer: Any = None):
        self.tokens = tokens
        self.name = name
        self.split = split
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self.shuffled = shuffled
        self.tokenizer = tokenizer

    def n_chunks(self, length: int) -> int:
        return max(0, (len(self.tokens) - 1) // (length - 1))

    @functools.lru_cache(maxsize=4)
    def _order(self, seed: int, epoch: int, n: int) -> np.ndarray:
        keys = syn.random_bits(syn.stream_key(seed, epoch, 0x5EED), np.zeros(1, np.uint64), n)[0]
        return np.argsort(keys, kind="stable")

    def rows(self, indices: np.ndarray, length: int, seed: int) -> np.ndarray:
        n = self.n_chunks(length)
        if n == 0:
            raise ValueError(f"{self.name} has {len(self.tokens)} tokens, fewer than one sequence of "
                             f"{length}; lower seq_len or add text")
        indices = np.asarray(indices, dtype=np.int64)
        epochs, within = np.divmod(indices, n)
        chunks = within.copy()
        if self.shuffled:
            for epoch in np.unique(epochs):
                sel = epochs == epoch
                chunks[sel] = self._order(seed, int(epoch), n)[within[sel]]
        starts = chunks * (length - 1)
        return np.asarray(self.tokens[starts[:, None] + np.arange(length)[None, :]], dtype=np.int32)


# ---------------------------------------------------------------------------------------------

def _synthetic_vocab(cfg: DataConfig) -> int:
    return int(cfg.synthetic_vocab)


def language_spec(cfg: DataConfig) -> syn.LanguageSpec:
    return syn.LanguageSpec(states=cfg.synthetic_states, vocab=_synthetic_vocab(cfg),
                            successors=cfg.synthetic_successors, emissions=cfg.synthetic_emissions,
                            zipf=cfg.synthetic_zipf, seed=cfg.synthetic_language_seed)


def build_dataset(cfg: DataConfig, split: str, *, vocab_size_hint: int | None = None,
                  workdir: str | None = None, max_seq_len: int | None = None) -> Dataset:
    """One split of cfg.source, validated and tokenized; fails fast with the fix in the message.

    vocab_size_hint: the model's vocabulary. Text sources train a tokenizer of this size (unless
    cfg.tokenizer names one); for synthetic data it must be at least the language's vocabulary.
    workdir: the run folder; a trained tokenizer is copied there. max_seq_len: the model's context.
    """
    cfg.validate()
    if max_seq_len is not None and cfg.seq_len > max_seq_len:
        raise ValueError(f"seq_len={cfg.seq_len} is above the model's context max_seq_len={max_seq_len}; "
                         "lower data.seq_len or raise model.max_seq_len")
    if cfg.source == "synthetic":
        if split not in SYNTHETIC_SHARDS:
            raise ValueError(f"split {split!r} is not a synthetic split; use one of "
                             f"{list(SYNTHETIC_SHARDS)} (disjoint streams)")
        spec = language_spec(cfg).validate()
        if vocab_size_hint is not None and vocab_size_hint < spec.vocab:
            raise ValueError(f"the model's vocab_size={vocab_size_hint} is below the synthetic language's "
                             f"{spec.vocab} tokens; raise model.vocab_size to >= {spec.vocab}")
        return SyntheticDataset(spec, split, SYNTHETIC_SHARDS[split], cfg.seq_len)
    if cfg.source == "translation":
        from lm.data import paired
        return paired.build_translation(cfg, split, vocab_size_hint)
    if cfg.paired:
        from lm.data import paired_text
        return paired_text.build_paired_text(cfg, split, vocab_size_hint, workdir)
    return _build_text_dataset(cfg, split, vocab_size_hint, workdir)


def _build_text_dataset(cfg: DataConfig, split: str, vocab_size_hint: int | None,
                        workdir: str | None) -> "TokenDataset":
    from lm.data import tfds_text
    from lm.data import tokenizer as tok

    source = tfds_text.parse_source(cfg.source)
    builder = tfds_text.open_builder(source, cfg.data_dir)
    label = source.label
    tfds_text.check_split_and_feature(builder, label, split, cfg.text_feature)
    tfds_text.check_split_and_feature(builder, label, cfg.train_split, cfg.text_feature)
    if tfds_text.split_size(builder, split) == 0:
        raise ValueError(f"split {split!r} of {label} is empty; pick another split")
    tokenizer = _tokenizer(cfg, builder, label, vocab_size_hint, workdir)
    if vocab_size_hint is not None and tokenizer.vocab_size > vocab_size_hint:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is "
                         f"{vocab_size_hint}; raise model.vocab_size or use a smaller tokenizer")

    fp = _tokenizer_fingerprint(tokenizer)
    limit = cfg.max_documents
    safe_split = "".join(c if c.isalnum() else "_" for c in split) + (f"-first{limit}" if limit else "")
    cache = os.path.join(str(builder.data_dir), "lm_tokens", f"{safe_split}-{cfg.text_feature}-{fp}.npy")
    tokens = load_or_encode(cache, workdir, lambda: tok.encode_documents(
        tokenizer, tfds_text.iter_documents(builder, split, cfg.text_feature, limit=limit)))
    n_docs = int((tokens == tokenizer.eos_id).sum())
    if len(tokens) - n_docs == 0:
        raise ValueError(f"split {split!r} of {label} is empty: its documents hold no text in feature "
                         f"{cfg.text_feature!r}")
    if len(tokens) < cfg.seq_len + 1:
        raise ValueError(f"split {split!r} of {label} has {len(tokens)} tokens, fewer than one sequence "
                         f"of seq_len+1={cfg.seq_len + 1}; lower data.seq_len or add text")
    return TokenDataset(tokens, name=f"{label}/{split}", split=split, vocab_size=tokenizer.vocab_size,
                        eos_id=tokenizer.eos_id, shuffled=(split == cfg.train_split), tokenizer=tokenizer)


def _tokenizer_fingerprint(tokenizer) -> str:
    proto = getattr(tokenizer, "model_proto", None)
    return "byte" if proto is None else "sp" + hashlib.sha1(proto).hexdigest()[:12]


def _tokenizer(cfg: DataConfig, builder, label: str, vocab_size: int | None, workdir: str | None):
    """cfg.tokenizer if set; else a model cached beside the data (or in workdir); else train one on
    the train split and save it beside the data and in workdir."""
    from lm.data import tfds_text
    from lm.data import tokenizer as tok

    if cfg.tokenizer:
        return tok.load_tokenizer(cfg.tokenizer)
    if vocab_size is None:
        raise ValueError(f"{label} needs a tokenizer: pass vocab_size_hint (the model's vocab_size) to train "
                         "one, or set data.tokenizer to a sentencepiece .model file or 'byte'")
    name = f"lm_tokenizer-{cfg.tokenizer_type}-{vocab_size}-{cfg.train_split}-{cfg.text_feature}.model"
    beside = os.path.join(str(builder.data_dir), name)
    in_run = os.path.join(workdir, "tokenizer.model") if workdir else None
    for candidate in (beside, os.path.join(workdir, name) if workdir else None):
        if candidate and os.path.isfile(candidate):
            tokenizer = tok.SentencePieceTokenizer.load(candidate)
            break
    else:
        texts = tfds_text.iter_documents(builder, cfg.train_split, cfg.text_feature,
                                         limit=cfg.max_documents)
        tokenizer = tok.train_sentencepiece(texts, vocab_size, cfg.tokenizer_type)
        for candidate in (beside, os.path.join(workdir, name) if workdir else None):
            if candidate and writable(os.path.dirname(candidate)):
                tokenizer.save(candidate)   # else (read-only data, no run folder): memory only
                break
    if in_run and writable(workdir):
        atomic_write_bytes(in_run, tokenizer.model_proto)
    return tokenizer


# ---------------------------------------------------------------------------------------------

class BatchStream:
    """Global batch `step` = rows [step*batch_size, (step+1)*batch_size) of the dataset; this process
    loads only `rows` of it (indices within the global batch; default all), the rows its devices
    hold under the batch sharding (`process_rows`). The position (`step`) is global: the same on
    every process and under every mesh, so a checkpoint resumes on any number of processes.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seq_len: int, seed: int,
                 rows: np.ndarray | None = None):
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size={batch_size} and seq_len={seq_len} must be positive")
        rows = np.arange(batch_size, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        if rows.ndim != 1 or len(rows) == 0 or np.any(np.diff(rows) <= 0) or rows[0] < 0 \
                or rows[-1] >= batch_size:
            raise ValueError(f"rows {rows.tolist()} must be increasing indices in [0, batch_size={batch_size})")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.seed = int(seed)
        self.rows = rows
        self.step = 0
        if isinstance(dataset, TokenDataset) and dataset.n_chunks(seq_len + 1) == 0:
            raise ValueError(f"{dataset.name} has {len(dataset.tokens)} tokens, fewer than one sequence of "
                             f"seq_len+1={seq_len + 1}; lower seq_len or add text")

    def batch(self, step: int) -> np.ndarray:
        """int32 [len(rows), seq_len + 1]: this process's rows of global batch `step`."""
        return self.dataset.rows(step * self.batch_size + self.rows, self.seq_len + 1, self.seed)

    def device_batch(self, step: int, sharding) -> "Any":
        """Global batch `step` as a jax.Array [batch_size, seq_len + 1] laid out by `sharding`
        (built from this process's rows only)."""
        return to_device(self.batch(step), sharding, self.rows, self.batch_size)

    def steps_rows(self, start: int, stop: int) -> np.ndarray:
        """int32 [stop - start, len(rows), row width]: this process's rows of global batches
        [start, stop) (a row is seq_len + 1 tokens; paired data: source and target), drawn with ONE
        call into the dataset (the synthetic sampler costs per call, not per row: at batch 8 x 64
        one batch alone took as long as a d12 step)."""
        steps = np.arange(start, stop, dtype=np.int64)[:, None]
        indices = (steps * self.batch_size + self.rows[None, :]).ravel()
        rows = self.dataset.rows(indices, self.seq_len + 1, self.seed)
        return rows.reshape(stop - start, len(self.rows), -1)

    def device_block(self, start: int, stop: int, blocks: StepBlocks, sharding) -> "Any":
        """Global batches [start, stop), all within one of `blocks`, as ONE jax.Array [blocks.size,
        batch_size, row width] laid out by `sharding` (the block axis unsplit): each batch in its
        step's slot, the slots of other steps zeros (never read). One draw, one transfer."""
        blocks.check_within(start, stop)
        first = blocks.first(start)
        drawn = self.steps_rows(start, max(stop, start + 1))    # at least one step: the rows' width
        host = np.zeros((blocks.size, *drawn.shape[1:]), np.int32)
        host[start - first:stop - first] = drawn[:stop - start]
        return to_device(host, sharding, self.rows, self.batch_size, axis=1)

    def state(self) -> dict[str, Any]:
        """JSON-able position: the next step, and what it must be resumed with."""
        return {"step": int(self.step), "seed": self.seed, "batch_size": self.batch_size,
                "seq_len": self.seq_len, "dataset": self.dataset.name}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `state()`: the next batch is exactly the one that would have come next."""
        current = self.state()
        for key in ("seed", "batch_size", "seq_len", "dataset"):
            if key in state and state[key] != current[key]:
                raise ValueError(f"cannot resume: the checkpoint's data {key}={state[key]!r} differs from "
                                 f"this run's {current[key]!r}; resume with the same data config")
        self.step = int(state["step"])

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        batch = self.batch(self.step)
        self.step += 1
        return batch


def process_rows(sharding, global_shape: tuple[int, ...]) -> np.ndarray:
    """Sorted indices along axis 0 of an array of `global_shape` that this process's devices hold
    under `sharding` (any mesh: batch axes split across hosts in any order, or replicated)."""
    n = global_shape[0]
    rows: set[int] = set()
    for index in sharding.addressable_devices_indices_map(tuple(global_shape)).values():
        rows.update(range(*index[0].indices(n)))
    return np.asarray(sorted(rows), np.int64)


def to_device(batch: np.ndarray, sharding, rows: np.ndarray | None = None,
              global_rows: int | None = None, axis: int = 0) -> "Any":
    """The global jax.Array laid out by `sharding` from this process's part of it, its rows along
    `axis` ([global_rows, ...] for axis 0): `batch`'s row i along `axis` is global row `rows[i]`
    (default: `batch` is the whole array). Every row this process's devices hold must be among
    `rows` (see `process_rows`)."""
    import jax

    rows = np.arange(batch.shape[axis], dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    shape = list(batch.shape)
    shape[axis] = batch.shape[axis] if global_rows is None else global_rows
    shape = tuple(shape)

    def shard(index: tuple[slice, ...]) -> np.ndarray:
        wanted = np.arange(*index[axis].indices(shape[axis]))
        at = np.searchsorted(rows, wanted)
        if np.any(at >= len(rows)) or np.any(rows[np.minimum(at, len(rows) - 1)] != wanted):
            raise ValueError(f"this process holds rows {rows.tolist()} of the batch but its devices need "
                             f"{wanted.tolist()}; build the stream with rows=process_rows(sharding, shape)")
        return batch[(*index[:axis], at, *index[axis + 1:])]

    return jax.make_array_from_callback(shape, sharding, shard)


def floor_of(dataset: Dataset, tokens: np.ndarray) -> float:
    """Exact Bayes-optimal mean -log p(x_t | x_<t) over the targets [:, 1:] of [B, seq+1] batches
    (each row conditioned only on its own prefix, as the model sees it). Synthetic data only
    (for the translation task: the channel's -log p of each target token given its source)."""
    if hasattr(dataset, "floor_of"):
        return dataset.floor_of(tokens)
    if not isinstance(dataset, SyntheticDataset):
        raise ValueError(f"{dataset.name} has no known entropy floor; floor_of needs the synthetic source")
    tokens = np.asarray(tokens)
    if tokens.ndim == 3:
        tokens = tokens.reshape(-1, tokens.shape[-1])
    return dataset.language.floor_of(tokens)
