"""Parameter counts and FLOPs of a ModelConfig, counted analytically; MFU.

Every FLOP number here is a count over *all devices together*, per token of the global batch
(divide by the device count for a per-device figure), with 2 FLOPs per multiply-accumulate.
"Per token" means the cost of a sequence of `seq_len` tokens divided by `seq_len`. Training is
3x the forward pass (the backward pass costs two forwards) under every convention; rematerialisation
(`cfg.remat`) is NOT counted: these are model FLOPs, the numerator of MFU, not hardware FLOPs.

Conventions (the names are the keys `all_conventions` returns and the results store records):

- "6n": Kaplan et al. 2020, C = 6N. Forward = 2N per token, N = `non_embedding` parameters
  (everything except the token embedding and the learned position table: attention, MLP, norms,
  biases and an untied unembedding; a tied unembedding's logits matmul is therefore not counted).
  No attention-score term.
- "6n_attn": 6N plus the attention-score matmuls, non-causal: forward = 2N + 4 * n_layers * seq *
  d_attn per token (d_attn = n_heads * head_size), i.e. Q.K^T and A.V each cost 2 * seq * d_attn
  per token per layer when every query meets every key. This is what a dense masked implementation
  executes and what XLA's cost analysis counts (tests/test_flops.py checks it within 10 %).
- "6n_attn_causal": as "6n_attn" with the decoder's self-attention halved for the causal mask:
  forward = 2N + 2 * n_layers * seq * d_attn. Numerically this is Kaplan's Table 1 C_forward
  (2N + 2 n_layer n_ctx d_attn); it is what a causal kernel that skips masked blocks executes.
- "chinchilla": Hoffmann et al. 2022, Appendix F, forward per sequence: embeddings
  2*seq*vocab*d (the lookup counted as a one-hot matmul), per layer QKV projections, K.Q logits
  2*seq*seq*d_attn, softmax 3*H*seq*seq, reduction 2*seq*seq*d_attn, output projection, dense
  block 2*seq*(2*d*ff) (3 matrices for SwiGLU), and final logits 2*seq*d*vocab (counted whether
  or not the unembedding is tied). Non-causal. Norms, biases, positions and residual adds are not
  counted. With grouped-query attention the K and V projections use n_kv_heads (for MHA this is
  exactly the paper's formula).

Encoder-decoder (`n_encoder_layers > 0`): per (source, target) token pair with both sequences
`seq_len` long. The encoder's parameters are in N; its self-attention is bidirectional (never
halved); each decoder layer's cross-attention adds its projections (in N) and a non-causal score
term; "chinchilla" counts the embedding of both streams.

Caveat for the XLA cross-check: XLA's cost analysis counts the body of a `lax.scan` (a while loop)
once, not once per layer, so compare against a model built with `scan_layers=False`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import jax
import jax.numpy as jnp

from lm.config import ModelConfig

CONVENTIONS = ("6n", "6n_attn", "6n_attn_causal", "chinchilla")


# ---------------------------------------------------------------------------------------------
# Parameter counts.

@dataclasses.dataclass(frozen=True)
class ParamCounts:
    """Parameter counts by part. total = embedding + attention + mlp + norms + unembedding."""

    total: int
    """Every parameter of the model."""
    embedding: int
    """Token embedding [vocab, d] plus the learned position table [max_seq_len, d] (if any)."""
    token_embedding: int
    """Token embedding [vocab, d] alone (shared by encoder and decoder)."""
    position_embedding: int
    """Learned position table [max_seq_len, d]; 0 for sinusoidal, rope and none."""
    non_embedding: int
    """total - embedding: Kaplan's N (includes an untied unembedding, norms and biases)."""
    attention: int
    """All attention weights and biases: decoder self-attention, encoder self-attention, cross-attention."""
    mlp: int
    """All MLP weights and biases (decoder and encoder)."""
    norms: int
    """All norm scales and biases, including final norms and cross-attention norms."""
    unembedding: int
    """Output projection [d, vocab] without bias; 0 when tied to the token embedding."""
    per_layer: int
    """One decoder layer: self-attention, MLP, its norms and (encoder-decoder) cross-attention + norm."""
    per_encoder_layer: int
    """One encoder layer (self-attention, MLP, 2 norms); 0 for decoder-only."""
    encoder: int
    """All encoder layers plus the encoder's final norm; 0 for decoder-only. Part of non_embedding."""
    cross_attention: int
    """Cross-attention weights and biases over all decoder layers (a part of `attention`; norms excluded)."""


