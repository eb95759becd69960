"""Properties of the transformer checked against independent constructions, not against itself:
RoPE's relative-position invariance, GQA as MHA with repeated K/V heads, scanned == unrolled layers."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lm.config import ModelConfig
from lm.model import forward, init_params, rope

BASE = ModelConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_seq_len=16, compute_dtype="float32")


def test_rope_scores_depend_only_on_relative_position():
    """<rope(q, m), rope(k, n)> is a function of m - n; a rope that were the identity fails the
    second assertion (scores then do not depend on the positions at all)."""
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)), jnp.float32)

    def score(m: int, n: int) -> float:
        rq = rope(q, jnp.array([[m]]), 10_000.0)
        rk = rope(k, jnp.array([[n]]), 10_000.0)
        return float(jnp.sum(rq * rk))

    for shift in (1, 5, 100):
        assert abs(score(3, 1) - score(3 + shift, 1 + shift)) < 1e-4
        assert abs(score(7, 7) - score(7 + shift, 7 + shift)) < 1e-4
    assert abs(score(3, 1) - score(1, 3)) > 1e-3          # the offset's sign matters
    assert abs(score(0, 0) - score(5, 0)) > 1e-3          # and its size does
    # Norms are preserved (a rotation), and position 0 is the identity.
    x = jnp.asarray(rng.normal(size=(2, 5, 3, 16)), jnp.float32)
    pos = jnp.broadcast_to(jnp.arange(5), (2, 5)) * 7
    np.testing.assert_allclose(jnp.linalg.norm(rope(x, pos, 10_000.0), axis=-1),
                               jnp.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(rope(x, jnp.zeros((2, 5), jnp.int32), 10_000.0), x, rtol=1e-6)


def _map_attention_kernels(params, fn):
    """Apply fn(name, kernel) to every key/value projection kernel of the parameter tree."""
    def visit(tree, name=None):
        if isinstance(tree, dict):
            return {k: visit(v, k if k in ("key", "value") else name) for k, v in tree.items()}
        return fn(name, tree)
    return visit(params)


def test_gqa_equals_mha_with_repeated_kv_heads():
    """A GQA model with K kv heads equals an MHA model whose key/value heads are the GQA heads
    repeated G = H / K times (query head h reads kv head h // G)."""
    gqa = dataclasses.replace(BASE, n_kv_heads=2)
    mha = dataclasses.replace(BASE, n_kv_heads=4)
    params = init_params(gqa, jax.random.key(0))
    group = gqa.n_heads // gqa.kv_heads

    def repeat(name, x):
        if name is None or not hasattr(x, "ndim") or x.ndim < 3:
            return x
        # kernel [..., D, K, E] (a leading layers axis when scanned): repeat the kv-head axis.
        return jnp.repeat(x, group, axis=-2)

    mha_params = _map_attention_kernels(params, repeat)
    shapes = jax.tree.map(jnp.shape, init_params(mha, jax.random.key(1)))
    assert jax.tree.map(jnp.shape, mha_params) == shapes
    tokens = jax.random.randint(jax.random.key(2), (2, 12), 0, BASE.vocab_size)
    np.testing.assert_allclose(forward(mha_params, tokens, mha), forward(params, tokens, gqa),
                               rtol=1e-5, atol=1e-5)
    # And the repetition order matters: tiling instead of repeating gives another model.
    tiled = _map_attention_kernels(params, lambda n, x: x if n is None or x.ndim < 3 else
                                   jnp.concatenate([x] * group, axis=-2))
    assert not np.allclose(forward(tiled, tokens, mha), forward(params, tokens, gqa), atol=1e-4)


def test_scanned_and_unrolled_layers_compute_the_same_function():
    scanned_cfg = BASE
    unrolled_cfg = dataclasses.replace(BASE, scan_layers=False)
    params = init_params(scanned_cfg, jax.random.key(0))
    stacked = params["decoder"]["layers"]
    unrolled = {**params, "decoder": {k: v for k, v in params["decoder"].items() if k != "layers"}}
    for i in range(BASE.n_layers):
        unrolled["decoder"][f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    assert jax.tree.map(jnp.shape, unrolled) == jax.tree.map(
        jnp.shape, init_params(unrolled_cfg, jax.random.key(0)))
    tokens = jax.random.randint(jax.random.key(2), (2, 12), 0, BASE.vocab_size)
    np.testing.assert_allclose(forward(unrolled, tokens, unrolled_cfg), forward(params, tokens, scanned_cfg),
                               rtol=1e-5, atol=1e-5)
    # Swapping the two layers changes the function (the mapping above is not vacuous).
    swapped = {**unrolled, "decoder": {**unrolled["decoder"], "layers_0": unrolled["decoder"]["layers_1"],
                                       "layers_1": unrolled["decoder"]["layers_0"]}}
    assert not np.allclose(forward(swapped, tokens, unrolled_cfg), forward(params, tokens, scanned_cfg),
                           atol=1e-4)
