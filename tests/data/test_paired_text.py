"""Paired text for encoder-decoder models: local tab-separated pairs and a prepared TFDS translation
set (a `Translation` feature, laid out as `tfds build wmt14_translate/de-en` leaves it), tokenized by
real sentencepiece models trained here (shared or one per side), cut into [src | BOS, tgt] rows; bad
features and a tokenizer that does not cover the target side refused."""

import dataclasses
import random

import numpy as np
import pytest

from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.data import paired_text
from lm.data.pipeline import BatchStream, build_dataset
from lm.data.tokenizer import train_sentencepiece

SRC_WORDS = "the king and queen of north walked to a river where old miller sang bread iron".split()
DICTIONARY = {w: w[::-1] + "o" for w in SRC_WORDS}


def _pairs(n, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(SRC_WORDS) for _ in range(rng.randint(2, 9))]
        out.append((" ".join(words), " ".join(DICTIONARY[w] for w in words)))
    return out


@pytest.fixture(scope="module")
def pairs_glob(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    for f in range(2):
        (folder / f"part{f}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in _pairs(150, seed=f)), encoding="utf-8")
    return str(folder / "*.tsv")


@pytest.fixture(scope="module")
def wmt_dir(tmp_path_factory):
    """A data_dir holding a prepared 'wmt14_translate/de-en' (a Translation feature de/en; train/validation)."""
    import tensorflow_datasets as tfds

    class Fake(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="de-en")]

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.Translation(languages=("de", "en")))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(_pairs(200, 1)), "validation": self._generate_examples(_pairs(20, 2))}

        def _generate_examples(self, pairs):
            for i, (s, t) in enumerate(pairs):
                yield i, {"de": s, "en": t}

    Fake.name = "wmt14_translate"
    data_dir = str(tmp_path_factory.mktemp("wmt"))
    Fake(data_dir=data_dir, config="de-en", file_format="array_record").download_and_prepare(
        file_format="array_record")
    return data_dir


def test_local_pairs_become_padded_source_and_target_rows(pairs_glob, tmp_path):
    cfg = DataConfig(source=f"pairs:{pairs_glob}", seq_len=12, data_dir=str(tmp_path / "tfds"))
    ds = build_dataset(cfg, "train", vocab_size_hint=96, workdir=str(tmp_path / "run"))
    toks = ds.tokenizers
    assert toks.source is toks.target and toks.source.vocab_size == 96 and toks.target_offset == 0
    rows = BatchStream(ds, batch_size=8, seq_len=12, seed=0).batch(0)
    assert rows.shape == (8, 25)
    src, tgt = rows[:, :12], rows[:, 12:]
    assert np.all(tgt[:, 0] == toks.bos_id)
    for s_row, t_row in zip(src, tgt):                   # -1 padding only at the right end of each side
        for side in (s_row, t_row):
            real = side >= 0
            assert np.all(real[:real.sum()]) and not np.any(real[real.sum():])
    all_rows = ds.rows(np.arange(len(ds.table)), 13, 0)
    texts = {toks.source.decode([i for i in r[:12] if i >= 0]) for r in all_rows}
    assert any(t in texts for t, _ in _pairs(150, 0) + _pairs(150, 1))        # pieces decode to the text
    val = build_dataset(cfg, "validation", vocab_size_hint=96)
    assert 0 < len(val.table) < len(ds.table) and not val.shuffled
    assert (tmp_path / "run" / "tokenizer.model").exists()


def test_tfds_translation_set_with_separate_tokenizers(wmt_dir, tmp_path):
    cfg = DataConfig(source="tfds:wmt14_translate/de-en", source_feature="de", target_feature="en", seq_len=10,
                     data_dir=wmt_dir, separate_tokenizers=True)
    ds = build_dataset(cfg, "train", vocab_size_hint=128, workdir=str(tmp_path / "run"))
    toks = ds.tokenizers
    assert toks.source is not toks.target and toks.target_offset == toks.source.vocab_size == 64
    rows = ds.rows(np.arange(6), 11, 0)
    src, tgt = rows[:, :10], rows[:, 10:]
    assert np.all(src[src >= 0] < 64) and np.all(tgt[tgt >= 0] >= 64)          # disjoint id ranges
    eos = 64 + toks.target.eos_id
    whole = [r[r >= 0] for r in tgt if eos in r[1:]]                        # targets that were not truncated
    assert whole and all(toks.target.decode(r[1:-1] - 64) in {t for _, t in _pairs(200, 1)} for r in whole)
    assert (tmp_path / "run" / "target_tokenizer.model").exists()


