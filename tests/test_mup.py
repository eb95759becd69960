"""muP (lm/mup.py): the coordinate check, per-group learning rates, and the standard path unchanged."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm import model as model_lib
from lm import mup, optim
from lm.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from lm.step import lm_loss

WIDTHS = (32, 128, 512)         # the base width, 4x and 16x it


def _model(width: int, parametrization: str) -> ModelConfig:
    return ModelConfig(vocab_size=64, d_model=width, n_layers=2, n_heads=width // 8, d_ff=4 * width,
                       max_seq_len=32, compute_dtype="float32", parametrization=parametrization,
                       mup_base_width=WIDTHS[0])


def _activation_sizes(cfg: ModelConfig, steps: int, lr: float) -> dict[str, float]:
    """Mean |activation| of every module's output after `steps` Adam steps on one fixed batch."""
    params = jax.jit(model_lib.init_params, static_argnums=0)(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (8, 33), 0, cfg.vocab_size)
    ocfg = OptimConfig(learning_rate=lr, warmup_steps=0, schedule="constant", weight_decay=0.0, clip_norm=None)
    tx = optim.make_optimizer(ocfg, steps, model=cfg)

    @jax.jit
    def step(params, state):
        grads = jax.grad(lambda p: lm_loss(p, tokens, cfg)[0])(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = jax.jit(tx.init)(params)
    for _ in range(steps):
        params, state = step(params, state)
    capture = jax.jit(lambda p: model_lib.Transformer(cfg).apply(
        {"params": p}, tokens[:, :-1], capture_intermediates=True, mutable=["intermediates"])[1])
    captured = capture(params)
    sizes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(captured["intermediates"])[0]:
        name = "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        if leaf is not None and leaf.ndim >= 3 and leaf.shape[-1] != 0 and jnp.issubdtype(leaf.dtype, jnp.floating):
            sizes[name] = float(jnp.mean(jnp.abs(leaf)))
    return sizes


def _spread(parametrization: str, steps: int = 5, lr: float = 1e-2) -> dict[str, float]:
    """max/min over WIDTHS of each layer's mean |activation|."""
    per_width = [_activation_sizes(_model(w, parametrization), steps, lr) for w in WIDTHS]
    names = set(per_width[0])
    assert all(set(p) == names for p in per_width) and len(names) >= 10
    return {n: max(p[n] for p in per_width) / min(p[n] for p in per_width) for n in names}


@pytest.mark.slow
def test_coordinate_check_mup_is_stable_across_widths_and_standard_drifts():
    mup_spread = _spread("mup")
    worst = max(mup_spread, key=mup_spread.get)
    assert mup_spread[worst] < 2.0, (worst, mup_spread)
    sp_spread = _spread("standard")
    assert max(sp_spread.values()) > 4.0, sp_spread
    drifting = [n for n, s in sp_spread.items() if s > 2.0]
    assert len(drifting) >= 3, sp_spread


@pytest.mark.slow
def test_standard_path_numbers_are_unchanged(tmp_path):
    """The standard parametrisation gives the numbers it gave before muP existed (measured on the
    parent commit with this exact script: logits at init, 4 AdamW steps, and a 12-step lm.train run)."""
    from lm.train import train
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, max_seq_len=16, compute_dtype="float32")
    params = model_lib.init_params(cfg, jax.random.key(3))
    tokens = jax.random.randint(jax.random.key(4), (4, 17), 0, 64)
    logits = model_lib.forward(params, tokens[:, :-1], cfg)
    ocfg = OptimConfig(learning_rate=1e-2, warmup_steps=2)
    tx = optim.make_optimizer(ocfg, 10, model=cfg)
    state, losses = tx.init(params), []
    for _ in range(4):
        (loss, _), grads = jax.value_and_grad(lm_loss, has_aux=True)(params, tokens, cfg)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    result = train(TrainConfig(model=cfg, data=DataConfig(seq_len=16), optim=ocfg, steps=12, batch_size=8,
                               eval_every=0, eval_batches=1, log_every=4, checkpoint_every=0, out_dir=str(tmp_path),
                               tensorboard=False, progress=False, schedule_on_host=True))
    np.testing.assert_allclose(float(jnp.abs(logits).mean()), 0.08986343443393707, rtol=1e-5)
    np.testing.assert_allclose(float(logits[0, 0, 0]), 0.08559450507164001, rtol=1e-5)
    np.testing.assert_allclose(losses, [4.158623218536377, 4.158623218536377, 3.9068644046783447,
                                        3.637126922607422], rtol=1e-5)
    np.testing.assert_allclose(result["train_loss"], 3.6426806449890137, rtol=1e-5)
    np.testing.assert_allclose(result["eval_loss"], 3.4609336853027344, rtol=1e-5)


def _names(path) -> list[str]:
    return [str(p.key) for p in path if hasattr(p, "key")]


