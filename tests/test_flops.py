"""Parameter counts against the real model, FLOP conventions against XLA's cost analysis, MFU."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest

from lm import flops, model
from lm.config import ModelConfig
from lm.presets import model_preset


def _leaf_count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree))


def test_gpt2_small_exact():
    counts = flops.param_counts(model_preset("gpt2-small"))
    assert counts.total == 124_439_808
    assert counts.unembedding == 0  # tied
    assert counts.embedding == 50257 * 768 + 1024 * 768
    assert counts.non_embedding == counts.total - counts.embedding


def test_gpt3_175b():
    cfg = model_preset("gpt3-175b")
    d, layers = cfg.d_model, cfg.n_layers
    counts = flops.param_counts(cfg)
    # GPT-3's 174.6e9 ("175B") shares the token embedding with the output layer.
    assert cfg.tie_embeddings and counts.unembedding == 0
    assert counts.total == pytest.approx(174.6e9, rel=1e-3)
    assert counts.attention == pytest.approx(4 * d * d * layers, rel=1e-3)
    assert 4 * d * d * layers == pytest.approx(57.98e9, rel=1e-4)
    assert counts.non_embedding == pytest.approx(12 * d * d * layers, rel=1e-3)  # Kaplan's 12 L d^2


def test_parts_add_up():
    cfg = ModelConfig(n_encoder_layers=2, use_bias=True, norm="layernorm", norm_bias=True,
                      positions="learned", n_kv_heads=2)
    c = flops.param_counts(cfg)
    assert c.total == c.embedding + c.attention + c.mlp + c.norms + c.unembedding
    assert c.total == c.embedding + cfg.n_layers * c.per_layer + 2 * cfg.d_model + c.encoder + c.unembedding
    assert c.cross_attention < c.attention and c.encoder > 0


_BASE = dict(vocab_size=96, d_model=32, n_heads=4, n_layers=2, max_seq_len=16)
_CASES = [
    {},
    dict(activation="relu"),
    dict(activation="gelu", use_bias=True),
    dict(activation="gelu_tanh", norm="layernorm", norm_bias=True, positions="learned", tie_embeddings=True),
    dict(activation="swiglu", use_bias=True, d_ff=40),
    dict(norm="layernorm", norm_bias=False, positions="sinusoidal"),
    dict(positions="none", norm_position="post"),
    dict(n_kv_heads=2),
    dict(n_kv_heads=1, head_dim=6, use_bias=True),
    dict(scan_layers=False, use_bias=True, norm="layernorm", norm_bias=True),
    dict(scan_layers=False, n_encoder_layers=1, positions="learned"),
    dict(n_encoder_layers=3, use_bias=True, n_kv_heads=2, norm="layernorm", norm_bias=True),
    dict(n_encoder_layers=2, norm_position="post", tie_embeddings=True, activation="relu"),
]


@pytest.mark.parametrize("overrides", _CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_counts_match_model(overrides):
    cfg = ModelConfig(**{**_BASE, **overrides}).validate()
    assert flops.param_counts(cfg).total == _leaf_count(model.abstract_params(cfg))


def test_convention_ordering_and_names():
    cfg = model_preset("gpt2-small")
    forward = flops.all_conventions(cfg, 1024, training=False)
    assert tuple(forward) == flops.CONVENTIONS
    n = flops.param_counts(cfg).non_embedding
    assert forward["6n"] == 2 * n
    d_attn = cfg.n_heads * cfg.head_size
    assert forward["6n_attn"] == 2 * n + 4 * cfg.n_layers * 1024 * d_attn
    assert forward["6n_attn_causal"] == 2 * n + 2 * cfg.n_layers * 1024 * d_attn  # Kaplan Table 1
    training = flops.all_conventions(cfg, 1024)
    assert all(training[k] == 3 * forward[k] for k in forward)
    count = flops.flop_count(cfg, 1024, "chinchilla")
    assert count.convention == "chinchilla" and count.training_per_token == 3 * count.forward_per_token
    assert flops.training_flops(cfg, 1024, 1e9, "6n") == pytest.approx(6 * n * 1e9)
    with pytest.raises(ValueError, match="pick one of"):
        flops.flops_per_token(cfg, 1024, "6N")


# Hoffmann et al. 2022 (Chinchilla, arXiv:2203.15556), Table A4: the FLOPs of their App. F count over
# 6ND for six models (sequence 2048, vocabulary 32k), as printed to two decimals; N is each model's
# parameter count from their Table A9. The table counts neither the embedding nor the final logits
# (the authors confirmed it to A. Karpathy, whose nanoGPT scaling_laws.ipynb reproduces these ratios).
# (n_layers, d_model, ffw_size, n_heads, N from Table A9, ratio printed in Table A4)
CHINCHILLA_TABLE_A4 = [(10, 640, 2560, 10, 74e6, 1.03), (20, 1024, 4096, 16, 306e6, 1.10),
                       (24, 1280, 5120, 10, 552e6, 1.08), (26, 1792, 7168, 14, 1143e6, 1.04),
                       (28, 2048, 8192, 16, 1593e6, 1.03), (40, 3584, 14336, 28, 6796e6, 0.99)]


@pytest.mark.parametrize("layers, d, ff, heads, n, ratio", CHINCHILLA_TABLE_A4)
def test_chinchilla_appendix_f_reproduces_table_a4(layers, d, ff, heads, n, ratio):
    cfg = ModelConfig(vocab_size=32000, d_model=d, n_layers=layers, n_heads=heads, d_ff=ff, activation="gelu",
                      max_seq_len=2048)
    per_token = flops.flops_per_token(cfg, 2048, "chinchilla")            # training: 3x the forward
    embedding_and_logits = 3 * 2 * (2 * 32000 * d)                       # what Table A4 leaves out
    assert (per_token - embedding_and_logits) / (6 * n) == pytest.approx(ratio, abs=0.01)


def test_encoder_decoder_flops():
    dec = ModelConfig(d_model=64, n_heads=4, n_layers=2)
    enc_dec = dataclasses.replace(dec, n_encoder_layers=2)
    s, d_attn = 64, 64
    extra_params = flops.param_counts(enc_dec).non_embedding - flops.param_counts(dec).non_embedding
    diff = (flops.flops_per_token(enc_dec, s, "6n_attn_causal", training=False)
            - flops.flops_per_token(dec, s, "6n_attn_causal", training=False))
    # Encoder self-attention and cross-attention are never halved.
    assert diff == 2 * extra_params + 4 * s * d_attn * (2 + 2)


def _xla_forward_flops_per_token(cfg: ModelConfig, batch: int, seq: int) -> float:
    tokens = jax.ShapeDtypeStruct((batch, seq), jnp.int32)
    src = tokens if cfg.n_encoder_layers else None
    fn = jax.jit(lambda p, t, s: model.forward(p, t, cfg, s))
    cost = fn.lower(model.abstract_params(cfg), tokens, src).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost  # older JAX returned a list
    return cost["flops"] / (batch * seq)


# XLA counts a scanned loop body once, so these are unrolled (scan_layers=False); untied, since
# the "6n" family leaves a tied unembedding's logits matmul out of N.
_XLA_CASES = [
    (ModelConfig(vocab_size=256, d_model=128, n_layers=2, n_heads=4, max_seq_len=128, scan_layers=False), 128),
    (ModelConfig(vocab_size=512, d_model=256, n_layers=4, n_heads=4, max_seq_len=256, activation="gelu",
                 norm="layernorm", norm_bias=True, use_bias=True, positions="learned", scan_layers=False), 256),
]


@pytest.mark.parametrize("cfg,seq", _XLA_CASES, ids=["d128", "d256"])
def test_6n_attn_matches_xla(cfg, seq):
    """XLA counts dense, non-causal attention matmuls at 2 FLOPs/MAC: the '6n_attn' convention."""
    xla = _xla_forward_flops_per_token(cfg, 2, seq)
    analytic = flops.flops_per_token(cfg, seq, "6n_attn", training=False)
    assert analytic == pytest.approx(xla, rel=0.10)


def test_6n_attn_matches_xla_encoder_decoder():
    cfg = ModelConfig(vocab_size=256, d_model=128, n_layers=2, n_encoder_layers=2, n_heads=4,
                      max_seq_len=64, scan_layers=False)
    xla = _xla_forward_flops_per_token(cfg, 2, 64)
    assert flops.flops_per_token(cfg, 64, "6n_attn", training=False) == pytest.approx(xla, rel=0.10)


def test_mfu():
    assert flops.mfu(6e12, 2.0, 1e13) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="peak"):
        flops.mfu(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="step_seconds"):
        flops.mfu(1.0, 0.0, 1.0)


def test_measure_matmul_peak(monkeypatch):
    # A clock whose timed products take 3, 1 and 2 ms: the peak is 2 n^3 FLOPs over the fastest.
    ticks = iter([0.0, 0.003, 1.0, 1.001, 2.0, 2.002])
    monkeypatch.setattr(flops.time, "perf_counter", lambda: next(ticks))
    assert flops.measure_matmul_peak(n=128, repeats=3) == pytest.approx(2 * 128**3 / 0.001)
    monkeypatch.undo()
    peak = flops.measure_matmul_peak(n=128, repeats=3)                   # a real, physically possible rate
    assert 1e8 < peak < 1e14


def test_datasheet_peaks_by_device_kind():
    assert flops.datasheet_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert flops.datasheet_peak("NVIDIA H100 PCIe") == 756e12
    assert flops.datasheet_peak("NVIDIA H200") == 989e12
    assert flops.datasheet_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert flops.datasheet_peak("NVIDIA B200") == 2250e12
    assert flops.datasheet_peak("TPU v5 lite") == 197e12
    assert flops.datasheet_peak("TPU v5") == 459e12
    assert flops.datasheet_peak("TPU v6 lite") == 918e12
    assert flops.datasheet_peak("TPU v4") == 275e12
    assert flops.datasheet_peak("Quadro RTX 8000") is None


class _FakeDevice:
    def __init__(self, platform, kind, process_index=0):
        self.platform, self.device_kind, self.process_index = platform, kind, process_index


def test_default_peak_on_accelerators_is_the_table_never_a_probe(monkeypatch):
    monkeypatch.setattr(flops, "measure_matmul_peak", lambda *a, **k: pytest.fail("probed an accelerator"))
    assert flops.default_peak_flops([_FakeDevice("gpu", "NVIDIA H200")] * 8) == 8 * 989e12
    with pytest.warns(UserWarning, match="no datasheet peak for device kind 'Mystery X1'"):
        assert flops.default_peak_flops([_FakeDevice("gpu", "Mystery X1")]) is None
    assert math.isnan(flops.mfu(1e12, 1.0, None))


def test_default_peak_on_cpu_is_measured_once_per_process(monkeypatch):
    monkeypatch.setattr(flops, "measure_matmul_peak", lambda *a, **k: 1e11)
    devices = [_FakeDevice("cpu", "cpu", i // 4) for i in range(8)]      # 2 processes x 4 devices
    assert flops.default_peak_flops(devices) == 2e11
