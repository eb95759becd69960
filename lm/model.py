"""The transformer: decoder-only (GPT/Llama family) and an encoder-decoder variant, in Flax Linen.

Linen keeps parameters outside the module, as a plain pytree, which is what the training step,
the sharding rules and orbax want: `forward(params, tokens, cfg)` is a pure function. Every
parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv_heads`, `head_dim`, `mlp`,
`layers`); `lm.sharding` maps them onto the mesh. With `scan_layers` the blocks are one scanned
module with a stacked leading `layers` axis, so compile time does not grow with depth.

Shape letters: B batch, L query length, S key length, D d_model, H query heads, K kv heads,
G = H // K query heads per kv head, E head size, F MLP width, V vocabulary, N layers, C cache slots.

Cached decoding (`decode`, `init_cache`): the cache is a plain pytree {"k", "v": [N, B, C, K, E],
"pos": [B, C] int32, "index": int32 []}. Each call writes its tokens' keys/values into slots
[index, index + L) and attends over all C slots; a key is visible when its position is <= the
query's. Empty slots and padding carry position PAD_POS, which no query sees, so prompts of
different lengths can share a batch (left-padded, pad positions = -1).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm import mup
from lm.config import ModelConfig
from lm.sharding import constrain

Params = Any
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _init(std: float, axes: tuple[str, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(std), axes)


def _zeros(axes: tuple[str, ...]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _ones(axes: tuple[str, ...]):
    return nn.with_logical_partitioning(nn.initializers.ones_init(), axes)


class Norm(nn.Module):
    """RMSNorm or LayerNorm over the last axis, computed in float32."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = x_BxLxD.astype(jnp.float32)
        if cfg.norm == "layernorm":
            x = x - jnp.mean(x, axis=-1, keepdims=True)
        y = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + cfg.norm_eps)
        y = y * self.param("scale", _ones(("embed",)), (cfg.d_model,), jnp.float32)
        if cfg.norm == "layernorm" and cfg.norm_bias:
            y = y + self.param("bias", _zeros(("embed",)), (cfg.d_model,), jnp.float32)
        return y.astype(x_BxLxD.dtype)


class Dense(nn.Module):
    """y = x · W (+ b) contracting the last `n_in` axes of x; W is float32, cast to compute dtype."""

    shape: tuple[int, ...]
    axes: tuple[str, ...]
    n_in: int
    use_bias: bool
    std: float
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _init(self.std, self.axes), self.shape, jnp.float32)
        in_axes = tuple(range(x.ndim - self.n_in, x.ndim))
        y = jax.lax.dot_general(x.astype(self.dtype), kernel.astype(self.dtype),
                                ((in_axes, tuple(range(self.n_in))), ((), ())))
        if self.use_bias:
            out_shape, out_axes = self.shape[self.n_in:], self.axes[self.n_in:]
            y = y + self.param("bias", _zeros(out_axes), out_shape, jnp.float32).astype(self.dtype)
        return y