def test_mup_init_scales_and_base_width_equals_standard_init():
    base = _model(32, "standard")
    same = dataclasses.replace(base, parametrization="mup", mup_base_width=32)
    p_sp, p_mup = (model_lib.init_params(c, jax.random.key(0)) for c in (base, same))
    jax.tree.map(np.testing.assert_array_equal, p_sp, p_mup)        # m = 1: the standard init exactly
    wide = dataclasses.replace(same, d_model=128, n_heads=16, d_ff=512)
    params = model_lib.init_params(wide, jax.random.key(0))
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        names = _names(path)
        if names[-1] != "kernel" and names[0] != "embed":
            continue
        std = float(jnp.std(leaf))
        if names[0] in ("embed", "unembed"):
            expected = wide.init_std                                   # input/output weights: not scaled
        elif names[-2] in ("out", "down"):
            expected = wide.init_std / 2 / math.sqrt(2 * wide.n_layers)  # 1/sqrt(m) x depth factor
        else:
            expected = wide.init_std / 2                               # hidden: 1/sqrt(m), m = 4
        assert std == pytest.approx(expected, rel=0.1), (names, std, expected)


def test_mup_adam_learning_rates_per_group():
    """Hidden matrices take lr / m on the Adam direction; the weight decay is lr * wd at every width."""
    wide = dataclasses.replace(_model(128, "mup"), mup_base_width=32)            # m = 4
    params = model_lib.init_params(wide, jax.random.key(0))
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3, params)
    ocfg = OptimConfig(learning_rate=1e-2, warmup_steps=0, schedule="constant", weight_decay=0.1)
    no_decay = dataclasses.replace(ocfg, weight_decay=0.0)
    sp_tx, mup_tx = optim.make_optimizer(ocfg, 10), optim.make_optimizer(ocfg, 10, model=wide)
    adam_tx = optim.make_optimizer(no_decay, 10)
    sp_up, _ = sp_tx.update(grads, sp_tx.init(params), params)
    mup_up, _ = mup_tx.update(grads, mup_tx.init(params), params)
    adam_up, _ = adam_tx.update(grads, adam_tx.init(params), params)
    hidden = 0
    flat = jax.tree_util.tree_flatten_with_path(sp_up)[0]
    for (path, sp), mu, adam, p in zip(flat, *(jax.tree.leaves(t) for t in (mup_up, adam_up, params))):
        names = _names(path)
        if mup.is_hidden_matrix(names):
            hidden += 1
            decay = -1e-2 * 0.1 * p                      # lr * wd * param, as under the standard AdamW
            np.testing.assert_allclose(mu, 0.25 * adam + decay, rtol=1e-5, atol=1e-9, err_msg=str(names))
        else:
            np.testing.assert_allclose(mu, sp, rtol=1e-6, err_msg=str(names))
    assert hidden == 7                 # q, k, v, out, up, gate, down (each stacked over layers)
    assert mup.group_learning_rates(wide, 1e-2)["hidden"] == pytest.approx(2.5e-3)


@pytest.mark.parametrize("width", [32, 128, 320])
def test_mup_weight_decay_per_step_is_the_same_at_every_width(width):
    """With a zero gradient Adam's direction is 0 and a decayed leaf moves by -lr * wd * param:
    the same at m = 1, 4 and 10 (issue 26: it was -lr * wd * param / m, 10x weaker at m = 10)."""
    cfg = dataclasses.replace(_model(width, "mup"), mup_base_width=32)
    params = model_lib.init_params(cfg, jax.random.key(0))
    ocfg = OptimConfig(learning_rate=1e-2, warmup_steps=0, schedule="constant", weight_decay=0.1)
    tx = optim.make_optimizer(ocfg, 10, model=cfg)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    decayed = optim.decay_mask(params, ocfg)
    checked = 0
    for (path, u), p, d in zip(jax.tree_util.tree_flatten_with_path(updates)[0], jax.tree.leaves(params),
                               jax.tree.leaves(decayed)):
        expected = -1e-2 * 0.1 * p if d else jnp.zeros_like(p)
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=0, err_msg=str(_names(path)))
        checked += bool(d) and mup.is_hidden_matrix(_names(path))
    assert checked == 7


def test_mup_attention_and_logits_multipliers():
    cfg = dataclasses.replace(_model(128, "mup"), mup_base_width=32, mup_output_mult=2.0)
    assert mup.width_mult(cfg) == 4 and mup.logit_mult(cfg) == 0.5
    assert mup.query_scale(cfg) == pytest.approx(1 / math.sqrt(8))        # q.k / 8 instead of / sqrt(8)
    std = _model(128, "standard")
    assert mup.logit_mult(std) is None and mup.query_scale(std) is None and mup.hidden_std(std) == std.init_std
    params = model_lib.init_params(cfg, jax.random.key(0))
    tokens = jnp.arange(16)[None] % 64
    half = dataclasses.replace(cfg, mup_output_mult=1.0)
    np.testing.assert_allclose(model_lib.forward(params, tokens, cfg), 2 * model_lib.forward(params, tokens, half),
                               rtol=1e-5, atol=1e-6)


def test_mup_base_width_must_divide_the_width():
    with pytest.raises(ValueError, match="mup_base_width=48 does not divide d_model=64"):
        ModelConfig(d_model=64, parametrization="mup", mup_base_width=48).validate()
    with pytest.raises(ValueError, match="parametrization='mu-p' is not known"):
        ModelConfig(parametrization="mu-p").validate()
    ModelConfig(d_model=64, parametrization="mup", mup_base_width=16).validate()
