"""The two lm.train hooks sweeps rely on: checkpoints at chosen steps (WSD branch points) and the
learning rate fed from the host (one compilation per shape, whatever the run's length)."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from lm.checkpoint import Checkpoints
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.io import read_jsonl
from lm.train import _optimizer, train


def tiny(out_dir, **kw) -> TrainConfig:
    base = TrainConfig(model=ModelConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=32, d_ff=64),
                       data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=3),
                       steps=12, batch_size=8, eval_every=0, eval_batches=1, log_every=1, out_dir=str(out_dir),
                       peak_flops=1e11, progress=False, tensorboard=False)
    return dataclasses.replace(base, **kw)


def test_checkpoint_steps_are_saved(tmp_path):
    train(tiny(tmp_path / "run", checkpoint_steps=(3, 7), keep_checkpoints=5, schedule_on_host=True))
    assert Checkpoints(str(tmp_path / "run" / "checkpoints")).all_steps() == [3, 7, 12]
    with pytest.raises(ValueError, match=r"checkpoint_steps \[13\] are outside"):
        tiny(tmp_path / "bad", checkpoint_steps=(13,)).validate()


def _cosine_lr(step: int, peak: float = 1e-2, warmup: int = 3, total: int = 12, final: float = 0.1) -> float:
    """The learning rate of optimizer step `step` (0-based) written out from the recipe, independently of
    lm.optim: linear warmup 0 -> peak over `warmup` steps, then half a cosine to final * peak at `total`."""
    if step < warmup:
        return peak * step / warmup
    return peak * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))))


def test_host_fed_schedule_matches_the_compiled_one(tmp_path):
    runs = {host: train(tiny(tmp_path / str(host), schedule_on_host=host)) for host in (False, True)}
    assert runs[True]["eval_loss"] == pytest.approx(runs[False]["eval_loss"], rel=1e-4)
    expected = [_cosine_lr(s) for s in range(12)]         # the row of step p logs optimizer step p - 1
    for host in (False, True):
        rows = [r for r in read_jsonl(tmp_path / str(host) / "metrics.jsonl") if "lr" in r]
        assert [r["step"] for r in rows] == list(range(1, 13))
        np.testing.assert_allclose([r["lr"] for r in rows], [expected[r["step"] - 1] for r in rows], rtol=1e-6)


def test_runs_of_one_shape_share_one_compiled_step(tmp_path):
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    texts = {}
    for steps, host in ((20, True), (40, True), (20, False), (40, False)):
        cfg = tiny(tmp_path, steps=steps, schedule_on_host=host)
        compiled = compile_steps(cfg.model, _optimizer(cfg)[0], make_mesh(cfg.mesh))
        state = jax.eval_shape(compiled.init, jax.random.PRNGKey(0))
        batch = jax.ShapeDtypeStruct((8, 33), np.int32, sharding=compiled.batch_sharding)
        texts[steps, host] = compiled.train_step.lower(state, batch).as_text()
    assert texts[20, True] == texts[40, True]          # the run's length is data, not a constant
    assert texts[20, False] != texts[40, False]