def _attention_params(cfg: ModelConfig) -> int:
    """query [d,H,hd], key/value [d,KV,hd], out [H,hd,d], plus biases when use_bias."""
    d, q, kv = cfg.d_model, cfg.n_heads * cfg.head_size, cfg.kv_heads * cfg.head_size
    weights = d * q + 2 * d * kv + q * d
    return weights + ((q + 2 * kv + d) if cfg.use_bias else 0)


def _mlp_matrices(cfg: ModelConfig) -> int:
    """3 for SwiGLU (gate, up, down), 2 otherwise (up, down)."""
    return 3 if cfg.activation == "swiglu" else 2


def _mlp_params(cfg: ModelConfig) -> int:
    d, ff = cfg.d_model, cfg.ff_size
    biases = (_mlp_matrices(cfg) - 1) * ff + d
    return _mlp_matrices(cfg) * d * ff + (biases if cfg.use_bias else 0)


def _norm_params(cfg: ModelConfig) -> int:
    """A scale [d], plus a bias [d] for LayerNorm with norm_bias."""
    has_bias = cfg.norm == "layernorm" and cfg.norm_bias
    return cfg.d_model * (2 if has_bias else 1)


def param_counts(cfg: ModelConfig) -> ParamCounts:
    """Exact parameter counts of the model lm.model builds from `cfg` (see ParamCounts)."""
    d, v = cfg.d_model, cfg.vocab_size
    attn, mlp, norm = _attention_params(cfg), _mlp_params(cfg), _norm_params(cfg)
    enc_dec = cfg.n_encoder_layers > 0
    final_norm = norm if cfg.norm_position == "pre" else 0

    token_embedding = v * d
    position_embedding = cfg.max_seq_len * d if cfg.positions == "learned" else 0
    unembedding = 0 if cfg.tie_embeddings else d * v

    per_encoder_layer = (attn + mlp + 2 * norm) if enc_dec else 0
    encoder = cfg.n_encoder_layers * per_encoder_layer + (final_norm if enc_dec else 0)
    cross_per_layer = attn if enc_dec else 0
    per_layer = attn + mlp + 2 * norm + (cross_per_layer + norm if enc_dec else 0)

    L, Le = cfg.n_layers, cfg.n_encoder_layers
    attention = L * (attn + cross_per_layer) + Le * attn
    mlp_total = (L + Le) * mlp
    norms = L * (2 * norm + (norm if enc_dec else 0)) + Le * 2 * norm + final_norm
    norms += final_norm if enc_dec else 0
    embedding = token_embedding + position_embedding
    total = embedding + attention + mlp_total + norms + unembedding
    assert total == embedding + L * per_layer + final_norm + encoder + unembedding
    return ParamCounts(
        total=total, embedding=embedding, token_embedding=token_embedding,
        position_embedding=position_embedding, non_embedding=total - embedding,
        attention=attention, mlp=mlp_total, norms=norms, unembedding=unembedding,
        per_layer=per_layer, per_encoder_layer=per_encoder_layer, encoder=encoder,
        cross_attention=L * cross_per_layer)


# ---------------------------------------------------------------------------------------------
# FLOPs.

@dataclasses.dataclass(frozen=True)
class FlopCount:
    """FLOPs per token under one named convention (totals over all devices, 2 FLOPs per MAC)."""

    convention: str
    """One of CONVENTIONS; see the module docstring for what it includes."""
    seq_len: int
    """Sequence length the attention terms were computed for."""
    forward_per_token: float
    """Forward-pass FLOPs per token."""

    @property
    def training_per_token(self) -> float:
        """Forward + backward FLOPs per token: 3x forward."""
        return 3.0 * self.forward_per_token


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"FLOP convention {convention!r} is not known; pick one of {list(CONVENTIONS)}")


