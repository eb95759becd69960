"""Paired text for encoder-decoder models: TFDS translation sets and local paired files, tokenized
with sentencepiece and cut into the same `[src | BOS, tgt]` rows as the synthetic translation task.

Sources (DataConfig.source, with data.source_feature / data.target_feature naming the two sides)
- `tfds:NAME[/CONFIG]` with source_feature and target_feature set, e.g. tfds:wmt14_translate/de-en
  with source_feature='de', target_feature='en' (a prepared array_record set; lm.data.tfds_text).
  Either two Text features or one `Translation` feature's languages.
- `pairs:GLOB`: local UTF-8 files of one pair per line, `source<TAB>target`, through the LocalPairs
  TFDS builder defined here (a fixed 5 % of the pairs form 'validation'); its features are 'source'
  and 'target' (the defaults when the feature fields are None).

Tokenizers (sentencepiece; lm.data.tokenizer)
- shared (default): one model for both sides: data.tokenizer, else trained on both sides of the
  train split with the model's vocab_size pieces.
- separate (data.target_tokenizer set, or data.separate_tokenizers): a source model and a target
  model; target ids are offset by the source model's size so the two sides never share an id, and
  the model's vocab_size must hold both. Trained here: vocab_size // 2 pieces each.

Rows
Row i is pair i of the split (the train split in a fresh seeded order each epoch, held-out splits in
order; both wrap around): the source's ids truncated to S = seq_len and right-padded with -1, then
[BOS, target ids, eos] truncated to S + 1 and padded with -1 (BOS = the target model's eos id: the
decoder's start token). lm.step.seq2seq_loss masks both paddings (the encoder's self-attention, the
cross-attention and the loss).

Bad input, refused before anything compiles: a missing or non-Text feature (naming the features
there are), and a tokenizer that does not cover the target side (more than MAX_UNKNOWN of a sample
of the target text's pieces are unknown: train the tokenizer on both sides or give a target model).
"""

from __future__ import annotations

import dataclasses
import functools
import glob as globlib
import hashlib
import os
from typing import Any, Iterator, Sequence

import numpy as np

from lm.data import synthetic as syn
from lm.data.dataset import Dataset, load_or_encode, writable

PAD = -1
MAX_UNKNOWN = 0.05
"""Largest fraction of unknown pieces allowed in a sample of the target side."""
COVERAGE_SAMPLE = 200
"""Pairs of the train split whose target side the coverage check encodes."""
LOCAL_BUILDER_NAME = "lm_local_pairs"


def features(cfg) -> tuple[str, str]:
    """(source feature, target feature) of a paired DataConfig."""
    return cfg.source_feature or "source", cfg.target_feature or "target"


# ---------------------------------------------------------------------------------------------
# Local paired files: one `source<TAB>target` pair per line.

def _read_pairs(files: Sequence[str]) -> list[tuple[str, str, str]]:
    pairs = []
    for i, path in enumerate(files):
        with open(path, encoding="utf-8", errors="replace") as f:
            for j, line in enumerate(f):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                if "\t" not in line:
                    raise ValueError(f"{path}:{j + 1} is not a pair: paired files hold one `source<TAB>target` "
                                     "pair per line")
                src, tgt = line.split("\t", 1)
                pairs.append((f"{i}:{j}", src, tgt))
    if not pairs:
        raise ValueError(f"the paired files {list(files)} hold no pairs; write one `source<TAB>target` per line")
    return pairs


