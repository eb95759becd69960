"""Model shapes of a sweep: the size-dependent part of a model, and the 'aspect' rule that picks
the shape (width, depth, heads) whose non-embedding parameter count is nearest a target N."""

from __future__ import annotations

import dataclasses
import math

from experiments.sweep_sections import SizeConfig
from lm import flops as flops_lib
from lm.config import ModelConfig
from lm.presets import MODEL_PRESETS


@dataclasses.dataclass(frozen=True)
class Shape:
    """The size-dependent part of a model."""

    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    head_dim: int | None = None
    """None = d_model // n_heads."""
    n_encoder_layers: int | None = None
    """Encoder depth of an encoder-decoder shape (n_layers is then the decoder's); None = the
    template's (0 for decoder-only sweeps)."""

    @property
    def name(self) -> str:
        enc = "" if self.n_encoder_layers is None else f"-E{self.n_encoder_layers}"
        return f"d{self.d_model}{enc}-L{self.n_layers}"

    def model(self, template: ModelConfig, seq_len: int) -> ModelConfig:
        enc = template.n_encoder_layers if self.n_encoder_layers is None else self.n_encoder_layers
        return dataclasses.replace(template, d_model=self.d_model, n_layers=self.n_layers,
                                   n_heads=self.n_heads, head_dim=self.head_dim, n_kv_heads=None,
                                   d_ff=self.d_ff, max_seq_len=seq_len, n_encoder_layers=enc)


def nonembed_params(shape: Shape, template: ModelConfig) -> int:
    """Non-embedding parameters of `shape` built on `template`."""
    return flops_lib.param_counts(shape.model(template, template.max_seq_len)).non_embedding


def _aspect_shape(d_model: int, n_layers: int, sizes: SizeConfig) -> Shape:
    n_heads = max(1, round(d_model / sizes.head_dim))
    head_dim = None if n_heads * sizes.head_dim == d_model else sizes.head_dim
    return Shape(d_model, n_layers, n_heads, sizes.ff_mult * d_model, head_dim)


def shape_for(target: float, sizes: SizeConfig, template: ModelConfig) -> Shape:
    """The 'aspect' rule (see SizeConfig.rule): the shape for a target non-embedding N."""
    best = None
    for n_layers in range(sizes.min_layers, sizes.max_layers + 1):
        step = sizes.width_step
        lo, hi = 1, 1
        while nonembed_params(_aspect_shape(hi * step, n_layers, sizes), template) < target:
            lo, hi = hi, hi * 2
        while hi - lo > 1:                 # smallest width with N >= target
            mid = (lo + hi) // 2
            if nonembed_params(_aspect_shape(mid * step, n_layers, sizes), template) < target:
                lo = mid
            else:
                hi = mid
        options = [_aspect_shape(k * step, n_layers, sizes) for k in {max(hi - 1, 1), hi}]
        shape = min(options, key=lambda s: abs(math.log(nonembed_params(s, template) / target)))
        score = abs(math.log(shape.d_model / n_layers / sizes.aspect))
        if best is None or score < best[0]:
            best = (score, shape)
    return best[1]


def shape_grid(sizes: SizeConfig, template: ModelConfig, lo: float, hi: float) -> list[tuple[int, Shape]]:
    """The distinct shapes the 'aspect' rule gives for targets in [lo, hi], as (N, shape) by N."""
    found: dict[Shape, int] = {}
    target = lo
    while target <= hi * 1.0001:
        shape = shape_for(target, sizes, template)
        found.setdefault(shape, nonembed_params(shape, template))
        target *= 1.02
    return sorted(((n, s) for s, n in found.items()), key=lambda item: item[0])


def preset_shape(name: str) -> Shape:
    p = MODEL_PRESETS[name]
    return Shape(p.d_model, p.n_layers, p.n_heads, p.ff_size)

