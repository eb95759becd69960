"""Schedules at key steps, the weight-decay mask, AdamW against a numpy reference, validation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm import model, optim
from lm.config import ModelConfig, OptimConfig

PEAK, FINAL = 2.0, 0.1


def _cfg(**kw) -> OptimConfig:
    base = dict(learning_rate=PEAK, warmup_steps=10, final_lr_frac=FINAL)
    return OptimConfig(**{**base, **kw})


def _at(cfg: OptimConfig, total: int, steps) -> np.ndarray:
    return np.array([optim.learning_rate_at(cfg, total, s) for s in steps])


def test_cosine_key_steps():
    # warmup 10, cosine over [10, 110]: mid-point at 60.
    lr = _at(_cfg(schedule="cosine"), 110, [0, 5, 10, 60, 110, 500])
    mid = FINAL * PEAK + (PEAK - FINAL * PEAK) * 0.5
    np.testing.assert_allclose(lr, [0, PEAK / 2, PEAK, mid, FINAL * PEAK, FINAL * PEAK], rtol=1e-6)


def test_linear_constant_key_steps():
    lr = _at(_cfg(schedule="linear"), 110, [0, 10, 35, 60, 110, 200])
    end = FINAL * PEAK
    np.testing.assert_allclose(lr, [0, PEAK, PEAK + (end - PEAK) / 4, (PEAK + end) / 2, end, end], rtol=1e-6)
    lr = _at(_cfg(schedule="constant"), 110, [0, 5, 10, 60, 110, 10_000])
    np.testing.assert_allclose(lr, [0, PEAK / 2, PEAK, PEAK, PEAK, PEAK], rtol=1e-6)


def test_no_warmup_starts_at_peak():
    for kind in ("cosine", "wsd", "constant", "linear"):
        assert optim.learning_rate_at(_cfg(schedule=kind, warmup_steps=0), 100, 0) == pytest.approx(PEAK)


@pytest.mark.parametrize("shape,mid_frac", [("linear", 0.5), ("cosine", 0.5), ("sqrt", 1 - np.sqrt(0.5))])
def test_wsd_shapes(shape, mid_frac):
    # 100 steps, warmup 10, decay over the last 20 (80 -> 100).
    cfg = _cfg(schedule="wsd", decay_frac=0.2, decay_shape=shape)
    lr = _at(cfg, 100, [0, 5, 10, 50, 80, 90, 100, 150])
    end = FINAL * PEAK
    mid = end + (PEAK - end) * mid_frac
    np.testing.assert_allclose(lr, [0, PEAK / 2, PEAK, PEAK, PEAK, mid, end, end], rtol=1e-6)
    quarter = optim.learning_rate_at(cfg, 100, 85)
    expected = {"linear": 0.75, "cosine": 0.5 * (1 + np.cos(np.pi / 4)), "sqrt": 0.5}[shape]
    assert quarter == pytest.approx(end + (PEAK - end) * expected, rel=1e-6)


def test_wsd_decay_never_overlaps_warmup():
    cfg = _cfg(schedule="wsd", decay_frac=1.0, warmup_steps=10)
    lr = _at(cfg, 20, [10, 15, 20])
    np.testing.assert_allclose(lr, [PEAK, (PEAK + FINAL * PEAK) / 2, FINAL * PEAK], rtol=1e-6)


def test_cooldown_branches_from_constant():
    cfg = _cfg(schedule="constant", decay_shape="sqrt")
    constant = optim.make_schedule(cfg, 1000)
    cooldown = optim.wsd_cooldown_schedule(cfg, branch_step=300, cooldown_steps=100)
    steps = np.arange(0, 301)
    np.testing.assert_array_equal(jax.vmap(constant)(steps), jax.vmap(cooldown)(steps))
    assert float(cooldown(325)) == pytest.approx(FINAL * PEAK + (PEAK - FINAL * PEAK) * 0.5)
    assert float(cooldown(400)) == pytest.approx(FINAL * PEAK)
    assert float(cooldown(900)) == pytest.approx(FINAL * PEAK)
    # The same as a WSD run of 400 steps whose decay is its last 100.
    wsd = optim.make_schedule(dataclasses.replace(cfg, schedule="wsd", decay_frac=0.25), 400)
    np.testing.assert_allclose(jax.vmap(wsd)(np.arange(401)), jax.vmap(cooldown)(np.arange(401)), rtol=1e-6)
    with pytest.raises(ValueError, match="warmup"):
        optim.wsd_cooldown_schedule(cfg, branch_step=5, cooldown_steps=10)
    with pytest.raises(ValueError, match="cooldown_steps"):
        optim.wsd_cooldown_schedule(cfg, branch_step=50, cooldown_steps=0)


def test_schedule_jits_with_traced_step():
    schedule = optim.make_schedule(_cfg(schedule="wsd", decay_shape="cosine"), 100)
    assert float(jax.jit(schedule)(jnp.int32(90))) == pytest.approx(float(schedule(90)))


def _paths(tree) -> dict[str, bool]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(optim._path_names(path)): bool(value) for path, value in flat}


def test_decay_mask_on_model_params():
    mcfg = ModelConfig(vocab_size=64, d_model=32, n_heads=4, n_layers=2, use_bias=True, norm="layernorm",
                       norm_bias=True, positions="learned", n_encoder_layers=1)
    params = model.abstract_params(mcfg)
    mask = _paths(optim.decay_mask(params, OptimConfig()))
    decayed = {p for p, m in mask.items() if m}
    assert decayed == {p for p in mask if p.endswith("/kernel")}
    assert "unembed/kernel" in decayed
    assert not any(("embed/" in p and not p.startswith("unembed")) or p.endswith(("scale", "bias"))
                   for p in decayed)
    assert len(decayed) == (4 + 4 + 3) + (4 + 3) + 1  # decoder self+cross+swiglu, encoder, unembed
    everything = _paths(optim.decay_mask(params, OptimConfig(decay_norms_biases_embeddings=True)))
    assert all(everything.values())


def test_decay_mask_by_name_not_ndim():
    params = {"embed": {"embedding": jnp.zeros((8, 4))}, "pos_embed": {"kernel": jnp.zeros((8, 4))},
              "decoder": {"layers": {"attn": {"query": {"kernel": jnp.zeros((2, 4, 2, 2)),
                                                        "bias": jnp.zeros((2, 2, 2))}},
                                     "attn_norm": {"scale": jnp.zeros((2, 4))}}},
              "final_norm": {"scale": jnp.zeros(4), "bias": jnp.zeros(4)}, "unembed": {"kernel": jnp.zeros((4, 8))}}
    mask = _paths(optim.decay_mask(params, OptimConfig()))
    assert {p for p, m in mask.items() if m} == {"decoder/layers/attn/query/kernel", "unembed/kernel"}


def _numpy_adamw(params, grads_fn, cfg: OptimConfig, lr_fn, mask, steps):
    params = {k: np.asarray(v, np.float64) for k, v in params.items()}
    mu = {k: np.zeros_like(v) for k, v in params.items()}
    nu = {k: np.zeros_like(v) for k, v in params.items()}
    for t in range(steps):
        grads = {k: np.asarray(v, np.float64) for k, v in grads_fn(params).items()}
        norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
        if cfg.clip_norm is not None and norm > cfg.clip_norm:
            grads = {k: g * cfg.clip_norm / norm for k, g in grads.items()}
        lr = lr_fn(t)
        for k in params:
            mu[k] = cfg.b1 * mu[k] + (1 - cfg.b1) * grads[k]
            nu[k] = cfg.b2 * nu[k] + (1 - cfg.b2) * grads[k] ** 2
            mu_hat, nu_hat = mu[k] / (1 - cfg.b1 ** (t + 1)), nu[k] / (1 - cfg.b2 ** (t + 1))
            update = mu_hat / (np.sqrt(nu_hat) + cfg.eps)
            if mask[k]:
                update = update + cfg.weight_decay * params[k]
            params[k] = params[k] - lr * update
    return params


@pytest.mark.parametrize("clip_norm", [0.5, None])
def test_adamw_matches_numpy(clip_norm):
    cfg = OptimConfig(learning_rate=0.05, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.3, clip_norm=clip_norm,
                      schedule="cosine", warmup_steps=2, final_lr_frac=0.1)
    rng = np.random.default_rng(0)
    shapes = {"kernel": (3, 4), "bias": (4,), "scale": (4,), "embedding": (5, 4)}
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    curvature = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
    # A flat dict: only 'kernel' decays.
    jparams = {k: {k: jnp.asarray(v)} for k, v in params.items()}

    def loss(p):
        return sum(0.5 * jnp.sum(curvature[k] * (p[k][k] - 1.0) ** 2) for k in shapes)

    tx = optim.make_optimizer(cfg, total_steps=6)
    state = tx.init(jparams)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    for _ in range(6):
        updates, state = step(jparams, state)
        jparams = optax.apply_updates(jparams, updates)

    schedule = optim.make_schedule(cfg, 6)
    ref = _numpy_adamw(params, lambda p: {k: curvature[k] * (p[k] - 1.0) for k in p}, cfg,
                       lambda t: float(schedule(t)), {k: k == "kernel" for k in shapes}, 6)
    for k in shapes:
        np.testing.assert_allclose(np.asarray(jparams[k][k]), ref[k], atol=1e-6, rtol=0)
    assert not np.allclose(ref["kernel"], params["kernel"])


@pytest.mark.parametrize("bad,match", [
    (dict(b1=1.0), "b1"), (dict(schedule="step"), "schedule"), (dict(decay_shape="exp"), "decay_shape"),
    (dict(clip_norm=0.0), "clip_norm"), (dict(learning_rate=-1.0), "learning_rate"),
    (dict(warmup_steps=200), "warmup_steps"),
])
def test_bad_configs_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        optim.make_optimizer(_cfg(**bad), total_steps=100)


def test_bad_total_steps_raise():
    with pytest.raises(ValueError, match="total_steps"):
        optim.make_schedule(_cfg(), 0)