def attention_score_flops_per_token(cfg: ModelConfig, seq_len: int, causal_halved: bool = False) -> float:
    """Forward FLOPs per token of the Q.K^T and A.V matmuls over all attention layers.

    Each is 2 * seq_len * d_attn per token per layer with full (non-causal) attention. With
    `causal_halved` the decoder's self-attention counts half (each query meets seq/2 keys on
    average); encoder self-attention and cross-attention are never causal.
    """
    per_layer = 2 * 2 * seq_len * cfg.n_heads * cfg.head_size
    decoder_self = cfg.n_layers * per_layer * (0.5 if causal_halved else 1.0)
    encoder_self = cfg.n_encoder_layers * per_layer
    cross = cfg.n_layers * per_layer if cfg.n_encoder_layers > 0 else 0
    return float(decoder_self + encoder_self + cross)


def _chinchilla_forward_per_sequence(cfg: ModelConfig, seq: int) -> float:
    """Hoffmann et al. 2022 App. F forward FLOPs for one sequence of `seq` tokens."""
    d, v, h = cfg.d_model, cfg.vocab_size, cfg.n_heads
    d_attn, d_kv = cfg.n_heads * cfg.head_size, cfg.kv_heads * cfg.head_size
    embeddings = 2 * seq * v * d
    qkv = 2 * seq * d * (d_attn + 2 * d_kv)
    logits_kq = 2 * seq * seq * d_attn
    softmax = 3 * h * seq * seq
    reduction = 2 * seq * seq * d_attn
    projection = 2 * seq * d_attn * d
    attention = qkv + logits_kq + softmax + reduction + projection
    dense = 2 * seq * _mlp_matrices(cfg) * d * cfg.ff_size
    final_logits = 2 * seq * d * v
    total = embeddings + cfg.n_layers * (attention + dense) + final_logits
    if cfg.n_encoder_layers > 0:  # encoder stack, its embeddings, and a cross-attention per decoder layer
        total += embeddings + cfg.n_encoder_layers * (attention + dense) + cfg.n_layers * attention
    return float(total)


def flop_count(cfg: ModelConfig, seq_len: int, convention: str) -> FlopCount:
    """FLOPs per token for sequences of `seq_len` tokens under `convention` (see module docstring)."""
    _check_convention(convention)
    if seq_len <= 0:
        raise ValueError(f"seq_len={seq_len} must be positive")
    n = param_counts(cfg).non_embedding
    if convention == "6n":
        forward = 2.0 * n
    elif convention == "6n_attn":
        forward = 2.0 * n + attention_score_flops_per_token(cfg, seq_len, causal_halved=False)
    elif convention == "6n_attn_causal":
        forward = 2.0 * n + attention_score_flops_per_token(cfg, seq_len, causal_halved=True)
    else:
        forward = _chinchilla_forward_per_sequence(cfg, seq_len) / seq_len
    return FlopCount(convention=convention, seq_len=seq_len, forward_per_token=forward)


def flops_per_token(cfg: ModelConfig, seq_len: int, convention: str, *, training: bool = True) -> float:
    """Training (default, 3x forward) or forward FLOPs per token under `convention`."""
    count = flop_count(cfg, seq_len, convention)
    return count.training_per_token if training else count.forward_per_token


def all_conventions(cfg: ModelConfig, seq_len: int, *, training: bool = True) -> dict[str, float]:
    """{convention: FLOPs per token} for every convention in CONVENTIONS (training by default)."""
    return {c: flops_per_token(cfg, seq_len, c, training=training) for c in CONVENTIONS}


def training_flops(cfg: ModelConfig, seq_len: int, tokens: float, convention: str) -> float:
    """Total training FLOPs (all devices) for `tokens` tokens of sequences of `seq_len` tokens."""
    if tokens < 0:
        raise ValueError(f"tokens={tokens} must be >= 0")
    return flops_per_token(cfg, seq_len, convention, training=True) * tokens


# ---------------------------------------------------------------------------------------------
# Model FLOP utilisation.

