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
different lengths can share a batch (left-padded, pad positions = -1). Encoder-decoder models add
"cross_k", "cross_v": [N, B, S, K, E], the cross-attention keys/values of the encoded source, computed
once by the first call (given the source) and reused by every later one, and "src_mask": [B, S] bool,
which source slots are real tokens: sources of different lengths share a batch right-padded, and a
padded slot is masked out of the encoder's self-attention and of the cross-attention.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm import dots, mup
from lm.config import ModelConfig
from lm.precision import dtype_of
from lm.sharding import constrain, splits

Params = Any


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


def matmul_2d(x: jax.Array, w: jax.Array, n_in: int, dtype: Any) -> jax.Array:
    """x · w contracting the last `n_in` axes of x with the first `n_in` of w, as ONE 2-D matmul.

    Leading axes are flattened ([M, in] @ [in, out]) and restored: on CPU a 3-D dot_general's
    gradient is laid out with transposes around the dots (measured 3x slower, BENCHMARKS.md). In a
    dtype narrower than float32 the product is lm.dots.dot_2d's (on CPU: the native bf16 kernel)."""
    in_shape, out_shape = x.shape[x.ndim - n_in:], w.shape[n_in:]
    size_in = math.prod(in_shape)
    y = dots.dot_2d(x.reshape(-1, size_in).astype(dtype), w.reshape(size_in, -1).astype(dtype))
    return y.reshape(*x.shape[:x.ndim - n_in], *out_shape)


class Dense(nn.Module):
    """y = x · W (+ b) contracting the last `n_in` axes of x; W is float32, cast to compute dtype."""

    shape: tuple[int, ...]
    axes: tuple[str, ...]
    n_in: int
    use_bias: bool
    std: float
    dtype: Any

    def __call__(self, x: jax.Array) -> jax.Array:
        w, b = self.weights()
        y = matmul_2d(x, w, self.n_in, self.dtype)
        return y if b is None else y + b.astype(self.dtype)

    @nn.compact
    def weights(self) -> tuple[jax.Array, jax.Array | None]:
        """(kernel, bias or None) in float32, for callers that fuse several projections."""
        kernel = self.param("kernel", _init(self.std, self.axes), self.shape, jnp.float32)
        if not self.use_bias:
            return kernel, None
        out_shape, out_axes = self.shape[self.n_in:], self.axes[self.n_in:]
        return kernel, self.param("bias", _zeros(out_axes), out_shape, jnp.float32)


