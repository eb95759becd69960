"""The main job's recipe on 1.6x larger budgets: `lm-sweep run large`.

As experiments/configs/default.py (depth-2 muP shapes, base rate 0.2, batch 8 x 64, '6n_attn_causal'),
with the fixed-grid design (adaptive=None, window 3.0) and 6 budgets 2.5e10 .. 2.5e12 (100x), sizes up to d104-L2 (360K parameters) and the ladder centred on
20 tokens per parameter. 20.7e12 training FLOPs, 1.57x the default's.

What it gave (a narrower interval of a, E further from the floor): BENCHMARKS.md, "The main job".
"""

from experiments.configs import replace
from experiments.configs.default import get_config as default


def get_config():
    base = default()
    return replace(base, name="large", budgets=(2.5e10, 6.3e10, 1.6e11, 4e11, 1e12, 2.5e12), adaptive=None,
                   sizes=replace(base.sizes, range=(2e3, 6e5), window=3.0, tokens_per_param_guess=20.0))