@functools.lru_cache(maxsize=1)
def _local_pairs_class():
    from lm.data.tfds_text import VALIDATION_FRACTION, files_fingerprint, import_tfds

    tfds = import_tfds()

    class LocalPairs(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Local paired files; features 'source' and 'target'; 'train' and 'validation' splits."""

        name = LOCAL_BUILDER_NAME
        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "Pairs of local tab-separated files, 5% validation."}

        def __init__(self, *, files: Sequence[str], pattern: str, **kwargs: Any):
            self._files = list(files)
            super().__init__(config=tfds.core.BuilderConfig(name=files_fingerprint(files), description=pattern), **kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, description=f"Paired files {self.builder_config.description}",
                                         features=tfds.features.FeaturesDict({"source": tfds.features.Text(),
                                                                              "target": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            pairs = _read_pairs(self._files)
            ranked = sorted(pairs, key=lambda p: hashlib.sha1(p[0].encode()).digest())
            n_val = max(1, round(VALIDATION_FRACTION * len(pairs))) if len(pairs) > 1 else 0
            val = {p[0] for p in ranked[:n_val]}
            return {"train": self._generate([p for p in pairs if p[0] not in val]),
                    "validation": self._generate([p for p in pairs if p[0] in val])}

        def _generate(self, pairs):
            for key, src, tgt in pairs:
                yield key, {"source": src, "target": tgt}

        def _generate_examples(self, **kwargs):  # required abstract method; splits use _generate
            raise NotImplementedError

    return LocalPairs


def local_pairs_builder(pattern: str, data_dir: str | None):
    """The LocalPairs builder for a glob, prepared (array_record) on first use."""
    from lm.data.tfds_text import default_data_dir, is_prepared, quiet_custom_config_warning

    files = sorted(f for f in globlib.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(f))
    if not files:
        raise FileNotFoundError(f"no files match {pattern!r} (data source pairs:{pattern}); check the path and "
                                "quote the glob so the shell does not expand it")
    quiet_custom_config_warning()
    builder = _local_pairs_class()(files=files, pattern=pattern, data_dir=default_data_dir(data_dir),
                                   file_format="array_record")
    if not is_prepared(builder.data_dir):
        builder.download_and_prepare(file_format="array_record")
    return builder


def open_paired(cfg) -> tuple[Any, str]:
    """(builder, label) of a paired text source."""
    from lm.data import tfds_text

    if cfg.source.startswith("pairs:"):
        return local_pairs_builder(cfg.source[len("pairs:"):], cfg.data_dir), cfg.source
    source = tfds_text.parse_source(cfg.source)
    tfds_text.import_tfds()
    import tensorflow_datasets.translate  # noqa: F401  (registers wmt*_translate, ...; needs no TF)
    return tfds_text.open_builder(source, cfg.data_dir), source.label


def check_features(builder, label: str, split: str, cfg) -> None:
    """The split exists and both sides are Text features (one error naming what is there)."""
    from lm.data.tfds_text import check_split_and_feature

    for side, feature in zip(("source", "target"), features(cfg)):
        try:
            check_split_and_feature(builder, label, split, feature)
        except ValueError as err:
            if str(err).startswith("split "):
                raise
            keys = list(builder.info.features.keys())
            raise ValueError(f"paired data {label} has no Text feature {feature!r} for the {side} side; its "
                             f"features are {keys}: set data.{side}_feature to one of them") from None


def iter_pairs(builder, split: str, cfg, limit: int | None = None) -> Iterator[tuple[str, str]]:
    """(source text, target text) of the split's pairs in the prepared order."""
    src_f, tgt_f = features(cfg)
    data = builder.as_data_source(split=split)
    n = len(data) if limit is None else min(limit, len(data))
    for lo in range(0, n, 1024):
        idx = list(range(lo, min(n, lo + 1024)))
        items = data.__getitems__(idx) if hasattr(data, "__getitems__") else [data[i] for i in idx]
        for item in items:
            yield tuple(v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
                        for v in (item[src_f], item[tgt_f]))


# ---------------------------------------------------------------------------------------------
# Tokenizers: shared or separate, loaded or trained on the train split.

@dataclasses.dataclass
class PairTokenizers:
    source: Any
    target: Any
    target_offset: int
    """Added to target ids (separate tokenizers: the source model's size; shared: 0)."""

    @property
    def vocab_size(self) -> int:
        return max(self.source.vocab_size, self.target_offset + self.target.vocab_size)

    @property
    def bos_id(self) -> int:
        """The decoder's start token: the target model's eos, offset."""
        return self.target_offset + self.target.eos_id

    def fingerprint(self) -> str:
        protos = tuple(getattr(t, "model_proto", b"byte") for t in (self.source, self.target))
        return "sp" + hashlib.sha1(b"|".join(protos)).hexdigest()[:12]


def _trained(cfg, builder, texts_of, vocab: int, name: str, workdir: str | None):
    """A sentencepiece model cached beside the data (or in workdir), else trained on texts_of()."""
    from lm.data import tokenizer as tok

    places = [os.path.join(str(builder.data_dir), name)] + ([os.path.join(workdir, name)] if workdir else [])
    for path in places:
        if os.path.isfile(path):
            return tok.SentencePieceTokenizer.load(path)
    model = tok.train_sentencepiece(texts_of(), vocab, cfg.tokenizer_type)
    for path in places:
        if writable(os.path.dirname(path)):
            model.save(path)
            break
    return model


def tokenizers(cfg, builder, vocab_size: int | None, workdir: str | None) -> PairTokenizers:
    """The pair's tokenizers (module docstring); copies them into workdir for lm-sample."""
    from lm.data import tokenizer as tok
    from lm.io import atomic_write_bytes

    separate = cfg.separate_tokenizers or cfg.target_tokenizer is not None
    if (cfg.tokenizer is None or (separate and cfg.target_tokenizer is None)) and vocab_size is None:
        raise ValueError("paired text needs tokenizers: pass vocab_size_hint (the model's vocab_size) to train "
                         "them, or set data.tokenizer (and data.target_tokenizer) to sentencepiece .model files")
    src_f, tgt_f = features(cfg)
    pairs = lambda: iter_pairs(builder, cfg.train_split, cfg, cfg.max_documents)
    stem = f"lm_tokenizer-{cfg.tokenizer_type}-{cfg.train_split}"
    if not separate:
        both = lambda: (t for pair in pairs() for t in pair)
        shared = (tok.load_tokenizer(cfg.tokenizer) if cfg.tokenizer else
                  _trained(cfg, builder, both, vocab_size, f"{stem}-{vocab_size}-{src_f}+{tgt_f}.model", workdir))
        out = PairTokenizers(shared, shared, 0)
    else:
        half = None if vocab_size is None else vocab_size // 2
        src = (tok.load_tokenizer(cfg.tokenizer) if cfg.tokenizer else
               _trained(cfg, builder, lambda: (s for s, _ in pairs()), half, f"{stem}-{half}-{src_f}.model", workdir))
        tgt = (tok.load_tokenizer(cfg.target_tokenizer) if cfg.target_tokenizer else
               _trained(cfg, builder, lambda: (t for _, t in pairs()), half, f"{stem}-{half}-{tgt_f}.model", workdir))
        out = PairTokenizers(src, tgt, src.vocab_size)
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        for name, model in (("tokenizer.model", out.source), ("target_tokenizer.model", out.target)):
            if hasattr(model, "model_proto") and (name == "tokenizer.model" or model is not out.source):
                atomic_write_bytes(os.path.join(workdir, name), model.model_proto)
    return out


def check_target_coverage(toks: PairTokenizers, builder, cfg, label: str) -> float:
    """The fraction of unknown pieces in a sample of the target side; refuses more than MAX_UNKNOWN."""
    unk = toks.target._sp.unk_id() if hasattr(toks.target, "_sp") else -1
    texts = [t for _, t in iter_pairs(builder, cfg.train_split, cfg, COVERAGE_SAMPLE)]
    ids = [i for row in toks.target.encode_batch(texts) for i in row]
    frac = float(np.mean(np.asarray(ids) == unk)) if ids else 0.0
    if frac > MAX_UNKNOWN:
        which = cfg.target_tokenizer or cfg.tokenizer or "the trained tokenizer"
        raise ValueError(f"the tokenizer {which} does not cover the target side of {label}: {100 * frac:.0f} % of "
                         f"its pieces on {len(texts)} target sentences are unknown (limit {100 * MAX_UNKNOWN:.0f} %); "
                         "train it on both sides (data.tokenizer=None) or give the target side its own model "
                         "(data.target_tokenizer)")
    return frac


# ---------------------------------------------------------------------------------------------
# Rows.

def encode_pairs(toks: PairTokenizers, pairs: Sequence[tuple[str, str]], src_len: int) -> np.ndarray:
    """int32 [n, 2 src_len + 1]: [source ids (truncated, -1 padded) | BOS, target ids, eos (truncated
    to src_len + 1, -1 padded)]."""
    out = np.full((len(pairs), 2 * src_len + 1), PAD, np.int32)
    if not pairs:
        return out
    srcs = toks.source.encode_batch([s for s, _ in pairs])
    tgts = toks.target.encode_batch([t for _, t in pairs])
    eos = toks.target.eos_id + toks.target_offset
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        s = list(s)[:src_len]
        t = ([toks.bos_id] + [x + toks.target_offset for x in t] + [eos])[:src_len + 1]
        out[i, :len(s)] = s
        out[i, src_len:src_len + len(t)] = t
    return out


class PairedTextDataset(Dataset):
    """One split of paired text as rows [src (S) | BOS, tgt (S)], -1 = padding."""

    def __init__(self, rows: np.ndarray, *, name: str, split: str, src_len: int, toks: PairTokenizers,
                 shuffled: bool):
        self.table = rows
        self.name = name
        self.split = split
        self.src_len = src_len
        self.tokenizers = toks
        self.tokenizer = toks.source
        self.vocab_size = toks.vocab_size
        self.eos_id = None
        self.shuffled = shuffled

    @functools.lru_cache(maxsize=4)
    def _order(self, seed: int, epoch: int) -> np.ndarray:
        n = len(self.table)
        keys = syn.random_bits(syn.stream_key(seed, epoch, 0x9A1D), np.zeros(1, np.uint64), n)[0]
        return np.argsort(keys, kind="stable")

    def rows(self, indices: np.ndarray, length: int, seed: int) -> np.ndarray:
        if length != self.src_len + 1:
            raise ValueError(f"{self.name} makes targets of seq_len={self.src_len} (+1 for BOS); asked for "
                             f"rows of {length} target tokens")
        epochs, within = np.divmod(np.asarray(indices, np.int64), len(self.table))
        picks = within.copy()
        if self.shuffled:
            for epoch in np.unique(epochs):
                sel = epochs == epoch
                picks[sel] = self._order(seed, int(epoch))[within[sel]]
        return np.asarray(self.table[picks], np.int32)


def build_paired_text(cfg, split: str, vocab_size_hint: int | None, workdir: str | None) -> PairedTextDataset:
    """The split of a paired text DataConfig: checked, tokenized (cached beside the data), as rows."""
    builder, label = open_paired(cfg)
    for s in dict.fromkeys((split, cfg.train_split)):
        check_features(builder, label, s, cfg)
    toks = tokenizers(cfg, builder, vocab_size_hint, workdir)
    if vocab_size_hint is not None and toks.vocab_size > vocab_size_hint:
        raise ValueError(f"the tokenizers need {toks.vocab_size} ids (source and target) but the model's vocab_size "
                         f"is {vocab_size_hint}; raise model.vocab_size or use smaller tokenizers")
    check_target_coverage(toks, builder, cfg, label)
    limit = cfg.max_documents
    src_f, tgt_f = features(cfg)
    safe = "".join(c if c.isalnum() else "_" for c in split) + (f"-first{limit}" if limit else "")
    cache = os.path.join(str(builder.data_dir), "lm_pairs",
                         f"{safe}-{src_f}-{tgt_f}-S{cfg.seq_len}-{toks.fingerprint()}.npy")
    table = load_or_encode(cache, workdir, lambda: encode_pairs(toks, list(iter_pairs(builder, split, cfg, limit)),
                                                                 cfg.seq_len))
    if len(table) == 0:
        raise ValueError(f"split {split!r} of {label} holds no pairs; pick another split")
    return PairedTextDataset(np.asarray(table), name=f"{label}[{src_f}->{tgt_f}]/{split}", split=split,
                             src_len=cfg.seq_len, toks=toks, shuffled=split == cfg.train_split)
