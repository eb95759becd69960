"""`lm.train.train` on the text sources: a local-text TFDS set and a prepared TFDS name (the synthetic
default is trained by the trainer's own tests)."""

import dataclasses

import pytest

from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig

pytestmark = pytest.mark.slow


def tiny_run(data: DataConfig, out_dir, vocab: int) -> dict:
    from lm import train
    cfg = TrainConfig(model=ModelConfig(vocab_size=vocab, d_model=32, n_layers=1, n_heads=2, max_seq_len=32),
                      data=dataclasses.replace(data, seq_len=32), optim=OptimConfig(warmup_steps=1),
                      steps=4, batch_size=8, eval_every=0, eval_batches=1, out_dir=str(out_dir),
                      tensorboard=False, progress=False, peak_flops=1e11)
    return train.train(cfg)


def test_trains_on_local_text(corpus_glob, tfds_dir, tmp_path):
    result = tiny_run(DataConfig(source="text:" + corpus_glob, data_dir=tfds_dir), tmp_path / "run", vocab=96)
    assert result["status"] == "completed" and result["entropy_floor"] is None
    assert (tmp_path / "run" / "tokenizer.model").is_file()


def test_trains_on_a_prepared_tfds_name(prepared_tfds_dir, tmp_path):
    data = DataConfig(source="tfds:tiny_shakespeare", data_dir=prepared_tfds_dir)
    result = tiny_run(data, tmp_path / "run", vocab=64)
    assert result["status"] == "completed"