def mfu(flops_per_step: float, step_seconds: float, peak_flops_per_s: float | None) -> float:
    """Model FLOP utilisation: flops_per_step / step_seconds / peak_flops_per_s (a fraction).

    Both FLOP figures must cover the same devices (e.g. the global batch's FLOPs and the peak of
    all devices together). On accelerators the peak is the dense datasheet figure for the compute
    dtype (`default_peak_flops`); on CPU `measure_matmul_peak()`. A None peak (an accelerator
    missing from PEAK_FLOPS_BF16) gives NaN: no MFU rather than a wrong one.
    """
    if step_seconds <= 0:
        raise ValueError(f"step_seconds={step_seconds} must be positive")
    if peak_flops_per_s is None:
        return math.nan
    if peak_flops_per_s <= 0:
        raise ValueError(f"peak_flops_per_s={peak_flops_per_s} must be positive; pass the device's "
                         "dense peak FLOP/s or measure_matmul_peak()")
    return flops_per_step / step_seconds / peak_flops_per_s


PEAK_FLOPS_BF16: tuple[tuple[str, float], ...] = (
    # (lower-case substring of jax's device_kind, dense bf16 FLOP/s per chip from the datasheet);
    # the first match wins, so specific names come before the families they belong to.
    ("h100 pcie", 756e12),       # NVIDIA H100 PCIe
    ("h100 nvl", 835e12),        # NVIDIA H100 NVL
    ("h100", 989e12),            # NVIDIA H100 SXM5 ("NVIDIA H100 80GB HBM3")
    ("h200", 989e12),            # NVIDIA H200 (SXM; same tensor cores as the H100 SXM)
    ("gh200", 989e12),           # NVIDIA GH200 (Grace Hopper)
    ("b200", 2250e12),           # NVIDIA B200 (HGX, dense)
    ("a100", 312e12),            # NVIDIA A100 (SXM4 and PCIe)
    ("tpu v4", 275e12),          # "TPU v4"
    ("tpu v5 lite", 197e12),     # TPU v5e ("TPU v5 lite")
    ("tpu v5e", 197e12),
    ("tpu v5p", 459e12),
    ("tpu v5", 459e12),          # TPU v5p reports "TPU v5"
    ("tpu v6 lite", 918e12),     # TPU v6e / Trillium ("TPU v6 lite")
    ("tpu v6e", 918e12),
)
"""Dense (no sparsity) bfloat16 peaks. With float32 compute the MFU against these is a lower bound."""


def datasheet_peak(device_kind: str) -> float | None:
    """Dense bf16 FLOP/s of one chip of `device_kind` (jax's Device.device_kind), or None if unknown."""
    kind = device_kind.lower()
    return next((peak for key, peak in PEAK_FLOPS_BF16 if key in kind), None)


def default_peak_flops(devices: list | None = None) -> float | None:
    """Peak FLOP/s of `devices` (default: all of jax.devices()) for MFU when none is configured.

    Accelerators: the datasheet table times the device count; an unknown kind warns and gives
    None (MFU is then NaN) -- never a matmul probe, which would measure the kernel, not the chip.
    CPU: the float32 matmul rate measured here, times the number of processes (simulated CPU
    devices of one process share its cores, so they are not multiplied)."""
    devices = jax.devices() if devices is None else devices
    if devices[0].platform == "cpu":
        return measure_matmul_peak(1024, repeats=3) * len({d.process_index for d in devices})
    per_chip = datasheet_peak(devices[0].device_kind)
    if per_chip is None:
        warnings.warn(f"no datasheet peak for device kind {devices[0].device_kind!r} (lm.flops.PEAK_FLOPS_BF16): "
                      "MFU is reported as NaN; pass peak_flops (FLOP/s of all devices) to get one", stacklevel=2)
        return None
    return per_chip * len(devices)


def measure_matmul_peak(n: int = 2048, dtype: jnp.dtype = jnp.float32, repeats: int = 5) -> float:
    """FLOP/s (2 n^3 per product) of the fastest of `repeats` jitted [n,n]@[n,n] products.

    Runs on the default backend's first device; the MFU denominator the bench uses on CPU.
    """
    if n <= 0 or repeats <= 0:
        raise ValueError(f"n={n} and repeats={repeats} must be positive")
    a_NxN = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b_NxN = jax.random.normal(jax.random.key(1), (n, n), dtype)
    matmul = jax.jit(jnp.dot)
    matmul(a_NxN, b_NxN).block_until_ready()  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a_NxN, b_NxN).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best
