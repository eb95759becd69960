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


def _recorded_data_position(run_dir) -> dict:
    """The data position the run's last checkpoint recorded (the JSON orbax wrote for it)."""
    import json
    import pathlib
    step_dirs = sorted((pathlib.Path(run_dir) / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
    for path in sorted((step_dirs[-1] / "data").rglob("*")):
        try:
            found = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError, IsADirectoryError):
            continue
        if isinstance(found, dict) and "dataset" in found:
            return found
    raise AssertionError(f"no data position in {step_dirs[-1]}")


def test_trains_on_a_prepared_tfds_name(prepared_tfds_dir, tmp_path):
    """The run trains on the prepared set's train split through the tokenizer it trained and keeps:
    its checkpoint records that split and 4 steps, and its batches decode to that split's text."""
    from lm.data.pipeline import BatchStream, build_dataset
    from lm.data.tokenizer import load_tokenizer

    data = DataConfig(source="tfds:tiny_shakespeare", data_dir=prepared_tfds_dir)
    result = tiny_run(data, tmp_path / "run", vocab=64)
    assert result["status"] == "completed" and result["entropy_floor"] is None
    assert result["tokens"] == 4 * 8 * 32
    position = _recorded_data_position(tmp_path / "run")
    assert position["dataset"] == "tfds:tiny_shakespeare/train" and position["step"] == 4
    model = str(tmp_path / "run" / "tokenizer.model")
    tokenizer = load_tokenizer(model)
    assert tokenizer.vocab_size <= 64
    ds = build_dataset(dataclasses.replace(data, seq_len=32, tokenizer=model), "train")
    stream = BatchStream(ds, 8, 32, position["seed"])
    text = " ".join(tokenizer.decode(row) for step in range(4) for row in stream.batch(step))
    assert "train line" in text and "to be or not to be" in text and "validation" not in text