def rope(x: jax.Array, positions_BxL: jax.Array, theta: float, heads_axis: int = 2) -> jax.Array:
    """Rotary position embedding (rotate-half convention), computed in float32, of x [B, L, N, E]
    (heads_axis=2) or heads-major x [B, N, L, E] (heads_axis=1, what Attention uses)."""
    half = x.shape[-1] // 2
    freq_E2 = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = jnp.expand_dims(positions_BxL[..., None].astype(jnp.float32) * freq_E2, heads_axis)
    sin, cos = jnp.sin(angle), jnp.cos(angle)
    xf = x.astype(jnp.float32)
    x1, x2 = xf[..., :half], xf[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def sinusoidal(positions_BxL: jax.Array, d_model: int) -> jax.Array:
    """The original Transformer's fixed sin/cos position code: [B, L, D]."""
    half = d_model // 2
    freq = 10_000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle = positions_BxL[..., None].astype(jnp.float32) * freq
    code = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
    return jnp.pad(code, ((0, 0), (0, 0), (0, d_model - 2 * half)))


def _full_mask(mask_BxLxS: jax.Array | None, l: int, s: int) -> jax.Array:
    """The mask as [B or 1, L, S]; None means causal over positions 0..L-1 (training)."""
    if mask_BxLxS is None:
        return jnp.tril(jnp.ones((l, s), bool))[None]
    return mask_BxLxS


def attention_probs(q_BxKxGxLxE: jax.Array, k_BxKxSxE: jax.Array, mask_BxLxS: jax.Array | None,
                    scale: float) -> jax.Array:
    """Softmax attention weights [B, K, G, L, S] in float32 (heads-major, grouped kv heads: H = K * G).

    The scale is folded into q; scores accumulate in float32 whatever the compute dtype."""
    l, s = q_BxKxGxLxE.shape[3], k_BxKxSxE.shape[2]
    q = q_BxKxGxLxE * jnp.asarray(scale, q_BxKxGxLxE.dtype)
    logits = jnp.einsum("bkgle,bkse->bkgls", q, k_BxKxSxE, preferred_element_type=jnp.float32)
    mask = _full_mask(mask_BxLxS, l, s)
    logits = jnp.where(mask[:, None, None], logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)


def attend(q_BxKxGxLxE: jax.Array, k_BxKxSxE: jax.Array, v_BxKxSxE: jax.Array,
           mask_BxLxS: jax.Array | None, scale: float) -> jax.Array:
    """Scaled dot-product attention, explicit scores, softmax in float32. Returns [B, L, H, E]."""
    b, n_kv, g, l, e = q_BxKxGxLxE.shape
    probs = attention_probs(q_BxKxGxLxE, k_BxKxSxE, mask_BxLxS, scale).astype(v_BxKxSxE.dtype)
    out_BxKxGxLxE = jnp.einsum("bkgls,bkse->bkgle", probs, v_BxKxSxE)
    return out_BxKxGxLxE.transpose(0, 3, 1, 2, 4).reshape(b, l, n_kv * g, e)


def attend_fused(q_BxKxGxLxE: jax.Array, k_BxKxSxE: jax.Array, v_BxKxSxE: jax.Array,
                 mask_BxLxS: jax.Array | None, scale: float, implementation: str) -> jax.Array:
    """The same through `jax.nn.dot_product_attention` ('xla', or 'cudnn' flash attention on
    NVIDIA GPUs). A None mask is passed as is_causal, which cuDNN computes without a mask tensor."""
    b, n_kv, g, l, e = q_BxKxGxLxE.shape
    q_BxLxHxE = q_BxKxGxLxE.reshape(b, n_kv * g, l, e).transpose(0, 2, 1, 3)
    k_BxSxKxE, v_BxSxKxE = k_BxKxSxE.transpose(0, 2, 1, 3), v_BxKxSxE.transpose(0, 2, 1, 3)
    mask = None if mask_BxLxS is None else mask_BxLxS[:, None]
    return jax.nn.dot_product_attention(q_BxLxHxE, k_BxSxKxE, v_BxSxKxE, mask=mask, scale=scale,
                                        is_causal=mask_BxLxS is None, implementation=implementation)


def _heads_major(y_BxLxNxE: jax.Array) -> jax.Array:
    return y_BxLxNxE.transpose(0, 2, 1, 3)


class SelfAttnCache(NamedTuple):
    """A self-attention layer's key/value cache of C slots (cached decoding): a pytree.

    [B, C, K, E] each inside a layer; [N, B, C, K, E] stacked over the N layers of a Stack."""

    k: jax.Array
    v: jax.Array


class CrossAttnCache(NamedTuple):
    """A cross-attention layer's keys/values of the encoded source, computed once (the first
    decoding call, given the source) and reused by every later call: a pytree.

    [B, S, K, E] each inside a layer; [N, B, S, K, E] stacked over the N layers of a Stack."""

    k: jax.Array
    v: jax.Array


class LayerCache(NamedTuple):
    """What one decoder layer carries from one decoding call to the next."""

    self_attn: SelfAttnCache
    cross_attn: CrossAttnCache | None = None
    """Encoder-decoder models only (None: decoder-only)."""


class Attention(nn.Module):
    """Multi-head (grouped-query) attention: self-attention, or cross-attention over `context`.

    Returns (y [B, L, D], new_cache).
    - Self-attention with `cache` (a SelfAttnCache [B, C, K, E]) and `cache_index`: the new keys and
      values are written into slots [cache_index, cache_index + L) and attention runs over all C
      slots (then `mask` is [B, L, C]); new_cache is the updated SelfAttnCache.
    - Cross-attention while decoding (`cross_cache` given, or `keep_cross` set): attends over
      `cross_cache` (the source's keys/values cached by an earlier call; `context` is not read), or
      over keys/values computed from `context`; new_cache is the CrossAttnCache it used.
    - Otherwise (training, encoding) new_cache is None.
    A None mask means causal over positions 0..L-1 (training). Self-attention computes q, k, v
    with one matmul over the three kernels concatenated at trace time (the parameters stay
    separate); q, k, v are then heads-major [B, N, L, E] so the score and value dots need no
    transposes, and the scale is folded into q.
    """

    cfg: ModelConfig
    rotary: bool

    def _qkv(self, x_BxLxD, context_BxSxD, dt, cross_cache: CrossAttnCache | None = None):
        """q [B, H, L, E], k and v [B, K, S, E] (heads-major); with `cross_cache` only q is computed."""
        cfg = self.cfg
        h, n_kv, e, d = cfg.n_heads, cfg.kv_heads, cfg.head_size, cfg.d_model
        proj = functools.partial(Dense, n_in=1, use_bias=cfg.use_bias, std=mup.hidden_std(cfg), dtype=dt)
        layers = (proj((d, h, e), ("embed", "heads", "head_dim"), name="query"),
                  proj((d, n_kv, e), ("embed", "kv_heads", "head_dim"), name="key"),
                  proj((d, n_kv, e), ("embed", "kv_heads", "head_dim"), name="value"))
        b, l = x_BxLxD.shape[:2]
        if cross_cache is not None:   # cross-attention over cached keys/values [B, S, K, E]
            return _heads_major(layers[0](x_BxLxD)), _heads_major(cross_cache.k), _heads_major(cross_cache.v)
        # Self-attention: one [B*L, D] @ [D, (H + 2K) E] matmul, unless the heads are split over
        # devices (tensor parallel): concatenating kernels sharded by heads would reshard them.
        if context_BxSxD is x_BxLxD and not splits("heads", cfg.n_heads):
            kernels, biases = zip(*(layer.weights() for layer in layers))
            w_DxNxE = jnp.concatenate(kernels, axis=1)
            qkv = matmul_2d(x_BxLxD, w_DxNxE, 1, dt)
            if cfg.use_bias:
                qkv = qkv + jnp.concatenate(biases, axis=0).astype(dt)
            qkv_BxNxLxE = _heads_major(qkv)
            q, key, v = qkv_BxNxLxE[:, :h], qkv_BxNxLxE[:, h:h + n_kv], qkv_BxNxLxE[:, h + n_kv:]
        else:
            q = _heads_major(layers[0](x_BxLxD))
            key, v = (_heads_major(layer(context_BxSxD)) for layer in layers[1:])
        return q, key, v

    @nn.compact
    def __call__(self, x_BxLxD, context_BxSxD, mask_BxLxS, q_pos_BxL, k_pos_BxS,
                 cache: SelfAttnCache | None = None, cache_index: jax.Array | None = None,
                 cross_cache: CrossAttnCache | None = None, keep_cross: bool = False):
        cfg = self.cfg
        dt = dtype_of(cfg)
        h, n_kv, e, d = cfg.n_heads, cfg.kv_heads, cfg.head_size, cfg.d_model
        b, l = x_BxLxD.shape[:2]
        q, key, v = self._qkv(x_BxLxD, context_BxSxD, dt, cross_cache)
        new_cache = None
        if keep_cross or cross_cache is not None:   # cross-attention cached once per prompt
            new_cache = CrossAttnCache(_heads_major(key), _heads_major(v))      # [B, S, K, E] each
        if self.rotary:
            q, key = rope(q, q_pos_BxL, cfg.rope_theta, 1), rope(key, k_pos_BxS, cfg.rope_theta, 1)
        if cache is not None:             # the cache is [B, C, K, E]: write, then read heads-major
            key, v = (jax.lax.dynamic_update_slice_in_dim(c_BxCxKxE, _heads_major(new).astype(c_BxCxKxE.dtype),
                                                          cache_index, axis=1)
                      for c_BxCxKxE, new in ((cache.k, key), (cache.v, v)))
            new_cache = SelfAttnCache(key, v)
            key, v = _heads_major(key), _heads_major(v)
        q = q.reshape(b, n_kv, h // n_kv, l, e)
        scale = 1.0 / math.sqrt(e) * (mup.query_scale(cfg) or 1.0)   # muP: q.k / E instead of q.k / sqrt(E)
        if cfg.attention_impl == "einsum":
            y_BxLxHxE = attend(q, key, v, mask_BxLxS, scale)
        else:
            y_BxLxHxE = attend_fused(q, key, v, mask_BxLxS, scale, cfg.attention_impl)
        if self.is_mutable_collection("intermediates"):  # only when inspecting (attention_maps)
            self.sow("intermediates", "probs", attention_probs(q, key, mask_BxLxS, scale))
        out = Dense((h, e, d), ("heads", "head_dim", "embed"), n_in=2, use_bias=cfg.use_bias,
                    std=mup.hidden_std(cfg) / math.sqrt(2 * cfg.n_layers), dtype=dt, name="out")(y_BxLxHxE)
        return out, new_cache


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        dt = dtype_of(cfg)
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


class LayerInputs(NamedTuple):
    """What every layer of a Stack reads (broadcast over a scan): a NamedTuple, so a plain pytree."""

    self_mask: jax.Array | None
    """[B, L, S] bool, which keys each query sees; None = causal over positions 0..L-1 (training)."""
    positions: jax.Array
    """[B, L] int32 positions of the queries (and of the self-attention keys)."""
    context: jax.Array | None = None
    """[B, S, D] encoder output for cross-attention (None: decoder-only, or cached cross K/V)."""
    cross_mask: jax.Array | None = None
    """[B, L, S] bool, which source slots each query sees (padding masked)."""
    context_positions: jax.Array | None = None
    """[B, S] int32 positions of the source slots."""
    cache_index: jax.Array | None = None
    """int32 [] first cache slot this call writes (cached decoding), else None."""


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention, MLP; pre- or post-norm residuals.

    Called as `(x, new_cache) = block(x, inputs, cache)` so that it can be scanned; `inputs` is a
    LayerInputs broadcast to every layer; `cache` is this layer's LayerCache (decoding; new_cache
    is the updated one) or None (training: new_cache is then None too).
    """

    cfg: ModelConfig
    cross: bool = False

    @nn.compact
    def __call__(self, x_BxLxD, inputs, cache: LayerCache | None = None):
        cfg = self.cfg
        self_mask, pos, context, cross_mask, ctx_pos, cache_index = (
            inputs.self_mask, inputs.positions, inputs.context, inputs.cross_mask, inputs.context_positions,
            inputs.cache_index)
        rotary = cfg.positions == "rope"
        new_cache = []

        def residual(name: str, fn, x):
            if cfg.norm_position == "pre":
                return x + fn(Norm(cfg, name=f"{name}_norm")(x))
            return Norm(cfg, name=f"{name}_norm")(x + fn(x))

        def self_attention(y):
            out, self_kv = Attention(cfg, rotary, name="attn")(
                y, y, self_mask, pos, pos, None if cache is None else cache.self_attn, cache_index)
            new_cache.append(self_kv)
            return out

        x = residual("attn", self_attention, x_BxLxD)
        if self.cross and cache is not None:   # decoding: cross K/V computed (context given), or cached
            def cross_attention(y):
                cached = None if context is not None else cache.cross_attn
                out, cross_kv = Attention(cfg, False, name="cross")(y, context, cross_mask, pos, ctx_pos,
                                                                    cross_cache=cached, keep_cross=True)
                new_cache.append(cross_kv)
                return out

            x = residual("cross", cross_attention, x)
            return residual("mlp", lambda y: Mlp(cfg, name="mlp")(y), x), LayerCache(*new_cache)
        if self.cross:
            x = residual("cross", lambda y: Attention(cfg, False, name="cross")(
                y, context, cross_mask, pos, ctx_pos)[0], x)
        x = residual("mlp", lambda y: Mlp(cfg, name="mlp")(y), x)
        return constrain(x, "batch", "length", "embed"), None if cache is None else LayerCache(new_cache[0])


class Stack(nn.Module):
    """n_layers blocks, scanned (stacked `layers` axis) or unrolled (layers_0, layers_1, ...).

    Returns (x, new_cache); `cache` is None or a LayerCache stacked over layers (self-attention
    [N, B, C, K, E], cross-attention [N, B, S, K, E]).
    """

    cfg: ModelConfig
    n_layers: int
    cross: bool = False

    @nn.compact
    def __call__(self, x_BxLxD, inputs, cache: LayerCache | None = None):
        cfg = self.cfg
        block = nn.remat(Block, prevent_cse=not cfg.scan_layers) if cfg.remat else Block
        args = (inputs,) if cache is None else (inputs, cache)
        if cfg.scan_layers:
            scanned = nn.scan(block, variable_axes={"params": 0, "intermediates": 0}, split_rngs={"params": True},
                              in_axes=nn.broadcast if cache is None else (nn.broadcast, 0),
                              length=self.n_layers, metadata_params={nn.PARTITION_NAME: "layers"},
                              unroll=layers_per_iteration(cfg, self.n_layers))
            x_BxLxD, new_cache = scanned(cfg, self.cross, name="layers")(x_BxLxD, *args)
        else:
            per_layer = []
            for i in range(self.n_layers):
                layer_args = args if cache is None else (inputs, jax.tree.map(lambda c: c[i], cache))
                x_BxLxD, layer_cache = block(cfg, self.cross, name=f"layers_{i}")(x_BxLxD, *layer_args)
                per_layer.append(layer_cache)
            new_cache = None if cache is None else jax.tree.map(lambda *c: jnp.stack(c), *per_layer)
        if cfg.norm_position == "pre":
            x_BxLxD = Norm(cfg, name="final_norm")(x_BxLxD)
        return x_BxLxD, new_cache


def layers_per_iteration(cfg: ModelConfig, n_layers: int) -> int:
    """The scanned stack's unroll: cfg.scan_unroll (at most n_layers), or when 0 every layer on CPU
    and one per iteration on accelerators (see ModelConfig.scan_unroll)."""
    if cfg.scan_unroll:
        return min(cfg.scan_unroll, n_layers)
    return n_layers if jax.default_backend() == "cpu" else 1


def _source_mask(src_mask_BxS: jax.Array | None, b: int, l: int, s: int) -> jax.Array:
    """[B, L, S] bool: every query sees the source slots src_mask_BxS marks True (None = all)."""
    if src_mask_BxS is None:
        return jnp.ones((b, l, s), bool)
    return jnp.broadcast_to(src_mask_BxS.astype(bool)[:, None, :], (b, l, s))


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
                                 cfg.init_std, dtype_of(cfg))

    def _embed(self, tokens_BxL: jax.Array, pos_BxL: jax.Array) -> jax.Array:
        cfg = self.cfg
        x = jnp.take(constrain(self.embed.embedding, "vocab", None), tokens_BxL, axis=0)  # FSDP: gather the table
        if cfg.positions == "learned":
            x = x + self.pos_embed(pos_BxL)
        elif cfg.positions == "sinusoidal":
            x = x + sinusoidal(pos_BxL, cfg.d_model)
        return constrain(x.astype(dtype_of(cfg)), "batch", "length", "embed")

    def encode(self, src_BxS: jax.Array, src_mask_BxS: jax.Array | None = None) -> jax.Array:
        """Encoder output [B, S, D] with non-causal self-attention over the real source tokens
        (src_mask_BxS: True where a slot holds one; None = all; padding sits at the right end)."""
        b, s = src_BxS.shape
        pos = jnp.broadcast_to(jnp.arange(s), (b, s))
        full = _source_mask(src_mask_BxS, b, s, s)
        return self.encoder(self._embed(src_BxS, pos), LayerInputs(full, pos))[0]

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
                 positions_BxL: jax.Array | None = None, src_mask_BxS: jax.Array | None = None) -> jax.Array:
        """Logits [B, L, V] in float32; position t sees tokens <= t (and all of src_BxS, but for
        the slots src_mask_BxS marks False: right padding of a shorter source)."""
        cfg = self.cfg
        pos = positions_BxL if positions_BxL is not None else jnp.broadcast_to(
            jnp.arange(tokens_BxL.shape[1]), tokens_BxL.shape)
        context = cross_mask = ctx_pos = None
        if cfg.n_encoder_layers:
            if src_BxS is None:
                raise ValueError("an encoder-decoder model needs src tokens: call with src_BxS=...")
            context = self.encode(src_BxS, src_mask_BxS)
            ctx_pos = jnp.broadcast_to(jnp.arange(src_BxS.shape[1]), src_BxS.shape)
            cross_mask = _source_mask(src_mask_BxS, tokens_BxL.shape[0], tokens_BxL.shape[1], src_BxS.shape[1])
        x = self._embed(tokens_BxL, pos)
        self_mask = None if positions_BxL is None else causal_mask(pos, pos)  # None: causal, no mask array
        x, _ = self.decoder(x, LayerInputs(self_mask, pos, context, cross_mask, ctx_pos))
        return self._logits(x)

    def decode(self, tokens_BxL: jax.Array, positions_BxL: jax.Array, cache: dict,
               src_BxS: jax.Array | None = None, src_mask_BxS: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """(logits [B, L, V] float32, new cache): the tokens' keys/values go into cache slots
        [index, index + L); each token sees the cached tokens (and those of this call) whose
        position is <= its own. A position of -1 marks padding: never seen, its logits meaningless.
        Encoder-decoder models: the cache also holds the cross-attention keys/values "cross_k",
        "cross_v" [N, B, S, K, E]; the first call passes src_BxS, which runs the encoder once and
        fills them (and "src_mask" from src_mask_BxS: which source slots are real; None = all);
        later calls (src_BxS=None) reuse them."""
        cfg = self.cfg
        if bool(cfg.n_encoder_layers) != ("cross_k" in cache):
            raise ValueError("the cache does not match the model: build it with init_cache(cfg, ..., "
                             "src_len=S) for an encoder-decoder model and without src_len otherwise")
        index = cache["index"]
        pos = jnp.maximum(positions_BxL, 0)
        key_pos = jnp.where(positions_BxL >= 0, positions_BxL, PAD_POS).astype(jnp.int32)
        cache_pos_BxC = jax.lax.dynamic_update_slice_in_dim(cache["pos"], key_pos, index, axis=1)
        x = self._embed(tokens_BxL, pos)
        layer_cache = LayerCache(SelfAttnCache(cache["k"], cache["v"]))
        context = cross_mask = ctx_pos = None
        src_mask = cache.get("src_mask")
        if cfg.n_encoder_layers:
            b, s = tokens_BxL.shape[0], cache["cross_k"].shape[2]
            if src_BxS is not None:
                if src_BxS.shape != (b, s):
                    raise ValueError(f"src_BxS has shape {src_BxS.shape} but the cache holds {(b, s)}")
                src_mask = jnp.ones((b, s), bool) if src_mask_BxS is None else src_mask_BxS.astype(bool)
                context = self.encode(src_BxS, src_mask)
            layer_cache = layer_cache._replace(cross_attn=CrossAttnCache(cache["cross_k"], cache["cross_v"]))
            cross_mask = _source_mask(src_mask, b, tokens_BxL.shape[1], s)
            ctx_pos = jnp.broadcast_to(jnp.arange(s), (b, s))
        inputs = LayerInputs(causal_mask(pos, cache_pos_BxC), pos, context, cross_mask, ctx_pos, index)
        x, new = self.decoder(x, inputs, layer_cache)
        new_cache = {**cache, "k": new.self_attn.k, "v": new.self_attn.v, "pos": cache_pos_BxC,
                     "index": index + tokens_BxL.shape[1]}
        if cfg.n_encoder_layers:
            new_cache.update(cross_k=new.cross_attn.k, cross_v=new.cross_attn.v, src_mask=src_mask)
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


def abstract_params_and_axes(cfg: ModelConfig) -> tuple[Params, Params]:
    """(abstract_params(cfg), logical_axes(cfg)) from one abstract trace of the initialiser."""
    boxed = jax.eval_shape(lambda: Transformer(cfg).init(jax.random.key(0), **_dummy_inputs(cfg)))
    return nn.meta.unbox(boxed["params"]), nn.get_partition_spec(boxed)["params"]


def abstract_params(cfg: ModelConfig) -> Params:
    """The parameter pytree as jax.ShapeDtypeStruct leaves, without allocating anything."""
    return abstract_params_and_axes(cfg)[0]


def logical_axes(cfg: ModelConfig) -> Params:
    """A pytree like the params whose leaves are PartitionSpecs of logical axis names."""
    return abstract_params_and_axes(cfg)[1]


def forward(params: Params, tokens_BxL: jax.Array, cfg: ModelConfig,
            src_BxS: jax.Array | None = None, src_mask_BxS: jax.Array | None = None) -> jax.Array:
    """Logits [B, L, V] (float32) for token ids [B, L] (encoder-decoder: given the sources [B, S],
    src_mask_BxS marking their real, non-padding slots; None = all real)."""
    return Transformer(cfg).apply({"params": params}, tokens_BxL, src_BxS, None, src_mask_BxS)


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
    n, b, n_kv, g, l, s = probs.shape
    return probs.reshape(n, b, n_kv * g, l, s)


def init_cache(cfg: ModelConfig, batch: int, length: int, src_len: int | None = None) -> dict[str, jax.Array]:
    """An empty key/value cache of `length` slots: k, v [N, B, C, K, E] in the compute dtype,
    pos [B, C] (all PAD_POS: nothing visible yet), index [] = 0 (the next slot written); for an
    encoder-decoder model (give src_len) also cross_k, cross_v [N, B, src_len, K, E] and src_mask
    [B, src_len] (all True), filled by the first `decode` call (the one given the source)."""
    if bool(cfg.n_encoder_layers) != (src_len is not None):
        raise ValueError("init_cache: pass src_len (the source length) for an encoder-decoder model, "
                         "and only for one")
    shape = (cfg.n_layers, batch, length, cfg.kv_heads, cfg.head_size)
    dt = dtype_of(cfg)
    cache = {"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt),
             "pos": jnp.full((batch, length), PAD_POS, jnp.int32), "index": jnp.zeros((), jnp.int32)}
    if src_len is not None:
        cross = (cfg.n_layers, batch, src_len, cfg.kv_heads, cfg.head_size)
        cache.update(cross_k=jnp.zeros(cross, dt), cross_v=jnp.zeros(cross, dt),
                     src_mask=jnp.ones((batch, src_len), bool))
    return cache


def decode(params: Params, tokens_BxL: jax.Array, positions_BxL: jax.Array, cache: dict,
           cfg: ModelConfig, src_BxS: jax.Array | None = None,
           src_mask_BxS: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """Cached decoding: (logits [B, L, V] float32, new cache); see Transformer.decode."""
    return Transformer(cfg).apply({"params": params}, tokens_BxL, positions_BxL, cache, src_BxS, src_mask_BxS,
                                  method=Transformer.decode)