def test_missing_feature_and_uncovered_target_are_refused(wmt_dir, tmp_path):
    cfg = DataConfig(source="tfds:wmt14_translate/de-en", source_feature="de", target_feature="fr", seq_len=10,
                     data_dir=wmt_dir)
    with pytest.raises(ValueError, match=r"no Text feature 'fr' for the target side; its features are \['de', 'en'\]"):
        build_dataset(cfg, "train", vocab_size_hint=64)
    greek = {w: "".join(chr(0x3B1 + (ord(c) - 97) % 24) for c in w) for w in SRC_WORDS}
    source_only = train_sentencepiece([s for s, _ in _pairs(100)], 40, path=str(tmp_path / "src.model"))
    assert source_only.vocab_size == 40
    pairs = tmp_path / "greek.tsv"
    pairs.write_text("".join(f"{s}\t{' '.join(greek[w] for w in s.split())}\n" for s, _ in _pairs(60)), encoding="utf-8")
    bad = DataConfig(source=f"pairs:{pairs}", seq_len=10, data_dir=str(tmp_path / "tfds"), tokenizer=str(tmp_path / "src.model"))
    with pytest.raises(ValueError, match="does not cover the target side"):
        build_dataset(bad, "train", vocab_size_hint=64)
    with pytest.raises(ValueError, match="both data.source_feature and data.target_feature"):
        DataConfig(source="tfds:wmt14_translate/de-en", source_feature="de").validate()


@pytest.mark.slow
def test_lm_train_on_paired_text_lowers_the_loss(pairs_glob, tmp_path):
    from lm.train import train
    cfg = TrainConfig(
        model=ModelConfig(vocab_size=96, d_model=32, n_layers=1, n_encoder_layers=1, n_heads=2, d_ff=64,
                          max_seq_len=12, positions="learned", compute_dtype="float32"),
        data=DataConfig(source=f"pairs:{pairs_glob}", seq_len=12, data_dir=str(tmp_path / "tfds")),
        optim=OptimConfig(learning_rate=1e-2, warmup_steps=5), steps=40, batch_size=16, eval_every=40,
        eval_batches=2, log_every=10, out_dir=str(tmp_path / "run"), peak_flops=1e11, progress=False,
        tensorboard=False)
    result = train(cfg)
    assert result["status"] == "completed" and result["eval_loss"] < 3.0       # ln(96) = 4.56 at the start
    with pytest.raises(ValueError, match="encoder-decoder models train on paired data"):
        dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, n_encoder_layers=0)).validate()
    _lm_sample_translates(str(tmp_path / "run"))


def _lm_sample_translates(run_dir):
    """lm-sample on the paired-text run: the source text through the run's own tokenizers, greedy decoding
    equal to generate() on the same ids, the target side's pieces decoded; no source: one clear error."""
    from lm.generate import SamplingConfig, generate, load_run, sample_run
    run = load_run(run_dir)
    toks = run.tokenizer
    sampling = SamplingConfig(max_new_tokens=6, temperature=0.0)
    rows = sample_run(run, ["", ""], sampling, sources=["the king sang", "old miller"])
    eos = toks.target_offset + toks.target.eos_id
    ref = generate(run.params, run.config.model, [[toks.bos_id]] * 2,
                   SamplingConfig(max_new_tokens=6, temperature=0.0, stop_tokens=(eos,)),
                   sources=[list(toks.source.encode("the king sang")), list(toks.source.encode("old miller"))])
    for row, ids in zip(rows, ref.tokens):
        assert row["tokens"] == ids
        assert row["continuation"] == toks.target.decode([t - toks.target_offset for t in ids if t != eos])
    with pytest.raises(ValueError, match="needs one --source text per --prompt"):
        sample_run(run, [""], sampling)
