"""Checkpoints that prove their integrity: every way a checkpoint can be damaged is reported in one
line, the checkpoint is moved aside (never deleted), the next older one is used, and the run ends
bit-identical to an uninterrupted one, metrics.jsonl row for row."""

import dataclasses
import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

from lm import checkpoint as ckpt_lib
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.io import read_jsonl
from lm.train import train

TIMING = ("tokens_per_s", "mfu")


def tiny(out_dir, **kw) -> TrainConfig:
    base = TrainConfig(
        model=ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, d_ff=64,
                          compute_dtype="float32"),
        data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
        steps=20, batch_size=16, eval_every=10, eval_batches=2, log_every=5, checkpoint_every=5,
        keep_checkpoints=10, out_dir=str(out_dir), peak_flops=1e11, progress=False, tensorboard=False)
    return dataclasses.replace(base, **kw)


def final_state(run_dir, cfg):
    from lm.optim import make_optimizer
    from lm.sharding import make_mesh
    from lm.step import compile_steps
    compiled = compile_steps(cfg.model, make_optimizer(cfg.optim, cfg.steps), make_mesh(cfg.mesh))
    ckpts = ckpt_lib.Checkpoints(os.path.join(run_dir, "checkpoints"), read_only=True)
    state, data_state, _ = ckpts.restore(compiled.abstract_state, cfg.steps)
    return state, data_state


def rows_without_timing(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(os.path.join(run_dir, "metrics.jsonl"))]


@pytest.fixture(scope="module", autouse=True)
def compile_once(tmp_path_factory):
    """The runs here share one shape: compile it once, through the persistent compilation cache."""
    from jax.experimental.compilation_cache import compilation_cache
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes", "jax_persistent_cache_enable_xla_caches")
    saved = {name: jax.config.values[name] for name in names}
    for name, value in zip(names, (str(tmp_path_factory.mktemp("jax_cache")), 0.0, 0, "none")):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference") / "run"
    cfg = tiny(folder)
    assert train(cfg)["status"] == "completed"
    return str(folder), cfg, final_state(str(folder), cfg)


def _largest_state_file(step_dir):
    files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True) if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


def flip_bytes(step_dir):
    path = _largest_state_file(step_dir)
    data = bytearray(open(path, "rb").read())
    mid = len(data) // 2
    for i in range(mid, min(mid + 300, len(data))):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))
    return os.path.relpath(path, step_dir), "checksum mismatch"


