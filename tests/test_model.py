"""The transformer: shapes, causality by gradients, jit == no-jit, every architectural option."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm.config import ModelConfig
from lm.model import abstract_params, forward, init_params, logical_axes
from lm.presets import model_preset

BASE = ModelConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, max_seq_len=16, compute_dtype="float32")
VARIANTS = {
    "llama": BASE,
    "gqa": dataclasses.replace(BASE, n_kv_heads=2),
    "mqa_unrolled": dataclasses.replace(BASE, n_kv_heads=1, scan_layers=False),
    "gpt2": dataclasses.replace(BASE, positions="learned", norm="layernorm", norm_bias=True,
                                activation="gelu_tanh", use_bias=True, tie_embeddings=True),
    "post_norm_sinusoidal_relu": dataclasses.replace(BASE, norm_position="post", positions="sinusoidal",
                                                     activation="relu", norm="layernorm"),
    "gelu_nopos_remat": dataclasses.replace(BASE, activation="gelu", positions="none", remat=True),
    "bf16": dataclasses.replace(BASE, compute_dtype="bfloat16"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forward_shapes_and_jit_equals_eager(name):
    cfg = VARIANTS[name]
    params = init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, cfg.vocab_size)
    eager = forward(params, tokens, cfg)
    jitted = jax.jit(forward, static_argnums=2)(params, tokens, cfg)
    assert eager.shape == (2, 12, cfg.vocab_size) and eager.dtype == jnp.float32
    tol = 2e-2 if cfg.compute_dtype == "bfloat16" else 1e-5
    np.testing.assert_allclose(eager, jitted, rtol=tol, atol=tol)
    # Parameters stay float32 whatever the compute dtype.
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_causal_by_gradients(name):
    """d logits[t] / d (embedding of the token at s) is exactly zero for every s > t.

    The inputs are 10 distinct tokens, so each embedding row belongs to one position; the output
    is the logit of a token that is not an input, so a tied unembedding touches no input row.
    """
    cfg = dataclasses.replace(VARIANTS[name], compute_dtype="float32")
    params = init_params(cfg, jax.random.key(0))
    tokens = jax.random.permutation(jax.random.key(1), cfg.vocab_size - 1)[:10][None]
    t, probe = 4, cfg.vocab_size - 1

    def logit_at_t(embedding):
        p = {**params, "embed": {"embedding": embedding}}
        return forward(p, tokens, cfg)[0, t, probe]

    grad = jax.grad(logit_at_t)(params["embed"]["embedding"])      # [V, D]
    per_pos = np.abs(np.asarray(grad))[np.asarray(tokens[0])].sum(-1)
    assert np.all(per_pos[t + 1:] == 0.0), per_pos
    assert np.all(per_pos[: t + 1] > 0.0), per_pos


def test_logical_axes_cover_every_parameter():
    cfg = dataclasses.replace(BASE, tie_embeddings=False, positions="learned")
    shapes = abstract_params(cfg)
    specs = logical_axes(cfg)
    flat_s = jax.tree.leaves(shapes)
    flat_p = jax.tree.leaves(specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
    assert len(flat_s) == len(flat_p)
    for s, p in zip(flat_s, flat_p):
        assert len(p) == len(s.shape) and all(isinstance(n, str) for n in p)
    assert specs["decoder"]["layers"]["attn"]["query"]["kernel"] == jax.sharding.PartitionSpec(
        "layers", "embed", "heads", "head_dim")


def test_count_only_preset_refuses_init():
    with pytest.raises(ValueError, match="counting only"):
        init_params(model_preset("gpt3-175b"), jax.random.key(0))


def test_encoder_decoder_needs_source():
    cfg = dataclasses.replace(BASE, n_encoder_layers=1)
    params = init_params(cfg, jax.random.key(0))
    with pytest.raises(ValueError, match="src"):
        forward(params, jnp.zeros((1, 4), jnp.int32), cfg)


@pytest.mark.slow
def test_encoder_decoder_learns_to_reverse():
    """A small encoder-decoder learns to reverse sequences to near-zero loss (cross-attention works)."""
    cfg = ModelConfig(vocab_size=12, d_model=64, n_layers=2, n_encoder_layers=2, n_heads=4, max_seq_len=16,
                      positions="learned", activation="gelu", d_ff=128)
    bos, n = 11, 8
    params = init_params(cfg, jax.random.key(0))
    tx = optax.adam(3e-3)
    opt = tx.init(params)

    def loss_fn(params, src):
        tgt = src[:, ::-1]
        dec_in = jnp.concatenate([jnp.full((src.shape[0], 1), bos), tgt[:, :-1]], axis=1)
        logits = forward(params, dec_in, cfg, src)
        return optax.softmax_cross_entropy_with_integer_labels(logits, tgt).mean()

    @jax.jit
    def step(params, opt, key):
        src = jax.random.randint(key, (64, n), 0, 10)
        loss, g = jax.value_and_grad(loss_fn)(params, src)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    key = jax.random.key(2)
    for i in range(600):
        key, sub = jax.random.split(key)
        params, opt, loss = step(params, opt, sub)
    held_out = jax.random.randint(jax.random.key(99), (256, n), 0, 10)
    final = float(loss_fn(params, held_out))
    assert final < 0.05, final


@pytest.mark.parametrize("name", ["gqa", "mqa_unrolled"])
def test_attention_maps_are_causal_distributions(name):
    from lm.model import attention_maps
    cfg = VARIANTS[name]
    params = init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 9), 0, cfg.vocab_size)
    maps = np.asarray(attention_maps(params, tokens, cfg))
    assert maps.shape == (cfg.n_layers, 2, cfg.n_heads, 9, 9)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(maps, k=1) == 0.0)


@pytest.mark.parametrize("name", ["llama", "gqa", "gpt2", "mqa_unrolled"])
def test_fused_attention_path_matches_einsum(name):
    """attention_impl='xla' (jax.nn.dot_product_attention, the cuDNN path's XLA twin) gives the
    einsum path's logits and gradients; with explicit positions (a mask array) as well."""
    cfg = VARIANTS[name]
    fused = dataclasses.replace(cfg, attention_impl="xla")
    params = init_params(cfg, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 16), 0, cfg.vocab_size)
    np.testing.assert_allclose(forward(params, tokens, fused), forward(params, tokens, cfg), atol=1e-5)

    def loss(p, c):
        return jnp.mean(jax.nn.log_softmax(forward(p, tokens, c))[..., 0])

    g_einsum, g_fused = jax.grad(loss)(params, cfg), jax.grad(loss)(params, fused)
    for a, b in zip(jax.tree.leaves(g_einsum), jax.tree.leaves(g_fused)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    from lm.model import Transformer
    positions = jnp.broadcast_to(jnp.arange(16) + 3, tokens.shape)   # a mask array, not is_causal
    apply = lambda c: Transformer(c).apply({"params": params}, tokens, None, positions)
    np.testing.assert_allclose(apply(fused), apply(cfg), atol=1e-5)


def test_attention_impl_is_checked():
    with pytest.raises(ValueError, match="attention_impl"):
        dataclasses.replace(BASE, attention_impl="flash").validate()


def test_cudnn_attention_refuses_a_cpu_mesh_before_compiling():
    from lm.config import MeshConfig
    from lm.sharding import make_mesh
    from lm.step import compile_steps

    with pytest.raises(ValueError, match="attention_impl='cudnn' needs NVIDIA GPUs but the mesh is on cpu"):
        compile_steps(dataclasses.replace(BASE, attention_impl="cudnn"), optax.sgd(0.1),
                      make_mesh(MeshConfig(data=1), jax.devices()[:1]))


def test_scan_unroll_keeps_parameters_and_numbers():
    """Unrolling the scanned layer loop (ModelConfig.scan_unroll; 0 = all layers on CPU) is a speed
    knob: same parameter tree, same logits and gradients as one layer per iteration."""
    from lm.model import layers_per_iteration

    one = dataclasses.replace(BASE, n_layers=3, scan_unroll=1)
    assert layers_per_iteration(dataclasses.replace(one, scan_unroll=0), 3) == (3 if jax.default_backend() == "cpu" else 1)
    assert layers_per_iteration(dataclasses.replace(one, scan_unroll=5), 3) == 3
    params = init_params(one, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, one.vocab_size)

    def loss(p, cfg):
        return jnp.mean(jax.nn.logsumexp(forward(p, tokens, cfg), -1))

    ref_loss, ref_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, one)
    for unroll in (2, 3):
        cfg = dataclasses.replace(one, scan_unroll=unroll)
        assert jax.tree.structure(init_params(cfg, jax.random.key(0))) == jax.tree.structure(params)
        got_loss, got_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, cfg)
        np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got_grad, ref_grad)
    with pytest.raises(ValueError, match="scan_unroll=-1 must be >= 0"):
        dataclasses.replace(one, scan_unroll=-1).validate()
