"""Named model presets: GPT-2 and Llama-style sizes, a count-only GPT-3 175B, and the tiny sizes
CPU sweeps train on the synthetic language."""

from __future__ import annotations

import dataclasses
from typing import Any

from lm.config import ModelConfig


def _gpt2(**kw: Any) -> ModelConfig:
    base = dict(vocab_size=50257, max_seq_len=1024, positions="learned", norm="layernorm",
                norm_bias=True, norm_eps=1e-5, activation="gelu_tanh", use_bias=True,
                tie_embeddings=True)
    base.update(kw)
    return ModelConfig(**base)


def _llama(**kw: Any) -> ModelConfig:
    base = dict(vocab_size=32000, max_seq_len=2048, positions="rope", norm="rmsnorm",
                activation="swiglu", use_bias=False, tie_embeddings=False, norm_eps=1e-5)
    base.update(kw)
    return ModelConfig(**base)


def _tiny(d_model: int, n_layers: int, n_heads: int, vocab_size: int = 64) -> ModelConfig:
    return _llama(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                  max_seq_len=256, d_ff=4 * d_model, norm_eps=1e-6)


MODEL_PRESETS: dict[str, ModelConfig] = {
    "gpt2-small": _gpt2(d_model=768, n_layers=12, n_heads=12),
    "gpt2-medium": _gpt2(d_model=1024, n_layers=24, n_heads=16),
    "gpt3-175b": _gpt2(d_model=12288, n_layers=96, n_heads=96, max_seq_len=2048,
                       count_only=True),
    "llama-tiny": _llama(vocab_size=4096, d_model=256, n_layers=4, n_heads=4, max_seq_len=512),
    "llama-small": _llama(vocab_size=32000, d_model=768, n_layers=12, n_heads=12, n_kv_heads=4),
    "llama-1b": _llama(vocab_size=32000, d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8,
                       d_ff=5632),
    # Tiny sizes for CPU sweeps on the synthetic language (vocabulary 64).
    "tiny-16": _tiny(16, 2, 2),
    "tiny-32": _tiny(32, 2, 2),
    "tiny-48": _tiny(48, 3, 3),
    "tiny-64": _tiny(64, 3, 4),
    "tiny-96": _tiny(96, 4, 4),
    "tiny-128": _tiny(128, 4, 4),
    "tiny-192": _tiny(192, 5, 6),
    "tiny-256": _tiny(256, 6, 8),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets: {sorted(MODEL_PRESETS)}")
    return dataclasses.replace(MODEL_PRESETS[name], **overrides)