def truncate(step_dir):
    path = _largest_state_file(step_dir)
    os.truncate(path, os.path.getsize(path) // 2)
    return os.path.relpath(path, step_dir), "truncated"


def delete_manifest(step_dir):
    """What a kill between orbax's commit and the seal leaves: set aside as unsealed, not damage."""
    os.remove(os.path.join(step_dir, ckpt_lib.MANIFEST))
    return "", "never sealed"


def delete_metadata(step_dir):
    os.remove(os.path.join(step_dir, "data", "metadata"))
    return "data/metadata", "missing"


def delete_state(step_dir):
    shutil.rmtree(os.path.join(step_dir, "state"))
    return "state/", "missing"


def unloadable(step_dir):
    """Sealed after the damage: the manifest verifies, orbax cannot load it (the second line of defence)."""
    shutil.rmtree(os.path.join(step_dir, "state"))
    ckpt_lib.write_manifest(step_dir)
    return "", "could not be loaded"


def _as_if_killed_after(run_dir, step):
    """The run folder a kill right after checkpoint `step` leaves: no result, no later checkpoints."""
    os.remove(os.path.join(run_dir, "result.json"))
    for later in glob.glob(os.path.join(run_dir, "checkpoints", "*")):
        if os.path.basename(later).isdigit() and int(os.path.basename(later)) > step:
            shutil.rmtree(later)


@pytest.mark.parametrize("damage", [flip_bytes, truncate, delete_manifest, delete_metadata, delete_state,
                                    unloadable])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_bit_identically(reference, tmp_path, damage, capsys):
    ref_dir, ref_cfg, (ref_state, ref_data) = reference
    run_dir = str(tmp_path / "run")
    shutil.copytree(ref_dir, run_dir)
    _as_if_killed_after(run_dir, 15)
    where, what = damage(os.path.join(run_dir, "checkpoints", "15"))

    cfg = dataclasses.replace(ref_cfg, out_dir=run_dir)
    result = train(cfg)
    assert result["status"] == "completed" and result["resumed_from"] == 10
    [problem] = result["checkpoint_problems"]
    assert "\n" not in problem and "checkpoint step 15" in problem and what in problem
    assert where.rstrip("/") in problem
    assert "moved aside" in problem and f"lm-train: {problem}" in capsys.readouterr().err
    moved = glob.glob(os.path.join(run_dir, ckpt_lib.CORRUPT_DIR, "15-*"))
    assert len(moved) == 1 and os.path.isdir(moved[0])          # kept, never deleted

    state, data = final_state(run_dir, cfg)
    assert data == ref_data
    for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rows_without_timing(run_dir) == rows_without_timing(ref_dir)
    assert json.load(open(os.path.join(run_dir, "result.json")))["eval_loss"] == \
        json.load(open(os.path.join(ref_dir, "result.json")))["eval_loss"]


def test_with_no_intact_checkpoint_left_the_run_stops_unless_restart(reference, tmp_path):
    ref_dir, ref_cfg, (ref_state, _) = reference
    run_dir = str(tmp_path / "run")
    shutil.copytree(ref_dir, run_dir)
    _as_if_killed_after(run_dir, 5)
    flip_bytes(os.path.join(run_dir, "checkpoints", "5"))
    cfg = dataclasses.replace(ref_cfg, out_dir=run_dir)
    for _ in range(2):          # the second plain rerun refuses too: never a silent start from scratch
        with pytest.raises(ValueError, match=r"no intact checkpoint is left .*--restart"):
            train(cfg)
    assert not os.path.exists(os.path.join(run_dir, "result.json"))
    result = train(cfg, restart=True)
    assert result["resumed_from"] == 0 and result["status"] == "completed"
    state, _ = final_state(run_dir, cfg)
    for a, b in zip(jax.tree.leaves(ref_state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rows_without_timing(run_dir) == rows_without_timing(ref_dir)


def test_the_row_of_a_checkpointed_step_is_written_before_its_checkpoint(tmp_path, monkeypatch):
    """A kill right after a checkpoint commits must not lose that step's metrics row (it was written
    one step late, after the save): the row is on disk when the save starts."""
    seen = []
    save = ckpt_lib.Checkpoints.save

    def checking_save(self, step, *args, **kw):
        rows = read_jsonl(os.path.join(str(tmp_path / "run"), "metrics.jsonl"))
        seen.append((step, any(r["step"] == step and "loss" in r for r in rows)))
        return save(self, step, *args, **kw)

    monkeypatch.setattr(ckpt_lib.Checkpoints, "save", checking_save)
    train(tiny(tmp_path / "run", steps=10, checkpoint_every=3, log_every=4, eval_every=0))
    assert seen == [(3, True), (6, True), (9, True), (10, True)]


def test_manifest_lists_every_file_and_verify_names_the_damage(reference, tmp_path):
    ref_dir = reference[0]
    step_dir = str(tmp_path / "10")
    shutil.copytree(os.path.join(ref_dir, "checkpoints", "10"), step_dir)
    listed = json.load(open(os.path.join(step_dir, ckpt_lib.MANIFEST)))["files"]
    assert set(listed) == set(ckpt_lib._files(step_dir)) and "data/metadata" in listed
    assert ckpt_lib.verify(step_dir) is None
    open(os.path.join(step_dir, "meta", "metadata"), "a").write(" ")
    assert ckpt_lib.verify(step_dir).startswith("meta/metadata: ")
