"""The training loop: metrics, resume after kill -9 (bit-identical), divergence, bad input, accumulation."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lm.checkpoint import Checkpoints
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.config_io import save_json
from lm.io import read_jsonl
from lm.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(out_dir, **kw) -> TrainConfig:
    base = TrainConfig(
        model=ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, d_ff=64,
                          compute_dtype="float32"),
        data=DataConfig(seq_len=32), optim=OptimConfig(learning_rate=1e-2, warmup_steps=5),
        steps=30, batch_size=16, eval_every=10, eval_batches=2, log_every=5, out_dir=str(out_dir),
        peak_flops=1e11, progress=False)
    return dataclasses.replace(base, **kw)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT
    return env


def test_train_logs_everything_and_loss_falls(tmp_path):
    result = train(tiny(tmp_path / "run"))
    assert result["status"] == "completed" and result["steps"] == 30
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    train_rows = [r for r in rows if "loss" in r]
    assert {"loss", "grad_norm", "lr", "tokens_per_s", "mfu", "tokens"} <= set(train_rows[0])
    assert [r["step"] for r in rows if "eval_loss" in r] == [10, 20, 30]
    curve = [e["eval_loss"] for e in result["eval_curve"]]
    assert curve[-1] < curve[0] < np.log(64) + 0.1
    assert result["entropy_floor"] is not None and result["entropy_floor"] < curve[-1]
    assert os.listdir(tmp_path / "run" / "tensorboard")
    assert json.load(open(tmp_path / "run" / "result.json"))["eval_loss"] == curve[-1]
    assert Checkpoints(str(tmp_path / "run" / "checkpoints")).latest_step() == 30


def _final_params(run_dir, cfg):
    from lm.optim import make_optimizer
    from lm.sharding import make_mesh
    from lm.step import compile_steps
    compiled = compile_steps(cfg.model, make_optimizer(cfg.optim, cfg.steps), make_mesh(cfg.mesh))
    state, data_state, _ = Checkpoints(os.path.join(run_dir, "checkpoints")).restore(compiled.abstract_state)
    return state, data_state


def test_resume_after_kill_is_bit_identical(tmp_path):
    """20 steps straight == (train, kill -9 after the step-10 checkpoint, resume to 20), exactly."""
    cfg = tiny(tmp_path / "a", steps=20, checkpoint_every=5, eval_every=0, keep_checkpoints=10)
    straight = train(cfg)
    assert straight["status"] == "completed"

    cfg_b = dataclasses.replace(cfg, out_dir=str(tmp_path / "b"))
    save_json(cfg_b, str(tmp_path / "b.json"))
    cmd = [sys.executable, "-m", "lm.train", "--config", str(tmp_path / "b.json")]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_10 = tmp_path / "b" / "checkpoints" / "10" / "lm_manifest.json"   # sealed
    deadline = time.time() + 240
    while not ckpt_10.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt_10.exists(), proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "result.json").exists(), "killed too late to test a resume"
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result_b = json.load(open(tmp_path / "b" / "result.json"))
    assert 10 <= result_b["resumed_from"] < 20

    state_a, data_a = _final_params(str(tmp_path / "a"), cfg)
    state_b, data_b = _final_params(str(tmp_path / "b"), cfg_b)
    assert data_a["step"] == data_b["step"] == 20
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _rows(tmp_path / "b") == _rows(tmp_path / "a")       # row for row, timing aside


def _rows(run_dir):
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu")}
            for r in read_jsonl(os.path.join(run_dir, "metrics.jsonl"))]


def _strict_load(text):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))


def test_divergence_stops_with_status_and_step(tmp_path):
    cfg = tiny(tmp_path / "run", optim=OptimConfig(learning_rate=1e12, clip_norm=None, warmup_steps=0))
    result = train(cfg)
    assert result["status"] == "diverged"
    assert "step" in result["message"] and "NaN/Inf" in result["message"]
    saved = _strict_load(open(tmp_path / "run" / "result.json").read())     # strict JSON: null, not NaN
    assert saved["status"] == "diverged"
    rows = [_strict_load(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    nan_rows = [r for r in rows if r.get("nonfinite")]
    assert nan_rows and all(r[k] is None for r in nan_rows for k in r["nonfinite"])


@pytest.mark.parametrize("change,match", [
    (dict(model=ModelConfig(d_model=30, n_heads=4)), "does not divide d_model"),
    (dict(model=ModelConfig(n_heads=4, n_kv_heads=3)), "n_kv_heads=3 does not divide"),
    (dict(data=DataConfig(seq_len=64)), "above the model's context"),
    (dict(batch_size=12), "data-parallel size"),
    (dict(steps=0), "steps=0 must be positive"),
    (dict(model=ModelConfig(activation="tanh")), "activation='tanh' is not known"),
    (dict(data=DataConfig(source="s3://x")), "not known"),
])
def test_bad_config_fails_before_anything_is_written(tmp_path, change, match):
    cfg = dataclasses.replace(tiny(tmp_path / "run"), **change)
    with pytest.raises(ValueError, match=match):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_different_config(tmp_path):
    train(tiny(tmp_path / "run", steps=5, eval_every=0))
    with pytest.raises(ValueError, match="different config"):
        train(tiny(tmp_path / "run", steps=5, eval_every=0, seed=1))


def test_cli_reports_bad_override(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lm.train", "model.d_modle=3"], env=_env(),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "unknown field 'd_modle'" in out.stderr


def test_grad_accumulation_matches_full_batch():
    import optax
    from lm.sharding import make_mesh
    from lm.config import MeshConfig
    from lm.step import compile_steps
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, compute_dtype="float32")
    mesh = make_mesh(MeshConfig(data=8))
    batch = np.random.default_rng(0).integers(0, 64, (32, 33)).astype(np.int32)
    out = []
    for accum in (1, 4):
        c = compile_steps(cfg, optax.sgd(0.1), mesh, grad_accum=accum)
        state, metrics = c.train_step(c.init(jax.random.PRNGKey(0)), jax.device_put(batch, c.batch_sharding))
        out.append((float(metrics["loss"]), state.params))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-5)
    for a, b in zip(jax.tree.leaves(out[0][1]), jax.tree.leaves(out[1][1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


def test_branch_from_checkpoint_continues_the_parent(tmp_path):
    """A run started from another run's step-10 checkpoint with the same schedule ends where the
    parent ends (weights, optimizer, step and data position all carried over)."""
    parent = tiny(tmp_path / "parent", steps=20, checkpoint_every=10, eval_every=0)
    train(parent)
    branch = dataclasses.replace(parent, out_dir=str(tmp_path / "branch"), init_from=f"{tmp_path / 'parent'}@10")
    result = train(branch)
    assert result["resumed_from"] == 10
    a, _ = _final_params(str(tmp_path / "parent"), parent)
    b, _ = _final_params(str(tmp_path / "branch"), branch)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
        train(dataclasses.replace(branch, out_dir=str(tmp_path / "b2"), init_from=f"{tmp_path / 'parent'}@7"))
    assert not (tmp_path / "b2").exists()


def test_rerun_of_a_finished_run_keeps_its_result_and_a_torn_metrics_line_is_cut(tmp_path):
    cfg = tiny(tmp_path / "run", steps=10, eval_every=5)
    first = train(cfg)
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 11, "lo')                           # what a kill mid-append leaves
    before = open(tmp_path / "run" / "result.json", "rb").read()
    again = train(cfg)
    assert open(tmp_path / "run" / "result.json", "rb").read() == before     # not re-evaluated, not re-timed
    assert again["eval_loss"] == first["eval_loss"]
    assert [e["step"] for e in again["eval_curve"]] == [5, 10]
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all(r["step"] <= 10 for r in rows)


@pytest.mark.parametrize("change,match", [
    (dict(steps="abc"), "must be an integer"),
    (dict(steps=2.5), "must be an integer"),
    (dict(model=ModelConfig(vocab_size=32, d_model=32, n_heads=2, max_seq_len=32)), "synthetic language has 64"),
])
def test_wrong_types_and_vocab_are_refused(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        train(dataclasses.replace(tiny(tmp_path / "run"), **change))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rows", [None, "second_half"])
def test_blocks_hold_the_streams_batches(tmp_path, rows):
    from lm.config import MeshConfig
    from lm.data.pipeline import BatchStream, build_dataset
    from lm.sharding import batch_sharding, make_mesh
    from lm.step import block_sharding
    from lm.step_blocks import StepBlocks

    cfg = tiny(tmp_path)
    dataset = build_dataset(cfg.data, cfg.data.train_split, vocab_size_hint=cfg.model.vocab_size)
    if rows is not None:                       # the rows a second of two processes would hold
        rows = np.arange(cfg.batch_size // 2, cfg.batch_size)
    stream = BatchStream(dataset, cfg.batch_size, cfg.data.seq_len, cfg.data.seed, rows)
    for start, stop in ((5, 8), (8, 12), (2, 3)):          # one draw gives each step's own rows
        drawn = stream.steps_rows(start, stop)
        for i, step in enumerate(range(start, stop)):
            np.testing.assert_array_equal(drawn[i], stream.batch(step))
    if rows is not None:                       # a device block needs every row its devices hold
        return
    sharding = block_sharding(batch_sharding(make_mesh(MeshConfig(data=2), jax.devices()[:2])))
    block = stream.device_block(5, 7, StepBlocks(4), sharding)           # steps 5, 6 of block [4, 8)
    assert block.shape == (4, cfg.batch_size, cfg.data.seq_len + 1) and block.sharding == sharding
    got = np.asarray(block)
    np.testing.assert_array_equal(got[1], stream.batch(5))
    np.testing.assert_array_equal(got[2], stream.batch(6))
    assert not got[0].any() and not got[3].any()           # slots of other steps: zeros, never read
    with pytest.raises(ValueError, match="within one block"):
        stream.device_block(3, 6, StepBlocks(4), sharding)


def test_a_step_fed_by_blocks_matches_one_batch_per_call():
    """The train step given blocks of 4 steps' batches and learning rates picks slot step % 4:
    6 steps (a block and a part-filled one) end in the state of 6 one-batch calls."""
    import optax
    from lm.config import MeshConfig
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, max_seq_len=8, compute_dtype="float32")
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    mesh = make_mesh(MeshConfig(data=2), jax.devices()[:2])
    one, fed = compile_steps(cfg, tx, mesh, host_lr=True), compile_steps(cfg, tx, mesh, host_lr=True, block=4)
    batches = np.random.default_rng(0).integers(0, 32, (6, 4, 9)).astype(np.int32)
    lrs = np.linspace(0.01, 0.06, 6).astype(np.float32)
    state = one.init(jax.random.PRNGKey(0))
    for i in range(6):
        state, metrics = one.train_step(state, jax.device_put(batches[i], one.batch_sharding), lrs[i])
    fed_state = fed.init(jax.random.PRNGKey(0))
    for first, stop in ((0, 4), (4, 6)):
        block, block_lrs = np.zeros((4, 4, 9), np.int32), np.zeros(4, np.float32)
        block[:stop - first], block_lrs[:stop - first] = batches[first:stop], lrs[first:stop]
        inputs = jax.device_put(block, fed.block_sharding), jax.device_put(block_lrs)
        for _ in range(first, stop):
            fed_state, fed_metrics = fed.train_step(fed_state, *inputs)
    assert int(fed_state.step) == 6 and float(fed_metrics["loss"]) == pytest.approx(float(metrics["loss"]), rel=1e-6)
    assert float(fed_state.opt_state.hyperparams["learning_rate"]) == pytest.approx(float(lrs[5]))
    for a, b in zip(jax.tree.leaves(jax.device_get(fed_state.params)), jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="block=-1"):
        compile_steps(cfg, tx, mesh, host_lr=True, block=-1)


def test_learning_rate_argument_is_written_inside_the_step():
    import optax
    from lm.sharding import make_mesh
    from lm.config import MeshConfig
    from lm.step import compile_steps

    cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, max_seq_len=8, compute_dtype="float32")
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)
    c = compile_steps(cfg, tx, make_mesh(MeshConfig(data=1), jax.devices()[:1]), host_lr=True)
    state = c.init(jax.random.PRNGKey(0))
    before = jax.device_get(state.params)          # the step donates its input state
    batch = jax.device_put(np.arange(18, dtype=np.int32).reshape(2, 9) % 32, c.batch_sharding)
    new, metrics = c.train_step(state, batch, np.float32(0.5))
    assert float(new.opt_state.hyperparams["learning_rate"]) == 0.5 and int(metrics["first_bad_step"]) == -1
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), new.params, before))
    assert max(moved) > 0
    with pytest.raises(ValueError, match="inject_hyperparams"):
        compile_steps(cfg, optax.sgd(0.1), make_mesh(MeshConfig(data=1), jax.devices()[:1]), host_lr=True)
