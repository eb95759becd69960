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


def test_logged_learning_rate_is_the_fed_one(tmp_path):
    from lm.config import OptimConfig, TrainConfig
    from lm.optim import learning_rate_at
    from lm.train import _logged_lr, _optimizer

    cfg = TrainConfig(optim=OptimConfig(learning_rate=0.1, warmup_steps=5, schedule="cosine"), steps=40,
                      schedule_on_host=True, out_dir=str(tmp_path))
    _, table = _optimizer(cfg)
    assert table.shape == (40,) and table.dtype == np.float32
    for step in (0, 3, 5, 17, 39):            # the steps a run logs: 0 .. steps - 1
        assert _logged_lr(cfg, table, step) == float(table[step])
        assert _logged_lr(cfg, table, step) == pytest.approx(learning_rate_at(cfg.optim, 40, step), rel=1e-6)
    assert _logged_lr(cfg, None, 17) == learning_rate_at(cfg.optim, 40, 17)
    assert np.all(np.diff(table[5:]) <= 0)