def rope(x_BxLxNxE: jax.Array, positions_BxL: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding (rotate-half convention), computed in float32."""
    half = x_BxLxNxE.shape[-1] // 2
    freq_E2 = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_BxLx1xE2 = (positions_BxL[..., None].astype(jnp.float32) * freq_E2)[:, :, None, :]
    sin, cos = jnp.sin(angle_BxLx1xE2), jnp.cos(angle_BxLx1xE2)
    x = x_BxLxNxE.astype(jnp.float32)
    x1, x2 = x[..., :half], x[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxNxE.dtype)


def sinusoidal(positions_BxL: jax.Array, d_model: int) -> jax.Array:
    """The original Transformer's fixed sin/cos position code: [B, L, D]."""
    half = d_model // 2
    freq = 10_000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions_BxL[..., None].astype(jnp.float32) * freq
    code = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
    return jnp.pad(code, ((0, 0), (0, 0), (0, d_model - 2 * half)))


def attention_probs(q_BxLxHxE: jax.Array, k_BxSxKxE: jax.Array, mask_BxLxS: jax.Array | None) -> jax.Array:
    """Softmax attention weights [B, K, G, L, S] in float32 (grouped kv heads: H = K * G)."""
    b, l, h, e = q_BxLxHxE.shape
    k = k_BxSxKxE.shape[2]
    q_BxLxKxGxE = q_BxLxHxE.reshape(b, l, k, h // k, e)
    logits = jnp.einsum("blkge,bske->bkgls", q_BxLxKxGxE, k_BxSxKxE).astype(jnp.float32)
    logits = logits / math.sqrt(e)
    if mask_BxLxS is not None:
        logits = jnp.where(mask_BxLxS[:, None, None], logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)


def attend(q_BxLxHxE: jax.Array, k_BxSxKxE: jax.Array, v_BxSxKxE: jax.Array,
           mask_BxLxS: jax.Array | None) -> jax.Array:
    """Scaled dot-product attention with grouped kv heads; softmax in float32. Returns [B, L, H, E]."""
    b, l, h, e = q_BxLxHxE.shape
    probs = attention_probs(q_BxLxHxE, k_BxSxKxE, mask_BxLxS).astype(v_BxSxKxE.dtype)
    out = jnp.einsum("bkgls,bske->blkge", probs, v_BxSxKxE)
    return out.reshape(b, l, h, e)


class Attention(nn.Module):
    """Multi-head (grouped-query) attention: self-attention, or cross-attention over `context`.

    Returns (y [B, L, D], new_cache). With `cache` = (k_BxCxKxE, v_BxCxKxE, index) the new keys and
    values are written into slots [index, index + L) and attention runs over all C slots (then
    `mask` is [B, L, C]); new_cache is the updated (k, v). Without a cache, new_cache is None.
    """

    cfg: ModelConfig
    rotary: bool

    @nn.compact
    def __call__(self, x_BxLxD, context_BxSxD, mask_BxLxS, q_pos_BxL, k_pos_BxS, cache=None):
        cfg = self.cfg
        dt = DTYPES[cfg.compute_dtype]
        h, k, e, d = cfg.n_heads, cfg.kv_heads, cfg.head_size, cfg.d_model
        out_std = mup.hidden_std(cfg) / math.sqrt(2 * cfg.n_layers)
        proj = functools.partial(Dense, n_in=1, use_bias=cfg.use_bias, std=mup.hidden_std(cfg), dtype=dt)
        q = proj((d, h, e), ("embed", "heads", "head_dim"), name="query")(x_BxLxD)
        key = proj((d, k, e), ("embed", "kv_heads", "head_dim"), name="key")(context_BxSxD)
        v = proj((d, k, e), ("embed", "kv_heads", "head_dim"), name="value")(context_BxSxD)
        if self.rotary:
            q, key = rope(q, q_pos_BxL, cfg.rope_theta), rope(key, k_pos_BxS, cfg.rope_theta)
        if mup.query_scale(cfg) is not None:          # muP: logits q.k / E instead of q.k / sqrt(E)
            q = q * jnp.asarray(mup.query_scale(cfg), q.dtype)
        new_cache = None
        if cache is not None:
            k_cache_BxCxKxE, v_cache_BxCxKxE, index = cache
            key = jax.lax.dynamic_update_slice_in_dim(k_cache_BxCxKxE, key.astype(k_cache_BxCxKxE.dtype),
                                                      index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(v_cache_BxCxKxE, v.astype(v_cache_BxCxKxE.dtype),
                                                    index, axis=1)
            new_cache = (key, v)
        y = attend(q, key, v, mask_BxLxS)
        if self.is_mutable_collection("intermediates"):  # only when inspecting (attention_maps)
            self.sow("intermediates", "probs", attention_probs(q, key, mask_BxLxS))
        out = Dense((h, e, d), ("heads", "head_dim", "embed"), n_in=2, use_bias=cfg.use_bias,
                    std=out_std, dtype=dt, name="out")(y)
        return out, new_cache


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        dt = DTYPES[cfg.compute_dtype]
        d, f = cfg.d_model, cfg.ff_size
        up = functools.partial(Dense, (d, f), ("embed", "mlp"), 1, cfg.use_bias, mup.hidden_std(cfg), dt)
        h_BxLxF = up(name="up")(x_BxLxD)
        if cfg.activation == "swiglu":
            h_BxLxF = nn.silu(up(name="gate")(x_BxLxD)) * h_BxLxF
        elif cfg.activation == "relu":
            h_BxLxF = nn.relu(h_BxLxF)
        else:
            h_BxLxF = nn.gelu(h_BxLxF, approximate=cfg.activation == "gelu_tanh")
        return Dense((f, d), ("mlp", "embed"), 1, cfg.use_bias, mup.hidden_std(cfg) / math.sqrt(2 * cfg.n_layers),
                     dt, name="down")(h_BxLxF)


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention, MLP; pre- or post-norm residuals.

    Called as `(x, new_cache) = block(x, inputs, cache)` so that it can be scanned; `inputs` is a
    tuple (self_mask, positions, context, cross_mask, context_positions, cache_index) broadcast to
    every layer; `cache` is this layer's (k, v) or None (training: new_cache is then None too).
    """

    cfg: ModelConfig
    cross: bool = False

    @nn.compact
    def __call__(self, x_BxLxD, inputs, cache=None):
        cfg = self.cfg
        self_mask, pos, context, cross_mask, ctx_pos, cache_index = inputs
        rotary = cfg.positions == "rope"
        layer_cache = None if cache is None else (*cache, cache_index)
        new_cache = []

        def residual(name: str, fn, x):
            if cfg.norm_position == "pre":
                return x + fn(Norm(cfg, name=f"{name}_norm")(x))
            return Norm(cfg, name=f"{name}_norm")(x + fn(x))

        def self_attention(y):
            out, kv = Attention(cfg, rotary, name="attn")(y, y, self_mask, pos, pos, layer_cache)
            new_cache.append(kv)
            return out

        x = residual("attn", self_attention, x_BxLxD)
        if self.cross:
            x = residual("cross", lambda y: Attention(cfg, False, name="cross")(
                y, context, cross_mask, pos, ctx_pos)[0], x)
        x = residual("mlp", lambda y: Mlp(cfg, name="mlp")(y), x)
        return constrain(x, "batch", "length", "embed"), new_cache[0]


class Stack(nn.Module):
    """n_layers blocks, scanned (stacked `layers` axis) or unrolled (layers_0, layers_1, ...).

    Returns (x, new_cache); `cache` is None or (k, v) stacked over layers: [N, B, C, K, E] each.
    """

    cfg: ModelConfig
    n_layers: int
    cross: bool = False

    @nn.compact
    def __call__(self, x_BxLxD, inputs, cache=None):
        cfg = self.cfg
        block = nn.remat(Block, prevent_cse=not cfg.scan_layers) if cfg.remat else Block
        args = (inputs,) if cache is None else (inputs, cache)
        if cfg.scan_layers:
            scanned = nn.scan(block, variable_axes={"params": 0, "intermediates": 0}, split_rngs={"params": True},
                              in_axes=nn.broadcast if cache is None else (nn.broadcast, 0),
                              length=self.n_layers, metadata_params={nn.PARTITION_NAME: "layers"})
            x_BxLxD, new_cache = scanned(cfg, self.cross, name="layers")(x_BxLxD, *args)
        else:
            per_layer = []
            for i in range(self.n_layers):
                layer_args = args if cache is None else (inputs, jax.tree.map(lambda c: c[i], cache))
                x_BxLxD, kv = block(cfg, self.cross, name=f"layers_{i}")(x_BxLxD, *layer_args)
                per_layer.append(kv)
            new_cache = None if cache is None else jax.tree.map(lambda *c: jnp.stack(c), *per_layer)
        if cfg.norm_position == "pre":
            x_BxLxD = Norm(cfg, name="final_norm")(x_BxLxD)
        return x_BxLxD, new_cache


def causal_mask(q_pos_BxL: jax.Array, k_pos_BxS: jax.Array) -> jax.Array:
    """True where query position may see key position (k <= q): [B, L, S]."""
    return k_pos_BxS[:, None, :] <= q_pos_BxL[:, :, None]


PAD_POS = int(jnp.iinfo(jnp.int32).max)
"""Position of empty cache slots and padding keys: above every query position, so never seen."""


class Transformer(nn.Module):
    """Token ids in, logits out. Decoder-only unless cfg.n_encoder_layers > 0."""

    cfg: ModelConfig

    def setup(self):
        cfg = self.cfg
        self.embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.float32, param_dtype=jnp.float32,
                              embedding_init=_init(cfg.init_std, ("vocab", "embed")))
        if cfg.positions == "learned":
            self.pos_embed = nn.Embed(cfg.max_seq_len, cfg.d_model, dtype=jnp.float32,
                                      embedding_init=_init(cfg.init_std, ("seq", "embed")))
        if cfg.n_encoder_layers:
            self.encoder = Stack(cfg, cfg.n_encoder_layers, cross=False)
        self.decoder = Stack(cfg, cfg.n_layers, cross=cfg.n_encoder_layers > 0)
        if not cfg.tie_embeddings:
            self.unembed = Dense((cfg.d_model, cfg.vocab_size), ("embed", "vocab"), 1, False,
                                 cfg.init_std, DTYPES[cfg.compute_dtype])

    def _embed(self, tokens_BxL: jax.Array, pos_BxL: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = jnp.take(constrain(self.embed.embedding, "vocab", None), tokens_BxL, axis=0)  # FSDP: gather the table
        if cfg.positions == "learned":
            x = x + self.pos_embed(pos_BxL)
        elif cfg.positions == "sinusoidal":
            x = x + sinusoidal(pos_BxL, cfg.d_model)
        return constrain(x.astype(DTYPES[cfg.compute_dtype]), "batch", "length", "embed")

    def encode(self, src_BxS: jax.Array) -> jax.Array:
        """Encoder output [B, S, D] with non-causal self-attention."""
        pos = jnp.broadcast_to(jnp.arange(src_BxS.shape[1]), src_BxS.shape)
        full = jnp.ones((src_BxS.shape[0], src_BxS.shape[1], src_BxS.shape[1]), bool)
        return self.encoder(self._embed(src_BxS, pos), (full, pos, None, None, None, None))[0]

    def _logits(self, x_BxLxD: jax.Array) -> jax.Array:
        mult = mup.logit_mult(self.cfg)                   # muP: alpha_output / m; standard: none
        if mult is not None:
            x_BxLxD = x_BxLxD * jnp.asarray(mult, x_BxLxD.dtype)
        if self.cfg.tie_embeddings:
            logits = self.embed.attend(x_BxLxD.astype(jnp.float32))
        else:
            logits = self.unembed(x_BxLxD).astype(jnp.float32)
        return constrain(logits, "batch", "length", "vocab")

    def __call__(self, tokens_BxL: jax.Array, src_BxS: jax.Array | None = None,
                 positions_BxL: jax.Array | None = None) -> jax.Array:
        """Logits [B, L, V] in float32; position t sees tokens <= t (and all of src_BxS)."""
        cfg = self.cfg
        pos = positions_BxL if positions_BxL is not None else jnp.broadcast_to(
            jnp.arange(tokens_BxL.shape[1]), tokens_BxL.shape)
        context = cross_mask = ctx_pos = None
        if cfg.n_encoder_layers:
            if src_BxS is None:
                raise ValueError("an encoder-decoder model needs src tokens: call with src_BxS=...")
            context = self.encode(src_BxS)
            ctx_pos = jnp.broadcast_to(jnp.arange(src_BxS.shape[1]), src_BxS.shape)
            cross_mask = jnp.ones((tokens_BxL.shape[0], tokens_BxL.shape[1], src_BxS.shape[1]), bool)
        x = self._embed(tokens_BxL, pos)
        x, _ = self.decoder(x, (causal_mask(pos, pos), pos, context, cross_mask, ctx_pos, None))
        return self._logits(x)

    def decode(self, tokens_BxL: jax.Array, positions_BxL: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """(logits [B, L, V] float32, new cache): the tokens' keys/values go into cache slots
        [index, index + L); each token sees the cached tokens (and those of this call) whose
        position is <= its own. A position of -1 marks padding: never seen, its logits meaningless.
        Decoder-only models only."""
        if self.cfg.n_encoder_layers:
            raise ValueError("cached decoding covers decoder-only models; this one has an encoder "
                             "(n_encoder_layers > 0): call forward() with src tokens instead")
        index = cache["index"]
        pos = jnp.maximum(positions_BxL, 0)
        key_pos = jnp.where(positions_BxL >= 0, positions_BxL, PAD_POS).astype(jnp.int32)
        cache_pos_BxC = jax.lax.dynamic_update_slice_in_dim(cache["pos"], key_pos, index, axis=1)
        x = self._embed(tokens_BxL, pos)
        inputs = (causal_mask(pos, cache_pos_BxC), pos, None, None, None, index)
        x, (k, v) = self.decoder(x, inputs, (cache["k"], cache["v"]))
        new_cache = {"k": k, "v": v, "pos": cache_pos_BxC, "index": index + tokens_BxL.shape[1]}
        return self._logits(x), new_cache


def _dummy_inputs(cfg: ModelConfig) -> dict[str, jax.Array]:
    tokens = jnp.zeros((1, min(cfg.max_seq_len, 8)), jnp.int32)
    return {"tokens_BxL": tokens, "src_BxS": tokens if cfg.n_encoder_layers else None}


def init_boxed(cfg: ModelConfig, rng: jax.Array) -> Params:
    """Parameters wrapped in nn.LogicallyPartitioned boxes that carry their logical axis names."""
    if cfg.count_only:
        raise ValueError("this preset is for counting only (count_only=True); do not initialise it")
    return Transformer(cfg).init(rng, **_dummy_inputs(cfg))["params"]


def init_params(cfg: ModelConfig, rng: jax.Array) -> Params:
    """Plain float32 parameter pytree."""
    return nn.meta.unbox(init_boxed(cfg, rng))


def abstract_params(cfg: ModelConfig) -> Params:
    """The parameter pytree as jax.ShapeDtypeStruct leaves, without allocating anything."""
    boxed = jax.eval_shape(lambda: Transformer(cfg).init(jax.random.key(0), **_dummy_inputs(cfg)))
    return nn.meta.unbox(boxed["params"])


def logical_axes(cfg: ModelConfig) -> Params:
    """A pytree like the params whose leaves are PartitionSpecs of logical axis names."""
    boxed = jax.eval_shape(lambda: Transformer(cfg).init(jax.random.key(0), **_dummy_inputs(cfg)))
    return nn.get_partition_spec(boxed)["params"]


def forward(params: Params, tokens_BxL: jax.Array, cfg: ModelConfig,
            src_BxS: jax.Array | None = None) -> jax.Array:
    """Logits [B, L, V] (float32) for token ids [B, L]."""
    return Transformer(cfg).apply({"params": params}, tokens_BxL, src_BxS)


def attention_maps(params: Params, tokens_BxL: jax.Array, cfg: ModelConfig) -> jax.Array:
    """Self-attention weights of every decoder layer and head: [n_layers, B, H, L, L] (float32)."""
    if cfg.n_encoder_layers:
        raise ValueError("attention_maps covers decoder-only models; this one has an encoder")
    _, state = Transformer(cfg).apply({"params": params}, tokens_BxL, mutable=["intermediates"])
    layers = state["intermediates"]["decoder"]
    if cfg.scan_layers:
        probs = layers["layers"]["attn"]["probs"][0]                    # [N, B, K, G, L, S]
    else:
        probs = jnp.stack([layers[f"layers_{i}"]["attn"]["probs"][0] for i in range(cfg.n_layers)])
    n, b, k, g, l, s = probs.shape
    return probs.reshape(n, b, k * g, l, s)


def init_cache(cfg: ModelConfig, batch: int, length: int) -> dict[str, jax.Array]:
    """An empty key/value cache of `length` slots: k, v [N, B, C, K, E] in the compute dtype,
    pos [B, C] (all PAD_POS: nothing visible yet), index [] = 0 (the next slot written)."""
    shape = (cfg.n_layers, batch, length, cfg.kv_heads, cfg.head_size)
    dt = DTYPES[cfg.compute_dtype]
    return {"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt),
            "pos": jnp.full((batch, length), PAD_POS, jnp.int32), "index": jnp.zeros((), jnp.int32)}


def decode(params: Params, tokens_BxL: jax.Array, positions_BxL: jax.Array, cache: dict,
           cfg: ModelConfig) -> tuple[jax.Array, dict]:
    """Cached decoding: (logits [B, L, V] float32, new cache); see Transformer.decode."""
    return Transformer(cfg).apply({"params": params}, tokens_BxL, positions_BxL, cache,
                                  method=Transformer.decode)
