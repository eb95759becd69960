"""The speed plumbing around the training loop: pinned XLA flags (the user's value wins) and the
host-fed learning rate logged without evaluating the schedule on the host."""

import numpy as np
import pytest

from lm import xla_env


def test_pinned_flags_never_override_the_users_flags():
    pinned = ("--xla_cpu_enable_fast_math=true", "--xla_cpu_prefer_vector_width=512")
    user = "--xla_force_host_platform_device_count=8 --xla_cpu_enable_fast_math=false"
    out = xla_env.merged(user, pinned).split()
    assert out == ["--xla_force_host_platform_device_count=8", "--xla_cpu_enable_fast_math=false",
                   "--xla_cpu_prefer_vector_width=512"]
    assert xla_env.merged("", pinned).split() == list(pinned)


def test_apply_writes_the_environment_unless_opted_out(monkeypatch):
    monkeypatch.setattr(xla_env, "PINNED_CPU_FLAGS", ("--xla_cpu_prefer_vector_width=512",))
    env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    assert xla_env.apply(env) == env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false --xla_cpu_prefer_vector_width=512"
    env = {xla_env.OPT_OUT: "1"}
    assert xla_env.apply(env) == "" and "XLA_FLAGS" not in env


def test_cpu_compile_options_yield_to_the_users_flags():
    for program in ("init", "train_step", "train_step_lowp", "eval_step"):
        assert xla_env.compile_options("cpu", program, {}) == xla_env.CPU_COMPILE_OPTIONS[program]
        assert xla_env.compile_options("gpu", program, {}) is None and xla_env.compile_options("tpu", program, {}) is None
        assert xla_env.compile_options("cpu", program, {xla_env.OPT_OUT: "1"}) is None
    user = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=3"}
    assert xla_env.compile_options("cpu", "train_step", user) == {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert xla_env.compile_options("cpu", "init", user) is None


def test_cpu_training_programs_are_compiled_with_the_options(monkeypatch):
    """The train step of a CPU mesh gets its CPU_COMPILE_OPTIONS (no YNNPACK fusion left in the
    compiled program); opted out, XLA's defaults fuse dots with YNNPACK again."""
    import dataclasses

    import jax
    import optax

    from lm import precision
    from lm.config import MeshConfig, ModelConfig
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, max_seq_len=8, d_ff=32,
                      compute_dtype="float32")
    batch = np.zeros((2, 9), np.int32)

    def programs():
        c = compile_steps(cfg, optax.adamw(1e-3), make_mesh(MeshConfig(data=1), jax.devices()[:1]))
        state = c.init(jax.random.PRNGKey(0))
        return (c.train_step.lower(state, batch).compile().as_text(),
                c.eval_step.lower(state.params, batch).compile().as_text())

    step, evaluation = programs()
    assert "ynn_fusion" not in step and "ynn_fusion" in evaluation
    if "avx512_bf16" in precision.cpu_flags():   # where YNNPACK's bf16 kernel was measured (lm.dots)
        cfg = dataclasses.replace(cfg, compute_dtype="bfloat16")
        step, _ = programs()
        assert "ynn_fusion" in step and "bf16" in step
    monkeypatch.setenv(xla_env.OPT_OUT, "1")
    assert all("ynn_fusion" in text for text in programs())


def test_logged_learning_rate_is_the_fed_one(tmp_path):
    """A real run with the host-fed schedule, logging every step: the row of step s (s steps done)
    carries the rate step s - 1 was fed (warmup and cosine change it every step, so an off-by-one
    shows), and the last row's rate is the one the compiled step wrote into the optimizer state."""
    import jax

    from lm.checkpoint import Checkpoints
    from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
    from lm.io import read_jsonl
    from lm.optim import learning_rate_at
    from lm.sharding import make_mesh
    from lm.step import compile_steps
    from lm.train import _optimizer, train

    cfg = TrainConfig(model=ModelConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=16, d_ff=32,
                                        compute_dtype="float32"),
                      data=DataConfig(seq_len=16), optim=OptimConfig(learning_rate=0.1, warmup_steps=5, schedule="cosine"),
                      steps=12, batch_size=8, log_every=1, eval_every=0, eval_batches=1, schedule_on_host=True,
                      out_dir=str(tmp_path / "run"), tensorboard=False, progress=False, peak_flops=1e11)
    assert train(cfg)["status"] == "completed"
    rows = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "lr" in r]
    assert [r["step"] for r in rows] == list(range(1, 13))
    for r in rows:
        assert r["lr"] == pytest.approx(learning_rate_at(cfg.optim, cfg.steps, r["step"] - 1), rel=1e-6), r
    assert len({round(r["lr"], 9) for r in rows}) == 12
    tx, _ = _optimizer(cfg)
    compiled = compile_steps(cfg.model, tx, make_mesh(cfg.mesh), host_lr=True)
    state, _, _ = Checkpoints(str(tmp_path / "run" / "checkpoints")).restore(compiled.abstract_state)
    fed = float(jax.device_get(state.opt_state.hyperparams["learning_rate"]))   # written by the last step
    assert rows[-1]["lr"] == pytest.approx(fed, rel=1e-6)


def test_host_schedule_table_spans_blocks(tmp_path):
    from lm.config import OptimConfig, TrainConfig
    from lm.optim import make_schedule
    from lm.train import _LR_BLOCK, _lr_table

    steps = _LR_BLOCK + 904                  # two blocks, the second cut
    cfg = TrainConfig(optim=OptimConfig(learning_rate=0.1, warmup_steps=50, schedule="cosine"), steps=steps,
                      schedule_on_host=True, out_dir=str(tmp_path))
    table = _lr_table(cfg)
    direct = np.asarray(make_schedule(cfg.optim, steps)(np.arange(steps)), np.float32)
    assert table.shape == (steps,)
    np.testing.assert_allclose(table, direct, rtol=1e-6, atol=0)


def test_runs_of_one_shape_share_the_step_functions(tmp_path):
    import dataclasses

    from lm.config import ModelConfig, TrainConfig
    from lm.train import _steps_for

    def steps_of(cfg):
        return _steps_for(cfg.model, cfg.optim, cfg.mesh, cfg.data.seq_len,
                          None if cfg.schedule_on_host else cfg.steps)

    model = ModelConfig(vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_seq_len=32, d_ff=32)
    a = TrainConfig(model=model, steps=20, schedule_on_host=True, out_dir=str(tmp_path / "a"))
    b = dataclasses.replace(a, steps=40, seed=3, out_dir=str(tmp_path / "b"))
    assert steps_of(a) is steps_of(b)                     # the run's length is an input of the step
    assert steps_of(dataclasses.replace(a, schedule_on_host=False)) is not steps_of(a)
    assert steps_of(dataclasses.replace(a, model=dataclasses.replace(model, d_model=32))) is not steps_of(a)
